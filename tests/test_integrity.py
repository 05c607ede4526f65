"""Nothing silent in the cache (issue 30): a damaged resumable state is discarded, not resumed from;
a fine-tune is bound to its base's weights, not only its base's config; a read-only cache fails
before training; a waiting process says so; leftovers of crashed writers are cleaned; an absurd
batch size is refused before anything is written.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import reprodiff.training as training
from reprodiff import cache
from reprodiff.cache import (MODEL_JSON, STATE_FILE, CheckpointError, cache_root, entry_lock, read_state,
                             write_model, write_state)
from reprodiff.training import TrainConfig, checkpoint_dir, load_model, load_or_train, train

SMALL = dict(backbone="unet-xs", steps=24, batch_size=8, n_train=64, checkpoint_every=6)
BASE = TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=64, holdout=32, classes=(0, 1, 2, 3, 4))


def _tuned(**kw) -> TrainConfig:
    return replace(BASE, **{"base": BASE, "classes": (5, 6), "n_train": None, "steps": 4, **kw})


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


# --- 1: the resumable state is checksummed -----------------------------------------------------

def test_a_damaged_resumable_state_is_discarded_and_training_ends_bitwise(crash_after_first_state):
    cfg = TrainConfig(**{**SMALL, "steps": 12, "checkpoint_every": 4})
    reference = train(cfg, progress=False)
    expected, losses = _weights(reference), reference.info["losses"]
    shutil.rmtree(checkpoint_dir(cfg))

    crash_after_first_state(cfg)
    state = checkpoint_dir(cfg) / STATE_FILE
    data = bytearray(state.read_bytes())
    middle = len(data) // 2  # tensor data, past the header
    for i in range(middle, middle + 1000):
        data[i] ^= 0xFF
    state.write_bytes(bytes(data))

    with pytest.warns(RuntimeWarning, match=f"{state}.*damaged.*starts again from step 0"):
        resumed = train(cfg, progress=False)
    _assert_bitwise_equal(expected, _weights(resumed))
    assert resumed.info["losses"] == losses
    assert sorted(p.name for p in checkpoint_dir(cfg).iterdir()) == ["model.json", "model.safetensors"]


def test_a_state_without_a_checksum_is_discarded_with_a_warning(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "entry"
    folder.mkdir()
    meta = dict(hash="abc", config={}, step=3, losses=[], running=None, seconds=0.0)
    write_state(folder, {"rng": torch.zeros(4, dtype=torch.uint8)}, meta)
    got_meta, tensors = read_state(folder, "abc", {})  # a state as written reads back
    assert got_meta["step"] == 3 and torch.equal(tensors["rng"], torch.zeros(4, dtype=torch.uint8))
    # as an older version wrote it: the same header, no digest
    save_file({"rng": torch.zeros(4, dtype=torch.uint8)}, str(folder / STATE_FILE),
              metadata={"meta": json.dumps(meta, sort_keys=True)})
    with pytest.warns(RuntimeWarning, match=f"{folder / STATE_FILE} carries no checksum"):
        assert read_state(folder, "abc", {}) is None
    # an edited header (a forged step) is damage too
    write_state(folder, {"rng": torch.zeros(4, dtype=torch.uint8)}, meta)
    raw = (folder / STATE_FILE).read_bytes().replace(b'\\"step\\": 3', b'\\"step\\": 4')
    assert b'\\"step\\": 4' in raw
    (folder / STATE_FILE).write_bytes(raw)
    with pytest.warns(RuntimeWarning, match="is damaged"):
        assert read_state(folder, "abc", {}) is None


# --- 3: a fine-tune is bound to its base's weights ---------------------------------------------

def _replace_base_with_other_bits() -> None:
    """The base entry rewritten with other weights (valid checksums), as a retraining on another
    machine or torch version leaves it."""
    path = checkpoint_dir(BASE)
    meta = json.loads((path / MODEL_JSON).read_text())
    for key in ("format", "weights_sha256", "meta_sha256"):
        meta.pop(key)
    weights = _weights(load_model(BASE))
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3
    write_model(path, weights, meta)


def test_a_fine_tune_is_bound_to_its_base_weights_not_only_its_config(crash_after_first_state):
    lora, full = _tuned(lora_rank=2), _tuned()
    # the binding lives in the metadata: no config hash changes (pinned from before it existed)
    assert [BASE.hash, full.hash, lora.hash, TrainConfig(**SMALL).hash] == \
        ["233fa66dbdb1", "69eb421f31a2", "94033d4c9fcb", "3ca251a4007e"]
    train(BASE, progress=False)
    base = load_model(BASE)
    trained = {cfg: _weights(train(cfg, progress=False)) for cfg in (lora, full)}
    for cfg in (lora, full):
        recorded = json.loads((checkpoint_dir(cfg) / MODEL_JSON).read_text())
        assert recorded["base_weights_sha256"] == base.info["weights_sha256"]
        assert "base_weights_sha256" not in recorded["config"]

    interrupted = _tuned(seed=1, checkpoint_every=2)
    crash_after_first_state(interrupted)

    _replace_base_with_other_bits()
    # a state trained from the old base is not resumed on top of the new one
    with pytest.warns(RuntimeWarning, match="was trained from other base weights"):
        resumed = train(interrupted, progress=False)
    assert resumed.info["base_weights_sha256"] == load_model(BASE).info["weights_sha256"] != base.info["weights_sha256"]
    for cfg in (lora, full):
        for load in (lambda c: load_model(c), lambda c: load_or_train(c, progress=False)):
            with pytest.raises(CheckpointError, match="was fine-tuned from base weights with SHA-256") as err:
                load(cfg)
            assert f"Delete {checkpoint_dir(cfg)} to retrain" in str(err.value)

    # fine-tunes cached before the digest was recorded load as before (their metadata rewritten without it)
    for cfg in (lora, full):
        path = checkpoint_dir(cfg)
        meta = json.loads((path / MODEL_JSON).read_text())
        for key in ("format", "weights_sha256", "meta_sha256", "base_weights_sha256"):
            meta.pop(key)
        from safetensors.torch import load_file
        write_model(path, load_file(str(path / "model.safetensors")), meta)
        load_model(cfg)
    # deleting the fine-tune retrains it from the base now cached
    shutil.rmtree(checkpoint_dir(full))
    retrained = train(full, progress=False)
    assert not all(torch.equal(a, retrained.state_dict()[k]) for k, a in trained[full].items())


# --- 6: read-only caches fail before training; a waiting process says so -----------------------

READ_ONLY_CHILD = """
import sys
import reprodiff.training as training
real = training._train_locked
def logged(*args, **kwargs):
    print("TRAINING STARTED", flush=True)
    return real(*args, **kwargs)
