"""
The README cannot drift from the code
=====================================

Every ``.. code-block::`` of ``README.rst`` is used:

* Python blocks run in order, in one namespace, in a fresh interpreter whose
  current directory is a temporary folder (top-level ``await`` allowed).
* Blocks preceded by ``.. test: file NAME`` are also written to NAME in that
  folder, before anything runs (the ``plugins.yaml`` and ``myplugins.py``
  the other blocks load); YAML files written that hold ``plugins:`` must pass
  ``mcp-plugin-mw validate``.
* Shell blocks: each command must exist, ``mcp-plugin-mw`` subcommands and
  their options as ``--help`` lists them, ``pip install`` extras in
  setup.cfg; the test command is the one ``.ci/run`` runs; ``mcp-plugin-mw
  validate`` and the completion line are run; the ``curl`` recipe is the
  one ``mcp-plugin-mw demo`` prints (tests/test_demo.py runs it).
* JSON and YAML blocks must parse.

Directives are rst comments, invisible in the rendered README:
``.. test: setup`` (its indented body runs before the next block),
``.. test: then`` (after the previous one), ``.. test: replace OLD NEW`` (in
the next block, before it runs) and ``.. test: skip -- REASON``.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mcp_plugin_mw.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
BIN = Path(sys.executable).parent

_DIRECTIVE = re.compile(r"^(\s*)\.\. test: (\w+)(.*)$")
_CODE = re.compile(r"^(\s*)\.\. code-block:: (\w+)\s*$")


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int
    setup: list[str] = dataclasses.field(default_factory=list)
    then: list[str] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    replace: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skip: str | None = None


def _indented_body(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The lines after ``start`` indented more than ``indent`` (blank lines included), and where they end."""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return lines[start + 1 : end], end


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    pending = Block("", "", 0)
    index = 0
    while index < len(lines):
        directive, code = _DIRECTIVE.match(lines[index]), _CODE.match(lines[index])
        if directive:
            indent, verb, rest = len(directive.group(1)), directive.group(2), directive.group(3).strip()
            body, index = _indented_body(lines, index, indent)
            source = textwrap.dedent("\n".join(body))
            if verb == "setup":
                pending.setup.append(source)
            elif verb == "then":
                blocks[-1].then.append(source)
            elif verb == "file":
                pending.files.append(rest)
            elif verb == "replace":
                old, new = rest.split()
                pending.replace.append((old, new))
            elif verb == "skip":
                pending.skip = rest.removeprefix("--").strip() or "no reason given"
            else:
                raise AssertionError(f"README.rst:{index}: unknown test directive {verb!r}")
            continue
        if code:
            body, end = _indented_body(lines, index, len(code.group(1)))
            block = dataclasses.replace(pending, lang=code.group(2), code=textwrap.dedent("\n".join(body)).strip("\n"))
            block.line = index + 1
            blocks.append(block)
            pending = Block("", "", 0)
            index = end
            continue
        index += 1
    return blocks


BLOCKS = parse(README.read_text(encoding="utf-8"))


def test_every_directive_reason_is_given() -> None:
    skipped = [block for block in BLOCKS if block.skip is not None]
    assert all(len(block.skip or "") > 10 for block in skipped)
    assert len(skipped) <= 2, "run blocks, do not skip them"


# --------------------------------------------------------------------------
# Python blocks
# --------------------------------------------------------------------------

RUNNER = r'''
import ast, asyncio, inspect, json, os, sys

def call_tool(app, name, arguments):
    """Serve ``app`` on a free 127.0.0.1 port and call a tool with the SDK client."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp_plugin_mw.demo.check import serve

    async def call(url):
        async with httpx2.AsyncClient() as http, Client(streamable_http_client(url, http_client=http)) as client:
            return await client.call_tool(name, arguments)

    with serve(app) as url:
        return asyncio.run(call(url))

namespace = {"__name__": "__readme__", "os": os, "call_tool": call_tool}
sys.path.insert(0, os.getcwd())

def run(source, where):
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)

for block in json.load(open(sys.argv[1])):
    for part, source in block["parts"]:
        run(source, f"README.rst:{block['line']} ({part})")
    print(f"ran README.rst:{block['line']}", flush=True)
'''


