"""An app for the lifespan tests, run by a real uvicorn process.

``LIFESPAN_MARKS`` names a file the plugin appends its life cycle to;
``LIFESPAN_FAIL=1`` makes the plugin fail to start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import mcp_plugin_mw as mw


def _mark(what: str) -> None:
    with open(os.environ["LIFESPAN_MARKS"], "a") as marks:
        marks.write(what + "\n")


class Marking(mw.Plugin):
    def initialize(self) -> None:
        if os.environ.get("LIFESPAN_FAIL") == "1":
            raise RuntimeError("the policy store is unreachable")
        _mark("plugin started")

    def shutdown(self) -> None:
        _mark("plugin stopped")

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None


async def hello(request: Request) -> PlainTextResponse:
    _mark("request")
    return PlainTextResponse("hello")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    _mark("app started")
    yield
    _mark("app stopped")


inner = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
app = mw.PluginMiddleware(inner, config={"plugins": [{"name": "marking", "kind": f"{__name__}.Marking"}]})
