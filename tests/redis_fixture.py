"""A real ``redis-server`` for tests, on a free 127.0.0.1 port.

:func:`start_redis` is a context manager usable anywhere; the ``redis_server``
fixture runs one server per test session and ``redis_url`` hands each test an
emptied database. Without ``redis-server`` on the PATH the tests that use them
are skipped, or fail when the ``CI`` environment variable is set: CI must not
pass by silently skipping what it is there to check.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

__all__ = ["free_port", "redis_server", "redis_url", "start_redis"]

_START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int, command: bytes) -> bytes:
    """Send one inline command and return the first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(command + b"\r\n")
        return sock.makefile("rb").readline().strip()


def _ping(port: int) -> bool:
    try:
        return _command(port, b"PING") == b"+PONG"
    except OSError:
        return False


@contextlib.contextmanager
def start_redis(executable: str = "redis-server") -> Iterator[str]:
    """Run a throwaway Redis server and yield its URL (``redis://127.0.0.1:<port>/0``).

    Nothing is persisted. The server is killed on exit.
    """
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(f"{executable} is not installed")
    # The port is free when chosen but another process could take it before
    # Redis binds, so a server that dies at start is retried on a new port.
    for _attempt in range(3):
        port = free_port()
        process = subprocess.Popen(
            [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _ping(port):
                    break
                time.sleep(0.05)
            else:
                continue  # exited (port taken?) or never answered: try again
            yield f"redis://127.0.0.1:{port}/0"
            return
        finally:
            process.kill()
            process.wait(timeout=10)
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a Redis server shared by the test session."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with start_redis() as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis server with an empty database 0."""
    port = int(redis_server.rsplit(":", 1)[1].split("/", 1)[0])
    assert _command(port, b"FLUSHALL") == b"+OK"
    return redis_server
