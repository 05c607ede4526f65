"""Seconds per phase of ``make test``, printed at the end of the run (whether it passed or not).

The Makefile appends its own phases (setup, the book build, the book's training pool) to the file
named by ``$REPRODIFF_PHASES``; this plugin adds pytest's: each chapter's nbval regression, the
smoke run of the gpu code path, the browser check and the other tests. CI's log then says which kind
of machine ran it (``python -m reprodiff speed`` at the start) and where the time went.
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


def pytest_runtest_logreport(report):
    _SECONDS[_phase(report.nodeid)] += report.duration


def pytest_terminal_summary(terminalreporter):
    rows = []
    phases = os.environ.get("REPRODIFF_PHASES")
    if phases and Path(phases).is_file():
        for line in Path(phases).read_text().splitlines():
            name, _, seconds = line.partition("\t")
            if seconds.strip().isdigit():
                rows.append((name, float(seconds)))
    rows += sorted(_SECONDS.items(), key=lambda kv: (not kv[0].startswith("chapter"), kv[0]))
    rows.append(("pytest outside tests (collection, start-up)", max(0.0, time.monotonic() - _START - sum(_SECONDS.values()))))
    if phases:  # the whole run in one file: benchmarks/times.py turns it into the README's tables
        with open(phases, "a") as f:
            f.writelines(f"{name}\t{seconds:.0f}\n" for name, seconds in rows[len(rows) - len(_SECONDS) - 1:])
    width = max(len(name) for name, _ in rows)
    tr = terminalreporter
    tr.section("seconds per phase")
    for name, seconds in rows:
        tr.write_line(f"{name:<{width}}  {seconds:7,.0f} s")
    tr.write_line(f"{'total':<{width}}  {sum(s for _, s in rows):7,.0f} s  ({sum(s for _, s in rows) / 60:.1f} min)")
