"""Chapter 3/4 machinery: sweeps over N, regime labels, analytic references, trajectories."""

import math

import pytest
import torch

from reprodiff.backbones import build_backbone, count_parameters
from reprodiff.configs import SizeLabel, short_name
from reprodiff.data import MoLRG, load_dataset, split_holdout, subset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.metrics import same_image_rule
from reprodiff.profiles import get_config
from reprodiff.regimes import classify_regimes, reference_study, regime_spans, regime_sweep, trajectory_gap


def test_mlp_backbone_shapes_and_zero_init():
    net = build_backbone("mlp-s", (1, 8, 8))
    x = torch.randn(5, 1, 8, 8)
    out = net(x, torch.zeros(5))
    assert out.shape == x.shape and torch.all(out == 0)  # zero-initialised output layer
    cond = build_backbone("mlp-s", (1, 8, 8), num_classes=4)
    assert cond(x, torch.zeros(5), torch.tensor([0, 1, 2, 3, 4])).shape == x.shape
    with pytest.raises(ValueError, match="class labels"):
        cond(x, torch.zeros(5))
    assert count_parameters(build_backbone("mlp-m", (1, 8, 8))) > 3 * count_parameters(net)


def test_molrg_samples_are_nested_in_n():
    d = MoLRG(num_classes=3, dim=4)
    big, small = d.sample(2500, seed=2), d.sample(1100, seed=2)
    assert torch.equal(big.images[:1100], small.images) and torch.equal(big.labels[:1100], small.labels)
    assert not torch.equal(d.sample(10, seed=3).images, big.images[:10])


def test_classify_and_shade_regimes_from_gl():
    n = [16, 64, 256, 1024]
    labels = classify_regimes(n, {"a": [0.0, 0.05, 0.5, 0.9], "b": [0.02, 0.3, 0.85, 0.95]}, 0.1, 0.8)
    assert labels == ["memorization", "transition", "transition", "generalization"]
    spans = regime_spans(n, labels)
    assert [s[2] for s in spans] == ["memorization", "transition", "generalization"]
    assert spans[0][1] == pytest.approx(32.0) and spans[1][1] == pytest.approx(512.0)
    assert spans[0][0] < 16 and spans[-1][1] > 1024
    for (_, hi, _), (lo, _, _) in zip(spans, spans[1:]):
        assert math.isclose(hi, lo)


@pytest.fixture(scope="module")
def small_sweep():
    """Analytic 'models': D* memorizes by construction, so GL must be 0 at every N."""
    pool, held = split_holdout(load_dataset("digits"), 200)
    sets = {n: subset(pool, n).images for n in (8, 64)}
    models = {(size, n): OptimalDenoiser(sets[n]) for size in (SizeLabel("A", "x"), SizeLabel("B", "y")) for n in sets}
    replicates = {("A (x)", 8, 5): OptimalDenoiser(sets[8]), ("A (x)", 8, 6): GaussianDenoiser.from_data(sets[8])}
    rule = same_image_rule(sets[64], held.images, dataset="digits")
    return regime_sweep(models, sets, held.images, range(48), rule, steps=8, progress=False,
                        replicates=replicates), sets


def test_size_labels_are_their_display_string_and_keep_their_parts():
    import pickle

    label = SizeLabel("UNet-XS", "0.16M")
    assert label == "UNet-XS (0.16M)" and hash(label) == hash("UNet-XS (0.16M)") and repr(label) == "'UNet-XS (0.16M)'"
    assert (label.short, label.params) == ("UNet-XS", "0.16M")
    back = pickle.loads(pickle.dumps(label))  # worker pools pickle the configs that hold it
    assert isinstance(back, SizeLabel) and (back, back.short, back.params) == (label, "UNet-XS", "0.16M")
    assert short_name(label) == "UNet-XS" and short_name("UNet-XS attn") == "UNet-XS attn"
    sweep = get_config("regimes", "cpu").sweeps[0]
    assert all(isinstance(k, SizeLabel) for k in sweep.sizes)
    assert all(isinstance(k[0], SizeLabel) for k in sweep.model_configs())


