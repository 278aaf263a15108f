"""An app for the bad-configuration tests, run by a real uvicorn process.

A Starlette or FastAPI app (``BAD_CONFIG_FRAMEWORK``: ``starlette`` or
``fastapi``) with ``PluginMiddleware`` added the way README.rst says;
``BAD_CONFIG`` says how: ``lazy`` (``add_middleware(..., config=BAD)``, built
by Starlette on the first call), ``broken`` (the same with a class path that
does not import), ``eager`` (a manager built here, at import) or ``good``
(``add_middleware`` with a configuration that loads).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import mcp_plugin_mw as mw

BAD = {"plugins": [{"name": "shout", "kind": "tests.sample_plugins.Upper", "flow": "backwards"}]}
BROKEN_CLASS = {"plugins": [{"name": "nope", "kind": "tests.no_such_module.Plugin"}]}
GOOD = {"plugins": [{"name": "shout", "kind": "tests.sample_plugins.Upper"}]}
PROBLEM = "plugins[0].flow: Input should be 'request', 'response' or 'both'"


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def build(framework: str, how: str) -> Any:
    app: Any
    if framework == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()
        app.add_api_route("/", hello)
    else:
        app = Starlette(routes=[Route("/", hello)])
    if how == "eager":
        app.add_middleware(mw.PluginMiddleware, manager=mw.PluginManager(BAD))
    else:
        config = {"good": GOOD, "broken": BROKEN_CLASS}.get(how, BAD)
        app.add_middleware(mw.PluginMiddleware, config=config)
    return app


app = build(os.environ.get("BAD_CONFIG_FRAMEWORK", "starlette"), os.environ.get("BAD_CONFIG", "lazy"))
