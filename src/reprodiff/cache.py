"""Every on-disk convention of the package: where the cache lives, how entries are named, locked,
written and read back.

The cache holds one folder per entry, ``<root>/<kind>/<name>-<digest>/`` (``kind`` is ``models``,
``vae`` or ``sscd``), named by a content hash of the config that produced it, so chapters share
what they trained; sample sets are single files under ``samples/``. What it promises:

* **Atomic files.** Every file is written to a unique temporary name in the same folder and
  renamed into place, so a crash never leaves a half-written file under a real name, and two
  writers never share a temporary file. Temporaries left by a killed process are removed the next
  time the entry is trained.
* **Checked reads.** A finished model is ``model.safetensors`` + ``model.json``. The JSON records
  the SHA-256 of the weights and of its own content, so flipped bytes and hand edits are detected
  and raise :class:`CheckpointError` (with the folder to delete) instead of being trusted.
* **One-file resumable state.** ``state.safetensors`` carries the tensors *and* the step counter
  (in the safetensors header), so the two can never disagree after a crash, and a SHA-256 of both:
  a damaged state is discarded with a warning (training starts again), never resumed from.
* **One writer per entry.** :func:`entry_lock` is an inter-process lock: two processes asking for
  the same model train it once. It checks that the entry can be written before any training.
* **No leftovers.** The first time a process uses a cache, it removes temporary files older than
  an hour anywhere in it (a killed writer's, in entries and in ``samples/`` alike) and resumable
  states left in finished entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["CACHE_FORMAT", "CheckpointError", "cache_root", "config_hash", "entry_dir", "entry_lock", "is_cached",
           "clean_temporaries", "sweep_cache", "atomic_write_bytes", "atomic_write_json", "atomic_save_safetensors",
           "read_json", "write_model", "read_model", "read_meta", "write_state", "read_state",
           "MODEL_JSON", "MODEL_WEIGHTS", "STATE_FILE", "raw_bytes", "sample_cache_enabled", "samples_path",
           "read_samples", "write_samples"]

#: bump when a change to the code would change what a given config trains into, or the file format.
#: 2: CPU training became single-threaded (other bits than 2 threads);
#: 3: checksummed model.json, one-file resumable state, checkpoint_every left out of the hash;
#: 4: fused AdamW (the same config trains into other float bits).
CACHE_FORMAT = 4

MODEL_JSON, MODEL_WEIGHTS, STATE_FILE = "model.json", "model.safetensors", "state.safetensors"
_TMP_SUFFIX = ".tmp"
#: a temporary file this old belongs to a killed writer (a live one renames it within seconds)
_STALE_SECONDS = 3600.0


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, incomplete, or belongs to a different config."""


def cache_root() -> Path:
    """The cache folder: ``$REPRODIFF_CACHE`` or ``~/.cache/reprodiff``.

    Raises ``ValueError`` when ``REPRODIFF_CACHE`` is set but empty (it would otherwise mean the
    current directory, and models would land wherever a notebook happens to run).
    """
    value = os.environ.get("REPRODIFF_CACHE")
    if value is None:
        return Path.home() / ".cache" / "reprodiff"
    if not value.strip():
        raise ValueError("REPRODIFF_CACHE is set but empty: unset it (default ~/.cache/reprodiff) or name a folder")
    return Path(value).expanduser()


def config_hash(fields: dict[str, Any]) -> str:
    """12 hex digits naming a config's cache entry: a SHA-256 of its JSON ``fields`` (keys sorted) and
    :data:`CACHE_FORMAT`, stable across runs and machines."""
    payload = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def entry_dir(kind: str, name: str, digest: str) -> Path:
    """The folder of one cache entry: ``<root>/<kind>/<name>-<digest>``."""
    return cache_root() / kind / f"{name}-{digest}"


def is_cached(path: Path) -> bool:
    """Whether ``path`` holds a finished model (its metadata is written last, so it marks completion)."""
    return (Path(path) / MODEL_JSON).exists()


def _writable_error(path: Path, exc: OSError) -> PermissionError:
    return PermissionError(f"the model cache is not writable at {path} ({exc.strerror or exc}); "
                           "set REPRODIFF_CACHE to a writable folder")


