"""Chapter 6's package code: the closed-form class-conditional Gaussian and its guidance, the guidance
study, within-label similarity, guidance's input checks, and the text-to-image plumbing on a tiny
Stable Diffusion pipeline built and saved locally (no download)."""

import math

import pytest
import torch

from reprodiff.backbones import build_backbone
from reprodiff.conditioning import SharedNullGuided
from reprodiff.denoisers import ClassGaussianDenoiser, GaussianDenoiser, Guided, Precond
from reprodiff.experiments import guidance_study, shared_null_control
from reprodiff.metrics import QualityClassifier, SameImageRule, within_label_similarity
from reprodiff.sampling import Samples, generate, noise_for_seeds

SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    images = torch.randn(60, *SHAPE, generator=g) * 0.3 + labels.reshape(-1, 1, 1, 1) * 0.4 - 0.4
    return images, labels


@pytest.fixture(scope="module")
def conditional():
    torch.manual_seed(0)
    return Precond(build_backbone("mlp-xs", SHAPE, num_classes=3), "edm")


@pytest.fixture(scope="module")
def unconditional():
    torch.manual_seed(0)
    return Precond(build_backbone("mlp-xs", SHAPE), "edm")


# ----------------------------------------------------------------------------- the class-conditional Gaussian


def test_class_gaussian_is_each_classes_gaussian_and_the_null_label_the_pooled_one(data):
    images, labels = data
    d = ClassGaussianDenoiser(images, labels)
    x = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([0, 1, 2, 3, 1, 0])
    out = d(x, 0.7, cond)
    assert out.shape == x.shape and out.dtype == x.dtype
    for c in range(4):
        fit = GaussianDenoiser.from_data(images if c == 3 else images[labels == c])
        rows = cond == c
        assert torch.allclose(out[rows], fit(x[rows], 0.7), atol=1e-6)
    assert torch.equal(out, d(x, 0.7, cond))  # deterministic
    sig = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0, 0.05])  # one sigma per row works too
    assert torch.allclose(d(x, sig, cond)[1], GaussianDenoiser.from_data(images[labels == 1])(x[1:2], 0.5)[0], atol=1e-6)


def test_linear_guidance_in_closed_form(data):
    images, labels = data
    d = ClassGaussianDenoiser(images, labels)
    x, cond, w = torch.randn(5, *SHAPE), torch.tensor([0, 1, 2, 0, 1]), 2.5
    expected = (1 + w) * d(x, 1.3, cond) - w * d(x, 1.3, torch.full_like(cond, 3))
    assert torch.allclose(Guided(d, w)(x, 1.3, cond), expected, atol=1e-5)
    assert torch.equal(Guided(d, 0.0)(x, 1.3, cond), d(x, 1.3, cond))
    # at very high noise every estimate is a mean: guidance moves the class mean mu_c by w (mu_c - mu)
    mu_c, mu = images[labels == 0].mean(0), images.mean(0)
    far = Guided(d, w)(torch.randn(1, *SHAPE), 1e5, torch.tensor([0]))[0]
    assert torch.allclose(far, mu_c + w * (mu_c - mu), atol=1e-4)


def test_class_gaussian_rejects_bad_labels(data):
    images, labels = data
    d = ClassGaussianDenoiser(images, labels)
    with pytest.raises(ValueError, match="needs labels"):
        d(torch.zeros(1, *SHAPE), 1.0)
    with pytest.raises(ValueError, match=r"in \[0, 3\]"):
        d(torch.zeros(1, *SHAPE), 1.0, torch.tensor([4]))
    with pytest.raises(ValueError, match="no image: \\[3\\]"):
        ClassGaussianDenoiser(images, labels, num_classes=4)
    with pytest.raises(ValueError, match="one label per image"):
        ClassGaussianDenoiser(images, labels[:-1])


# ----------------------------------------------------------------------------- guidance: clear errors first


def test_guidance_on_an_unconditional_model_is_a_clear_error(unconditional):
    with pytest.raises(ValueError, match="needs a class-conditional model.*this one is unconditional"):
        Guided(unconditional, 1.0)
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        Guided(GaussianDenoiser.from_data(torch.randn(10, *SHAPE)), 1.0)


