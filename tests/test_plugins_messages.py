"""The text filters on server and client messages (``server_message`` / ``client_message``).

Progress and log notifications, sampling and elicitation requests, and the
client's answers to them, run through a :class:`~mcp_plugin_mw.PluginManager`
built from a dict configuration with the plugins' short kinds, as users
load them; the walker's choices (which keys are text) are checked directly.
"""

from __future__ import annotations

from typing import Any

import pytest

import mcp_plugin_mw as mw
from mcp_plugin_mw.models import HookResult, HookType
from mcp_plugin_mw.plugins._base import transform_payload
from mcp_plugin_mw.plugins.deny_list import DenyListPlugin
from mcp_plugin_mw.plugins.pii import PIIFilterPlugin
from mcp_plugin_mw.plugins.regex_replace import RegexReplacePlugin
from mcp_plugin_mw.plugins.secrets import SecretsDetectionPlugin

EMAIL = "bob@example.com"
MASKED = "[REDACTED:EMAIL]"
AWS_KEY = "AKIA2E0A8F3B244C9986"


def manager(kind: str, **config: Any) -> mw.PluginManager:
    return mw.PluginManager({"plugins": [{"name": "p", "kind": kind, "config": config}]})


def pii() -> mw.PluginManager:
    return manager("pii_filter")


def server(mgr: mw.PluginManager, method: str, params: dict[str, Any], id: Any = None) -> HookResult:
    payload = mw.ServerMessagePayload(method=method, params=params, id=id)
    return mgr.invoke_sync("server_message", payload, mw.GlobalContext(request_id="r"))


def client(mgr: mw.PluginManager, **fields: Any) -> HookResult:
    payload = mw.ClientMessagePayload(**fields)
    return mgr.invoke_sync("client_message", payload, mw.GlobalContext(request_id="r"))


def upper(text: str) -> str:
    return text.upper() if "secret" in text else text


# --------------------------------------------------------------------------
# Server messages through the PII filter
# --------------------------------------------------------------------------


