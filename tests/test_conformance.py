"""
The official MCP conformance suite, bare and through the middleware
===================================================================

``@modelcontextprotocol/conformance`` (the npm package the MCP SDKs test
their servers with) drives ``tests/conformance/everything_server.py`` over
Streamable HTTP on a free 127.0.0.1 port, served by uvicorn in a thread:
once bare, once wrapped in ``PluginMiddleware`` with a no-op plugin on every
hook. The middleware must be invisible to the suite.

It runs every server scenario the pinned harness applies to a spec revision,
on that revision's wire (``--suite all --spec-version REV``, as the python
SDK's own CI does): for 2025-11-25 (stateful handshake) 33 scenarios and 84
checks, for 2026-07-28 (stateless, per-request ``_meta``) 40 scenarios and 151
checks. The harness counts, per scenario and in its ``Total:`` line, the checks
whose status is SUCCESS as passed and FAILURE as failed; INFO and WARNING
checks are not counted at all, and some checks (``server-sse-disconnect-resume``
among them) turn into a WARNING or INFO instead of failing. So a run passes
here only if no check is a FAILURE or a WARNING, the harness exits 0, and the
passed count is exactly the pinned one, so that a check that quietly became
INFO is caught too.

The harness needs Node.js 22 or later (it imports ``fs.globSync``). With an
older ``node`` on the ``PATH``, npm also installs the ``node@22`` package
(Node's own binary, from the npm registry) beside the harness. Both go into
a cache directory, ``$MCP_PLUGIN_MW_CONFORMANCE_CACHE`` or
``~/.cache/mcp-plugin-mw``, once, and are reused by later sessions. Without
``node``/``npm``/``npx`` the tests skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import uvicorn

import mcp_plugin_mw
from tests.conformance import noop_plugins
from tests.conformance.everything_server import PATH, build_app

HARNESS_VERSION = "0.2.0-alpha.11"
HARNESS = f"@modelcontextprotocol/conformance@{HARNESS_VERSION}"
"""Pinned: scenario and check counts move between releases; bump it together with :data:`EXPECTED`."""

NODE_MAJOR = 22
"""The oldest Node.js the harness runs on."""

NODE_PACKAGE = f"node@{NODE_MAJOR}"

EXPECTED = {"2025-11-25": (33, 84), "2026-07-28": (40, 151)}
"""Per spec revision: scenarios run, and checks passed, with every check passing."""

INSTALL_TIMEOUT = 600.0
RUN_TIMEOUT = 300.0
"""Seconds; the suite itself takes about ten."""

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

SUMMARY_LINE = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed")
TOTAL_LINE = re.compile(r"^Total: (\d+) passed, (\d+) failed", re.MULTILINE)
RESULT_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = [
    pytest.mark.timeout(INSTALL_TIMEOUT + 2 * RUN_TIMEOUT),
    # The 2025-11-25 fixtures log and sample, which the SDK deprecates as of 2026-07-28.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


def unavailable(reason: str) -> NoReturn:
    """Skip, or with ``CI=true`` fail: CI installs what these tests need."""
    if CI:
        pytest.fail(f"{reason} (.ci/run installs what is missing)", pytrace=False)
    pytest.skip(reason)


def run(command: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session whose whole process group is killed on timeout."""
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
        **kwargs,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"{' '.join(command)} did not finish in {timeout:.0f}s:\n{output[-4000:]}", pytrace=False)
    return subprocess.CompletedProcess(command, process.returncode, output)


def node_major(node: str) -> int:
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.match(r"v(\d+)\.", version.strip())
    return int(found.group(1)) if found else 0


@dataclasses.dataclass(frozen=True)
class Harness:
    """The installed conformance package, run through ``npx --prefix``."""

    npx: str
    prefix: Path

    def command(self, *args: str) -> list[str]:
        # --no: never install at run time; the prefix's node_modules/.bin (with node 22 if installed) leads PATH.
        return [self.npx, "--prefix", str(self.prefix), "--no", "--", *args]

    def version(self) -> str:
        result = run(self.command("conformance", "--version"), timeout=120)
        return result.stdout.strip() if result.returncode == 0 else ""

    def node_major(self) -> int:
        result = run(self.command("node", "--version"), timeout=120)
        found = re.match(r"v(\d+)\.", result.stdout.strip())
        return int(found.group(1)) if result.returncode == 0 and found else 0

    def server(self, url: str, spec_version: str, output_dir: Path) -> subprocess.CompletedProcess[str]:
        # cwd: the harness writes nothing outside --output-dir, but keep any stray file out of the checkout.
        return run(
            self.command(
                "conformance",
                "server",
                "--url",
                url,
                "--suite",
                "all",
                "--spec-version",
                spec_version,
                "--output-dir",
                str(output_dir),
            ),
            timeout=RUN_TIMEOUT,
            cwd=output_dir.parent,
        )


