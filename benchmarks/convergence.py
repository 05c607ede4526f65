"""Held-out x0 error along training, for the digits sweep's model kinds ("measure before you cut").

Trains the regime sweep's models (``reprodiff.profiles._DIGIT_SWEEP``: unet-xs with seed 0, unet-s
with seed 1, 1,200 steps at batch 64) at a few training-set sizes N, with EMA snapshots, into a
*private* cache (``--cache``, default ``/tmp/conv-cache``; the book's cache is not touched), then
measures ``reprodiff.denoisers.x0_error`` (its default sigmas and noise seed) on the config's
held-out digits at every snapshot and at the last step. Prints one table, the step from which each
model stays within ``--tol`` of its last-step error, the training seconds and ms/step.

    python benchmarks/convergence.py                      # xs/s at N = 16, 128, 1500 (~7 min on 2 cores)
    python benchmarks/convergence.py --n 16 --backbones unet-xs --json out.json

Training runs through ``reprodiff.training.load_or_train_many`` (2 worker processes, one thread
each), so a second run with the same cache only measures. The training loss column is the
trainer's running average of the batch loss (0.98 decay, recorded every 10 steps) at that step,
on the training batches and the raw (not EMA) weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

STEPS = (100, 200, 300, 400, 600, 800, 1000)  # snapshots; the last step (1,200) is the model itself


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="/tmp/conv-cache", help="private model cache (REPRODIFF_CACHE)")
    ap.add_argument("--backbones", nargs="+", default=["unet-xs", "unet-s"])
    ap.add_argument("--n", nargs="+", type=int, default=[16, 128, 1500], help="training-set sizes (sweep's N)")
    ap.add_argument("--snapshots", nargs="+", type=int, default=list(STEPS))
    ap.add_argument("--tol", type=float, default=0.02, help="relative distance to the last-step error")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)

    os.environ["REPRODIFF_CACHE"] = args.cache  # before anything reads it; spawned workers inherit it
    import torch

    from reprodiff.profiles import _DIGIT_SWEEP
    from reprodiff.denoisers import x0_error
    from reprodiff.runtime import flush_denormal
    from reprodiff.training import checkpoint_dir, load_model, load_or_train_many, training_data

    seed_of = {backbone: i for i, backbone in enumerate(_DIGIT_SWEEP.sizes.values())}  # the sweep's seeds
    configs = {}
    for backbone in args.backbones:
        for n in args.n:
            seed = seed_of.get(backbone, 0)
            base = replace(_DIGIT_SWEEP.base, backbone=backbone, n_train=n, seed=seed)
            configs[(backbone, n)] = replace(base, snapshots=tuple(args.snapshots))
    for cfg in configs.values():
        print(f"{cfg.name}: {checkpoint_dir(cfg)}", file=sys.stderr)

    t0 = time.perf_counter()
    finals = load_or_train_many(list(configs.values()))
    train_wall = time.perf_counter() - t0

    steps = sorted({*args.snapshots, max(c.steps for c in configs.values())})
    results = {}
    t1 = time.perf_counter()
    with flush_denormal():
        for (backbone, n), cfg in configs.items():
            _, held = training_data(cfg)
            final = finals[list(configs).index((backbone, n))].cpu()
            losses = dict((int(s), v) for s, v in final.info["losses"])
            rows = {}
            for step in steps:
                model = final if step == cfg.steps else load_model(cfg, step=step)
                errs = x0_error(model, held.images)
                rows[step] = dict(x0=errs, mean=sum(errs) / len(errs), loss=losses.get(step))
            last = rows[cfg.steps]

            def settled(key, i=None, rows=rows, last=last):  # first step from which every later step is within tol of the last
                value = (lambda r: r[key][i]) if i is not None else (lambda r: r[key])
                ref, first = value(last), None
                for step in reversed(steps):
                    if abs(value(rows[step]) - ref) > args.tol * ref:
                        break
                    first = step
                return first

            seconds = float(final.info["seconds"])
            results[f"{backbone} N={n}"] = dict(
                name=cfg.name, hash=cfg.hash, parameters=final.info["parameters"], seconds=seconds,
                ms_per_step=1000 * seconds / cfg.steps, rows=rows,
                settled=dict(mean=settled("mean"), **{f"sigma={s}": settled("x0", i)
                                                       for i, s in enumerate((0.1, 0.5, 2.0))}))
    eval_wall = time.perf_counter() - t1

    print("held-out x0 error (RMS, reprodiff.denoisers.x0_error, sigmas 0.1 / 0.5 / 2.0, "
          f"{len(held)} held-out digits); loss = trainer's running training loss")
    print(f"{'model':18s} {'step':>5s} {'s=0.1':>7s} {'s=0.5':>7s} {'s=2.0':>7s} {'mean':>7s} {'loss':>7s}")
    for key, r in results.items():
        for step, row in r["rows"].items():
            loss = "" if row["loss"] is None else f"{row['loss']:.4f}"
            print(f"{key:18s} {step:5d} " + " ".join(f"{e:7.4f}" for e in row["x0"]) + f" {row['mean']:7.4f} {loss:>7s}")
    print(f"\nfirst step from which every later step is within {args.tol:.0%} of the {steps[-1]}-step error:")
    for key, r in results.items():
        print(f"  {key:18s} " + "  ".join(f"{k}: {v}" for k, v in r["settled"].items()))
    print("\ntraining time per model (info['seconds'], two models training at once on 2 cores):")
    for key, r in results.items():
        print(f"  {key:18s} {r['parameters']:>8,d} params  {r['seconds']:7.1f} s  {r['ms_per_step']:6.1f} ms/step")
    print(f"\nwall: training (load_or_train_many) {train_wall:.1f} s, measuring {eval_wall:.1f} s; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, train_wall=train_wall, eval_wall=eval_wall), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