@pytest.mark.parametrize("w", [-0.5, math.nan, math.inf])
def test_guidance_scale_must_be_finite_and_non_negative(conditional, w):
    with pytest.raises(ValueError, match="finite number >= 0"):
        Guided(conditional, w)


def test_guided_labels_are_checked_before_sampling(conditional):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        generate(Guided(conditional, 1.0), [0, 1], SHAPE, steps=2, labels=[0, 7])
    with pytest.raises(ValueError, match="pass labels="):
        generate(Guided(conditional, 1.0), [0, 1], SHAPE, steps=2)
    assert Guided(conditional, 1.0).null_label == 3


def test_shared_null_guidance_is_guided_with_another_models_null_estimate(data, conditional, unconditional):
    images, labels = data
    gauss = ClassGaussianDenoiser(images, labels)
    x, sigma, cond = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(3)), 0.7, torch.tensor([0, 1, 2, 0, 1])
    # the unconditional estimate is the other model's null label (or an unconditional model, unlabelled)
    want = 3 * conditional(x, sigma, cond) - 2 * gauss(x, sigma, torch.full_like(cond, 3))
    assert torch.allclose(SharedNullGuided(conditional, gauss, 2.0)(x, sigma, cond), want, atol=1e-6)
    want = 3 * conditional(x, sigma, cond) - 2 * unconditional(x, sigma)
    assert torch.allclose(SharedNullGuided(conditional, unconditional, 2.0)(x, sigma, cond), want, atol=1e-6)
    # with its own null it is Guided; at w = 0 it is the conditional model
    assert torch.allclose(SharedNullGuided(gauss, gauss, 1.5)(x, sigma, cond), Guided(gauss, 1.5)(x, sigma, cond),
                          atol=1e-6)
    assert torch.equal(SharedNullGuided(conditional, gauss, 0.0)(x, sigma, cond), conditional(x, sigma, cond))
    # the difference between two models guided by one shared null is (1 + w) times their conditional difference
    d = SharedNullGuided(conditional, gauss, 2.0)(x, sigma, cond) - SharedNullGuided(gauss, gauss, 2.0)(x, sigma, cond)
    assert torch.allclose(d, 3 * (conditional(x, sigma, cond) - gauss(x, sigma, cond)), atol=1e-5)