def cache_root() -> Path:
    configured = os.environ.get("MCP_PLUGIN_MW_CONFORMANCE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "mcp-plugin-mw"


def install(npm: str, prefix: Path, packages: list[str]) -> None:
    """npm-install ``packages`` into a scratch directory, then move it to ``prefix`` in one rename."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix.name}.", dir=prefix.parent))
    try:
        (scratch / "package.json").write_text('{"private": true}\n')
        result = run(
            [npm, "install", "--prefix", str(scratch), "--save-exact", "--no-audit", "--no-fund", *packages],
            timeout=INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            unavailable(f"npm install {' '.join(packages)} failed:\n{result.stdout[-4000:]}")
        with contextlib.suppress(OSError):  # another session got there first: keep theirs
            scratch.rename(prefix)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def harness() -> Harness:
    programs = {name: shutil.which(name) for name in ("node", "npm", "npx")}
    missing = [name for name, path in programs.items() if path is None]
    if missing:
        unavailable(f"the MCP conformance suite needs {', '.join(missing)} (Node.js and npm) on the PATH")
    node, npm, npx = (str(programs[name]) for name in ("node", "npm", "npx"))
    packages = [HARNESS]
    if node_major(node) < NODE_MAJOR:
        packages.append(NODE_PACKAGE)
    prefix = cache_root() / ("conformance-" + "-".join(p.lstrip("@").replace("/", "+") for p in packages))
    found = Harness(npx, prefix)
    if found.version() != HARNESS_VERSION:
        shutil.rmtree(prefix, ignore_errors=True)
        install(npm, prefix, packages)
    installed = found.version()
    assert installed == HARNESS_VERSION, f"{prefix}: conformance --version says {installed!r}"
    assert found.node_major() >= NODE_MAJOR, f"{prefix}: npx runs a node older than {NODE_MAJOR}"
    return found


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` under uvicorn in a thread on a free 127.0.0.1 port; yields the MCP URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("uvicorn did not start", pytrace=False)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@dataclasses.dataclass
class Scenario:
    name: str
    passed: int
    failed: int
    checks: list[dict[str, Any]]

    def problems(self) -> list[dict[str, Any]]:
        """Checks that failed or warned, and any other check that carries an error message."""
        return [c for c in self.checks if c.get("status") in {"FAILURE", "WARNING"} or c.get("errorMessage")]


def parse(output: str, output_dir: Path) -> tuple[list[Scenario], int | None]:
    """The scenarios of the run's summary, with their checks.json, and the ``Total:`` passed count."""
    output = ANSI.sub("", output)
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in output_dir.glob("server-*/checks.json"):
        found = RESULT_DIR.match(path.parent.name)
        if found:
            checks[found.group(1)] = json.loads(path.read_text())
    summary = output.split("=== SUMMARY ===", 1)[-1]
    scenarios = [
        Scenario(name, int(passed), int(failed), checks.get(name, []))
        for _, name, passed, failed in (m.groups() for m in map(SUMMARY_LINE.match, summary.splitlines()) if m)
    ]
    total = TOTAL_LINE.search(summary)
    return scenarios, int(total.group(1)) if total else None


def explain(scenarios: list[Scenario]) -> str:
    lines = []
    for scenario in scenarios:
        problems = scenario.problems()
        if scenario.failed or problems:
            lines.append(f"{scenario.name}: {scenario.passed} passed, {scenario.failed} failed")
            lines += [
                f"    {c.get('id')} [{c.get('status')}]: {c.get('errorMessage') or c.get('description')}"
                for c in problems
            ]
    return "\n".join(lines)


@pytest.mark.parametrize("spec_version", sorted(EXPECTED))
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
def test_conformance(harness: Harness, spec_version: str, wrapped: bool, tmp_path: Path) -> None:
    app = build_app()
    middleware = None
    if wrapped:
        noop_plugins.CALLS.clear()
        config = noop_plugins.config()
        assert config["plugins"][0]["hooks"] == [hook.value for hook in mcp_plugin_mw.HookType]
        app = middleware = mcp_plugin_mw.PluginMiddleware(app, config=config)
    output_dir = tmp_path / "results"
    try:
        with served(app) as url:
            result = harness.server(url, spec_version, output_dir)
    finally:
        if middleware is not None:
            middleware.manager.close()

    scenarios, total = parse(result.stdout, output_dir)
    want_scenarios, want_passed = EXPECTED[spec_version]
    failing = explain(scenarios)
    where = f"{'through PluginMiddleware' if wrapped else 'bare'} at {spec_version}"
    assert not failing, f"conformance scenarios not passing {where}:\n{failing}"
    assert result.returncode == 0, f"the harness exited {result.returncode} {where}:\n{result.stdout[-4000:]}"
    assert len(scenarios) == want_scenarios, (
        f"{len(scenarios)} scenarios ran {where}, not {want_scenarios}: {[s.name for s in scenarios]}\n"
        + result.stdout[-4000:]
    )
    per_scenario = ", ".join(f"{s.name} {s.passed}" for s in scenarios)
    assert total == want_passed, f"{total} checks passed {where}, not {want_passed}; per scenario: {per_scenario}"
    if wrapped:
        assert noop_plugins.CALLS["http_pre_request"] > 0, dict(noop_plugins.CALLS)
        assert noop_plugins.CALLS["tool_pre_invoke"] > 0, dict(noop_plugins.CALLS)
