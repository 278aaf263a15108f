"""The pipeline rules of DESIGN §5 and §6, through the public manager.

Most tests run twice through the ``call`` fixture: once with
``await manager.invoke`` and once with ``manager.invoke_sync`` from a thread,
since the executor implements the same rules on both paths.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from mcp_plugin_mw import (
    ClientMessagePayload,
    Flow,
    GlobalContext,
    HookType,
    HttpPostRequestPayload,
    HttpPreRequestPayload,
    PromptListPayload,
    PromptPosthookPayload,
    PromptPrehookPayload,
    ResourceListPayload,
    ResourcePostFetchPayload,
    ResourcePreFetchPayload,
    ServerMessagePayload,
    ToolListPayload,
    ToolPostInvokePayload,
    ToolPreInvokePayload,
)
from mcp_plugin_mw.models import ExecutionRecord, HookResult, Outcome, PluginContext, fresh_plugin_context
from tests.sample_plugins import BOUND, Rendezvous, entry, tool_post, tool_pre


def ran(context: GlobalContext) -> list[str]:
    return list(context.state.get("ran", []))


def outcomes(result: Any) -> dict[str, Outcome]:
    return {record.plugin: record.outcome for record in result.records}


PAYLOADS: dict[HookType, Any] = {
    HookType.TOOL_PRE_INVOKE: ToolPreInvokePayload(name="search", args={"q": "x"}),
    HookType.TOOL_POST_INVOKE: ToolPostInvokePayload(name="search", result={"content": []}),
    HookType.PROMPT_PRE_FETCH: PromptPrehookPayload(prompt_id="greet", args={}),
    HookType.PROMPT_POST_FETCH: PromptPosthookPayload(prompt_id="greet", result={"messages": []}),
    HookType.RESOURCE_PRE_FETCH: ResourcePreFetchPayload(uri="file:///etc/motd"),
    HookType.RESOURCE_POST_FETCH: ResourcePostFetchPayload(uri="file:///etc/motd", content={"contents": []}),
    HookType.HTTP_PRE_REQUEST: HttpPreRequestPayload(method="GET", path="/x"),
    HookType.HTTP_POST_REQUEST: HttpPostRequestPayload(method="GET", path="/x", status_code=200),
    HookType.TOOL_POST_LIST: ToolListPayload(tools=[{"name": "search", "inputSchema": {"type": "object"}}]),
    HookType.PROMPT_POST_LIST: PromptListPayload(prompts=[{"name": "greet"}]),
    HookType.RESOURCE_POST_LIST: ResourceListPayload(resources=[{"uri": "file:///etc/motd", "name": "motd"}]),
    HookType.SERVER_MESSAGE: ServerMessagePayload(method="notifications/progress", params={"progress": 1}),
    HookType.CLIENT_MESSAGE: ClientMessagePayload(method="notifications/initialized", params={}),
}


# --------------------------------------------------------------------------
# Order, flows, chaining
# --------------------------------------------------------------------------


async def test_order_is_category_then_priority_then_file_order(make_manager, call):
    manager = make_manager(
        [
            entry("audit", "Tag", category="audit", priority=1),
            entry("content_b", "Tag", priority=50),
            entry("observe", "Tag", category="observability", priority=500),
            entry("content_a", "Tag", priority=10),
            entry("authn", "Tag", category="authentication", priority=900),
            entry("validate", "Tag", category="validation", priority=0),
            entry("rate", "Tag", category="rate_limiting"),
            entry("authz", "Tag", category="authorization"),
            entry("content_c", "Tag", priority=50),
        ]
    )
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre(), context)
    expected = ["observe", "authn", "authz", "rate", "validate", "content_a", "content_b", "content_c", "audit"]
    assert ran(context) == expected
    assert [record.plugin for record in result.records] == expected


async def test_equal_priority_keeps_file_order(make_manager, call):
    manager = make_manager([entry(name, "Tag", priority=5) for name in ["c", "a", "d", "b"]])
    context = GlobalContext(request_id="r")
    await call(manager, "tool_pre_invoke", tool_pre(), context)
    assert ran(context) == ["c", "a", "d", "b"]


@pytest.mark.parametrize("hook", list(HookType))
async def test_flow_decides_which_plugins_run(make_manager, call, hook):
    manager = make_manager(
        [
            entry("req", "Tag", flow="request"),
            entry("resp", "Tag", flow="response"),
            entry("both", "Tag", flow="both"),
        ]
    )
    context = GlobalContext(request_id="r")
    await call(manager, hook, PAYLOADS[hook], context)
    expected = ["req", "both"] if hook.is_request else ["resp", "both"]
    assert ran(context) == expected
    assert manager.has_hooks_for(hook)


def test_request_and_response_hooks_are_classified():
    request_hooks = {hook for hook in HookType if hook.flow is Flow.REQUEST}
    assert request_hooks == {
        HookType.TOOL_PRE_INVOKE,
        HookType.PROMPT_PRE_FETCH,
        HookType.RESOURCE_PRE_FETCH,
        HookType.HTTP_PRE_REQUEST,
        HookType.CLIENT_MESSAGE,
    }


def test_has_hooks_for_respects_flow_mode_and_subscriptions(make_manager):
    manager = make_manager(
        [
            entry("req", "Tag", flow="request", hooks=["tool_pre_invoke", "tool_post_invoke"]),
            entry("off", "Tag", mode="disabled", hooks=["prompt_pre_fetch"]),
            entry("http", "Tag", hooks=["http_post_request"]),
        ]
    )
    assert manager.has_hooks_for("tool_pre_invoke")
    assert manager.has_hooks_for(HookType.TOOL_PRE_INVOKE)
    assert not manager.has_hooks_for("tool_post_invoke")  # flow excludes responses
    assert not manager.has_hooks_for("prompt_pre_fetch")  # disabled
    assert not manager.has_hooks_for("resource_pre_fetch")  # nobody subscribed
    assert manager.has_hooks_for("http_post_request")
    assert not manager.has_hooks_for("http_pre_request")


async def test_no_subscriber_means_untouched_result(make_manager, call):
    manager = make_manager([entry("t", "Tag", hooks=["tool_post_invoke"])])
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre(), context)
    assert result.continue_processing
    assert result.modified_payload is None
    assert result.records == []
    assert ran(context) == []


async def test_modifications_chain(make_manager, call):
    manager = make_manager(
        [
            entry("append_a", "Append", priority=1, config={"suffix": "-a"}),
            entry("upper", "Upper", priority=2),
            entry("append_b", "AsyncAppend", priority=3, config={"suffix": "-b"}),
        ]
    )
    payload = tool_pre("x")
    result = await call(manager, "tool_pre_invoke", payload)
    # Upper saw append_a's output and append_b saw upper's.
    assert result.modified_payload.args == {"text": "X-A-b"}
    assert payload.args == {"text": "x"}  # the caller's payload is untouched
    assert outcomes(result) == {"append_a": Outcome.MODIFIED, "upper": Outcome.MODIFIED, "append_b": Outcome.MODIFIED}


async def test_response_hooks_chain_too(make_manager, call):
    manager = make_manager([entry("upper", "Upper", priority=1), entry("append", "Append", config={"suffix": "!"})])
    result = await call(manager, "tool_post_invoke", tool_post("done"))
    assert result.modified_payload.result == {"text": "DONE!"}


async def test_unchanged_payload_gives_none(make_manager, call):
    manager = make_manager([entry("tag", "Tag"), entry("async_tag", "AsyncTag")])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.continue_processing
    assert result.modified_payload is None
    assert outcomes(result) == {"tag": Outcome.PASSED, "async_tag": Outcome.PASSED}


async def test_block_stops_the_chain(make_manager, call):
    manager = make_manager(
        [
            entry("first", "Tag", priority=1),
            entry("blocker", "Blocker", priority=2, config={"code": "NOPE"}),
            entry("never", "Tag", priority=3),
        ]
    )
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre(), context)
    assert not result.continue_processing
    assert result.violation.code == "NOPE"
    assert result.violation.plugin_name == "blocker"
    assert result.violation.description == "blocker said no"
    assert ran(context) == ["first", "blocker"]
    assert outcomes(result) == {"first": Outcome.PASSED, "blocker": Outcome.BLOCKED}


# --------------------------------------------------------------------------
# Modes against a violation, an exception and a timeout
# --------------------------------------------------------------------------

FAILURES = {
    "violation": ("Blocker", {}),
    "exception": ("Raiser", {"message": "secret internals"}),
    "timeout": ("Sleeper", {}),
}

# (mode, failure) -> (blocks?, code, outcome of the failing plugin or None if it never ran)
EXPECTED = {
    ("enforce", "violation"): (True, "DENIED", Outcome.BLOCKED),
    ("enforce", "exception"): (True, "PLUGIN_ERROR", Outcome.ERROR),
    ("enforce", "timeout"): (True, "PLUGIN_TIMEOUT", Outcome.TIMEOUT),
    ("enforce_ignore_error", "violation"): (True, "DENIED", Outcome.BLOCKED),
    ("enforce_ignore_error", "exception"): (False, None, Outcome.ERROR),
    ("enforce_ignore_error", "timeout"): (False, None, Outcome.TIMEOUT),
    ("permissive", "violation"): (False, None, Outcome.VIOLATION_IGNORED),
    ("permissive", "exception"): (False, None, Outcome.ERROR),
    ("permissive", "timeout"): (False, None, Outcome.TIMEOUT),
    ("disabled", "violation"): (False, None, None),
    ("disabled", "exception"): (False, None, None),
    ("disabled", "timeout"): (False, None, None),
}


@pytest.mark.parametrize(("mode", "failure"), list(EXPECTED))
async def test_modes(make_manager, call, mode, failure):
    cls, config = FAILURES[failure]
    manager = make_manager(
        [
            entry("subject", cls, mode=mode, priority=1, timeout=0.1, config=config),
            entry("after", "Append", priority=2, config={"suffix": "-after"}),
        ]
    )
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre("x"), context)
    blocks, code, outcome = EXPECTED[mode, failure]

    assert outcomes(result).get("subject") == outcome
    if blocks:
        assert not result.continue_processing
        assert result.violation.code == code
        assert result.violation.plugin_name == "subject"
        assert "after" not in ran(context)
        assert result.modified_payload is None
    else:
        assert result.continue_processing
        assert result.violation is None
        assert result.modified_payload.args == {"text": "x-after"}
        assert outcomes(result)["after"] is Outcome.MODIFIED
    if outcome is None:
        assert "subject" not in ran(context)


@pytest.mark.parametrize("failure", ["exception", "timeout"])
async def test_failure_violation_carries_code_and_hides_internals(make_manager, call, failure):
    cls, config = FAILURES[failure]
    manager = make_manager([entry("subject", cls, timeout=0.1, config=config)])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    violation = result.violation
    record = result.records[0]
    if failure == "exception":
        assert violation.code == "PLUGIN_ERROR"
        assert violation.http_status_code == 500
        assert record.error == "RuntimeError: secret internals"
    else:
        assert violation.code == "PLUGIN_TIMEOUT"
        assert violation.http_status_code == 504
        assert record.error == "timed out after 0.1s"
    assert violation.mcp_error_code == -32603
    assert violation.details["plugin"] == "subject"
    # The error text is for logs and records, never for the client.
    assert "secret internals" not in f"{violation.reason} {violation.description} {violation.details}"


async def test_fail_on_plugin_error_blocks_even_permissive(make_manager, call):
    plugins = [
        entry("subject", "Raiser", mode="permissive", priority=1),
        entry("after", "Tag", priority=2),
    ]
    lenient = await call(make_manager(plugins), "tool_pre_invoke", tool_pre())
    assert lenient.continue_processing

    strict = await call(make_manager(plugins, fail_on_plugin_error=True), "tool_pre_invoke", tool_pre())
    assert not strict.continue_processing
    assert strict.violation.code == "PLUGIN_ERROR"
    assert [record.plugin for record in strict.records] == ["subject"]


async def test_fail_on_plugin_error_does_not_enforce_permissive_violations(make_manager, call):
    manager = make_manager([entry("subject", "Blocker", mode="permissive")], fail_on_plugin_error=True)
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.continue_processing
    assert outcomes(result) == {"subject": Outcome.VIOLATION_IGNORED}


@pytest.mark.parametrize(
    ("cls", "config", "message"),
    [
        ("WrongType", {"value": "nope"}, "hook returned str, expected PluginResult or None"),
        ("WrongType", {"value": {"continue_processing": False}}, "hook returned dict"),
        ("WrongPayload", {}, "modified_payload is PromptPrehookPayload, expected ToolPreInvokePayload"),
    ],
)
@pytest.mark.parametrize("mode", ["enforce", "enforce_ignore_error", "permissive"])
async def test_wrong_return_is_an_error_per_mode(make_manager, call, cls, config, message, mode):
    manager = make_manager(
        [entry("subject", cls, mode=mode, priority=1, config=config), entry("after", "Tag", priority=2)]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    record = result.records[0]
    assert record.plugin == "subject"
    assert record.outcome is Outcome.ERROR
    assert message in record.error
    assert result.modified_payload is None  # the bad value is never passed on
    if mode == "enforce":
        assert not result.continue_processing
        assert result.violation.code == "PLUGIN_ERROR"
    else:
        assert result.continue_processing
        assert [r.plugin for r in result.records] == ["subject", "after"]


@pytest.mark.parametrize("cls", ["Raiser", "AsyncRaiser", "BlockingRaiser", "SelfCancelled"])
async def test_a_raising_plugin_never_takes_down_the_caller(make_manager, call, cls):
    manager = make_manager(
        [entry("subject", cls, mode="permissive", priority=1), entry("after", "Append", config={"suffix": "!"})]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert outcomes(result)["subject"] is Outcome.ERROR
    assert result.modified_payload.args == {"text": "x!"}
    # The manager keeps working afterwards.
    again = await call(manager, "tool_pre_invoke", tool_pre("y"))
    assert again.modified_payload.args == {"text": "y!"}


async def test_plugin_error_raised_by_a_plugin_is_recorded(make_manager, call):
    manager = make_manager([entry("subject", "AsyncRaiser", config={"message": "bad state"})])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.records[0].error == "PluginError: bad state"
    assert result.violation.code == "PLUGIN_ERROR"


# --------------------------------------------------------------------------
# Timeouts
# --------------------------------------------------------------------------


async def test_timeout_holds_for_an_async_plugin_that_never_returns(make_manager, call):
    manager = make_manager([entry("sleeper", "Sleeper", timeout=0.2), entry("after", "Tag")])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert outcomes(result)["sleeper"] is Outcome.TIMEOUT
    assert result.violation.code == "PLUGIN_TIMEOUT"
    assert "after" not in outcomes(result)


async def test_timeout_holds_for_a_blocking_sync_plugin_that_never_returns(make_manager, call, release):
    entered = threading.Event()
    manager = make_manager(
        [
            entry(
                "stuck",
                "Stuck",
                timeout=0.2,
                mode="enforce_ignore_error",
                config={"release": release, "entered": entered},
            ),
            entry("after", "Append", config={"suffix": "!"}),
        ]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert entered.is_set()  # it really ran, and is still stuck
    assert not release.is_set()
    assert outcomes(result) == {"stuck": Outcome.TIMEOUT, "after": Outcome.MODIFIED}
    assert result.records[0].error == "timed out after 0.2s"
    assert result.modified_payload.args == {"text": "x!"}


async def test_run_in_thread_config_makes_a_sync_plugin_time_out(make_manager, call, release):
    # StuckInline does not set blocking; the configuration asks for the thread.
    # Were it run inline, it would wait out max_wait and pass instead.
    manager = make_manager(
        [entry("stuck", "StuckInline", timeout=0.2, run_in_thread=True, config={"release": release, "max_wait": 3})],
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert outcomes(result) == {"stuck": Outcome.TIMEOUT}


async def test_per_plugin_timeout_overrides_plugin_timeout(make_manager, call):
    manager = make_manager(
        [
            # Sleeps well past the shared 0.1 s but inside its own 10 s.
            entry("patient", "Napper", timeout=10, config={"seconds": 0.3}, mode="permissive"),
            # Inherits the shared timeout.
            entry("sleeper", "Sleeper", mode="permissive"),
            # Its own short timeout wins over a longer shared one elsewhere.
            entry("short", "Sleeper", timeout=0.05, mode="permissive"),
        ],
        plugin_timeout=0.1,
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert outcomes(result) == {"patient": Outcome.PASSED, "sleeper": Outcome.TIMEOUT, "short": Outcome.TIMEOUT}
    errors = {record.plugin: record.error for record in result.records}
    assert errors == {"patient": None, "sleeper": "timed out after 0.1s", "short": "timed out after 0.05s"}


# --------------------------------------------------------------------------
# Category permissions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "category", ["observability", "authentication", "authorization", "rate_limiting", "validation", "audit"]
)
async def test_change_from_a_category_that_may_not_modify_is_dropped(make_manager, call, category, caplog):
    manager = make_manager([entry("changer", "Append", category=category, config={"suffix": "!"})])
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert result.modified_payload is None
    assert outcomes(result) == {"changer": Outcome.MODIFICATION_DROPPED}
    assert any("changer" in message and "dropped" in message for message in caplog.messages)


async def test_dropped_change_is_not_seen_by_later_plugins(make_manager, call):
    manager = make_manager(
        [entry("validator", "Append", category="validation", config={"suffix": "!"}), entry("upper", "Upper")]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert result.modified_payload.args == {"text": "X"}


async def test_default_category_comes_from_the_class(make_manager, call):
    manager = make_manager([entry("observer", "Observer")])
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert outcomes(result) == {"observer": Outcome.MODIFICATION_DROPPED}
    assert manager.plugins[0].plugin_config.category == "observability"


@pytest.mark.parametrize("category", ["observability", "audit"])
async def test_block_from_a_category_that_may_not_block_is_not_obeyed(make_manager, call, category):
    manager = make_manager(
        [entry("blocker", "Blocker", category=category), entry("after", "Append", config={"suffix": "!"})]
    )
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre("x"), context)
    assert result.continue_processing
    assert result.violation is None
    assert outcomes(result)["blocker"] is Outcome.VIOLATION_IGNORED
    if category == "observability":  # audit runs last, after the content plugin
        assert result.modified_payload.args == {"text": "x!"}


@pytest.mark.parametrize("category", ["authentication", "authorization", "rate_limiting", "validation", "content"])
async def test_block_from_a_category_that_may_block_is_obeyed(make_manager, call, category):
    manager = make_manager([entry("blocker", "Blocker", category=category)])
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert not result.continue_processing
    assert outcomes(result) == {"blocker": Outcome.BLOCKED}


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ["Meet", "BlockingMeet"])
async def test_observability_plugins_run_concurrently(make_manager, call, cls):
    # Each plugin waits until both have arrived: only concurrent runs meet.
    rendezvous = Rendezvous(2)
    manager = make_manager(
        [
            entry("obs_a", cls, category="observability", priority=1, config={"rendezvous": rendezvous}),
            entry("obs_b", cls, category="observability", priority=2, config={"rendezvous": rendezvous}),
            entry("after", "Append", config={"suffix": "!"}),
        ]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre("x"))
    assert result.metadata == {"obs_a": True, "obs_b": True}
    assert result.modified_payload.args == {"text": "x!"}
    assert [record.plugin for record in result.records] == ["obs_a", "obs_b", "after"]


async def test_serial_categories_do_not_overlap(make_manager, call):
    # The control for the test above: serial plugins can never meet.
    rendezvous = Rendezvous(2, timeout=0.2)
    manager = make_manager(
        [
            entry("authz_a", "Meet", category="authorization", priority=1, config={"rendezvous": rendezvous}),
            entry("authz_b", "Meet", category="authorization", priority=1, config={"rendezvous": rendezvous}),
        ]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.metadata["authz_a"] is False


@pytest.mark.parametrize("cls", ["Meet", "BlockingMeet"])
async def test_parallel_execution_within_band(make_manager, call, cls):
    rendezvous = Rendezvous(2)
    manager = make_manager(
        [
            entry("authz_a", cls, category="authorization", priority=7, config={"rendezvous": rendezvous}),
            entry("authz_b", cls, category="authorization", priority=7, config={"rendezvous": rendezvous}),
        ],
        parallel_execution_within_band=True,
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.metadata == {"authz_a": True, "authz_b": True}


async def test_band_parallelism_needs_equal_priority(make_manager, call):
    rendezvous = Rendezvous(2, timeout=0.2)
    manager = make_manager(
        [
            entry("authz_a", "Meet", category="authorization", priority=1, config={"rendezvous": rendezvous}),
            entry("authz_b", "Meet", category="authorization", priority=2, config={"rendezvous": rendezvous}),
        ],
        parallel_execution_within_band=True,
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.metadata["authz_a"] is False


async def test_band_parallelism_leaves_content_serial(make_manager, call):
    # Content plugins chain their changes, so they never run side by side.
    rendezvous = Rendezvous(2, timeout=0.2)
    manager = make_manager(
        [
            entry("content_a", "Meet", priority=1, config={"rendezvous": rendezvous}),
            entry("content_b", "Meet", priority=1, config={"rendezvous": rendezvous}),
        ],
        parallel_execution_within_band=True,
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.metadata["content_a"] is False


async def test_first_block_in_a_parallel_band_wins_and_later_steps_do_not_run(make_manager, call):
    manager = make_manager(
        [
            entry("authz_a", "Tag", category="authorization", priority=1),
            entry("authz_b", "Blocker", category="authorization", priority=1, config={"code": "B"}),
            entry("authz_c", "Blocker", category="authorization", priority=1, config={"code": "C"}),
            entry("content", "Tag"),
        ],
        parallel_execution_within_band=True,
    )
    context = GlobalContext(request_id="r")
    result = await call(manager, "tool_pre_invoke", tool_pre(), context)
    assert result.violation.code == "B"
    assert "content" not in ran(context)
    assert {record.plugin for record in result.records} == {"authz_a", "authz_b", "authz_c"}


# --------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------


def _conditional(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry("subject", "Tag", conditions=conditions)]


CONDITION_CASES = [
    # (conditions, hook, payload, context fields, runs?)
    ([{"server_ids": ["s1", "s2"]}], "tool_pre_invoke", tool_pre(), {"server_id": "s2"}, True),
    ([{"server_ids": ["s1"]}], "tool_pre_invoke", tool_pre(), {"server_id": "s3"}, False),
    ([{"server_ids": ["s1"]}], "tool_pre_invoke", tool_pre(), {}, False),
    ([{"tenant_ids": ["acme"]}], "tool_pre_invoke", tool_pre(), {"tenant_id": "acme"}, True),
    ([{"tenant_ids": ["acme"]}], "tool_pre_invoke", tool_pre(), {"tenant_id": "umbrella"}, False),
    ([{"tools": ["search*"]}], "tool_pre_invoke", tool_pre(name="search_web"), {}, True),
    ([{"tools": ["search*"]}], "tool_post_invoke", tool_post(name="search_web"), {}, True),
    ([{"tools": ["search*"]}], "tool_pre_invoke", tool_pre(name="delete"), {}, False),
    ([{"tools": ["search"]}], "tool_pre_invoke", tool_pre(name="search_web"), {}, False),  # whole-name glob
    ([{"prompts": ["greet?"]}], "prompt_pre_fetch", PromptPrehookPayload(prompt_id="greet1"), {}, True),
    ([{"prompts": ["greet?"]}], "prompt_post_fetch", PromptPosthookPayload(prompt_id="farewell"), {}, False),
    (
        [{"resources": ["file:///etc/*"]}],
        "resource_pre_fetch",
        ResourcePreFetchPayload(uri="file:///etc/motd"),
        {},
        True,
    ),
    ([{"resources": ["file:///etc/*"]}], "resource_post_fetch", ResourcePostFetchPayload(uri="https://x/y"), {}, False),
    ([{"user_patterns": ["^admin_"]}], "tool_pre_invoke", tool_pre(), {"user": "admin_bob"}, True),
    ([{"user_patterns": ["^admin_"]}], "tool_pre_invoke", tool_pre(), {"user": "bob_admin_"}, False),
    ([{"user_patterns": ["admin"]}], "tool_pre_invoke", tool_pre(), {"user": "super-admin-2"}, True),  # search
    ([{"user_patterns": [".*"]}], "tool_pre_invoke", tool_pre(), {}, False),  # no user, no match
    (
        [{"content_types": ["application/json"]}],
        "tool_pre_invoke",
        tool_pre(),
        {"content_type": "application/json; charset=utf-8"},
        True,
    ),
    ([{"content_types": ["text/*"]}], "tool_pre_invoke", tool_pre(), {"content_type": "text/plain"}, True),
    ([{"content_types": ["text/*"]}], "tool_pre_invoke", tool_pre(), {"content_type": "application/json"}, False),
    # OR across list items.
    ([{"tools": ["a"]}, {"tools": ["b"]}], "tool_pre_invoke", tool_pre(name="b"), {}, True),
    ([{"tools": ["a"]}, {"user_patterns": ["^x"]}], "tool_pre_invoke", tool_pre(name="c"), {"user": "xavier"}, True),
    ([{"tools": ["a"]}, {"tools": ["b"]}], "tool_pre_invoke", tool_pre(name="c"), {}, False),
    # AND inside one item.
    ([{"tools": ["a"], "user_patterns": ["^x"]}], "tool_pre_invoke", tool_pre(name="a"), {"user": "xavier"}, True),
    ([{"tools": ["a"], "user_patterns": ["^x"]}], "tool_pre_invoke", tool_pre(name="a"), {"user": "yves"}, False),
    ([{"tools": ["a"], "user_patterns": ["^x"]}], "tool_pre_invoke", tool_pre(name="b"), {"user": "xavier"}, False),
    (
        [{"server_ids": ["s"], "tenant_ids": ["t"]}],
        "tool_pre_invoke",
        tool_pre(),
        {"server_id": "s", "tenant_id": "u"},
        False,
    ),
    # A condition naming only other kinds of entity does not match.
    ([{"prompts": ["*"]}], "tool_pre_invoke", tool_pre(), {}, False),
    ([{"tools": ["*"]}], "resource_pre_fetch", ResourcePreFetchPayload(uri="file:///x"), {}, False),
    ([{"tools": ["*"]}], "http_pre_request", HttpPreRequestPayload(method="GET", path="/"), {}, False),
    ([{"resources": ["*"], "tools": ["search"]}], "tool_pre_invoke", tool_pre(name="search"), {}, True),
    # An empty condition, or none at all, always matches.
    ([{}], "http_post_request", HttpPostRequestPayload(method="GET", path="/", status_code=200), {}, True),
    ([], "tool_pre_invoke", tool_pre(), {}, True),
]


@pytest.mark.parametrize(("conditions", "hook", "payload", "fields", "runs"), CONDITION_CASES)
async def test_conditions(make_manager, call, conditions, hook, payload, fields, runs):
    manager = make_manager(_conditional(conditions))
    context = GlobalContext(request_id="r", **fields)
    result = await call(manager, hook, payload, context)
    assert (ran(context) == ["subject"]) is runs
    assert (len(result.records) == 1) is runs


async def test_conditions_skip_a_blocker(make_manager, call):
    manager = make_manager([entry("guard", "Blocker", conditions=[{"tools": ["rm_*"]}])])
    allowed = await call(manager, "tool_pre_invoke", tool_pre(name="ls"))
    denied = await call(manager, "tool_pre_invoke", tool_pre(name="rm_rf"))
    assert allowed.continue_processing
    assert not denied.continue_processing


# --------------------------------------------------------------------------
# Context state and records
# --------------------------------------------------------------------------


async def test_plugin_state_carries_from_pre_to_post_hook(make_manager, call):
    manager = make_manager([entry("stateful", "Stateful"), entry("other", "Stateful")])
    context = GlobalContext(request_id="r1")
    await call(manager, "tool_pre_invoke", tool_pre("question"), context)
    result = await call(manager, "tool_post_invoke", tool_post("answer"), context)
    assert result.metadata == {"seen": {"pre_text": "question", "calls": 2}}
    assert result.modified_payload.result["seen"] == {"pre_text": "question", "calls": 2}
    # Each plugin has its own context.
    assert context.plugin_contexts["stateful"] is not context.plugin_contexts["other"]
    assert context.plugin_contexts["stateful"].global_context is context
    assert context.plugin_contexts["stateful"].request_id == "r1"

    # Another request starts from scratch.
    fresh = GlobalContext(request_id="r2")
    result = await call(manager, "tool_post_invoke", tool_post("answer"), fresh)
    assert result.metadata == {"seen": {"pre_text": None, "calls": 1}}


async def test_execution_records(make_manager, call):
    manager = make_manager(
        [
            entry("tag", "Tag", priority=1),
            entry("append", "Append", priority=2, config={"suffix": "!"}),
            entry("late", "Napper", priority=3, config={"seconds": 0.01}),
            entry("broken", "Raiser", priority=4, mode="permissive"),
            entry("blocker", "Blocker", priority=5),
        ]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert [(r.plugin, r.hook, r.outcome) for r in result.records] == [
        ("tag", HookType.TOOL_PRE_INVOKE, Outcome.PASSED),
        ("append", HookType.TOOL_PRE_INVOKE, Outcome.MODIFIED),
        ("late", HookType.TOOL_PRE_INVOKE, Outcome.PASSED),
        ("broken", HookType.TOOL_PRE_INVOKE, Outcome.ERROR),
        ("blocker", HookType.TOOL_PRE_INVOKE, Outcome.BLOCKED),
    ]
    assert all(isinstance(r.duration, float) and r.duration >= 0 for r in result.records)
    # The async plugin slept: its duration reflects that it was measured.
    assert result.records[2].duration > 0
    assert [r.error for r in result.records] == [None, None, None, "RuntimeError: boom", None]


async def test_metadata_is_merged(make_manager, call):
    first, second = Rendezvous(1), Rendezvous(1)
    manager = make_manager(
        [
            entry("one", "Meet", priority=1, config={"rendezvous": first}),
            entry("two", "Meet", priority=2, config={"rendezvous": second}),
        ]
    )
    result = await call(manager, "tool_pre_invoke", tool_pre())
    assert result.metadata == {"one": True, "two": True}


async def test_cancelling_the_caller_still_cancels(make_manager):
    # The other side of SelfCancelled: a real cancellation of the caller is
    # not swallowed as a plugin error.
    manager = make_manager([entry("sleeper", "Sleeper", mode="permissive")])
    context = GlobalContext(request_id="r")
    task = asyncio.ensure_future(manager.invoke("tool_pre_invoke", tool_pre(), context))
    for _ in range(1000):  # until the plugin is inside its hook, at most ~1 s
        if ran(context):
            break
        await asyncio.sleep(0.001)
    assert ran(context) == ["sleeper"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, BOUND)


# --------------------------------------------------------------------------
# What a result and a plugin context look like to their readers
# --------------------------------------------------------------------------


async def test_passed_calls_read_back_as_full_records(make_manager, call):
    # The executor keeps (plugin, seconds) for calls that pass; readers see records.
    manager = make_manager([entry("a", "Tag"), entry("stop", "Blocker"), entry("never", "Tag")])
    result = await call(manager, "tool_pre_invoke", tool_pre(), GlobalContext(request_id="r"))
    records = result.records
    assert [(r.plugin, r.hook, r.outcome) for r in records] == [
        ("a", HookType.TOOL_PRE_INVOKE, Outcome.PASSED),
        ("stop", HookType.TOOL_PRE_INVOKE, Outcome.BLOCKED),
    ]
    assert all(isinstance(r, ExecutionRecord) and r.duration >= 0 for r in records)
    assert result.records is records  # built once
    assert result == HookResult(False, None, result.violation, result.metadata, list(records))
    result.records = []
    assert result.records == []


def test_plugin_context_dicts_are_made_on_first_use_and_compare_like_fields():
    shared = GlobalContext(request_id="r")
    fresh = fresh_plugin_context(shared)
    assert fresh == PluginContext(shared)
    assert fresh.request_id == "r"
    fresh.state["k"] = 1
    assert fresh.state == {"k": 1}
    assert fresh != PluginContext(shared)
    assert PluginContext(shared, state={"k": 1}) == fresh
    fresh.metadata = {"m": True}
    assert fresh.metadata == {"m": True}
    assert "state={'k': 1}" in repr(fresh)
