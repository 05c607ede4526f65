"""Command line: ``python -m reprodiff train|sample|score|compare|estimate|speed``, over the same configs the book uses.

Examples::

    python -m reprodiff train --backbone unet-s --objective edm --steps 1200
    python -m reprodiff train --book                  # every model of the book's chapters, one pool
    python -m reprodiff sample --backbone unet-s --steps 1200 --seeds 0-255 --out a.safetensors
    python -m reprodiff sample --backbone unet-s --conditional --labels 3 --seeds 0-63 --out threes.safetensors
    python -m reprodiff sample --backbone unet-s --conditional --labels 3 --guidance 1 --seeds 0-63 --out g.safetensors
    python -m reprodiff score a.safetensors b.safetensors --descriptor pixel
    python -m reprodiff compare google/ddpm-cifar10-32 ./my-ddpm --seeds 0-999 --out rp-cifar
    python -m reprodiff estimate --profile gpu
    python -m reprodiff speed                         # ms per UNet-XS training step on this machine

Every argument is checked before anything is trained, loaded or sampled; a user error prints one
line (``reprodiff: error: ...``) and exits with status 2. Multi-GPU training runs the same command
under ``accelerate launch -m reprodiff train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Callable

__all__ = ["main", "parse_seeds"]

#: the Karras grid every model of a ``compare`` is sampled on, narrowed to what every model covers
_EDM_SIGMA_MIN, _EDM_SIGMA_MAX = 0.002, 80.0

_HELP = {
    "seed": "training seed (initialisation, batches); not the sampling seeds (--seeds)",
    "steps": "training steps; not the sampler's steps (--sampler-steps)",
    "checkpoint_every": "write a resumable state every this many steps",
}


class UserError(Exception):
    """A bad argument: reported in one line, exit status 2."""


def parse_seeds(text: str) -> list[int]:
    """``"0-255"``, ``"1,5,9"`` or ``"0-9,20-29"`` -> seed ids (non-negative, unique, at least one)."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if a > b:
                    raise UserError(f"--seeds: the range {part!r} is empty (start > end)")
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"--seeds: {part!r} is not a seed (N) or a range (N-M) of non-negative integers; "
                            "example: 0-255 or 1,5,9") from None
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1}) if len(set(seeds)) != len(seeds) else []
    if duplicates:
        raise UserError(f"--seeds: seed ids must be unique, repeated: {duplicates[:5]}")
    return seeds


def _add_train_args(p: argparse.ArgumentParser) -> None:
    for f in _cli_fields():
        default, flag = f.default, f"--{f.name.replace('_', '-')}"
        help_text = _HELP.get(f.name, "")
        if f.name == "n_train":
            p.add_argument("--n-train", type=int, default=None, help="training subset size (default: all)")
        elif isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default, help=help_text or None)
        elif isinstance(default, (int, float, str)):
            p.add_argument(flag, type=type(default), default=default, help=f"{help_text} (default: {default})".strip())


def _cli_fields():
    """TrainConfig's fields the command line sets: all but fine-tuning, snapshots and disjoint subsets
    (``subset_offset``): those are Python API only."""
    from .training import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("hashed") != "when-set"]


def _config(args):
    """The config the arguments describe and its training set (impossible subsets fail here)."""
    from .training import TrainConfig, training_data

    try:
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in _cli_fields()})
        data, _ = training_data(cfg)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return cfg, data


