"""The landing page's findings table reads the chapters' committed headlines (reprodiff.findings)."""

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from reprodiff.findings import FINDINGS, Finding, cell_png, collect, headline

BOOK = Path(__file__).resolve().parents[1] / "book"


def test_every_finding_quotes_its_chapters_headline_verbatim():
    rows = collect(BOOK)
    assert [r["finding"] for r in rows] == [f.finding for f in FINDINGS]
    for row in rows:
        text = " ".join(headline(BOOK / f"{row['chapter']}.ipynb").split())
        for column in ("measured", "baseline"):
            for part in row[column].split("; "):
                assert part and part in text, f"{part!r} ({column}) is not in {row['chapter']}'s headline"
        assert re.search(r"\d", row["measured"]) and re.search(r"\d", row["baseline"]), row
        assert row["baseline"] != row["measured"]
        assert row["paper"]


def test_every_chapter_has_a_landing_row():
    chapters = {p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb")}
    assert len(chapters) == 9
    assert chapters == {f.chapter for f in FINDINGS}


def test_a_row_without_its_baseline_fails_loudly():
    broken = [replace(FINDINGS[0], baseline=r"no such baseline \d+")]
    with pytest.raises(ValueError, match="baseline of the finding"):
        collect(BOOK, broken)
    with pytest.raises(TypeError):
        Finding("a finding", "01_same_noise", r"RP", "paper")  # a row cannot leave its baseline out


def test_a_changed_headline_fails_loudly(tmp_path):
    chapter = FINDINGS[0].chapter
    for f in {f.chapter for f in FINDINGS}:
        shutil.copy(BOOK / f"{f}.ipynb", tmp_path / f"{f}.ipynb")
    nb = json.loads((tmp_path / f"{chapter}.ipynb").read_text())
    for cell in nb["cells"]:
        if "nbval-check-output" in cell.get("metadata", {}).get("tags", []):
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["something else entirely\n"]}]
    (tmp_path / f"{chapter}.ipynb").write_text(json.dumps(nb))
    with pytest.raises(ValueError, match=f"{chapter}'s headline no longer contains"):
        collect(tmp_path)
    for cell in nb["cells"]:
        cell["outputs"] = []
    (tmp_path / f"{chapter}.ipynb").write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="no printed output; execute the chapter first"):
        collect(tmp_path)


def test_the_landing_figure_is_chapter_1s_same_noise_grid():
    png = cell_png(BOOK / "01_same_noise.ipynb", "landing-figure")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(ValueError, match="expected exactly one cell tagged"):
        cell_png(BOOK / "01_same_noise.ipynb", "no-such-tag")
