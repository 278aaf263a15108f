"""
uvicorn + wrk: requests per second, bare against behind the middleware
======================================================================

Starts two uvicorn servers (one worker each, no access log) on free
127.0.0.1 ports: the bare Starlette ``/mcp`` endpoint of ``hot_path.py``
(1 KB ``tools/call`` in, 1 KB result out) and the same app behind
``PluginMiddleware`` with 5 no-op plugins on ``tool_pre_invoke`` and
``tool_post_invoke``. Then drives them alternately with ``wrk`` (a POST Lua
script), the order rotating each round, and prints the requests per second
of each round and the median and min-max of the per-round ratio
wrapped / bare (target: at least 0.92x).

    apt-get install -y wrk
    python benchmarks/wrk.py [--rounds 7] [--seconds 3] [--connections 8] [--quick] [--json FILE]

Loopback only; every run of wrk and the whole script are bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import MIN_ROUNDS, spread  # noqa: E402
from hot_path import REQUEST_1K  # noqa: E402

TARGET = 0.92
APPS = {"bare": "hot_path:bare_server_app", "wrapped": "hot_path:wrapped_server_app"}
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.body = {body}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lua_string(data: bytes) -> str:
    return "[==[" + data.decode() + "]==]"


@contextlib.contextmanager
def child(command: list[str], port: int, log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process listening on ``port``, stopped at the end."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[:4]} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{command[:4]} did not listen within 30 s")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def server(target: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """uvicorn serving the app factory ``target`` on ``port``."""
    command = [sys.executable, "-m", "uvicorn", target, "--factory", "--app-dir", str(HERE)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log"]
    command += ["--log-level", "warning"]
    with child(command, port, log, HERE) as process:
        yield process


def check(url: str) -> None:
    request = urllib.request.Request(
        url,
        data=REQUEST_1K,
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
        if response.status != 200 or "result" not in body:
            raise SystemExit(f"{url}: unexpected answer {response.status} {body}")


def run_wrk(url: str, script: Path, seconds: float, connections: int, threads: int) -> float:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in done.stdout:
            raise SystemExit(f"wrk against {url}: {bad}\n{done.stdout}")
    match = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    if match is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{done.stdout}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the server has one core of two)")
    parser.add_argument("--quick", action="store_true", help="2-second runs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    options = parser.parse_args()
    if options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    seconds = min(options.seconds, 2.0) if options.quick else options.seconds
    names = list(APPS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body=lua_string(REQUEST_1K)))
        urls = {}
        for name, target in APPS.items():
            port = free_port()
            stack.enter_context(server(target, port, Path(tmp) / f"{name}.log"))
            urls[name] = f"http://127.0.0.1:{port}/mcp"
            check(urls[name])
        print(
            f"python {sys.version.split()[0]}, uvicorn 1 worker each, wrk -t{options.threads} "
            f"-c{options.connections} -d{seconds:g}s, {options.rounds} rounds, pid {os.getpid()}"
        )
        for name in names:  # warm-up
            run_wrk(urls[name], script, 1, options.connections, options.threads)
        for index in range(options.rounds):
            order = names[index % 2 :] + names[: index % 2]
            for name in order:
                rates[name].append(run_wrk(urls[name], script, seconds, options.connections, options.threads))
            print(
                f"  round {index + 1}: bare {rates['bare'][-1]:8.0f} req/s, wrapped {rates['wrapped'][-1]:8.0f} req/s,"
                f" ratio {rates['wrapped'][-1] / rates['bare'][-1]:.3f}"
            )
    ratios = [wrapped / bare for wrapped, bare in zip(rates["wrapped"], rates["bare"], strict=True)]
    ratio = spread(ratios)
    verdict = "PASS" if ratio["median"] >= TARGET else "MISS"
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"bare median {medians['bare']:.0f} req/s, wrapped median {medians['wrapped']:.0f} req/s")
    print(
        f"ROW  uvicorn + wrk, 5 no-ops, req/s wrapped / bare   {ratio['median']:.3f}x"
        f" [{ratio['min']:.3f}-{ratio['max']:.3f}]  target >= {TARGET}x  {verdict}"
    )
    if options.json:
        Path(options.json).write_text(
            json.dumps({"rates": rates, "ratio": {**ratio, "rounds": ratios}, "verdict": verdict})
        )


if __name__ == "__main__":
    main()
