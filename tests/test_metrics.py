"""
Prometheus metrics (``mcp_plugin_mw.metrics``) and ``GET /metrics``
==================================================================

The counters in process, through the admin app under uvicorn, without
prometheus-client, and summed over two gunicorn workers sharing a
``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import mcp_plugin_mw as mw
from mcp_plugin_mw import metrics
from tests.fail_closed_support import BOUND, free_socket, uvicorn_on
from tests.test_admin import AUTH, TOKEN, TRAFFIC, drive, starlette_app

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parent.parent


class Gate(mw.Plugin):
    """Blocks ``deny``; raises on ``boom``; upper-cases the text argument of ``shout``."""

    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> mw.PluginResult | None:
        if payload.name == "deny":
            return mw.PluginResult(
                continue_processing=False, violation=mw.PluginViolation(reason="denied", code="DENIED")
            )
        if payload.name == "boom":
            raise RuntimeError("boom")
        if payload.name == "shout":
            return mw.PluginResult(modified_payload=payload.model_copy(update={"args": {"text": "HI"}}))
        return None


class Quiet(mw.Plugin):
    def tool_pre_invoke(self, payload: Any, context: mw.PluginContext) -> None:
        return None


def entry(name: str, cls: type[mw.Plugin], **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": f"{__name__}.{cls.__name__}", **fields}


CONFIG = {"plugins": [entry("gate", Gate, priority=10), entry("quiet", Quiet, priority=20)]}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def call(manager: mw.PluginManager, tool: str) -> Any:
    return manager.invoke_sync("tool_pre_invoke", mw.ToolPreInvokePayload(name=tool, args={"text": "hi"}))


@pytest.fixture
def manager() -> Iterator[mw.PluginManager]:
    made = mw.PluginManager(CONFIG, environ={})
    yield made
    made.close()


def test_counts_by_plugin_hook_outcome_and_code(manager: mw.PluginManager) -> None:
    registry = CollectorRegistry()
    metrics.enable(manager, registry)
    for tool in ["search", "search", "deny", "boom", "shout"]:
        call(manager, tool)
    calls = "mcp_plugin_mw_plugin_calls_total"
    hook = "tool_pre_invoke"
    assert sample(registry, calls, plugin="gate", hook=hook, outcome="passed") == 2
    assert sample(registry, calls, plugin="gate", hook=hook, outcome="blocked") == 1
    assert sample(registry, calls, plugin="gate", hook=hook, outcome="error") == 1
    assert sample(registry, calls, plugin="gate", hook=hook, outcome="modified") == 1
    # Mode enforce: the error blocked, so quiet ran after search, search and shout only.
    assert sample(registry, calls, plugin="quiet", hook=hook, outcome="passed") == 3
    assert sample(registry, "mcp_plugin_mw_plugin_duration_seconds_count", plugin="gate", hook=hook) == 5
    assert sample(registry, "mcp_plugin_mw_plugin_duration_seconds_count", plugin="quiet", hook=hook) == 3
    total = sample(registry, "mcp_plugin_mw_plugin_duration_seconds_sum", plugin="gate", hook=hook)
    assert total is not None
    assert 0 < total < 1
    violations = "mcp_plugin_mw_violations_total"
    assert sample(registry, violations, plugin="gate", code="DENIED") == 1
    assert sample(registry, violations, plugin="gate", code="PLUGIN_ERROR") == 1  # blocked by failing closed
    invocations = "mcp_plugin_mw_hook_invocations_total"
    assert sample(registry, invocations, hook=hook, outcome="passed") == 2
    assert sample(registry, invocations, hook=hook, outcome="blocked") == 2
    assert sample(registry, invocations, hook=hook, outcome="modified") == 1


PASSED = {"plugin": "gate", "hook": "tool_pre_invoke", "outcome": "passed"}


def test_not_enabled_costs_nothing_and_enabling_twice_counts_once(manager: mw.PluginManager) -> None:
    registry = CollectorRegistry()
    call(manager, "search")
    assert not metrics.is_enabled(manager, registry)
    assert manager._watchers == []  # nothing observes a manager no one enabled
    assert registry.get_sample_value("mcp_plugin_mw_plugin_calls_total", PASSED) is None

    metrics.enable(manager, registry)
    metrics.enable(manager, registry)
    mw.admin_app(manager, token=TOKEN, registry=registry)  # enables too, and reads the same counts
    mw.admin_wsgi_app(manager, token=TOKEN, registry=registry)
    assert metrics.is_enabled(manager, registry)
    assert len(manager._watchers) == 1  # one observer for the metrics and the admin apps
    call(manager, "search")
    assert registry.get_sample_value("mcp_plugin_mw_plugin_calls_total", PASSED) == 1


def test_admin_app_without_metrics_leaves_the_registry_alone(manager: mw.PluginManager) -> None:
    registry = CollectorRegistry()
    app = mw.admin_wsgi_app(manager, token=TOKEN, registry=registry, enable_metrics=False)
    call(manager, "search")
    assert not metrics.is_enabled(manager, registry)
    assert registry.get_sample_value("mcp_plugin_mw_plugin_calls_total", PASSED) is None
    from werkzeug.test import Client

    assert Client(app).get("/plugins", headers=AUTH).json[0]["calls"] == 1  # /plugins counts all the same
    text = Client(app).get("/metrics", headers=AUTH).text
    assert "mcp_plugin_mw_" not in text


def test_two_managers_share_a_registrys_families() -> None:
    registry = CollectorRegistry()
    first, second = mw.PluginManager(CONFIG, environ={}), mw.PluginManager(CONFIG, environ={})
    metrics.enable(first, registry)
    metrics.enable(second, registry)
    call(first, "search")
    call(second, "search")
    assert (
        sample(registry, "mcp_plugin_mw_plugin_calls_total", plugin="gate", hook="tool_pre_invoke", outcome="passed")
        == 2
    )
    first.close()
    second.close()


def test_counting_carries_over_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(f"plugins:\n  - name: gate\n    kind: {__name__}.Gate\n", encoding="utf-8")
    manager = mw.PluginManager(path, environ={})
    registry = CollectorRegistry()
    metrics.enable(manager, registry)
    call(manager, "deny")
    path.write_text(path.read_text() + f"  - name: quiet\n    kind: {__name__}.Quiet\n", encoding="utf-8")
    manager.reload()
    call(manager, "deny")
    call(manager, "search")
    assert sample(registry, "mcp_plugin_mw_violations_total", plugin="gate", code="DENIED") == 2
    assert (
        sample(registry, "mcp_plugin_mw_plugin_calls_total", plugin="quiet", hook="tool_pre_invoke", outcome="passed")
        == 1
    )
    manager.close()


def families(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_endpoint_under_uvicorn() -> None:
    registry = CollectorRegistry()
    manager = mw.PluginManager(
        {"plugins": [entry("gate", Gate, priority=10), entry("quiet", Quiet, priority=20)]}, environ={}
    )
    with (
        uvicorn_on(starlette_app(manager, registry=registry)) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=BOUND) as http,
    ):
        assert http.get("/_plugins/metrics").status_code == 401
        drive(http, TRAFFIC)  # search, search, deny, boom, search
        answer = http.get("/_plugins/metrics", headers=AUTH)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        samples = families(answer.text)
        hook = "tool_pre_invoke"
        assert value(samples, "mcp_plugin_mw_plugin_calls_total", plugin="gate", hook=hook, outcome="passed") == 3
        assert value(samples, "mcp_plugin_mw_plugin_calls_total", plugin="gate", hook=hook, outcome="blocked") == 1
        assert value(samples, "mcp_plugin_mw_plugin_calls_total", plugin="gate", hook=hook, outcome="error") == 1
        assert value(samples, "mcp_plugin_mw_violations_total", plugin="gate", code="DENIED") == 1
        assert value(samples, "mcp_plugin_mw_hook_invocations_total", hook=hook, outcome="passed") == 3
        assert value(samples, "mcp_plugin_mw_hook_invocations_total", hook=hook, outcome="blocked") == 2
        assert value(samples, "mcp_plugin_mw_plugin_duration_seconds_count", plugin="quiet", hook=hook) == 3

        drive(http, ["search"])
        again = families(http.get("/_plugins/metrics", headers=AUTH).text)
        assert value(again, "mcp_plugin_mw_plugin_calls_total", plugin="gate", hook=hook, outcome="passed") == 4

        open_metrics = http.get(
            "/_plugins/metrics", headers={**AUTH, "accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.rstrip().endswith("# EOF")
        # The per-plugin counts of /plugins agree.
        rows = {row["name"]: row for row in http.get("/_plugins/plugins", headers=AUTH).json()}
        assert (rows["gate"]["calls"], rows["gate"]["violations"], rows["gate"]["errors"]) == (6, 1, 1)
    manager.close()


def test_metrics_endpoint_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "prometheus_client" or name.startswith("prometheus_client.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    assert not metrics.available()
    manager = mw.PluginManager(CONFIG, environ={})
    with pytest.raises(metrics.MetricsUnavailable, match=r"mcp-plugin-mw\[metrics\]"):
        metrics.enable(manager)
    app = mw.admin_wsgi_app(manager, token=TOKEN)  # builds, without metrics
    from werkzeug.test import Client

    answer = Client(app).get("/metrics", headers=AUTH)
    assert answer.status_code == 404
    assert answer.json == {"error": "metrics need prometheus-client: pip install 'mcp-plugin-mw[metrics]'"}
    assert Client(app).get("/plugins", headers=AUTH).status_code == 200
    manager.close()


# --------------------------------------------------------------------------
# gunicorn, two workers, one PROMETHEUS_MULTIPROC_DIR
# --------------------------------------------------------------------------

GUNICORN_APP = '''\
"""Flask's /mcp behind WSGIPluginMiddleware, the admin app at /_plugins (DispatcherMiddleware)."""

