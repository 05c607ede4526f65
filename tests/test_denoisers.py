import pytest
import torch

from reprodiff.backbones import BACKBONES, build_backbone, count_parameters
from reprodiff.data import MoLRG, load_dataset
from reprodiff.denoisers import (OBJECTIVES, GaussianDenoiser, Guided, OptimalDenoiser, Precond,
                                 optimal_denoiser_naive)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_optimal_denoiser_matches_the_naive_formula(digits):
    train = digits.images[:300]
    x = torch.randn(7, 1, 8, 8)
    for sigma in (0.05, 0.5, 5.0):
        fast = OptimalDenoiser(train, chunk_size=64)(x, sigma)
        assert torch.allclose(fast, optimal_denoiser_naive(train, x, sigma), atol=1e-5)


def test_optimal_denoiser_returns_the_nearest_training_image_at_small_sigma(digits):
    train = digits.images[:500]
    x = train[[3, 10, 42]] + 0.02 * torch.randn(3, 1, 8, 8)
    out = OptimalDenoiser(train)(x, 1e-3)
    assert torch.allclose(out, train[[3, 10, 42]], atol=1e-5)


def test_optimal_denoiser_returns_the_mean_at_large_sigma(digits):
    train = digits.images[:500]
    out = OptimalDenoiser(train)(torch.randn(2, 1, 8, 8), 1e4)
    assert torch.allclose(out, train.mean(0, keepdim=True).expand(2, -1, -1, -1), atol=1e-3)


def test_conditional_optimal_denoiser_stays_in_class(digits):
    train, labels = digits.images[:400], digits.labels[:400]
    den = OptimalDenoiser(train, labels)
    out = den(torch.randn(4, 1, 8, 8), 1e-3, torch.tensor([0, 1, 2, 3]))
    idx = ((out.reshape(4, 1, -1) - train.reshape(1, 400, -1)) ** 2).sum(-1).argmin(1)
    assert labels[idx].tolist() == [0, 1, 2, 3]


def test_gaussian_denoiser_matches_optimal_denoiser_on_gaussian_data_in_the_large_n_limit():
    torch.manual_seed(0)
    D = 16
    A = torch.randn(D, D) / D**0.5
    cov = A @ A.T + 0.1 * torch.eye(D)
    y = torch.distributions.MultivariateNormal(torch.zeros(D), cov).sample((20000,))
    x = torch.randn(32, D) * 3
    sigma = 3.0  # at large sigma the empirical optimum has averaged enough samples
    exact = GaussianDenoiser(torch.zeros(D), cov)(x.reshape(32, 1, 4, 4), sigma).reshape(32, D)
    empirical = OptimalDenoiser(y.reshape(-1, 1, 4, 4))(x.reshape(32, 1, 4, 4), sigma).reshape(32, D)
    assert (exact - empirical).norm() / exact.norm() < 0.1


def test_gaussian_denoiser_closed_form():
    cov = torch.diag(torch.tensor([4.0, 1.0, 0.25, 0.0]))
    mean = torch.tensor([1.0, 0.0, -1.0, 2.0])
    den = GaussianDenoiser(mean, cov)
    x = torch.tensor([[3.0, 1.0, 1.0, 5.0]]).reshape(1, 1, 2, 2)
    expected = mean + torch.diag(cov) / (torch.diag(cov) + 1.0) * (x.reshape(4) - mean)
    assert torch.allclose(den(x, 1.0).reshape(4), expected, atol=1e-6)


def test_molrg_denoiser_is_the_posterior_mean():
    dist = MoLRG((1, 4, 4), num_classes=2, dim=2, scale=1.0, seed=0)
    data = dist.sample(200_000, seed=1)
    sigma = 0.7
    y = data.images.reshape(len(data), -1)
    x = y + sigma * torch.randn_like(y)
    pred = dist.denoiser()(x.reshape(-1, 1, 4, 4), sigma).reshape(len(data), -1)
    # the posterior mean has the minimum MSE; any shrinkage of it does worse
    mse = ((pred - y) ** 2).mean()
    assert mse < ((0.9 * pred - y) ** 2).mean() and mse < ((1.1 * pred - y) ** 2).mean()
    assert mse < ((x * (1 / (1 + sigma**2)) - y) ** 2).mean()


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_builds_and_keeps_shape(name):
    # gpu-profile architectures are checked at CIFAR-10's shape, the others at the digits'
    shape = (3, 32, 32) if name in ("unet-l", "uvit-m") else (1, 8, 8)
    net = build_backbone(name, shape)
    out = net(torch.randn(2, *shape), torch.tensor([1.0, 500.0]))
    assert out.shape == (2, *shape) and count_parameters(net) > 0


