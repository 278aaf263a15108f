"""
The proxy and the stdio wrapper against talking to the server directly
======================================================================

Two measurements, each side by side in one run:

1. **HTTP**: uvicorn + wrk. The bare Starlette ``/mcp`` endpoint of
   ``hot_path.py`` (1 KB ``tools/call`` in, 1 KB result out) on uvicorn, and
   ``mcp-plugin-mw proxy`` in front of it (one no-op plugin on
   ``tool_pre_invoke`` and ``tool_post_invoke``), each on its own port;
   ``wrk`` drives them alternately, the order rotating each round. Printed:
   requests per second and p99 latency per round, and the median and min-max
   of the per-round ratios proxy / direct; and the proxy process's CPU time
   per request (user + system, from ``/proc``), steadier than the ratios on
   a noisy machine.
2. **stdio**: one JSON-RPC line written, its answer read, against a tiny
   Python stdio echo server (it answers each ``tools/call`` with its text),
   directly and through ``mcp-plugin-mw stdio`` with the same no-op plugin;
   ``harness.compare`` alternates them (rotating order, at least 7 rounds)
   and prints µs per round trip and the ratio wrapper / direct.

    apt-get install -y wrk
    python benchmarks/proxy.py [--rounds 7] [--seconds 3] [--connections 8] [--calls 2000] [--quick]

Loopback only; every child is bounded in time. The proxy pays a second HTTP
hop on the same two cores as the server and wrk: the ratio prices that hop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# hot_path puts benchmarks/ first on sys.path, where a module may shadow the
# standard library's (benchmarks/secrets.py does): the real one is imported
# first, here and in the upstream process.
import secrets  # noqa: E402, F401

sys.path.append(str(HERE))

from harness import MIN_ROUNDS, compare, spread  # noqa: E402
from hot_path import REQUEST_1K  # noqa: E402
from wrk import (  # noqa: E402
    LUA,
    check,
    child,
    free_port,
    lua_string,
)

WRAPPER = [sys.executable, "-c", "from mcp_plugin_mw.cli import main; main()"]
ECHO_SERVER = """
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    text = message["params"]["arguments"]["text"]
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [{"type": "text", "text": text}]}}
    sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
"""
NOOP_MODULE = """
import mcp_plugin_mw as mw

class Noop(mw.Plugin):
    def tool_pre_invoke(self, payload, context):
        return None

    def tool_post_invoke(self, payload, context):
        return None