def _check_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``: ``OSError`` when it cannot be written (a
    folder that exists already says nothing about that)."""
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=_TMP_SUFFIX)
    os.close(fd)
    os.unlink(probe)


@contextmanager
def entry_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on the entry ``path`` (a sibling ``<entry>.lock`` file),
    creating the entry's folder once the lock is held.

    Waits for another process holding it, saying so once on stderr. Raises ``PermissionError``
    with a clear message, before any work, when the cache cannot be written (also when the folder
    and its lock exist already, as a failed earlier attempt leaves them).
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    sweep_cache()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"waiting for another process training {path.name} (it holds {lock.lock_file}) ...",
                  file=sys.stderr, flush=True)
            lock.acquire()
    except OSError as exc:
        raise _writable_error(path.parent, exc) from exc
    try:
        path.mkdir(exist_ok=True)
        _check_writable(path)
    except OSError as exc:
        lock.release()
        raise _writable_error(path, exc) from exc
    try:
        yield
    finally:
        lock.release()


def clean_temporaries(path: Path, older_than: float | None = None) -> list[Path]:
    """Remove temporary files a killed writer left under ``path``; returns what was removed.

    With ``older_than=None``, every one: call it so only while holding the entry's :func:`entry_lock`,
    so no live writer's temporary file is touched. Otherwise only those not modified for
    ``older_than`` seconds (safe without a lock). Files that cannot be removed (a read-only cache)
    are left.
    """
    removed = []
    if Path(path).is_dir():
        now = time.time()
        for f in Path(path).rglob(f"*{_TMP_SUFFIX}"):  # the entry and its snapshots
            try:
                if not f.is_file() or (older_than is not None and now - f.stat().st_mtime < older_than):
                    continue
                f.unlink(missing_ok=True)
            except OSError:
                continue
            removed.append(f)
    return removed


def _drop_finished_state(path: Path) -> None:
    """Remove a resumable state left in the finished cache entry ``path`` (a crash between writing
    the model and removing it): nothing resumes a finished model. Folders outside the cache are
    left alone."""
    try:
        if is_cached(path) and Path(path).resolve().is_relative_to(cache_root().resolve()):
            (Path(path) / STATE_FILE).unlink(missing_ok=True)
    except (OSError, ValueError):  # a read-only cache; REPRODIFF_CACHE set but empty
        pass


_swept: set[str] = set()


def sweep_cache() -> None:
    """Once per process and cache root: remove what killed or crashed writers left anywhere in the
    cache (temporary files older than an hour, resumable states in finished entries).

    Called by :func:`entry_lock`, :func:`read_model` and the sample cache; creates nothing.
    """
    try:
        root = cache_root()
    except ValueError:  # REPRODIFF_CACHE set but empty: whoever needs the cache says so
        return
    if str(root) in _swept:
        return
    _swept.add(str(root))
    if not root.is_dir():
        return
    clean_temporaries(root, older_than=_STALE_SECONDS)
    for state in root.glob(f"*/*/{STATE_FILE}"):
        _drop_finished_state(state.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(obj: dict, path: Path) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def _tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path,
                            metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, _tensor_bytes(tensors, metadata))


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is unreadable ({exc}); delete {path.parent} to retrain")


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(Path(path).read_text())
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(obj, dict):
        raise _unreadable(path, ValueError(f"expected a JSON object, found {type(obj).__name__}"))
    return obj


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()


def check_config(meta: dict, digest: str, config: dict, path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``meta`` was written for the config ``digest``/``config``."""
    stored = meta.get("config")
    if meta.get("hash") != digest:
        raise CheckpointError(f"checkpoint in {path} was written for a different config (hash "
                              f"{meta.get('hash')} != {digest}); it will not be used. Delete the directory to retrain.")
    if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in config.items()):
        changed = sorted(k for k, v in config.items() if not isinstance(stored, dict) or stored.get(k) != v)
        shown = ", ".join(f"{k}: {stored.get(k) if isinstance(stored, dict) else None!r} on disk, {config[k]!r} asked"
                          for k in changed[:4])
        raise CheckpointError(f"checkpoint in {path} carries the right hash but another config ({shown}); "
                              "it will not be used. Delete the directory to retrain.")


