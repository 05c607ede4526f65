"""The README's run-time tables from one ``make test`` run: its phase file and the model cache it filled.

    make test                                    # writes _build/phases.tsv and fills .cache/reprodiff
    python benchmarks/times.py --kind "middle (53 ms)"

Prints (markdown) the whole command by phase, and per chapter: its own time after the book's
training pool (measured: its nbval phase) and an estimate of its time alone from an empty cache
(that time plus the single-core training seconds of every model it uses, recorded in each model's
``model.json``, shared by the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = {"01": "same_noise", "02": "architectures", "03": "regimes", "04": "theory", "05": "agreement",
               "06": "conditional", "07": "inverse", "08": "fine_tuning", "09": "explorer"}


def chapter_models(experiment: str) -> list:
    """Every model (and VAE) a chapter uses, as it would train them alone."""
    from reprodiff.configs import get_config, profile_models

    models = {m.hash: m for name, m in profile_models("cpu").items() if name.startswith(f"{experiment}: ")}
    cfg = get_config(experiment, "cpu")
    models.update({m.hash: m for m in getattr(cfg, "audit", {}).values()})
    models.update({v.hash: v for v in getattr(cfg, "vaes", {}).values()})
    return list(models.values())


def training_seconds(cfg) -> float:
    from reprodiff.controls import VAEConfig, vae_dir
    from reprodiff.training import checkpoint_dir

    folder = vae_dir(cfg) if isinstance(cfg, VAEConfig) else checkpoint_dir(cfg)
    return float(json.loads((folder / "model.json").read_text()).get("seconds", 0.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phases", type=Path, default=ROOT / "_build" / "phases.tsv")
    p.add_argument("--kind", required=True, help='the machine kind, e.g. "middle (53 ms)"')
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    os.environ.setdefault("REPRODIFF_CACHE", str(ROOT / ".cache" / "reprodiff"))
    rows = [line.split("\t") for line in args.phases.read_text().splitlines() if "\t" in line]
    phases = {name: float(s) for name, s in rows}
    chapters = {name.split()[1][:2]: s for name, s in phases.items() if name.startswith("chapter ")}
    total = sum(phases.values())
    print(f"| {args.kind} | " + " | ".join(f"{name} {s:,.0f} s" for name, s in phases.items()
                                           if not name.startswith("chapter ")) +
          f" | chapters {sum(chapters.values()):,.0f} s | **{total / 60:.0f} min** |")
    print()
    for number, experiment in EXPERIMENTS.items():
        models = chapter_models(experiment)
        train = sum(training_seconds(m) for m in models)
        alone = chapters[number] + train / args.cores
        print(f"| {number} | {chapters[number] / 60:.1f} min | {len(models)} models, {train / 60:.0f} single-core min "
              f"| ~{alone / 60:.0f} min |")


if __name__ == "__main__":
    main()
