"""
Command line
============

``mcp-plugin-mw validate [FILE ...] [--json] [--app-dir DIR]``
    Load each configuration (default: ``$MCP_PLUGIN_MW_CONFIG``) and every
    plugin in it; exit 0, or 1 with every problem listed.

``mcp-plugin-mw plugins [FILE] [--json]``
    Print the plugins as a table: name, kind, hooks, flow, category, mode,
    priority and timeout.

``mcp-plugin-mw kinds [--json]``
    The plugin kinds installed: the built-in kinds and the entry points of
    ``mcp_plugin_mw.plugins``, each with a line saying what it does.

``mcp-plugin-mw init [DIR] [--force]``
    Write a starter ``plugins.yaml`` and a plugin module that validate.

``mcp-plugin-mw demo [--check] [--config FILE]``
    Serve (or check) an MCP server behind the middleware.

``mcp-plugin-mw serve-plugin CLASS_PATH``
    Host one plugin out of process over protocol 1 (see
    :mod:`mcp_plugin_mw.serve`).

``mcp-plugin-mw tool-hashes URL [--header K=V ...]``
    Connect to an MCP server over Streamable HTTP, list its tools (every
    page) and print ``name  sha256`` per tool, hashed as the ``tool_guard``
    plugin pins them, for its ``approved:`` setting. Tools in which the
    guard's scan finds something are named on stderr.

``mcp-plugin-mw status URL`` and ``mcp-plugin-mw reload URL``
    Ask a running admin app (:mod:`mcp_plugin_mw.admin`) at URL for its
    plugins and health, or to reload; the bearer token is read from the
    environment variable named by ``--token-env``.

``-h`` is ``--help`` everywhere; ``python -m mcp_plugin_mw`` runs the same
commands. Shell completion is click's: ``eval
"$(_MCP_PLUGIN_MW_COMPLETE=bash_source mcp-plugin-mw)"`` (``zsh_source``,
``fish_source``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .config import ConfigError
from .manager import PluginManager

__all__ = ["main"]


def _plural(count: int, noun: str) -> str:
    """``1 plugin``, ``2 plugins``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _load(path: Path) -> PluginManager:
    try:
        return PluginManager(path)
    except ConfigError as exc:
        click.echo(f"{path}: invalid ({_plural(len(exc.problems), 'problem')})", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        raise SystemExit(1) from None


_CONFIG_ENV = "MCP_PLUGIN_MW_CONFIG"


def _config_files(files: tuple[Path, ...]) -> tuple[Path, ...]:
    """The files named, else the one ``$MCP_PLUGIN_MW_CONFIG`` names."""
    if files:
        return files
    named = os.environ.get(_CONFIG_ENV, "").strip()
    if not named:
        raise click.UsageError(f"no FILE given and ${_CONFIG_ENV} is not set")
    return (Path(named),)


def _app_dir(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    # As uvicorn's --app-dir: the folder goes first on sys.path for plugin modules.
    if value is not None:
        sys.path.insert(0, os.path.abspath(value))
    return value


_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_app_dir_option = click.option(
    "--app-dir",
    metavar="DIR",
    callback=_app_dir,
    expose_value=False,
    is_eager=True,
    help="Prepended to sys.path to import plugin modules (as uvicorn's --app-dir).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcp-plugin-mw")
def main() -> None:
    """Plugin pipeline middleware for MCP and HTTP apps."""
    # Plugins usually live beside the app; find them as uvicorn and flask
    # find apps, from the current directory (after the YAML file's folder).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@main.command()
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(path_type=Path))
@_json
@_app_dir_option
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Check configuration files (default: $MCP_PLUGIN_MW_CONFIG) and the plugins they name.

    Every problem of a file is reported at once. Exits 1 if any file is bad.
    """
    reports: list[dict[str, Any]] = []
    for file in _config_files(files):
        try:
            manager = PluginManager(file)
        except ConfigError as exc:
            reports.append({"file": str(file), "ok": False, "problems": exc.problems})
            if not as_json:
                click.echo(f"{file}: invalid ({_plural(len(exc.problems), 'problem')})", err=True)
                for problem in exc.problems:
                    click.echo(f"  {problem}", err=True)
            continue
        count = len(manager.plugins)
        active = sum(1 for plugin in manager.plugins if plugin.mode.value != "disabled")
        manager.close()
        reports.append({"file": str(file), "ok": True, "plugins": count, "active": active, "problems": []})
        if not as_json:
            click.echo(f"{file}: OK ({_plural(count, 'plugin')}, {active} active)")
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    if not all(report["ok"] for report in reports):
        raise SystemExit(1)


@main.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@_json
@_app_dir_option
def plugins(file: Path | None, as_json: bool) -> None:
    """List the plugins of a configuration file (default: $MCP_PLUGIN_MW_CONFIG)."""
    (path,) = _config_files((file,) if file is not None else ())
    manager = _load(path)
    default_timeout = manager.settings.plugin_timeout
    listed: list[dict[str, Any]] = []
    for plugin in manager.plugins:
        config = plugin.plugin_config
        listed.append(
            {
                "name": plugin.name,
                "kind": config.kind,
                "hooks": [hook.value for hook in plugin.hooks],
                "flow": config.flow.value,
                "category": (config.category or type(plugin).default_category).value,
                "mode": config.mode.value,
                "priority": config.priority,
                "timeout": config.timeout or default_timeout,
            }
        )
    manager.close()
    if as_json:
        click.echo(json.dumps(listed, indent=2))
        return
    header = ("name", "kind", "hooks", "flow", "category", "mode", "priority", "timeout")
    rows = [header]
    for row in listed:
        rows.append(
            (
                row["name"],
                row["kind"],
                ",".join(row["hooks"]),
                row["flow"],
                row["category"],
                row["mode"],
                str(row["priority"]),
                f"{row['timeout']:g}s",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for line in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@main.command()
@_json
def kinds(as_json: bool) -> None:
    """List the plugin kinds installed (built-in kinds and entry points), one line each."""
    from .loader import available_kinds

    found = available_kinds()
    if as_json:
        click.echo(json.dumps([{"kind": kind, "description": text} for kind, text in found], indent=2))
        return
    width = max(len(kind) for kind, _ in found)
    for kind, text in found:
        click.echo(f"{kind.ljust(width)}  {text}")


_STARTER_YAML = """\
# Written by `mcp-plugin-mw init`. Check it with: mcp-plugin-mw validate plugins.yaml
# Class paths (my_plugins.BlockWord) are looked up in this file's folder first.
plugin_settings:
  plugin_timeout: 5
  excluded_urls: ["^/health$"]
plugins:
  - name: block-word
    kind: my_plugins.BlockWord
    hooks: [tool_pre_invoke]
    config:
      word: forbidden
  - name: pii
    kind: pii_filter
    hooks: [tool_pre_invoke, tool_post_invoke]
    config:
      strategy: redact
"""

_STARTER_MODULE = '''\
"""Plugins of this app; plugins.yaml names them by class path (my_plugins.BlockWord)."""

from __future__ import annotations

import mcp_plugin_mw as mw


class BlockWord(mw.Plugin):
    """Blocks tool calls whose arguments mention a word (config: word)."""

    def tool_pre_invoke(self, payload: mw.ToolPreInvokePayload, context: mw.PluginContext) -> mw.PluginResult | None:
        word = self.config.get("word", "forbidden")
        if word not in str(payload.args):
            return None
        return mw.PluginResult(
            continue_processing=False,
            violation=mw.PluginViolation(
                reason="Blocked word",
                description=f"the word {word!r} is not allowed",
                code="BLOCKED_WORD",
                details={"tool": payload.name},
            ),
        )
'''


@main.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: Path, force: bool) -> None:
    """Write a starter plugins.yaml and plugin module (my_plugins.py) into DIR (default: here)."""
    files = {directory / "plugins.yaml": _STARTER_YAML, directory / "my_plugins.py": _STARTER_MODULE}
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise click.ClickException(f"not overwriting {', '.join(existing)} (--force does)")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}")
    click.echo(f"next: mcp-plugin-mw validate {directory / 'plugins.yaml'}")


@main.command()
@click.option(
    "--check", is_flag=True, help="Start the demo, exercise each plugin, print a table; exit 0 if all behaved."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, help="Port to serve on.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plugins to run instead of the shipped ones (YAML).",
)
def demo(check: bool, host: str, port: int, config_file: Path | None) -> None:
    """Serve an MCP server behind the middleware with the shipped plugins (or --config's)."""
    try:
        import mcp  # noqa: F401
        import uvicorn
    except ImportError as exc:
        hint = "pip install 'mcp-plugin-mw[demo]'"
        raise click.ClickException(f"the demo needs the 'demo' extra: {hint} ({exc})") from None
    from .demo.check import run_check
    from .demo.server import CONFIG, build_app, curl_recipe, python_recipe

    if config_file is not None:
        _load(config_file).close()  # a bad file stops here, with every problem
    if check:
        raise SystemExit(0 if run_check(click.echo, config=config_file) else 1)
    url = f"http://{host}:{port}/mcp"
    click.echo(f"MCP server on {url} with the plugins in {config_file or CONFIG}")
    click.echo("Try it with the official SDK client (paste into a shell):\n")
    click.echo(python_recipe(url) + "\n")
    click.echo("or with curl (initialize, keep the session id, then call a tool):\n")
    click.echo(curl_recipe(url) + "\n")
    click.echo("Tools: lookup_customer (PII masked), send_message (deny list), review (regex), ping (rate limit).")
    uvicorn.run(build_app(config_file), host=host, port=port, log_level="info")


@main.command("serve-plugin")
@click.argument("class_path")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with the plugin's own config: mapping.",
)
@click.option("--name", help="The plugin's name (default: its class name).")
@click.option("--app-dir", default=".", show_default=True, help="Prepended to sys.path to import CLASS_PATH.")
@click.option("--ssl-certfile", help="Serve HTTPS with this certificate.")
@click.option("--ssl-keyfile", help="The certificate's key.")
@click.option("--ssl-ca-certs", help="Require client certificates signed by these CAs.")
def serve_plugin(
    class_path: str,
    port: int,
    host: str,
    config_file: Path | None,
    name: str | None,
    app_dir: str,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    ssl_ca_certs: str | None,
) -> None:
    """Host one plugin over protocol 1; prints PORT=<n> first."""
    try:
        from . import serve
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    from .loader import PluginLoadError

    try:
        serve.serve(
            class_path,
            host=host,
            port=port,
            config_file=config_file,
            name=name,
            app_dir=app_dir,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            ssl_ca_certs=ssl_ca_certs,
        )
    except ConfigError as exc:
        raise click.ClickException("\n  ".join([f"{class_path}: invalid configuration", *exc.problems])) from None
    except PluginLoadError as exc:
        raise click.ClickException(f"{class_path}: {exc}") from None


_MAX_PAGES = 1000


@main.command("tool-hashes")
@click.argument("url")
@click.option("--header", "headers", multiple=True, metavar="K=V", help="An HTTP header to send; repeatable.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for each HTTP exchange.")
def tool_hashes(url: str, headers: tuple[str, ...], timeout: float) -> None:
    """Print `name  sha256` for each tool of the MCP server at URL, for tool_guard's approved:."""
    parsed: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected K=V, got {header!r}", param_hint="--header")
        parsed[name.strip()] = value.strip()
    try:
        import httpx2  # noqa: F401
        import mcp  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"tool-hashes needs the 'mcp' extra: pip install 'mcp-plugin-mw[mcp]' ({exc})"
        ) from None
    from .plugins.tool_guard import definition_findings, definition_hash

    try:
        tools = asyncio.run(_list_tools(url, parsed, timeout))
    except Exception as exc:
        raise click.ClickException(f"{url}: {_leaf(exc)}") from None
    for tool in tools:
        # A name that would not survive a copy and paste (blanks, hidden characters) is printed JSON-quoted.
        tool_name = tool.get("name")
        plain = isinstance(tool_name, str) and tool_name.isprintable() and tool_name.split() == [tool_name]
        shown = tool_name if plain else json.dumps(tool_name)
        click.echo(f"{shown}  {definition_hash(tool)}")
        findings = definition_findings(tool)
        if findings:
            click.echo(f"warning: tool {shown}: {', '.join(findings)}; review it before approving", err=True)


