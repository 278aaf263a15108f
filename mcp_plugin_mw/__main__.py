"""``python -m mcp_plugin_mw``: the ``mcp-plugin-mw`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="mcp-plugin-mw")
