"""What the cache and the trainer promise, tried the way things go wrong: killed processes,
Ctrl-C at any moment, crashes, flipped bytes, hand edits, two processes at once, bad configs.

The kill and concurrency tests run real subprocesses (each pays ~4 s of imports on 2 cores).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _reliability_children import _log_trainings, _slow_after_checkpoint

from reprodiff.cache import (CheckpointError, STATE_FILE, atomic_write_bytes, cache_root, read_state,
                             write_state)
from reprodiff.training import TrainConfig, checkpoint_dir, load_model, load_or_train, train

SMALL = dict(backbone="unet-xs", steps=24, batch_size=8, n_train=64, checkpoint_every=6)

# Children are forked from one warm server process that has imported torch, diffusers and
# accelerate once (~15 s of imports on 2 cores, instead of paying them in every child). The server
# itself never computes, so forking it is safe with OpenMP.
_SERVER_PRELOAD = ["reprodiff.training", "accelerate", "diffusers.models.unets.unet_2d", "tqdm.auto",
                   "safetensors.torch", "filelock", "_reliability_children"]


def _ctx():
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_SERVER_PRELOAD)
    return ctx


def _start_server_early() -> None:
    # at collection: the server does its imports while the other test files run
    import multiprocessing.forkserver

    _ctx()
    multiprocessing.forkserver.ensure_running()


_start_server_early()


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_bitwise_equal(a: dict, b: dict) -> None:
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def test_killed_or_interrupted_training_resumes_bitwise(tmp_path):
    """SIGKILL and SIGINT at an arbitrary step, with and without dropout: resuming reaches exactly the
    weights (and loss log) of an uninterrupted run."""
    cases = [(sig, dropout, seed) for seed, sig in enumerate((signal.SIGKILL, signal.SIGINT)) for dropout in (0.0, 0.1)]
    rng = random.Random(0)
    ctx = _ctx()
    runs = []
    for sig, dropout, seed in cases:
        kwargs = {**SMALL, "dropout": dropout, "seed": seed}
        cfg = TrainConfig(**kwargs)
        reference = train(cfg, progress=False)
        runs.append(dict(sig=sig, cfg=cfg, kwargs=kwargs, weights=_weights(reference),
                         losses=reference.info["losses"], marker=tmp_path / f"checkpointed-{cfg.hash}",
                         result=tmp_path / f"result-{cfg.hash}", delay=rng.uniform(0.0, 0.25)))
        shutil.rmtree(checkpoint_dir(cfg))
    for run in runs:
        run["proc"] = ctx.Process(target=_slow_after_checkpoint,
                                  args=(str(cache_root()), run["kwargs"], str(run["marker"]), str(run["result"])))
        run["proc"].start()
    deadline = time.time() + 180
    pending = list(runs)
    while pending:
        for run in list(pending):
            assert run["proc"].is_alive(), f"child ended (exit {run['proc'].exitcode}) before its first checkpoint"
            if run["marker"].exists():
                run.setdefault("seen", time.time())
                if time.time() - run["seen"] >= run["delay"]:  # an arbitrary step after the checkpoint
                    os.kill(run["proc"].pid, run["sig"])
                    pending.remove(run)
        assert time.time() < deadline, "a child never wrote a checkpoint"
        time.sleep(0.005)
    for run in runs:
        cfg = run["cfg"]
        run["proc"].join(120)
        if run["sig"] == signal.SIGKILL:
            assert run["proc"].exitcode == -signal.SIGKILL
        else:
            assert run["proc"].exitcode == 3, "SIGINT did not stop training with KeyboardInterrupt"
            assert "interrupted; its state at step" in run["result"].read_text()
        assert not (checkpoint_dir(cfg) / "model.json").exists()
        meta, _ = read_state(checkpoint_dir(cfg), cfg.hash, cfg.hashed_fields())
        assert 0 < meta["step"] < cfg.steps
        resumed = train(cfg, progress=False)
        _assert_bitwise_equal(run["weights"], _weights(resumed))
        assert resumed.info["steps"] == cfg.steps and resumed.info["losses"] == run["losses"]
        assert sorted(p.name for p in checkpoint_dir(cfg).iterdir()) == ["model.json", "model.safetensors"]


def test_two_processes_asking_for_one_model_train_it_once(tmp_path):
    cfg_kwargs = {**SMALL, "steps": 12}
    log = tmp_path / "trainings.log"
    ctx = _ctx()
    procs = [ctx.Process(target=_log_trainings, args=(str(cache_root()), cfg_kwargs, str(log),
                                                       str(tmp_path / f"ready-{i}"), str(tmp_path)))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text().count("trained") == 1
    model = load_model(TrainConfig(**cfg_kwargs))
    assert model.info["steps"] == 12


def _trained(**overrides) -> TrainConfig:
    cfg = TrainConfig(**{**SMALL, "steps": 6, **overrides})
    train(cfg, progress=False)
    return cfg


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, message", [
    ("flip-bytes", "corrupt"),
    ("truncate", "corrupt"),
    ("edit-shape", "edited or is corrupt"),
    ("edit-steps", "edited or is corrupt"),
    ("json-list", "unreadable"),
    ("json-garbage", "unreadable"),
    ("delete-weights", "no model.safetensors"),
    ("edit-config", "edited or is corrupt"),
])
def test_damaged_models_are_detected_not_trusted(damage, message):
    cfg = _trained()
    path = checkpoint_dir(cfg)
    weights, meta = path / "model.safetensors", path / "model.json"
    if damage == "flip-bytes":
        data = bytearray(weights.read_bytes())
        for i in range(len(data) - 1000, len(data)):
            data[i] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "edit-shape":
        _edit_json(meta, lambda m: m.update(shape=[1, 16, 16]))
    elif damage == "edit-steps":
        _edit_json(meta, lambda m: m.update(steps=7))
    elif damage == "edit-config":
        _edit_json(meta, lambda m: m["config"].update(lr=0.5))
    elif damage == "json-list":
        meta.write_text("[]")
    elif damage == "json-garbage":
        meta.write_text('{"hash": ')
    elif damage == "delete-weights":
        weights.unlink()
    before = sorted((p.name, p.stat().st_size) for p in path.iterdir())
    with pytest.raises(CheckpointError, match=message) as err:
        load_or_train(cfg, progress=False)
    assert f"delete {path}" in str(err.value)
    assert sorted((p.name, p.stat().st_size) for p in path.iterdir()) == before  # nothing was touched


def test_a_checkpoint_for_another_config_names_what_differs():
    cfg = _trained()
    other = TrainConfig(**{**SMALL, "steps": 6, "seed": 5})
    with pytest.raises(CheckpointError, match="different config"):
        load_model(other, path=checkpoint_dir(cfg))


def test_missing_metadata_means_not_trained():
    cfg = _trained()
    (checkpoint_dir(cfg) / "model.json").unlink()
    model = load_or_train(cfg, progress=False)  # retrains
    assert model.info["steps"] == 6


def _state_after_interrupt(cfg: TrainConfig) -> tuple[dict, dict]:
    """Train ``cfg`` until its first checkpoint, stopping there as a crash would."""
    import reprodiff.training as training

    real = training.write_state

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise SystemExit("simulated crash after the first checkpoint")

    training.write_state = crash
    try:
        with pytest.raises(SystemExit):
            train(cfg, progress=False)
    finally:
        training.write_state = real
    return read_state(checkpoint_dir(cfg), cfg.hash, cfg.hashed_fields())


@pytest.mark.parametrize("damage", ["step-ahead-of-optimizer", "negative-step", "step-past-the-end",
                                    "no-rng", "no-global-rng", "missing-ema-tensor", "no-losses", "garbage"])
def test_damaged_resumable_states_raise_checkpoint_errors(damage):
    cfg = TrainConfig(**SMALL)
    meta, tensors = _state_after_interrupt(cfg)
    path = checkpoint_dir(cfg)
    if damage == "garbage":
        (path / STATE_FILE).write_bytes(b"\x00" * 64)
    else:
        if damage == "step-ahead-of-optimizer":
            meta["step"] += 6
        elif damage == "negative-step":
            meta["step"] = -50
        elif damage == "step-past-the-end":
            meta["step"] = 10_000
        elif damage == "no-rng":
            del tensors["rng"]
        elif damage == "no-global-rng":
            del tensors["rng.cpu"]
        elif damage == "missing-ema-tensor":
            del tensors[next(k for k in tensors if k.startswith("ema."))]
        elif damage == "no-losses":
            del meta["losses"]
        meta.pop("format", None)
        write_state(path, tensors, meta)
    with pytest.raises(CheckpointError, match="delete"):
        train(cfg, progress=False)
    assert not (path / "model.json").exists()


def test_temporary_files_never_linger(monkeypatch):
    cfg = TrainConfig(**{**SMALL, "steps": 6})
    path = checkpoint_dir(cfg)
    path.mkdir(parents=True)
    stale = path / ".model.safetensors.abc123.tmp"  # left by a writer killed mid-write
    stale.write_bytes(b"x" * 1000)
    train(cfg, progress=False)
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path / "model.json", b"{}")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]


BAD_CONFIGS = [
    (dict(dropout=1.5), "dropout must be in"),
    (dict(dropout=-0.1), "dropout must be in"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(weight_decay=-1.0), "weight_decay must be"),
    (dict(batch_size=32.0), "batch_size must be an integer"),
    (dict(steps=300.5), "steps must be an integer"),
    (dict(checkpoint_every=0), "checkpoint_every must be"),
    (dict(ema=1.5), "ema must be in"),
    (dict(label_dropout=2.0), "label_dropout must be in"),
    (dict(holdout=-5), "holdout must be"),
    (dict(seed=-1), "non-negative"),
    (dict(n_train=0), "n_train must be positive"),
    (dict(steps=0), "steps and batch_size must be positive"),
    (dict(backbone="resnet"), "unknown backbone"),
    (dict(objective="flow"), "unknown objective"),
    (dict(dataset="imagenet"), "unknown dataset"),
    (dict(conditional="yes"), "conditional must be"),
    (dict(molrg_dim=0), "molrg_classes and molrg_dim"),
]


@pytest.mark.parametrize("overrides, message", BAD_CONFIGS, ids=[next(iter(o)) + "=" + repr(next(iter(o.values())))
                                                                 for o, _ in BAD_CONFIGS])
def test_bad_configs_fail_on_construction(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**SMALL, **overrides})
    assert not cache_root().exists()  # nothing was written


@pytest.mark.parametrize("overrides, message", [
    (dict(n_train=5000), "only 1797 images"),
    (dict(n_train=1797, holdout=1), "only 1796 images"),
    (dict(holdout=1797), "n_holdout=1797 must be in"),
    (dict(dataset="molrg", n_train=None), "MoLRG has unlimited samples"),
])
def test_impossible_training_sets_fail_before_the_cache_is_touched(overrides, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(**{**SMALL, **overrides}), progress=False)
    assert not cache_root().exists()


def test_empty_cache_variable_is_an_error_not_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRODIFF_CACHE", "")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="REPRODIFF_CACHE is set but empty"):
        load_or_train(TrainConfig(**SMALL), progress=False)
    assert list(tmp_path.iterdir()) == []


READ_ONLY_CHILD = """
import sys
from reprodiff.training import TrainConfig, load_or_train
try:
    load_or_train(TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=64), progress=False)
except PermissionError as exc:
    print("PermissionError:", exc)
    sys.exit(3)
"""


def test_a_read_only_cache_fails_before_training(tmp_path):
    ro = tmp_path / "ro"
    (ro / "models").mkdir(parents=True)
    ro.chmod(0o555)
    (ro / "models").chmod(0o555)
    cmd = [sys.executable, "-c", READ_ONLY_CHILD]
    if os.geteuid() == 0:  # root ignores permission bits: run the child without that capability
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make the cache read-only")
        cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "REPRODIFF_CACHE": str(ro)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "not writable" in proc.stdout and "REPRODIFF_CACHE" in proc.stdout
    assert list((ro / "models").iterdir()) == []
    assert time.perf_counter() - started < 60