def test_shared_null_guidance_fails_before_sampling(conditional, unconditional, data):
    gauss = ClassGaussianDenoiser(*data)
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        SharedNullGuided(unconditional, gauss, 1.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        SharedNullGuided(conditional, gauss, -1.0)
    with pytest.raises(ValueError, match="must be a denoiser"):
        SharedNullGuided(conditional, lambda x, s, c=None: x, 1.0)
    with pytest.raises(ValueError, match="takes no null_label"):
        SharedNullGuided(conditional, unconditional, 1.0, null_label=3)
    with pytest.raises(ValueError, match=r"null_label must lie in \[0, 3\]"):
        SharedNullGuided(conditional, gauss, 1.0, null_label=7)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        generate(SharedNullGuided(conditional, gauss, 1.0), [0, 1], SHAPE, steps=2, labels=[0, 7])

    class Cropping(torch.nn.Module):  # an unconditional "denoiser" of another image shape
        def forward(self, x, sigma, cond=None):
            return x[..., :2, :2]

    with pytest.raises(ValueError, match="one image shape"):
        SharedNullGuided(conditional, Cropping(), 1.0)(torch.randn(2, *SHAPE), 0.5, torch.tensor([0, 1]))


def test_shared_null_control(data, conditional):
    images, labels = data
    torch.manual_seed(1)
    other = Precond(build_backbone("mlp-xs", SHAPE, num_classes=3), "edm")
    gauss = ClassGaussianDenoiser(images, labels)
    rule = SameImageRule(0.9, "a test threshold", "pixel")
    models, seeds, lab = {"a": conditional, "b": other, "gauss": gauss}, range(10), torch.arange(10) % 3
    control = shared_null_control(models, "gauss", seeds, lab, SHAPE, (0, 2), rule, steps=3)
    assert control.scales == [0.0, 2.0] and control.n_seeds == 10 and control.shared == "gauss"
    for kind in control.KINDS:
        assert set(control.rp[2.0][kind]) == {("a", "b"), ("a", "gauss"), ("b", "gauss")}
    # w = 0 uses no null: one run; at w = 2 the shared null changes the pairs without the shared model's twin
    assert control.mean_rp(0.0, "own null") == control.mean_rp(0.0, "shared null")
    own, shared = (control.rp[2.0][k][("a", "b")].similarities for k in control.KINDS)
    assert not torch.equal(own, shared)
    kw = dict(labels=lab, steps=3)
    a_shared = generate(SharedNullGuided(conditional, gauss, 2.0), seeds, SHAPE, **kw)
    g_own = generate(Guided(gauss, 2.0), seeds, SHAPE, **kw)
    from reprodiff.metrics import paired_similarity
    assert torch.allclose(control.rp[2.0]["shared null"][("a", "gauss")].similarities,
                          paired_similarity(a_shared, g_own, "pixel"))
    # samples drawn already are reused (on the control's seeds), not drawn again
    study = guidance_study(models, range(12), torch.arange(12) % 3, SHAPE, (0, 2), rule,
                           QualityClassifier(images, labels), steps=3)
    reused = shared_null_control(models, "gauss", seeds, lab, SHAPE, (0, 2), rule, own=study.samples, steps=3)
    assert torch.allclose(reused.rp[2.0]["own null"][("a", "b")].similarities, own)
    med, lo, hi = control.median(2.0, "shared null", ("a", "b"))
    assert lo <= med <= hi and med == pytest.approx(float(shared.median()))
    rows = control.table({"a": "a", "b": "b", "gauss": "g"}).splitlines()
    assert len(rows) == 1 + 2 * 3 + 1 and rows[4].split()[:4] == ["2", "a", "vs", "b"]
    # bad input fails before sampling
    with pytest.raises(ValueError, match="not one of the models"):
        shared_null_control(models, "nobody", seeds, lab, SHAPE, (1,), rule, steps=3)
    with pytest.raises(ValueError, match="one label per seed"):
        shared_null_control(models, "gauss", seeds, lab[:3], SHAPE, (1,), rule, steps=3)
    with pytest.raises(ValueError, match="finite number >= 0"):
        shared_null_control(models, "gauss", seeds, lab, SHAPE, (1, -2), rule, steps=3)


# ----------------------------------------------------------------------------- the guidance study


def test_within_label_similarity():
    same = torch.randn(1, *SHAPE).repeat(6, 1, 1, 1)
    s = Samples(same, torch.arange(6), labels=torch.arange(6) % 2)
    assert within_label_similarity(s) == pytest.approx(1.0)
    varied = Samples(torch.randn(6, *SHAPE), torch.arange(6), labels=torch.arange(6) % 2)
    assert within_label_similarity(varied) < 0.9
    with pytest.raises(ValueError, match="carry no labels"):
        within_label_similarity(Samples(same, torch.arange(6)))
    with pytest.raises(ValueError, match="at least two samples of one label"):
        within_label_similarity(Samples(same[:2], torch.arange(2), labels=torch.tensor([0, 1])))


def test_guidance_study(data, conditional):
    images, labels = data
    torch.manual_seed(1)
    other = Precond(build_backbone("mlp-xs", SHAPE, num_classes=3), "edm")
    clf = QualityClassifier(images, labels)
    rule = SameImageRule(0.9, "a test threshold", "pixel")
    seeds, gauss = range(12), ClassGaussianDenoiser(images, labels)
    # the closed form is both a model and the reference: it must score RP 1 with itself at every w
    models = {"a": conditional, "b": other, "gauss": gauss}
    study = guidance_study(models, seeds, torch.arange(12) % 3, SHAPE, (0, 2), rule, clf, reference=gauss, steps=3)
    assert study.scales == [0.0, 2.0]
    assert set(study.rp[2.0]) == {("a", "b"), ("a", "gauss"), ("b", "gauss")} and study.rp[2.0][("a", "b")].n == 12
    assert set(study.accuracy[0.0]) == set(study.reference[2.0]) == set(models)
    assert len(study.reference_samples[2.0]) == 12
    for w in study.scales:  # the reference is sampled with the models' seeds, labels and scale
        assert study.reference[w]["gauss"].value == 1.0
        assert torch.equal(study.reference_samples[w].images, study.samples[w]["gauss"].images)
        values = [s.value for s in study.rp[w].values()]
        assert study.mean_rp(w) == pytest.approx(sum(values) / 3) and len(set(values)) > 1  # pairs differ
    # w = 0 is the plain conditional model; w = 2 is guidance at that scale, and it moves the samples
    plain = generate(conditional, seeds, SHAPE, steps=3, labels=torch.arange(12) % 3)
    assert torch.equal(study.samples[0.0]["a"].images, plain.images)
    guided = generate(Guided(gauss, 2.0), seeds, SHAPE, steps=3, labels=torch.arange(12) % 3)
    assert torch.equal(study.samples[2.0]["gauss"].images, guided.images)
    assert not torch.equal(guided.images, study.samples[0.0]["gauss"].images)
    # the table (chapter 6 prints it): one row per scale, in order, with that scale's means
    rows = [line.split() for line in study.table().splitlines()[2:2 + len(study.scales)]]
    for w, row in zip(study.scales, rows):
        means = [study.mean_rp(w), *(sum(d[w].values()) / 3 for d in (study.accuracy, study.similarity)),
                 sum(s.value for s in study.reference[w].values()) / 3]
        assert [float(x) for x in row] == pytest.approx([w, *means], abs=0.006)


def test_guidance_study_fails_before_sampling_on_an_unconditional_model(conditional, unconditional, data):
    images, labels = data
    rule = SameImageRule(0.9, "a test threshold", "pixel")
    with pytest.raises(ValueError, match="needs a class-conditional model"):
        guidance_study({"a": conditional, "b": unconditional}, range(4), torch.arange(4) % 3, SHAPE, (0, 1), rule,
                       QualityClassifier(images, labels), steps=2)


# ----------------------------------------------------------------------------- text-to-image plumbing


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    from reprodiff.smoke import write_text_pipeline

    return {name: write_text_pipeline(root / name, seed) for name, seed in (("v1", 0), ("v2", 1))}


def test_text_to_image_from_the_same_latent_noise(tiny_pipelines):
    from diffusers import DDIMScheduler

    from reprodiff.metrics import paired_similarity
    from reprodiff.text2image import latent_shape, load_pipeline, pipeline_call, same_latent_images

    pipes = {name: load_pipeline(path) for name, path in tiny_pipelines.items()}
    assert all(isinstance(p.scheduler, DDIMScheduler) for p in pipes.values())
    assert latent_shape(pipes["v1"]) == (4, 8, 8)
    prompts, seeds = ("a red cat", "a dog"), [5, 9, 11]
    out = same_latent_images(pipes, prompts, seeds, steps=4, guidance=3.0, batch_size=2)
    s = out["v1"]
    assert s.images.shape == (6, 3, 16, 16) and s.images.abs().max() <= 1
    assert s.seeds.tolist() == list(range(6)) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # sample 1 is prompt 0 from seed 9: exactly the latent noise of seed 9, and deterministic
    direct = pipeline_call(pipes["v1"], prompts[0], noise_for_seeds([9], (4, 8, 8)), 4, 3.0, 16, 16)
    assert torch.allclose(s.images[1], direct[0], atol=1e-3)  # batch of 2 vs 1: float rounding
    again = same_latent_images({"v1": pipes["v1"]}, prompts, seeds, steps=4, guidance=3.0, batch_size=2)
    assert torch.allclose(again["v1"].images, s.images, atol=1e-5)
    assert paired_similarity(s, out["v2"]).shape == (6,)  # the two versions pair up by id


def test_text_to_image_guards(tiny_pipelines, tmp_path):
    from reprodiff.data import ResourceUnavailableError
    from reprodiff.text2image import latent_shape, load_pipeline, same_latent_images

    pipe = load_pipeline(tiny_pipelines["v1"])
    with pytest.raises(ValueError, match="multiples of 2"):
        latent_shape(pipe, 15, 16)
    big = load_pipeline(tiny_pipelines["v2"])
    big.unet.register_to_config(sample_size=16)  # native size 32 px: latents 16 x 16, not 8 x 8
    with pytest.raises(ValueError, match="latent shapes differ"):
        same_latent_images({"a": pipe, "b": big}, ["x"], [0], steps=2)
    with pytest.raises(ValueError, match="at least one pipeline"):
        same_latent_images({}, ["x"], [0])
    with pytest.raises(ResourceUnavailableError, match="cannot load the text-to-image checkpoint"):
        load_pipeline(str(tmp_path / "missing"))


# ----------------------------------------------------------------------------- chapter helpers


def test_score_interval_and_rp_bars():
    import matplotlib

    matplotlib.use("Agg")
    from reprodiff.metrics import Score
    from reprodiff.plots import rp_bars

    a = Score("RP", 0.684, (0.641, 0.7249), 500, 0.98, "a rule", "pixel")
    b = Score("RP", 0.5, (0.45, 0.55), 500, 0.98, "a rule", "pixel")
    assert a.interval() == "0.68 [0.64, 0.72]"
    fig = rp_bars({"conditional": [a, b], "unconditional": [b, a]}, ["pair 1", "pair 2"], "title")
    ax = fig.axes[0]
    assert [round(p.get_height(), 3) for p in ax.patches] == [0.684, 0.5, 0.5, 0.684]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pair 1", "pair 2"]
    with pytest.raises(ValueError, match="has 1 scores for 2 labels"):
        rp_bars({"conditional": [a]}, ["pair 1", "pair 2"])


def test_the_regimes_section_runs_on_the_configured_first_seeds():
    from dataclasses import replace

    from reprodiff.profiles import get_config

    cpu = get_config("conditional")
    assert cpu.regime_seed_count == 250 < cpu.n_seeds and "sampling seeds 0-249" in cpu.summary()
    assert 0.5 not in cpu.guidance_scales and set(cpu.control_scales) <= set(cpu.guidance_scales)
    assert replace(cpu, regime_seeds_count=0).regime_seed_count == cpu.n_seeds  # 0: every seed of the chapter
    assert get_config("conditional", "gpu").regime_seed_count == get_config("conditional", "gpu").n_seeds
    for bad in (-1, cpu.n_seeds + 1, 2.5, True):
        with pytest.raises(ValueError, match="regime_seeds_count must be an integer from 0"):
            replace(cpu, regime_seeds_count=bad)


def test_planned_text_to_image_calls_are_python_that_names_the_real_arguments():
    import ast
    import inspect

    from reprodiff.profiles import get_config
    from reprodiff.text2image import load_pipeline, planned_calls, same_latent_images

    cfg = get_config("conditional", "gpu")
    code = planned_calls(cfg)
    tree = ast.parse(code)  # it must be Python a reader can paste
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for fn in (load_pipeline, same_latent_images):
        params = inspect.signature(fn).parameters
        assert {k.arg for k in calls[fn.__name__].keywords if k.arg} <= set(params)
    assert all(repr(i) in code for i in cfg.text_models.values()) and all(repr(p) in code for p in cfg.prompts)
    assert f"range({cfg.text_seeds})" in code and f"steps={cfg.text_steps}," in code
    assert code.endswith(f"threshold=book_rule({cfg.dataset!r}, {cfg.descriptor!r}))")


def test_text_study_scores_every_pipeline_pair_from_the_same_latents(tiny_pipelines):
    from types import SimpleNamespace

    from reprodiff.metrics import SameImageRule
    from reprodiff.text2image import text_study

    cfg = SimpleNamespace(text_models={k: str(v) for k, v in tiny_pipelines.items()}, prompts=("a red cat", "a dog"),
                          text_seeds=2, text_steps=3, text_guidance=3.0)
    m, text = text_study(cfg, "pixel", SameImageRule(0.99, "test", "pixel"))
    assert list(text) == ["v1", "v2"] and text["v1"].images.shape == (4, 3, 16, 16)
    assert m.values.shape == (2, 2) and torch.all(m.values.diagonal() == 1)
    # a pipeline against itself reproduces every image, against another checkpoint not all of them
    same, _ = text_study(SimpleNamespace(**{**vars(cfg), "text_models": {"a": cfg.text_models["v1"],
                                                                           "b": cfg.text_models["v1"]}}),
                         "pixel", SameImageRule(0.99, "test", "pixel"))
    assert float(same.values[0, 1]) == 1.0 and float(m.values[0, 1]) < 1.0
