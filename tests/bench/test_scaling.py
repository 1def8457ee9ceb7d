"""bench-scaling: its promises that need no stack."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from bench.scaling import scaling


def test_without_matplotlib_it_stops_before_any_run_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on `pip install -e .` alone
    result = CliRunner().invoke(scaling, ["--workers", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "pip install -e '.[bench]'" in result.output
    assert not (tmp_path / "out").exists()


def test_a_malformed_worker_list_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(scaling, ["--workers", "1,two", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--workers" in result.output
