"""Fine-tuning (full and LoRA through peft) and snapshots: TrainConfig's base / classes / lora_rank / snapshots."""

from dataclasses import replace

import pytest
import torch

from reprodiff.cache import CheckpointError
from reprodiff.training import (TrainConfig, checkpoint_dir, load_model, load_or_train, load_or_train_many, train,
                                training_data)

BASE = TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=64, holdout=32, classes=(0, 1, 2, 3, 4))


def tuned(**kw) -> TrainConfig:
    return replace(BASE, **{"base": BASE, "classes": (5, 6), "n_train": None, "steps": 4, **kw})


def probe(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 1, 8, 8, generator=g)
    return model(x, torch.tensor([0.05, 0.3, 1.0, 4.0, 20.0]))


def test_classes_select_labels_in_training_and_held_out_data():
    data, held = training_data(BASE)
    assert set(data.labels.tolist()) <= {0, 1, 2, 3, 4} and len(data) == 64
    assert set(held.labels.tolist()) <= {0, 1, 2, 3, 4} and 0 < len(held) < 32
    # the held-out split is the base's: filtering it keeps a subset of the same images
    _, all_held = training_data(replace(BASE, classes=None))
    assert all(any(torch.equal(h, a) for a in all_held.images) for h in held.images[:5])
    with pytest.raises(ValueError, match=r"classes \[12\] are not in digits"):
        training_data(replace(BASE, classes=(12,)))


def test_fine_tune_configs_are_validated_and_hash_their_base():
    assert tuned().hash != replace(tuned(), base=replace(BASE, seed=1)).hash
    assert tuned().name.endswith("-ft") and tuned(lora_rank=4).name.endswith("-lora4")
    assert tuned(classes=[6, 5]).classes == (5, 6)
    with pytest.raises(ValueError, match="needs a base"):
        replace(BASE, lora_rank=4)
    with pytest.raises(ValueError, match="keeps its base's data kind and architecture.*backbone"):
        tuned(backbone="unet-s")
    with pytest.raises(ValueError, match="lora_targets needs lora_rank"):
        tuned(lora_targets=("conv1",))
    with pytest.raises(ValueError, match="snapshots must be steps"):
        tuned(snapshots=(4,))
    with pytest.raises(ValueError, match="classes must be a tuple of integers"):
        tuned(classes="56")