class TestServerMessages:
    def test_progress_message_masked_token_and_meta_untouched(self) -> None:
        meta = {"note": f"from {EMAIL}"}
        params = {
            "progressToken": f"tok-{EMAIL}",
            "progress": 3,
            "total": 10,
            "message": f"mailing {EMAIL}",
            "_meta": meta,
        }
        result = server(pii(), "notifications/progress", params)
        assert result.continue_processing
        new = result.modified_payload
        assert isinstance(new, mw.ServerMessagePayload)
        assert new.params["message"] == f"mailing {MASKED}"
        assert new.params["progressToken"] == f"tok-{EMAIL}"
        assert new.params["_meta"] is meta
        assert new.params["progress"] == 3
        assert new.method == "notifications/progress"
        assert params["message"] == f"mailing {EMAIL}"  # the original is intact
        assert result.metadata["p"] == {"found": {"EMAIL": 1}}

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            (f"user {EMAIL} logged in", f"user {MASKED} logged in"),
            ({"user": EMAIL, "attempts": 2, EMAIL: "key stays"}, {"user": MASKED, "attempts": 2, EMAIL: "key stays"}),
            (
                {"events": [["login", {"who": EMAIL}], [None, True, 1.5]]},
                {"events": [["login", {"who": MASKED}], [None, True, 1.5]]},
            ),
            ([EMAIL, [EMAIL, {"x": [EMAIL]}]], [MASKED, [MASKED, {"x": [MASKED]}]]),
        ],
        ids=["string", "dict", "nested-dict", "nested-list"],
    )
    def test_log_data_of_any_shape(self, data: Any, expected: Any) -> None:
        params = {"level": "info", "logger": "auth", "data": data}
        new = server(pii(), "notifications/message", params).modified_payload
        assert new.params == {"level": "info", "logger": "auth", "data": expected}

    def test_log_logger_is_text(self) -> None:
        params = {"level": "info", "logger": f"user {EMAIL}", "data": "plain"}
        new = server(pii(), "notifications/message", params).modified_payload
        assert new.params["logger"] == f"user {MASKED}"

    def test_sampling_request_messages_and_system_prompt(self) -> None:
        image = {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}
        params = {
            "messages": [
                {"role": "user", "content": {"type": "text", "text": f"write to {EMAIL}"}},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": f"cc {EMAIL}"},
                        image,
                        {"type": "tool_use", "id": "tu1", "name": "send", "input": {"to": EMAIL}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "toolUseId": "tu1",
                            "content": [{"type": "text", "text": f"sent to {EMAIL}"}],
                            "structuredContent": {"to": EMAIL},
                        }
                    ],
                },
            ],
            "systemPrompt": f"The user is {EMAIL}",
            "maxTokens": 100,
            "metadata": {"tenant": "acme"},
        }
        result = server(pii(), "sampling/createMessage", params, id=7)
        new = result.modified_payload
        assert new.id == 7
        messages = new.params["messages"]
        assert messages[0]["content"] == {"type": "text", "text": f"write to {MASKED}"}
        assert messages[1]["content"][0]["text"] == f"cc {MASKED}"
        assert messages[1]["content"][1] is image
        assert messages[1]["content"][2] == {"type": "tool_use", "id": "tu1", "name": "send", "input": {"to": MASKED}}
        tool_result = messages[2]["content"][0]
        assert tool_result["content"] == [{"type": "text", "text": f"sent to {MASKED}"}]
        assert tool_result["structuredContent"] == {"to": MASKED}
        assert tool_result["toolUseId"] == "tu1"
        assert new.params["systemPrompt"] == f"The user is {MASKED}"
        assert new.params["metadata"] is params["metadata"]
        assert result.metadata["p"] == {"found": {"EMAIL": 6}}

    def test_elicitation_message_and_schema(self) -> None:
        schema = {
            "type": "object",
            "properties": {
                "contact": {
                    "type": "string",
                    "format": "email",
                    "title": f"Reply to {EMAIL}?",
                    "description": f"We will write to {EMAIL}",
                    "default": EMAIL,
                },
                "type": {"type": "string", "title": "Kind", "enum": ["a", EMAIL], "enumNames": ["A", f"B {EMAIL}"]},
                "pick": {"type": "string", "oneOf": [{"const": EMAIL, "title": f"Me ({EMAIL})"}]},
            },
            "required": ["contact", "type"],
        }
        params = {"mode": "form", "message": f"Confirm {EMAIL}", "requestedSchema": schema}
        new = server(pii(), "elicitation/create", params, id="e1").modified_payload
        assert new.params["message"] == f"Confirm {MASKED}"
        props = new.params["requestedSchema"]["properties"]
        assert props["contact"] == {
            "type": "string",
            "format": "email",
            "title": f"Reply to {MASKED}?",
            "description": f"We will write to {MASKED}",
            "default": MASKED,
        }
        # A property named like a keyword is still a property, walked as a schema.
        assert props["type"] == {
            "type": "string",
            "title": "Kind",
            "enum": ["a", MASKED],
            "enumNames": ["A", f"B {MASKED}"],
        }
        assert props["pick"]["oneOf"] == [{"const": MASKED, "title": f"Me ({MASKED})"}]
        assert new.params["requestedSchema"]["required"] == ["contact", "type"]
        assert new.params["mode"] == "form"

    def test_elicitation_url_only_for_blocking(self) -> None:
        params = {"mode": "url", "elicitationId": "x", "message": "go", "url": f"https://example.com/?u={EMAIL}"}
        assert server(pii(), "elicitation/create", params).modified_payload is None
        blocked = server(manager("pii_filter", strategy="block"), "elicitation/create", params)
        assert not blocked.continue_processing

    def test_unknown_method_every_string_but_protocol_keys(self) -> None:
        params = {
            "reason": f"cancelled by {EMAIL}",
            "requestId": EMAIL,
            "cursor": EMAIL,
            "nested": [{"note": EMAIL, "type": EMAIL, "uri": f"mailto:{EMAIL}"}],
            "_meta": {"who": EMAIL},
        }
        new = server(pii(), "notifications/custom", params).modified_payload
        assert new.params == {
            "reason": f"cancelled by {MASKED}",
            "requestId": EMAIL,
            "cursor": EMAIL,
            "nested": [{"note": MASKED, "type": EMAIL, "uri": f"mailto:{EMAIL}"}],
            "_meta": {"who": EMAIL},
        }

    def test_resource_updated_uri_rewritten_only_by_uri_rewriters(self) -> None:
        params = {"uri": "file:///old/report.txt"}
        assert server(pii(), "notifications/resources/updated", params).modified_payload is None
        rewriter = manager("regex_replace", rules=[{"search": "old", "replace": "new"}])
        new = server(rewriter, "notifications/resources/updated", params).modified_payload
        assert new.params == {"uri": "file:///new/report.txt"}

    def test_task_status_only_status_message(self) -> None:
        params = {
            "taskId": EMAIL,
            "status": "failed",
            "statusMessage": f"could not reach {EMAIL}",
            "createdAt": "2025-11-25T10:00:00Z",
            "lastUpdatedAt": "2025-11-25T10:00:01Z",
            "ttl": None,
        }
        new = server(pii(), "notifications/tasks/status", params).modified_payload
        assert new.params == {**params, "statusMessage": f"could not reach {MASKED}"}