def _sample_plan(args, cfg, num_classes: int) -> dict:
    """Everything ``sample`` needs, checked before the model is trained or loaded."""
    import torch

    from .sampling import SAMPLERS

    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if args.sampler_steps < 1:
        raise UserError(f"--sampler-steps must be >= 1, got {args.sampler_steps}")
    seeds = parse_seeds(args.seeds)
    stochastic = getattr(SAMPLERS[args.sampler], "stochastic", args.sampler == "euler-ancestral")
    if stochastic and args.step_noise_stream is None:
        raise UserError(f"--sampler {args.sampler} injects noise at every step: give --step-noise-stream K "
                        "(models sampled with the same K see the same injected noise)")
    if not stochastic and args.step_noise_stream is not None:
        raise UserError(f"--step-noise-stream only applies to a stochastic sampler, not {args.sampler}")
    labels = None
    if cfg.conditional:
        if args.labels is None:
            raise UserError("a --conditional model samples one class: give --labels (one label for every seed, "
                            "or one per seed, comma-separated)")
        try:
            values = [int(v) for v in args.labels.split(",")]
        except ValueError:
            raise UserError(f"--labels: {args.labels!r} is not a comma-separated list of class labels") from None
        if len(values) == 1:
            values = values * len(seeds)
        if len(values) != len(seeds):
            raise UserError(f"--labels gives {len(values)} labels for {len(seeds)} seeds")
        bad = [v for v in values if not 0 <= v <= num_classes]
        if bad:
            raise UserError(f"--labels: {bad[:5]} outside 0-{num_classes - 1} (or {num_classes}, the unconditional "
                            "label of classifier-free guidance)")
        labels = torch.tensor(values, dtype=torch.int64)
    elif args.labels is not None:
        raise UserError("--labels needs a --conditional model")
    if args.guidance is not None:
        if not cfg.conditional:
            raise UserError("--guidance (classifier-free guidance) needs a --conditional model")
        if not math.isfinite(args.guidance) or args.guidance < 0:
            raise UserError(f"--guidance must be a finite number >= 0, got {args.guidance}")
    if args.out.suffix != ".safetensors":
        raise UserError(f"--out must name a .safetensors file, got {args.out}")
    return dict(seeds=seeds, labels=labels, stochastic=stochastic)


def _load_samples(path: Path):
    import torch
    from safetensors import safe_open

    from .sampling import Samples

    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if not {"images", "seeds"} <= keys:
                raise UserError(f"{path} holds no samples (expected tensors 'images' and 'seeds', found "
                                f"{sorted(keys) or 'none'}); write sample files with `reprodiff sample`")
            images, seeds = f.get_tensor("images"), f.get_tensor("seeds")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    if images.ndim != 4 or seeds.ndim != 1 or seeds.dtype not in (torch.int64, torch.int32):
        raise UserError(f"{path}: expected images (B, C, H, W) and integer seeds (B,), found "
                        f"{tuple(images.shape)} and {tuple(seeds.shape)} {seeds.dtype}")
    try:
        return Samples(images, seeds, name=meta.get("name", path.stem), sampler=meta.get("sampler", ""))
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


@dataclasses.dataclass
class _Model:
    """One model of ``compare``: its label, image shape and a loader (called only after every check)."""

    label: str
    shape: tuple[int, int, int]
    load: Callable[[Any], Any]  # device -> denoiser
    kind: str


def _cached_model(path: Path) -> _Model:
    """A model the package trained, from its cache folder (model.json + model.safetensors)."""
    from .cache import MODEL_JSON, read_json
    from .training import TrainConfig, load_model

    meta = read_json(path / MODEL_JSON)
    config, shape = meta.get("config"), meta.get("shape")
    if not isinstance(config, dict) or not isinstance(shape, list):
        raise UserError(f"{path / MODEL_JSON} carries no training config or image shape")
    if "base" in config:
        raise UserError(f"{path} is a fine-tuned model, which compare cannot rebuild from its folder; load it with "
                        "reprodiff.training.load_model(config)")
    try:
        cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: its config is not one this version of the package trains ({exc})") from None
    if cfg.hash != meta.get("hash"):
        raise UserError(f"{path} was written for another config hash ({meta.get('hash')}, now {cfg.hash}); retrain it")
    if cfg.conditional:
        raise UserError(f"{path} is a class-conditional model; compare samples unconditional models")
    return _Model(path.name, tuple(int(v) for v in shape), lambda device: load_model(cfg, path).to(device),
                  f"reprodiff {cfg.backbone}, {cfg.objective}, {cfg.steps} steps")


def _compare_model(text: str) -> _Model:
    """A cached model of the package, or a diffusers DDPM (local folder or Hub id), checked, not loaded."""
    from .cache import MODEL_JSON
    from .pretrained import locate_diffusers_model

    path = Path(text).expanduser()
    if (path / MODEL_JSON).is_file():
        return _cached_model(path)
    source = locate_diffusers_model(text)
    label = path.name if path.exists() else text
    prediction = source.scheduler_config.get("prediction_type", "epsilon")
    return _Model(label, source.shape, source.load, f"diffusers UNet2DModel, {prediction}")


