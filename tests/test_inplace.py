"""
Changes a plugin makes to the payload in place are never lost
=============================================================

A plugin that edits ``payload.args`` (or ``result``, ``headers``, anything
nested) in place and returns None has changed the payload all the same: the
executor treats it as if the plugin had returned the changed payload. Where
the category may not modify, the change is dropped and neither the next
plugin nor the forwarded message sees it.

Proved through real apps: a Starlette JSON-RPC endpoint behind
``PluginMiddleware`` (httpx's ASGI transport) and a Flask app behind
``WSGIPluginMiddleware`` (werkzeug's test client); each app records what it
received, and the client checks what it got back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httpx
import orjson
import pytest
from flask import Flask, Response, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import mcp_plugin_mw as mw
from mcp_plugin_mw.models import Outcome

SECRET = "4111-1111-1111-1111"
MASK = "[REDACTED]"


# ----------------------------------------------------------------------
# Plugins that change the payload in place and return None
# ----------------------------------------------------------------------


class RedactArgs(mw.Plugin):
    """Overwrites ``args["text"]`` in place; returns None."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        payload.args["text"] = payload.args["text"].replace(SECRET, MASK)


class AsyncRedactArgs(mw.Plugin):
    async def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        await asyncio.sleep(0)  # really suspends: the timeout path
        payload.args["text"] = payload.args["text"].replace(SECRET, MASK)


class RedactArgsInThread(RedactArgs):
    blocking = True


class RedactNested(mw.Plugin):
    """Edits a list nested in the arguments, item by item."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        items = payload.args["items"]
        for index, item in enumerate(items):
            if item == SECRET:
                items[index] = MASK
        payload.args["meta"]["cards"].append("checked")


class RedactResult(mw.Plugin):
    """Masks the text of a tool result in place; returns a PluginResult without modified_payload."""

    def tool_post_invoke(self, payload: mw.ToolPostInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        for item in payload.result["content"]:
            item["text"] = item["text"].replace(SECRET, MASK)
        return mw.PluginResult(metadata={"redacted": True})


class ReturnsItself(mw.Plugin):
    """Changes in place and hands back the same object as modified_payload."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        payload.args["text"] = MASK
        return mw.PluginResult(modified_payload=payload)


class HeaderInPlace(mw.Plugin):
    """Replaces one header and adds another, in the headers list itself."""

    def http_pre_request(self, payload: mw.HttpPreRequestPayload, context: mw.PluginContext) -> None:
        for index, (name, _value) in enumerate(payload.headers):
            if name == "x-card":
                payload.headers[index] = ("x-card", MASK)
        payload.headers.append(("x-checked", "yes"))