def write_model(path: Path, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a finished model into the folder ``path`` (created if needed): weights first, then the
    checksummed metadata (which marks completion)."""
    data = _tensor_bytes(weights)
    Path(path).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path) / MODEL_WEIGHTS, data)
    meta = {**meta, "format": CACHE_FORMAT, "weights_sha256": _digest(data)}
    meta["meta_sha256"] = _digest(_canonical(meta))
    atomic_write_json(meta, Path(path) / MODEL_JSON)


def read_model(path: Path, digest: str, config: dict) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a finished model: ``(meta, weights)``.

    Raises ``FileNotFoundError`` when there is none, :class:`CheckpointError` when it is corrupt,
    edited, or belongs to another config.
    """
    from safetensors.torch import load

    path = Path(path)
    weights_file = path / MODEL_WEIGHTS
    meta = read_meta(path, digest, config)
    data = weights_file.read_bytes()
    if meta.get("weights_sha256") != _digest(data):
        raise CheckpointError(f"{weights_file} is corrupt (its SHA-256 differs from the one recorded when it was "
                              f"written); delete {path} to retrain")
    try:
        weights = load(data)
    except Exception as exc:
        raise _unreadable(weights_file, exc) from exc
    sweep_cache()
    _drop_finished_state(path)
    return meta, weights


def read_meta(path: Path, digest: str, config: dict) -> dict[str, Any]:
    """The verified ``model.json`` of the finished model in ``path``, without reading its weights
    (its ``weights_sha256`` names them). Raises as :func:`read_model` does."""
    path = Path(path)
    meta_file, weights_file = path / MODEL_JSON, path / MODEL_WEIGHTS
    if not meta_file.exists():
        raise FileNotFoundError(f"no trained model in {path}")
    if not weights_file.exists():
        raise CheckpointError(f"{path} has {MODEL_JSON} but no {MODEL_WEIGHTS}; delete {path} to retrain")
    meta = read_json(meta_file)
    claimed = meta.pop("meta_sha256", None)
    if claimed != _digest(_canonical(meta)):
        raise CheckpointError(f"{meta_file} was edited or is corrupt (its checksum does not match); "
                              f"delete {path} to retrain")
    check_config(meta, digest, config, path)
    return meta


def _state_digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """SHA-256 of a state's metadata (as stored) and of every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(raw_bytes(t))
    return h.hexdigest()


def write_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a resumable training state as ONE file: tensors, with ``meta`` (JSON) and the SHA-256 of
    both in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_json = json.dumps({**meta, "format": CACHE_FORMAT}, sort_keys=True)
    atomic_save_safetensors(tensors, Path(path) / STATE_FILE,
                            metadata={"meta": meta_json, "sha256": _state_digest(tensors, meta_json)})


def read_state(path: Path, digest: str, config: dict) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The resumable state in ``path`` as ``(meta, tensors)``, ``None`` if there is none.

    A state whose SHA-256 does not match its contents (flipped bytes), or that carries none (written
    before states were checksummed), is damaged: a warning names the file and ``None`` comes back,
    so training starts again from step 0 and overwrites it at its next checkpoint. Raises
    :class:`CheckpointError` when the file is unreadable or written for another config; the caller
    checks the contents (:class:`CheckpointError` too).
    """
    from safetensors import safe_open

    file = Path(path) / STATE_FILE
    if not file.exists():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            header = f.metadata() or {}
            meta_json = header["meta"]
            meta = json.loads(meta_json)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise _unreadable(file, exc) from exc
    if not isinstance(meta, dict):
        raise _unreadable(file, ValueError("its header holds no state metadata"))
    claimed = header.get("sha256")
    if claimed != _state_digest(tensors, meta_json):
        why = "carries no checksum (written by an older version)" if claimed is None else \
            "is damaged (its SHA-256 differs from the one recorded when it was written)"
        warnings.warn(f"the resumable state {file} {why}; it is discarded and training starts again from step 0",
                      RuntimeWarning, stacklevel=2)
        return None
    check_config(meta, digest, config, Path(path))
    return meta, tensors


# --- samples -----------------------------------------------------------------------------------
# Deterministic sampling of a trained network is a pure function of its weights, the noise (seeds),
# the sampler and the batch (see reprodiff.sampling). Chapters sample the same cached models from
# the same seeds again (chapter 9 draws chapter 2's models, chapter 4 chapter 3's sweep), so
# sampling.generate keeps what it drew here, keyed by a digest of all of that, and serves it bit for
# bit. Entries are single files; a damaged one is recomputed, never trusted.

SAMPLES_KIND = "samples"


def sample_cache_enabled() -> bool:
    """Whether :func:`reprodiff.sampling.generate` reuses samples (``REPRODIFF_SAMPLE_CACHE=0`` turns it off)."""
    return os.environ.get("REPRODIFF_SAMPLE_CACHE", "1").strip() not in ("0", "false", "no", "off")


def samples_path(key: str) -> Path:
    """The file of one cached sample set: ``<root>/samples/<key[:2]>/<key>.safetensors``."""
    return cache_root() / SAMPLES_KIND / key[:2] / f"{key}.safetensors"


def raw_bytes(t: torch.Tensor) -> bytes:
    """The bytes of a tensor's elements, in order (what a digest of its exact values hashes)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def read_samples(key: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The images cached under ``key`` when they are there, readable, check out and have ``shape``;
    ``None`` otherwise (the caller samples again and overwrites the entry)."""
    sweep_cache()
    path = samples_path(key)
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            expected = f.metadata().get("sha256")
            images = f.get_tensor("images")
    except Exception:
        return None
    if expected is None or tuple(images.shape) != tuple(shape) or _digest(raw_bytes(images)) != expected:
        return None
    return images


def write_samples(key: str, images: torch.Tensor) -> None:
    """Cache ``images`` under ``key`` (atomically; a cache that cannot be written is skipped quietly,
    since the samples are in hand and only the reuse is lost)."""
    sweep_cache()
    path = samples_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors({"images": images}, path, metadata={"sha256": _digest(raw_bytes(images))})
    except OSError:
        pass
