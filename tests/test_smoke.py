"""The smoke profile (the gpu configuration at toy scale) and ``scripts/gpu-check --profile smoke``,
which executes every chapter's gpu code path on offline stand-ins."""

import json
import os
import subprocess
import sys
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest
import torch

from reprodiff.configs import Sampling
from reprodiff.profiles import EXPERIMENTS, get_config, profile_models, reference_split
from reprodiff.smoke import prepare, write_sscd_standin
from reprodiff.training import training_data

ROOT = Path(__file__).resolve().parent.parent
SMOKE_BACKBONES = {"unet-tiny", "unet-tiny-attn", "uvit-tiny", "mlp-xs"}


def _shape(value):
    """A config's structure: dataclass types and field names, container keys, down to the leaves."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_shape(v) for v in value)
    if is_dataclass(value):
        return (type(value).__name__, {f.name: _shape(getattr(value, f.name)) for f in fields(value)})
    return type(value).__name__


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_smoke_is_the_gpu_config_at_toy_scale(experiment):
    gpu, smoke = get_config(experiment, "gpu"), get_config(experiment, "smoke")
    # same experiment, same model names and datasets: only sizes and counts differ
    assert type(smoke) is type(gpu) and smoke.profile == "smoke"
    assert getattr(smoke, "descriptor", None) == getattr(gpu, "descriptor", None)
    gpu_models, smoke_models = profile_models("gpu"), profile_models("smoke")
    assert len(gpu_models) == len(smoke_models)  # one stand-in per model (names carry N, which shrinks)
    for (name, m), g in zip(smoke_models.items(), gpu_models.values()):
        assert m.backbone in SMOKE_BACKBONES, name
        assert m.dataset == g.dataset and m.objective == g.objective and m.steps <= 6 and m.batch_size <= 8
        assert m.n_train is None or m.dataset != "cifar10" or m.n_train + m.holdout <= 600  # the stand-in's size


def test_smoke_keeps_the_sweeps_nested_and_distinct():
    gpu, smoke = get_config("regimes", "gpu").sweeps[0], get_config("regimes", "smoke").sweeps[0]
    assert len(set(smoke.n_train)) == len(gpu.n_train) and list(smoke.n_train) == sorted(smoke.n_train)
    assert set(get_config("conditional", "smoke").regime_n) <= set(smoke.n_train)
    assert reference_split("cifar10", "smoke").n_train == max(smoke.n_train)
    with pytest.raises(ValueError, match="unknown profile"):
        reference_split("cifar10", "colab")


def test_every_chapter_measures_through_one_sampling_config():
    # sampler, steps, seeds, descriptor and batch size live in one Sampling per chapter; the config reads
    # them as its own and its summary prints them (chapters 4 and 5 sample as chapter 3, on their own seeds)
    for experiment in EXPERIMENTS:
        for profile in ("cpu", "gpu", "paper", "smoke"):
            cfg = get_config(experiment, profile)
            s = cfg.sampling
            assert isinstance(s, Sampling) and cfg.n_seeds == s.n_seeds
            assert s.seeds in cfg.summary(), (experiment, profile)
            if hasattr(cfg, "regimes"):
                assert s == replace(cfg.regimes.sampling, n_seeds=cfg.n_seeds)
            else:
                assert (cfg.sampler, cfg.descriptor, cfg.batch_size) == (s.sampler, s.descriptor, s.batch_size)
    tune, smoke = get_config("fine_tuning"), get_config("fine_tuning", "smoke")
    assert tune.sampling_steps == tune.sampling.steps == 18 and tune.steps == 400  # sampler vs training steps
    assert (smoke.sampling.steps, smoke.sampling.batch_size, smoke.n_seeds, smoke.steps) == (3, 8, 12, 6)


def test_smoke_stand_ins_load_through_the_real_loaders(tmp_path, monkeypatch):
    from reprodiff.metrics import SSCDDescriptor

    monkeypatch.setenv("REPRODIFF_DATA", str(tmp_path / "data"))
    prepare(tmp_path / "data", text_models=0)
    cfg = get_config("same_noise", "smoke")
    train, held = training_data(next(iter(cfg.models.values())))
    assert train.images.shape[1:] == (3, 32, 32) and len(held) == 40
    desc = SSCDDescriptor()  # the stand-in in the cache, behind the real preprocessing
    f = desc(train.images[:5])
    assert f.shape == (5, 64) and torch.allclose(f.norm(dim=1), torch.ones(5))
    # a wrong input size reaches the stand-in only if the preprocessing was skipped: it says so
    model = torch.jit.load(str(write_sscd_standin(tmp_path / "s.pt")))
    with pytest.raises(Exception, match="preprocessed"):
        model(torch.zeros(1, 3, 32, 32))


def test_prepare_refuses_a_real_cifar10(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "readme.html").write_text("the real release")
    with pytest.raises(ValueError, match="real CIFAR-10"):
        prepare(tmp_path)


def test_gpu_check_rejects_bad_arguments(tmp_path):
    for args, message in ((["--chapters", "42"], "no chapter 42"), (["--budget", "0"], "positive"),
                          (["--jobs", "0"], "at least 1"), (["--jobs", "2", "--one-kernel"], "leave --jobs at 1")):
        run = subprocess.run([sys.executable, "scripts/gpu-check", "--profile", "smoke", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and message in run.stderr


def test_gpu_check_fails_a_chapter_on_an_error_output_its_cells_survived():
    """A display formatter's exception (a figure that cannot be drawn) is an error output in a cell that
    succeeded: nbclient and papermill go on, gpu-check's ``error_outputs`` names it."""
    from importlib.machinery import SourceFileLoader
    from importlib.util import module_from_spec, spec_from_loader

    import nbformat
    from nbformat.v4 import new_code_cell, new_output

    loader = SourceFileLoader("gpu_check", str(ROOT / "scripts" / "gpu-check"))
    check = module_from_spec(spec_from_loader("gpu_check", loader))
    loader.exec_module(check)
    nb = nbformat.v4.new_notebook()
    nb.cells = [new_code_cell("1", outputs=[new_output("stream", text="fine")]),
                new_code_cell("fig", outputs=[new_output("error", ename="ValueError", evalue="bad mathtext",
                                                         traceback=[])])]
    assert check.error_outputs(nb) == "cell 1: ValueError: bad mathtext"
    nb.cells.pop()
    assert check.error_outputs(nb) == ""


