import pytest
import torch

from reprodiff.cache import MODEL_WEIGHTS, cache_root
from reprodiff.controls import VAEConfig, decode_seeds, load_or_train_vae, vae_dir
from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.experiments import sample_models, sampler_study, stochastic_control
from reprodiff.metrics import rp_score
from reprodiff.sampling import record_calls


def _dens():
    d = load_dataset("digits").images
    return {"gauss": GaussianDenoiser.from_data(d), "opt": OptimalDenoiser(d[:300])}


def test_sample_models_shares_seeds_and_names():
    out = sample_models(_dens(), range(6), (1, 8, 8), steps=4)
    assert [s.name for s in out] == ["gauss", "opt"]
    assert all(torch.equal(s.seeds, torch.arange(6)) for s in out)


def test_sampler_study_converges_to_its_reference():
    # the study's cost axis must be what the model really paid: count the calls it received
    model = record_calls(_dens()["gauss"])
    study = sampler_study(model, range(32), (1, 8, 8), samplers=("euler", "heun"), step_counts=(2, 40),
                          threshold=0.99, threshold_rule="test", reference_steps=80)
    reference_calls = 2 * 80 - 1  # Heun: two calls per step but the last
    assert len(study.rows) == 4
    assert len(model.calls) == reference_calls + sum(row["nfe"] for row in study.rows)
    assert study.curve("heun")[0] == [3, 79] and study.curve("euler")[0] == [2, 40]
    assert study.curve("heun")[1][-1] == 1.0 and study.min_nfe("heun", 0.99) == 79
    assert study.curve("heun")[1][0] < 1.0  # 3 calls are too few to reproduce the reference
    assert study.min_nfe("euler", 2.0) is None
    # across a threshold interval: the lenient end never needs more calls than the strict end
    from reprodiff.metrics import SameImageRule

    fixed = SameImageRule(0.99, "test", "pixel")
    assert study.min_nfe_range("heun", 0.99, fixed) == (79, 79)  # no interval: the threshold's own answer
    wide = SameImageRule(0.99, "test", "pixel", interval=(-1.0, 1.0))
    assert study.min_nfe_range("heun", 0.99, wide) == (3, None)  # everything counts at -1, nothing at 1
    assert torch.equal(study.similarities("heun", 40), study.rows[-1]["similarities"])
    with pytest.raises(ValueError, match="no sampler"):
        study.min_nfe_range("ddim", 0.9, fixed)
    with pytest.raises(ValueError, match="no row"):
        study.similarities("heun", 7)


def test_stochastic_control_breaks_reproducibility_of_the_same_model():
    g = _dens()["opt"]
    between, within, sets = stochastic_control(g, g, range(64), (1, 8, 8), threshold=0.95, threshold_rule="test",
                                               steps=10)
    det = sample_models({"a": g, "b": g}, range(64), (1, 8, 8), steps=10)
    assert torch.equal(det[0].images, det[1].images)  # deterministic: one model twice is the same image
    assert rp_score(*det, "pixel", threshold=0.95, threshold_rule="test").value == 1.0
    # "between" compares the same model with itself (A = B = g) under the second model's own injected
    # noise: only the fresh noise can make it fail the rule, and it must, as it does within one model
    assert [s.name for s in sets] == ["A (injected noise 1)", "A (injected noise 2)", "B (injected noise 3)"]
    assert between.n == within.n == 64 and "A (injected noise 2) vs B (injected noise 3)" in between.details
    assert between.value < 0.9 and within.value < 0.9


def test_vae_trains_caches_and_decodes_by_seed():
    cfg = VAEConfig(steps=20, hidden=32)
    vae = load_or_train_vae(cfg, progress=False)
    weights = vae_dir(cfg) / MODEL_WEIGHTS
    stamp = weights.stat()
    again = load_or_train_vae(cfg, progress=False)  # from the cache
    # retraining rewrites the file through a new temporary (atomic rename): a new inode and mtime
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    assert weights.parent.parent == cache_root() / "vae"  # in the model cache, beside the diffusion models
    a, b = decode_seeds(vae, [3, 1]), decode_seeds(again, [1, 3])
    assert torch.equal(a.by_seed([1, 3]), b.by_seed([1, 3]))
    assert a.images.shape == (2, 1, 8, 8) and a.images.abs().max() <= 1


def test_training_progress_follows_a_run_through_its_snapshots():
    from dataclasses import replace

    from reprodiff.experiments import training_progress
    from reprodiff.metrics import same_image_rule
    from reprodiff.sampling import generate
    from reprodiff.training import TrainConfig, load_or_train, training_data

    cfg = TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=64, holdout=32, snapshots=(2, 4))
    model = load_or_train(cfg, progress=False)
    train, held = training_data(cfg)
    seeds = range(24)
    own = generate(model, seeds, train.shape, steps=4)
    rule = same_image_rule(train.images, held.images, "pixel")
    progress = training_progress(cfg, {"itself": (model, own)}, held.images, seeds, train.shape, rule, steps=4)
    assert progress.steps == [2, 4, 6] and len(progress.errors) == 3 and all(len(e) == 3 for e in progress.errors)
    # the finished model is its own reference: RP 1 at the last step, and the same x0 error
    assert progress.rp["itself"][-1].value == 1.0 and progress.reference_errors["itself"] == progress.errors[-1]
    assert progress.errors[0] != progress.errors[-1]  # snapshots are other weights
    assert progress.rp_range(2) == (1.0, 1.0) and "step     6" in progress.table().replace(",", "")
    assert progress.median_range(2) == (1.0, 1.0) and "median 1.000-1.000" in progress.table()
    (last_vs_first,) = progress.compare_steps(rule, -1, 0)
    assert last_vs_first.names == ("to itself: step 6", "step 2") and last_vs_first.rp[0] == (1.0, 1.0)
    assert last_vs_first.verdict in ("higher", "higher at the threshold only", "tie")  # nothing beats RP 1
    errors, (lo, hi) = progress.error_at(0.5)
    assert errors == [e[1] for e in progress.errors] and lo == hi == progress.reference_errors["itself"][1]
    line = progress.headline((0.4, 0.6))
    assert line.endswith("-> 1.00-1.00 (between UNets 0.40-0.60)") and f"-> {errors[-1]:.3f} at step 6" in line
    from reprodiff.plots import training_progress_figure

    fig = training_progress_figure(progress, (0.4, 0.6))
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == errors and [t.get_text() for t in fig.axes[0].texts] == ["2", "4", "6"]
    with pytest.raises(ValueError, match="saved no snapshots"):
        training_progress(replace(cfg, snapshots=()), {"itself": (model, own)}, held.images, seeds, train.shape, rule)


def test_the_sampler_study_runs_on_the_configured_first_seeds():
    from dataclasses import replace

    from reprodiff.profiles import get_config

    cpu = get_config("architectures")
    assert cpu.sampler_seed_count == 256 < cpu.n_seeds and "sampler study on 'UNet-XS edm', seeds 0-255" in cpu.summary()
    assert replace(cpu, sampler_seeds=0).sampler_seed_count == cpu.n_seeds  # 0: every seed of the chapter
    for bad in (-1, cpu.n_seeds + 1, 2.5, True):
        with pytest.raises(ValueError, match="sampler_seeds"):
            replace(cpu, sampler_seeds=bad)
