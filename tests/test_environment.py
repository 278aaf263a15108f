"""In CI every optional dependency the suite can use must be present: a skip there would hide a gap."""

from __future__ import annotations

import os
import shutil

import pytest

from mcp_plugin_mw.plugins import deny_list, regex_replace

pytestmark = pytest.mark.skipif(not os.environ.get("CI"), reason="checks the CI machine only")


def test_fast_engines_are_installed() -> None:
    assert deny_list.HAVE_AHOCORASICK, "ahocorasick-rs is missing from the test extra"
    assert regex_replace.HAVE_RE2, "google-re2 is missing from the test extra"


@pytest.mark.parametrize("program", ["redis-server", "node", "mcp-plugin-mw"])
def test_programs_the_tests_start_are_on_path(program: str) -> None:
    assert shutil.which(program), f"{program} is not on PATH; .ci/run installs it"
