import pytest
import torch

from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.sampling import (SAMPLERS, Samples, generate, karras_sigmas, noise_for_seeds, sample_ddim,
                                sample_euler, sample_euler_ancestral)


def test_noise_is_independent_of_batch_size_and_order():
    full = noise_for_seeds(range(10), (1, 8, 8))
    assert torch.equal(full[3:5], noise_for_seeds([3, 4], (1, 8, 8)))
    assert torch.equal(full[[7, 2]], noise_for_seeds([7, 2], (1, 8, 8)))
    assert not torch.equal(noise_for_seeds([3], (1, 8, 8), stream=1), full[3:4])


def test_karras_sigmas():
    s = karras_sigmas(18)
    assert s.shape == (19,) and s[0] == 80 and abs(float(s[17]) - 0.002) < 1e-12 and s[-1] == 0
    assert (s[:-1] > s[1:]).all()


@pytest.fixture(scope="module")
def gaussian():
    return GaussianDenoiser.from_data(load_dataset("digits").images)


@pytest.mark.parametrize("name", ["euler", "ddim", "heun", "dpmpp-2m"])
def test_deterministic_samplers_are_bit_identical_twice(gaussian, name):
    a = generate(gaussian, range(8), (1, 8, 8), sampler=name, steps=10)
    b = generate(gaussian, range(8), (1, 8, 8), sampler=name, steps=10)
    assert torch.equal(a.images, b.images)


def test_generate_does_not_depend_on_batch_size(gaussian):
    a = generate(gaussian, range(12), (1, 8, 8), steps=8, batch_size=12)
    b = generate(gaussian, range(12), (1, 8, 8), steps=8, batch_size=5)
    assert torch.allclose(a.images, b.images, atol=1e-6)


def test_ddim_equals_euler_in_sigma_coordinates(gaussian):
    noise = noise_for_seeds(range(6), (1, 8, 8))
    s = karras_sigmas(12)
    assert torch.allclose(sample_ddim(gaussian, noise, s), sample_euler(gaussian, noise, s), atol=1e-9)


def test_samplers_agree_at_many_steps(gaussian):
    outs = [generate(gaussian, range(16), (1, 8, 8), sampler=n, steps=200).images for n in ("ddim", "heun", "dpmpp-2m")]
    for o in outs[1:]:
        assert (o - outs[0]).abs().max() < 2e-2


@pytest.mark.parametrize("name,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp-2m", 2)])
def test_samplers_converge_to_the_exact_ode_solution_at_their_order(name, order):
    # for N(0, v I) data D(x) = v / (v + sigma^2) x and the ODE solution is x(sigma) ~ sqrt(v + sigma^2)
    v = 0.3
    den = GaussianDenoiser(torch.zeros(4), v * torch.eye(4))
    noise = noise_for_seeds(range(3), (1, 2, 2))
    exact = noise.double() * 80 * v**0.5 / (v + 80**2) ** 0.5
    err = [(SAMPLERS[name](den, noise, karras_sigmas(n), model_dtype=torch.float64) - exact).abs().max()
           for n in (32, 64, 128)]
    assert err[2] < err[1] < err[0]
    assert 2 ** order * 0.8 < err[1] / err[2] < 2 ** order * 1.25


def test_stochastic_sampler_depends_on_its_explicit_noise(gaussian):
    a = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=0)
    b = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=0)
    c = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=1)
    assert torch.equal(a.images, b.images) and not torch.allclose(a.images, c.images)
    with pytest.raises(ValueError, match="step_noise"):
        sample_euler_ancestral(gaussian, noise_for_seeds([0], (1, 8, 8)), karras_sigmas(4))
    with pytest.raises(ValueError, match="step_noise_stream"):
        generate(gaussian, range(2), (1, 8, 8), sampler="euler-ancestral")


def test_bad_sampler_name():
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(OptimalDenoiser(torch.zeros(2, 1, 2, 2)), [0], (1, 2, 2), sampler="ddpm")


def test_samples_require_unique_seeds():
    with pytest.raises(ValueError, match="unique"):
        Samples(torch.zeros(2, 1, 2, 2), torch.tensor([1, 1]))
