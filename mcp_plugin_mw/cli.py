"""
Command line
============

``mcp-plugin-mw validate FILE``
    Load the configuration and every plugin in it; exit 0, or 1 with every
    problem listed.

``mcp-plugin-mw plugins FILE``
    Print the plugins as a table: name, kind, hooks, flow, category, mode,
    priority and timeout.
"""

from __future__ import annotations

from pathlib import Path

import click

from .config import ConfigError
from .manager import PluginManager

__all__ = ["main"]


def _load(path: Path) -> PluginManager:
    try:
        return PluginManager(path)
    except ConfigError as exc:
        click.echo(f"{path}: invalid ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''})", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        raise SystemExit(1) from None


@click.group()
@click.version_option(package_name="mcp-plugin-mw")
def main() -> None:
    """Plugin pipeline middleware for MCP and HTTP apps."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def validate(file: Path) -> None:
    """Check a configuration file and the plugins it names."""
    manager = _load(file)
    active = sum(1 for plugin in manager.plugins if plugin.mode.value != "disabled")
    click.echo(f"{file}: OK ({len(manager.plugins)} plugins, {active} active)")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def plugins(file: Path) -> None:
    """List the plugins of a configuration file."""
    manager = _load(file)
    default_timeout = manager.settings.plugin_timeout
    header = ("name", "kind", "hooks", "flow", "category", "mode", "priority", "timeout")
    rows = [header]
    for plugin in manager.plugins:
        config = plugin.plugin_config
        rows.append(
            (
                plugin.name,
                config.kind,
                ",".join(hook.value for hook in plugin.hooks),
                config.flow.value,
                (config.category or type(plugin).default_category).value,
                config.mode.value,
                str(config.priority),
                f"{config.timeout or default_timeout:g}s",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