training._train_locked = logged
try:
    training.load_or_train(training.TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=64), progress=False)
except PermissionError as exc:
    print("PermissionError:", exc)
    sys.exit(3)
"""


def test_a_read_only_cache_with_the_entry_and_its_lock_fails_before_training(tmp_path):
    ro = tmp_path / "ro"
    entry = ro / "models" / f"{TrainConfig(backbone='unet-xs', steps=6, batch_size=8, n_train=64).name}-" \
                            f"{TrainConfig(backbone='unet-xs', steps=6, batch_size=8, n_train=64).hash}"
    entry.mkdir(parents=True)  # what an earlier (failed) attempt leaves: the folder and its lock
    Path(str(entry) + ".lock").touch()
    # the folders are read-only; the lock file can still be locked (so the old code got past the lock)
    Path(str(entry) + ".lock").chmod(0o666)
    for p in (ro, ro / "models", entry):
        p.chmod(0o555)
    cmd = [sys.executable, "-c", READ_ONLY_CHILD]
    if os.geteuid() == 0:  # root ignores permission bits: run the child without that capability
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make the cache read-only")
        cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    proc = subprocess.run(cmd, env={**os.environ, "REPRODIFF_CACHE": str(ro)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "TRAINING STARTED" not in proc.stdout
    assert "not writable" in proc.stdout and "REPRODIFF_CACHE" in proc.stdout
    assert list(entry.iterdir()) == []


def test_a_process_waiting_for_the_lock_says_so_once(capsys):
    path = cache_root() / "models" / "some-model-abc"
    path.parent.mkdir(parents=True)
    holder = open(str(path) + ".lock", "a")  # another process's lock (flock is per open file)
    fcntl.flock(holder, fcntl.LOCK_EX)
    entered = threading.Event()

    def waiter():
        with entry_lock(path):
            entered.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    assert not entered.is_set()
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    thread.join(10)
    assert entered.is_set()
    err = capsys.readouterr().err
    assert err.count("waiting for another process training some-model-abc") == 1, err


# --- 7: leftovers of crashed writers ------------------------------------------------------------

def test_a_state_left_in_a_finished_entry_is_removed(monkeypatch):
    cfg = TrainConfig(**{**SMALL, "steps": 6, "checkpoint_every": 3})
    real = Path.unlink

    def crash(self, *args, **kwargs):  # killed after the final save, before the state is removed
        if self.name == STATE_FILE:
            raise SystemExit("simulated crash")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(SystemExit):
        train(cfg, progress=False)
    monkeypatch.setattr(Path, "unlink", real)
    path = checkpoint_dir(cfg)
    assert (path / STATE_FILE).exists() and (path / MODEL_JSON).exists()
    load_or_train(cfg, progress=False)  # loading the finished entry removes it
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]

    # and opening the cache in a new process (here: forgetting that this one has) removes it too
    write_state(path, {"x": torch.zeros(1)}, {})
    monkeypatch.setattr(cache, "_swept", set())
    cache.read_samples("ab" * 32, (1, 1, 8, 8))
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]


def test_stale_temporary_files_anywhere_in_the_cache_are_cleaned():
    root = cache_root()
    old = time.time() - 2 * 3600
    stale = [root / "samples" / "5c" / ".5c48e0.safetensors.vmixkmlw.tmp",  # a killed sample-cache write
             root / "models" / "m-abc" / ".state.safetensors.x1.tmp",
             root / "vae" / "v-abc" / ".model.json.x2.tmp"]
    live = root / "samples" / "5c" / ".5c48e1.safetensors.qwerty.tmp"  # a writer at work right now
    for f in (*stale, live):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x" * 100)
    for f in stale:
        os.utime(f, (old, old))
    kept = root / "samples" / "5c" / "5c48e2.safetensors"
    kept.write_bytes(b"not a tmp")
    assert cache.read_samples("5c48e0" + "0" * 58, (1, 1, 8, 8)) is None  # the sample cache is used
    assert not any(f.exists() for f in stale)
    assert live.exists() and kept.exists()


# --- 8: absurd batch sizes ----------------------------------------------------------------------

def test_an_absurd_batch_size_is_refused_before_anything_is_written():
    with pytest.raises(ValueError, match=r"batch_size 1,000,000,000 is too large \(at most 65,536"):
        TrainConfig(**{**SMALL, "batch_size": 10**9})
    assert TrainConfig(**{**SMALL, "batch_size": 4096}).batch_size == 4096  # larger than n_train is fine
    assert not cache_root().exists()


def test_a_training_that_fails_before_its_first_state_leaves_no_entry(monkeypatch):
    cfg = TrainConfig(**{**SMALL, "steps": 6})

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 256000000000 bytes.")

    monkeypatch.setattr(training, "_train_locked", out_of_memory)
    with pytest.raises(RuntimeError, match="not enough memory"):
        train(cfg, progress=False)
    assert not checkpoint_dir(cfg).exists()
