"""Training, and a content-addressed cache of trained models.

``load_or_train(TrainConfig(...))`` trains a model once and every chapter reuses it: the checkpoint's
directory is named by a hash of the config, weights are safetensors and everything else JSON (no
pickles); :mod:`reprodiff.cache` owns the files. Training writes a resumable state every
``checkpoint_every`` steps and on Ctrl-C (at the end of the step under way), and resumes from it
to *bitwise* the weights an uninterrupted run reaches: the state holds the batch generator, the
global RNG (dropout), the optimizer and the EMA. A corrupt or mismatched checkpoint raises
:class:`CheckpointError` instead of being trusted, and two processes asking for one model train
it once.

Under ``accelerate launch`` (N processes, DDP) a model trains to the weights one process reaches,
up to float rounding: ``batch_size`` is the *global* batch. Every process draws the same global
batch stream (images, label-dropout draws, sigma and noise, from the generator one process uses)
and keeps its contiguous shard of ``batch_size / N`` rows (``batch_size`` must divide evenly); DDP
averages the shards' gradients, which is the full batch's gradient, so every process takes the same
optimizer and EMA steps. What cannot match one process is dropout (``dropout > 0``): its masks come
from the global RNG, per process (process p > 0 reseeds it from its own stream, so shards do not
share masks), and are drawn per shard. The resumable state holds every process's RNG; resuming
with another number of processes is exact only without dropout. Only the main process writes
files; a Ctrl-C reaching one process stops them all at the same step.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch

from . import __version__
from .backbones import BACKBONES, build_backbone, count_parameters, flops_per_image
from .cache import (CheckpointError, clean_temporaries, config_hash, entry_dir, entry_lock, is_cached,
                    STATE_FILE, read_meta, read_model, read_state, write_model, write_state)
from .data import DATASETS, ImageData, MoLRG, keep_classes, load_dataset, split_holdout, subset
from .denoisers import Precond, denoising_loss, draw_noise, get_objective
from .runtime import cpu_threads, default_device, derive_seed, flush_denormal

__all__ = ["TrainConfig", "training_data", "train", "load_or_train",
           "load_or_train_many", "train_missing", "training_step_ms", "load_model", "checkpoint_dir", "build_model",
           "TrainJob", "prefix_source", "train_from_prefix"]

_INT_FIELDS = ("holdout", "subset_seed", "subset_offset", "molrg_classes", "molrg_dim", "molrg_seed", "steps",
               "batch_size", "warmup", "seed", "checkpoint_every", "lora_rank")
# hashed only when set (a field at its default is left out): a config that leaves them unset keeps its hash
_WHEN_SET = {"hashed": "when-set"}
_FLOAT_FIELDS = ("label_dropout", "dropout", "lr", "weight_decay", "ema")
#: far above any batch the book trains with (<= 512), far below one that cannot be allocated
_MAX_BATCH = 65536


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (its hash names the checkpoint).

    Data: ``dataset`` (``"digits"``, ``"cifar10"`` or ``"molrg"``), ``n_train`` (nested subset
    size; ``None`` = every image not held out), ``holdout`` (images kept out of every subset),
    ``subset_seed``, ``subset_offset`` (skip that many images of the subset order: ``subset_offset=N``
    gives a training set disjoint from the default's). Model: ``backbone`` (a name in
    :data:`reprodiff.backbones.BACKBONES`), ``objective`` (``"eps"``, ``"v"``, ``"edm"``), ``conditional``
    (+ ``label_dropout`` for classifier-free guidance). Optimisation: AdamW with linear warm-up, EMA of the weights.
    ``checkpoint_every`` only says how often a resumable state is written: it does not change the
    weights, so it is left out of the hash.

    Fine-tuning: ``base`` names the config of the model to start from (its hash is part of this
    one's), ``classes`` keeps only those labels (training subset and held-out images alike), and
    ``lora_rank`` > 0 trains only LoRA adapters of that rank (peft) on ``lora_targets`` (``None``:
    the backbone's default layers), merged into the base when the model is loaded. ``snapshots``
    are steps at which the EMA weights are also saved (:func:`load_model` with ``step=``).

    Every field is checked on construction (types and ranges), so a bad value fails before any
    folder is created or any step is trained; numpy integers are accepted and stored as ``int``.
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
    checkpoint_every: int = field(default=500, metadata={"hashed": False})
    classes: tuple[int, ...] | None = field(default=None, metadata=_WHEN_SET)
    base: TrainConfig | None = field(default=None, metadata=_WHEN_SET)
    lora_rank: int = field(default=0, metadata=_WHEN_SET)
    lora_targets: tuple[str, ...] | None = field(default=None, metadata=_WHEN_SET)
    snapshots: tuple[int, ...] = field(default=(), metadata=_WHEN_SET)
    subset_offset: int = field(default=0, metadata=_WHEN_SET)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in _INT_FIELDS + (("n_train",) if self.n_train is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            try:
                put(name, operator.index(value))
            except TypeError:
                raise ValueError(f"{name} must be an integer, got {value!r}") from None
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            put(name, float(value))
        if not isinstance(self.conditional, bool):
            raise ValueError(f"conditional must be True or False, got {self.conditional!r}")
        if self.classes is not None:
            put("classes", _int_tuple("classes", self.classes))
            if not self.classes or min(self.classes) < 0:
                raise ValueError(f"classes must be non-negative labels, got {self.classes!r}")
        put("snapshots", _int_tuple("snapshots", self.snapshots))
        if self.lora_targets is not None:
            if isinstance(self.lora_targets, str) or not self.lora_targets or \
                    not all(isinstance(t, str) and t for t in self.lora_targets):
                raise ValueError(f"lora_targets must be a tuple of module names, got {self.lora_targets!r}")
            put("lora_targets", tuple(self.lora_targets))
        if self.base is not None:
            if not isinstance(self.base, TrainConfig):
                raise ValueError(f"base must be a TrainConfig, got {type(self.base).__name__}")
            differs = [k for k in ("dataset", "backbone", "objective", "conditional", "molrg_classes", "molrg_dim",
                                   "molrg_seed") if getattr(self.base, k) != getattr(self, k)]
            if differs:
                raise ValueError("a fine-tune keeps its base's data kind and architecture, but "
                                 + ", ".join(f"{k} is {getattr(self, k)!r} here and {getattr(self.base, k)!r} in the base"
                                             for k in differs))

        if self.dataset not in (*DATASETS, "molrg"):
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)} or molrg")
        get_objective(self.objective)
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        checks = [
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be positive"),
            (self.batch_size <= _MAX_BATCH, f"batch_size {self.batch_size:,} is too large (at most {_MAX_BATCH:,}: "
                                            "a batch is drawn with replacement, so it may exceed n_train, but one "
                                            "this large cannot be held in memory)"),
            (self.n_train is None or self.n_train >= 1, "n_train must be positive (or None for all)"),
            (self.holdout >= 0, f"holdout must be >= 0, got {self.holdout}"),
            (min(self.subset_seed, self.molrg_seed, self.seed) >= 0, "seeds must be non-negative"),
            (self.subset_offset >= 0, f"subset_offset must be >= 0, got {self.subset_offset}"),
            (self.subset_offset == 0 or self.n_train is not None, "subset_offset needs n_train"),
            (self.molrg_classes >= 1 and self.molrg_dim >= 1, "molrg_classes and molrg_dim must be positive"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.label_dropout <= 1, f"label_dropout must be in [0, 1], got {self.label_dropout}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"),
            (self.lora_rank >= 0, f"lora_rank must be >= 0, got {self.lora_rank}"),
            (self.lora_rank == 0 or self.base is not None, "LoRA (lora_rank > 0) needs a base model to adapt"),
            (self.lora_targets is None or self.lora_rank > 0, "lora_targets needs lora_rank > 0"),
            (all(1 <= s < self.steps for s in self.snapshots), f"snapshots must be steps in [1, {self.steps}), "
                                                                 f"got {self.snapshots}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def hashed_fields(self) -> dict[str, Any]:
        """The fields that determine the trained weights, as JSON values (everything but
        ``checkpoint_every``; the fine-tuning fields and ``snapshots`` only when set; the base as
        its hash)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value, rule = getattr(self, f.name), f.metadata.get("hashed", True)
            if rule is False or (rule == "when-set" and value == f.default):
                continue
            out[f.name] = value.hash if isinstance(value, TrainConfig) else \
                list(value) if isinstance(value, tuple) else value
        return out

    @property
    def hash(self) -> str:
        """12 hex digits naming this config's checkpoint (stable across runs and machines)."""
        return config_hash(self.hashed_fields())

    @property
    def name(self) -> str:
        n = "all" if self.n_train is None else self.n_train
        classes = "" if self.classes is None else "-c" + ".".join(map(str, self.classes))
        tuned = "" if self.base is None else f"-lora{self.lora_rank}" if self.lora_rank else "-ft"
        offset = f"+{self.subset_offset}" if self.subset_offset else ""
        return f"{self.backbone}-{self.objective}-{self.dataset}{n}{offset}{classes}-s{self.seed}{tuned}"

    # the training pool's protocol (:class:`TrainJob`)
    def cached(self) -> bool:
        """Whether the trained model is in the cache."""
        return is_cached(checkpoint_dir(self))

    def train_cached(self, progress: bool = True) -> None:
        """Train the model into the cache (:func:`train`)."""
        train(self, progress=progress)

    def load_cached(self) -> Precond:
        """The cached model, on :func:`reprodiff.runtime.default_device`."""
        return load_model(self).to(default_device())

    def training_flops(self) -> float:
        """Training FLOPs, for scheduling: FLOPs per image x batch size x steps. FLOPs, not parameters:
        a UNet applies every weight at every pixel, an MLP once per image. Reads the training data, so
        an impossible subset raises here."""
        shape = tuple(training_data(self)[0].shape)
        return flops_per_image(self.backbone, shape) * self.batch_size * self.steps


