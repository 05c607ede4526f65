import pytest

from reprodiff.cli import main


def test_cli_train_sample_score(tmp_path, capsys):
    common = ["--backbone", "unet-xs", "--steps", "3", "--batch-size", "8", "--n-train", "32"]
    assert main(["train", *common]) == 0
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["sample", *common, "--seed", seed, "--seeds", "0-15", "--sampler-steps", "4",
                     "--out", str(tmp_path / f"{name}.safetensors")]) == 0
    assert main(["score", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "RP = " in out and "16 seed pairs" in out


def test_cli_rejects_bad_input(tmp_path):
    with pytest.raises(SystemExit):
        main(["score", str(tmp_path / "missing.safetensors"), str(tmp_path / "x.safetensors")])
    with pytest.raises(ValueError, match="unknown backbone"):
        main(["train", "--backbone", "nope"])