def test_every_chapter_runs_its_gpu_code_path_at_toy_scale(tmp_path):
    """``scripts/gpu-check --profile smoke --one-kernel``: every chapter notebook, executed with the smoke
    profile in one kernel (imports paid once; each chapter starts from an empty namespace)."""
    out = tmp_path / "gpu-check.json"
    env = {k: v for k, v in os.environ.items() if k not in ("REPRODIFF_DATA", "REPRODIFF_CACHE")}
    run = subprocess.run([sys.executable, "scripts/gpu-check", "--profile", "smoke", "--one-kernel", "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    result = json.loads(out.read_text())
    chapters = sorted(p.name for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    assert [c["chapter"] for c in result["chapters"]] == chapters
    assert all(c["status"] == "passed" and c["headline"] for c in result["chapters"]), result
    # the book's pool (profiles.book_models, what `make test` trains first) holds every model a chapter uses
    assert result["pool_models"] > 0 and result["trained_by_chapters"] == [], result["trained_by_chapters"]


def test_the_gpu_estimate_prices_sscd_on_the_device_and_the_side_studies(capsys):
    """What ``chapter_time_estimate`` counts (its assumptions are in its docstring). The README quotes
    the estimates as estimates; no test holds prose built from them against them."""
    from dataclasses import replace

    from reprodiff.cli import main
    from reprodiff.estimate import SIDE_STUDIES, SSCD_FLOPS, chapter_time_estimate

    estimates = {e: chapter_time_estimate(e, "gpu") for e in EXPERIMENTS}
    assert all(minutes > 2 for minutes, _ in estimates.values())
    # SSCD: chapter 3 embeds its samples, every nested training set and the held-out images
    regimes = get_config("regimes", "gpu")
    sets = {m.n_train for name, m in profile_models("gpu").items()
            if name.startswith("regimes: ") and m.dataset == "cifar10"}
    embedded = int(estimates["regimes"][1][0].split("SSCD features of ")[1].split(" images")[0].replace(",", ""))
    assert embedded >= sum(sets) + 1000 + regimes.n_seeds and len(sets) > 1
    assert SSCD_FLOPS * embedded / 4e12 / 60 > 3  # minutes of GPU work, not a flat allowance
    # side studies come from the config: twice the guidance scales, twice their passes
    cond = get_config("conditional", "gpu")
    one = SIDE_STUDIES["conditional"](cond, 18, 35, 2)[0][1]
    two = SIDE_STUDIES["conditional"](replace(cond, guidance_scales=cond.guidance_scales * 2), 18, 35, 2)[0][1]
    assert two == 2 * one > 0
    assert "sampler study" in estimates["architectures"][1][0] and "DPS sensitivity" in estimates["inverse"][1][0]
    assert main(["estimate", "--profile", "gpu"]) == 0
    out = capsys.readouterr().out
    assert all(f"{e} (gpu):" in out for e in EXPERIMENTS)
    assert main(["estimate", "--tflops", "0"]) == 2
