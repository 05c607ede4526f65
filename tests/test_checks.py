"""Issue 30, items 2, 4 and 8: one validation layer (reprodiff.checks) for the numbers and image sets
that enter the public entry points; samplers never return a non-finite image; the sampling
docstring states what its bitwise promise depends on. Valid inputs give bitwise the same results."""

import math

import numpy as np
import pytest
import torch

import reprodiff.sampling as sampling
from reprodiff.backbones import build_backbone
from reprodiff.checks import NonFiniteError, finite_images, finite_number
from reprodiff.data import load_dataset
from reprodiff.denoisers import BlendedDenoiser, OptimalDenoiser, Precond, SmoothedOptimalDenoiser
from reprodiff.inverse import gaussian_posterior_mean, make_operator, measure, pseudo_inverse, random_mask, reconstruct
from reprodiff.metrics import (SameImageRule, bootstrap_ci, calibrate_threshold, gl_score, gu_memorization, psnr,
                               rp_matrix, rp_score, same_image_rule, survival)
from reprodiff.runtime import flush_denormal
from reprodiff.sampling import SAMPLERS, generate, generate_from_noise, karras_sigmas, noise_for_seeds

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def samples(gaussian):
    return generate(gaussian, range(16), SHAPE, steps=4)


def _with_nan(images: torch.Tensor, rows=(0,)) -> torch.Tensor:
    out = images.clone()
    for r in rows:
        out[r, 0, 2, 3] = float("nan")
    return out


# ----------------------------------------------------------------------------- the checks themselves


def test_finite_number_accepts_real_numbers_and_names_argument_value_and_range():
    assert finite_number("x", 2) == 2.0 and isinstance(finite_number("x", 2), float)
    assert finite_number("x", np.float32(0.5)) == 0.5
    assert finite_number("x", torch.tensor([0.25], dtype=torch.float64)) == 0.25
    assert finite_number("x", 0.0, low=0) == 0.0 and finite_number("x", 1.0, high=1) == 1.0
    cases = [
        (dict(value=float("nan")), r"x must be any finite number, got nan"),
        (dict(value=math.inf, low=0), r"x must be a finite number >= 0, got inf"),
        (dict(value=0.0, low=0, low_inclusive=False), r"x must be a finite number > 0, got 0\.0"),
        (dict(value=1.0, high=1, high_inclusive=False), r"x must be a finite number < 1, got 1\.0"),
        (dict(value=2.0, low=-1, high=1), r"x must be a number in \[-1, 1\], got 2\.0"),
        (dict(value=0.0, low=0, high=1, low_inclusive=False), r"x must be a number in \(0, 1\], got 0\.0"),
        (dict(value=True), r"x must be a number, got the bool True"),
        (dict(value="1"), r"x must be a real number, got '1'"),
        (dict(value=None), r"x must be a real number, got None"),
        (dict(value=1j), r"x must be a real number"),
        (dict(value=torch.ones(2)), r"x must be a real number, got a tensor of shape \(2,\)"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            finite_number("x", **kwargs)


def test_finite_images_passes_the_tensor_through_and_counts_bad_images():
    images = torch.zeros(5, *SHAPE)
    assert finite_images("images", images) is images
    assert finite_images("labels", torch.arange(3)) is not None  # integers are always finite
    bad = images.clone()
    bad[1, 0, 0, 0], bad[3, 0, 7, 7] = float("nan"), -float("inf")
    with pytest.raises(NonFiniteError, match=r"^train_images: 2 of 5 images hold NaN or inf values .*\[1, 3\]"):
        finite_images("train_images", bad)
    assert issubclass(NonFiniteError, ValueError)
    with pytest.raises(ValueError, match="must be a tensor"):
        finite_images("images", [[0.0]])


# ----------------------------------------------------------------------------- item 2: every image set of a score


def test_gl_score_refuses_a_nan_training_image(digits, samples):
    # the probe's 3o: one NaN training image turned GL 0.859 into 0.000 (topk ranks NaN highest)
    train = _with_nan(digits[:500])
    with pytest.raises(ValueError, match=r"train_images: 1 of 500 images hold NaN or inf"):
        gl_score(samples, train, threshold=0.9)
    with pytest.raises(ValueError, match=r"train_features: 1 of 500 images"):
        gl_score(samples, digits[:500], threshold=0.9, train_features=_with_nan(digits[:500]).reshape(500, -1))


def test_every_other_image_set_that_enters_a_score_is_checked(digits, samples):
    with pytest.raises(ValueError, match=r"train_images: 1 of 500"):
        same_image_rule(_with_nan(digits[:500]), digits[1500:1600])
    with pytest.raises(ValueError, match=r"heldout: 1 of 100"):
        same_image_rule(digits[:500], _with_nan(digits[1500:1600]))
    with pytest.raises(ValueError, match=r"train_images: 1 of 200"):
        gu_memorization(samples.images, _with_nan(digits[:200]))
    with pytest.raises(ValueError, match=r"^images: 1 of 16"):
        gu_memorization(_with_nan(samples.images), digits[:200])
    with pytest.raises(ValueError, match=r"reference: 1 of 16"):
        psnr(samples.images, _with_nan(digits[:16]))


# ----------------------------------------------------------------------------- item 4: numbers at the door


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma_min=0.0), r"sigma_min must be a finite number > 0, got 0\.0"),
    (dict(sigma_min=-1.0), r"sigma_min must be a finite number > 0, got -1\.0"),
    (dict(sigma_min=float("nan")), r"sigma_min must be a finite number > 0, got nan"),
    (dict(sigma_max=float("nan")), r"sigma_max must be a finite number > 0\.002, got nan"),
    (dict(sigma_max=float("inf")), r"sigma_max must be a finite number > 0\.002, got inf"),
    (dict(sigma_min=10.0, sigma_max=1.0), r"sigma_max must be a finite number > 10, got 1\.0"),
])
def test_the_sigma_grid_is_checked_before_any_sampling(gaussian, kwargs, match, monkeypatch):
    # the probe's 3l: NaN images (sigma_min 0, sigma_max nan/inf), a ComplexDouble error (-1), a reversed grid
    monkeypatch.setattr(sampling, "run_sampler", lambda *a, **k: pytest.fail("sampled before checking"))
    with pytest.raises(ValueError, match=match):
        generate(gaussian, [0, 1], SHAPE, steps=4, **kwargs)
    with pytest.raises(ValueError, match=match):
        generate_from_noise(gaussian, noise_for_seeds([0, 1], SHAPE), steps=4, **kwargs)
    with pytest.raises(ValueError, match=match):
        karras_sigmas(4, **kwargs)


