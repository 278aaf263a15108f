"""
Flask example
=============

A JSON route behind ``WSGIPluginMiddleware`` with the plugins of
``plugins.yaml``. Needs ``pip install 'mcp-plugin-mw[examples]'`` (from a
checkout: ``pip install -e '.[examples]'``)::

    cd contrib/flask && flask --app app run -p 8001     # or: python app.py

Then try::

    # Shout upper-cases the reply: {"text": "HELLO"}
    curl -s localhost:8001/api/echo -H 'content-type: application/json' -d '{"text":"hello"}'

    # BlockWord refuses it: 403 application/problem+json
    curl -si localhost:8001/api/echo -H 'content-type: application/json' -d '{"text":"forbidden"}'

    # excluded_urls: /health is never seen by the plugins
    curl -s localhost:8001/health
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, request

import mcp_plugin_mw as mw

HERE = Path(__file__).parent  # plugins.yaml's class paths are looked up here

app = Flask(__name__)
app.wsgi_app = mw.WSGIPluginMiddleware(app.wsgi_app, config=HERE / "plugins.yaml")  # type: ignore[method-assign]


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.post("/api/echo")
def echo() -> dict[str, Any]:
    body = request.get_json(silent=True) or {}
    return {"text": body.get("text", "")}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=8001)