def _compare_plan(args) -> dict:
    """Everything ``compare`` needs, checked before any model is loaded or sampled."""
    import torch

    from .metrics import get_descriptor
    from .sampling import SAMPLERS

    if len(args.models) < 2:
        raise UserError(f"compare needs at least two models, got {len(args.models)}")
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if SAMPLERS[args.sampler].stochastic:
        raise UserError(f"--sampler {args.sampler} injects fresh noise: compare runs one deterministic sampler")
    if args.sampler_steps < 1:
        raise UserError(f"--sampler-steps must be >= 1, got {args.sampler_steps}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    seeds = parse_seeds(args.seeds)
    if args.threshold is not None and not -1 <= args.threshold <= 1:
        raise UserError(f"--threshold is a cosine similarity in [-1, 1], got {args.threshold}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserError(f"--device: {args.device!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out names a folder for the sample files; {args.out} is a file")
    descriptor = get_descriptor(args.descriptor)  # SSCD: its weights, or a clear error, before any sampling
    if args.threshold is None and getattr(descriptor, "fixed_threshold", None) is None and len(seeds) < 2:
        raise UserError("the pixel threshold is calibrated on different-seed pairs: give at least 2 seeds, "
                        "or --threshold")
    threshold = args.threshold
    if args.dataset is not None:  # the book's rule for that dataset (pixel: calibrated on its held-out images)
        from .experiments import book_rule

        if args.threshold is not None:
            raise UserError("give --dataset (the book's rule) or --threshold, not both")
        try:
            threshold = book_rule(args.dataset, descriptor)
        except ValueError as exc:
            raise UserError(f"--dataset: {exc}") from None
    models = [_compare_model(m) for m in args.models]
    shapes = {m.shape for m in models}
    if len(shapes) > 1:
        raise UserError("the models make images of different shapes (" + ", ".join(
            f"{m.label}: {m.shape}" for m in models) + "); the same noise cannot start them all")
    return dict(seeds=seeds, device=device, descriptor=descriptor, models=models, threshold=threshold)


def _compare(args) -> None:
    """Sample every model from the same seeds with one sampler, then print (and write) the RP matrix."""
    import json

    from safetensors.torch import save_file

    from .metrics import rp_matrix
    from .sampling import generate, network_calls

    plan = _compare_plan(args)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out: cannot create {args.out} ({exc.strerror})") from None
    models = [(m, m.load(plan["device"])) for m in plan["models"]]
    # one grid for all: EDM's, narrowed to the sigma range every model was trained on
    sigma_min = max([_EDM_SIGMA_MIN] + [float(d.sigma_min) for _, d in models if hasattr(d, "sigma_min")])
    sigma_max = min([_EDM_SIGMA_MAX] + [float(d.sigma_max) for _, d in models if hasattr(d, "sigma_max")])
    if sigma_min >= sigma_max:
        raise UserError(f"the models share no noise levels (sigma {sigma_min:g} to {sigma_max:g})")
    samples = []
    for i, (m, model) in enumerate(models, 1):
        s = generate(model, plan["seeds"], m.shape, sampler=args.sampler, steps=args.sampler_steps,
                     sigma_min=sigma_min, sigma_max=sigma_max, batch_size=args.batch_size, device=plan["device"],
                     name=m.label, progress=True)
        samples.append(s)
        if args.out is not None:
            save_file({"images": s.images, "seeds": s.seeds}, str(args.out / f"{i}-{_slug(m.label)}.safetensors"),
                      metadata={"name": s.name, "sampler": s.sampler, "model": args.models[i - 1],
                                "sigma_min": repr(sigma_min), "sigma_max": repr(sigma_max)})
    matrix = rp_matrix(samples, plan["descriptor"], threshold=plan["threshold"])
    seeds = plan["seeds"]
    seed_text = f"seeds {args.seeds} ({len(seeds)} per model)"
    print(f"sampler: {args.sampler}, {args.sampler_steps} steps ({network_calls(args.sampler, args.sampler_steps)} "
          f"network calls per sample), Karras grid sigma {sigma_min:.4g} to {sigma_max:.4g}, {seed_text}")
    print(f"same-image rule: {matrix.descriptor} descriptor, similarity > {matrix.threshold:.3f} "
          f"({matrix.threshold_rule})")
    print(_matrix_table(matrix, [m for m, _ in models]))
    print(matrix)
    if args.out is not None:
        (args.out / "rp_matrix.json").write_text(json.dumps({
            "models": args.models, "labels": matrix.labels, "rp": matrix.values.tolist(),
            "lower": matrix.lower.tolist(), "upper": matrix.upper.tolist(), "interval": "Wilson 95%",
            "threshold": matrix.threshold, "threshold_rule": matrix.threshold_rule, "descriptor": matrix.descriptor,
            "seeds": seeds, "sampler": args.sampler, "sampler_steps": args.sampler_steps,
            "sigma_min": sigma_min, "sigma_max": sigma_max}, indent=1))
        print(f"wrote {len(samples)} sample files and rp_matrix.json to {args.out}")


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.") or "model"


def _matrix_table(matrix, models: list[_Model]) -> str:
    """The RP matrix as text: one row per model, ``value [lower, upper]`` per cell."""
    m = len(models)
    cells = [["-" if i == j else f"{matrix.values[i, j]:.2f} [{matrix.lower[i, j]:.2f}, {matrix.upper[i, j]:.2f}]"
              for j in range(m)] for i in range(m)]
    width = max(len(c) for row in cells for c in row)
    lines = [f"RP, 95% Wilson intervals, {matrix.n} seed pairs per cell:",
             "     " + "  ".join(f"[{j + 1}]".ljust(width) for j in range(m))]
    lines += [f"[{i + 1}]  " + "  ".join(c.ljust(width) for c in row) + f"  {models[i].label} ({models[i].kind})"
              for i, row in enumerate(cells)]
    return "\n".join(line.rstrip() for line in lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprodiff", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train (or resume) a model into the cache; a cached model is reused")
    _add_train_args(p_train)
    p_train.add_argument("--book", action="store_true",
                         help="instead of one model: every model the book's chapters train under --profile, in one "
                              "pool (longest first, one process per core), so the chapters then load them")
    p_train.add_argument("--profile", default="cpu", choices=["cpu", "gpu", "paper", "smoke"],
                         help="with --book: which profile's models (default: cpu)")
    p_sample = sub.add_parser("sample", help="sample a cached (or newly trained) model from given seeds")
    _add_train_args(p_sample)
    p_sample.add_argument("--seeds", default="0-255", help="sampling seeds, e.g. 0-255 or 1,5,9 (default: 0-255)")
    p_sample.add_argument("--sampler", default="heun", help="heun (default), euler, ddim, dpmpp-2m, euler-ancestral")
    p_sample.add_argument("--sampler-steps", type=int, default=18, help="sampler steps (default: 18)")
    p_sample.add_argument("--labels", default=None, help="class label(s) for a --conditional model: one, or one per seed")
    p_sample.add_argument("--guidance", type=float, default=None,
                          help="classifier-free guidance scale w >= 0 for a --conditional model (default: none)")
    p_sample.add_argument("--step-noise-stream", type=int, default=None,
                          help="for the stochastic euler-ancestral sampler: which stream of injected noise")
    p_sample.add_argument("--out", type=Path, required=True, help="output .safetensors (images + seeds)")
    p_score = sub.add_parser("score", help="RP score between two sample files (paired by seed)")
    p_score.add_argument("a", type=Path)
    p_score.add_argument("b", type=Path)
    p_score.add_argument("--descriptor", default="pixel", choices=["pixel", "sscd"])
    p_score.add_argument("--threshold", type=float, default=None)
    p_compare = sub.add_parser("compare", help="sample several models from the same seeds and print their RP matrix")
    p_compare.add_argument("models", nargs="+", metavar="MODEL",
                           help="a Hub id or local folder of a diffusers DDPM (DDPMPipeline.save_pretrained), or a "
                                "model folder of the package's cache")
    p_compare.add_argument("--seeds", default="0-255", help="sampling seeds, e.g. 0-999 or 1,5,9 (default: 0-255)")
    p_compare.add_argument("--sampler", default="heun", help="a deterministic sampler: heun (default), euler, ddim, "
                                                              "dpmpp-2m")
    p_compare.add_argument("--sampler-steps", type=int, default=18, help="sampler steps (default: 18)")
    p_compare.add_argument("--descriptor", default="pixel", choices=["pixel", "sscd"])
    p_compare.add_argument("--threshold", type=float, default=None,
                           help="same-image cosine threshold (default: 0.6 for sscd; for pixel the 99th percentile "
                                "of different-seed similarities pooled over every pair of models)")
    p_compare.add_argument("--dataset", default=None,
                           help="use the book's same-image rule for this dataset (digits, cifar10, molrg): for pixel, "
                                "the 99th percentile of held-out real images' similarity to their nearest training image")
    p_compare.add_argument("--batch-size", type=int, default=64, help="samples per batch (default: 64)")
    p_compare.add_argument("--device", default="cpu", help="torch device to sample on (default: cpu)")
    p_compare.add_argument("--out", type=Path, default=None,
                           help="folder for each model's samples (.safetensors) and rp_matrix.json")
    sub.add_parser("speed", help="this machine's speed: ms per UNet-XS training step (batch 64, one thread; a few "
                                 "seconds)")
    p_estimate = sub.add_parser("estimate", help="estimated GPU minutes of every chapter under a profile")
    p_estimate.add_argument("--profile", default="gpu", choices=["gpu", "paper"])
    p_estimate.add_argument("--tflops", type=float, default=4.0,
                            help="sustained float32 TFLOP/s of the GPU (default 4: half a T4's peak)")
    return parser


def _estimate(args) -> None:
    """One line per chapter: the step-cost estimate of :func:`reprodiff.experiments.chapter_time_estimate`."""
    from .configs import _CONFIGS
    from .experiments import chapter_time_estimate

    if not args.tflops > 0:
        raise UserError(f"--tflops must be positive, got {args.tflops}")
    print(f"estimated minutes per chapter, run alone from an empty cache, at {args.tflops:g} TFLOP/s sustained "
          "and 10 us per kernel launch (counted FLOPs and operators of each model's training step):")
    for experiment in _CONFIGS:
        _, lines = chapter_time_estimate(experiment, args.profile, flops_per_s=args.tflops * 1e12)
        print("\n".join(lines))


def _train_book(args) -> None:
    """``train --book``: every model of the book's chapters under ``--profile``, in one pool."""
    import time

    from .configs import book_models
    from .training import train_missing

    changed = [f"--{f.name.replace('_', '-')}" for f in _cli_fields() if getattr(args, f.name) != f.default]
    if changed:
        raise UserError(f"--book trains the book's own configs; drop {', '.join(changed)}")
    configs = book_models(args.profile)
    t0 = time.perf_counter()
    trained = train_missing(configs)
    print(f"book models ({args.profile} profile): {len(configs)} in all, {len(configs) - len(trained)} already cached, "
          f"{len(trained)} trained in {time.perf_counter() - t0:.0f} s")


def _run(args) -> None:
    if args.command == "train" and args.book:
        _train_book(args)
    elif args.command == "train":
        from .cache import is_cached
        from .training import checkpoint_dir, load_or_train

        cfg, _ = _config(args)
        cached = is_cached(checkpoint_dir(cfg))
        model = load_or_train(cfg)
        verb = "already cached" if cached else "trained"
        print(f"{verb}: {cfg.name} ({model.info['steps']} steps, {model.info['seconds']} s of training) "
              f"in {checkpoint_dir(cfg)}")
    elif args.command == "sample":
        from safetensors.torch import save_file

        from .sampling import generate
        from .training import load_or_train

        cfg, data = _config(args)
        plan = _sample_plan(args, cfg, data.num_classes)
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out: cannot create {args.out.parent} ({exc.strerror})") from None
        model = load_or_train(cfg)
        shape = tuple(model.info["shape"])
        if args.guidance is not None:
            from .denoisers import Guided

            model = Guided(model, args.guidance)
        s = generate(model, plan["seeds"], shape, sampler=args.sampler,
                     steps=args.sampler_steps, labels=plan["labels"], name=cfg.name, progress=True,
                     step_noise_stream=args.step_noise_stream)
        tensors = {"images": s.images, "seeds": s.seeds}
        if s.labels is not None:
            tensors["labels"] = s.labels
        save_file(tensors, str(args.out), metadata={"name": s.name, "sampler": s.sampler, "config_hash": cfg.hash})
        print(f"wrote {len(s)} samples to {args.out}")
    elif args.command == "score":
        from .metrics import rp_score

        if args.threshold is not None and not -1 <= args.threshold <= 1:
            raise UserError(f"--threshold is a cosine similarity in [-1, 1], got {args.threshold}")
        a, b = _load_samples(args.a), _load_samples(args.b)
        print(rp_score(a, b, args.descriptor, threshold=args.threshold))
    elif args.command == "compare":
        _compare(args)
    elif args.command == "estimate":
        _estimate(args)
    elif args.command == "speed":
        from .training import training_step_ms

        print(f"machine speed: {training_step_ms():.1f} ms per UNet-XS training step (batch 64, one thread, fused "
              "AdamW); the book's machines measured 35 (fast) to 95 ms (slow)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a user error)."""
    from .cache import CheckpointError
    from .data import ResourceUnavailableError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (UserError, ValueError, CheckpointError, ResourceUnavailableError, PermissionError) as exc:
        print(f"reprodiff: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
