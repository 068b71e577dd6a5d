"""The repository keeps its promises: CI runs exactly the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.unit


def _readme_block_after(heading_regex: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(heading_regex + r".*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert match, f"README has no code block after {heading_regex!r}"
    return [line for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    readme_test = _readme_block_after(r"(?i)run the tests")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_test[-1].strip() in ci_lines


def test_readme_starts_with_the_demo_and_test_commands():
    demo = _readme_block_after(r"(?i)try it")
    assert any("crowdselect demo" in line for line in demo)
    assert any("pip install" in line for line in demo)


def test_setup_files_each_have_one_role():
    pyproject = (ROOT / "pyproject.toml").read_text()
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert "[project]" not in pyproject, "package metadata lives in setup.cfg only"
    assert "[tool:pytest]" not in setup_cfg, "tool settings live in pyproject.toml only"