import os
import time

from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import mcp_plugin_mw as mw


class Gate(mw.Plugin):
    def tool_pre_invoke(self, payload, context):
        if payload.name == "deny":
            violation = mw.PluginViolation(reason="denied", code="DENIED")
            return mw.PluginResult(continue_processing=False, violation=violation)
        return None

    def tool_post_invoke(self, payload, context):
        return None


manager = mw.PluginManager({"plugins": [{"name": "gate", "kind": "gunicorn_app.Gate"}]}, environ={})
flask_app = Flask(__name__)


@flask_app.post("/mcp")
def mcp():
    message = request.get_json()
    time.sleep(float(message["params"]["arguments"].get("sleep", 0)))
    text = str(os.getpid())
    return jsonify({"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}})


app = DispatcherMiddleware(
    mw.WSGIPluginMiddleware(flask_app.wsgi_app, manager=manager),
    {"/_plugins": mw.admin_wsgi_app(manager, token=os.environ["ADMIN_TOKEN"])},
)
'''

GUNICORN_CONF = """\
from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
"""


@contextlib.contextmanager
def gunicorn_on(directory: Path, multiproc: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """gunicorn with two sync workers on a free 127.0.0.1 port, stopped (and its group killed if need be) after."""
    (directory / "gunicorn_app.py").write_text(GUNICORN_APP, encoding="utf-8")
    (directory / "gunicorn_conf.py").write_text(GUNICORN_CONF, encoding="utf-8")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # gunicorn binds it again at once
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("MCP_PLUGIN_MW_", "PROMETHEUS_"))},
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "ADMIN_TOKEN": TOKEN,
    }
    log = (directory / "gunicorn.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--config",
        str(directory / "gunicorn_conf.py"),
        "--pythonpath",
        f"{directory},{REPO}",
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
        "gunicorn_app:app",
    ]
    process = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        log.close()


def wait_ready(http: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited: {log.read_text(errors='replace')[-2000:]}"
        with contextlib.suppress(httpx.TransportError):
            if http.get("/_plugins/health", headers=AUTH).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not start: {log.read_text(errors='replace')[-2000:]}")


def tools_call(tool: str, request_id: int, sleep: float = 0.0) -> dict[str, Any]:
    params = {"name": tool, "arguments": {"sleep": sleep}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


@pytest.mark.timeout(120)
def test_gunicorn_two_workers_sum_in_metrics(tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    with gunicorn_on(tmp_path, multiproc) as (port, process):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=BOUND) as http:
            wait_ready(http, process, tmp_path / "gunicorn.log")

        def one(index: int) -> str:
            # A client per call: each connection may land on either worker.
            with httpx.Client(base_url=base, timeout=BOUND) as own:
                tool = "deny" if index % 5 == 4 else "search"
                answer = own.post("/mcp", json=tools_call(tool, index, sleep=0.02))
                assert answer.status_code == 200, answer.text
                body = answer.json()
                if tool == "deny":
                    assert "error" in body
                    return "deny"
                return str(body["result"]["content"][0]["text"])

        pids: list[str] = []
        sent = 0
        # Four clients at once keep both sync workers busy; go on (bounded) until both have answered.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while sent < 40 or (len(set(pids) - {"deny"}) < 2 and sent < 400):
                pids.extend(pool.map(one, range(sent, sent + 20), timeout=BOUND * 2))
                sent += 20
        served_by = {pid for pid in pids if pid != "deny"}
        assert len(served_by) == 2, f"one worker served all {sent} calls"
        denied = pids.count("deny")
        passed = sent - denied
        assert denied == sent // 5

        # Each worker wrote its own files; whichever answers the scrape sums them all.
        files = {path.name for path in multiproc.iterdir()}
        for pid in served_by:
            assert f"counter_{pid}.db" in files, files
        with httpx.Client(base_url=base, timeout=BOUND) as http:
            scrapes = [families(http.get("/_plugins/metrics", headers=AUTH).text) for _ in range(4)]
        for samples in scrapes:
            calls = "mcp_plugin_mw_plugin_calls_total"
            assert value(samples, calls, plugin="gate", hook="tool_pre_invoke", outcome="passed") == passed
            assert value(samples, calls, plugin="gate", hook="tool_pre_invoke", outcome="blocked") == denied
            assert value(samples, calls, plugin="gate", hook="tool_post_invoke", outcome="passed") == passed
            assert value(samples, "mcp_plugin_mw_violations_total", plugin="gate", code="DENIED") == denied
            invocations = "mcp_plugin_mw_hook_invocations_total"
            assert value(samples, invocations, hook="tool_pre_invoke", outcome="passed") == passed
            assert value(samples, invocations, hook="tool_pre_invoke", outcome="blocked") == denied
            count = "mcp_plugin_mw_plugin_duration_seconds_count"
            assert value(samples, count, plugin="gate", hook="tool_pre_invoke") == sent
    assert process.returncode is not None