def test_rho_must_be_positive():
    for rho in (0.0, float("nan"), -7.0):
        with pytest.raises(ValueError, match="rho must be a finite number > 0"):
            karras_sigmas(4, rho=rho)


def test_generate_from_noise_refuses_non_finite_noise(gaussian):
    noise = _with_nan(noise_for_seeds(range(4), SHAPE), rows=(2,))
    with pytest.raises(ValueError, match=r"noise: 1 of 4 images hold NaN or inf"):
        generate_from_noise(gaussian, noise, steps=3)


def test_scores_refuse_a_threshold_that_is_not_a_finite_cosine(samples, gaussian):
    # the probe's 3p: rp_score(threshold=nan) gave RP 0.000, gl_score(threshold=2.0) GL 1.000
    other = generate(OptimalDenoiser(load_dataset("digits").images[:100]), range(16), SHAPE, steps=4)
    train = load_dataset("digits").images[:300]
    msg = r"threshold is a cosine-similarity threshold: it must be a finite number in \[-1, 1\], got "
    for bad in (float("nan"), float("inf"), 2.0, -1.5, "0.5", True):
        with pytest.raises(ValueError, match=msg):
            rp_score(samples, other, threshold=bad)
        with pytest.raises(ValueError, match=msg):
            gl_score(samples, train, threshold=bad)
        with pytest.raises(ValueError, match=msg):
            rp_matrix([samples, other], threshold=bad)
    rule = SameImageRule(float("nan"), "hand-made", "pixel")
    with pytest.raises(ValueError, match="the same-image rule's threshold is a cosine-similarity threshold"):
        rp_score(samples, other, threshold=rule)
    with pytest.raises(ValueError, match="the same-image rule's threshold"):
        gl_score(samples, train, threshold=rule)
    # a threshold calibrated on float32 cosines of identical images may pass 1 by a rounding unit
    assert rp_score(samples, samples, threshold=1.0000001).value == 0.0
    assert rp_score(samples, other, threshold=-1).value == 1.0


