"""Book hygiene: every chapter's py:percent source is paired with a committed, executed .ipynb that
follows the chapter conventions of the README's contributing section."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "book").glob("[0-9][0-9]_*.py"))
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
TOC = (REPO / "_toc.yml").read_text()


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(sorted(c.metadata.get("tags", [])))) for c in nb.cells]


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _tagged(nb, tag):
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def test_there_are_chapters():
    assert CHAPTERS, "no book/NN_name.py chapters found"


@pytest.fixture(params=CHAPTERS, ids=lambda p: p.stem)
def chapter(request):
    src = request.param
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), f"{src.name} has no committed {ipynb.name} (run `make build`)"
    return src, jupytext.read(src), nbformat.read(ipynb, as_version=4)


def test_py_and_ipynb_hold_the_same_cells(chapter):
    src, py, ipynb = chapter
    assert _cells(py) == _cells(ipynb), (
        f"{src.name} and its .ipynb differ: run `jupytext --to ipynb --update {src.relative_to(REPO)}` "
        "and re-execute (make build)")


def test_committed_notebook_was_executed_without_errors(chapter):
    src, _, ipynb = chapter
    for i, cell in enumerate(_code(ipynb)):
        assert cell.execution_count is not None, f"{src.stem}: code cell {i} was never executed"
        for out in cell.outputs:
            assert out.output_type != "error", f"{src.stem}: code cell {i} stored an error"
    counts = [c.execution_count for c in _code(ipynb)]
    assert counts == sorted(counts), f"{src.stem}: cells were executed out of order"


def test_chapter_is_in_the_toc(chapter):
    src, _, _ = chapter
    assert f"book/{src.stem}" in TOC


def test_no_sys_path_edits_no_classes_no_chapter_imports(chapter):
    src, py, _ = chapter
    for cell in _code(py):
        assert "sys.path" not in cell.source, f"{src.name}: edits sys.path"
        assert not re.search(r"^\s*class\s+\w+", cell.source, re.M), f"{src.name}: defines a class (belongs in the package)"
        assert not re.search(r"^\s*(from|import)\s+(book|\d\d_)", cell.source, re.M), f"{src.name}: imports a chapter"


def test_exactly_one_parameters_cell_holding_only_the_profile(chapter):
    src, py, _ = chapter
    params = _tagged(py, "parameters")
    assert len(params) == 1, f"{src.name}: needs exactly one 'parameters' cell"
    lines = [ln for ln in params[0].source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines == ['PROFILE = "cpu"'], f"{src.name}: the parameters cell must hold only PROFILE = \"cpu\""


def test_hidden_colab_bootstrap_installs_from_the_configured_repository(chapter):
    src, py, _ = chapter
    boot = [c for c in _tagged(py, "remove-cell") if "google.colab" in c.source]
    assert len(boot) == 1, f"{src.name}: needs one remove-cell Colab bootstrap cell"
    url = CONFIG["repository"]["url"].rstrip("/")
    assert f"git+{url}" in boot[0].source, f"{src.name}: bootstrap must install from {url} (_config.yml)"
    assert "runtime_report" in boot[0].source, f"{src.name}: bootstrap must report whether a GPU is present"
    assert py.cells.index(boot[0]) < py.cells.index(_tagged(py, "parameters")[0])


def test_opening_states_time_to_run_per_profile(chapter):
    src, py, _ = chapter
    opening = py.cells[0]
    assert opening.cell_type == "markdown" and opening.source.startswith("# "), f"{src.name}: starts with a title"
    assert "Time to run" in opening.source and "`cpu`" in opening.source and "`gpu`" in opening.source


def test_config_summary_and_final_headline_cell(chapter):
    src, py, _ = chapter
    assert any("get_config(" in c.source and ".summary()" in c.source for c in _code(py)), \
        f"{src.name}: needs a config summary cell"
    headline = _tagged(py, "nbval-check-output")
    assert len(headline) == 1, f"{src.name}: needs one headline cell tagged nbval-check-output"
    assert headline[0] is _code(py)[-1], f"{src.name}: the headline cell is the last code cell"
    assert "print(" in headline[0].source


def test_headline_output_is_stored(chapter):
    src, _, ipynb = chapter
    headline = _tagged(ipynb, "nbval-check-output")[0]
    text = "".join(o.get("text", "") for o in headline.outputs)
    assert re.search(r"\d\.\d\d", text), f"{src.stem}: headline cell printed no rounded number"


SAME_IMAGE = re.compile(r"same-image threshold \[(?P<desc>[\w-]+), (?P<data>[\w-]+)\]: (?P<value>\d\.\d+) \((?P<rule>[^);]*)"
                        r"(?:; 95% bootstrap interval (?P<interval>\d\.\d+-\d\.\d+))?\)")
OTHER_CALIBRATIONS = ("null_quantile", "calibrate_threshold(", "pooled_null_threshold(")


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in _code(nb) for o in c.outputs if o.get("output_type") == "stream")


def test_chapters_share_one_same_image_rule_per_descriptor_and_dataset():
    """RP and GL in every chapter say "the same image" by one rule: for each (descriptor, dataset)
    every executed chapter printed the same threshold and statement, and it is what the package's
    book_rule computes today (a chapter executed under an older rule fails here)."""
    from reprodiff.experiments import book_rule

    seen: dict[tuple[str, str], set[tuple[str, str, str]]] = {}
    seen_intervals: dict[tuple[str, str], set[tuple[str, str, str | None, str]]] = {}
    for src in CHAPTERS:
        nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
        code = "\n".join(c.source for c in _code(nb))
        for name in OTHER_CALIBRATIONS:
            assert name not in code, f"{src.stem} calibrates a threshold its own way ({name}); use book_rule"
        found = list(SAME_IMAGE.finditer(_printed(nb)))
        if any(k in code for k in ("rp_score(", "rp_matrix(", "regime_sweep(", "gl_score(")):
            assert found, f"{src.stem} scores RP or GL but never prints its same-image rule"
        for m in found:  # a chapter executed since the rule carries its interval prints it too
            seen.setdefault((m["desc"], m["data"]), set()).add((m["value"], m["rule"], src.stem))
            seen_intervals.setdefault((m["desc"], m["data"]), set()).add((m["value"], m["rule"], m["interval"], src.stem))
    assert ("pixel", "digits") in seen
    for (desc, data), uses in seen.items():
        rules = {(value, rule) for value, rule, _ in uses}
        assert len(rules) == 1, f"chapters disagree on the same-image rule for {desc} on {data}: {sorted(uses)}"
        (value, rule), = rules
        now = book_rule(data, desc)
        assert (value, rule) == (f"{now.threshold:.3f}", now.rule), \
            f"the chapters printed {value} ({rule}) for {desc} on {data}; book_rule gives {now}: re-execute them"
        printed = {interval for _, _, interval, _ in seen_intervals.get((desc, data), ()) if interval}
        assert printed <= ({f"{now.interval[0]:.3f}-{now.interval[1]:.3f}"} if now.interval else set()), \
            f"a chapter printed the threshold's interval {sorted(printed)} for {desc} on {data}; book_rule gives {now}"
