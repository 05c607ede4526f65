"""Linear inverse problems solved with any denoiser: measurement operators, closed-form baselines and
deterministic diffusion posterior sampling (the paper's Algorithm 1).

A measurement is ``y = A(x) + sigma_y * n`` for a clean image ``x`` and a *linear* operator ``A``:

* :class:`Inpainting` measures only the pixels where a mask is 1, as a vector (:func:`box_mask`,
  :func:`random_mask`), so no measurement noise falls on a hidden pixel;
* :class:`Downsampling` averages ``factor x factor`` blocks (super-resolution);
* :class:`GaussianBlur` convolves with a normalised Gaussian kernel, zero-padded (deblurring).

Every operator maps ``(B, C, H, W)`` images in [-1, 1] to ``(B, *measurement_shape)`` and knows its
adjoint, so the tests can check ``<A x, y> = <x, A^T y>``; :meth:`LinearOperator.matrix` gives the
dense matrix (images here have at most a few thousand pixels). Two closed-form baselines are what a
skeptic asks for: the least-squares reconstruction :func:`pseudo_inverse` ``A^+ y``, and the exact
posterior mean under a Gaussian prior, :func:`gaussian_posterior_mean`.

:func:`dps_sample` is diffusion posterior sampling (DPS, Chung et al. 2023) with the ancestral step
replaced by a deterministic DPM-Solver++(2M) step, the change the paper makes in its Algorithm 1;
:func:`reconstruct` is its everyday entry point, the inverse-problem twin of
:func:`reprodiff.sampling.generate`: one reconstruction per seed, noise drawn per seed, pairing by
seed. With ``zeta = 0`` the solver *is* the unconditional DPM-Solver++(2M) sampler, bit for bit.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from . import checks
from .denoisers import Denoiser, GaussianDenoiser
from .runtime import derive_seed
from .sampling import (Samples, call_denoiser, check_request, check_seeds, ancestral_step, dpmpp_2m_step,
                       initial_state, karras_sigmas, run_sampler, seed_noise, step_noise)

__all__ = [
    "LinearOperator", "Inpainting", "Downsampling", "GaussianBlur", "box_mask", "random_mask", "OPERATORS",
    "make_operator", "measure", "pseudo_inverse", "gaussian_posterior_mean", "residual_norm", "dps_sample",
    "reconstruct",
]


class LinearOperator:
    """A linear measurement operator on ``(B, C, H, W)`` images (subclasses define ``forward``,
    ``adjoint`` and ``measurement_shape``)."""

    name: str = "operator"

    def measurement_shape(self, shape: Sequence[int]) -> tuple[int, ...]:  # pragma: no cover - abstract
        """Shape of one measurement of a ``shape = (C, H, W)`` image."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``A^T y``: ``(B, *measurement_shape)`` -> ``(B, C, H, W)``."""
        raise NotImplementedError

    def check_images(self, x: torch.Tensor) -> None:
        """ValueError unless ``x`` is a ``(B, C, H, W)`` batch this operator can measure."""
        if x.dim() != 4:
            raise ValueError(f"{self.name} measures (B, C, H, W) image batches, got shape {tuple(x.shape)}")

    def check_measurement(self, y: torch.Tensor, shape: Sequence[int], n: int | None = None) -> None:
        """ValueError unless ``y`` holds ``n`` (any number if None) measurements of ``shape`` images."""
        want = self.measurement_shape(shape)
        if y.dim() != len(want) + 1 or tuple(y.shape[1:]) != want or (n is not None and y.shape[0] != n):
            count = "B" if n is None else str(n)
            raise ValueError(f"{self.name} measures {tuple(shape)} images as {want}: the measurements must be "
                             f"({count}, {', '.join(map(str, want))}), got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError(f"the {self.name} measurements hold NaN or inf")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_images(x)
        return self.forward(x)

    def view(self, y: torch.Tensor) -> torch.Tensor:
        """Measurements drawn as images (for figures): ``A^T y`` unless an operator knows better."""
        return self.adjoint(y)

    def matrix(self, shape: Sequence[int]) -> torch.Tensor:
        """The dense ``(m, n)`` float64 matrix of the operator on ``shape`` images (column j is A e_j)."""
        n = math.prod(shape)
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
        return self(basis).reshape(n, -1).T.contiguous()

    def least_squares(self, y: torch.Tensor, shape: Sequence[int], rtol: float) -> torch.Tensor:
        """``A^+ y`` as ``(B, n)`` float64, from the dense matrix (through its eigendecomposition when
        it is symmetric, several times faster than an SVD); operators with a closed form override it."""
        a = self.matrix(shape)
        if a.shape[0] == a.shape[1] and torch.equal(a, a.T):
            evals, evecs = torch.linalg.eigh(a)
            keep = evals.abs() > rtol * evals.abs().max()
            pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
        else:
            pinv = torch.linalg.pinv(a, rtol=rtol)
        return y.reshape(len(y), -1).double() @ pinv.T

    def __repr__(self) -> str:
        return self.name


class Inpainting(LinearOperator):
    """Keeps the pixels where ``mask`` (``(C, H, W)`` or ``(H, W)``, 0/1) is 1. The measurement is the
    vector of observed pixel values, ``(B, m)`` for ``m`` observed pixels (a ``(1, H, W)`` mask
    observes the same pixels in every channel), so measurement noise falls on observed pixels only;
    the adjoint puts them back in place, with the hidden pixels set to 0."""

    def __init__(self, mask: torch.Tensor, name: str = "inpainting") -> None:
        mask = torch.as_tensor(mask)
        if mask.dim() not in (2, 3):
            raise ValueError(f"an inpainting mask is shaped (C, H, W) or (H, W), got {tuple(mask.shape)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("an inpainting mask holds only 0 (hidden) and 1 (observed)")
        if not mask.any():
            raise ValueError("the inpainting mask observes no pixel")
        self.mask = mask if mask.dim() == 3 else mask.unsqueeze(0)
        self.name = name

    @property
    def observed(self) -> float:
        """Fraction of observed pixels."""
        return float(self.mask.double().mean())

    def check_images(self, x: torch.Tensor) -> None:
        super().check_images(x)
        c, h, w = self.mask.shape
        if tuple(x.shape[2:]) != (h, w) or c not in (1, x.shape[1]):
            raise ValueError(f"the {self.name} mask is {tuple(self.mask.shape)}, the images are "
                             f"{tuple(x.shape[1:])}: the mask must match the image's height and width")

    def _index(self, channels: int, device) -> torch.Tensor:
        """Flat indices of the observed pixels of a ``(channels, H, W)`` image, in raster order."""
        return self.mask.expand(channels, *self.mask.shape[1:]).reshape(-1).nonzero().squeeze(1).to(device)

    def measurement_shape(self, shape):
        return (int(self.mask.expand(shape[0], *self.mask.shape[1:]).sum()),)

    def forward(self, x):
        return x.reshape(len(x), -1)[:, self._index(x.shape[1], x.device)]

    def adjoint(self, y):
        channels = y.shape[1] // int(self.mask[0].sum()) if len(self.mask) == 1 else len(self.mask)
        out = y.new_zeros(len(y), channels * self.mask[0].numel())
        out[:, self._index(channels, y.device)] = y
        return out.reshape(len(y), channels, *self.mask.shape[1:])

    def least_squares(self, y, shape, rtol):
        return self.adjoint(y.double()).reshape(len(y), -1)  # A A^T = I: A^+ = A^T


def box_mask(shape: Sequence[int], top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A ``(H, W)`` mask that hides the box ``[top, top + height) x [left, left + width)`` (0 there, 1 elsewhere)."""
    h, w = shape[-2:]
    if not (0 <= top < top + height <= h and 0 <= left < left + width <= w):
        raise ValueError(f"the box (top {top}, left {left}, {height}x{width}) does not fit a {h}x{w} image")
    mask = torch.ones(h, w)
    mask[top:top + height, left:left + width] = 0
    return mask


def random_mask(shape: Sequence[int], observed: float, seed: int = 0) -> torch.Tensor:
    """A ``(H, W)`` mask observing a random ``observed`` fraction of pixels (exactly ``round(observed*H*W)``)."""
    checks.finite_number("observed", observed, low=0, high=1, low_inclusive=False)
    h, w = shape[-2:]
    keep = max(1, round(observed * h * w))
    order = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(h * w)
    mask[order[:keep]] = 1
    return mask.reshape(h, w)


class Downsampling(LinearOperator):
    """Averages non-overlapping ``factor x factor`` blocks: ``(C, H, W)`` -> ``(C, H/f, W/f)``."""

    def __init__(self, factor: int) -> None:
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"the downsampling factor must be an integer >= 2, got {factor!r}")
        self.factor = factor
        self.name = f"{factor}x super-resolution"

    def check_images(self, x):
        super().check_images(x)
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"{self.name} needs images whose height and width divide by {self.factor}, got "
                             f"{tuple(x.shape[2:])}")

    def measurement_shape(self, shape):
        c, h, w = shape
        return (c, h // self.factor, w // self.factor)

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, self.factor)

    def adjoint(self, y):
        return self.view(y) / self.factor**2

    def view(self, y):
        """The low-resolution measurement, each pixel repeated ``factor x factor`` times."""
        f = self.factor
        return y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)

    def least_squares(self, y, shape, rtol):
        return self.view(y.double()).reshape(len(y), -1)  # A A^T = I / f^2: A^+ = f^2 A^T


class GaussianBlur(LinearOperator):
    """Convolution with a normalised ``size x size`` Gaussian kernel of standard deviation ``width``
    pixels, zero-padded to keep the image size. The kernel is symmetric, so the operator is too."""

    def __init__(self, size: int = 5, width: float = 1.0) -> None:
        if not isinstance(size, int) or size < 3 or size % 2 == 0:
            raise ValueError(f"the blur kernel size must be an odd integer >= 3, got {size!r}")
        checks.finite_number("width", width, low=0, low_inclusive=False)
        r = torch.arange(size, dtype=torch.float64) - size // 2
        g = torch.exp(-0.5 * (r / width) ** 2)
        self.kernel = torch.outer(g, g) / torch.outer(g, g).sum()
        self.taps = g / g.sum()  # the kernel is taps x taps
        self.size, self.width = size, width
        self.name = f"Gaussian deblurring ({size}x{size}, width {width:g} px)"

    def measurement_shape(self, shape):
        return tuple(shape)

    def _band(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The ``(n, n)`` matrix that blurs one image axis of length ``n`` (zero padding)."""
        offset = torch.arange(n)[None, :] - torch.arange(n)[:, None] + self.size // 2
        inside = (offset >= 0) & (offset < self.size)
        return torch.where(inside, self.taps[offset.clamp(0, self.size - 1)], 0.0).to(like)

    def forward(self, x):
        if x.dtype == torch.float64:
            # CPU convolutions have no fast float64 kernel (a 3,072-pixel covariance took ~20 s): the same
            # separable blur as two small matrix products, rows then columns (equal up to float rounding)
            h, w = x.shape[-2:]
            return self._band(h, x) @ x @ self._band(w, x).T
        c = x.shape[1]
        k = self.kernel.to(x).expand(c, 1, self.size, self.size)
        return torch.nn.functional.conv2d(x, k, padding=self.size // 2, groups=c)

    def adjoint(self, y):
        return self.forward(y)

    def least_squares(self, y, shape, rtol):
        _, h, w = shape  # the same blur in every channel: invert it on one
        return super().least_squares(y.reshape(-1, 1, h, w), (1, h, w), rtol).reshape(len(y), -1)


#: operator kinds a config can name: kind -> builder(shape, **kwargs)
OPERATORS = {
    "box-inpainting": lambda shape, top, left, height, width: Inpainting(
        box_mask(shape, top, left, height, width), f"box inpainting ({height}x{width} hidden)"),
    "random-inpainting": lambda shape, observed, seed=0: Inpainting(
        random_mask(shape, observed, seed), f"random inpainting ({100 * observed:.0f}% observed)"),
    "super-resolution": lambda shape, factor: Downsampling(factor),
    "deblurring": lambda shape, size=5, width=1.0: GaussianBlur(size, width),
}


def make_operator(kind: str, shape: Sequence[int], **kwargs) -> LinearOperator:
    """Build an operator by kind (see :data:`OPERATORS`) for ``shape = (C, H, W)`` images."""
    if kind not in OPERATORS:
        raise ValueError(f"unknown operator {kind!r}; choose one of {', '.join(OPERATORS)}")
    op = OPERATORS[kind](tuple(shape), **kwargs)
    op.check_images(torch.zeros(1, *shape))
    return op


def measure(op: LinearOperator, images: torch.Tensor, noise_std: float = 0.0,
            seeds: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """``y = A(x) + noise_std * n``, with the noise of image k drawn from its own generator seeded
    from ``seeds[k]`` (default 0, 1, ...): the same image and seed always give the same measurement.

    Returns ``(B, *measurement_shape)`` float32. ValueError when ``noise_std`` is not a finite
    number >= 0 or an image holds NaN or inf.
    """
    checks.finite_number("noise_std", noise_std, low=0)
    checks.finite_images("images", images)
    y = op(images.float())
    if noise_std == 0:
        return y
    seeds = range(len(images)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(images):
        raise ValueError(f"{len(seeds)} seeds for {len(images)} images: one measurement-noise seed per image")
    noise = torch.stack([torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(
        derive_seed(s, "measurement-noise"))) for s in seeds])
    return y + noise_std * noise


def pseudo_inverse(op: LinearOperator, y: torch.Tensor, shape: Sequence[int], rtol: float = 1e-3) -> torch.Tensor:
    """The least-squares, minimum-norm reconstruction ``A^+ y`` (singular values below ``rtol`` times
    the largest are dropped, which keeps deblurring from amplifying noise without bound; ``rtol``
    is a finite number >= 0).

    Each operator's :meth:`~LinearOperator.least_squares` computes it: in closed form where there
    is one (a mask is its own pseudo-inverse; block averaging's is ``f^2 A^T``, nearest upsampling;
    the blur is inverted on one channel), else from the dense matrix. Returns ``(B, C, H, W)``
    float32, clamped to [-1, 1].
    """
    op.check_measurement(y, shape)
    checks.finite_number("rtol", rtol, low=0)
    x = op.least_squares(y, shape, rtol)
    return x.float().reshape(len(y), *shape).clamp(-1, 1)


def gaussian_posterior_mean(op: LinearOperator, y: torch.Tensor, prior: GaussianDenoiser, noise_std: float,
                            shape: Sequence[int]) -> torch.Tensor:
    """``E[x | y]`` when ``x ~ N(mu, Sigma)`` (the Gaussian denoiser's prior) and ``y = A x + noise_std n``:
    ``mu + Sigma A^T (A Sigma A^T + noise_std^2 I)^-1 (y - A mu)``, in closed form.

    ``Sigma A^T`` and ``A Sigma A^T`` come from applying the operator to the rows of ``Sigma`` (no
    dense ``A``). With ``noise_std = 0`` a tiny jitter (1e-6) keeps the solve defined. Returns
    ``(B, C, H, W)`` float32. ValueError when ``noise_std`` is not a finite number >= 0.
    """
    op.check_measurement(y, shape)
    checks.finite_number("noise_std", noise_std, low=0)
    n = math.prod(shape)
    cov = (prior.evecs * prior.evals) @ prior.evecs.T
    cov_at = op(cov.reshape(n, *shape)).reshape(n, -1)  # Sigma A^T: row i is A(Sigma e_i)
    m = cov_at.shape[1]
    gram = op(cov_at.T.reshape(m, *shape)).reshape(m, m) + max(noise_std**2, 1e-6) * torch.eye(m, dtype=torch.float64)
    resid = y.reshape(len(y), -1).double() - op(prior.mean.reshape(1, *shape)).reshape(1, m)
    x = prior.mean + torch.cholesky_solve(resid.T, torch.linalg.cholesky(gram)).T @ cov_at.T
    return x.float().reshape(len(y), *shape).clamp(-1, 1)


def residual_norm(op: LinearOperator, images: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Measurement consistency ``||y - A(x)||`` per image, ``(B,)`` float64 (pixel units of [-1, 1])."""
    return (y.double() - op(images.double())).reshape(len(y), -1).norm(dim=1)


def dps_sample(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, op: LinearOperator,
               y: torch.Tensor, zeta: float, cond=None, model_dtype: torch.dtype = torch.float32,
               step_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Diffusion posterior sampling with a deterministic solver (the paper's Algorithm 1).

    At each noise level: estimate ``x0_hat = D(x, sigma)``, take one DPM-Solver++(2M) step of the
    probability-flow ODE, then step against the gradient of the measurement error,
    ``x <- x - zeta_t * grad_x ||y - A(x0_hat(x))||`` (the unsquared norm, as in the public DPS code).
    DPS writes this step in variance-preserving coordinates ``x / sqrt(1 + sigma^2)``; in the
    sampler's variance-exploding coordinates that same step is scaled by
    ``sqrt(1 + sigma^2) * sqrt(1 + sigma_next^2)``, so ``zeta`` means what DPS's scale means.

    Args:
        noise: ``(B, C, H, W)`` unit initial noise; ``y``: ``(B, *measurement_shape)``, row k the
            measurement reconstructed from noise k.
        step_noise: ``(steps, B, C, H, W)`` to replace the deterministic step by an ancestral Euler
            step that injects that noise (the stochastic control, as in the original DPS).

    Returns the ``(B, C, H, W)`` float64 reconstruction. ``zeta = 0`` gives exactly the unconditional
    DPM-Solver++(2M) (or ancestral) sample.
    """
    x = initial_state(noise, sigmas)
    y = y.to(torch.float64)
    history = None
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            x0 = call_denoiser(denoiser, x, s, cond, model_dtype)
            error = (y - op(x0)).reshape(len(y), -1).norm(dim=1).sum()
            (grad,) = torch.autograd.grad(error, x)
        x, x0 = x.detach(), x0.detach()
        if step_noise is None:
            x_next, history = dpmpp_2m_step(x, x0, s, s_next, history)
        else:
            x_next = ancestral_step(x, x0, s, s_next, step_noise[i])
        x = x_next - zeta * ((1 + s**2) * (1 + s_next**2)).sqrt() * grad
    return x


def reconstruct(denoiser: Denoiser, op: LinearOperator, y: torch.Tensor, seeds: Sequence[int] | torch.Tensor,
                shape: Sequence[int], *, zeta: float, steps: int = 20, sigma_min: float = 0.002,
                sigma_max: float = 80.0, labels=None, noise_stream: int = 0, step_noise_stream: int | None = None,
                batch_size: int = 256, name: str = "") -> Samples:
    """Solve ``y = A(x) + noise`` with :func:`dps_sample`, one reconstruction per seed: reconstruction k
    starts from seed k's initial noise (as in :func:`~reprodiff.sampling.generate`) and answers ``y[k]``.

    ``noise_stream``: which initial noise of each seed (0, the default, is the noise ``generate``
    uses; another stream gives the same seed ids another noise, for a same-measurement control).
    ``step_noise_stream``: None for the deterministic solver; an integer for the stochastic control
    (ancestral steps whose injected noise comes from that stream, as in ``generate``).
    ``zeta``: a finite number >= 0 (Python, numpy or a one-element tensor). Every argument is
    checked before any sampling work, the sigma grid too (:func:`~reprodiff.sampling.karras_sigmas`).
    Returns :class:`Samples` clamped to [-1, 1], never a NaN or infinite reconstruction: a ``zeta``
    so large that the measurement step diverges raises :class:`~reprodiff.checks.NonFiniteError`.
    """
    seeds = check_seeds(seeds)
    steps, batch_size, shape, labels = check_request(denoiser, shape, len(seeds), steps, batch_size, labels)
    op.check_images(torch.zeros(1, *shape))
    op.check_measurement(y, shape, len(seeds))
    zeta = checks.finite_number("zeta", zeta, low=0)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    step_noise_for = step_noise(seeds, shape, step_noise_stream, steps)
    images = run_sampler(dps_sample, denoiser, seed_noise(seeds, shape, noise_stream), sigmas, n=len(seeds),
                         labels=labels, batch_size=batch_size, step_noise_for=step_noise_for, per_sample={"y": y},
                         op=op, zeta=zeta, seeds=seeds,
                         what=f"DPS with zeta {zeta:g} ({steps} steps, {type(denoiser).__name__})",
                         hint="the measurement step diverged: use a smaller zeta")
    kind = "deterministic" if step_noise_stream is None else "stochastic"
    if noise_stream:
        kind += f", noise stream {noise_stream}"
    return Samples(images, seeds, name=name, labels=labels,
                   sampler=f"DPS ({kind}, zeta {zeta:g})-{steps}")