def test_quantiles_and_levels_are_checked(samples, digits):
    other = generate(OptimalDenoiser(digits[:100]), range(16), SHAPE, steps=4)
    for bad in (float("nan"), 1.5, -0.1):
        with pytest.raises(ValueError, match="null_quantile must be a number in"):
            rp_score(samples, other, null_quantile=bad)
        with pytest.raises(ValueError, match="quantile must be a number in"):
            calibrate_threshold(torch.rand(10), bad)
        with pytest.raises(ValueError, match="level must be a number in"):
            bootstrap_ci(torch.ones(4), level=bad)
    for bad in (float("nan"), 0.0, 1.0):
        with pytest.raises(ValueError, match=r"quantile must be a number in \(0, 1\)"):
            same_image_rule(digits[:300], digits[1500:1600], quantile=bad)
    with pytest.raises(ValueError, match="thresholds: 1 of 3 are NaN or inf"):
        survival(torch.rand(10), [0.1, float("nan"), 0.5])
    with pytest.raises(ValueError, match="similarities: 1 of 3 are NaN or inf"):
        survival(torch.tensor([0.1, float("nan"), 0.5]), [0.5])
    with pytest.raises(ValueError, match="ratio must be a finite number > 0"):
        gu_memorization(samples.images, digits[:100], ratio=float("nan"))


def test_measurement_noise_and_images_must_be_finite(digits, gaussian):
    # the probe's 6p: NaN noise_std or NaN images gave NaN measurements
    op = make_operator("super-resolution", SHAPE, factor=2)
    for bad in (float("nan"), float("inf"), -0.1, True):
        with pytest.raises(ValueError, match="noise_std must be a"):
            measure(op, digits[:4], noise_std=bad)
    with pytest.raises(ValueError, match=r"images: 1 of 4 images hold NaN or inf"):
        measure(op, _with_nan(digits[:4]))
    y = measure(op, digits[:4], noise_std=0.1)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        gaussian_posterior_mean(op, y, gaussian, float("nan"), SHAPE)
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        pseudo_inverse(op, y, SHAPE, rtol=float("nan"))
    with pytest.raises(ValueError, match="width must be a finite number > 0"):
        make_operator("deblurring", SHAPE, size=5, width=float("inf"))
    with pytest.raises(ValueError, match=r"observed must be a number in \(0, 1\]"):
        random_mask(SHAPE, float("nan"))


def test_reconstruct_refuses_a_diverging_zeta_and_takes_any_real_scalar(digits, gaussian):
    # the probe's 6n (zeta 1e30: all-NaN reconstructions) and 6o (numpy/tensor zeta refused, True taken as 1)
    op = make_operator("box-inpainting", SHAPE, top=4, left=0, height=4, width=8)
    y = measure(op, digits[:3], noise_std=0.05)
    torch.manual_seed(0)
    net = Precond(build_backbone("mlp-xs", SHAPE), "edm")  # a float32 network overflows at zeta 1e30
    with pytest.raises(NonFiniteError, match=r"DPS with zeta 1e\+30 .*Precond.* 3 of 3 images hold NaN or inf .*seeds "
                                             r"\[0, 1, 2\].*smaller zeta"):
        reconstruct(net, op, y, range(3), SHAPE, zeta=1e30, steps=2)
    with pytest.raises(NonFiniteError, match=r"DPS with zeta 1e\+300 .*GaussianDenoiser"):
        reconstruct(gaussian, op, y, range(3), SHAPE, zeta=1e300, steps=2)
    with pytest.raises(ValueError, match="zeta must be a number, got the bool True"):
        reconstruct(gaussian, op, y, range(3), SHAPE, zeta=True, steps=3)
    with pytest.raises(ValueError, match="sigma_min must be a finite number > 0"):
        reconstruct(gaussian, op, y, range(3), SHAPE, zeta=1.0, steps=3, sigma_min=0.0)
    plain = reconstruct(gaussian, op, y, range(3), SHAPE, zeta=0.5, steps=3)
    for zeta in (np.float64(0.5), np.float32(0.5), torch.tensor(0.5)):
        same = reconstruct(gaussian, op, y, range(3), SHAPE, zeta=zeta, steps=3)
        assert torch.equal(same.images, plain.images) and same.sampler == plain.sampler


