"""The repository keeps its promises: CI runs exactly the README's test command, and the tests
carry their own real data (most run on the shipped GSM8K subset, with nothing beside the clone)."""

import ast
import json
import os
import re
import subprocess
import sys
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


# -- real test data: most tests run on the shipped subset; only the fixtures reach ../shared ----

_PROBE = r"""
import json, sys
import pytest

class Probe:
    def pytest_collection_finish(self, session):
        self.items = []
        for item in session.items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            self.items.append({"id": item.nodeid, "fixtures": sorted(getattr(item, "fixturenames", ())),
                               "table": str(params.get("real_table", "")),
                               "marked": item.get_closest_marker("real_data") is not None,
                               "shared": item.get_closest_marker("shared_data") is not None})

probe = Probe()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"], plugins=[probe])
print("\nPROBE " + json.dumps(probe.items))
sys.exit(int(code))
"""


def _tables_read(item) -> set[str]:
    """The real crowd tables a collected test reads: "gsm" (shipped) and/or "zoo" (../shared)."""
    tables = set()
    for name in item["fixtures"]:
        if name.startswith("gsm_"):
            tables.add("gsm")
        elif name.startswith("zoo_"):
            tables.add("zoo")
    if "real_table" in item["fixtures"]:
        tables.add({"zeroeval_gsm": "gsm", "alpaca_zoo": "zoo"}[item["table"]])
    return tables


def test_most_real_data_tests_run_on_the_shipped_subset(tmp_path):
    # Collected in another process, with CROWDSELECT_SHARED pointing at an empty folder as on a
    # plain clone: collection must not need ../shared either.
    env = {**os.environ, "CROWDSELECT_SHARED": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    items = json.loads(out.stdout.rsplit("\nPROBE ", 1)[1])
    reads = {item["id"]: _tables_read(item) for item in items}
    # A test that needs the AlpacaEval table skips without it, whatever else it reads.
    shipped_only = sorted(i for i, t in reads.items() if t == {"gsm"})
    needs_shared = sorted(i for i, t in reads.items() if "zoo" in t)
    counts = f"{len(shipped_only)} tests read only the shipped GSM8K subset, {len(needs_shared)} need ../shared"
    print(counts)
    assert len(shipped_only) > len(needs_shared), counts
    # The real_data marker is exactly the tests that read a table; shared_data (what .ci/run re-runs
    # without ../shared) exactly those that read the AlpacaEval one.
    assert [i["id"] for i in items if i["marked"]] == [i["id"] for i in items if reads[i["id"]]]
    assert sorted(i["id"] for i in items if i["shared"]) == needs_shared


def _code_strings(path: Path):
    """(line, text) of every string constant in a module that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        if isinstance(node, ast.ImportFrom) and node.module == "conftest":
            for alias in node.names:
                yield node.lineno, f"import of conftest.{alias.name}"


def test_only_the_fixtures_reach_the_shared_folder():
    # Why .ci/run may re-run only the shared_data tests without ../shared: no other code can see it.
    shared = re.compile(r"(^|[/\\])shared([/\\]|$)|CROWDSELECT_SHARED|conftest\.(SHARED|ZOO_DIR)\b")
    # conftest.py locates it; this file only points CROWDSELECT_SHARED away from it.
    files = [p for p in sorted((ROOT / "tests").glob("*.py")) if p.name not in ("conftest.py", Path(__file__).name)]
    files += sorted((ROOT / "crowdselect_hf").rglob("*.py")) + sorted((ROOT / "examples").glob("*.py"))
    hits = [f"{p.relative_to(ROOT)}:{line}: {text!r}" for p in files for line, text in _code_strings(p) if shared.search(text)]
    assert not hits, "only tests/conftest.py may locate ../shared (through the zoo_* fixtures):\n" + "\n".join(hits)


def test_ci_runs_the_shared_data_tests_again_without_shared():
    ci = (ROOT / ".ci" / "run").read_text()
    runs = [line.strip() for line in ci.splitlines() if "python -m pytest" in line and not line.lstrip().startswith("#")]
    assert any("CROWDSELECT_SHARED=" in line and "-m shared_data" in line for line in runs), runs