# --------------------------------------------------------------------------
# Client messages
# --------------------------------------------------------------------------


class TestClientMessages:
    def test_sampling_result_content(self) -> None:
        result = {
            "role": "assistant",
            "content": {"type": "text", "text": f"Their address is {EMAIL}"},
            "model": "claude-x",
            "stopReason": "endTurn",
        }
        hook = client(pii(), id=7, result=result)
        new = hook.modified_payload
        assert isinstance(new, mw.ClientMessagePayload)
        assert new.result == {**result, "content": {"type": "text", "text": f"Their address is {MASKED}"}}
        assert new.id == 7
        assert new.method is None

    def test_sampling_result_content_list(self) -> None:
        result = {
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": EMAIL}, {"type": "text", "text": "ok"}],
        }
        new = client(pii(), id=1, result=result).modified_payload
        assert new.result["content"] == [{"type": "text", "text": MASKED}, {"type": "text", "text": "ok"}]
        assert new.result["content"][1] is result["content"][1]

    def test_elicitation_result_content(self) -> None:
        result = {
            "action": "accept",
            "content": {"email": EMAIL, "others": ["x", EMAIL], "age": 30, "ok": True},
            "_meta": {"email": EMAIL},
        }
        new = client(pii(), id="e1", result=result).modified_payload
        assert new.result == {
            "action": "accept",
            "content": {"email": MASKED, "others": ["x", MASKED], "age": 30, "ok": True},
            "_meta": {"email": EMAIL},
        }

    def test_completion_argument_and_context(self) -> None:
        params = {
            "ref": {"type": "ref/prompt", "name": "greet"},
            "argument": {"name": "to", "value": EMAIL},
            "context": {"arguments": {"cc": EMAIL}},
        }
        new = client(pii(), method="completion/complete", params=params, id=3).modified_payload
        assert new.params == {
            "ref": {"type": "ref/prompt", "name": "greet"},
            "argument": {"name": "to", "value": MASKED},
            "context": {"arguments": {"cc": MASKED}},
        }

    def test_notification_and_roots_result(self) -> None:
        params = {"requestId": 4, "reason": f"user {EMAIL} gave up"}
        new = client(pii(), method="notifications/cancelled", params=params).modified_payload
        assert new.params == {"requestId": 4, "reason": f"user {MASKED} gave up"}
        roots = {"roots": [{"uri": "file:///home/bob", "name": f"{EMAIL}'s home"}]}
        new = client(pii(), id=9, result=roots).modified_payload
        assert new.result == {"roots": [{"uri": "file:///home/bob", "name": f"{MASKED}'s home"}]}

    def test_initialize_left_alone(self) -> None:
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": EMAIL, "version": "1"}}
        hook = client(pii(), method="initialize", params=params, id=0)
        assert hook.modified_payload is None


