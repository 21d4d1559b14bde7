"""The golden files are committed: a missing one fails the parity tests with a clear message, never skips."""

import importlib.util
from pathlib import Path

import pytest


def test_missing_flow_goldens_fail(tmp_path):
    path = Path(__file__).parent / "test_flow.py"
    spec = importlib.util.spec_from_file_location("flow_tests_without_goldens", path)
    flow_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flow_tests)
    flow_tests.GOLDEN = tmp_path  # an empty folder
    with pytest.raises(BaseException) as outcome:  # BaseException: a skip would be caught too
        flow_tests._golden_files()
    assert outcome.type is pytest.fail.Exception, f"{outcome.type.__name__}: {outcome.value}"
    assert "golden files absent: flow_config.json" in str(outcome.value)
