"""The command line checks its output paths and seed ranges before any work, reports a failed write in one
line (exit 2), says when another process trained the model, and documents every option (issue 30)."""
import contextlib
import os
import shutil
import time
from types import SimpleNamespace

import pytest

from reprodiff.cache import cache_root
from reprodiff.cli import UserError, _parser, main, parse_seeds

COMMON = ["--backbone", "unet-xs", "--steps", "3", "--batch-size", "8", "--n-train", "32"]


def _one_line_error(capsys, message: str, after_work: bool = False) -> str:
    """The error line; nothing else on stderr unless work had started (a progress bar)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("reprodiff: error: ")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and (after_work or err == lines[0] + "\n"), err
    return lines[0]


def _pipeline(folder, seed=0):
    from reprodiff.smoke import write_ddpm_pipeline

    return write_ddpm_pipeline(folder, seed=seed, size=8, channels=1)


# item 5: output paths and seed ranges, checked before any work


def test_sample_out_naming_an_existing_folder_fails_before_any_work(no_work, tmp_path, capsys):
    (tmp_path / "x.safetensors").mkdir()
    assert main(["sample", *COMMON, "--seeds", "0-7", "--out", "x.safetensors"]) == 2
    _one_line_error(capsys, "x.safetensors is a folder")
    assert not cache_root().exists()


def test_a_full_disk_is_refused_before_any_work(no_work, tmp_path, capsys, monkeypatch):
    import reprodiff.cli as cli

    def model(text):  # what compare finds at a path, checked but not loaded
        def load(device):
            raise AssertionError("the CLI loaded a model before rejecting its input")
        return cli._Model(text, (1, 8, 8), load, "test model")

    monkeypatch.setattr(cli, "_compare_model", model)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - 5000, free=5000))
    assert main(["sample", *COMMON, "--seeds", "0-255", "--out", "out/x.safetensors"]) == 2
    _one_line_error(capsys, "5.0 KB free, the output needs about")
    assert main(["compare", "./a", "./b", "--seeds", "0-9", "--out", "rp"]) == 2
    _one_line_error(capsys, "5.0 KB free, the output needs about")
    assert not cache_root().exists()


def test_an_unwritable_out_folder_is_refused_before_any_work(no_work, tmp_path, capsys, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs.get("dir")))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)  # what the write probe meets in a read-only folder
    assert main(["sample", *COMMON, "--seeds", "0-7", "--out", "ro/x.safetensors"]) == 2
    _one_line_error(capsys, "--out: cannot write in ro (Permission denied)")
    assert not cache_root().exists()


@pytest.mark.parametrize("seeds, message", [
    ("0-18446744073709551616", "goes past the largest seed id"),  # was an OverflowError traceback
    ("9223372036854775808", "goes past the largest seed id"),  # does not fit the int64 seed tensor
    ("0-1000000000000", "one run samples at most 10,000,000"),  # was a MemoryError traceback after 62 s
    ("0-5000000,5000001-10000001", "brings the count to 10,000,002 seeds"),
])
def test_huge_seed_ranges_are_one_line_before_any_work(no_work, seeds, message, capsys):
    t0 = time.perf_counter()
    assert main(["sample", *COMMON, "--seeds", seeds, "--out", "x.safetensors"]) == 2
    _one_line_error(capsys, message)
    assert main(["compare", "./a", "./b", "--seeds", seeds]) == 2
    _one_line_error(capsys, message)
    assert time.perf_counter() - t0 < 10
    assert not cache_root().exists()


def test_samples_that_would_not_fit_in_memory_are_refused_before_any_work(no_work, capsys, monkeypatch):
    import reprodiff.cli as cli

    monkeypatch.setattr(cli, "_physical_memory", lambda: 100_000, raising=False)  # 256 digits: 197 KB
    assert main(["sample", *COMMON, "--seeds", "0-255", "--out", "x.safetensors"]) == 2
    _one_line_error(capsys, "256 samples of 1x8x8 images need about 196.6 KB of memory, more than this machine's")
    assert not cache_root().exists()


@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """Writes past ``nbytes`` fail with a real OSError (EFBIG), as writes to a full disk fail with ENOSPC."""
    import resource
    import signal

    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_failed_write_of_the_samples_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPRODIFF_SAMPLE_CACHE", "0")
    assert main(["train", *COMMON]) == 0
    capsys.readouterr()
    out = tmp_path / "x.safetensors"  # 16 samples: 4.3 KB
    with _file_size_limit(2048):
        code = main(["sample", *COMMON, "--seeds", "0-15", "--sampler", "euler", "--sampler-steps", "2",
                     "--out", str(out)])
    assert code == 2
    _one_line_error(capsys, f"reprodiff: error: cannot write {out} (File too large)", after_work=True)
    assert not out.exists(), "a half-written sample file was left behind"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders (see the test above it)")
def test_a_read_only_out_folder_is_refused_before_any_work(no_work, tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        assert main(["sample", *COMMON, "--seeds", "0-7", "--out", "ro/x.safetensors"]) == 2
    finally:
        (tmp_path / "ro").chmod(0o755)
    _one_line_error(capsys, "--out: cannot write in ro (Permission denied)")


def test_a_full_disk_while_training_is_one_line_and_exit_2(capsys, monkeypatch):
    import reprodiff.training as training

    def full(path, *args, **kwargs):
        raise OSError(28, "No space left on device")  # as atomic_write_bytes raises it: no file name

    monkeypatch.setattr(training, "write_model", full)
    assert main(["train", *COMMON]) == 2
    line = _one_line_error(capsys, "training or loading unet-xs-edm-digits32-s0 in ", after_work=True)
    assert line.endswith("unet-xs-edm-digits32-s0-81579ed68ecc: No space left on device")


# item 8 (CLI): the duplicate check, --tflops, and "trained:" for a model another process trained


def test_repeated_seed_check_is_linear():
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"seed ids must be unique, repeated: \[5, 7\]"):
        parse_seeds("0-19999,5,7")  # the old check took 7 s here (O(N^2))
    assert time.perf_counter() - t0 < 1.0
    assert parse_seeds("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]


@pytest.mark.parametrize("tflops", ["inf", "-inf", "nan", "0", "-1"])
def test_estimate_needs_a_finite_positive_tflops(tflops, capsys):
    assert main(["estimate", f"--tflops={tflops}"]) == 2
    _one_line_error(capsys, "--tflops must be a finite positive number")


def test_train_says_loaded_when_another_process_trained_the_model(tmp_path, capsys, monkeypatch):
    import reprodiff.training as training
    from reprodiff.training import TrainConfig, checkpoint_dir

    assert main(["train", *COMMON]) == 0
    assert capsys.readouterr().out.startswith("trained: ")
    path = checkpoint_dir(TrainConfig(backbone="unet-xs", steps=3, batch_size=8, n_train=32))
    finished = tmp_path / "finished"
    shutil.move(path, finished)
    real_lock = training.entry_lock

    @contextlib.contextmanager
    def another_process_finishes_while_this_one_waits(entry):
        shutil.copytree(finished, entry, dirs_exist_ok=True)
        with real_lock(entry):
            yield

    def no_training(*args, **kwargs):
        raise AssertionError("trained a model that another process had finished")

    monkeypatch.setattr(training, "entry_lock", another_process_finishes_while_this_one_waits)
    monkeypatch.setattr(training, "_train_locked", no_training)
    assert main(["train", *COMMON]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loaded (trained by another process): unet-xs-edm-digits32-s0 (3 steps"), out
    assert main(["train", *COMMON]) == 0
    assert capsys.readouterr().out.startswith("already cached: ")


# item 6: help text and choices


def _subcommands():
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


def test_every_option_has_help_and_closed_sets_list_their_choices():
    from reprodiff.backbones import BACKBONES
    from reprodiff.cli import _HELP, _cli_fields
    from reprodiff.data import DATASETS
    from reprodiff.denoisers import OBJECTIVES
    from reprodiff.sampling import SAMPLERS

    assert {f.name for f in _cli_fields()} <= set(_HELP)
    commands = _subcommands()
    for name, parser in commands.items():
        for action in parser._actions:
            text = (action.help or "").strip()
            assert text and not text.startswith("(default"), f"{name} {action.option_strings or action.dest}"

    def help_of(command, option):
        action = next(a for a in commands[command]._actions if option in a.option_strings)
        return action.help, action.choices

    for command in ("train", "sample"):
        for option, names in (("--backbone", BACKBONES), ("--objective", OBJECTIVES),
                              ("--dataset", [*DATASETS, "molrg"])):
            text, _ = help_of(command, option)
            assert all(n in text for n in names), (command, option, text)
    assert all(s in help_of("sample", "--sampler")[0] for s in SAMPLERS)
    assert all(s in help_of("compare", "--sampler")[0] for s, spec in SAMPLERS.items() if not spec.stochastic)
    assert help_of("score", "--descriptor")[1] == help_of("compare", "--descriptor")[1] == ["pixel", "sscd"]
    assert help_of("estimate", "--profile")[1] == ["gpu", "paper"]
    assert help_of("train", "--profile")[1] == ["cpu", "gpu", "paper", "smoke"]
    assert "``" not in _parser().format_help()
