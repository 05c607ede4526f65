"""The README quotes facts the code decides; these tests fail when the two drift apart."""

import re
from pathlib import Path

from reprodiff.backbones import build_backbone, count_parameters
from reprodiff.configs import profile_models
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