def test_conditional_backbones_need_labels():
    net = build_backbone("uvit-s", (1, 8, 8), num_classes=10)
    assert net(torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]), torch.tensor([0, 10])).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="class labels"):
        net(torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet", (1, 8, 8))


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_preconditioning_is_identity_at_small_sigma(objective):
    # D(x, sigma -> 0) ~ x for any backbone output: c_skip -> 1, c_out -> 0
    model = Precond(build_backbone("unet-xs", (1, 8, 8)), objective)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert (model(x, 1e-4) - x).abs().max() < 1e-2


def test_classifier_free_guidance():
    class Fake(torch.nn.Module):
        num_classes = 10

        def forward(self, x, sigma, cond):
            return x * 0 + cond.float().reshape(-1, 1, 1, 1)
    g = Guided(Fake(), guidance=2.0)  # the null label defaults to the class count
    out = g(torch.zeros(2, 1, 2, 2), 1.0, torch.tensor([1, 4]))
    # (1 + w) * c - w * null = 3c - 20
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([3.0 - 20, 12.0 - 20]))
    with pytest.raises(ValueError, match="class labels"):
        g(torch.zeros(1, 1, 2, 2), 1.0)


@pytest.mark.parametrize("objective", ["eps", "v", "edm"])
def test_denoising_loss_is_each_frameworks_own_loss(objective):
    """Weighted x0-MSE = the framework's MSE on its own target (eps, v or EDM's F): weight = 1/c_out^2."""
    from reprodiff.denoisers import Precond, denoising_loss, draw_noise, get_objective

    class Fake(torch.nn.Module):
        def forward(self, x, c_noise, class_labels=None):
            return torch.sin(3 * x + 1e-3 * c_noise.reshape(-1, 1, 1, 1))

    obj = get_objective(objective)
    model = Precond(Fake(), objective).double()
    y = torch.rand(16, 1, 8, 8, dtype=torch.float64) * 2 - 1
    sigma, noise = draw_noise(obj, y.shape, torch.Generator().manual_seed(0))
    sigma, noise = sigma.double(), noise.double()
    s = sigma.reshape(-1, 1, 1, 1)
    x = y + s * noise
    c_skip, c_out, c_in, c_noise = obj.coefficients(s)
    target = (y - c_skip * x) / c_out  # what the backbone is trained to output
    own = ((model.backbone(c_in * x, c_noise.reshape(-1)) - target) ** 2).mean()
    if objective == "eps":
        torch.testing.assert_close(target, noise)
    torch.testing.assert_close(denoising_loss(model, obj, y, sigma, noise), own)


def test_x0_error_is_zero_for_a_perfect_denoiser_and_comparable_across_denoisers():
    from reprodiff.data import load_dataset
    from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser, x0_error

    digits = load_dataset("digits").images
    train, held = digits[:500], digits[500:600]
    dstar = OptimalDenoiser(train)
    assert max(x0_error(dstar, train[:50], (0.01,))) < 1e-3  # on its own training images D* is exact
    small_noise = x0_error(dstar, held, (0.1,))[0]
    assert small_noise > 0.05  # a held-out digit is not a training digit
    gauss = x0_error(GaussianDenoiser.from_data(train), held, (0.1, 2.0))
    assert gauss[0] < small_noise and gauss[1] > gauss[0]  # the linear map wins near the data, loses far away
    assert x0_error(dstar, held, (0.1,), seed=3) != x0_error(dstar, held, (0.1,), seed=4)
    with pytest.raises(ValueError):
        x0_error(dstar, held[:0])


def test_gaussian_denoiser_from_fewer_images_than_dimensions_is_the_full_one():
    """N < D takes the SVD of the data instead of the eigendecomposition of the D x D covariance:
    the same denoiser at every noise level."""
    from reprodiff.denoisers import GaussianDenoiser

    images = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    low = GaussianDenoiser.from_data(images)
    y = images.reshape(12, -1).double()
    full = GaussianDenoiser(y.mean(0), (y - y.mean(0)).T @ (y - y.mean(0)) / 12)
    assert low.evecs.shape == (192, 12) and full.evecs.shape == (192, 192)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for sigma in (0.01, 0.5, 20.0):
        assert torch.allclose(low(x, sigma), full(x, sigma), atol=1e-5)