def _int_tuple(name: str, values: Any) -> tuple[int, ...]:
    """Sorted distinct integers from an iterable of (numpy) integers; ``ValueError`` otherwise."""
    try:
        if isinstance(values, (str, bytes)) or any(isinstance(v, bool) for v in values):
            raise TypeError
        return tuple(sorted({operator.index(v) for v in values}))
    except TypeError:
        raise ValueError(f"{name} must be a tuple of integers, got {values!r}") from None


def checkpoint_dir(cfg: TrainConfig) -> Path:
    """The cache folder of ``cfg``'s model."""
    return entry_dir("models", cfg.name, cfg.hash)


def training_data(cfg: TrainConfig) -> tuple[ImageData, ImageData | None]:
    """The training subset a config describes, and the held-out images (``None`` if ``holdout == 0``).

    With ``cfg.classes``, both keep only those labels (the held-out split itself does not change,
    so a fine-tune holds out the same images as its base). Raises before any training when the
    requested subset is larger than the data allows or a class does not exist.
    """
    if cfg.dataset == "molrg":
        if cfg.n_train is None:
            raise ValueError("MoLRG has unlimited samples: set n_train")
        if cfg.classes is not None:
            raise ValueError("classes selects labels of a dataset; MoLRG samples every component")
        dist = MoLRG(num_classes=cfg.molrg_classes, dim=cfg.molrg_dim, seed=cfg.molrg_seed)
        # held-out samples come from another seed of the same distribution; subsets stay nested
        pool = dist.sample(cfg.subset_offset + cfg.n_train, seed=cfg.subset_seed)
        if cfg.subset_offset:  # the samples after the first subset_offset: disjoint from offset 0's
            pool = pool.select(torch.arange(cfg.subset_offset, len(pool)))
        held = dist.sample(cfg.holdout, seed=cfg.subset_seed + 1) if cfg.holdout else None
        return pool, held
    data = load_dataset(cfg.dataset)
    if cfg.holdout:
        pool, held = split_holdout(data, cfg.holdout)
        held = keep_classes(held, cfg.classes)
    else:
        pool, held = data, None
    return subset(keep_classes(pool, cfg.classes), cfg.n_train, cfg.subset_seed, cfg.subset_offset), held


