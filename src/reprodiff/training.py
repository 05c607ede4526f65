"""Training, and a content-addressed cache of trained models.

``load_or_train(TrainConfig(...))`` trains a model once and every chapter reuses it: the checkpoint's
directory is named by a hash of the config, weights are safetensors and everything else JSON (no
pickles). Training writes a resumable state every ``checkpoint_every`` steps (and on Ctrl-C), with
atomic renames so an interruption never leaves a half-written file; a corrupt or mismatched
checkpoint raises :class:`CheckpointError` instead of being trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .backbones import build_backbone, count_parameters
from .data import ImageData, MoLRG, load_dataset, split_holdout, subset
from .denoisers import Precond, get_objective
from .sampling import flush_denormal
from .storage import CheckpointError, atomic_save_safetensors, atomic_write_json, load_safetensors, read_json

__all__ = ["TrainConfig", "CheckpointError", "cache_root", "training_data", "train", "load_or_train",
           "load_or_train_many", "load_model", "checkpoint_dir"]

#: bump when a change to the code would change what a given config trains into
CACHE_FORMAT = 2  # 2: CPU training became single-threaded (different bits than 2 threads)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (its hash names the checkpoint).

    Data: ``dataset`` (``"digits"``, a torchvision name, or ``"molrg"``), ``n_train`` (nested subset
    size; ``None`` = every image not held out), ``holdout`` (images kept out of every subset),
    ``subset_seed``. Model: ``backbone`` (a name in :data:`reprodiff.backbones.BACKBONES`),
    ``objective`` (``"eps"``, ``"v"``, ``"edm"``), ``conditional`` (+ ``label_dropout`` for
    classifier-free guidance). Optimisation: AdamW with linear warm-up, EMA of the weights.
    """

    dataset: str = "digits"
    n_train: int | None = None
    holdout: int = 0
    subset_seed: int = 0
    molrg_classes: int = 4
    molrg_dim: int = 8
    molrg_seed: int = 0
    backbone: str = "unet-s"
    objective: str = "edm"
    conditional: bool = False
    label_dropout: float = 0.1
    dropout: float = 0.0
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.0
    ema: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        from .backbones import BACKBONES

        get_objective(self.objective)

        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError("n_train must be positive (or None for all)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        """12 hex digits naming this config's checkpoint (stable across runs and machines)."""
        payload = json.dumps({"format": CACHE_FORMAT, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        n = "all" if self.n_train is None else self.n_train
        return f"{self.backbone}-{self.objective}-{self.dataset}{n}-s{self.seed}"


def cache_root() -> Path:
    """The model cache: ``$REPRODIFF_CACHE`` or ``~/.cache/reprodiff``."""
    return Path(os.environ.get("REPRODIFF_CACHE", Path.home() / ".cache" / "reprodiff"))


def checkpoint_dir(cfg: TrainConfig) -> Path:
    return cache_root() / "models" / f"{cfg.name}-{cfg.hash}"


def training_data(cfg: TrainConfig) -> tuple[ImageData, ImageData | None]:
    """The training subset a config describes, and the held-out images (``None`` if ``holdout == 0``).

    Raises before any training when the requested subset is larger than the data allows.
    """
    if cfg.dataset == "molrg":
        if cfg.n_train is None:
            raise ValueError("MoLRG has unlimited samples: set n_train")
        dist = MoLRG(num_classes=cfg.molrg_classes, dim=cfg.molrg_dim, seed=cfg.molrg_seed)
        # held-out samples come from another seed of the same distribution; subsets stay nested
        pool = dist.sample(max(cfg.n_train, 1), seed=cfg.subset_seed)
        held = dist.sample(cfg.holdout, seed=cfg.subset_seed + 1) if cfg.holdout else None
        return pool, held
    data = load_dataset(cfg.dataset)
    if cfg.holdout:
        pool, held = split_holdout(data, cfg.holdout)
    else:
        pool, held = data, None
    return subset(pool, cfg.n_train, cfg.subset_seed), held


def build_model(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int) -> Precond:
    """The untrained denoiser (backbone + preconditioning) a config describes."""
    backbone = build_backbone(cfg.backbone, shape, num_classes if cfg.conditional else None, cfg.dropout)
    return Precond(backbone, cfg.objective)


def _check_meta(meta: dict, cfg: TrainConfig, path: Path) -> None:
    if meta.get("hash") != cfg.hash or meta.get("config") != json.loads(json.dumps(cfg.to_dict())):
        raise CheckpointError(
            f"checkpoint in {path} was written for a different config (hash {meta.get('hash')} != {cfg.hash}); "
            "it will not be used. Delete the directory to retrain."
        )


def load_model(cfg: TrainConfig, path: Path | None = None) -> Precond:
    """Load a finished model for ``cfg`` from the cache (or ``path``), verifying it belongs to ``cfg``."""
    path = Path(path) if path is not None else checkpoint_dir(cfg)
    meta_file, weights = path / "model.json", path / "model.safetensors"
    if not meta_file.exists() or not weights.exists():
        raise FileNotFoundError(f"no trained model for {cfg.name} in {path}")
    meta = read_json(meta_file)
    _check_meta(meta, cfg, path)
    model = build_model(cfg, tuple(meta["shape"]), meta["num_classes"])
    state = load_safetensors(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {weights} do not fit {cfg.backbone}: {exc}") from exc
    model.eval().requires_grad_(False)
    model.config, model.info = cfg, meta  # type: ignore[attr-defined]
    return model


def _lr_at(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"opt.{pid}.{k}": torch.as_tensor(v) for pid, st in opt.state_dict()["state"].items()
            for k, v in st.items()}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def train(cfg: TrainConfig, progress: bool = True, device: str | None = None) -> Precond:
    """Train the model ``cfg`` describes into the cache (resuming a previous partial run) and return it.

    The returned model is the EMA of the weights, in eval mode, with ``.config`` and ``.info``.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    data, _ = training_data(cfg)  # raises on impossible subsets before anything heavy
    path = checkpoint_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=(device == "cpu") or not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)  # parameter initialisation
    model = build_model(cfg, data.shape, data.num_classes)
    ema = build_model(cfg, data.shape, data.num_classes)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + accelerator.process_index * 104_729)
    step, losses, seconds = 0, [], 0.0

    state_json, state_file = path / "state.json", path / "state.safetensors"
    if state_json.exists() and state_file.exists():
        meta = read_json(state_json)
        _check_meta(meta, cfg, path)
        tensors = load_safetensors(state_file)
        model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        _restore_optimizer(opt, tensors)
        gen.set_state(tensors["rng"])
        step, losses, seconds = meta["step"], meta["losses"], meta["seconds"]

    images = data.images.to(accelerator.device)
    labels = data.labels.to(accelerator.device)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    ema.to(accelerator.device)
    null_label = data.num_classes

    def save_state() -> None:
        if not accelerator.is_main_process:
            return
        tensors = _optimizer_tensors(opt)
        tensors.update({f"net.{k}": v for k, v in raw.state_dict().items()})
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
        tensors["rng"] = gen.get_state()
        atomic_save_safetensors(tensors, state_file)
        atomic_write_json(dict(hash=cfg.hash, config=cfg.to_dict(), step=step, losses=losses,
                                seconds=seconds, version=__version__), state_json)

    bar = tqdm(total=cfg.steps, initial=step, desc=f"training {cfg.name}", disable=not progress)
    running, t0 = None, time.perf_counter()
    model.train()
    try:
        with flush_denormal(), cpu_threads(1 if accelerator.device.type == "cpu" else None):
            while step < cfg.steps:
                idx = torch.randint(len(data), (cfg.batch_size,), generator=gen).to(accelerator.device)
                y = images[idx]
                cond = None
                if cfg.conditional:
                    drop = torch.rand(cfg.batch_size, generator=gen).to(accelerator.device) < cfg.label_dropout
                    cond = torch.where(drop, torch.full_like(labels[idx], null_label), labels[idx])
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step)
                loss = raw.loss(y, cond, gen) if accelerator.num_processes == 1 else _ddp_loss(model, y, cond, gen)
                opt.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                opt.step()
                decay = min(cfg.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    ema_p, raw_p = list(ema.parameters()), list(raw.parameters())
                    torch._foreach_mul_(ema_p, decay)
                    torch._foreach_add_(ema_p, raw_p, alpha=1 - decay)
                step += 1
                value = loss.item()
                running = value if running is None else 0.98 * running + 0.02 * value
                if step % 10 == 0 or step == cfg.steps:
                    losses.append([step, round(running, 6)])
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{running:.4f}")
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    save_state()
    except KeyboardInterrupt:
        seconds += time.perf_counter() - t0
        save_state()
        bar.close()
        raise
    bar.close()
    seconds += time.perf_counter() - t0

    meta = dict(hash=cfg.hash, config=cfg.to_dict(), version=__version__, format=CACHE_FORMAT,
                steps=step, seconds=round(seconds, 2), losses=losses, shape=list(data.shape),
                num_classes=data.num_classes, n_train=len(data), parameters=count_parameters(raw.backbone))
    if accelerator.is_main_process:
        atomic_save_safetensors(ema.state_dict(), path / "model.safetensors")
        atomic_write_json(meta, path / "model.json")
        for f in (state_file, state_json):
            f.unlink(missing_ok=True)
    ema.eval().cpu()
    ema.config, ema.info = cfg, meta  # type: ignore[attr-defined]
    return ema


@contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` intra-op threads (``None``: unchanged).

    Training on CPU is single-threaded on purpose. These models are too small to gain much from
    intra-op threads, and torch's worker threads do not honour flush-to-zero: denormal numbers
    made epsilon- and v-prediction training up to 10x slower with 2 threads (834 vs 73 s per
    1,000 steps for UNet-XS measured here). Use :func:`load_or_train_many` to keep every core busy
    with one model each instead.
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ddp_loss(model, y, cond, gen):  # pragma: no cover - multi-GPU only
    # DDP hooks gradients on forward(); compute the loss through the wrapped module
    sigma = model.module.objective.sample_sigma(y.shape[0], gen).to(y.device)
    n = torch.randn(y.shape, generator=gen).to(y.device)
    s = sigma.reshape(-1, 1, 1, 1)
    x0_hat = model(y + s * n, sigma, cond)
    return (model.module.objective.weight(s) * (x0_hat - y) ** 2).mean()


def load_or_train(cfg: TrainConfig, progress: bool = True) -> Precond:
    """Load ``cfg``'s model from the cache, or train it (resuming an interrupted run) and cache it."""
    if (checkpoint_dir(cfg) / "model.json").exists():
        return load_model(cfg)
    return train(cfg, progress=progress)


def _train_in_worker(cfg: TrainConfig) -> str:
    train(cfg, progress=False)
    return cfg.name


def _relative_cost(cfg: TrainConfig, shape: tuple[int, int, int]) -> float:
    """Rough training cost, for scheduling: parameters x steps x batch size (data size is irrelevant)."""
    return float(count_parameters(build_backbone(cfg.backbone, shape))) * cfg.steps * cfg.batch_size


def load_or_train_many(configs, workers: int | None = None, progress: bool = True):
    """``load_or_train`` for several configs, training the missing ones in parallel on CPU.

    Args:
        configs: a list of :class:`TrainConfig`, or a dict name -> config (then a dict name ->
            model is returned, in the same order).
        workers: processes training at once (default ``$REPRODIFF_WORKERS`` or the number of CPU
            cores); each trains one model single-threaded. With a GPU, models train one by one.

    Returns: the trained models, like :func:`load_or_train`, in the order given.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    named = isinstance(configs, dict)
    cfgs = list(configs.values()) if named else list(configs)
    missing = list({c.hash: c for c in cfgs if not (checkpoint_dir(c) / "model.json").exists()}.values())
    # bad subsets fail here, before any process starts
    shapes = {c.hash: training_data(c)[0].shape for c in missing}
    # longest first (largest backbone x steps x batch), so the last job to finish is a short one
    missing.sort(key=lambda c: -_relative_cost(c, shapes[c.hash]))
    workers = workers or int(os.environ.get("REPRODIFF_WORKERS", 0)) or (os.cpu_count() or 1)
    if missing and (workers == 1 or len(missing) == 1 or torch.cuda.is_available()):
        for c in missing:
            train(c, progress=progress)
    elif missing:
        bar = tqdm(total=len(missing), desc=f"training {len(missing)} models, {workers} at a time",
                   disable=not progress)
        with ProcessPoolExecutor(max_workers=min(workers, len(missing)), mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_train_in_worker, c) for c in missing]
            for fut in as_completed(futures):
                bar.set_postfix_str(f"done: {fut.result()}")
                bar.update(1)
        bar.close()
    models = [load_model(c) for c in cfgs]
    return dict(zip(configs, models)) if named else models


def step_cost(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int = 10) -> tuple[float, int]:
    """Measured cost of one training step of ``cfg``'s model: ``(FLOPs, aten operator calls)``.

    Runs one forward + backward of the loss on a batch of 2 on CPU, counting matmul/convolution
    FLOPs with torch's ``FlopCounterMode`` (scaled to ``cfg.batch_size``) and every dispatched
    operator (each is at least one GPU kernel launch). Used to estimate GPU run times on hardware
    this machine does not have: time per step ~ max(FLOPs / sustained FLOP/s, calls x launch cost).
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class _Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            _Count.calls += 1
            return func(*args, **(kwargs or {}))

    model = build_model(cfg, shape, num_classes)
    y = torch.zeros(2, *shape)
    cond = torch.zeros(2, dtype=torch.int64) if cfg.conditional else None
    gen = torch.Generator().manual_seed(0)
    flops = FlopCounterMode(display=False)
    with flops, _Count():
        model.loss(y, cond, gen).backward()
    return flops.get_total_flops() / 2 * cfg.batch_size, _Count.calls
