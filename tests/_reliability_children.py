"""Targets of the child processes of test_reliability.py (a module of their own, so that a child
unpickling its target imports nothing else)."""

import os
import sys
import time
from pathlib import Path


def _slow_after_checkpoint(cache: str, cfg_kwargs: dict, marker: str, result: str) -> None:
    """Train slowly once the first state is written (so a signal lands between checkpoints, at a
    step the parent chooses), announcing that moment through ``marker``."""
    import reprodiff.training as training

    os.environ["REPRODIFF_CACHE"] = cache

    real_write, real_loss = training.write_state, training.denoising_loss

    def write_state(*args, **kwargs):
        real_write(*args, **kwargs)
        Path(marker).touch()

    def slow_loss(*args, **kwargs):
        if Path(marker).exists():
            time.sleep(0.03)
        return real_loss(*args, **kwargs)

    training.write_state, training.denoising_loss = write_state, slow_loss
    try:
        training.train(training.TrainConfig(**cfg_kwargs), progress=False)
    except KeyboardInterrupt as exc:
        Path(result).write_text(str(exc))
        sys.exit(3)


def _log_trainings(cache: str, cfg_kwargs: dict, log: str, ready: str, folder: str) -> None:
    """``load_or_train`` at the same instant as a sibling, logging every real training."""
    import reprodiff.training as training

    os.environ["REPRODIFF_CACHE"] = cache
    real = training._train_locked

    def logged(*args, **kwargs):
        with open(log, "a") as f:
            f.write("trained\n")
        return real(*args, **kwargs)

    training._train_locked = logged
    Path(ready).touch()
    while len(list(Path(folder).glob("ready-*"))) < 2:
        time.sleep(0.001)
    model = training.load_or_train(training.TrainConfig(**cfg_kwargs), progress=False)
    assert model.info["steps"] == cfg_kwargs["steps"]
