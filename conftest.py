"""Seconds per phase of ``make test``, printed at the end of the run (whether it passed or not).

The Makefile appends its own phases (setup, the book build, the book's training pool) to the file
named by ``$REPRODIFF_PHASES``; this plugin adds pytest's: each chapter's nbval regression, the
smoke run of the gpu code path, the browser check and the other tests. CI's log then says which kind
of machine ran it (``python -m reprodiff speed`` at the start) and where the time went.

``make test`` runs pytest on two workers (pytest-xdist, one test file or notebook per worker at a time,
one torch thread each): the per-phase rows are then busy seconds that overlap, and the row "pytest, wall
clock" is what the phases took together.
"""

import os
import time
from collections import defaultdict
from pathlib import Path

_SECONDS: dict[str, float] = defaultdict(float)
_START = time.monotonic()
_OWN = {"tests/test_smoke.py": "smoke run of every chapter's gpu path", "tests/test_browser.py": "browser check"}


def _phase(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path.startswith("book/"):
        return f"chapter {Path(path).stem} (nbval)"
    return _OWN.get(path, "unit, reliability and hygiene tests")


# the longest units of work first, so that with two workers neither is left alone with a long one at the end
_FIRST = ("book/05_why_models_agree.ipynb", "book/06_conditional.ipynb", "book/07_inverse_problems.ipynb",
          "tests/test_smoke.py", "book/02_architectures.ipynb")


def pytest_collection_modifyitems(items):
    rank = {path: k for k, path in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(_FIRST)))  # stable: cells stay in order


def pytest_runtest_logreport(report):
    _SECONDS[_phase(report.nodeid)] += report.duration


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller reports every test's duration
        return
    workers = getattr(config.option, "numprocesses", None) or 0
    rows = []
    phases = os.environ.get("REPRODIFF_PHASES")
    if phases and Path(phases).is_file():
        for line in Path(phases).read_text().splitlines():
            name, _, seconds = line.partition("\t")
            if seconds.strip().isdigit():
                rows.append((name, float(seconds)))
    outside = rows[:]  # the Makefile's phases, which ran one after another before pytest
    busy = sorted(_SECONDS.items(), key=lambda kv: (not kv[0].startswith("chapter"), kv[0]))
    wall = time.monotonic() - _START
    suffix = f" (busy seconds on {workers} workers)" if workers > 1 else ""
    rows += [(name + suffix, seconds) for name, seconds in busy]
    rows.append(("pytest, wall clock", wall))
    if phases:  # the whole run in one file: benchmarks/times.py turns it into the README's tables
        with open(phases, "a") as f:
            f.writelines(f"{name}\t{seconds:.0f}\n" for name, seconds in [*busy, ("pytest, wall clock", wall)])
    width = max(len(name) for name, _ in rows)
    tr = terminalreporter
    tr.section("seconds per phase")
    for name, seconds in rows:
        tr.write_line(f"{name:<{width}}  {seconds:7,.0f} s")
    total = sum(s for _, s in outside) + wall
    tr.write_line(f"{'total (wall clock)':<{width}}  {total:7,.0f} s  ({total / 60:.1f} min)")
