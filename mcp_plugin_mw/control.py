"""
Reloads and mode changes across processes
=========================================

With ``plugin_settings.control: {redis_url: ...}``, a manager publishes each
:meth:`~mcp_plugin_mw.manager.PluginManager.reload` and
:meth:`~mcp_plugin_mw.manager.PluginManager.set_mode` made on it to a Redis
channel, and a daemon thread applies those published by every other process
sharing the channel: the workers of ``uvicorn --workers`` or gunicorn, and
other machines. A reload re-reads each process's own configuration source
(or loads the mapping that was published with it); a failure is logged where
it happens and leaves that process's chain as it was.

.. warning::

   Whoever can publish on the channel can change every process's plugins
   (a reload to a mapping replaces them). Give the Redis server the same
   protection as the configuration files: a password, a private network.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .manager import PluginManager

__all__ = ["ControlChannel"]

logger = logging.getLogger("mcp_plugin_mw.control")


class ControlChannel:
    """One manager's end of the channel: :meth:`publish` and a thread that applies the others' messages.

    :param manager: the manager to apply messages to (held weakly).
    :param url: the Redis URL.
    :param channel: the channel's name.
    """

    def __init__(self, manager: PluginManager, url: str, channel: str) -> None:
        from redis import Redis

        self.channel = channel
        self.origin = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._manager = weakref.ref(manager)
        self._redis = Redis.from_url(url)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(channel)  # before any publish of ours: none is missed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="mcp-plugin-mw-control", daemon=True)
        self._thread.start()

    def publish(self, op: str, **fields: Any) -> None:
        """Tell the other processes; a failure is logged, the local change stands."""
        try:
            self._redis.publish(self.channel, orjson.dumps({"op": op, "origin": self.origin, **fields}))
        except Exception:
            logger.exception("could not publish %s on %s", op, self.channel)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for close in (self._pubsub.close, self._redis.close):
            try:
                close()
            except Exception:
                logger.debug("closing the control channel", exc_info=True)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except Exception:
                logger.exception("the control channel %s failed; retrying", self.channel)
                self._stop.wait(1.0)
                continue
            if message is not None:
                self._apply(message.get("data"))

    def _apply(self, data: Any) -> None:
        try:
            command = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            logger.warning("ignored a message on %s that is not JSON", self.channel)
            return
        if not isinstance(command, dict) or command.get("origin") == self.origin:
            return
        manager = self._manager()
        if manager is None:
            self._stop.set()
            return
        op = command.get("op")
        try:
            if op == "reload":
                config = command.get("config")
                manager.reload(config if isinstance(config, Mapping) else None, publish=False)
            elif op == "set_mode":
                manager.set_mode(str(command["name"]), str(command["mode"]), publish=False)
            else:
                logger.warning("ignored an unknown operation %r on %s", op, self.channel)
                return
        except Exception:
            # This process keeps its chain; the operator sees why here.
            logger.exception("applying %s from %s failed", op, command.get("origin"))
            return
        logger.info("applied %s from %s", op, command.get("origin"))