async def _list_tools(url: str, headers: dict[str, str], timeout: float) -> list[dict[str, Any]]:
    """Every tool definition the server lists, as sent (plain JSON, not the SDK's models)."""
    import httpx2
    from mcp import Client
    from mcp import types as mcp_types
    from mcp.client.streamable_http import streamable_http_client
    from pydantic import BaseModel, ConfigDict, Field

    class Page(BaseModel):
        # The tools as plain dicts: hashing the SDK's models would drop the
        # fields they do not know and so disagree with the guard.
        model_config = ConfigDict(extra="allow")
        tools: list[dict[str, Any]]
        next_cursor: str | None = Field(default=None, alias="nextCursor")

    tools: list[dict[str, Any]] = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        cursor: str | None = None
        seen: set[str] = set()
        for _page in range(_MAX_PAGES):
            request = mcp_types.ListToolsRequest(params=mcp_types.PaginatedRequestParams(cursor=cursor))
            page = await client.session.send_request(request, Page)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools
            if cursor in seen:
                raise ValueError(f"the server repeated the cursor {cursor!r}")
            seen.add(cursor)
    raise ValueError(f"more than {_MAX_PAGES} pages of tools")


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups, as the SDK's task groups raise them."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# --------------------------------------------------------------------------
# The admin app's client
# --------------------------------------------------------------------------

