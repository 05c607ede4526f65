"""Multi-process (DDP) training on CPU: two processes reach one process's weights.

``accelerate.debug_launcher`` forks two CPU processes joined by gloo, each running ``train`` as
``accelerate launch`` would. ``batch_size`` is the global batch: both processes draw the same
global batch stream and train on halves of it, and DDP averages the halves' gradients, so the
update is one process's full-batch update up to float rounding (the two half-batch means summed
in another order, then every Adam step amplifies that rounding a little). The weights cannot
match bit for bit; the tolerance below is measured, with margin.

Dropout (``dropout > 0``) cannot match one process at all: its masks come from each process's
global RNG and are drawn per half batch. What is tested for it instead is that an interrupted
2-process run resumes to bitwise the weights of an uninterrupted 2-process run (the state holds
both processes' RNGs), with the Ctrl-C reaching only one of the two processes.
"""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from reprodiff.training import TrainConfig, _shard, checkpoint_dir, load_model, train

# conditional, so the label-dropout draws are sharded too; dropout 0, like every cpu-profile model
EXACT = dict(dataset="digits", n_train=64, holdout=297, backbone="unet-xs", steps=20, batch_size=16,
             conditional=True, checkpoint_every=5)
DROPOUT = dict(EXACT, conditional=False, dropout=0.2, steps=16)
INTERRUPT_AT = 12  # rank 1 alone gets a SIGINT during this step

# measured (torch 2.13 CPU, gloo): after 20 steps 2 processes and 1 differ by at most 1.0e-6 in any
# EMA weight (in one conv tensor whose weights reach 0.06; one Adam step moves a weight by up to the
# learning rate, 4e-4 here, whatever the gradient's size, so a near-zero gradient's rounding shows);
# the logged losses (running means, 6 decimals) agree exactly
WEIGHT_TOL = 1e-5
LOSS_TOL = 1e-5


def _ranks(out: str) -> None:
    """Run in each of the 2 launched processes."""
    import faulthandler

    from accelerate.state import AcceleratorState
    from safetensors.torch import save_file

    import reprodiff.training as training

    faulthandler.dump_traceback_later(150, exit=True)  # a hung collective fails the test, with a traceback

    # forked from a process that has used OpenMP threads: a parallel region here would hang (GNU
    # OpenMP is not fork-safe), so one thread, and OMP_NUM_THREADS set so accelerate keeps it at one;
    # and accelerate's singleton state describes the parent's single process
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    rank = int(torch.distributed.get_rank())

    def run(name: str, overrides: dict) -> None:
        os.environ["REPRODIFF_CACHE"] = f"{out}/{name}"
        model = train(TrainConfig(**overrides), progress=False)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/{name}-rank{rank}.safetensors")
        Path(f"{out}/{name}-rank{rank}.json").write_text(json.dumps(model.info["losses"]))

    try:
        train(TrainConfig(**{**EXACT, "batch_size": 15}), progress=False)
    except ValueError as exc:
        Path(f"{out}/odd-rank{rank}.txt").write_text(str(exc))
    run("exact", EXACT)
    run("dropout", DROPOUT)

    plain_lr = training._lr_at

    def lr_with_ctrl_c(cfg, step):
        if rank == 1 and step == INTERRUPT_AT:
            os.kill(os.getpid(), signal.SIGINT)  # held until the step ends (training._deferred_interrupt)
        return plain_lr(cfg, step)

    training._lr_at = lr_with_ctrl_c
    os.environ["REPRODIFF_CACHE"] = f"{out}/resumed"
    try:
        train(TrainConfig(**DROPOUT), progress=False)
    except KeyboardInterrupt:
        saved = "?"
        if rank == 0:  # the main process wrote the state before raising
            from safetensors import safe_open

            with safe_open(str(training.checkpoint_dir(TrainConfig(**DROPOUT)) / "state.safetensors"), "pt") as f:
                saved = str(json.loads(f.metadata()["meta"])["step"])
        Path(f"{out}/interrupted-rank{rank}.txt").write_text(saved)
    finally:
        training._lr_at = plain_lr
    run("resumed", DROPOUT)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_shards_split_the_global_batch_evenly():
    assert _shard(16, 1, 0) == slice(0, 16)
    assert [_shard(16, 4, p) for p in range(4)] == [slice(0, 4), slice(4, 8), slice(8, 12), slice(12, 16)]
    with pytest.raises(ValueError, match="batch_size 15 is the global batch.*multiple of 2"):
        _shard(15, 2, 0)


def test_two_processes_train_to_one_process_weights(tmp_path, monkeypatch):
    from accelerate import debug_launcher

    # one process first: the forked processes then start with diffusers, sklearn and the data loaded
    cfg = TrainConfig(**EXACT)
    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "single"))
    one = train(cfg, progress=False)
    out = tmp_path / "ddp"
    out.mkdir()
    debug_launcher(_ranks, args=(str(out),), num_processes=2)

    # an uneven global batch is refused in every process, before any training
    for rank in (0, 1):
        assert "must divide evenly among the 2 training processes" in (out / f"odd-rank{rank}.txt").read_text()
    # every process ends with the same weights and the same (global-batch) losses
    for name in ("exact", "dropout", "resumed"):
        a, b = _weights(out / f"{name}-rank0.safetensors"), _weights(out / f"{name}-rank1.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert (out / f"{name}-rank0.json").read_text() == (out / f"{name}-rank1.json").read_text()

    # the main process wrote the model (and removed the resumable state)
    monkeypatch.setenv("REPRODIFF_CACHE", str(out / "exact"))
    assert sorted(p.name for p in checkpoint_dir(cfg).iterdir()) == ["model.json", "model.safetensors"]
    two = load_model(cfg)
    diff = max((p1 - p2).abs().max().item() for p1, p2 in zip(one.state_dict().values(), two.state_dict().values()))
    losses_one, losses_two = one.info["losses"], two.info["losses"]
    assert [s for s, _ in losses_one] == [s for s, _ in losses_two]
    loss_diff = max(abs(a - b) for (_, a), (_, b) in zip(losses_one, losses_two))
    print(f"2 processes vs 1: max |weight difference| {diff:.2e}, max |loss difference| {loss_diff:.2e}")
    assert 0 < diff < WEIGHT_TOL, diff  # 0 would mean the processes did not split the batch
    assert loss_diff < LOSS_TOL, loss_diff

    # a Ctrl-C that reached one process stopped both at the same step, and the state resumed bitwise
    assert (out / "interrupted-rank0.txt").read_text() == str(INTERRUPT_AT + 1)
    assert (out / "interrupted-rank1.txt").exists()
    plain, resumed = _weights(out / "dropout-rank0.safetensors"), _weights(out / "resumed-rank0.safetensors")
    assert all(torch.equal(plain[k], resumed[k]) for k in plain)
    assert (out / "dropout-rank0.json").read_text() == (out / "resumed-rank0.json").read_text()