def _write_files(folder: Path) -> list[Path]:
    written = []
    for block in BLOCKS:
        for name in block.files:
            path = folder / name
            path.write_text(block.code + "\n", encoding="utf-8")
            written.append(path)
    return written


def test_python_blocks_run_in_order(tmp_path: Path) -> None:
    _write_files(tmp_path)
    plan = []
    for block in BLOCKS:
        if block.lang != "python" or block.skip is not None:
            continue
        code = block.code
        for old, new in block.replace:
            assert old in code, f"README.rst:{block.line}: {old!r} not in the block"
            code = code.replace(old, new)
        parts = [("setup", source) for source in block.setup] + [("block", code)]
        parts += [("then", source) for source in block.then]
        plan.append({"line": block.line, "parts": parts})
    (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BLOCKED_WORD": "forbidden"}
    done = subprocess.run(
        [sys.executable, "runner.py", "plan.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ran README.rst:") == len(plan)
    assert len(plan) >= 12


def test_yaml_files_the_readme_writes_validate(tmp_path: Path) -> None:
    written = [path for path in _write_files(tmp_path) if path.suffix == ".yaml"]
    assert {path.name for path in written} >= {"plugins.yaml", "reference.yaml"}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_plugin_mw", "validate", "--json", *map(str, written)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(report["ok"] for report in json.loads(done.stdout))


def test_data_blocks_parse() -> None:
    for block in BLOCKS:
        if block.lang == "json":
            json.loads(block.code)
        elif block.lang == "yaml":
            assert yaml.safe_load(block.code) is not None, block.line


# --------------------------------------------------------------------------
# Shell blocks
# --------------------------------------------------------------------------

_BUILTINS = {"cd", "eval", "export"}


def _commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, split at ``&&``, ``|``, ``;`` and ``$(``."""
    commands: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in ("&&", "||", "|", ";", "(", ")", "$"):
                if current:
                    commands.append(current)
                current = []
            elif not (not current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token)):
                current.append(token.removesuffix("$"))
        if current:
            commands.append(current)
    return commands


def _extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return set(parser["options.extras_require"])


def _options(command: list[str]) -> set[str]:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, (command, result.output)
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", result.output))


SHELL = [block for block in BLOCKS if block.lang == "sh"]


@pytest.mark.parametrize("block", SHELL, ids=[f"README.rst:{block.line}" for block in SHELL])
def test_shell_commands_exist(block: Block) -> None:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    for command in _commands(block.code):
        program = command[0]
        assert program in _BUILTINS or shutil.which(program, path=path), f"README.rst:{block.line}: {program}"
        if program == "mcp-plugin-mw":
            subcommand = command[1]
            assert subcommand in main.commands, f"README.rst:{block.line}: no command {subcommand!r}"
            known = _options([subcommand])
            for word in command[2:]:
                if word.startswith("-"):
                    assert word.partition("=")[0] in known, f"README.rst:{block.line}: {subcommand} {word}"
        if command[:2] == ["pip", "install"]:
            for word in command[2:]:
                for extras in re.findall(r"\[([^\]]+)\]", word):
                    for extra in extras.split(","):
                        assert extra.strip() in _extras(), f"README.rst:{block.line}: no extra {extra!r}"


def test_the_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == "pip install -e '.[test]' && python -m pytest"
    assert any(block.code == ci for block in SHELL)
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "apt-get install redis-server nodejs npm" in text
    for program in ("``redis-server``", "``node``", "``npm``"):
        assert program in text


def test_the_curl_recipe_is_the_demos() -> None:
    from mcp_plugin_mw.demo.server import curl_recipe

    assert any(block.code == curl_recipe("http://127.0.0.1:8000/mcp") for block in SHELL)


def test_validate_lines_run(tmp_path: Path) -> None:
    _write_files(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    lines = [block.code for block in SHELL if block.code.startswith("mcp-plugin-mw validate ")]
    assert lines
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert ": OK (" in done.stdout


def test_the_completion_line_installs_completion(tmp_path: Path) -> None:
    (line,) = [block.code for block in SHELL if "_MCP_PLUGIN_MW_COMPLETE" in block.code]
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    done = subprocess.run(
        ["bash", "-c", f"{line} && complete -p mcp-plugin-mw"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "_mcp_plugin_mw_completion mcp-plugin-mw" in done.stdout