def test_regime_sweep_scores_optimal_denoiser_as_memorizing(small_sweep):
    sweep, sets = small_sweep
    assert sweep.n_train == [8, 64] and sweep.sizes == ["A (x)", "B (y)"]
    assert all(s.value == 0.0 for v in sweep.gl.values() for s in v)  # every sample a training copy
    assert list(sweep.rp) == ["A vs B"] and all(s.value == 1.0 for s in sweep.rp["A vs B"])
    assert sweep.regimes(0.1, 0.8) == ["memorization", "memorization"]
    nn = sweep.nearest[("A (x)", 8)]
    assert torch.allclose(sweep.samples[("A (x)", 8)].images, sets[8][nn], atol=1e-3)
    # per-pair calibration collapses when only 8 distinct images exist: the null is ~1
    assert sweep.per_pair_null[8] > 0.99
    assert "GL" in sweep.table(0.1, 0.8).splitlines()[0]
    # held-out real images are novel at N=8 under the same rule: GL's ceiling is ~1, not ~0
    assert sweep.gl_ceiling[0].value > 0.9 and sweep.gl_ceiling[0].n == len(sweep.heldout)
    # training seeds at N=8: A's two D* copies reproduce B's D* exactly, the Gaussian never does
    spread = sweep.rp_seeds[8]
    assert list(sweep.rp_seeds) == [8] and sorted(spread.values) == [0.0, 1.0, 1.0]
    assert "3 training-seed pairs" in str(spread) and "dip" in sweep.dip("A vs B")


def test_regime_sweep_rejects_an_incomplete_grid(small_sweep):
    sweep, sets = small_sweep
    with pytest.raises(ValueError, match="full grid"):
        regime_sweep({("A", 8): OptimalDenoiser(sets[8]), ("B", 64): OptimalDenoiser(sets[64])}, sets,
                     sweep.heldout, range(4), sweep.rule, progress=False)
    with pytest.raises(ValueError, match="not points of the sweep"):
        regime_sweep({("A", 8): OptimalDenoiser(sets[8])}, sets, sweep.heldout, range(4), sweep.rule,
                     replicates={("A", 64, 3): OptimalDenoiser(sets[64])}, progress=False)


def test_reference_study_and_shared_reference_sampled_once(small_sweep):
    sweep, sets = small_sweep
    gauss = GaussianDenoiser.from_data(sets[64])
    study = reference_study(sweep, {"D*": {n: OptimalDenoiser(sets[n]) for n in sets}, "G": {8: gauss, 64: gauss}},
                            steps=8)
    assert all(s.value == 1.0 for s in study.rp["D*"]["A (x)"])
    assert study.samples[("G", 8)] is study.samples[("G", 64)]
    assert "D* | A" in study.table().splitlines()[0]


def test_trajectory_gap_is_zero_against_itself_and_positive_otherwise():
    d = load_dataset("digits").images[:32]
    dstar = OptimalDenoiser(d)
    sigmas, gaps = trajectory_gap(dstar, {"self": OptimalDenoiser(d), "gauss": GaussianDenoiser.from_data(d)},
                                  range(6), (1, 8, 8), steps=5)
    assert len(sigmas) == 5 and sigmas[0] == pytest.approx(80.0)
    assert gaps["self"].shape == (5, 6) and gaps["self"].abs().max() < 1e-5
    assert gaps["gauss"].median(1).values.max() > 0.05  # apart at intermediate sigma


def test_regime_configs_share_models_between_chapters():
    reg, th = get_config("regimes"), get_config("theory")
    assert th.regimes is reg
    digits = reg.sweep("digits").model_configs()
    assert len(digits) == 10 and {c.holdout for c in digits.values()} == {297}  # 5 N x 2 widths
    # chapter 1's models are the sweep's largest N, and its replicates are the sweep's at N=1500
    same = get_config("same_noise")
    assert {c.hash for c in same.models.values()} <= {c.hash for c in reg.all_models()}
    zoo = get_config("architectures").models
    assert zoo["UNet-XS edm"].hash == digits[("UNet-XS (0.16M)", 1500)].hash
    assert max(c.n_train for c in digits.values()) == 1797 - 297
    seeds = {label: c.seed for (label, _), c in digits.items()}
    assert len(set(seeds.values())) == 2  # the two sizes also differ in initialisation
    with pytest.raises(KeyError, match="no sweep"):
        reg.sweep("cifar")
    assert get_config("regimes", "gpu").descriptor == "sscd"