def build_model(cfg: TrainConfig, shape: tuple[int, int, int], num_classes: int) -> Precond:
    """The untrained denoiser (backbone + preconditioning) a config describes."""
    backbone = build_backbone(cfg.backbone, shape, num_classes if cfg.conditional else None, cfg.dropout)
    return Precond(backbone, cfg.objective)


def add_lora(model: Precond, cfg: TrainConfig):
    """Inject ``cfg``'s LoRA adapters (peft) into ``model.backbone`` in place; only they stay trainable.

    Returns peft's ``LoraModel`` around the backbone (its ``merge_and_unload()`` folds the adapters
    into the weights). ``lora_alpha`` equals the rank, so an adapter's update is ``B @ A`` unscaled.
    """
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    targets = cfg.lora_targets or type(model.backbone).lora_targets
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, target_modules=list(targets))
    return LoraModel(model.backbone, config, "default")


def _is_adapter(key: str) -> bool:
    return ".lora_" in key


def _snapshot_dir(path: Path, step: int) -> Path:
    return Path(path) / "snapshots" / f"step-{step:07d}"


def load_model(cfg: TrainConfig, path: Path | None = None, *, step: int | None = None,
               merge: bool = True) -> Precond:
    """Load a finished model for ``cfg`` from the cache (or ``path``), verifying it belongs to ``cfg``.

    ``step`` loads the EMA weights saved at that step instead (one of ``cfg.snapshots``). A LoRA
    model is its base with the saved adapters, merged into the weights (``merge=False`` keeps
    peft's adapter layers, for checking that merging changes nothing).

    Raises ``FileNotFoundError`` when it (or a LoRA model's base) was never trained,
    :class:`CheckpointError` when the files are corrupt, edited, or belong to another config, or
    when a fine-tune's base in the cache is not the one it was trained from (its weights have
    other bits than those recorded at training time).
    """
    path = Path(path) if path is not None else checkpoint_dir(cfg)
    if step is not None and step != cfg.steps:
        if step not in cfg.snapshots:
            raise ValueError(f"{cfg.name} saves snapshots at steps {list(cfg.snapshots)}, not at {step}")
        path = _snapshot_dir(path, step)
    try:
        meta, weights = read_model(path, cfg.hash, cfg.hashed_fields())
    except FileNotFoundError:
        raise FileNotFoundError(f"no trained model for {cfg.name} in {path}") from None
    base = load_model(cfg.base) if cfg.lora_rank else None
    if cfg.base is not None:
        _check_base(cfg, meta, path, base)
    try:
        shape, num_classes = tuple(int(v) for v in meta["shape"]), meta["num_classes"]
        model = build_model(cfg, shape, num_classes)
        if base is None:
            model.load_state_dict(weights, strict=True)
        else:
            model.load_state_dict(base.state_dict(), strict=True)
            lora = add_lora(model, cfg)
            missing, unexpected = model.load_state_dict(weights, strict=False)
            if unexpected or any(_is_adapter(k) for k in missing) or not weights:
                raise ValueError(f"the adapter file does not match: {len(unexpected)} unexpected and "
                                 f"{sum(map(_is_adapter, missing))} missing adapter tensors")
            if merge:
                model.backbone = lora.merge_and_unload()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the model in {path} does not fit {cfg.backbone} ({exc}); delete {path} to retrain") from exc
    model.eval().requires_grad_(False)
    model.config, model.info = cfg, meta
    return model


def _base_digest(cfg: TrainConfig, base: Precond | None = None) -> str | None:
    """The SHA-256 of the weights of ``cfg.base`` as cached now (``None`` when it is not cached)."""
    if base is not None and "weights_sha256" in base.info:  # loaded (a freshly trained model's info has none)
        return base.info["weights_sha256"]
    base_dir = checkpoint_dir(cfg.base)
    if not is_cached(base_dir):
        return None
    return read_meta(base_dir, cfg.base.hash, cfg.base.hashed_fields()).get("weights_sha256")


