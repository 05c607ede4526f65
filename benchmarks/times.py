"""The README's run-time tables from one ``make test`` run: its phase file and the model cache it filled.

    make test                                    # writes _build/phases.tsv and fills .cache/reprodiff
    python benchmarks/times.py

Prints (markdown) the whole command by phase, measured on this machine and scaled to the other kinds
of machine by their sustained UNet-XS training step times (every phase but setup), and per chapter: its own time after the book's
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
TITLES = {"01": "Same noise, same image", "02": "Architectures, objectives and samplers",
          "03": "Memorization and generalization regimes", "04": "Theory: optimal and Gaussian denoisers",
          "05": "Why models agree", "06": "Conditional models", "07": "Inverse problems", "08": "Fine-tuning",
          "09": "Exploring the noise space"}


def chapter_models(experiment: str) -> list:
    """Every model (and VAE) a chapter uses, as it would train them alone."""
    from reprodiff.profiles import get_config, profile_models

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


def sustained_ms() -> float:
    """This run's sustained ms per UNet-XS training step: the median over its digits UNet-XS models of the
    standard recipe's length (``profiles.digits_model``: 600 steps) of training seconds / steps (two
    trained at once, as in the pool). A steadier yardstick across machines than ``python -m reprodiff
    speed``, which times one step with the other core idle (turbo clocks: 35.7-52.7 ms on one machine in
    one day)."""
    import statistics

    from reprodiff.cache import cache_root
    from reprodiff.profiles import digits_model

    steps, per_step = digits_model("unet-xs").steps, []
    for f in cache_root().glob("models/unet-xs-edm-digits*/model.json"):
        meta = json.loads(f.read_text())
        if meta.get("steps") == steps and meta.get("seconds"):
            per_step.append(1000 * meta["seconds"] / meta["steps"])
    return statistics.median(per_step)


def _kind_row(kind: str, setup: float, build: float, pool: float, pytest_wall: float) -> str:
    total = setup + build + pool + pytest_wall
    return f"| {kind} | {setup:,.0f} s | {build:,.0f} s | {pool:,.0f} s | {pytest_wall:,.0f} s | **{total / 60:.0f} min** |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phases", type=Path, default=ROOT / "_build" / "phases.tsv")
    p.add_argument("--derive", nargs="*", default=["slow=91", "fast=36"], metavar="KIND=MS",
                   help="other machine kinds and their sustained ms per UNet-XS training step (a standard-recipe "
                        "model's training seconds / its steps, two models training at once): their rows scale every "
                        "phase but setup. Measured: slow 109 s per 1,200-step model (2026-12-03), fast 39-46 s "
                        "(2026-12-04)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = p.parse_args()
    os.environ.setdefault("REPRODIFF_CACHE", str(ROOT / ".cache" / "reprodiff"))
    rows = [line.split("\t") for line in args.phases.read_text().splitlines() if "\t" in line]
    phases = {name: float(s) for name, s in rows}
    chapters = {name.split()[1][:2]: s for name, s in phases.items() if name.startswith("chapter ")}
    setup, build = phases.pop("setup"), phases.pop("book build (html -W)")
    pool, wall = phases.pop("book models (one pool)"), phases.pop("pytest, wall clock")
    busy = sum(phases.values())
    print("| machine kind (sustained ms per UNet-XS step) | setup | book build | book models (one pool) "
          "| chapters and tests (pytest, 2 workers) | `make test` |")
    print("|---|---|---|---|---|---|")
    ms = sustained_ms()
    print(_kind_row(f"this run ({ms:.0f} ms): measured", setup, build, pool, wall))
    for item in args.derive:
        kind, other_ms = item.split("=")
        f = float(other_ms) / ms
        print(_kind_row(f"{kind} ({float(other_ms):.0f} ms): derived, x{f:.2f}", setup, build * f, pool * f, wall * f))
    print()
    print(f"pytest: {busy:,.0f} busy seconds in {wall:,.0f} s of wall clock ({busy / wall:.2f} workers busy on "
          f"average): chapters {sum(chapters.values()):,.0f} s, "
          + ", ".join(f"{name} {s:,.0f} s" for name, s in phases.items() if not name.startswith("chapter ")))
    print()
    from reprodiff.estimate import chapter_time_estimate

    for number, experiment in EXPERIMENTS.items():
        models = chapter_models(experiment)
        train = sum(training_seconds(m) for m in models)
        alone = chapters[number] + train / args.cores
        gpu = chapter_time_estimate(experiment, "gpu")[0]
        print(f"| {number} {TITLES[number]} | {chapters[number] / 60:.1f} min | {len(models)} models, {train / 60:.0f} "
              f"single-core min | ~{alone / 60:.0f} min | ~{gpu:.0f} min on a T4 (estimated, not timed) |")


if __name__ == "__main__":
    main()
