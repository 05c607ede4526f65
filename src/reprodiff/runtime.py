"""CPU runtime settings and named seed derivations, in one place.

Training, sampling and the VAE control all need the same two CPU settings (flush denormals to
zero; one intra-op thread while training) and derive several independent random streams from one
user-facing seed. Both live here so every caller agrees on them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["flush_denormal", "denormals_flushed", "cpu_threads", "eval_mode", "derive_seed", "SEED_PURPOSES",
           "default_device"]


def default_device() -> torch.device:
    """Where the book's trained networks run: the first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

def denormals_flushed() -> bool:
    """Whether this thread currently flushes denormal floats to zero (probed: torch cannot report it)."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # a float32 denormal
    return bool((tiny * 1.0).item() == 0.0)


@contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero inside the block (10-40x slowdowns on CPU otherwise).

    The previous setting is probed on entry and restored on exit, so nested blocks and callers that
    switched flushing on themselves keep their state. The setting acts on the calling thread only,
    which is why CPU training runs single-threaded (see :func:`cpu_threads`).
    """
    previous = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: unchanged), restoring the count afterwards.

    Training on CPU is single-threaded on purpose. These models are too small to gain much from
    intra-op threads, and torch's worker threads do not honour flush-to-zero: denormal numbers
    made epsilon- and v-prediction training up to 10x slower with 2 threads (numbers in the
    README). :func:`reprodiff.training.load_or_train_many` keeps every core busy with one model
    each instead.
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


@contextmanager
def eval_mode(denoiser) -> Iterator[object]:
    """Run the block with ``denoiser`` in eval mode (when it has one) and give every submodule back
    the train/eval mode it came in with, whatever happens inside. Yields the denoiser."""
    modes = [(m, m.training) for m in denoiser.modules()] if isinstance(denoiser, torch.nn.Module) else []
    try:
        yield denoiser.eval() if hasattr(denoiser, "eval") else denoiser
    finally:
        for module, training in modes:
            module.training = training


#: every random stream derived from a user-facing seed: purpose -> (multiplier, offset, index stride).
#: ``derive_seed(base, purpose, index) = base * multiplier + offset + index * stride``. The numbers
#: are part of what a config trains into (changing one changes trained weights or data);
#: the test suite checks that, within one purpose, the streams of small seeds never collide (the
#: injected noise of seed k is never the initial noise of another seed, and so on).
SEED_PURPOSES: dict[str, tuple[int, int, int]] = {
    # training: which images, sigmas and noise each step draws (index: accelerate process)
    "train-batches": (7919, 1, 104_729),
    # sampling: noise stream `index` for seed `base` (0 = initial noise, 1 + k = injected noise)
    "sample-noise": (1, 0, 1_000_003_489),
    # data: the permutation that picks held-out images
    "holdout": (1, 10_007, 0),
    # MoLRG: block `index` of samples drawn with seed `base`
    "molrg-block": (1_000_003, 0, 1),
    # VAE control: minibatches and reparameterisation noise
    "vae-batches": (1, 1, 0),
    # inverse problems: the measurement noise of image `base`
    "measurement-noise": (1, 20_011, 0),
}


def derive_seed(base: int, purpose: str, index: int = 0) -> int:
    """The seed of an independent random stream derived from ``base`` (see :data:`SEED_PURPOSES`)."""
    try:
        mult, offset, stride = SEED_PURPOSES[purpose]
    except KeyError:
        raise ValueError(f"unknown seed purpose {purpose!r}; choose one of {', '.join(SEED_PURPOSES)}") from None
    return int(base) * mult + offset + int(index) * stride