def test_longest_jobs_are_scheduled_first():
    from reprodiff.training import TrainConfig

    small, big = TrainConfig(backbone="unet-xs"), TrainConfig(backbone="unet-s")
    assert big.training_flops() > 3 * small.training_flops()
    assert TrainConfig(backbone="mlp-m").training_flops() > TrainConfig(backbone="mlp-s").training_flops()


def test_nearest_grid_shows_each_sample_above_its_nearest_training_image(small_sweep):
    import matplotlib

    matplotlib.use("Agg")
    from reprodiff.plots import nearest_grid

    sweep, _ = small_sweep
    fig = nearest_grid(sweep, "A (x)", [3, 0, 7], title="t")
    assert len(fig.axes) == 2 * len(sweep.n_train) * 3
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["N=8: sample", "N=8: nearest", "N=64: sample", "N=64: nearest"]


def test_step_cost_counts_flops_per_batch_and_operators():
    from reprodiff.training import TrainConfig
    from reprodiff.estimate import step_cost

    f64, calls = step_cost(TrainConfig(backbone="unet-xs", batch_size=64), (1, 8, 8))
    f128, _ = step_cost(TrainConfig(backbone="unet-xs", batch_size=128), (1, 8, 8))
    assert f128 == 2 * f64 > 1e9 and calls > 100
    assert step_cost(TrainConfig(backbone="unet-s", batch_size=64), (1, 8, 8))[0] > 3 * f64


def test_load_sweep_trains_a_grid_and_returns_nested_sets():
    from reprodiff.configs import SweepConfig
    from reprodiff.regimes import load_sweep
    from reprodiff.training import TrainConfig

    sweep = SweepConfig("tiny", TrainConfig(dataset="molrg", holdout=32, steps=3, batch_size=8, warmup=1),
                        {"A": "mlp-xs", "B": "mlp-xs"}, (8, 24))
    models, sets, held = load_sweep(sweep, progress=False)
    assert set(models) == {("A", 8), ("A", 24), ("B", 8), ("B", 24)}
    assert models[("A", 8)].config.seed == 0 and models[("B", 8)].config.seed == 1
    assert torch.equal(sets[24][:8], sets[8]) and held.shape == (32, 1, 8, 8)
    no_holdout = SweepConfig("bad", TrainConfig(dataset="molrg", steps=1, batch_size=2), {"A": "mlp-xs"}, (4,))
    with pytest.raises(ValueError, match="holds nothing out"):
        load_sweep(no_holdout, progress=False)


def test_gl_score_reuses_given_training_features_and_reports_neighbours():
    from reprodiff.metrics import get_descriptor, gl_score
    from reprodiff.sampling import Samples

    pool, held = split_holdout(load_dataset("digits"), 100)
    train = subset(pool, 50).images
    s = Samples(train[:10] + 0.01, torch.arange(10), name="near-copies")
    rule = same_image_rule(train, held.images)
    plain = gl_score(s, train, threshold=rule)
    shared = gl_score(s, train, threshold=rule, train_features=get_descriptor("pixel")(train))
    assert plain.value == shared.value == 0.0 and torch.equal(plain.similarities, shared.similarities)
    assert torch.equal(plain.nearest, torch.arange(10))


def test_classify_regimes_needs_one_gl_per_n():
    with pytest.raises(ValueError, match="one value per N"):
        classify_regimes([16, 64], {"a": [0.0]}, 0.1, 0.8)


def test_sweep_reads_transition_and_rp_minimum_off_its_curves(small_sweep):
    sweep, _ = small_sweep
    assert sweep.gl_crossing("A (x)") is None  # D* never generalizes
    assert sweep.rp_minimum("A vs B") == 0  # all RP equal: the first N
    assert sweep.regime_edges(0.1, 0.8) == (64, None)


def test_gl_crossing_interpolates_in_log_n(small_sweep):
    import dataclasses

    from reprodiff.metrics import Score

    sweep, _ = small_sweep
    fake = dataclasses.replace(sweep, gl={"A": [Score("GL", v, (v, v), 1, 0.0, "", "pixel") for v in (0.0, 1.0)]})
    assert fake.gl_crossing("A", 0.5) == pytest.approx(math.sqrt(8 * 64))


