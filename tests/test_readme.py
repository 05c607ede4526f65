"""The README quotes facts the code decides; these tests fail when the two drift apart."""

import re
from pathlib import Path

from reprodiff.backbones import build_backbone, count_parameters
from reprodiff.profiles import profile_models
from reprodiff.training import training_data

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SHAPES = {"digits": (1, 8, 8), "molrg": (1, 8, 8), "cifar10": (3, 32, 32)}


def _millions(n: int) -> str:
    return f"{n / 1e6:.2g}M"


def _profile_row(profile: str) -> str:
    section = README.split("## Profiles", 1)[1].split("\n## ", 1)[0]  # the package table names modules alike
    rows = [line for line in section.splitlines() if line.startswith(f"| `{profile}`")]
    assert len(rows) == 1, f"the README's profiles table needs one row for `{profile}`"
    return rows[0]


def test_profiles_table_states_the_parameter_counts_the_configs_build():
    for profile in ("cpu", "gpu", "paper", "smoke"):
        counts = {name: count_parameters(build_backbone(m.backbone, SHAPES[m.dataset]))
                  for name, m in profile_models(profile).items()}
        lo, hi = min(counts.values()), max(counts.values())
        stated = f"{_millions(lo)}-{_millions(hi)} parameters"
        assert stated in _profile_row(profile), (
            f"the README's `{profile}` row must say {stated!r}: its configs build models of "
            f"{_millions(lo)} ({min(counts, key=counts.get)}) to {_millions(hi)} ({max(counts, key=counts.get)})")


def test_profiles_table_states_the_cpu_split():
    train, heldout = training_data(profile_models("cpu")["same_noise: UNet-XS s0"])
    assert re.search(rf"{len(train) + len(heldout):,} real 8x8 digits \({len(heldout)} held out\)", _profile_row("cpu"))


# the README's per-chapter run times (benchmarks/times.py prints these rows from a make test run)
_CHAPTER_TIME = re.compile(r"^\| (0\d) [^|]*\| ([\d.]+ min) \| (\d+) models, (\d+) single-core min \| (~\d+ min) \|", re.M)


def test_chapter_headers_quote_the_readmes_run_times():
    rows = {m[0]: m[1:] for m in _CHAPTER_TIME.findall(README)}
    sources = sorted((REPO / "book").glob("[0-9][0-9]_*.py"))
    assert sorted(rows) == [s.name[:2] for s in sources], "the README's per-chapter time table needs a row per chapter"
    for src in sources:
        after, n, train, alone = rows[src.name[:2]]
        opening = " ".join(line[2:] for line in src.read_text().split("# %%")[1].splitlines() if line.startswith("# "))
        for quote in (f"{after} once the book's models are trained", f"{alone} alone from an empty cache",
                      f"the {n} models it uses: {train} single-core minutes"):
            assert quote in opening, f"{src.name}'s Time to run must say {quote!r}, as the README's table does"


def test_landing_page_quotes_the_readmes_latest_run():
    measured = re.search(r"^\| [^|]*measured[^|]*\|.*\| \*\*(\d+) min\*\* \|$", README, re.M)
    assert measured, "the README's run-time table needs the measured run's row, ending in its total (**N min**)"
    landing = (REPO / "book" / "index.md").read_text()
    assert f"{measured[1]} minutes" in landing, f"the landing page must quote the README's latest run: {measured[1]} minutes"