# --------------------------------------------------------------------------
# The other filters
# --------------------------------------------------------------------------


class TestOtherFilters:
    def test_secrets_block_aws_key_in_log(self) -> None:
        params = {"level": "error", "data": {"error": "bad creds", "env": [f"AWS_ACCESS_KEY_ID={AWS_KEY}"]}}
        result = server(manager("secrets_detection", action="block"), "notifications/message", params)
        assert not result.continue_processing
        assert result.violation is not None
        assert result.violation.code == "SECRETS_DETECTED"
        assert AWS_KEY not in repr(result.violation)

    def test_secrets_redact_aws_key_in_log(self) -> None:
        params = {"level": "error", "data": f"key {AWS_KEY}"}
        new = server(manager("secrets_detection"), "notifications/message", params).modified_payload
        assert AWS_KEY not in new.params["data"]
        assert "[REDACTED:" in new.params["data"]

    def test_deny_list_blocks_progress_message(self) -> None:
        mgr = manager("deny_list", terms=["project falcon"])
        result = server(
            mgr, "notifications/progress", {"progressToken": 1, "progress": 1, "message": "Project Falcon: 10%"}
        )
        assert not result.continue_processing
        assert result.violation is not None
        assert result.violation.code == "DENY_LIST"
        fine = server(mgr, "notifications/progress", {"progressToken": 1, "progress": 1, "message": "halfway"})
        assert fine.continue_processing
        assert fine.modified_payload is None

    def test_deny_list_redacts_progress_message(self) -> None:
        mgr = manager("deny_list", terms=["falcon"], action="redact")
        new = server(
            mgr, "notifications/progress", {"progressToken": "falcon", "message": "falcon at 10%"}
        ).modified_payload
        assert new.params == {"progressToken": "falcon", "message": "[REDACTED] at 10%"}

    def test_regex_replace_progress_message(self) -> None:
        mgr = manager("regex_replace", rules=[{"search": r"(\d+)%", "replace": r"\1 percent"}])
        params = {"progressToken": "50%", "progress": 50, "message": "done 50%"}
        new = server(mgr, "notifications/progress", params).modified_payload
        assert new.params == {"progressToken": "50%", "progress": 50, "message": "done 50 percent"}

    def test_regex_replace_client_elicitation_answer(self) -> None:
        mgr = manager("regex_replace", rules=[{"search": "internal", "replace": "public"}])
        new = client(mgr, id=2, result={"action": "accept", "content": {"note": "internal memo"}}).modified_payload
        assert new.result == {"action": "accept", "content": {"note": "public memo"}}


# --------------------------------------------------------------------------
# Identity: nothing found, nothing copied
# --------------------------------------------------------------------------