def _check_base(cfg: TrainConfig, meta: dict, path: Path, base: Precond | None) -> None:
    """Raise :class:`CheckpointError` when the fine-tune in ``path`` was trained from other base
    weights than those cached now. Fine-tunes cached before the digest was recorded, and full
    fine-tunes whose base is gone (they need none), load as before."""
    recorded = meta.get("base_weights_sha256")
    actual = _base_digest(cfg, base) if recorded is not None else None
    if actual is None or actual == recorded:
        return
    use = "its adapters would be merged into other weights" if cfg.lora_rank else \
        "it is not a fine-tune of the base now cached"
    raise CheckpointError(
        f"{cfg.name} in {path} was fine-tuned from base weights with SHA-256 {recorded[:16]}…, but the base "
        f"{cfg.base.name} in {checkpoint_dir(cfg.base)} now has {actual[:16]}… (it was trained again, on another "
        f"machine or torch version, or replaced); {use}. Delete {checkpoint_dir(cfg)} to retrain the fine-tune "
        "from this base")


def _shard(batch_size: int, num_processes: int, process_index: int) -> slice:
    """The rows of each global batch that process ``process_index`` of ``num_processes`` trains on:
    the contiguous ``process_index``-th of ``num_processes`` equal slices (all rows for one process).
    Raises ``ValueError`` when ``batch_size`` does not divide evenly (DDP's gradient average would
    then weight the shards unequally)."""
    if batch_size % num_processes:
        raise ValueError(f"batch_size {batch_size} is the global batch and must divide evenly among the "
                         f"{num_processes} training processes; choose a multiple of {num_processes}")
    rows = batch_size // num_processes
    return slice(process_index * rows, (process_index + 1) * rows)


def _gather_rng(accelerator) -> dict[str, torch.Tensor]:
    """The global RNG states (dropout masks) of processes 1..N-1, for the main process's state file:
    ``rng.rank{p}.cpu`` and, on GPUs, ``rng.rank{p}.cuda`` (its own device's). Process 0's are the
    ``rng.cpu`` / ``rng.cuda{i}`` one process saves. Collective: every process must call it."""
    own = [torch.get_rng_state()]
    if accelerator.device.type == "cuda":
        own.append(torch.cuda.get_rng_state(accelerator.device))
    rows = accelerator.gather(torch.cat(own).to(accelerator.device)[None]).cpu()
    n_cpu = own[0].numel()
    out = {}
    for p in range(1, accelerator.num_processes):
        out[f"rng.rank{p}.cpu"] = rows[p, :n_cpu].clone()
        if len(own) > 1:
            out[f"rng.rank{p}.cuda"] = rows[p, n_cpu:].clone()
    return out


#: the running training loss is recorded every this many steps (and at the last)
_LOSS_EVERY = 10


def _lr_at(cfg: TrainConfig, step: int) -> float:
    # independent of cfg.steps, as every other part of a step: a shorter run is a prefix of a longer one
    # (:func:`prefix_source`); a schedule that looked at the total would break that (test_training checks it)
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
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if state and set(state) != set(range(n_params)):
        raise KeyError("the optimizer state does not cover the model's parameters")
    sd["state"] = state
    opt.load_state_dict(sd)


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C (SIGINT) until the training step under way has finished.

    Yields a function that tells whether an interrupt is pending; the loop checks it at each step
    boundary, writes a consistent state and raises ``KeyboardInterrupt`` there. A second Ctrl-C
    stops at once (the last periodic state stays valid). Off the main thread, signals cannot be
    handled and this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    pending: list[int] = []

    def handler(signum, frame):
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pending)
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def train(cfg: TrainConfig, progress: bool = True, device: str | None = None) -> Precond:
    """Train the model ``cfg`` describes into the cache (resuming a previous partial run) and return it.

    If the model is already cached (or another process finishes it while this one waits for the
    entry's lock), it is loaded instead of trained again. The returned model is the EMA of the
    weights, in eval mode, with ``.config`` and ``.info``. The caller's global RNG is left as it
    was. Bad configs and impossible subsets raise before anything is written.

    Under ``accelerate launch`` every process calls this and ``cfg.batch_size`` is the global batch,
    split evenly among the processes (``ValueError`` before training when it does not divide); see
    the module docstring for what matches one process. Every process returns the same weights.
    """
    data, _ = training_data(cfg)  # raises on impossible subsets before anything heavy
    init = base_digest = None
    if cfg.base is not None:  # a missing, corrupt or mismatched base fails here, before any folder exists
        if not is_cached(checkpoint_dir(cfg.base)):
            raise FileNotFoundError(f"{cfg.name} fine-tunes {cfg.base.name}, which is not trained yet: "
                                    f"train it first (load_or_train(cfg.base), or list both in load_or_train_many)")
        base = load_model(cfg.base)
        if tuple(base.info["shape"]) != data.shape:
            raise ValueError(f"the base {cfg.base.name} takes images {tuple(base.info['shape'])}, "
                             f"the fine-tuning data has {data.shape}")
        init, base_digest = base.state_dict(), _base_digest(cfg, base)
    path = checkpoint_dir(cfg)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # every rank must train: no per-entry lock
    if is_cached(path) and not distributed:  # finished (model.json is written last): nothing to lock, or write
        return load_model(cfg)
    with nullcontext() if distributed else entry_lock(path):
        if is_cached(path) and not distributed:
            return load_model(cfg)
        if distributed:  # the lock creates the folder otherwise; resumable states are written into it
            path.mkdir(parents=True, exist_ok=True)
        clean_temporaries(path)
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        try:
            with torch.random.fork_rng(devices=devices):
                return _train_locked(cfg, data, path, progress, device, init, base_digest)
        except BaseException:
            if not distributed:  # a run that failed before its first state leaves no empty entry behind
                try:
                    path.rmdir()
                except OSError:  # it holds a state to resume from
                    pass
            raise


