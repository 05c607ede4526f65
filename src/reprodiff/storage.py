"""Checkpoint files: atomic writes (a crash never leaves a half-written file) and checked reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["CheckpointError", "atomic_write_bytes", "atomic_save_safetensors", "atomic_write_json",
           "load_safetensors", "read_json"]


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, incomplete, or belongs to a different config."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def atomic_write_json(obj: dict, path: Path) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({exc}); delete {path.parent} to retrain") from exc


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except Exception as exc:
        raise CheckpointError(f"{path} is unreadable ({exc}); delete {path.parent} to retrain") from exc
