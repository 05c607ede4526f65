import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from reprodiff.cache import cache_root
from reprodiff.cli import main, parse_seeds
from reprodiff.profiles import get_config

COMMON = ["--backbone", "unet-xs", "--steps", "3", "--batch-size", "8", "--n-train", "32"]


def test_cli_train_sample_score(tmp_path, capsys):
    assert main(["train", *COMMON]) == 0
    assert "trained:" in capsys.readouterr().out
    assert main(["train", *COMMON]) == 0  # a cached model is reused, not retrained
    assert "already cached" in capsys.readouterr().out
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["sample", *COMMON, "--seed", seed, "--seeds", "0-15", "--sampler-steps", "4",
                     "--out", str(tmp_path / f"{name}.safetensors")]) == 0
    assert main(["score", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "RP = " in out and "16 seed pairs" in out


def test_cli_samples_conditional_models_and_the_stochastic_sampler(tmp_path, capsys):
    cond = ["--backbone", "unet-xs", "--steps", "2", "--batch-size", "8", "--n-train", "32", "--conditional"]
    out = tmp_path / "threes.safetensors"
    assert main(["sample", *cond, "--labels", "3", "--seeds", "0-3", "--sampler-steps", "2", "--out", str(out)]) == 0
    from safetensors.torch import load_file
    assert load_file(str(out))["labels"].tolist() == [3, 3, 3, 3]
    guided = tmp_path / "guided.safetensors"
    assert main(["sample", *cond, "--labels", "3", "--guidance", "2", "--seeds", "0-3", "--sampler-steps", "2",
                 "--out", str(guided)]) == 0
    assert not torch.equal(load_file(str(guided))["images"], load_file(str(out))["images"])
    assert main(["sample", *COMMON, "--sampler", "euler-ancestral", "--step-noise-stream", "1", "--seeds", "0-3",
                 "--sampler-steps", "2", "--out", str(tmp_path / "anc.safetensors")]) == 0


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5") == [5]


def _junk(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    return str(tmp_path / "junk.safetensors")


def _no_seeds(tmp_path):
    save_file({"images": torch.zeros(2, 1, 8, 8)}, str(tmp_path / "noseeds.safetensors"))
    return str(tmp_path / "noseeds.safetensors")


def _samples(tmp_path, name, seeds, size=8):
    save_file({"images": torch.rand(len(seeds), 1, size, size), "seeds": torch.tensor(seeds)},
              str(tmp_path / name))
    return str(tmp_path / name)


def _pipeline(folder, seed=0, channels=3, size=8):
    """A tiny random DDPM saved as the Hub serves one (DDPMPipeline.save_pretrained: unet/ + scheduler/)."""
    from reprodiff.smoke import write_ddpm_pipeline

    return write_ddpm_pipeline(folder, seed=seed, size=size, channels=channels)


OUT = ["--out", "x.safetensors"]
BAD = {
    "unknown backbone": (["train", "--backbone", "resnet"], "unknown backbone 'resnet'"),
    "unknown objective": (["train", "--objective", "flow"], "unknown objective"),
    "unknown dataset": (["train", "--dataset", "imagenet"], "unknown dataset"),
    "n_train too large": (["train", *COMMON[:6], "--n-train", "5000"], "only 1797 images"),
    "holdout too large": (["train", *COMMON, "--holdout", "1797"], "n_holdout=1797"),
    "negative holdout": (["train", *COMMON, "--holdout", "-5"], "holdout must be"),
    "bad dropout": (["train", *COMMON, "--dropout", "1.5"], "dropout must be in"),
    "bad lr": (["train", *COMMON, "--lr", "-1"], "lr must be positive"),
    "bad ema": (["train", *COMMON, "--ema", "1.5"], "ema must be in"),
    "checkpoint_every 0": (["train", *COMMON, "--checkpoint-every", "0"], "checkpoint_every must be"),
    "book with a model's arguments": (["train", "--book", "--steps", "5"], "--book trains the book's own configs"),
    "unknown sampler": (["sample", *COMMON, "--sampler", "foo", *OUT], "unknown sampler 'foo'"),
    "negative seed": (["sample", *COMMON, "--seeds", "-1", *OUT], "not a seed"),
    "seeds not numbers": (["sample", *COMMON, "--seeds", "abc", *OUT], "not a seed"),
    "empty range": (["sample", *COMMON, "--seeds", "5-2", *OUT], "is empty"),
    "repeated seeds": (["sample", *COMMON, "--seeds", "0-9,5", *OUT], "must be unique"),
    "sampler steps 0": (["sample", *COMMON, "--sampler-steps", "0", *OUT], "--sampler-steps must be >= 1"),
    "stochastic sampler without its noise": (["sample", *COMMON, "--sampler", "euler-ancestral", *OUT],
                                             "--step-noise-stream"),
    "conditional without labels": (["sample", *COMMON, "--conditional", *OUT], "give --labels"),
    "label out of range": (["sample", *COMMON, "--conditional", "--labels", "11", *OUT], "outside 0-9"),
    "labels for an unconditional model": (["sample", *COMMON, "--labels", "3", *OUT], "needs a --conditional"),
    "guidance for an unconditional model": (["sample", *COMMON, "--guidance", "1", *OUT],
                                            "--guidance (classifier-free guidance) needs a --conditional"),
    "negative guidance": (["sample", *COMMON, "--conditional", "--labels", "3", "--guidance", "-1", *OUT],
                          "finite number >= 0"),
    "out not safetensors": (["sample", *COMMON, "--out", "x.png"], "--out must name a .safetensors"),
    "missing sample file": (["score", "missing.safetensors", "missing2.safetensors"], "does not exist"),
    "junk sample file": (["score", _junk, _junk], "not a readable safetensors"),
    "file without seeds": (["score", _no_seeds, _no_seeds], "holds no samples"),
    "mismatched seeds": (["score", lambda t: _samples(t, "a.safetensors", [0, 1, 2]),
                          lambda t: _samples(t, "b.safetensors", [5, 6, 7])], "do not share the same seeds"),
    "mismatched image sizes": (["score", lambda t: _samples(t, "a.safetensors", [0, 1, 2]),
                                lambda t: _samples(t, "c.safetensors", [0, 1, 2], 16)], "images"),
    "compare one model": (["compare", "./a"], "at least two models"),
    "compare unknown path": (["compare", "./missing", "./missing-too"], "does not exist"),
    "compare folder without a UNet": (["compare", lambda t: str(t), lambda t: str(t)], "holds no UNet"),
    "compare stochastic sampler": (["compare", "./a", "./b", "--sampler", "euler-ancestral"],
                                   "one deterministic sampler"),
    "compare one seed, pixel threshold": (["compare", "./a", "./b", "--seeds", "3"], "at least 2 seeds"),
    "compare threshold": (["compare", "./a", "./b", "--threshold", "2"], "--threshold is a cosine"),
    "compare out is a file": (["compare", "./a", "./b", "--out", _junk], "is a file"),
    "compare mismatched shapes": (["compare", lambda t: _pipeline(t / "small", size=8),
                                   lambda t: _pipeline(t / "large", size=16)], "different shapes"),
    "threshold outside [-1, 1]": (["score", lambda t: _samples(t, "a.safetensors", [0, 1]),
                                   lambda t: _samples(t, "a.safetensors", [0, 1]), "--threshold", "3"],
                                  "--threshold is a cosine"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_input_is_one_clear_line_before_any_work(case, tmp_path, capsys, no_work):
    argv, message = BAD[case]
    argv = [a(tmp_path) if callable(a) else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reprodiff: error: ") and message in err, err
    assert "Traceback" not in err
    assert not cache_root().exists(), "the cache was touched"


def test_cli_sscd_offline_is_a_clear_error(tmp_path, capsys, offline):
    a = _samples(tmp_path, "a.safetensors", [0, 1, 2])
    assert main(["score", a, a, "--descriptor", "sscd"]) == 2
    err = capsys.readouterr().err
    assert "could not be downloaded" in err and "Traceback" not in err
    assert main(["compare", "./a", "./b", "--descriptor", "sscd"]) == 2  # before looking at the models
    assert "could not be downloaded" in capsys.readouterr().err
    assert not cache_root().exists()


def test_cli_compare_samples_every_model_from_the_same_seeds(tmp_path, capsys):
    from safetensors.torch import load_file

    from reprodiff.pretrained import load_diffusers_denoiser
    from reprodiff.runtime import cpu_threads
    from reprodiff.sampling import generate

    a, b = _pipeline(tmp_path / "a", seed=0), _pipeline(tmp_path / "b", seed=1)
    out = tmp_path / "rp"
    with cpu_threads(1):  # tiny UNets; spinning worker threads only slow a busy machine down
        assert main(["compare", a, b, a, "--seeds", "0-5", "--sampler-steps", "3", "--out", str(out)]) == 0
        text = capsys.readouterr().out
        model = load_diffusers_denoiser(a)
        direct = generate(model, range(6), model.shape, steps=3, sigma_min=model.sigma_min)
    assert "heun, 3 steps (5 network calls per sample), Karras grid sigma 0.01 to 80" in text
    assert "same-image rule: pixel descriptor" in text and "99th percentile" in text and "across 3 sample sets" in text
    assert "6 seed pairs per cell" in text and "[3]" in text and "diffusers UNet2DModel, epsilon" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == ["1-a.safetensors", "2-b.safetensors", "3-a.safetensors", "rp_matrix.json"]
    first = load_file(str(out / "1-a.safetensors"))
    assert first["seeds"].tolist() == list(range(6)) and first["images"].shape == (6, 3, 8, 8)
    assert torch.equal(first["images"], load_file(str(out / "3-a.safetensors"))["images"])
    assert torch.allclose(first["images"], direct.images, atol=1e-6)
    import json

    matrix = json.loads((out / "rp_matrix.json").read_text())
    assert matrix["rp"][0][2] == 1.0 and matrix["rp"][0][1] == matrix["rp"][1][0] and matrix["seeds"] == list(range(6))
    assert matrix["descriptor"] == "pixel" and matrix["sampler"] == "heun" and len(matrix["lower"]) == 3


def test_cli_compare_with_the_books_rule_for_a_dataset(tmp_path, capsys):
    from reprodiff.runtime import cpu_threads

    a, b = _pipeline(tmp_path / "a", seed=0, channels=1), _pipeline(tmp_path / "b", seed=1, channels=1)
    with cpu_threads(1):
        assert main(["compare", a, b, "--seeds", "0-3", "--sampler-steps", "2", "--dataset", "digits"]) == 0
    assert "held-out real images" in capsys.readouterr().out
    for args, message in ((["--dataset", "imagenet"], "--dataset: "), (["--dataset", "digits", "--threshold", "0.9"],
                                                                       "not both")):
        assert main(["compare", a, b, "--seeds", "0-3", *args]) == 2
        assert message in capsys.readouterr().err


def test_cli_compares_a_cached_model_with_a_diffusers_one(tmp_path, capsys):
    from reprodiff.runtime import cpu_threads
    from reprodiff.training import TrainConfig, checkpoint_dir

    assert main(["train", *COMMON]) == 0
    cached = checkpoint_dir(TrainConfig(backbone="unet-xs", steps=3, batch_size=8, n_train=32))
    ddpm = _pipeline(tmp_path / "ddpm", channels=1)  # digits are 1 x 8 x 8
    capsys.readouterr()
    with cpu_threads(1):
        assert main(["compare", str(cached), ddpm, "--seeds", "0-3", "--sampler", "euler", "--sampler-steps", "2",
                     "--threshold", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "reprodiff unet-xs, edm, 3 steps" in text and "threshold 0.900 (given)" in text
    assert "Karras grid sigma 0.01 to 80" in text  # the DDPM's smallest sigma bounds the shared grid


def test_cli_error_from_a_real_process_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "reprodiff", "sample", "--sampler", "foo", "--out", "x.safetensors"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("reprodiff: error: --sampler: unknown sampler 'foo'")
    assert "Traceback" not in proc.stderr


def test_cli_train_book_trains_every_model_of_the_books_chapters_once(monkeypatch, capsys):
    import reprodiff.training as training
    from reprodiff.profiles import book_models, profile_models

    asked = []
    monkeypatch.setattr(training, "train_missing", lambda configs, *a, **k: asked.extend(configs) or configs[:3])
    assert main(["train", "--book", "--profile", "smoke"]) == 0
    assert asked == book_models("smoke")
    n = len(book_models("smoke"))
    assert f"book models (smoke profile): {n} in all, {n - 3} already cached, 3 trained" in capsys.readouterr().out
    # every diffusion model of every chapter once (chapters share many), and chapter 2's VAEs
    cpu = book_models("cpu")
    assert len({c.hash for c in cpu}) == len(cpu)
    assert {m.hash for m in profile_models("cpu").values()} | {v.hash for v in get_config("architectures").vaes.values()} \
        == {c.hash for c in cpu}


def test_cli_speed_prints_ms_per_training_step(monkeypatch, capsys):
    import reprodiff.training as training

    monkeypatch.setattr(training, "training_step_ms", lambda: 52.25)
    assert main(["speed"]) == 0
    assert capsys.readouterr().out.startswith("machine speed: 52.2 ms per UNet-XS training step")