def _train_locked(cfg: TrainConfig, data: ImageData, path: Path, progress: bool, device: str | None,
                  init: dict[str, torch.Tensor] | None, base_digest: str | None = None) -> Precond:
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    accelerator = Accelerator(cpu=(device == "cpu") or not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    shard = _shard(cfg.batch_size, world, rank)
    torch.manual_seed(cfg.seed)  # parameter initialisation (and then dropout masks)
    model = build_model(cfg, data.shape, data.num_classes)
    ema = build_model(cfg, data.shape, data.num_classes)
    if init is not None:  # fine-tuning starts from the base's weights
        model.load_state_dict(init, strict=True)
    ema_lora = None
    if cfg.lora_rank:  # the same adapters in both; only the model's train
        add_lora(model, cfg)
        ema_lora = add_lora(ema, cfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    if rank > 0:  # its own dropout masks (its stream of "train-batches" is free: batches come from stream 0)
        torch.manual_seed(derive_seed(cfg.seed, "train-batches", rank))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    # fused: one kernel per step for all parameters, faster than one per tensor (benchmarks/README.md)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, fused=True)
    # every process draws the same global batches and keeps its shard of them
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "train-batches", 0))
    step, losses, seconds, running = 0, [], 0.0, None
    global_rng: dict[str, torch.Tensor] = {}
    # a fine-tune is bound to its base's weights (the config hash binds only to the base's config)
    binding = {} if base_digest is None else {"base_weights_sha256": base_digest}

    saved = read_state(path, cfg.hash, cfg.hashed_fields())  # None (with a warning) when damaged
    if saved is not None and saved[0].get("base_weights_sha256") != base_digest:
        warnings.warn(f"the resumable state in {path} was trained from other base weights than those of "
                      f"{cfg.base.name if cfg.base else 'no base'} now cached; it is discarded and training starts "
                      "again from step 0", RuntimeWarning, stacklevel=2)
        saved = None
    if saved is not None:
        meta, tensors = saved
        try:
            step, losses, seconds = int(meta["step"]), list(meta["losses"]), float(meta["seconds"])
            running = None if meta["running"] is None else float(meta["running"])
            if not 0 <= step < cfg.steps:
                raise ValueError(f"step {step} is outside [0, {cfg.steps})")
            adam_steps = {float(v) for k, v in tensors.items() if k.startswith("opt.") and k.endswith(".step")}
            if step > 0 and adam_steps != {float(step)}:
                raise ValueError(f"the optimizer state is at step {sorted(adam_steps)}, the state file says {step}")
            model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            _restore_optimizer(opt, tensors)
            gen.set_state(tensors["rng"])
            global_rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
            if "rng.cpu" not in global_rng:
                raise KeyError("rng.cpu")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the resumable state in {path} is inconsistent ({type(exc).__name__}: {exc}); "
                                  f"delete {path} to retrain") from exc

    images = data.images.to(accelerator.device)
    labels = data.labels.to(accelerator.device)
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    # DDP hooks gradients on forward(): go through the wrapper when there is one
    net = raw if accelerator.num_processes == 1 else model
    ema.to(accelerator.device)
    null_label = data.num_classes
    if global_rng and rank == 0:  # dropout draws from the global RNG: resume it where the state left it
        torch.set_rng_state(global_rng["rng.cpu"])
        for i in range(torch.cuda.device_count()):
            if f"rng.cuda{i}" in global_rng:
                torch.cuda.set_rng_state(global_rng[f"rng.cuda{i}"], i)
    elif global_rng:  # a state saved by fewer processes has none for this one: it keeps its fresh stream
        if f"rng.rank{rank}.cpu" in global_rng:
            torch.set_rng_state(global_rng[f"rng.rank{rank}.cpu"])
        if f"rng.rank{rank}.cuda" in global_rng and accelerator.device.type == "cuda":
            torch.cuda.set_rng_state(global_rng[f"rng.rank{rank}.cuda"], accelerator.device)

    def save_state() -> None:
        other_rngs = _gather_rng(accelerator) if world > 1 else {}
        if accelerator.is_main_process:
            tensors = _optimizer_tensors(opt)
            tensors.update({f"net.{k}": v for k, v in raw.state_dict().items()})
            tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
            tensors["rng"] = gen.get_state()
            tensors["rng.cpu"] = torch.get_rng_state()
            if accelerator.device.type == "cuda":
                tensors.update({f"rng.cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
            tensors.update(other_rngs)
            write_state(path, tensors, dict(hash=cfg.hash, config=cfg.hashed_fields(), step=step, losses=losses,
                                            running=running, seconds=seconds, version=__version__, **binding))
        if world > 1:  # no process goes on (or stops, and resumes) before the state is on disk
            accelerator.wait_for_everyone()

    def final_weights() -> dict[str, torch.Tensor]:  # a LoRA model keeps only its adapters
        weights = ema.state_dict()
        return {k: v for k, v in weights.items() if _is_adapter(k)} if cfg.lora_rank else weights

    base_meta = dict(hash=cfg.hash, config=cfg.hashed_fields(), version=__version__, shape=list(data.shape),
                     num_classes=data.num_classes, n_train=len(data), **binding)
    snapshots = set(cfg.snapshots)
    named_ema = dict(ema.named_parameters())
    ema_p = [named_ema[name] for name in trainable]
    raw_p = [p for p in raw.parameters() if p.requires_grad]
    bar = tqdm(total=cfg.steps, initial=step, desc=f"training {cfg.name}",
               disable=not progress or not accelerator.is_local_main_process)
    t0 = time.perf_counter()
    model.train()
    try:
        with flush_denormal(), cpu_threads(1 if accelerator.device.type == "cpu" else None), \
                _deferred_interrupt() as interrupted:
            while step < cfg.steps:
                # the global batch, drawn in this order (it fixes the trained bits); this process's shard of it
                idx = torch.randint(len(data), (cfg.batch_size,), generator=gen)[shard].to(accelerator.device)
                y = images[idx]
                cond = None
                if cfg.conditional:
                    drop = torch.rand(cfg.batch_size, generator=gen)[shard].to(accelerator.device) < cfg.label_dropout
                    cond = torch.where(drop, torch.full_like(labels[idx], null_label), labels[idx])
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg, step)
                sigma, noise = draw_noise(raw.objective, (cfg.batch_size, *data.shape), gen)
                loss = denoising_loss(net, raw.objective, y, sigma[shard].to(accelerator.device),
                                      noise[shard].to(accelerator.device), cond)
                opt.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                opt.step()
                decay = min(cfg.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_mul_(ema_p, decay)
                    torch._foreach_add_(ema_p, raw_p, alpha=1 - decay)
                step += 1
                if step in snapshots and accelerator.is_main_process:  # with the seconds its steps took
                    write_model(_snapshot_dir(path, step), final_weights(),
                                dict(base_meta, step=step, seconds=round(seconds + time.perf_counter() - t0, 2)))
                if world == 1:
                    value, stop = loss.item(), interrupted()
                else:  # the global batch's loss; and a Ctrl-C that reached any process stops all at this step
                    flag = torch.tensor(float(interrupted()), device=accelerator.device)
                    total = accelerator.reduce(torch.stack([loss.detach().float(), flag]), "sum").cpu()
                    value, stop = total[0].item() / world, bool(total[1] > 0)
                running = value if running is None else 0.98 * running + 0.02 * value
                if step % _LOSS_EVERY == 0 or step == cfg.steps:
                    losses.append([step, round(running, 6)])
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{running:.4f}")
                if (step % cfg.checkpoint_every == 0 or stop) and step < cfg.steps:
                    seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    save_state()
                if stop and step < cfg.steps:
                    raise KeyboardInterrupt(f"training {cfg.name} interrupted; its state at step {step} is saved "
                                            "and the next call resumes it")
            stopped_at_end = interrupted()
    finally:
        bar.close()
    seconds += time.perf_counter() - t0

    meta = dict(base_meta, steps=step, seconds=round(seconds, 2), losses=losses, snapshots=sorted(snapshots),
                parameters=count_parameters(raw.backbone),
                trainable_parameters=sum(p.numel() for p in raw_p))
    if accelerator.is_main_process:
        write_model(path, final_weights(), meta)
        (path / STATE_FILE).unlink(missing_ok=True)
    if world > 1:  # every process returns once the model is on disk
        accelerator.wait_for_everyone()
    if ema_lora is not None:  # returned as load_model returns it: adapters merged into the weights
        ema.backbone = ema_lora.merge_and_unload()
    ema.eval().cpu()
    ema.config, ema.info = cfg, meta
    if stopped_at_end:  # Ctrl-C during the last step: the model is saved, then the interrupt goes on
        raise KeyboardInterrupt(f"training {cfg.name} interrupted after its last step; the model is saved")
    return ema


def load_or_train(cfg: TrainConfig, progress: bool = True) -> Precond:
    """Load ``cfg``'s model from the cache, or train it (resuming an interrupted run) and cache it.

    Safe to call from several processes at once: one trains, the others wait and load. The model
    comes back on :func:`reprodiff.runtime.default_device` (a GPU when there is one), so sampling
    runs there.
    """
    model = load_model(cfg) if is_cached(checkpoint_dir(cfg)) else train(cfg, progress=progress)
    return model.to(default_device())


class TrainJob(Protocol):
    """What the training pool (:func:`train_missing`, :func:`load_or_train_many`) asks of a config,
    whatever it trains: :class:`TrainConfig` (a diffusion model) and
    :class:`reprodiff.controls.VAEConfig` (a VAE control) both answer it."""

    hash: str
    name: str

    def cached(self) -> bool: ...

    def train_cached(self, progress: bool = True) -> None: ...

    def load_cached(self) -> torch.nn.Module: ...

    def training_flops(self) -> float: ...


def prefix_source(cfg, others) -> TrainConfig | None:
    """A config of ``others`` whose training run contains ``cfg``'s: the same in every field but
    ``steps`` (longer) and ``snapshots``, with a snapshot at ``cfg.steps`` and at each of ``cfg``'s.
    Nothing in a step depends on the run's length (learning rate, EMA decay, batches and noise are
    functions of the step), so ``cfg``'s weights are that snapshot, bit for bit
    (:func:`train_from_prefix`). ``None`` when there is none, when ``cfg`` is not a plain
    :class:`TrainConfig` (fine-tunes are not matched) or ends between two recorded losses."""
    if not isinstance(cfg, TrainConfig) or cfg.base is not None or cfg.steps % _LOSS_EVERY:
        return None  # (a run that ends between two recorded losses records one more than the longer run)
    mine = {k: v for k, v in cfg.hashed_fields().items() if k not in ("steps", "snapshots")}
    for other in others:
        if (isinstance(other, TrainConfig) and other.steps > cfg.steps
                and {cfg.steps, *cfg.snapshots} <= set(other.snapshots)
                and {k: v for k, v in other.hashed_fields().items() if k not in ("steps", "snapshots")} == mine):
            return other
    return None


def train_from_prefix(cfg: TrainConfig, source: TrainConfig) -> None:
    """Write ``cfg``'s model into the cache from the cached ``source``'s snapshots
    (``source = prefix_source(cfg, ...)``): its final weights are ``source``'s snapshot at
    ``cfg.steps``, its snapshots ``source``'s at the same steps, its losses ``source``'s up to
    ``cfg.steps`` and its seconds those ``source`` had spent by then. The files are what training
    ``cfg`` writes, bit for bit in the weights (``tests/test_training.py``), plus ``prefix_of``."""
    if prefix_source(cfg, [source]) is not source:
        raise ValueError(f"{source.name} does not contain {cfg.name}'s training run")
    src, path = checkpoint_dir(source), checkpoint_dir(cfg)
    final = read_meta(src, source.hash, source.hashed_fields())  # FileNotFoundError when source is not trained
    with entry_lock(path):
        if is_cached(path):
            return
        clean_temporaries(path)
        base_meta = dict(hash=cfg.hash, config=cfg.hashed_fields(), version=__version__, shape=final["shape"],
                         num_classes=final["num_classes"], n_train=final["n_train"])
        seconds = None
        for step in sorted({*cfg.snapshots, cfg.steps}):
            meta, weights = read_model(_snapshot_dir(src, step), source.hash, source.hashed_fields())
            seconds = meta.get("seconds", round(final["seconds"] * step / source.steps, 2))  # older caches: pro rata
            if step != cfg.steps:
                write_model(_snapshot_dir(path, step), weights, dict(base_meta, step=step, seconds=seconds))
        write_model(path, weights, dict(base_meta, steps=cfg.steps, seconds=seconds,
                                        losses=[row for row in final["losses"] if row[0] <= cfg.steps],
                                        snapshots=sorted(cfg.snapshots), parameters=final["parameters"],
                                        trainable_parameters=final["trainable_parameters"],
                                        prefix_of=f"{source.name} ({source.hash})"))


def _pool_executor(workers: int):
    """The processes :func:`train_missing` trains in: fresh (spawned) ones, so no state of this process
    (threads, RNG, a notebook's imports) leaks into a model."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _train_in_worker(cfg: TrainJob) -> str:
    cfg.train_cached(progress=False)
    return cfg.name


#: below this many training FLOPs in all (~5 s of one core; the smallest model of the cpu profile costs 2.1e11)
#: a wave trains in this process, one model at a time
_IN_PROCESS_FLOPS = 1e11


def train_missing(configs, workers: int | None = None, progress: bool = True) -> list:
    """Train every config of ``configs`` that is not cached yet, longest first, ``workers`` at a time.

    Each worker is a fresh process training one model single-threaded (as :func:`train` always does
    on CPU), so a model's weights do not depend on which process trained it or in which order. A fine-tune
    starts once its base is done. A config whose run another config of ``configs`` contains
    (:func:`prefix_source`: the same model trained longer, with snapshots) is not trained: its files
    are copied from that run's snapshots once it is done (:func:`train_from_prefix`; the same bits).
    The progress bar counts training FLOPs, not models (a UNet-S costs ~30 MLPs), so its rate and
    remaining time mean something.

    Args:
        configs: :class:`TrainConfig` and :class:`~reprodiff.controls.VAEConfig` objects (duplicates
            are trained once).
        workers: processes training at once (default ``$REPRODIFF_WORKERS`` or the number of CPU
            cores). With a GPU, or when the models are so small that starting processes would cost more
            than training them, they train one by one in this process.

    Returns: the configs that were trained (empty when everything was cached).
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from tqdm.auto import tqdm

    configs = list(configs)
    missing = list({c.hash: c for c in configs if not c.cached()}.values())
    trained = list(missing)
    # bad subsets (counting the FLOPs reads each model's data) and missing bases fail here, before any process starts
    costs = {c.hash: c.training_flops() for c in missing}
    # a run that another config's run contains is copied from its snapshots once that one is trained (no work)
    sources = {c.hash: src for c in missing if (src := prefix_source(c, configs)) is not None}
    costs.update({h: 0.0 for h in sources})
    for c in missing:
        if getattr(c, "base", None) is not None and c.base.hash not in costs and not c.base.cached():
            raise FileNotFoundError(f"{c.name} fine-tunes {c.base.name}, which is neither trained nor in this list")
    workers = workers or int(os.environ.get("REPRODIFF_WORKERS", 0)) or (os.cpu_count() or 1)
    # in a log (CI) a line every 30 s; in a terminal or a notebook, live
    live = sys.stderr.isatty() or "ipykernel" in sys.modules
    bar = tqdm(total=round(sum(costs.values()) / 1e12, 2), unit="TFLOP", disable=not progress or len(missing) < 2,
               desc=f"training {len(missing)} models, {min(workers, len(missing))} at a time",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
               mininterval=1 if live else 30)
    done = 0

    def finished(c) -> None:
        nonlocal done
        done += 1
        bar.set_postfix_str(f"{done}/{len(trained)} done, last: {c.name}")
        bar.update(round(costs[c.hash] / 1e12, 2))

    def waiting_on(c) -> str | None:  # the hash of a base (or a run to copy from) still to train, if any
        base = sources[c.hash] if c.hash in sources else getattr(c, "base", None)
        return base.hash if base is not None and base.hash in costs else None

    def train_here(c) -> None:
        if c.hash in sources:
            train_from_prefix(c, sources[c.hash])
        else:
            c.train_cached(progress)

    try:
        small = sum(costs.values()) < _IN_PROCESS_FLOPS
        if workers == 1 or len(missing) == 1 or small or torch.cuda.is_available():
            # one by one in this process: a few seconds of work trains faster here than in fresh processes
            # (each imports torch and diffusers); bases before their fine-tunes, longest first
            pending, trained_hashes = sorted(missing, key=lambda c: -costs[c.hash]), set()
            while pending:
                for c in [c for c in pending if waiting_on(c) in (None, *trained_hashes)]:
                    train_here(c)
                    finished(c)
                    trained_hashes.add(c.hash)
                    pending.remove(c)
            return trained
        # one pool for everything, ``workers`` jobs in flight: whenever one finishes, the longest job that
        # is ready starts (a fine-tune is ready once its base is done), so the pool ends on a short job and
        # no worker waits for a wave to drain
        ready = [c for c in missing if waiting_on(c) is None]
        held = [c for c in missing if waiting_on(c) is not None]
        done_hashes: set[str] = set()

        def done_with(c) -> None:
            nonlocal held
            finished(c)
            done_hashes.add(c.hash)
            released = [c for c in held if waiting_on(c) in done_hashes]
            held = [c for c in held if c not in released]
            ready.extend(released)

        with _pool_executor(min(workers, len(missing))) as pool:
            running = {}
            while ready or held or running:
                copies = [c for c in ready if c.hash in sources]
                for c in copies:  # a file copy: here, at once
                    ready.remove(c)
                    train_here(c)
                    done_with(c)
                if copies:
                    continue
                ready.sort(key=lambda c: -costs[c.hash])
                while ready and len(running) < workers:
                    c = ready.pop(0)
                    running[pool.submit(_train_in_worker, c)] = c
                if not running:  # a fine-tune whose base is not in this list and not cached: checked above
                    raise RuntimeError(f"cannot schedule {', '.join(c.name for c in held)}")
                finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished_now:
                    c = running.pop(fut)
                    fut.result()
                    done_with(c)
    finally:
        bar.close()
    return trained


def load_or_train_many(configs, workers: int | None = None, progress: bool = True):
    """``load_or_train`` for several configs, training the missing ones in parallel on CPU
    (:func:`train_missing`).

    Args:
        configs: a list of :class:`TrainConfig` (and :class:`~reprodiff.controls.VAEConfig`, so a
            chapter's VAEs share its pool), or a dict name -> config (then a dict name -> model is
            returned, in the same order).
        workers: processes training at once (default ``$REPRODIFF_WORKERS`` or the number of CPU
            cores); each trains one model single-threaded.

    Returns: the trained models, like :func:`load_or_train` (on a GPU when there is one; VAEs on the
    CPU), in the order given.
    """
    named = isinstance(configs, dict)
    cfgs = list(configs.values()) if named else list(configs)
    train_missing(cfgs, workers, progress)
    models = [c.load_cached() for c in cfgs]
    return dict(zip(configs, models)) if named else models


def training_step_ms(backbone: str = "unet-xs", batch_size: int = 64, steps: int = 10, repeats: int = 2) -> float:
    """Milliseconds per training step of ``backbone`` on 8x8 digits: forward, backward and fused AdamW,
    single-threaded with denormals flushed, as :func:`train` runs on CPU; the best of ``repeats``
    blocks of ``steps`` steps after 3 warm-up steps. A few seconds; the machine's speed in one number
    (the book's machines measured 35-95 ms for UNet-XS at batch 64: benchmarks/README.md)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(TrainConfig(backbone=backbone), (1, 8, 8), 10)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        g = torch.Generator().manual_seed(0)
        y = torch.randn(batch_size, 1, 8, 8)

        def step() -> None:
            sigma, noise = draw_noise(model.objective, y.shape, g)
            loss = denoising_loss(model, model.objective, y, sigma, noise, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        with flush_denormal(), cpu_threads(1):
            for _ in range(3):
                step()
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                best = min(best, time.perf_counter() - t0)
    return 1000 * best / steps
