"""
mcpd plugins written with PyPI's ``mcpd-plugins`` SDK
=====================================================

The tests turn each class into an executable (a script with a
``#!<python>`` line) that mcpd would start as ``<exec> --address <socket>
--network unix``; see :func:`script`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from google.protobuf.empty_pb2 import Empty
from mcpd_plugins import BasePlugin, serve
from mcpd_plugins.v1.plugins.plugin_pb2 import (
    FLOW_REQUEST,
    FLOW_RESPONSE,
    Capabilities,
    HTTPRequest,
    HTTPResponse,
    Metadata,
    PluginConfig,
)

__all__ = ["PassThrough", "RequestOnly", "Rewriter", "script", "serve"]

ROOT = Path(__file__).resolve().parents[2]


def script(directory: Path, plugin: str) -> Path:
    """An executable in ``directory`` that serves ``plugin`` (a class name here) the mcpd way."""
    path = directory / plugin.lower()
    path.write_text(
        f"#!{sys.executable}\n"
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.external_foreign import mcpd_plugins\n"
        f"asyncio.run(mcpd_plugins.serve(mcpd_plugins.{plugin}(), sys.argv))\n"
    )
    path.chmod(0o755)
    return path


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class Rewriter(BasePlugin):
    """Both flows: rewrites request bodies, rejects some, and annotates JSON responses."""

    def __init__(self) -> None:
        self.greeting = "none"

    async def Configure(self, request: PluginConfig, context: Any) -> Empty:
        self.greeting = request.custom_config.get("greeting", "none")
        return Empty()

    async def GetMetadata(self, request: Empty, context: Any) -> Metadata:
        return Metadata(name="rewriter", version="1.0.0", description="test plugin", commit_hash="abc123")

    async def GetCapabilities(self, request: Empty, context: Any) -> Capabilities:
        return Capabilities(flows=[FLOW_REQUEST, FLOW_RESPONSE])

    async def HandleRequest(self, request: HTTPRequest, context: Any) -> HTTPResponse:
        data = _json(request.body)
        if isinstance(data, dict) and data.get("text") == "reject":
            answer = HTTPResponse(status_code=429, body=b"slow down", **{"continue": False})
            answer.headers["Retry-After"] = "7"
            return answer
        if isinstance(data, dict) and data.get("text") == "crash":
            os._exit(3)
        answer = HTTPResponse(**{"continue": True})
        answer.headers["X-Greeting"] = self.greeting
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            changed = HTTPRequest()
            changed.CopyFrom(request)
            changed.body = json.dumps({**data, "text": data["text"].upper(), "seen": request.request_uri}).encode()
            changed.headers["X-Rewritten"] = "yes"
            answer.modified_request.CopyFrom(changed)
        return answer

    async def HandleResponse(self, response: HTTPResponse, context: Any) -> HTTPResponse:
        data = _json(response.body)
        if not isinstance(data, dict):
            return HTTPResponse(**{"continue": True})
        if data.get("secret"):
            return HTTPResponse(status_code=451, body=b"unavailable", **{"continue": False})
        answer = HTTPResponse(**{"continue": True})
        answer.CopyFrom(response)
        answer.body = json.dumps({**data, "annotated": True, "status_seen": response.status_code}).encode()
        answer.headers["X-Annotated"] = "1"
        return answer


class RequestOnly(Rewriter):
    """Announces only the request flow: its response handler must never run."""

    async def GetCapabilities(self, request: Empty, context: Any) -> Capabilities:
        return Capabilities(flows=[FLOW_REQUEST])

    async def HandleResponse(self, response: HTTPResponse, context: Any) -> HTTPResponse:
        return HTTPResponse(status_code=500, body=b"must not run", **{"continue": False})


class PassThrough(BasePlugin):
    """Answers every call with the SDK's defaults (``continue: true`` and nothing else)."""

    async def GetCapabilities(self, request: Empty, context: Any) -> Capabilities:
        return Capabilities(flows=[FLOW_REQUEST, FLOW_RESPONSE])
