import pytest
import torch

from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.inverse import (Downsampling, GaussianBlur, Inpainting, box_mask, gaussian_posterior_mean,
                               make_operator, measure, pseudo_inverse, random_mask, reconstruct, residual_norm)
from reprodiff.metrics import psnr
from reprodiff.sampling import generate

SHAPE = (1, 8, 8)
OPS = {
    "box": lambda shape: make_operator("box-inpainting", shape, top=4, left=0, height=4, width=shape[2]),
    "random": lambda shape: make_operator("random-inpainting", shape, observed=0.3, seed=1),
    "sr": lambda shape: make_operator("super-resolution", shape, factor=2),
    "blur": lambda shape: make_operator("deblurring", shape, size=5, width=1.0),
}


@pytest.mark.parametrize("shape", [SHAPE, (3, 8, 8)])
@pytest.mark.parametrize("kind", OPS)
def test_adjoint_is_the_transpose_and_autograds_gradient(kind, shape):
    op = OPS[kind](shape)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, *op.measurement_shape(shape), generator=g, dtype=torch.float64)
    inner = (op(x) * y).sum()
    (grad,) = torch.autograd.grad(inner, x)
    torch.testing.assert_close(grad, op.adjoint(y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inner.detach(), (x.detach() * op.adjoint(y)).sum(), rtol=1e-12, atol=1e-12)
    matrix = op.matrix(shape)
    torch.testing.assert_close(op(x.detach()).reshape(3, -1), x.detach().reshape(3, -1) @ matrix.T)
    assert torch.autograd.gradcheck(op, (x[:1],))


def test_operators_measure_what_they_say(digits):
    x = digits[:4]
    mask = box_mask(SHAPE, 2, 2, 4, 4)
    assert mask.sum() == 48 and Inpainting(mask).observed == 0.75
    op = Inpainting(mask)
    assert op(x).shape == (4, 48) and op.measurement_shape((3, 8, 8)) == (144,)
    torch.testing.assert_close(op(x), x.reshape(4, -1)[:, mask.reshape(-1) == 1], rtol=0, atol=0)
    assert torch.equal(op.view(op(x))[..., 2:6, 2:6], torch.zeros(4, 1, 4, 4))
    torch.testing.assert_close(op.view(op(x)), x * mask, rtol=0, atol=0)
    # noise falls on the observed pixels only: the noise floor is sigma_y sqrt(48), not sigma_y sqrt(64)
    noise = measure(op, x.repeat(64, 1, 1, 1), 0.05) - op(x.repeat(64, 1, 1, 1))
    assert noise.shape == (256, 48) and abs(noise.norm(dim=1).mean() - 0.05 * 48**0.5) < 0.01
    assert random_mask(SHAPE, 0.3).sum() == round(0.3 * 64)
    torch.testing.assert_close(Downsampling(2)(x)[:, :, 0, 0], x[:, :, :2, :2].mean((2, 3)))
    blurred = GaussianBlur(5, 1.0)(x)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    # float64 (covariances, residuals) takes two matrix products instead of a convolution: the same blur
    for size, width, shape in ((5, 1.0, (1, 8, 8)), (9, 2.0, (3, 12, 10))):
        op, x64 = GaussianBlur(size, width), torch.randn(4, *shape, dtype=torch.float64)
        conv = torch.nn.functional.conv2d(x64, op.kernel.expand(shape[0], 1, size, size), padding=size // 2,
                                          groups=shape[0])
        torch.testing.assert_close(op(x64), conv, rtol=0, atol=1e-12)
        torch.testing.assert_close(op(x64.float()), conv.float())


def test_measurement_noise_belongs_to_each_image_seed(digits):
    op = OPS["sr"](SHAPE)
    y = measure(op, digits[:6], 0.05, seeds=range(6))
    torch.testing.assert_close(measure(op, digits[[2, 3]], 0.05, seeds=[2, 3]), y[2:4], rtol=0, atol=0)
    assert torch.equal(measure(op, digits[:6], 0.0), op(digits[:6]))
    assert 0.03 < (y - op(digits[:6])).std() < 0.07


def test_pseudo_inverse_is_least_squares(digits):
    x = digits[:5]
    sr = OPS["sr"](SHAPE)
    up = pseudo_inverse(sr, sr(x), SHAPE)
    torch.testing.assert_close(sr(up), sr(x), rtol=0, atol=1e-6)  # A A^+ y = y for a full-rank A
    box = OPS["box"](SHAPE)
    filled = pseudo_inverse(box, box(x), SHAPE)
    torch.testing.assert_close(filled, box.view(box(x)), rtol=0, atol=1e-6)  # missing pixels: minimum norm, 0


@pytest.mark.parametrize("shape", [SHAPE, (3, 8, 8)])
@pytest.mark.parametrize("kind", OPS)
def test_closed_forms_match_their_dense_matrix_formulas(kind, shape, digits):
    """The shortcuts (mask and block-average pseudo-inverses, the per-channel eigh pseudo-inverse of
    the symmetric blur, the posterior mean from operator applications) are the textbook dense formulas."""
    op = OPS[kind](shape)
    a = op.matrix(shape)
    g = torch.Generator().manual_seed(3)
    y = 0.3 * torch.randn(4, *op.measurement_shape(shape), generator=g)
    dense = (y.reshape(4, -1).double() @ torch.linalg.pinv(a, rtol=1e-3).T).float().reshape(4, *shape).clamp(-1, 1)
    torch.testing.assert_close(pseudo_inverse(op, y, shape), dense, rtol=0, atol=1e-5)
    prior = GaussianDenoiser.from_data(digits[:600].repeat(1, shape[0], 1, 1)
                                       + 0.1 * torch.randn(600, *shape, generator=g))
    cov = (prior.evecs * prior.evals) @ prior.evecs.T
    gram = a @ cov @ a.T + 0.05**2 * torch.eye(a.shape[0], dtype=torch.float64)
    post = prior.mean + torch.linalg.solve(gram, (y.reshape(4, -1).double() - prior.mean @ a.T).T).T @ a @ cov
    torch.testing.assert_close(gaussian_posterior_mean(op, y, prior, 0.05, shape),
                               post.float().reshape(4, *shape).clamp(-1, 1), rtol=0, atol=1e-5)


def test_gaussian_posterior_mean_is_the_gaussian_denoiser_when_everything_is_observed(digits, gaussian):
    full = Inpainting(torch.ones(8, 8))
    noisy = digits[1500:1504] + 0.3 * torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    post = gaussian_posterior_mean(full, noisy.reshape(4, -1), gaussian, 0.3, SHAPE)
    torch.testing.assert_close(post, gaussian(noisy, 0.3).float().clamp(-1, 1), rtol=0, atol=1e-5)
    # observing more never moves the posterior mean further from the truth, on average
    x = digits[1500:1564]
    errors = []
    for observed in (0.2, 0.6, 1.0):
        op = make_operator("random-inpainting", SHAPE, observed=observed)
        errors.append(float(((gaussian_posterior_mean(op, measure(op, x, 0.05), gaussian, 0.05, SHAPE) - x) ** 2).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_deterministic_dps_is_bit_identical_twice_and_zeta_zero_is_the_plain_sampler(digits, gaussian):
    op = OPS["box"](SHAPE)
    y = measure(op, digits[1500:1508], 0.05)
    a = reconstruct(gaussian, op, y, range(8), SHAPE, zeta=1.0, steps=8)
    b = reconstruct(gaussian, op, y, range(8), SHAPE, zeta=1.0, steps=8)
    assert torch.equal(a.images, b.images)
    plain = generate(gaussian, range(8), SHAPE, sampler="dpmpp-2m", steps=8)
    assert torch.equal(reconstruct(gaussian, op, y, range(8), SHAPE, zeta=0.0, steps=8).images, plain.images)
    assert not torch.equal(a.images, plain.images)
    # the stochastic control with zeta = 0 is the ancestral sampler on the same injected noise
    ancestral = generate(gaussian, range(8), SHAPE, sampler="euler-ancestral", steps=8, step_noise_stream=2)
    stochastic = reconstruct(gaussian, op, y, range(8), SHAPE, zeta=0.0, steps=8, step_noise_stream=2)
    assert torch.equal(stochastic.images, ancestral.images)


@pytest.mark.parametrize("prior", ["gaussian", "optimal"])
def test_dps_fits_the_measurement_for_any_denoiser(digits, gaussian, prior):
    denoiser = gaussian if prior == "gaussian" else OptimalDenoiser(digits[:1500])
    op = OPS["sr"](SHAPE)
    truth = digits[1500:1532]
    y = measure(op, truth, 0.05)
    free = reconstruct(denoiser, op, y, range(32), SHAPE, zeta=0.0, steps=12)
    guided = reconstruct(denoiser, op, y, range(32), SHAPE, zeta=1.0, steps=12)
    fit, free_fit = residual_norm(op, guided.images, y).mean(), residual_norm(op, free.images, y).mean()
    if prior == "gaussian":
        assert fit < 0.5 * free_fit
        assert psnr(guided.images, truth).mean() > psnr(free.images, truth).mean() + 3
    else:  # D* can only return training images: guidance picks better-fitting ones, no more
        assert fit < 0.9 * free_fit


def test_psnr():
    x = torch.zeros(2, 1, 4, 4)
    assert torch.isinf(psnr(x, x)).all()
    torch.testing.assert_close(psnr(x + 0.2, x), torch.full((2,), 20.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        psnr(x, torch.zeros(2, 1, 4, 5))


def test_bad_input_fails_before_any_sampling(digits, gaussian):
    op = OPS["sr"](SHAPE)
    y = measure(op, digits[:4], 0.05)
    with pytest.raises(ValueError, match=r"must be \(4, 1, 4, 4\), got \(4, 1, 8, 8\)"):
        reconstruct(gaussian, op, digits[:4], range(4), SHAPE, zeta=1.0)
    with pytest.raises(ValueError, match=r"must be \(3, 1, 4, 4\)"):
        reconstruct(gaussian, op, y, range(3), SHAPE, zeta=1.0)
    with pytest.raises(ValueError, match="zeta"):
        reconstruct(gaussian, op, y, range(4), SHAPE, zeta=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        reconstruct(gaussian, op, torch.full_like(y, float("nan")), range(4), SHAPE, zeta=1.0)
    with pytest.raises(ValueError, match="mask is"):
        Inpainting(torch.ones(6, 6))(digits[:2])
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(H, W\)"):
        Inpainting(torch.ones(8))
    with pytest.raises(ValueError, match="only 0"):
        Inpainting(torch.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="does not fit"):
        box_mask(SHAPE, 6, 0, 4, 8)
    with pytest.raises(ValueError, match="observed"):
        random_mask(SHAPE, 0.0)
    with pytest.raises(ValueError, match="divide by 3"):
        make_operator("super-resolution", SHAPE, factor=3)
    with pytest.raises(ValueError, match="odd integer"):
        GaussianBlur(4)
    with pytest.raises(ValueError, match="unknown operator"):
        make_operator("colorization", SHAPE)


# ----------------------------------------------------------------------------- the chapter's drivers


def test_inverse_study_scores_models_baselines_and_controls(digits, gaussian):
    from reprodiff.experiments import inverse_study
    from reprodiff.metrics import same_image_rule

    rule = same_image_rule(digits[:1500], digits[1500:], "pixel", dataset="digits")
    models = {"gauss": gaussian, "opt": OptimalDenoiser(digits[:1500]), "gauss again": gaussian}
    study = inverse_study(models, OPS["box"](SHAPE), digits[1500:1524], gaussian, rule=rule, noise_std=0.05,
                          zeta=1.0, steps=6, task="box")
    assert study.rp.labels == ["gauss", "opt", "gauss again"] and study.rp.n == 24
    assert study.rp.values[0, 2] == 1.0  # one denoiser twice: the deterministic solver is a function
    assert set(study.controls) == {"same model, other noise", "stochastic, between models", "stochastic, same model"}
    assert study.controls["same model, other noise"].value < 1.0
    assert set(study.psnr) == set(study.residual) == {*models, *study.baselines}
    assert 0.2 < study.noise_floor < 0.6  # ||0.05 n|| over the 32 observed pixels
    curves = study.pair_similarities()
    assert len(curves["model vs model (all pairs)"]) == 3 * 24
    # what chapter 7 prints: model_rp in pair order, every model against A^+ y, and the table
    assert study.model_rp.tolist() == [study.rp.values[0, 1].item(), 1.0, study.rp.values[1, 2].item()]
    ls = study.vs_baselines["A^+ y (least squares)"]  # one score per model, in order
    assert len(ls) == 3 and ls[0].n == 24 and torch.equal(ls[0].similarities, ls[2].similarities)
    table = study.table().splitlines()
    assert table[0] == "box: 24 held-out images, zeta 1" and len(table) == 3 + len(models) + len(study.baselines)
    first, again = table[3].split(), table[5].split()  # rows: the first model (no RP with itself), ...
    assert first == ["gauss", f"{study.psnr['gauss']:.1f}", f"{study.residual['gauss']:.3f}",
                     f"{study.residual['gauss'] / study.noise_floor:.2f}"]
    assert again[:2] == ["gauss", "again"] and again[5] == "1.00"
    assert study.pair_rp("gauss", "gauss again") == (1.0, study.rp.lower[0, 2].item(), study.rp.upper[0, 2].item())
    assert study.sample_mean is None


def test_inverse_study_runs_priors_from_the_same_noise_and_averages_samples(digits, gaussian):
    from reprodiff.experiments import inverse_study
    from reprodiff.metrics import same_image_rule

    rule = same_image_rule(digits[:1500], digits[1500:], "pixel", dataset="digits")
    op, truth = OPS["sr"](SHAPE), digits[1500:1516]
    kw = dict(rule=rule, noise_std=0.05, zeta=1.0, steps=6, task="sr")
    models = {"gauss": gaussian, "opt": OptimalDenoiser(digits[:1500])}
    study = inverse_study(models, op, truth, gaussian, priors={"DPS, Gaussian prior": gaussian},
                          posterior_samples=3, **kw)
    # the prior runs the same DPS from the same noise: the same denoiser as a model gives the same images
    prior_run = study.baselines["DPS, Gaussian prior"]
    assert torch.equal(prior_run.images, study.reconstructions["gauss"].images)
    assert [s.value for s in study.vs_baselines["DPS, Gaussian prior"]][0] == 1.0
    # the mean of 3: the first model from noise streams 0, 7 and 8, averaged image by image
    y = measure(op, truth, 0.05, range(16))
    draws = [reconstruct(gaussian, op, y, range(16), SHAPE, zeta=1.0, steps=6, noise_stream=k).images
             for k in (0, 7, 8)]
    torch.testing.assert_close(study.sample_mean.images, torch.stack(draws).mean(0), rtol=0, atol=1e-6)
    assert study.sample_mean.name == "gauss, mean of 3" and "gauss, mean of 3" in study.psnr
    assert study.psnr["gauss, mean of 3"] > study.psnr["gauss"]  # averaging samples moves towards the mean
    gap = study.psnr_gap("gauss, mean of 3", "gauss")
    assert gap[1] < gap[0] < gap[2] and abs(gap[0] - (study.psnr["gauss, mean of 3"] - study.psnr["gauss"])) < 1e-9
    table = study.table().splitlines()
    assert table[-1].split()[:4] == ["gauss,", "mean", "of", "3"] and len(table) == 3 + 2 + 3 + 1
    with pytest.raises(ValueError, match="posterior_samples"):
        inverse_study(models, op, truth, gaussian, posterior_samples=0, **kw)


def test_inverse_study_averages_samples_on_the_first_images_and_compares_on_them(digits, gaussian):
    from reprodiff.experiments import inverse_study
    from reprodiff.metrics import same_image_rule

    rule = same_image_rule(digits[:1500], digits[1500:], "pixel", dataset="digits")
    op, truth = OPS["box"](SHAPE), digits[1500:1516]
    kw = dict(rule=rule, noise_std=0.05, zeta=1.0, steps=6, task="box")
    models = {"gauss": gaussian, "opt": OptimalDenoiser(digits[:1500])}
    full = inverse_study(models, op, truth, gaussian, posterior_samples=3, **kw)
    part = inverse_study(models, op, truth, gaussian, posterior_samples=3, posterior_seeds=6, **kw)
    # the mean of the first 6 images is the full run's, and nothing else changes
    assert len(part.sample_mean) == 6 and part.sample_mean.seeds.tolist() == list(range(6))
    torch.testing.assert_close(part.sample_mean.images, full.sample_mean.images[:6], rtol=0, atol=1e-6)
    assert part.psnr["gauss"] == full.psnr["gauss"] and len(part.truth) == 16
    assert part.controls["same model, other noise"].n == 16
    mean = "gauss, mean of 3"
    assert part.psnr[mean] == pytest.approx(float(psnr(part.sample_mean.images, truth[:6]).mean()))
    # like for like: one sample, the mean and the Gaussian posterior mean on the same 6 images
    on6 = part.posterior_psnr()
    assert list(on6) == ["gauss", mean, "Gaussian posterior mean"]
    for name, rec in (("gauss", part.reconstructions["gauss"]), ("Gaussian posterior mean",
                                                                part.baselines["Gaussian posterior mean"])):
        assert on6[name] == pytest.approx(float(psnr(rec.images[:6], truth[:6]).mean()))
        assert on6[name] != pytest.approx(part.psnr[name])  # the 16-image mean differs
    gap = part.psnr_gap(mean, "gauss")
    assert gap[0] == pytest.approx(on6[mean] - on6["gauss"]) and gap[1] < gap[0] < gap[2]
    assert full.posterior_psnr()["gauss"] == pytest.approx(full.psnr["gauss"])  # all images: the table's
    assert part.table().splitlines()[-1].endswith("on images 0-5 only")
    with pytest.raises(ValueError, match="no sample mean"):
        inverse_study(models, op, truth[:4], gaussian, **kw).posterior_psnr()
    for bad in (-1, 17, 2.5, True):
        with pytest.raises(ValueError, match="posterior_seeds"):
            inverse_study(models, op, truth, gaussian, posterior_samples=3, posterior_seeds=bad, **kw)


def test_dps_sensitivity_covers_the_grid(digits, gaussian):
    from reprodiff.experiments import dps_sensitivity
    from reprodiff.metrics import same_image_rule

    rule = same_image_rule(digits[:1500], digits[1500:], "pixel")
    out = dps_sensitivity(gaussian, OptimalDenoiser(digits[:1500]), OPS["sr"](SHAPE), digits[1500:1516], rule=rule,
                          noise_std=0.05, zetas=(0.0, 1.0), step_counts=(4, 8))
    assert sorted(out) == [(0.0, 4), (0.0, 8), (1.0, 4), (1.0, 8)]
    assert out[(1.0, 8)]["residual"] < out[(0.0, 8)]["residual"]
    assert all(r["rp"].n == 16 for r in out.values())
    # the floor is the norm of the measurement noise: 0.05 sqrt(16) for the 16 pixels of a 4x4 measurement
    assert len({r["floor"] for r in out.values()}) == 1 and abs(out[(0.0, 4)]["floor"] - 0.05 * 4) < 0.03
    other = dps_sensitivity(gaussian, gaussian, OPS["sr"](SHAPE), digits[1500:1516], rule=rule, noise_std=0.05,
                            zetas=(1.0,), step_counts=(4,), seeds=range(300, 316))
    assert other[(1.0, 4)]["rp"].value == 1.0 and other[(1.0, 4)]["floor"] != out[(1.0, 4)]["floor"]
    with pytest.raises(ValueError, match="one seed per image"):
        dps_sensitivity(gaussian, gaussian, OPS["sr"](SHAPE), digits[:4], rule=rule, noise_std=0.05, zetas=(1.0,),
                        step_counts=(4,), seeds=range(3))


def test_choose_zeta_asks_for_the_fit_of_a_posterior_sample():
    from reprodiff.experiments import choose_zeta

    grid = {(0.3, 20): dict(residual=1.5, floor=0.5, psnr=11.0), (1.0, 20): dict(residual=0.75, floor=0.5, psnr=13.0),
            (3.0, 20): dict(residual=0.375, floor=0.5, psnr=15.0), (1.0, 40): dict(residual=0.5, floor=0.5, psnr=14.0)}
    assert choose_zeta(grid, 20) == 3.0  # 0.75 of the floor beats 1.5, whatever the PSNR
    assert choose_zeta(grid, 40) == 1.0
    grid[(0.5, 20)] = dict(residual=0.625, floor=0.5, psnr=0.0)  # 1.25 against 0.75: a tie goes to the smaller scale
    assert choose_zeta(grid, 20) == 0.5
    with pytest.raises(ValueError, match="no 10-step entry"):
        choose_zeta(grid, 10)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_every_profiles_tasks_run_at_its_image_size(profile):
    """The gpu profile's code path, run here at toy scale: its operators at CIFAR-10's size, the closed
    forms on 3,072 pixels, DPS through an untrained backbone of its first model."""
    from reprodiff.profiles import get_config
    from reprodiff.training import build_model

    cfg = get_config("inverse", profile)
    shape = (3, 32, 32) if cfg.dataset == "cifar10" else SHAPE
    first = next(iter(cfg.models.values()))
    images = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    prior = GaussianDenoiser.from_data(torch.rand(64, *shape, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    net = build_model(first, shape, 10) if profile == "gpu" else prior
    for task in cfg.tasks.values():
        op = make_operator(task.operator, shape, **task.kwargs)
        y = measure(op, images, cfg.noise_std)
        assert pseudo_inverse(op, y, shape).shape == images.shape
        assert gaussian_posterior_mean(op, y, prior, cfg.noise_std, shape).shape == images.shape
    rec = reconstruct(net, op, y, range(2), shape, zeta=cfg.tuning_zetas[0], steps=2)
    assert rec.images.shape == images.shape and torch.isfinite(rec.images).all()


def test_inverse_config_refuses_a_sensitivity_study_it_cannot_run():
    from dataclasses import replace

    from reprodiff.profiles import get_config

    cfg = get_config("inverse")
    with pytest.raises(ValueError, match="sensitivity"):
        replace(cfg, sensitivity_task="colorization")
    with pytest.raises(ValueError, match="at least two models"):
        replace(cfg, models=dict(list(cfg.models.items())[:1]))
    with pytest.raises(ValueError, match="same_arch"):
        replace(cfg, same_arch=("UNet-XS edm", "UNet-XS edm"))
    for bad in (-1, cfg.n_seeds + 1, 64.0):
        with pytest.raises(ValueError, match="posterior_seeds"):
            replace(cfg, posterior_seeds=bad)
    assert "mean of 4 reconstructions of UNet-XS edm, on seeds 0-127" in cfg.summary()
    assert "on every scored seed" in replace(cfg, posterior_seeds=0).summary()
    for profile in ("cpu", "gpu", "paper", "smoke"):  # scored and tuning images both come from the held-out set
        cfg = get_config("inverse", profile)
        assert set(cfg.same_arch) <= set(cfg.models)
        assert cfg.n_seeds + cfg.tuning_seeds <= next(iter(cfg.models.values())).holdout, profile
