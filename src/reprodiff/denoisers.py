"""One denoiser signature for every model: ``denoiser(x, sigma, cond=None) -> x0_hat``.

We work in the variance-exploding coordinates of EDM (Karras et al. 2022): a noisy image is
``x = y + sigma * n`` with ``y`` clean and ``n ~ N(0, I)``, and a denoiser estimates ``E[y | x]``.
Any diffusion model fits this signature: DDPM epsilon-prediction, v-prediction and EDM differ only in
a *preconditioning* (``c_skip, c_out, c_in, c_noise``) around the same raw backbone, and in how
training draws sigma and weights the loss. Analytic denoisers (the empirical optimum D*, the
Gaussian denoiser, the exact MoLRG denoiser) and guidance wrappers share the signature too, so
"swap the model, keep noise, sampler and metric" is one line.

Shapes: ``x`` is ``(B, C, H, W)``; ``sigma`` is a float, a 0-d tensor or a ``(B,)`` tensor;
``cond`` is ``None`` or ``(B,)`` int64 class labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import torch
from torch import nn

from . import checks
from .backbones import Backbone
from .runtime import eval_mode

__all__ = [
    "Denoiser",
    "Objective",
    "OBJECTIVES",
    "Precond",
    "OptimalDenoiser",
    "GaussianDenoiser",
    "ClassGaussianDenoiser",
    "SmoothedOptimalDenoiser",
    "LocalDenoiser",
    "x0_error",
    "MoLRGDenoiser",
    "Guided",
    "wrapped",
    "backbone_classes",
    "class_count",
    "as_sigma",
    "draw_noise",
    "denoising_loss",
    "get_objective",
]


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float,
                 cond: torch.Tensor | None = None) -> torch.Tensor: ...


def as_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast ``sigma`` to shape ``(B, 1, 1, 1)`` in ``x``'s dtype and device."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(s.shape)}")
    return s.reshape(-1, *([1] * (x.ndim - 1)))


# ----------------------------------------------------------------------------- training objectives

_VP_BETA_D, _VP_BETA_MIN, _VP_EPS_T = 19.9, 0.1, 1e-3


def _vp_sigma(t: torch.Tensor) -> torch.Tensor:
    return ((0.5 * _VP_BETA_D * t**2 + _VP_BETA_MIN * t).exp() - 1).sqrt()


def _vp_t(sigma: torch.Tensor) -> torch.Tensor:
    # inverse of _vp_sigma (EDM, Table 1)
    return ((_VP_BETA_MIN**2 + 2 * _VP_BETA_D * (1 + sigma**2).log()).sqrt() - _VP_BETA_MIN) / _VP_BETA_D


@dataclass(frozen=True)
class Objective:
    """A training framework expressed as EDM preconditioning (Karras et al. 2022, Table 1).

    ``coefficients(sigma) -> (c_skip, c_out, c_in, c_noise)`` so that
    ``D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise)``; ``sample_sigma(n, generator)`` is
    the training noise distribution and ``weight(sigma)`` the loss weight on ``||D(x) - y||^2``
    that reproduces the framework's own loss.
    """

    name: str
    description: str
    coefficients: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    sample_sigma: Callable[[int, torch.Generator], torch.Tensor]
    weight: Callable[[torch.Tensor], torch.Tensor]


def _eps_coefficients(sigma):
    # DDPM epsilon-prediction (VP): D = x - sigma * eps_hat(x / sqrt(1 + sigma^2), t)
    return torch.ones_like(sigma), -sigma, 1 / (1 + sigma**2).sqrt(), 999 * _vp_t(sigma)


def _eps_sample(n, g):
    t = _VP_EPS_T + (1 - _VP_EPS_T) * torch.rand(n, generator=g)
    return _vp_sigma(t)


def _v_coefficients(sigma):
    # v-prediction (Salimans & Ho 2022): with alpha = 1/sqrt(1+sigma^2), x0 = alpha^2 x - alpha sigma v
    a = 1 / (1 + sigma**2).sqrt()
    return a**2, -sigma * a, a, 999 * (2 / math.pi) * torch.atan(sigma)


def _v_sample(n, g):
    # cosine schedule: sigma = tan(pi t / 2), t uniform (bounded to the sampler's range)
    t = torch.rand(n, generator=g)
    return torch.tan(0.5 * math.pi * t).clamp(0.002, 80.0)


_EDM_SIGMA_DATA = 0.5


def _edm_coefficients(sigma):
    sd = _EDM_SIGMA_DATA
    root = (sigma**2 + sd**2).sqrt()
    return sd**2 / root**2, sigma * sd / root, 1 / root, 250 * sigma.log()


def _edm_sample(n, g):
    return (-1.2 + 1.2 * torch.randn(n, generator=g)).exp()


OBJECTIVES: dict[str, Objective] = {
    "eps": Objective("eps", "DDPM epsilon-prediction, VP schedule (Ho et al. 2020)", _eps_coefficients,
                     _eps_sample, lambda s: 1 / s**2),
    "v": Objective("v", "v-prediction, cosine schedule (Salimans & Ho 2022)", _v_coefficients, _v_sample,
                   lambda s: (1 + s**2) / s**2),
    "edm": Objective("edm", "EDM preconditioning, log-normal sigma (Karras et al. 2022)", _edm_coefficients,
                     _edm_sample, lambda s: (s**2 + _EDM_SIGMA_DATA**2) / (s * _EDM_SIGMA_DATA) ** 2),
}
# EDM's c_noise is ln(sigma)/4; we scale it by 1000 so that diffusers' sinusoidal timestep embedding
# (built for integer DDPM timesteps 0..999) resolves it as finely as it resolves the other objectives.


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


class Precond(nn.Module):
    """A backbone made into a denoiser by a training objective's preconditioning.

    ``forward(x, sigma, cond=None) -> x0_hat``. Training uses :func:`denoising_loss` with the
    objective's noise distribution (:func:`draw_noise`). A model loaded from the cache also carries
    ``config`` (its :class:`~reprodiff.training.TrainConfig`) and ``info`` (its metadata: image
    ``shape``, training ``steps``, ``losses``, ...).
    """

    def __init__(self, backbone: Backbone, objective: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.objective = get_objective(objective)
        self.config = None
        self.info: dict = {}

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        s = as_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = self.objective.coefficients(s)
        F = self.backbone(c_in * x, c_noise.reshape(-1), cond)
        return c_skip * x + c_out * F.to(x.dtype)



def draw_noise(objective: Objective, shape: tuple[int, ...] | torch.Size,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch's noise: ``sigma (B,)`` from the objective's distribution, then unit noise
    ``(B, ...)``, both on CPU from ``generator``, in this order (the order fixes the trained bits)."""
    sigma = objective.sample_sigma(shape[0], generator)
    return sigma, torch.randn(tuple(shape), generator=generator)


