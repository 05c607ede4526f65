"""Chapter 9's package code: slerp, generate_from_noise, the widget explorer driven by its callbacks,
and the interpolation, label-agreement, proxy and replication-audit studies (on analytic denoisers)."""

import pytest
import torch

from reprodiff.backbones import build_backbone
from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser, Precond
from reprodiff.explore import (NoiseExplorer, interpolation_study, label_agreement, proxy_study,
                               replication_audit, slerp)
from reprodiff.metrics import QualityClassifier, same_image_rule
from reprodiff.sampling import generate, generate_from_noise, noise_for_seeds

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def models(digits):
    train = digits.images[:1500]
    return {"Gaussian": GaussianDenoiser.from_data(train), "D*": OptimalDenoiser(train)}


@pytest.fixture(scope="module")
def rule(digits):
    return same_image_rule(digits.images[:1500], digits.images[1500:], "pixel")


def test_slerp_runs_along_the_arc_between_two_noises():
    a, b = noise_for_seeds([0, 1], SHAPE)
    path = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(path[0], a, rtol=0, atol=1e-6)
    torch.testing.assert_close(path[-1], b, rtol=0, atol=1e-6)
    norms = path.flatten(1).norm(dim=1)  # two nearly orthogonal noises of similar norm: the arc keeps it
    assert norms.min() > 0.9 * min(a.norm(), b.norm()) and (a + b).norm() / 2 < 0.8 * norms[2]
    with pytest.raises(ValueError, match="lie in"):
        slerp(a, b, [1.5])
    with pytest.raises(ValueError, match="one shape"):
        slerp(a, b[:, :4], [0.5])


def test_generate_from_noise_is_generate_on_the_same_noise(models):
    seeds = [3, 7, 11]
    for model in models.values():
        a = generate(model, seeds, SHAPE, sampler="dpmpp-2m", steps=8)
        b = generate_from_noise(model, noise_for_seeds(seeds, SHAPE), sampler="dpmpp-2m", steps=8)
        assert torch.equal(a.images, b.images) and b.seeds.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="stochastic"):
        generate_from_noise(models["D*"], noise_for_seeds([0], SHAPE), sampler="euler-ancestral")
    with pytest.raises(ValueError, match="model trained on|shape"):
        generate_from_noise(models["D*"], torch.zeros(1, 8, 8))


def test_explorer_callbacks_resample_every_chosen_model(models):
    ex = NoiseExplorer(models, SHAPE, steps=6)
    assert ex.label is None and ex.guidance is None  # no conditional model: no label or guidance widget
    ex.update()
    first = dict(ex.last)
    assert set(first) == set(models)
    ex.seed.value = 5  # the widget calls update() itself, as a click would
    for name, model in models.items():
        expected = generate(model, [5], SHAPE, sampler="heun", steps=6).images[0]
        assert torch.equal(ex.last[name], expected) and not torch.equal(ex.last[name], first[name])
    ex.sampler.value = "ddim"
    ex.chosen.value = ("D*",)
    assert list(ex.last) == ["D*"]
    assert torch.equal(ex.last["D*"], generate(models["D*"], [5], SHAPE, sampler="ddim", steps=6).images[0])
    ex.chosen.value = ()
    assert ex.last == {}


def test_explorer_offers_label_and_guidance_for_a_conditional_model(models):
    from reprodiff.training import TrainConfig, build_model

    cond = build_model(TrainConfig(backbone="unet-xs", conditional=True), SHAPE, 10)
    ex = NoiseExplorer({"conditional": cond, "D*": models["D*"]}, SHAPE, steps=2)
    assert ex.label is not None and ex.guidance is not None
    ex.label.value = 3
    ex.guidance.value = 2.0
    assert set(ex.last) == {"conditional", "D*"} and torch.isfinite(ex.last["conditional"]).all()