def test_missing_or_corrupt_base_fails_before_training():
    with pytest.raises(FileNotFoundError, match="which is not trained yet"):
        train(tuned(), progress=False)
    assert not checkpoint_dir(tuned()).exists()
    with pytest.raises(FileNotFoundError, match="neither trained nor in this list"):
        load_or_train_many([tuned(), tuned(seed=1)], workers=1, progress=False)
    train(BASE, progress=False)
    (checkpoint_dir(BASE) / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(tuned(), progress=False)
    assert not checkpoint_dir(tuned()).exists()


def test_the_pool_starts_a_fine_tune_once_its_base_is_done_ahead_of_shorter_jobs(monkeypatch):
    """The pool's schedule, with threads standing in for the worker processes and a job that sleeps 0.1 s
    per training step standing in for training: two jobs in flight, longest first; the fine-tune is held
    until its base is done and then starts before the shorter jobs that were ready all along (a schedule
    in waves would have run them first)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import reprodiff.training as training

    started = []

    def fake_train(cfg):
        started.append(cfg.name)
        time.sleep(0.1 * cfg.steps)
        return cfg.name

    monkeypatch.setattr(training, "_IN_PROCESS_FLOPS", 0)  # the pool even for toy models
    monkeypatch.setattr(training, "_pool_executor", lambda workers: ThreadPoolExecutor(workers))
    monkeypatch.setattr(training, "_train_in_worker", fake_train)
    mid, base = replace(BASE, steps=10, seed=9), replace(BASE, steps=6)
    ft = replace(tuned(), base=base, steps=4)
    shorts = [replace(BASE, steps=1, seed=s) for s in (5, 6)]
    assert len(training.train_missing([*shorts, ft, base, mid], workers=2, progress=False)) == 5
    assert started == [mid.name, base.name, ft.name, shorts[0].name, shorts[1].name]


def test_full_fine_tune_starts_from_the_base_and_trains_every_weight():
    base, ft = load_or_train_many([tuned(), BASE], workers=1, progress=False)[::-1]  # base first, in a wave
    assert ft.info["trainable_parameters"] == ft.info["parameters"]
    moved = [torch.equal(a, b) for a, b in zip(base.state_dict().values(), ft.state_dict().values())]
    assert not all(moved)


def test_lora_changes_only_adapters_and_merging_changes_no_output():
    base = load_or_train(BASE, progress=False)
    cfg = tuned(lora_rank=2)
    merged = train(cfg, progress=False)
    unmerged = load_model(cfg, merge=False)
    weights = unmerged.state_dict()
    adapters = {k: v for k, v in weights.items() if ".lora_" in k}
    assert adapters and all(".lora_A." in k or ".lora_B." in k for k in adapters)
    # every base weight is untouched (peft keeps it as base_layer), and the adapters moved off B = 0
    for k, v in base.state_dict().items():
        key = k if k in weights else k.replace(k.rsplit(".", 1)[0], k.rsplit(".", 1)[0] + ".base_layer")
        assert torch.equal(weights[key], v), k
    assert any(v.abs().max() > 0 for k, v in adapters.items() if ".lora_B." in k)
    assert merged.info["trainable_parameters"] < merged.info["parameters"] / 5
    # the cache holds only the adapters, as safetensors
    from safetensors.torch import load_file
    saved = load_file(checkpoint_dir(cfg) / "model.safetensors")
    assert set(saved) == set(adapters)
    with torch.no_grad():
        reloaded = load_model(cfg)
        assert torch.allclose(probe(unmerged), probe(reloaded), atol=1e-5)
        assert torch.allclose(probe(merged), probe(reloaded), atol=1e-6)
        assert not torch.allclose(probe(base), probe(reloaded), atol=1e-4)
    assert not any(".lora_" in k for k in reloaded.state_dict())  # merged: an ordinary model


def test_snapshots_hold_the_ema_at_their_steps_and_the_last_step_is_the_model():
    cfg = replace(BASE, steps=6, snapshots=(2, 4))
    final = train(cfg, progress=False)
    s2, s4 = load_model(cfg, step=2), load_model(cfg, step=4)
    assert s2.info["step"] == 2 and final.info["snapshots"] == [2, 4]
    with torch.no_grad():
        assert not torch.equal(probe(s2), probe(s4))
        assert torch.equal(probe(load_model(cfg, step=6)), probe(final))
    with pytest.raises(ValueError, match="not at 3"):
        load_model(cfg, step=3)
    # the same run without snapshots trains the same weights (snapshots only save)
    plain = train(replace(cfg, snapshots=()), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), final.state_dict().values()))


def test_an_interrupted_lora_fine_tune_resumes_to_the_same_adapters_and_snapshots(tmp_path, monkeypatch,
                                                                                   crash_after_first_state):
    load_or_train(BASE, progress=False)
    cfg = tuned(lora_rank=2, checkpoint_every=2, snapshots=(1, 3))
    crash_after_first_state(cfg)  # a crash right after the first resumable state (step 2)
    assert not (checkpoint_dir(cfg) / "model.json").exists()
    resumed = train(cfg, progress=False)  # resumes at step 2
    first_snapshot = load_model(cfg, step=1, merge=False).state_dict()
    resumed_adapters = {k: v for k, v in load_model(cfg, merge=False).state_dict().items() if ".lora_" in k}

    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "again"))
    load_or_train(BASE, progress=False)
    straight = train(cfg, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()))
    again = {k: v for k, v in load_model(cfg, merge=False).state_dict().items() if ".lora_" in k}
    assert resumed_adapters.keys() == again.keys()
    assert all(torch.equal(resumed_adapters[k], again[k]) for k in again)
    assert all(torch.equal(first_snapshot[k], v) for k, v in load_model(cfg, step=1, merge=False).state_dict().items())


def test_training_table_reads_the_checkpoint_info_and_scores_held_out_images():
    from reprodiff.denoisers import GaussianDenoiser, x0_error
    from reprodiff.fine_tuning import training_table

    data, held = training_data(BASE)
    gauss = GaussianDenoiser.from_data(data.images)
    gauss.info = {"trainable_parameters": 1_234, "parameters": 4_936, "steps": 1_200, "seconds": 12.4}
    lines = training_table({"gauss": gauss}, held.images, sigma=0.5).splitlines()
    assert lines[0].split() == ["model", "trainable", "weights", "steps", "training", "time", "held-out", "x0", "error"]
    err = x0_error(gauss, held.images, sigmas=(0.5,))[0]
    assert lines[1].split() == ["gauss", "1,234", "(", "25%)", "1,200", "12", "s", f"{err:.3f}"]


def test_drift_summary_and_figure():
    import matplotlib

    from reprodiff.fine_tuning import drift_summary
    from reprodiff.metrics import Score
    from reprodiff.plots import drift_figure

    matplotlib.use("Agg")
    steps = [0, 25, 400]
    rp = {"a vs base": [Score("RP", v, (v - 0.05, v + 0.05), 8, 0.9, "", "pixel") for v in (1.0, 0.5, 0.25)]}
    text = drift_summary(steps, rp, {"a": [0.1, 0.55, 0.9]}, (5, 6, 7, 8, 9)).splitlines()
    assert text == ["RP at steps [0, 25, 400]:", f"  {'a vs base':31s}1.00, 0.50, 0.25",
                    "fraction of samples in 5-9 at the same steps:", f"  {'a':31s}0.10, 0.55, 0.90"]
    fig = drift_figure(steps, rp)
    ax = fig.axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [1, 25, 400] and list(line.get_ydata()) == [1.0, 0.5, 0.25]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base", "25", "400"]
    matplotlib.pyplot.close(fig)


def test_rp_table_and_split_by_base():
    from reprodiff.fine_tuning import rp_table, split_by_base
    from reprodiff.metrics import Score
    from reprodiff.sampling import Samples

    rp = {("a", "b"): Score("RP", 0.5, (0.25, 0.75), 8, 0.9, "", "pixel")}
    assert rp_table(rp, ["a"], ["a", "b"], width=14).splitlines() == [
        f"{'RP':11s}{'a':>14s}{'b':>14s}", f"{'a':11s}{'-':>14s}{'0.50 [0.25,0.75]':>14s}"]
    g = torch.Generator().manual_seed(0)
    base = Samples(torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.arange(4))
    # the tune keeps the base's image on seeds 0 and 1 (the mask) and draws its negative on 2 and 3
    tune = Samples(torch.cat([base.images[:2], -base.images[2:]]), torch.arange(4))
    lines = split_by_base({"tune": tune}, base, torch.tensor([True, True, False, False]), "pixel", 0.9).splitlines()
    assert lines[0] == "RP to base (median similarity): on the 2 seeds where the base drew a 5-9 | on the other 2"
    assert lines[1].split() == ["tune", "1.00", "(1.00)", "0.00", "(-1.00)"]


def test_lora_table_rows():
    from types import SimpleNamespace

    from reprodiff.fine_tuning import lora_table
    from reprodiff.metrics import Score

    models = {"LoRA r1": SimpleNamespace(info={"trainable_parameters": 5_600})}
    rp = {("LoRA r1", b): Score("RP", v, (v - 0.1, v + 0.1), 8, 0.9, "", "pixel") for b, v in (("f", 0.5), ("base", 0.2))}
    lines = lora_table(models, rp, {"LoRA r1": 0.875}, ["LoRA r1"], ("f", "base")).splitlines()
    assert lines[0] == f"{'':10s}{'trainable':>10s}{'RP to f':>18s}{'RP to base':>18s}{'in 5-9':>8s}"
    assert lines[1] == f"{'LoRA r1':10s}{'5,600':>10s}{'0.50 [0.40,0.60]':>18s}{'0.20 [0.10,0.30]':>18s}{'0.88':>8s}"
