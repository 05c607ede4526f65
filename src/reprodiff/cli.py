"""Command line: ``python -m reprodiff train|sample|score``, over the same configs the book uses.

Examples::

    python -m reprodiff train --backbone unet-s --objective edm --steps 1200
    python -m reprodiff sample --backbone unet-s --steps 1200 --seeds 0-255 --out a.safetensors
    python -m reprodiff score a.safetensors b.safetensors --descriptor pixel

Multi-GPU training runs the same command under ``accelerate launch -m reprodiff train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

__all__ = ["main"]


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .training import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        default = f.default
        kind = {int: int, float: float, str: str, bool: None}.get(type(default), None)
        if f.name == "n_train":
            p.add_argument("--n-train", type=int, default=None, help="training subset size (default: all)")
        elif isinstance(default, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", default=default)
        elif kind is not None:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=default, help=f"(default: {default})")


def _config(args) -> "TrainConfig":
    from .training import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reprodiff", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train (or resume) a model into the cache")
    _add_train_args(p_train)
    p_sample = sub.add_parser("sample", help="sample a cached (or newly trained) model from given seeds")
    _add_train_args(p_sample)
    p_sample.add_argument("--seeds", default="0-255", help="e.g. 0-255 or 1,5,9")
    p_sample.add_argument("--sampler", default="heun")
    p_sample.add_argument("--sampler-steps", type=int, default=18)
    p_sample.add_argument("--out", type=Path, required=True, help="output .safetensors (images + seeds)")
    p_score = sub.add_parser("score", help="RP score between two sample files (paired by seed)")
    p_score.add_argument("a", type=Path)
    p_score.add_argument("b", type=Path)
    p_score.add_argument("--descriptor", default="pixel", choices=["pixel", "sscd"])
    p_score.add_argument("--threshold", type=float, default=None)
    args = parser.parse_args(argv)

    if args.command == "train":
        from .training import train

        model = train(_config(args))
        print(f"trained {model.config.name}: {model.info['steps']} steps in {model.info['seconds']} s")
    elif args.command == "sample":
        from safetensors.torch import save_file

        from .sampling import generate
        from .training import load_or_train

        cfg = _config(args)
        model = load_or_train(cfg)
        s = generate(model, _parse_seeds(args.seeds), tuple(model.info["shape"]), sampler=args.sampler,
                     steps=args.sampler_steps, name=cfg.name, progress=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file({"images": s.images, "seeds": s.seeds}, str(args.out),
                  metadata={"name": s.name, "sampler": s.sampler, "config_hash": cfg.hash})
        print(f"wrote {len(s)} samples to {args.out}")
    elif args.command == "score":
        from .metrics import rp_score
        from .sampling import Samples

        def load(path: Path) -> Samples:
            from safetensors import safe_open

            if not path.exists():
                parser.error(f"{path} does not exist")
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                return Samples(f.get_tensor("images"), f.get_tensor("seeds"), name=meta.get("name", path.stem),
                               sampler=meta.get("sampler", ""))

        print(rp_score(load(args.a), load(args.b), args.descriptor, threshold=args.threshold))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