def test_interpolation_study_measures_smoothness_and_agreement(models, rule):
    study = interpolation_study(models, SHAPE, [(0, 1), (2, 3)], 4, rule=rule, steps=6)
    assert study.frames["D*"].shape == (2, 4, *SHAPE)
    assert study.smoothness["D*"].shape == (3,) and len(study.agreement) == 4
    assert all(s.n == 2 and len(s.similarities) == 2 for s in study.agreement)  # two paths, one model pair
    torch.testing.assert_close(study.frames["D*"][0, 0], generate(models["D*"], [0], SHAPE, steps=6).images[0],
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at least two models"):
        interpolation_study({"D*": models["D*"]}, SHAPE, [(0, 1)], 3, rule=rule)


def test_agreement_among_a_subset_of_the_models_reuses_the_frames(models, rule):
    three = {**models, "D* again": models["D*"]}
    study = interpolation_study(three, SHAPE, [(0, 1), (2, 3), (4, 5)], 3, rule=rule, steps=6)
    same = study.agreement_among(["D*", "D* again"], rule=rule)
    assert [s.value for s in same] == [1.0, 1.0, 1.0]  # a model agrees with itself on every path
    assert all("1 model pairs" in s.details for s in same)
    # all three pairs pooled: the identical pair (always 1) and the two Gaussian-D* pairs
    pooled = torch.stack([s.similarities.reshape(3, 3) for s in study.agreement])
    gauss_dstar = study.agreement_among(["Gaussian", "D*"], rule=rule)
    for k, s in enumerate(study.agreement):
        assert s.value == pytest.approx((1 + 2 * gauss_dstar[k].value) / 3)
        assert torch.equal(pooled[k][0], gauss_dstar[k].similarities)
    with pytest.raises(ValueError, match="at least two of the sampled models"):
        study.agreement_among(["D*"], rule=rule)
    with pytest.raises(ValueError, match="at least two of the sampled models"):
        study.agreement_among(["D*", "U-ViT"], rule=rule)


def test_label_agreement_proxy_and_audit(digits, models, rule, sampling_runs):
    clf = QualityClassifier(digits.images[:1500], digits.labels[:1500])
    seeds = range(48)
    samples = {k: generate(m, seeds, SHAPE, steps=6) for k, m in models.items()}
    agree = label_agreement({**samples, "D* again": samples["D*"]}, clf)
    assert agree["labels"].shape == (3, 48) and 0 <= agree["other noise"] <= agree["same noise"] <= 1

    target = int(clf.probabilities(samples["D*"].images).argmax(1)[0])
    proxy = proxy_study(models["D*"], models["D*"], SHAPE, seeds, classifier=clf, target=target, rule=rule, steps=6)
    assert proxy.precision.value == 1.0 and proxy.rp.value == 1.0  # one model twice: the proxy is exact
    assert 0 < proxy.base_rate < 1 and len(proxy.chosen) == round(proxy.base_rate * 48)  # the same seeds

    with pytest.raises(ValueError, match="drew no image of class"):
        proxy_study(models["D*"], models["D*"], SHAPE, range(2), classifier=clf, target=11, rule=rule, steps=2)

    # its times are of real sampling: a network's samples are cached (D*'s never are), so draw the
    # seeds first, as chapter 9 does before this study; the study must still run all three passes
    torch.manual_seed(0)
    net = Precond(build_backbone("mlp-xs", SHAPE), "edm")
    drawn = generate(net, seeds, SHAPE, steps=6)
    runs = len(sampling_runs)
    assert torch.equal(generate(net, seeds, SHAPE, steps=6).images, drawn.images) and len(sampling_runs) == runs
    target = int(clf.probabilities(drawn.images).argmax(1)[0])
    proxy = proxy_study(net, net, SHAPE, seeds, classifier=clf, target=target, rule=rule, steps=6)
    assert len(sampling_runs) == runs + 3  # every seed cheaply, the chosen and every seed expensively
    assert 0 < len(proxy.chosen) and proxy.rp.value == 1.0

    audit = replication_audit(samples["D*"], digits.images[:1500], rule=rule)
    assert audit.gl.value < 0.1 and len(audit.flagged) == audit.copies.shape[0] > 40  # D* copies its training set
    first = samples["D*"].by_seed(audit.flagged[:1])
    assert torch.nn.functional.cosine_similarity(first.flatten(1), audit.copies[:1].flatten(1)).item() > 0.99


def _stored_study():
    from types import SimpleNamespace

    from reprodiff.sampling import Samples

    g = torch.Generator().manual_seed(0)
    train = torch.rand(5, *SHAPE, generator=g) * 2 - 1
    model = Samples(torch.rand(3, *SHAPE, generator=g) * 2 - 1, torch.tensor([2, 0, 1]))  # stored out of seed order
    sweep = SimpleNamespace(samples={("A (1M)", 8): model}, nearest={("A (1M)", 8): torch.tensor([4, 1, 3])},
                            train_sets={8: train}, n_train=[8])
    refs = {(r, 8): Samples(torch.rand(3, *SHAPE, generator=g) * 2 - 1, torch.tensor([0, 1, 2])) for r in ("D*", "G")}
    return sweep, SimpleNamespace(samples=refs), model, train


def _shown(fig):
    return [torch.as_tensor(ax.images[0].get_array().data) for ax in fig.axes if ax.images]


def test_reference_row_pairs_model_references_and_neighbour_by_seed():
    import matplotlib

    from reprodiff.explore import reference_row

    matplotlib.use("Agg")
    sweep, study, model, train = _stored_study()
    fig = reference_row(sweep, study, "A (1M)", 0, 8, references=("D*", "G"), name="A")
    shown = _shown(fig)
    expected = [model.images[1], study.samples[("D*", 8)].images[0], study.samples[("G", 8)].images[0], train[1]]
    assert len(shown) == 4
    for img, want in zip(shown, expected):  # seed 0 is stored second; its nearest training image is 1
        assert torch.allclose(img.double(), ((want[0] + 1) / 2).double(), atol=1e-6)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["A", "D*", "G", "nearest training"]
    matplotlib.pyplot.close(fig)


def test_reference_explorer_redraws_on_every_slider_change(monkeypatch):
    import matplotlib

    import reprodiff.explore as explore

    matplotlib.use("Agg")
    sweep, study, _, _ = _stored_study()
    drawn = []
    monkeypatch.setattr(explore, "reference_row", lambda sw, st, size, seed, n, **kw: drawn.append((seed, n)) or
                        matplotlib.pyplot.figure())
    ex = explore.ReferenceExplorer(sweep, study, "A (1M)", max_seed=2, references=("D*", "G"))
    ex.update()
    ex.seed.value = 2  # the slider calls update() itself
    assert drawn == [(0, 8), (2, 8)] and ex.seed.max == 2 and list(ex.n.options) == [8]


def test_a_proxy_that_chooses_nothing_is_an_error_or_says_so(models, rule):
    class Never:  # a classifier that never sees the target class
        def probabilities(self, images):
            p = torch.zeros(len(images), 10)
            p[:, 0] = 1
            return p

    kw = dict(classifier=Never(), target=3, rule=rule, steps=4)
    with pytest.raises(ValueError, match="drew no image of class 3"):
        proxy_study(models["Gaussian"], models["D*"], SHAPE, range(4), **kw)
    empty = proxy_study(models["Gaussian"], models["D*"], SHAPE, range(4), allow_empty=True, **kw)
    assert empty.precision is None and len(empty.chosen) == 0
    assert empty.summary("Gaussian", "D*") == "proxy Gaussian -> D*, class 3: chose no seed of the class among 4"
    full = proxy_study(models["Gaussian"], models["D*"], SHAPE, range(4), classifier=Never(), target=0, rule=rule, steps=4)
    assert full.summary("G", "D").endswith(f"precision {full.precision.interval()}; cost ratio {full.cost_ratio:.2f}")
    assert full.summary("G", "D", cost=False).endswith(f"precision {full.precision.interval()}")


def test_a_second_proxy_reuses_the_first_studys_run_of_the_expensive_model(models, rule):
    class Always:  # every image is class 0
        def probabilities(self, images):
            p = torch.zeros(len(images), 10)
            p[:, 0] = 1
            return p

    kw = dict(classifier=Always(), target=0, rule=rule, steps=4)
    first = proxy_study(models["Gaussian"], models["D*"], SHAPE, range(6), **kw)
    second = proxy_study(models["D*"], models["D*"], SHAPE, range(6), baseline=first, **kw)
    assert (second.expensive_seconds, second.base_rate) == (first.expensive_seconds, first.base_rate)
    assert second.precision.value == 1.0 and second.rp.value == 1.0  # D* against itself, on every seed
    with pytest.raises(ValueError, match="same seeds and target"):
        proxy_study(models["D*"], models["D*"], SHAPE, range(5), baseline=first, **kw)
