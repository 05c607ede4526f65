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

Every argument is checked before anything is trained, loaded or sampled, output paths (not a folder
where a file goes, a writable folder, room on the disk) and seed ranges (count, memory) included; a
user error, or a write that fails all the same (a full disk), prints one line (``reprodiff: error: ...``)
and exits with status 2. Multi-GPU training runs the same command under
``accelerate launch -m reprodiff train ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["main", "parse_seeds"]

#: the Karras grid every model of a ``compare`` is sampled on, narrowed to what every model covers
_EDM_SIGMA_MIN, _EDM_SIGMA_MAX = 0.002, 80.0

#: most seeds one ``sample`` or ``compare`` takes (checked before a range is expanded into a list)
MAX_SEEDS = 10_000_000
#: seed ids travel as int64 tensors
_MAX_SEED_ID = 2**63 - 1

_HELP = {
    "dataset": "training images: one of {datasets}, or molrg (a mixture of low-rank Gaussians)",
    "n_train": "training subset size (default: all)",
    "holdout": "images held out of every training subset (for calibration)",
    "subset_seed": "seed of the nested order the training subset is taken from",
    "molrg_classes": "with --dataset molrg: number of mixture components",
    "molrg_dim": "with --dataset molrg: dimension of each component's subspace",
    "molrg_seed": "with --dataset molrg: seed of the mixture",
    "backbone": "network architecture: one of {backbones}",
    "objective": "training objective (preconditioning): one of {objectives}",
    "conditional": "train a class-conditional model (with label dropout, for classifier-free guidance)",
    "label_dropout": "with --conditional: fraction of training labels replaced by the unconditional label",
    "dropout": "dropout probability inside the backbone, in [0, 1)",
    "seed": "training seed (initialisation, batches); not the sampling seeds (--seeds)",
    "steps": "training steps; not the sampler's steps (--sampler-steps)",
    "batch_size": "training images per step",
    "lr": "AdamW learning rate",
    "warmup": "steps of linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay",
    "ema": "decay of the exponential moving average of the weights (the model that is saved), in [0, 1)",
    "checkpoint_every": "write a resumable state every this many steps",
}


class UserError(Exception):
    """A bad argument: reported in one line, exit status 2."""


def parse_seeds(text: str) -> list[int]:
    """``"0-255"``, ``"1,5,9"`` or ``"0-9,20-29"`` -> seed ids (non-negative, unique, at least one, at most
    :data:`MAX_SEEDS`, each below 2**63); sizes are checked before a range is expanded."""
    ranges: list[tuple[int, int]] = []
    total = 0
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            a, b = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise UserError(f"--seeds: {part!r} is not a seed (N) or a range (N-M) of non-negative integers; "
                            "example: 0-255 or 1,5,9") from None
        if a > b:
            raise UserError(f"--seeds: the range {part!r} is empty (start > end)")
        if b > _MAX_SEED_ID:
            raise UserError(f"--seeds: {part!r} goes past the largest seed id, 2**63 - 1 = {_MAX_SEED_ID}")
        total += b - a + 1
        if total > MAX_SEEDS:
            raise UserError(f"--seeds: {part!r} brings the count to {total:,} seeds; one run samples at most "
                            f"{MAX_SEEDS:,} (split the seeds over several runs)")
        ranges.append((a, b))
    seeds = [s for a, b in ranges for s in range(a, b + 1)]
    if len(set(seeds)) != len(seeds):
        duplicates = sorted(s for s, n in Counter(seeds).items() if n > 1)
        raise UserError(f"--seeds: seed ids must be unique, repeated: {duplicates[:5]}")
    return seeds


