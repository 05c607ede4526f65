"""Tests that can fail: every test function asserts something (read with ``ast``, not run)."""

import ast
import subprocess
import sys
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
#: a call that asserts for the test: torch.testing.assert_close, np.testing.assert_*, _assert_bitwise_equal, ...
HELPER = re.compile(r"_?(assert|check)(_|[A-Z]|$)")


def _called_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _has_assertion(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the body of ``fn`` (not its decorators) holds an ``assert``, a ``pytest.raises``/``warns``
    (as a context or a call), a ``pytest.fail``, a ``raise AssertionError``, or a call to an assert/check helper."""
    for node in (n for stmt in fn.body for n in ast.walk(stmt)):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Raise) and isinstance(node.exc, (ast.Call, ast.Name)):
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "AssertionError":
                return True
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if name in ("raises", "warns", "deprecated_call", "fail") or HELPER.match(name):
                return True
    return False


def assertion_free(source: str) -> list[str]:
    """The ``test_*`` functions of ``source``, and its assert/check helpers, that assert nothing."""
    functions = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    # a helper counts for its callers only if it asserts itself
    return [fn.name for fn in functions
            if (fn.name.startswith("test") or HELPER.match(fn.name)) and not _has_assertion(fn)]


def test_no_test_function_is_free_of_assertions():
    found = {f"{path.name}::{name}" for path in sorted(TESTS.glob("test_*.py"))
             for name in assertion_free(path.read_text())}
    found |= {f"conftest.py::{name}" for name in assertion_free((TESTS / "conftest.py").read_text())}
    assert not found, f"these tests cannot fail (no assert, pytest.raises or assert helper): {sorted(found)}"


def test_the_scan_sees_tests_that_cannot_fail():
    source = '''
import pytest, torch

@pytest.mark.parametrize("x", [pytest.raises(ValueError)])  # a decorator does not assert for the body
def test_runs_only(x):
    torch.zeros(3).sum()

def test_plain(): assert 1
def test_context():
    with pytest.raises(ValueError):
        int("x")
def test_torch_helper(): torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
def test_local_helper(): _check_sum(2)
def _check_sum(n): assert n == 2
def check_nothing(n): return n
def test_explicit():
    if 1 != 1:
        raise AssertionError("never")
'''
    assert assertion_free(source) == ["test_runs_only", "check_nothing"]


# ----------------------------------------------------------------------------- the package's import graph

PACKAGE = TESTS.parent / "src" / "reprodiff"


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: the package modules it imports}``, read with ``ast``: every import, at the top or
    inside a function, relative (``from .x import``, ``from . import x``) or absolute (``reprodiff.x``)."""
    modules = {p.stem for p in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1 or base.startswith("reprodiff"):
                    base = base.removeprefix("reprodiff").lstrip(".")
                    targets = [base] if base else [a.name for a in node.names]
                    edges |= {t.split(".")[0] for t in targets}
            elif isinstance(node, ast.Import):
                edges |= {a.name.split(".")[1] for a in node.names if a.name.startswith("reprodiff.")}
        graph[path.stem] = (edges & modules) - {path.stem}
    return graph


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules in import layers (each above everything it imports); AssertionError naming a cycle."""
    placed: dict[str, int] = {}
    while len(placed) < len(graph):
        ready = [m for m in graph if m not in placed and graph[m] <= set(placed)]
        if not ready:
            left = {m: sorted(graph[m] - set(placed)) for m in graph if m not in placed}
            raise AssertionError(f"import cycle among {left}")
        for m in ready:
            placed[m] = 1 + max((placed[d] for d in graph[m]), default=0)
    return [sorted(m for m, k in placed.items() if k == level) for level in range(1, max(placed.values()) + 1)]


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert {"sampling", "training", "experiments", "profiles"} <= set(graph)  # the scan found the package
    assert layers(graph)  # raises on a cycle, naming the modules in it
    assert not graph["__init__"], "import reprodiff stays cheap: __init__ imports submodules lazily"


def test_the_cycle_check_sees_a_cycle():
    with pytest.raises(AssertionError, match="import cycle"):
        layers({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})
    assert layers({"a": set(), "b": {"a"}, "c": {"a", "b"}}) == [["a"], ["b"], ["c"]]


def test_the_linter_finds_nothing_in_the_repository():
    """ruff with the small rule set of pyproject.toml (undefined names, unused imports and variables,
    late-bound loop variables...) over the package, tests, benchmarks and chapter sources."""
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(root)],
                         capture_output=True, text=True, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_linter_would_see_a_planted_bug(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f():\n    return undefined_name\n")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(root / "pyproject.toml"),
                          "--output-format", "concise", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1 and "F401" in res.stdout and "F821" in res.stdout, res.stdout + res.stderr