def test_denoiser_scales_go_through_the_checks(digits):
    for bad in (float("nan"), -1.0, True):
        with pytest.raises(ValueError, match="smoothing must be a"):
            SmoothedOptimalDenoiser(digits[:20], bad)
    d = OptimalDenoiser(digits[:20])
    for bad in (float("nan"), 1.5, True):
        with pytest.raises(ValueError, match="weight must be a"):
            BlendedDenoiser(d, d, bad)


# ----------------------------------------------------------------------------- item 4: no non-finite image out


class _Diverging(torch.nn.Module):
    """The Gaussian denoiser, except that it returns ``value`` for the images of the given rows."""

    def __init__(self, base, rows, value):
        super().__init__()
        self.base, self.rows, self.value = base, rows, value

    def forward(self, x, sigma, cond=None):
        out = self.base(x, sigma, cond).clone()
        out[[r for r in self.rows if r < len(out)]] = self.value
        return out


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp-2m", "euler-ancestral"])
def test_samplers_never_return_a_non_finite_image(gaussian, sampler, value):
    # an inf would otherwise be clamped to a plausible +-1, a NaN returned as is
    model = _Diverging(gaussian, rows=(1, 2), value=value)
    kw = dict(sampler=sampler, steps=3, batch_size=4, name="diverged")
    if SAMPLERS[sampler].stochastic:
        kw["step_noise_stream"] = 0
    with pytest.raises(NonFiniteError, match=rf"{sampler}-3 sampling of diverged \(_Diverging\) produced non-finite "
                                             r"images: 2 of 4 images hold NaN or inf values \(seeds \[11, 12\]\)"):
        generate(model, range(10, 18), SHAPE, **kw)
    if not SAMPLERS[sampler].stochastic:
        with pytest.raises(NonFiniteError, match=r"2 of 4 images hold NaN or inf values \(positions \[1, 2\]\)"):
            generate_from_noise(model, noise_for_seeds(range(4), SHAPE), sampler=sampler, steps=3)


# ----------------------------------------------------------------------------- valid inputs: bitwise the same


@pytest.mark.parametrize("sampler", ["euler", "ddim", "heun", "dpmpp-2m"])
def test_checked_entry_points_compute_exactly_what_the_bare_sampler_computes(gaussian, sampler):
    # generate adds checks around the sampler, nothing else: the same bits as the sampler called by hand
    seeds = list(range(5, 11))
    got = generate(gaussian, seeds, SHAPE, sampler=sampler, steps=5, sigma_min=0.01, sigma_max=40.0, batch_size=3)
    sigmas = karras_sigmas(5, 0.01, 40.0)
    with flush_denormal():
        want = torch.cat([SAMPLERS[sampler].fn(gaussian, noise_for_seeds(seeds[i:i + 3], SHAPE), sigmas)
                          .float().clamp(-1, 1) for i in (0, 3)])
    assert torch.equal(got.images, want)
    # the grid itself: EDM's formula, evaluated the same way as before the checks
    ramp = torch.arange(5, dtype=torch.float64) / 4
    grid = (40.0 ** (1 / 7) + ramp * (0.01 ** (1 / 7) - 40.0 ** (1 / 7))) ** 7
    assert torch.equal(sigmas, torch.cat([grid, torch.zeros(1, dtype=torch.float64)]))


def test_scores_with_a_checked_threshold_compute_the_same_hits(samples, digits):
    other = generate(OptimalDenoiser(digits[:100]), range(16), SHAPE, steps=4)
    rp = rp_score(samples, other, threshold=0.8)
    assert rp.value == float((rp.similarities > 0.8).double().mean())
    gl = gl_score(samples, digits[:300], threshold=0.9)
    assert gl.value == float((gl.similarities <= 0.9).double().mean())


# ----------------------------------------------------------------------------- item 8: what the bits depend on


def test_the_sampling_docstring_names_the_thread_count_it_promises_bits_for():
    doc = " ".join(sampling.__doc__.split())
    assert "batch size and torch thread count" in doc and "get_num_threads" in doc
    assert "3e-7 between one and two threads" in doc