def test_book_rule_is_one_threshold_per_dataset_and_shared_by_rp_and_gl():
    from reprodiff.profiles import SAME_IMAGE_QUANTILE, reference_split
    from reprodiff.experiments import book_rule
    from reprodiff.training import training_data

    rule = book_rule("digits")
    train, held = training_data(reference_split("digits"))
    assert (len(train), len(held)) == (1500, 297)
    again = same_image_rule(train.images, held.images, quantile=SAME_IMAGE_QUANTILE, dataset="digits")
    assert rule == again and "99th percentile of 297 held-out" in rule.rule
    assert 0.9 < rule.threshold < 1  # stricter than any different-seed null of digits (~0.88)
    assert str(rule).startswith("same-image threshold [pixel, digits]: ")
    sscd = book_rule("cifar10", _FixedDescriptor())
    assert sscd.threshold == 0.6 and sscd.rule == "fixed"
    with pytest.raises(ValueError, match="no same-image rule"):
        book_rule("mnist")


class _FixedDescriptor:
    name, fixed_threshold, fixed_threshold_rule = "fake-sscd", 0.6, "fixed"

    def __call__(self, images):  # never called: a fixed threshold needs no data
        raise AssertionError("a fixed threshold must not describe images")


def test_quality_classifier_rates_real_digits_above_blurred_ones():
    from reprodiff.experiments import quality_classifier

    clf, acc, conf = quality_classifier("digits")
    assert acc > 0.9 and conf > 0.8
    held = split_holdout(load_dataset("digits"), 297)[1].images
    blurred = torch.nn.functional.avg_pool2d(held, 3, stride=1, padding=1)
    mean_digit = held.mean(0, keepdim=True).expand(50, -1, -1, -1)
    assert clf.confidence(blurred) < conf and clf.confidence(mean_digit) < conf - 0.2


def test_the_quality_classifier_is_fitted_once_per_cache_and_refitted_when_damaged(monkeypatch):
    from sklearn.neural_network import MLPClassifier

    from reprodiff.cache import cache_root
    from reprodiff.metrics import QualityClassifier

    data = load_dataset("digits").select(torch.arange(300))
    first = QualityClassifier.fitted(data.images, data.labels)
    (entry,) = (cache_root() / "classifiers").glob("*.pkl")
    fits = []
    monkeypatch.setattr(MLPClassifier, "fit", lambda self, *a: fits.append(1) or self)
    again = QualityClassifier.fitted(data.images, data.labels)  # from the cache: no fit
    assert fits == [] and torch.equal(again.probabilities(data.images[:20]), first.probabilities(data.images[:20]))
    QualityClassifier.fitted(data.images, data.labels, seed=1)  # another seed: another fit
    assert fits == [1]
    entry.write_bytes(b"damaged")
    QualityClassifier.fitted(data.images, data.labels)  # refitted and stored again
    assert fits == [1, 1] and entry.read_bytes() != b"damaged"


def test_molrg_subspace_energy_tells_the_mixture_from_its_gaussian_approximation():
    d = MoLRG(num_classes=4, dim=8)
    real = d.sample(200, seed=1).images
    assert torch.allclose(d.subspace_energy(real), torch.ones(200, dtype=torch.float64), atol=1e-5)
    gauss = GaussianDenoiser.from_data(d.sample(4096).images)
    # the Gaussian with the mixture's covariance: its draws spread over all four subspaces
    cov_draws = torch.distributions.MultivariateNormal(
        gauss.mean.double(), gauss.evecs @ torch.diag(gauss.evals.clamp_min(1e-9)) @ gauss.evecs.T).sample((200,))
    assert d.subspace_energy(cov_draws.reshape(200, 1, 8, 8)).median() < 0.6
    with pytest.raises(ValueError, match="dimensions"):
        d.subspace_energy(torch.zeros(3, 1, 4, 4))