class Vandal(mw.Plugin):
    """Scribbles over the arguments in place; configured where it may not modify."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        payload.args["text"] = "vandalised"
        payload.args.setdefault("items", []).append("vandalised")


class Witness(mw.Plugin):
    """Records the arguments it is given."""

    seen: ClassVar[list[Any]] = []

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        Witness.seen.append(orjson.loads(orjson.dumps(payload.args)))


def entry(name: str, cls: type[mw.Plugin], **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": f"{__name__}.{cls.__name__}", **extra}


# ----------------------------------------------------------------------
# The apps
# ----------------------------------------------------------------------


class Seen:
    """What an app received."""

    def __init__(self) -> None:
        self.arguments: list[Any] = []
        self.headers: list[dict[str, str]] = []


def answer(message: dict[str, Any], seen: Seen) -> dict[str, Any]:
    arguments = message["params"].get("arguments", {})
    seen.arguments.append(arguments)
    text = arguments.get("text", "")
    return {
        "jsonrpc": "2.0",
        "id": message["id"],
        "result": {"content": [{"type": "text", "text": f"card {SECRET} for {text}"}], "isError": False},
    }


def starlette_app(seen: Seen) -> Starlette:
    async def mcp(request: Request) -> JSONResponse:
        seen.headers.append(dict(request.headers))
        document = orjson.loads(await request.body())
        if isinstance(document, list):
            return JSONResponse([answer(message, seen) for message in document])
        return JSONResponse(answer(document, seen))

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])


def flask_app(seen: Seen) -> Flask:
    app = Flask(__name__)

    @app.post("/mcp")
    def mcp() -> Response:
        seen.headers.append(dict(request.headers))
        return Response(orjson.dumps(answer(orjson.loads(request.get_data()), seen)), mimetype="application/json")

    return app


def call(arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "pay", "arguments": arguments}}


async def post_asgi(plugins: list[dict[str, Any]], document: Any, **headers: str) -> tuple[Seen, httpx.Response]:
    seen = Seen()
    app = mw.PluginMiddleware(starlette_app(seen), config={"plugins": plugins})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        response = await client.post(
            "/mcp",
            content=orjson.dumps(document),
            headers={"content-type": "application/json", "accept": "application/json", **headers},
        )
    return seen, response


@pytest.fixture(autouse=True)
def _fresh_witness() -> None:
    Witness.seen = []


# ----------------------------------------------------------------------
# Request side
# ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RedactArgs, AsyncRedactArgs, RedactArgsInThread, ReturnsItself])
async def test_args_changed_in_place_reach_the_app(cls: type[mw.Plugin]) -> None:
    seen, response = await post_asgi([entry("redact", cls)], call({"text": f"pay with {SECRET}"}))
    assert response.status_code == 200
    assert seen.arguments == [{"text": f"pay with {MASK}" if cls is not ReturnsItself else MASK}]
    assert SECRET not in orjson.dumps(seen.arguments).decode()


async def test_nested_change_in_place_reaches_the_app() -> None:
    arguments = {"text": "x", "items": ["ok", SECRET], "meta": {"cards": []}}
    seen, response = await post_asgi([entry("nested", RedactNested)], call(arguments))
    assert response.status_code == 200
    assert seen.arguments == [{"text": "x", "items": ["ok", MASK], "meta": {"cards": ["checked"]}}]


async def test_in_place_change_chains_to_the_next_plugin() -> None:
    plugins = [entry("redact", RedactArgs, priority=1), entry("witness", Witness, priority=2)]
    seen, _ = await post_asgi(plugins, call({"text": SECRET}))
    assert Witness.seen == [{"text": MASK}]
    assert seen.arguments == [{"text": MASK}]


async def test_headers_changed_in_place_reach_the_app() -> None:
    seen, response = await post_asgi([entry("headers", HeaderInPlace)], call({"text": "x"}), **{"x-card": SECRET})
    assert response.status_code == 200
    assert seen.headers[0]["x-card"] == MASK
    assert seen.headers[0]["x-checked"] == "yes"


# ----------------------------------------------------------------------
# Response side
# ----------------------------------------------------------------------


async def test_result_changed_in_place_never_reaches_the_client() -> None:
    seen, response = await post_asgi([entry("redact", RedactResult)], call({"text": "x"}))
    assert response.status_code == 200
    assert SECRET not in response.text
    assert response.json()["result"]["content"][0]["text"] == f"card {MASK} for x"
    assert response.headers["content-length"] == str(len(response.content))


async def test_result_changed_in_place_in_a_batch() -> None:
    _, response = await post_asgi([entry("redact", RedactResult)], [call({"text": "a"}, 1), call({"text": "b"}, 2)])
    assert SECRET not in response.text
    assert [m["result"]["content"][0]["text"] for m in response.json()] == [f"card {MASK} for a", f"card {MASK} for b"]


# ----------------------------------------------------------------------
# Categories that may not modify
# ----------------------------------------------------------------------


@pytest.mark.parametrize("category", ["audit", "validation", "observability"])
async def test_in_place_change_where_it_may_not_modify_is_dropped(
    category: str, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = [entry("vandal", Vandal, category=category), entry("witness", Witness)]
    seen, response = await post_asgi(plugins, call({"text": "original"}))
    assert response.status_code == 200
    assert Witness.seen == [{"text": "original"}]
    assert seen.arguments == [{"text": "original"}]
    assert any("vandal" in message and "dropped" in message for message in caplog.messages)


async def test_dropped_change_does_not_leak_into_a_reencoded_batch() -> None:
    # The second call is changed by a content plugin, so the batch is
    # re-encoded; the audit plugin's change to the first must not ride along.
    plugins = [entry("vandal", Vandal, category="audit"), entry("redact", RedactArgs)]
    batch = [call({"text": "one", "items": ["a"]}, 1), call({"text": f"two {SECRET}"}, 2)]
    seen, _ = await post_asgi(plugins, batch)
    assert seen.arguments == [{"text": "one", "items": ["a"]}, {"text": f"two {MASK}"}]


def test_concurrent_batch_change_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    manager = mw.PluginManager(
        {
            "plugins": [
                entry("vandal", Vandal, category="observability"),
                entry("other", Witness, category="observability"),
            ]
        }
    )
    payload = mw.ToolPreInvokePayload(name="pay", args={"text": "original", "items": ["a"]})
    with manager:
        result = manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id="1"))
    assert result.continue_processing
    # What goes on is the original: a fresh copy, since the old one was touched.
    assert result.modified_payload is not None
    assert result.modified_payload.args == {"text": "original", "items": ["a"]}
    assert any("vandal" in message and "dropped" in message for message in caplog.messages)


# ----------------------------------------------------------------------
# The executor directly: records, failures, non-JSON values
# ----------------------------------------------------------------------


class BreaksAfterChanging(mw.Plugin):
    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
        payload.args["text"] = "half done"
        raise RuntimeError("boom")


class ChangesAndBlocks(mw.Plugin):
    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult:
        payload.args["text"] = "changed"
        return mw.PluginResult(continue_processing=False, violation=mw.PluginViolation(reason="no"))


def invoke(plugins: list[dict[str, Any]], args: dict[str, Any]) -> mw.models.HookResult:
    with mw.PluginManager({"plugins": plugins}) as manager:
        payload = mw.ToolPreInvokePayload(name="pay", args=args)
        return manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id="1"))


def test_in_place_change_is_recorded_as_a_modification() -> None:
    result = invoke([entry("redact", RedactArgs)], {"text": SECRET})
    assert [record.outcome for record in result.records] == [Outcome.MODIFIED]
    assert result.modified_payload.args == {"text": MASK}


def test_untouched_payload_is_not_modified() -> None:
    result = invoke([entry("witness", Witness)], {"text": "x", "items": [1, 2.5, None]})
    assert result.modified_payload is None
    assert [record.outcome for record in result.records] == [Outcome.PASSED]


@pytest.mark.parametrize("mode", ["enforce_ignore_error", "permissive"])
def test_change_of_a_failed_plugin_is_dropped(mode: str) -> None:
    result = invoke([entry("broken", BreaksAfterChanging, mode=mode), entry("witness", Witness)], {"text": "x"})
    assert result.continue_processing
    assert Witness.seen == [{"text": "x"}]
    assert result.modified_payload.args == {"text": "x"}


def test_failed_plugin_in_enforce_blocks_with_plugin_error() -> None:
    result = invoke([entry("broken", BreaksAfterChanging)], {"text": "x"})
    assert not result.continue_processing
    assert result.violation.code == "PLUGIN_ERROR"


def test_change_with_an_ignored_violation_is_dropped() -> None:
    result = invoke([entry("blocker", ChangesAndBlocks, mode="permissive"), entry("witness", Witness)], {"text": "x"})
    assert result.continue_processing
    assert Witness.seen == [{"text": "x"}]
    assert [record.outcome for record in result.records] == [Outcome.VIOLATION_IGNORED, Outcome.PASSED]


def test_dropped_change_restores_tuples_and_shared_containers() -> None:
    class Scribble(mw.Plugin):
        def http_pre_request(self, payload: mw.HttpPreRequestPayload, context: mw.PluginContext) -> None:
            payload.headers.append(("x-evil", "1"))

    plugin = Scribble(mw.PluginConfig(name="scribble", kind="x.Scribble", category="audit"))
    manager = mw.PluginManager({})
    manager.register(plugin)
    headers = [("host", "example")]
    payload = mw.HttpPreRequestPayload.model_construct(
        method="GET", path="/", query_string="", headers=headers, client=None, body=b""
    )
    with manager:
        result = manager.invoke_sync("http_pre_request", payload, mw.GlobalContext(request_id="1"))
    assert result.modified_payload.headers == [("host", "example")]
    assert headers == [("host", "example")]  # a list shared with the caller is refilled too


def test_non_json_values_changed_in_place_are_still_seen() -> None:
    class Marker:
        def __init__(self) -> None:
            self.state = "clean"

        def __repr__(self) -> str:
            return f"Marker({self.state})"

    class Dirty(mw.Plugin):
        def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> None:
            payload.args["marker"].state = "dirty"

    for category, expected in (("content", Outcome.MODIFIED), ("audit", Outcome.ERROR)):
        manager = mw.PluginManager({})
        manager.register(Dirty(mw.PluginConfig(name="dirty", kind="x.Dirty", category=category)))
        payload = mw.ToolPreInvokePayload(name="pay", args={"marker": Marker()})
        with manager:
            result = manager.invoke_sync("tool_pre_invoke", payload, mw.GlobalContext(request_id="1"))
        assert [record.outcome for record in result.records] == [expected]
        if category == "audit":  # cannot be put back: a failure, and enforce blocks
            assert result.violation.code == "PLUGIN_ERROR"


async def test_async_invoke_with_sync_and_async_plugins() -> None:
    plugins = [entry("a", AsyncRedactArgs, priority=1), entry("b", Witness, priority=2)]
    async with mw.PluginManager({"plugins": plugins}) as manager:
        payload = mw.ToolPreInvokePayload(name="pay", args={"text": SECRET})
        result = await manager.invoke("tool_pre_invoke", payload, mw.GlobalContext(request_id="1"))
    assert result.modified_payload.args == {"text": MASK}
    assert Witness.seen == [{"text": MASK}]


def test_logs_name_the_plugin(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "mcp_plugin_mw.executor")
    invoke([entry("vandal", Vandal, category="audit")], {"text": "x"})
    assert any("vandal" in m and "in place" in m for m in caplog.messages)


# ----------------------------------------------------------------------
# WSGI: a Flask app behind WSGIPluginMiddleware
# ----------------------------------------------------------------------


def post_wsgi(plugins: list[dict[str, Any]], document: Any, **headers: str) -> tuple[Seen, Any]:
    seen = Seen()
    app = flask_app(seen)
    app.wsgi_app = mw.WSGIPluginMiddleware(app.wsgi_app, config={"plugins": plugins})  # type: ignore[method-assign]
    response = app.test_client().post(
        "/mcp", data=orjson.dumps(document), headers={"content-type": "application/json", **headers}
    )
    return seen, response


@pytest.mark.parametrize("cls", [RedactArgs, AsyncRedactArgs, RedactArgsInThread])
def test_wsgi_args_changed_in_place_reach_the_app(cls: type[mw.Plugin]) -> None:
    seen, response = post_wsgi([entry("redact", cls)], call({"text": f"pay with {SECRET}"}))
    assert response.status_code == 200
    assert seen.arguments == [{"text": f"pay with {MASK}"}]


def test_wsgi_nested_change_and_result_redaction() -> None:
    plugins = [entry("nested", RedactNested), entry("result", RedactResult)]
    seen, response = post_wsgi(plugins, call({"text": "x", "items": [SECRET], "meta": {"cards": []}}))
    assert seen.arguments == [{"text": "x", "items": [MASK], "meta": {"cards": ["checked"]}}]
    assert SECRET not in response.get_data(as_text=True)
    assert response.get_json()["result"]["content"][0]["text"] == f"card {MASK} for x"


def test_wsgi_headers_changed_in_place_reach_the_app() -> None:
    seen, _ = post_wsgi([entry("headers", HeaderInPlace)], call({"text": "x"}), **{"X-Card": SECRET})
    assert seen.headers[0]["X-Card"] == MASK
    assert seen.headers[0]["X-Checked"] == "yes"


# ----------------------------------------------------------------------
# Large payloads: in-place checks batched between plugins that may modify
# ----------------------------------------------------------------------

BULK = "x" * 40_000  # past the size at which checks are batched


@pytest.mark.parametrize("late", ["witness-first", "redact-first"])
def test_large_in_place_change_is_kept_and_seen_by_the_next_plugin(late: str) -> None:
    order = [entry("redact", RedactArgs), entry("witness", Witness)]
    if late == "witness-first":
        order.reverse()
    result = invoke(order, {"text": SECRET, "bulk": BULK})
    assert result.modified_payload is not None
    assert result.modified_payload.args["text"] == MASK
    assert Witness.seen[-1]["text"] == (MASK if late == "redact-first" else SECRET)
    outcomes = {record.plugin: record.outcome for record in result.records}
    assert Outcome.MODIFIED in outcomes.values()


def test_large_change_before_a_plugin_that_may_not_modify_is_kept_and_its_own_dropped() -> None:
    result = invoke(
        [entry("redact", RedactArgs), entry("vandal", Vandal, category="audit"), entry("witness", Witness)],
        {"text": SECRET, "bulk": BULK},
    )
    assert result.modified_payload.args["text"] == MASK
    assert "items" not in result.modified_payload.args
    assert Witness.seen[-1]["text"] == MASK
    # Audit runs last; the batched check records the change on the last
    # content plugin before it that could have made it.
    assert [(record.plugin, record.outcome) for record in result.records] == [
        ("redact", Outcome.PASSED),
        ("witness", Outcome.MODIFIED),
        ("vandal", Outcome.MODIFICATION_DROPPED),
    ]


def test_large_untouched_payload_is_not_modified() -> None:
    result = invoke([entry("witness", Witness), entry("witness2", Witness)], {"text": "x", "bulk": BULK})
    assert result.modified_payload is None
    assert [record.outcome for record in result.records] == [Outcome.PASSED, Outcome.PASSED]
