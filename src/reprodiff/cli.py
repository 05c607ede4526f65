"""Command line: ``python -m reprodiff train|sample|score``, over the same configs the book uses.

Examples::

    python -m reprodiff train --backbone unet-s --objective edm --steps 1200
    python -m reprodiff sample --backbone unet-s --steps 1200 --seeds 0-255 --out a.safetensors
    python -m reprodiff sample --backbone unet-s --conditional --labels 3 --seeds 0-63 --out threes.safetensors
    python -m reprodiff sample --backbone unet-s --conditional --labels 3 --guidance 1 --seeds 0-63 --out g.safetensors
    python -m reprodiff score a.safetensors b.safetensors --descriptor pixel

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

__all__ = ["main", "parse_seeds"]

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
    """TrainConfig's fields the command line sets: all but fine-tuning and snapshots (Python API only)."""
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprodiff", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train (or resume) a model into the cache; a cached model is reused")
    _add_train_args(p_train)
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
    return parser


def _run(args) -> None:
    if args.command == "train":
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
