"""
Foreign plugins for the external-plugin tests
=============================================

Plugins written against other projects' SDKs (cpex 0.1.x, mcpd-plugins) and
the scripts that host them, plus :func:`need`, which imports an optional
test dependency: it skips locally when the package is missing and fails
loudly in CI (``CI`` set), where a missing dependency is a broken setup.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import ``module``; skip without it, except in CI where that is an error."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