def _size(nbytes: float) -> str:
    """Bytes for a message: 512 bytes, 4.1 KB, 3.2 GB."""
    if nbytes < 1000:
        return f"{nbytes:.0f} bytes"
    exponent = min(int(math.log10(nbytes)) // 3, 3)
    return f"{nbytes / 1000**exponent:.1f} {('KB', 'MB', 'GB')[exponent - 1]}"


def _physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(n: int, shape: tuple[int, ...], copies: int) -> None:
    """``n`` float32 images of ``shape``, held ``copies`` times over (samples, noise, the file's bytes), must
    fit in this machine's memory."""
    need = n * math.prod(shape) * 4 * copies
    total = _physical_memory()
    if total is not None and need > total:
        raise UserError(f"--seeds: {n:,} samples of {'x'.join(map(str, shape))} images need about {_size(need)} "
                        f"of memory, more than this machine's {_size(total)}; sample fewer seeds per run")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_folder(flag: str, folder: Path, nbytes: int, reclaimed: int = 0) -> None:
    """Before any work: ``folder`` is (or can be created as) a writable folder with room for about
    ``nbytes`` (plus ``reclaimed``, the size of a file the output replaces). Creates it, as the write
    would; probes it with a temporary file, removed again."""
    import shutil

    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"{flag}: cannot create {folder}: {base} is a file, not a folder")
    try:
        usage = shutil.disk_usage(base)
        free = usage.free + reclaimed if usage.total else None  # a pseudo file system (/proc) reports no size
    except OSError:
        free = None
    need = nbytes + nbytes // 4 + 2**20  # a generous margin over the estimate (headers, metadata)
    if free is not None and free < need:
        raise UserError(f"{flag}: {base} has {_size(free)} free, the output needs about {_size(need)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag}: cannot create {folder} ({exc.strerror or exc})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".reprodiff-write-probe."):
            pass
    except OSError as exc:
        raise UserError(f"{flag}: cannot write in {folder} ({exc.strerror or exc})") from None


def _check_output_file(flag: str, path: Path, nbytes: int) -> None:
    """``path`` will be written: not an existing folder, in a writable folder with room for it."""
    if path.is_dir():
        raise UserError(f"{flag}: {path} is a folder; name a file to write, e.g. {path / 'samples.safetensors'}")
    _check_folder(flag, path.parent, nbytes, reclaimed=path.stat().st_size if path.is_file() else 0)


def _write_output(path: Path, data: bytes) -> None:
    """Write an output file; a failed write (a full disk...) is one line naming the path, and leaves no
    partial file that was not there before."""
    existed = path.exists()
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        if not existed:
            with contextlib.suppress(OSError):
                path.unlink()
        raise UserError(f"cannot write {path} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """An ``OSError`` inside (a full disk, a read-only folder) -> one line naming ``what``, exit 2."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # a message the package wrote
            raise UserError(str(exc)) from None
        where = f": {exc.filename}" if exc.filename else ""
        raise UserError(f"{what}: {exc.strerror or exc}{where}") from None


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .backbones import BACKBONES
    from .data import DATASETS
    from .denoisers import OBJECTIVES

    names = dict(backbones=", ".join(BACKBONES), objectives=", ".join(OBJECTIVES), datasets=", ".join(DATASETS))
    for f in _cli_fields():
        default, flag = f.default, f"--{f.name.replace('_', '-')}"
        help_text = _HELP.get(f.name, f.name.replace("_", " ")).format(**names)
        if f.name == "n_train":
            p.add_argument("--n-train", type=int, default=None, help=help_text)
        elif isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default, help=help_text)
        elif isinstance(default, (int, float, str)):
            p.add_argument(flag, type=type(default), default=default, help=f"{help_text} (default: {default})")


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


def _sampler(args, deterministic: bool = False):
    """The :class:`~reprodiff.sampling.SamplerSpec` that ``--sampler`` names, with ``--sampler-steps``
    checked; ``deterministic``: refuse a sampler that injects noise."""
    from .sampling import SAMPLERS

    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    spec = SAMPLERS[args.sampler]
    if deterministic and spec.stochastic:
        raise UserError(f"--sampler {args.sampler} injects fresh noise: compare runs one deterministic sampler")
    if args.sampler_steps < 1:
        raise UserError(f"--sampler-steps must be >= 1, got {args.sampler_steps}")
    return spec


def _sample_plan(args, cfg, data) -> dict:
    """Everything ``sample`` needs, checked before the model is trained or loaded (the output's folder is
    created, as before any work)."""
    import torch

    stochastic = _sampler(args).stochastic
    seeds = parse_seeds(args.seeds)
    num_classes, shape = data.num_classes, tuple(data.shape)
    _check_memory(len(seeds), shape, copies=3)  # the samples, the file's bytes, the sample cache's digest
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
    per_sample = math.prod(shape) * 4 + 8 * (1 if labels is None else 2)  # float32 pixels, int64 seed (and label)
    _check_output_file("--out", args.out, len(seeds) * per_sample + 2**16)
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

    if len(args.models) < 2:
        raise UserError(f"compare needs at least two models, got {len(args.models)}")
    _sampler(args, deterministic=True)
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
    shape = models[0].shape
    _check_memory(len(seeds), shape, copies=2 * len(models) + 1)  # every model's samples and descriptors
    if args.out is not None:  # one sample file per model (float32 images, int64 seeds) and rp_matrix.json
        nbytes = len(models) * (len(seeds) * (math.prod(shape) * 4 + 8) + 2**16) + len(seeds) * 24 + 2**16
        _check_folder("--out", args.out, nbytes)
    return dict(seeds=seeds, device=device, descriptor=descriptor, models=models, threshold=threshold)


def _compare(args) -> None:
    """Sample every model from the same seeds with one sampler, then print (and write) the RP matrix."""
    import json

    from safetensors.torch import save

    from .metrics import rp_matrix
    from .sampling import generate, network_calls

    plan = _compare_plan(args)  # creates --out
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
            _write_output(args.out / f"{i}-{_slug(m.label)}.safetensors", save(
                {"images": s.images, "seeds": s.seeds},
                metadata={"name": s.name, "sampler": s.sampler, "model": args.models[i - 1],
                          "sigma_min": repr(sigma_min), "sigma_max": repr(sigma_max)}))
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
        _write_output(args.out / "rp_matrix.json", json.dumps({
            "models": args.models, "labels": matrix.labels, "rp": matrix.values.tolist(),
            "lower": matrix.lower.tolist(), "upper": matrix.upper.tolist(), "interval": "Wilson 95%",
            "threshold": matrix.threshold, "threshold_rule": matrix.threshold_rule, "descriptor": matrix.descriptor,
            "seeds": seeds, "sampler": args.sampler, "sampler_steps": args.sampler_steps,
            "sigma_min": sigma_min, "sigma_max": sigma_max}, indent=1).encode())
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
    from .sampling import SAMPLERS

    deterministic = [name for name, spec in SAMPLERS.items() if not spec.stochastic]
    stochastic = [name for name, spec in SAMPLERS.items() if spec.stochastic]
    descriptors = ["pixel", "sscd"]  # reprodiff.metrics.get_descriptor's names
    descriptor_help = "image descriptor of the same-image rule: pixel (offline) or sscd (downloads its weights once)"
    parser = argparse.ArgumentParser(prog="reprodiff", description=__doc__.split("\n")[0].replace("``", ""))
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
    p_sample.add_argument("--seeds", default="0-255",
                          help=f"sampling seeds, e.g. 0-255 or 1,5,9; at most {MAX_SEEDS:,} (default: 0-255)")
    p_sample.add_argument("--sampler", default="heun",
                          help=f"sampler: one of {', '.join(SAMPLERS)} (default: heun)")
    p_sample.add_argument("--sampler-steps", type=int, default=18, help="sampler steps (default: 18)")
    p_sample.add_argument("--labels", default=None,
                          help="class label(s) for a --conditional model: one, or one per seed")
    p_sample.add_argument("--guidance", type=float, default=None,
                          help="classifier-free guidance scale w >= 0 for a --conditional model (default: none)")
    p_sample.add_argument("--step-noise-stream", type=int, default=None,
                          help=f"for a stochastic sampler ({', '.join(stochastic)}): which stream of injected noise")
    p_sample.add_argument("--out", type=Path, required=True, help="output .safetensors (images + seeds)")
    p_score = sub.add_parser("score", help="RP score between two sample files (paired by seed)")
    p_score.add_argument("a", type=Path, help="a sample file (.safetensors with images and seeds, as sample writes)")
    p_score.add_argument("b", type=Path, help="the other sample file, paired with the first by seed")
    p_score.add_argument("--descriptor", default="pixel", choices=descriptors,
                         help=f"{descriptor_help} (default: pixel)")
    p_score.add_argument("--threshold", type=float, default=None,
                         help="same-image cosine threshold in [-1, 1] (default: the descriptor's rule: 0.6 for sscd, "
                              "for pixel the 99th percentile of different-seed similarities)")
    p_compare = sub.add_parser("compare", help="sample several models from the same seeds and print their RP matrix")
    p_compare.add_argument("models", nargs="+", metavar="MODEL",
                           help="a Hub id or local folder of a diffusers DDPM (DDPMPipeline.save_pretrained), or a "
                                "model folder of the package's cache")
    p_compare.add_argument("--seeds", default="0-255",
                           help=f"sampling seeds, e.g. 0-999 or 1,5,9; at most {MAX_SEEDS:,} (default: 0-255)")
    p_compare.add_argument("--sampler", default="heun",
                           help=f"a deterministic sampler: one of {', '.join(deterministic)} (default: heun)")
    p_compare.add_argument("--sampler-steps", type=int, default=18, help="sampler steps (default: 18)")
    p_compare.add_argument("--descriptor", default="pixel", choices=descriptors,
                           help=f"{descriptor_help} (default: pixel)")
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
    p_estimate.add_argument("--profile", default="gpu", choices=["gpu", "paper"],
                            help="which profile's chapters (default: gpu)")
    p_estimate.add_argument("--tflops", type=float, default=4.0,
                            help="sustained float32 TFLOP/s of the GPU, a finite positive number (default 4: half a "
                                 "T4's peak)")
    return parser


def _estimate(args) -> None:
    """One line per chapter: the step-cost estimate of :func:`reprodiff.estimate.chapter_time_estimate`."""
    from .estimate import chapter_time_estimate
    from .profiles import EXPERIMENTS

    if not (math.isfinite(args.tflops) and args.tflops > 0):
        raise UserError(f"--tflops must be a finite positive number, got {args.tflops}")
    print(f"estimated minutes per chapter, run alone from an empty cache, at {args.tflops:g} TFLOP/s sustained "
          "and 10 us per kernel launch (counted FLOPs and operators of each model's training step):")
    for experiment in EXPERIMENTS:
        _, lines = chapter_time_estimate(experiment, args.profile, flops_per_s=args.tflops * 1e12)
        print("\n".join(lines))


def _train_book(args) -> None:
    """``train --book``: every model of the book's chapters under ``--profile``, in one pool."""
    import time

    from .profiles import book_models
    from .cache import cache_root
    from .training import train_missing

    changed = [f"--{f.name.replace('_', '-')}" for f in _cli_fields() if getattr(args, f.name) != f.default]
    if changed:
        raise UserError(f"--book trains the book's own configs; drop {', '.join(changed)}")
    configs = book_models(args.profile)
    t0 = time.perf_counter()
    with _os_errors(f"training the book's models (cache {cache_root()})"):
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
        path = checkpoint_dir(cfg)
        cached = is_cached(path)
        with _os_errors(f"training or loading {cfg.name} in {path}"):
            model = load_or_train(cfg)
        # a model this process trained comes back from memory; one it found cached, or that another process
        # trained while this one waited for the entry's lock, is read from disk with the checksum write_model adds
        verb = "already cached" if cached else "trained" if "weights_sha256" not in model.info else \
            "loaded (trained by another process)"
        print(f"{verb}: {cfg.name} ({model.info['steps']} steps, {model.info['seconds']} s of training) in {path}")
    elif args.command == "sample":
        from safetensors.torch import save

        from .sampling import generate
        from .training import checkpoint_dir, load_or_train

        cfg, data = _config(args)
        plan = _sample_plan(args, cfg, data)  # also checks --out and creates its folder
        with _os_errors(f"training or loading {cfg.name} in {checkpoint_dir(cfg)}"):
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
        _write_output(args.out, save(tensors, metadata={"name": s.name, "sampler": s.sampler, "config_hash": cfg.hash}))
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