"""
PLUGINS = {"plugins": [{"name": "noop", "kind": "bench_noop.Noop", "hooks": ["tool_pre_invoke", "tool_post_invoke"]}]}
UPSTREAM = (
    "import secrets, sys; sys.path.append({here!r}); import uvicorn; from hot_path import bare_server_app; "
    "uvicorn.run(bare_server_app(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"
)
STDIO_REQUEST = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x" * 200}}}
).encode()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_TICK = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux's /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK  # utime, stime


def run_wrk(url: str, script: Path, seconds: float, connections: int, threads: int) -> tuple[float, float, int]:
    """Requests per second, p99 latency in ms, and requests completed."""
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    command += ["-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in done.stdout:
            raise SystemExit(f"wrk against {url}: {bad}\n{done.stdout}")
    rate = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", done.stdout, re.MULTILINE)
    count = re.search(r"^\s*(\d+) requests in", done.stdout, re.MULTILINE)
    if rate is None or p99 is None or count is None:
        raise SystemExit(f"no Requests/sec, 99% or requests line in wrk's output:\n{done.stdout}")
    return float(rate.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)], int(count.group(1))


def http_rows(options: argparse.Namespace, plugins: Path, tmp: Path) -> dict[str, Any]:
    seconds = min(options.seconds, 2.0) if options.quick else options.seconds
    names = ["direct", "proxy"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    p99s: dict[str, list[float]] = {name: [] for name in names}
    cpu_us: list[float] = []  # the proxy process's CPU per request, per round
    with contextlib.ExitStack() as stack:
        script = tmp / "post.lua"
        script.write_text(LUA.format(body=lua_string(REQUEST_1K)))
        direct_port, proxy_port = free_port(), free_port()
        upstream = [sys.executable, "-c", UPSTREAM.format(here=str(HERE), port=direct_port)]
        stack.enter_context(child(upstream, direct_port, tmp / "direct.log", tmp))
        direct = f"http://127.0.0.1:{direct_port}/mcp"
        proxy = [*WRAPPER, "proxy", "--upstream", direct, "--config", str(plugins), "--port", str(proxy_port)]
        proxy_process = stack.enter_context(
            child([*proxy, "--log-level", "warning"], proxy_port, tmp / "proxy.log", tmp)
        )
        urls = {"direct": direct, "proxy": f"http://127.0.0.1:{proxy_port}/mcp"}
        for url in urls.values():
            check(url)
        print(
            f"HTTP: python {sys.version.split()[0]}, uvicorn 1 worker each, wrk -t{options.threads} "
            f"-c{options.connections} -d{seconds:g}s, {options.rounds} rounds"
        )
        for name in names:  # warm-up
            run_wrk(urls[name], script, 1, options.connections, options.threads)
        for index in range(options.rounds):
            for name in names[index % 2 :] + names[: index % 2]:
                before = cpu_seconds(proxy_process.pid)
                rate, p99, count = run_wrk(urls[name], script, seconds, options.connections, options.threads)
                after = cpu_seconds(proxy_process.pid)
                rates[name].append(rate)
                p99s[name].append(p99)
                if name == "proxy" and before is not None and after is not None and count:
                    cpu_us.append((after - before) / count * 1e6)
            cpu = f", proxy CPU {cpu_us[-1]:5.0f} us/req" if cpu_us else ""
            print(
                f"  round {index + 1}: direct {rates['direct'][-1]:7.0f} req/s p99 {p99s['direct'][-1]:6.2f} ms,"
                f" proxy {rates['proxy'][-1]:7.0f} req/s p99 {p99s['proxy'][-1]:6.2f} ms{cpu}"
            )
    rate_ratio = spread([p / d for p, d in zip(rates["proxy"], rates["direct"], strict=True)])
    p99_ratio = spread([p / d for p, d in zip(p99s["proxy"], p99s["direct"], strict=True)])
    medians = {name: statistics.median(values) for name, values in rates.items()}
    p99_medians = {name: statistics.median(values) for name, values in p99s.items()}
    print(
        f"  medians: direct {medians['direct']:.0f} req/s, proxy {medians['proxy']:.0f} req/s;"
        f" p99 direct {p99_medians['direct']:.2f} ms, proxy {p99_medians['proxy']:.2f} ms"
    )
    print(
        f"ROW  uvicorn + wrk, proxy / direct, req/s  {rate_ratio['median']:.3f}x"
        f" [{rate_ratio['min']:.3f}-{rate_ratio['max']:.3f}]"
    )
    print(
        f"ROW  uvicorn + wrk, proxy / direct, p99    {p99_ratio['median']:.3f}x"
        f" [{p99_ratio['min']:.3f}-{p99_ratio['max']:.3f}]"
    )
    figures: dict[str, Any] = {"rates": rates, "p99_ms": p99s, "rate_ratio": rate_ratio, "p99_ratio": p99_ratio}
    if cpu_us:
        cpu = spread(cpu_us)
        print(f"ROW  proxy process CPU per request, us    {cpu['median']:.0f} [{cpu['min']:.0f}-{cpu['max']:.0f}]")
        figures["proxy_cpu_us"] = cpu
    return figures


class _StdioPeer:
    """A child speaking newline-delimited JSON-RPC: one round trip per call."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.line = STDIO_REQUEST + b"\n"
        answer = self()
        if b'"result"' not in answer:
            raise SystemExit(f"{command}: unexpected answer {answer!r}")

    def __call__(self) -> bytes:
        self.stdin.write(self.line)
        self.stdin.flush()
        return self.stdout.readline()

    def close(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def stdio_rows(options: argparse.Namespace, plugins: Path, tmp: Path) -> dict[str, Any]:
    server_script = tmp / "echo_server.py"
    server_script.write_text(ECHO_SERVER)
    server = [sys.executable, str(server_script)]
    direct = _StdioPeer(server, tmp)
    wrapped = _StdioPeer([*WRAPPER, "stdio", "--config", str(plugins), "--", *server], tmp)
    try:
        calls = 200 if options.quick else options.calls
        figures = compare(
            {"direct": direct, "wrapper": wrapped},
            rounds=options.rounds,
            calls_per_round=calls,
            baseline="direct",
            title="stdio round trip (write a line, read the answer)",
        )
    finally:
        direct.close()
        wrapped.close()
    ratio = figures["runners"]["wrapper"]["ratio"]
    print(f"ROW  stdio round trip, wrapper / direct  {ratio['median']:.3f}x [{ratio['min']:.3f}-{ratio['max']:.3f}]")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000, help="stdio round trips per runner per round")
    parser.add_argument("--only", choices=["http", "stdio"], help="run one of the two")
    parser.add_argument("--quick", action="store_true", help="2-second wrk runs, 200 stdio calls a round")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    if options.only != "stdio" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bench_noop.py").write_text(NOOP_MODULE)  # found from the children's working directory
        plugins = tmp / "plugins.yaml"
        plugins.write_text(json.dumps(PLUGINS))  # JSON is YAML
        if options.only != "stdio":
            figures["http"] = http_rows(options, plugins, tmp)
        if options.only != "http":
            figures["stdio"] = stdio_rows(options, plugins, tmp)
    if options.json:
        Path(options.json).write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