def test_sweep_time_estimate_counts_every_model_of_the_sweep():
    from reprodiff.estimate import sweep_time_estimate

    sweep = get_config("regimes", "gpu").sweeps[0]
    slow, lines = sweep_time_estimate(sweep, (3, 32, 32), 1000, flops_per_s=1e12)
    fast, _ = sweep_time_estimate(sweep, (3, 32, 32), 1000, flops_per_s=4e12)
    assert slow > fast > 2  # compute-bound: a 4x faster GPU is faster, plus the fixed overhead
    assert len(lines) == len(sweep.sizes) + 2 and f"{len(sweep.model_configs())} models" in lines[-2]
    assert all(f"{len(sweep.n_train)} models" in line for line in lines[:len(sweep.sizes)])


def test_both_estimates_price_a_sample_with_one_formula(monkeypatch):
    import reprodiff.estimate as estimate

    assert estimate.sample_seconds(3e12, 10, 1) == 0.25  # compute-bound: a third of a step at 4 TFLOP/s
    assert estimate.sample_seconds(3.0, 768, 1) == 768 / 3 * 10e-6 / 256  # launch-bound: ops shared by 256 images
    calls = []
    monkeypatch.setattr(estimate, "sample_seconds", lambda *a, **k: calls.append(a) or 0.0)
    sweep = get_config("regimes", "gpu").sweeps[0]
    estimate.sweep_time_estimate(sweep, (3, 32, 32), 10)
    assert len(calls) == len(sweep.model_configs()) + len(sweep.replicate_configs())
    calls.clear()
    estimate.chapter_time_estimate("regimes", "gpu")
    assert calls  # the chapter estimate goes through the same formula


def test_paper_row_answers_every_row_of_the_papers_figure(small_sweep):
    from reprodiff.regimes import PAPER_FIGURE2, paper_row

    sweep, _ = small_sweep
    row = paper_row(sweep, 0.1, 0.8)
    assert len(row) == len(PAPER_FIGURE2)
    assert row[0] == "N = 64" and row[1] == "not reached"  # D* memorizes at every N
    assert row[3] == "1.00 (N=8)" and row[5] == "1.00 (N=64)"


def test_trajectory_gap_figure_draws_the_median_gap_per_n_and_reference():
    import matplotlib

    from reprodiff.plots import trajectory_gap_figure

    matplotlib.use("Agg")
    sig = [10.0, 1.0, 0.1]
    gaps = {n: (sig, {"D*": torch.full((3, 4), float(n)), "Gaussian": torch.arange(12.0).reshape(3, 4)})
            for n in (8, 64)}
    fig = trajectory_gap_figure(gaps, "UNet-S")
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "UNet-S vs Gaussian, along the model's trajectory"
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["N=8", "N=64"]
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == [64.0] * 3
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == [1.0, 5.0, 9.0]  # torch's median: the lower middle
    assert fig.axes[0].xaxis_inverted() and fig.axes[0].get_xscale() == "log"
    matplotlib.pyplot.close(fig)


def test_reference_study_medians_and_seed_spread_against_the_same_reference():
    import torch

    from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
    from reprodiff.metrics import Score, Scores, same_image_rule
    from reprodiff.regimes import ReferenceStudy
    from reprodiff.sampling import generate

    from reprodiff.data import load_dataset

    digits = load_dataset("digits").images
    train = digits[:12]
    rule = same_image_rule(train, digits[1500:1600], "pixel")
    dstar = OptimalDenoiser(train)
    ref = generate(dstar, range(6), (1, 8, 8), steps=4)
    sims = torch.tensor([0.1, 0.5, 0.9])
    score = lambda v, s: Score("RP", v, (v, v), 6, rule.threshold, rule.rule, "pixel", similarities=s)  # noqa: E731
    study = ReferenceStudy([16, 64], {"D*": {"XS": Scores([score(0.5, sims), score(0.0, sims / 2)])}},
                           {("D*", 16): ref, ("D*", 64): ref})
    assert study.medians("D*") == {"XS": [0.5, 0.25]}
    # an extra training seed that *is* the reference reproduces it on every seed; the Gaussian denoiser does not
    spread = study.seed_spread("D*", {("XS", 16, 2): dstar, ("XS", 16, 4): GaussianDenoiser.from_data(train)}, rule,
                               steps=4)
    assert list(spread) == [("XS", 16)]
    assert spread[("XS", 16)].values[:2] == [0.5, 1.0]  # the study's own model first, then the seeds
    assert spread[("XS", 16)].values[2] < 1.0 and len(spread[("XS", 16)]) == 3