class TestIdentity:
    @pytest.mark.parametrize(
        ("method", "params"),
        [
            (
                "notifications/progress",
                {"progressToken": EMAIL, "progress": 1, "message": "halfway", "_meta": {"a": EMAIL}},
            ),
            ("notifications/message", {"level": "info", "data": {"a": ["plain", 1, None]}}),
            ("sampling/createMessage", {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]}),
            ("elicitation/create", {"message": "name?", "requestedSchema": {"type": "object", "properties": {}}}),
            ("notifications/custom", {"a": ["plain"], "_meta": {"x": EMAIL}, "cursor": EMAIL}),
            ("notifications/resources/updated", {"uri": f"mailto:{EMAIL}"}),
        ],
    )
    def test_unchanged_server_message_passes(self, method: str, params: dict[str, Any]) -> None:
        mgr = pii()
        result = server(mgr, method, params)
        assert result.continue_processing
        assert result.modified_payload is None
        payload = mw.ServerMessagePayload(method=method, params=params)
        assert transform_payload(payload, upper) is payload

    def test_unchanged_client_messages_pass(self) -> None:
        for fields in (
            {"method": "notifications/initialized"},
            {"method": "completion/complete", "params": {"argument": {"name": "a", "value": "b"}}, "id": 1},
            {"id": 2, "result": {"action": "decline"}},
            {"id": 3, "result": {"model": "m", "role": "assistant", "content": {"type": "text", "text": "ok"}}},
            {"id": 4, "result": {}},
        ):
            assert client(pii(), **fields).modified_payload is None
            payload = mw.ClientMessagePayload(**fields)
            assert transform_payload(payload, upper) is payload

    def test_only_the_path_to_a_change_is_copied(self) -> None:
        untouched = {"role": "user", "content": {"type": "text", "text": "plain"}}
        changed = {"role": "user", "content": [{"type": "text", "text": "a secret"}]}
        params = {"messages": [untouched, changed], "modelPreferences": {"hints": [{"name": "secret"}]}}
        payload = mw.ServerMessagePayload(method="sampling/createMessage", params=params)
        new = transform_payload(payload, upper)
        assert new is not payload
        assert new.params["messages"][0] is untouched
        assert new.params["messages"][1]["content"] == [{"type": "text", "text": "A SECRET"}]
        assert new.params["modelPreferences"] is params["modelPreferences"]
        assert changed["content"] == [{"type": "text", "text": "a secret"}]

    def test_client_result_and_params_each_copied_only_when_changed(self) -> None:
        params = {"argument": {"name": "a", "value": "plain"}}
        payload = mw.ClientMessagePayload(method="completion/complete", params=params, result={"x": "secret"})
        new = transform_payload(payload, upper)
        assert new.params is payload.params
        assert new.result == {"x": "SECRET"}


# --------------------------------------------------------------------------
# Default hooks
# --------------------------------------------------------------------------

LIST_HOOKS = {HookType.TOOL_POST_LIST, HookType.PROMPT_POST_LIST, HookType.RESOURCE_POST_LIST}


@pytest.mark.parametrize("cls", [PIIFilterPlugin, SecretsDetectionPlugin, DenyListPlugin, RegexReplacePlugin])
def test_default_hooks_include_messages_not_lists(cls: type[mw.Plugin]) -> None:
    hooks = set(cls.default_hooks or ())
    assert {HookType.SERVER_MESSAGE, HookType.CLIENT_MESSAGE} <= hooks
    assert not hooks & LIST_HOOKS
    assert callable(getattr(cls, "server_message", None))
    assert callable(getattr(cls, "client_message", None))


@pytest.mark.parametrize("kind", ["pii_filter", "secrets_detection", "deny_list", "regex_replace"])
def test_managers_run_the_message_hooks_by_default(kind: str) -> None:
    configs: dict[str, dict[str, Any]] = {
        "deny_list": {"terms": ["falcon"]},
        "regex_replace": {"rules": [{"search": "a", "replace": "b"}]},
    }
    config = configs.get(kind, {})
    mgr = manager(kind, **config)
    for hook in ("server_message", "client_message"):
        payload: Any = (
            mw.ServerMessagePayload(method="notifications/progress", params={"message": "x"})
            if hook == "server_message"
            else mw.ClientMessagePayload(method="notifications/initialized")
        )
        result = mgr.invoke_sync(hook, payload, mw.GlobalContext(request_id="r"))
        assert [record.plugin for record in result.records] == ["p"]