def denoising_loss(denoiser: Denoiser, objective: Objective, y: torch.Tensor, sigma: torch.Tensor,
                   noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
    """The objective-weighted denoising loss ``mean(weight(sigma) * (D(y + sigma n, sigma) - y)^2)``.

    It receives its noise (:func:`draw_noise`) instead of drawing it, so every trainer shares one
    loss, and ``denoiser`` may be a :class:`Precond`, a DDP-wrapped one, or any function with the
    denoiser signature. ``weight`` makes this equal to each framework's own loss (epsilon-, v- or
    F-MSE). Shapes: ``y`` and ``noise`` ``(B, C, H, W)``, ``sigma`` ``(B,)``.
    """
    s = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    x0_hat = denoiser(y + s * noise, sigma, cond)
    return (objective.weight(s) * (x0_hat - y) ** 2).mean()


@torch.no_grad()
def x0_error(denoiser: Denoiser, images: torch.Tensor, sigmas: Sequence[float] = (0.1, 0.5, 2.0),
             seed: int = 0, batch_size: int = 256) -> list[float]:
    """RMS error of the clean-image estimate, ``sqrt(mean((D(y + sigma n, sigma) - y)^2))``, per sigma.

    One quantity for every objective (eps, v and EDM losses weight sigma differently, so their
    training losses are not comparable) and for analytic denoisers alike. Measure it on held-out
    images: on training images D* is perfect by construction. The noise ``n`` is drawn from
    ``seed``, so two denoisers are compared on the same noisy inputs.
    """
    if len(images) == 0:
        raise ValueError("x0_error needs at least one image")
    out = []
    params = denoiser.parameters() if isinstance(denoiser, nn.Module) else ()
    device = next(iter(params), torch.zeros(0)).device  # the model's (a GPU in the gpu profile), else CPU
    with eval_mode(denoiser) as model:
        for sigma in sigmas:
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(images.shape, generator=g)
            total = 0.0
            for y, n in zip(images.split(batch_size), noise.split(batch_size)):
                y, n = y.to(device), n.to(device)
                total += float(((model(y + sigma * n, torch.full((len(y),), float(sigma), device=device), None) - y) ** 2).sum())
            out.append(math.sqrt(total / images.numel()))
    return out


# ----------------------------------------------------------------------------- analytic denoisers


def _streamed_posterior_mean(queries: torch.Tensor, inv_var: torch.Tensor, keys: torch.Tensor,
                             half_sq_norm: torch.Tensor, values: torch.Tensor, chunk_size: int,
                             allowed=None, row_block: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_j softmax_j(-||q - k_j||^2 inv_var / 2) v_j`` for every query row, streamed over chunks of keys.

    The logits are ``(q . k_j - ||k_j||^2 / 2) * inv_var`` (the same up to a per-row constant), and an
    online log-sum-exp keeps a running maximum, so memory is ``O(B * chunk_size)`` and no
    exponential overflows. ``allowed(start, stop)``, when given, returns a ``(B, stop - start)``
    boolean mask of the keys each query may use. Returns ``(weighted sum of values, sum of
    weights)``: divide the first by the second; a zero sum means a query was allowed no key.

    Without autograd the element-wise steps run in place, ``row_block`` query rows at a time, in one
    logits buffer reused across chunks: every row's arithmetic is the same (the same bits), but the
    logits stay in cache instead of a fresh ``B x chunk_size`` array per chunk (the equivariant local
    denoiser has ``B * H * W`` rows). With autograd (DPS through a closed form) the steps allocate,
    since backward needs the logits ``amax`` saw.
    """
    in_place = not (torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys, values, inv_var)))
    if not in_place:
        return _streamed_block(queries, inv_var, keys, half_sq_norm, values, chunk_size, allowed, None)
    acc = torch.empty((len(queries), values.shape[1]), dtype=queries.dtype, device=queries.device)
    run_sum = torch.empty((len(queries), 1), dtype=queries.dtype, device=queries.device)
    buffer = torch.empty((min(row_block, len(queries)), min(chunk_size, len(keys))), dtype=queries.dtype,
                         device=queries.device)
    for r0 in range(0, len(queries), row_block):
        rows = slice(r0, r0 + row_block)
        block_allowed = None if allowed is None else (lambda start, stop, rows=rows: allowed(start, stop)[rows])
        acc[rows], run_sum[rows] = _streamed_block(queries[rows], inv_var if len(inv_var) == 1 else inv_var[rows],
                                                   keys, half_sq_norm, values, chunk_size, block_allowed, buffer)
    return acc, run_sum


def _streamed_block(queries, inv_var, keys, half_sq_norm, values, chunk_size, allowed, buffer):
    """:func:`_streamed_posterior_mean` for one block of rows; in place in ``buffer`` unless it is None."""
    run_max = torch.full((len(queries), 1), -math.inf, dtype=queries.dtype, device=queries.device)
    run_sum = torch.zeros((len(queries), 1), dtype=queries.dtype, device=queries.device)
    acc = torch.zeros((len(queries), values.shape[1]), dtype=queries.dtype, device=queries.device)
    for start in range(0, len(keys), chunk_size):
        stop = min(start + chunk_size, len(keys))
        if buffer is not None:
            logits = torch.mm(queries, keys[start:stop].T, out=buffer[:len(queries), :stop - start])
            logits.sub_(half_sq_norm[start:stop]).mul_(inv_var)
            if allowed is not None:
                logits.masked_fill_(~allowed(start, stop), -math.inf)
        else:
            logits = (queries @ keys[start:stop].T - half_sq_norm[start:stop]) * inv_var
            if allowed is not None:
                logits = logits.masked_fill(~allowed(start, stop), -math.inf)
        new_max = torch.maximum(run_max, logits.amax(1, keepdim=True))
        safe = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        rescale = (run_max - safe).exp()
        w = logits.sub_(safe).exp_() if buffer is not None else (logits - safe).exp()
        run_sum = run_sum * rescale + w.sum(1, keepdim=True)
        acc = acc * rescale + w @ values[start:stop]
        run_max = new_max
    return acc, run_sum


class OptimalDenoiser(nn.Module):
    """The loss-minimising denoiser of a finite training set ``{y_i}`` (the paper's Theorem; EDM Eq. 57).

    ``D*(x; sigma) = sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i``

    Sampling the probability-flow ODE with D* can only return training images. Computed with an
    online (streaming) log-sum-exp over chunks of the training set, so memory is ``O(B * chunk)``
    rather than the naive ``O(B * N * D)``, in float64 by default.

    Args:
        train_images: ``(N, C, H, W)`` training set.
        labels: ``(N,)`` labels; when given, ``cond`` restricts the mixture to that class (the
            optimal *conditional* denoiser).
        chunk_size: training images processed per matrix product.
    """

    def __init__(self, train_images: torch.Tensor, labels: torch.Tensor | None = None,
                 chunk_size: int = 4096, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        y = train_images.reshape(train_images.shape[0], -1).to(dtype)
        self.register_buffer("y", y)
        self.register_buffer("half_sq_norm", 0.5 * (y**2).sum(1))
        self.labels = labels
        self.chunk_size = chunk_size
        self.dtype = dtype

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        shape, in_dtype = x.shape, x.dtype
        xf = x.reshape(shape[0], -1).to(self.dtype)
        inv_var = 1.0 / as_sigma(sigma, x).reshape(-1, 1).to(self.dtype) ** 2
        if cond is not None and self.labels is None:
            raise ValueError("this OptimalDenoiser has no labels; build it with labels= to condition on a class")
        allowed = None
        if cond is not None:
            labels = self.labels.to(x.device).reshape(1, -1)
            allowed = lambda start, stop: cond.reshape(-1, 1) == labels[:, start:stop]  # noqa: E731
        acc, run_sum = _streamed_posterior_mean(xf, inv_var, self.y, self.half_sq_norm, self.y, self.chunk_size,
                                                allowed)
        if (run_sum == 0).any():
            raise ValueError("a requested class has no training images")
        return (acc / run_sum).to(in_dtype).reshape(shape)


def optimal_denoiser_naive(train_images: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The textbook broadcast formula for D*, materialising ``(B, N, D)``: for tests and benchmarks only."""
    y = train_images.reshape(1, train_images.shape[0], -1).double()
    xf = x.reshape(x.shape[0], 1, -1).double()
    w = torch.softmax(-((xf - y) ** 2).sum(-1) / (2 * sigma**2), dim=1)
    return (w.unsqueeze(-1) * y).sum(1).to(x.dtype).reshape(x.shape)


class SmoothedOptimalDenoiser(nn.Module):
    """D* averaged over Gaussian perturbations of its input: a smoothed closed-form denoiser.

    ``D_s(x; sigma) = E_u[D*(x + u; sigma)]`` with ``u ~ N(0, s^2 I)``, estimated with ``n_draws``
    fixed draws (seeded, so the denoiser is deterministic). Smoothing the empirical score pulls
    samples towards barycentres of nearby training images instead of onto one of them: the idea of
    the smoothed closed-form diffusion models of Scarvelis, Borde & Solomon (TMLR 2025), here
    applied to the denoiser with plain Monte Carlo rather than their nearest-neighbour estimator.
    ``smoothing = 0`` is exactly :class:`OptimalDenoiser`.
    """

    def __init__(self, train_images: torch.Tensor, smoothing: float, n_draws: int = 16, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        smoothing = checks.finite_number("smoothing", smoothing, low=0)
        if n_draws < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        self.base = OptimalDenoiser(train_images, dtype=dtype)
        self.smoothing = smoothing
        g = torch.Generator().manual_seed(seed)
        dim = train_images[0].numel()
        self.register_buffer("offsets", smoothing * torch.randn(n_draws, dim, generator=g, dtype=torch.float64))

    def forward(self, x, sigma, cond=None):
        if cond is not None:
            raise ValueError("SmoothedOptimalDenoiser is unconditional")
        if self.smoothing == 0:
            return self.base(x, sigma)
        b, m = x.shape[0], self.offsets.shape[0]
        xs = (x.reshape(b, 1, -1).double() + self.offsets).reshape(b * m, *x.shape[1:])
        s = as_sigma(sigma, x).reshape(-1).repeat_interleave(m)
        return self.base(xs, s).reshape(b, m, *x.shape[1:]).mean(1).to(x.dtype)


def _patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, H*W, C*size^2)``: the ``size x size`` patch centred on every pixel (zero padding)."""
    b, c, h, w = images.shape
    cols = torch.nn.functional.unfold(images, size, padding=size // 2)  # (B, C*size^2, H*W)
    return cols.transpose(1, 2)


class LocalDenoiser(nn.Module):
    """A closed-form *local* denoiser: each pixel is denoised from its neighbourhood alone.

    For every pixel ``p`` the output is the posterior mean of that pixel under the empirical
    distribution of training *patches*: ``sum_j softmax_j(-||P_p(x) - Q_j||^2 / 2 sigma^2) c_j``,
    where ``P_p(x)`` is the ``k x k`` patch of ``x`` centred on ``p`` (zero padding, like a
    convolution's), ``Q_j`` runs over the training patches and ``c_j`` is the centre pixel of
    ``Q_j``. With ``equivariant=True`` the patches of every training image at *every* position
    enter (the equivariant local score machine of Kamb & Ganguli 2024, translation-equivariant
    like a convolutional network; cf. Niedoba et al. 2024's patch-based denoiser); with
    ``equivariant=False`` only the training patches at the same position ``p``. A patch that covers
    the whole image from every pixel (``k >= 2 * max(H, W) - 1``) with ``equivariant=False`` is
    exactly :class:`OptimalDenoiser`.

    ``patch_size`` is one odd size, or a schedule ``((sigma_1, k_1), (sigma_2, k_2), ...)``: at
    noise level ``sigma`` the size of the listed sigma nearest in log-space is used (Kamb & Ganguli
    find that the patch a network effectively uses grows with the noise level; see
    :func:`reprodiff.agreement.calibrate_patch_sizes`). Logits are streamed over chunks of the
    patch pool, like D*'s, in float32 by default: the equivariant pool holds ``N * H * W`` patches,
    so a call costs ``B * H * W * N * H * W`` exponentials (use it on small training sets).
    """

    def __init__(self, train_images: torch.Tensor, patch_size: int | Sequence[tuple[float, int]],
                 equivariant: bool = True, chunk_size: int = 8192, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        schedule = [(math.inf, patch_size)] if isinstance(patch_size, int) else \
            [(float(s), k) for s, k in patch_size]
        if not schedule:
            raise ValueError("patch_size needs one size or a non-empty schedule of (sigma, size) pairs")
        for s, k in schedule:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"patch sizes must be odd positive integers, got {k!r}")
            if not s > 0:
                raise ValueError(f"schedule noise levels must be positive, got {s!r}")
        self.schedule = schedule
        self.equivariant = bool(equivariant)
        self.chunk_size = chunk_size
        self.dtype = dtype
        self.register_buffer("y", train_images.to(dtype))
        self._pools: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def size_at(self, sigma: float) -> int:
        """The patch size used at noise level ``sigma``."""
        if len(self.schedule) == 1:
            return self.schedule[0][1]
        return min(self.schedule, key=lambda sk: abs(math.log(sk[0]) - math.log(sigma)))[1]

    def _pool(self, k: int):
        """Training patches for size ``k``: ``(N*HW, C k^2)`` (equivariant) or ``(HW, N, C k^2)``, their
        half squared norms, and their centre pixels."""
        if k not in self._pools:
            patches = _patches(self.y, k)  # (N, HW, C k^2)
            n, hw, d = patches.shape
            c = self.y.shape[1]
            centre = patches.reshape(n, hw, c, k * k)[..., (k * k) // 2]  # (N, HW, C)
            if self.equivariant:
                patches, centre = patches.reshape(n * hw, d), centre.reshape(n * hw, c)
            else:
                patches, centre = patches.transpose(0, 1).contiguous(), centre.transpose(0, 1).contiguous()
            self._pools[k] = (patches, 0.5 * (patches**2).sum(-1), centre)
        return self._pools[k]

    def _denoise(self, x: torch.Tensor, inv_var: torch.Tensor, k: int) -> torch.Tensor:
        b, c, h, w = x.shape
        q = _patches(x, k)  # (B, HW, C k^2)
        pool, half_sq, centre = self._pool(k)
        if not self.equivariant:  # one small softmax per position: (HW, B, N)
            logits = (torch.einsum("pbd,pnd->pbn", q.transpose(0, 1), pool) - half_sq.unsqueeze(1)) \
                * inv_var.reshape(1, b, 1)
            out = torch.einsum("pbn,pnc->pbc", torch.softmax(logits, -1), centre)  # (HW, B, C)
            return out.permute(1, 2, 0).reshape(b, c, h, w)
        rows = q.reshape(b * h * w, -1)
        row_inv = inv_var.repeat_interleave(h * w).reshape(-1, 1)
        acc, run_sum = _streamed_posterior_mean(rows, row_inv, pool, half_sq, centre, self.chunk_size)
        return (acc / run_sum).reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x, sigma, cond=None):
        if cond is not None:
            raise ValueError("LocalDenoiser is unconditional")
        if tuple(x.shape[1:]) != tuple(self.y.shape[1:]):
            raise ValueError(f"images shaped {tuple(x.shape[1:])}, but the training patches come from "
                             f"{tuple(self.y.shape[1:])} images")
        s = as_sigma(sigma, x).reshape(-1).to(self.dtype)
        xf = x.to(self.y.device, self.dtype)
        s = s.to(self.y.device)
        out = torch.empty_like(xf)
        sizes = [self.size_at(float(v)) for v in s]
        for k in sorted(set(sizes)):
            rows = torch.tensor([z == k for z in sizes])
            out[rows] = self._denoise(xf[rows], 1.0 / s[rows] ** 2, k)
        return out.to(x.dtype).to(x.device)


class BlendedDenoiser(nn.Module):
    """``weight * first(x, sigma) + (1 - weight) * second(x, sigma)``: a convex combination of two denoisers.

    Each closed form here is the posterior mean under one model of the data; their blend is the
    posterior mean of neither, but it asks a simple question of a leaderboard: do two closed forms
    capture *different* parts of what a network does? ``weight = 1`` is ``first``, ``0`` is ``second``.
    """

    def __init__(self, first: nn.Module, second: nn.Module, weight: float) -> None:
        super().__init__()
        weight = checks.finite_number("weight", weight, low=0, high=1)
        self.first, self.second, self.weight = first, second, weight

    def forward(self, x, sigma, cond=None):
        if self.weight == 1.0:
            return self.first(x, sigma, cond)
        if self.weight == 0.0:
            return self.second(x, sigma, cond)
        return self.weight * self.first(x, sigma, cond) + (1 - self.weight) * self.second(x, sigma, cond)


class GaussianDenoiser(nn.Module):
    """The posterior mean for Gaussian data ``N(mu, Sigma)``: ``mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)``.

    Built from a training set's mean and covariance it is the linear reference that generalizing
    diffusion models approach (Li, Dai & Qu 2024). Uses the eigendecomposition of Sigma so any
    sigma costs one ``(B, D) x (D, r)`` product; ``evecs`` holds the ``r`` principal directions
    (``r = D``, or fewer when fitted to fewer images than dimensions: the rest have eigenvalue 0).
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().__init__()
        evals, evecs = torch.linalg.eigh(cov.double())
        self.register_buffer("mean", mean.reshape(-1).double())
        self.register_buffer("evals", evals.clamp_min(0))
        self.register_buffer("evecs", evecs)

    @classmethod
    def from_data(cls, images: torch.Tensor) -> "GaussianDenoiser":
        """Fit mean and (maximum-likelihood) covariance to ``(N, C, H, W)`` images.

        With fewer images than dimensions (N < D, e.g. one class of a small CIFAR-10 subset) the
        covariance has rank below N: its nonzero eigenpairs come from the SVD of the centred
        ``(N, D)`` data, ``N^2 D`` work instead of the ``D^3`` of a full eigendecomposition, and the
        same denoiser (the directions left out have eigenvalue 0, which shrinks them to 0 anyway).
        """
        y = images.reshape(images.shape[0], -1).double()
        mean = y.mean(0)
        centred = y - mean
        if y.shape[0] >= y.shape[1]:
            return cls(mean, centred.T @ centred / y.shape[0])
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        out = cls(mean, torch.zeros(1, 1))
        out.evals, out.evecs = s**2 / y.shape[0], vh.T.contiguous()
        return out

    def forward(self, x, sigma, cond=None):
        if cond is not None:
            raise ValueError("GaussianDenoiser is unconditional")
        xf = x.reshape(x.shape[0], -1).double() - self.mean
        s2 = as_sigma(sigma, x).reshape(-1, 1).double() ** 2
        coords = xf @ self.evecs  # (B, D)
        shrunk = coords * self.evals / (self.evals + s2)
        return (self.mean + shrunk @ self.evecs.T).to(x.dtype).reshape(x.shape)


class MoLRGDenoiser(nn.Module):
    """Exact posterior mean for a mixture of K zero-mean low-rank Gaussians ``N(0, s^2 U_k U_k^T)``.

    For component k, ``E[y | x, k] = s^2 / (s^2 + sigma^2) * U_k U_k^T x`` and the component
    posterior is ``softmax_k(||U_k^T x||^2 / 2 * (1/sigma^2 - 1/(s^2 + sigma^2)))`` (equal priors,
    equal ranks).
    """

    def __init__(self, bases: torch.Tensor, scale: float, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("bases", bases.double())  # (K, D, d)
        self.scale = float(scale)
        self.shape = tuple(shape)

    def forward(self, x, sigma, cond=None):
        xf = x.reshape(x.shape[0], -1).double()
        s2 = as_sigma(sigma, x).reshape(-1, 1).double() ** 2
        v = self.scale**2
        proj = torch.einsum("bd,kde->bke", xf, self.bases)  # (B, K, d)
        logits = 0.5 * (proj**2).sum(-1) * (1 / s2 - 1 / (v + s2))
        if cond is not None:
            logits = logits.masked_fill(torch.nn.functional.one_hot(cond, self.bases.shape[0]) == 0, -math.inf)
        w = torch.softmax(logits, dim=1)  # (B, K)
        recon = torch.einsum("bke,kde->bkd", proj, self.bases)  # (B, K, D)
        out = (w.unsqueeze(-1) * recon).sum(1) * (v / (v + s2))
        return out.to(x.dtype).reshape(x.shape)


class ClassGaussianDenoiser(nn.Module):
    """The class-conditional Gaussian denoiser: one :class:`GaussianDenoiser` per class, fitted to that
    class's images, and one fitted to all of them for the null label ``num_classes``.

    For label ``c``, ``D(x, sigma, c) = mu_c + Sigma_c (Sigma_c + sigma^2 I)^-1 (x - mu_c)``: a class
    mean plus the class's principal directions, each shrunk by ``lambda / (lambda + sigma^2)``. It is
    the linear model of a class-conditional diffusion model, so wrapping it in :class:`Guided` gives
    classifier-free guidance in closed form (the linear analysis of guidance of the Qu group,
    e.g. Li et al. 2025): ``(1 + w) D_c - w D_null`` pushes each noisy image away from the pooled
    Gaussian and towards its class's mean and principal directions.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
        super().__init__()
        labels = torch.as_tensor(labels).to(torch.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"one label per image: {len(images)} images, labels shaped {tuple(labels.shape)}")
        self.num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
        missing = sorted(set(range(self.num_classes)) - set(labels.tolist()))
        if missing or int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(f"labels must cover 0-{self.num_classes - 1} (classes with no image: {missing})")
        self.shape = tuple(images.shape[1:])
        self.classes = nn.ModuleList([GaussianDenoiser.from_data(images[labels == c]) for c in range(self.num_classes)]
                                     + [GaussianDenoiser.from_data(images)])

    def forward(self, x, sigma, cond=None):
        if cond is None:
            raise ValueError(f"ClassGaussianDenoiser needs labels (cond): 0-{self.num_classes - 1}, or "
                             f"{self.num_classes} for the unconditional (pooled) Gaussian")
        cond = torch.as_tensor(cond).reshape(-1)
        if len(cond) != len(x) or int(cond.min()) < 0 or int(cond.max()) > self.num_classes:
            raise ValueError(f"cond must hold {len(x)} labels in [0, {self.num_classes}]")
        s = as_sigma(sigma, x).reshape(-1)  # (B,): one sigma per row
        out = torch.empty_like(x)
        for c in cond.unique().tolist():
            rows = cond == c
            out[rows] = self.classes[c](x[rows], s[rows])
        return out


def wrapped(denoiser) -> Iterator:
    """``denoiser`` and the models it wraps through ``.denoiser`` (guidance, call recorders), outermost first."""
    seen = set()
    while denoiser is not None and id(denoiser) not in seen:
        seen.add(id(denoiser))
        yield denoiser
        denoiser = getattr(denoiser, "denoiser", None)


def backbone_classes(denoiser) -> tuple[bool, int | None]:
    """``(known, num_classes)`` of the trained backbone behind ``denoiser`` (through its wrappers);
    ``known`` is False for analytic denoisers, which have no backbone and check their ``cond`` themselves."""
    for d in wrapped(denoiser):
        backbone = getattr(d, "backbone", None)
        if backbone is not None and hasattr(backbone, "num_classes"):
            return True, backbone.num_classes
    return False, None


def class_count(denoiser) -> int | None:
    """The number of classes of a class-conditional denoiser, None for an unconditional one: its trained
    backbone's (:func:`backbone_classes`), else its own ``num_classes`` (:class:`ClassGaussianDenoiser`)."""
    known, num_classes = backbone_classes(denoiser)
    return num_classes if known else getattr(denoiser, "num_classes", None)


class Guided(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022) around a class-conditional denoiser.

    ``D_w(x, sigma, c) = (1 + w) D(x, sigma, c) - w D(x, sigma, null)``; ``w = 0`` is the plain
    conditional model. ``null_label`` is the label the model was trained with under label dropout
    (by default its class count, the package's convention). Wrapping an unconditional model, or a
    non-finite or negative ``guidance``, fails here, before any sampling.
    """

    def __init__(self, denoiser: nn.Module, guidance: float, null_label: int | None = None) -> None:
        super().__init__()
        num_classes = class_count(denoiser)
        if num_classes is None:
            raise ValueError("classifier-free guidance needs a class-conditional model (trained with "
                             "conditional=True and label dropout); this one is unconditional")
        guidance = float(guidance)
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"the guidance scale must be a finite number >= 0, got {guidance}")
        self.denoiser = denoiser
        self.guidance = guidance
        self.null_label = num_classes if null_label is None else int(null_label)
        self.num_classes = num_classes

    def forward(self, x, sigma, cond=None):
        if cond is None:
            raise ValueError("guided sampling needs class labels (cond)")
        if self.guidance == 0:
            return self.denoiser(x, sigma, cond)
        b = x.shape[0]
        s = as_sigma(sigma, x).reshape(-1)
        both = self.denoiser(torch.cat([x, x]), torch.cat([s, s]),
                             torch.cat([cond, torch.full_like(cond, self.null_label)]))
        c, u = both[:b], both[b:]
        return (1 + self.guidance) * c - self.guidance * u
