"""Helpers of the tool tests: the scripts under tools/ are not a package, so each is imported from its
file."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def tool_module(relative: str) -> Iterator[ModuleType]:
    """The script ``ROOT / relative`` imported as a module (registered in ``sys.modules`` while in use, so
    its dataclasses and pickling work), removed again afterwards."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="session")
def load_tool():
    """``with load_tool("tools/experiments/x.py") as module: ...`` (see ``tool_module``)."""
    return tool_module