_TOKEN_ENV = "MCP_PLUGIN_MW_ADMIN_TOKEN"
_token_env = click.option(
    "--token-env",
    default=_TOKEN_ENV,
    show_default=True,
    metavar="NAME",
    help="The environment variable holding the admin app's bearer token.",
)
_admin_timeout = click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for each answer.")


def _admin_call(method: str, url: str, token_env: str, timeout: float) -> Any:
    """One request to the admin app; a connection failure or a 401 ends the command with exit status 1."""
    try:
        import httpx
    except ImportError:
        raise click.ClickException("status and reload need httpx: pip install httpx") from None
    token = os.environ.get(token_env, "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=httpx.Timeout(timeout))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise click.ClickException(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code == 401:
        hint = f"${token_env} is not set" if not token else f"the token in ${token_env} was refused"
        raise click.ClickException(f"{url}: 401 unauthorized ({hint})")
    return response


def _admin_json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        raise click.ClickException(
            f"{response.request.url}: {response.status_code}, not JSON: {response.text[:200]!r}"
        ) from None


def _plugin_table(rows: list[dict[str, Any]]) -> None:
    header = ("name", "kind", "mode", "healthy", "calls", "violations", "errors", "hooks")
    table = [header]
    for row in rows:
        table.append(
            (
                str(row.get("name")),
                str(row.get("kind")),
                str(row.get("mode")),
                "yes" if row.get("healthy") else "NO",
                str(row.get("calls", 0)),
                str(row.get("violations", 0)),
                str(row.get("errors", 0)),
                ",".join(row.get("hooks") or []),
            )
        )
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _admin_url(url: str, endpoint: str) -> str:
    return f"{url.rstrip('/')}/{endpoint}"


@main.command()
@click.argument("url")
@_token_env
@_admin_timeout
def status(url: str, token_env: str, timeout: float) -> None:
    """Print the plugins and health of the admin app at URL; exit 1 if unhealthy."""
    listed = _admin_call("GET", _admin_url(url, "plugins"), token_env, timeout)
    rows = _admin_json(listed)
    if listed.status_code != 200 or not isinstance(rows, list):
        raise click.ClickException(f"{listed.request.url}: {listed.status_code} {rows!r}")
    health = _admin_call("GET", _admin_url(url, "health"), token_env, timeout)
    verdict = _admin_json(health)
    _plugin_table(rows)
    unhealthy = verdict.get("unhealthy", []) if isinstance(verdict, dict) else []
    if health.status_code == 200:
        suffix = f" (not enforcing, unhealthy: {', '.join(unhealthy)})" if unhealthy else ""
        click.echo(f"health: ok{suffix}")
        return
    shown = ", ".join(map(str, unhealthy)) if unhealthy else repr(verdict)
    click.echo(f"health: {health.status_code} unhealthy: {shown}", err=True)
    raise SystemExit(1)


@main.command()
@click.argument("url")
@_token_env
@_admin_timeout
def reload(url: str, token_env: str, timeout: float) -> None:
    """Reload the configuration of the app whose admin app is at URL; exit 1 with the problems if it is bad."""
    response = _admin_call("POST", _admin_url(url, "reload"), token_env, timeout)
    answer = _admin_json(response)
    if response.status_code == 200 and isinstance(answer, dict):
        plugins = answer.get("plugins") or []
        click.echo(f"reloaded: {len(plugins)} plugin{'s' if len(plugins) != 1 else ''}")
        _plugin_table(plugins)
        return
    if response.status_code == 400 and isinstance(answer, dict) and "problems" in answer:
        problems = answer["problems"]
        click.echo(
            f"reload refused: {answer.get('error', 'invalid configuration')} ({len(problems)} problems)", err=True
        )
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        click.echo("the running plugins were left as they were", err=True)
        raise SystemExit(1)
    raise click.ClickException(f"{response.request.url}: {response.status_code} {answer!r}")


# --------------------------------------------------------------------------
# The pipeline in front of any MCP server
# --------------------------------------------------------------------------


@main.command()
@click.option(
    "--upstream", required=True, metavar="URL", help="The MCP endpoint of the server, e.g. http://127.0.0.1:9000/mcp."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The plugins (YAML); default: $MCP_PLUGIN_MW_CONFIG.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to serve on.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Worker processes.")
@click.option("--connect-timeout", default=10.0, show_default=True, help="Seconds to wait for a connection upstream.")
@click.option("--read-timeout", type=float, help="Seconds to wait for each read from upstream (default: no limit).")
@click.option("--verify", metavar="CA_BUNDLE|false", help="CA bundle for the upstream's TLS, or 'false'.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM) for the upstream.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="The client certificate's key.")
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
def proxy(
    upstream: str,
    config_file: Path | None,
    host: str,
    port: int,
    workers: int,
    connect_timeout: float,
    read_timeout: float | None,
    verify: str | None,
    cert: str | None,
    key: str | None,
    log_level: str,
) -> None:
    """Serve the MCP server at --upstream behind the plugins, at the same path."""
    try:
        import aiohttp  # noqa: F401
        import uvicorn
    except ImportError as exc:
        hint = "pip install 'mcp-plugin-mw[proxy]'"
        raise click.ClickException(f"the proxy needs the 'proxy' extra: {hint} ({exc})") from None
    from urllib.parse import urlsplit

    parsed = urlsplit(upstream)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise click.BadParameter(f"expected an http:// or https:// URL, got {upstream!r}", param_hint="--upstream")
    if config_file is not None:
        _load(config_file)  # a bad file fails here, with every problem, not in each worker
    # Every worker builds its own app from the environment (uvicorn needs an
    # import string to start more than one): one code path for one or many.
    env = {
        "MCP_PLUGIN_MW_PROXY_UPSTREAM": upstream,
        "MCP_PLUGIN_MW_PROXY_CONNECT_TIMEOUT": str(connect_timeout),
        "MCP_PLUGIN_MW_PROXY_READ_TIMEOUT": "" if read_timeout is None else str(read_timeout),
        "MCP_PLUGIN_MW_PROXY_VERIFY": verify if verify is not None else "true",
        "MCP_PLUGIN_MW_PROXY_CERT": str(Path(cert).resolve()) if cert else "",
        "MCP_PLUGIN_MW_PROXY_KEY": str(Path(key).resolve()) if key else "",
    }
    if config_file is not None:
        env["MCP_PLUGIN_MW_CONFIG"] = str(config_file.resolve())
    os.environ.update(env)
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"mcp-plugin-mw proxy: http://{shown_host}:{port}{parsed.path or '/'} -> {upstream}", err=True)
    uvicorn.run(
        "mcp_plugin_mw.proxy:app_from_environ",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        lifespan="on",
        # The upstream's own Date and Server headers are relayed.
        server_header=False,
        date_header=False,
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The plugins (YAML); default: $MCP_PLUGIN_MW_CONFIG.",
)
@click.option(
    "--max-line-bytes",
    type=click.IntRange(1),
    default=4 * 1024 * 1024,
    show_default=True,
    help="The longest message relayed either way; longer ones are refused.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def stdio(config_file: Path | None, max_line_bytes: int, command: tuple[str, ...]) -> None:
    """Run an MCP stdio server (after --) behind the plugins; use it as a client's server command."""
    from .manager import PluginStartError
    from .stdio import run

    manager = _load(config_file) if config_file is not None else None
    try:
        status = run(list(command), manager=manager, max_line_bytes=max_line_bytes)
    except PluginStartError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        click.echo(f"mcp-plugin-mw stdio: cannot start {command[0]!r}: {exc}", err=True)
        raise SystemExit(127) from None
    raise SystemExit(status)
