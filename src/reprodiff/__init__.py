"""reprodiff: the package behind the book "Reproducibility in Diffusion Models".

Importing it has no side effects: no seeding, no downloads, no matplotlib backend changes. The
public API lives in the submodules (``data``, ``backbones``, ``denoisers``, ``sampling``,
``training``, ``metrics``, ``controls``, ``plots``; ``configs`` holds the experiments' config classes
and ``profiles`` their values per profile; the studies' drivers are in ``experiments``, ``regimes``,
``agreement``, ``inverse`` and ``explore``, run-time estimates in ``estimate``; ``pretrained`` wraps
public diffusers DDPM checkpoints as denoisers; ``cache`` owns the files on disk, ``runtime`` the
CPU settings and seed derivations, ``notebook`` the chapters' helpers); the most used names are
re-exported lazily here.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "data", "subset": "data", "split_holdout": "data", "MoLRG": "data", "ImageData": "data",
    "build_backbone": "backbones", "BACKBONES": "backbones",
    "Precond": "denoisers", "OptimalDenoiser": "denoisers", "GaussianDenoiser": "denoisers",
    "MoLRGDenoiser": "denoisers", "Guided": "denoisers", "OBJECTIVES": "denoisers",
    "noise_for_seeds": "sampling", "karras_sigmas": "sampling", "generate": "sampling", "Samples": "sampling",
    "SAMPLERS": "sampling",
    "TrainConfig": "training", "load_or_train": "training", "train": "training",
    "load_or_train_many": "training",
    "rp_score": "metrics", "gl_score": "metrics", "get_descriptor": "metrics",
    "get_config": "profiles",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    # lazy: `import reprodiff` stays cheap (torch/diffusers load on first use)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'reprodiff' has no attribute {name!r}")
