"""A process sharing a control channel, for tests/test_control.py.

``python -m tests.control_worker CONFIG STATUS`` builds a manager from the
YAML file CONFIG and, every 20 ms until killed, writes its plugins' names and
modes as JSON to STATUS.
"""

from __future__ import annotations

import json
import os
import sys
import time

import mcp_plugin_mw as mw


def main() -> None:
    config, status = sys.argv[1], sys.argv[2]
    manager = mw.PluginManager(config)
    manager.initialize()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = [[p.name, p.mode.value] for p in manager.plugins]
        with open(status + ".tmp", "w") as out:
            json.dump(state, out)
        os.replace(status + ".tmp", status)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
