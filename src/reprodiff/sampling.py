"""Explicit noise and deterministic samplers of the probability-flow ODE.

Noise is data: :func:`noise_for_seeds` draws sample k's initial noise from its own generator seeded
with k (on CPU), so the *noise* of sample k is bitwise the same whatever the batch size, order or
device. Samplers take that noise as an argument and never draw randomness themselves; the one
stochastic sampler takes its per-step noise explicitly too. All samplers integrate
``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM's ODE) on a shared sigma grid, keep the state in
float64 (as the paper's sampler does) and call the denoiser in the model's dtype.

What that buys for the *samples*: the same seeds, model, sampler, batch size and torch thread
count (``torch.get_num_threads()``) give bitwise identical images, run after run and process after
process (on one machine and torch build). Change the batch size or the thread count and they agree
only to float rounding, because the network's batched kernels (matrix products, convolutions) may
block and sum in a different order: on CPU we measured a maximum difference of about 6e-7 between
batch sizes 7 and 32, and of about 3e-7 between one and two threads at batch size 7 (bitwise at
batch size 32, which is not a promise). The sample cache's key includes both.

Every number that shapes a sample (the sigma grid's ends and ``rho``) is checked before any
sampling work (:mod:`reprodiff.checks`), and a sampler never returns a NaN or infinite image: if a
model or a grid makes one, :func:`generate` raises :class:`~reprodiff.checks.NonFiniteError`
naming the sampler, the model and the seeds.

:func:`generate` keeps what a trained network (a :class:`~reprodiff.denoisers.Precond`) draws with a
deterministic sampler in the package's cache, keyed by a digest of the weights, the seeds, labels,
sampler, steps, batch size, thread count, torch version and the source of the modules that compute
a sample, and serves it again bit for bit (``REPRODIFF_SAMPLE_CACHE=0`` turns this off). Chapters
that sample earlier chapters' models from the same seeds get their samples without sampling.

Every sampler call of the package goes through :func:`run_sampler` (``generate``,
``generate_from_noise``, DPS, the trajectory studies): it runs on the model's device, moves the
CPU-made noise, labels and measurements there, and returns images on the CPU.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch

from . import cache, checks
from .denoisers import Denoiser, Precond, backbone_classes, wrapped
from .runtime import derive_seed, eval_mode, flush_denormal

__all__ = [
    "Samples",
    "noise_for_seeds",
    "karras_sigmas",
    "SamplerSpec",
    "SAMPLERS",
    "network_calls",
    "sample_euler",
    "sample_heun",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_euler_ancestral",
    "CallRecorder",
    "record_calls",
    "run_sampler",
    "seed_noise",
    "generate",
    "generate_from_noise",
    "record_trajectory",
    "resolve_device",
    "call_denoiser",
    "initial_state",
    "dpmpp_2m_step",
    "ancestral_step",
    "check_seeds",
    "check_positive",
    "check_shape",
    "check_labels",
    "check_request",
    "step_noise",
]


def _is_integer(value) -> bool:
    """True for Python and numpy integers and one-element integer tensors (never bools or floats)."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _seed_tensor(seeds: Iterable[int] | torch.Tensor) -> torch.Tensor:
    """``seeds`` as a 1-d int64 tensor, or ValueError: seed ids are integers and a float is never truncated.

    Accepts a sequence or iterable of Python/numpy integers, an integer numpy array or an integer tensor.
    """
    if not isinstance(seeds, torch.Tensor) and hasattr(seeds, "dtype") and hasattr(seeds, "shape"):
        seeds = torch.as_tensor(seeds)  # a numpy array
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype == torch.bool or seeds.dtype.is_floating_point or seeds.dtype.is_complex:
            raise ValueError(f"seeds must be integers, got a {seeds.dtype} tensor")
        if seeds.ndim != 1:
            raise ValueError(f"seeds must be a 1-d list of ids, got shape {tuple(seeds.shape)}")
        return seeds.to(torch.int64)
    values = list(seeds)
    bad = [v for v in values if not _is_integer(v)]
    if bad:
        raise ValueError(f"seeds must be integers, got {len(bad)} that are not (e.g. {bad[0]!r}); "
                         "a float seed would be silently truncated")
    return torch.tensor([operator.index(v) for v in values], dtype=torch.int64)


@dataclass
class Samples:
    """Generated images with the seed ids of their initial noise (pairing is by seed, never by order).

    ``images``: ``(B, C, H, W)`` float32, nominally in [-1, 1]; ``seeds``: ``(B,)`` int64;
    ``labels``: optional ``(B,)`` class labels; ``name``: which model/sampler made them.
    """

    images: torch.Tensor
    seeds: torch.Tensor
    name: str = ""
    labels: torch.Tensor | None = None
    sampler: str = ""
    #: descriptor name -> features in sorted-seed order (filled by reprodiff.metrics)
    features: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.seeds = _seed_tensor(self.seeds)
        if self.images.shape[0] != self.seeds.shape[0]:
            raise ValueError("one seed per image is required")
        if torch.unique(self.seeds).numel() != self.seeds.numel():
            raise ValueError("seed ids must be unique within a set of samples")

    def __len__(self) -> int:
        return self.seeds.shape[0]

    def by_seed(self, seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Images for the requested seed ids, in that order (KeyError if one is missing)."""
        return self.select(seeds).images

    def select(self, seeds: Sequence[int] | torch.Tensor) -> "Samples":
        """The samples of the requested seed ids only (KeyError if one is missing), e.g. to score a
        set against another drawn from fewer seeds."""
        index = {int(s): i for i, s in enumerate(self.seeds)}
        try:
            rows = [index[int(s)] for s in seeds]
        except KeyError as exc:
            raise KeyError(f"seed {exc.args[0]} not in samples {self.name!r}") from None
        labels = None if self.labels is None else self.labels[rows]
        return Samples(self.images[rows], self.seeds[rows], self.name, labels, self.sampler)


def noise_for_seeds(seeds: Iterable[int], shape: Sequence[int], dtype: torch.dtype = torch.float32,
                    stream: int = 0) -> torch.Tensor:
    """Standard normal noise, one independent generator per seed: ``(len(seeds), *shape)`` on CPU.

    ``stream`` selects an independent noise stream for the same seeds (e.g. the per-step noise of a
    stochastic sampler), so initial noise and injected noise never coincide.
    """
    seeds = [int(s) for s in seeds]
    out = torch.empty((len(seeds), *shape), dtype=dtype)
    for i, s in enumerate(seeds):
        if s < 0:
            raise ValueError(f"seeds must be non-negative, got {s}")
        g = torch.Generator().manual_seed(derive_seed(s, "sample-noise", stream))
        out[i] = torch.randn(tuple(shape), generator=g, dtype=dtype)
    return out


def karras_sigmas(steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's time grid: ``steps`` sigmas from ``sigma_max`` to ``sigma_min`` (rho-spaced) plus a final 0.

    ``0 < sigma_min < sigma_max``, both finite, and ``rho > 0`` (ValueError otherwise: a zero
    ``sigma_min`` divides by zero in the samplers, a negative one makes the grid complex).
    Returns a float64 tensor of shape ``(steps + 1,)``.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    low = checks.finite_number("sigma_min", sigma_min, low=0, low_inclusive=False)
    checks.finite_number("sigma_max", sigma_max, low=low, low_inclusive=False)
    checks.finite_number("rho", rho, low=0, low_inclusive=False)
    i = torch.arange(steps, dtype=torch.float64)
    inv = 1.0 / rho
    ramp = i / max(steps - 1, 1)
    s = (sigma_max**inv + ramp * (sigma_min**inv - sigma_max**inv)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


def call_denoiser(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, cond, dtype) -> torch.Tensor:
    """``denoiser(x, sigma, cond)`` evaluated in the model's ``dtype``, returned in float64 (the
    samplers' state): ``x`` is ``(B, C, H, W)``, ``sigma`` a scalar tensor."""
    return denoiser(x.to(dtype), sigma.to(dtype), cond).to(torch.float64)


def initial_state(noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """A sampler's starting point ``x_T``: unit-variance ``noise`` scaled by the first sigma, in float64."""
    return noise.to(torch.float64) * sigmas[0]


def sample_euler(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                 model_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """First-order Euler steps of the probability-flow ODE (one network call per step).

    Args:
        noise: ``(B, C, H, W)`` unit-variance initial noise (scaled here by ``sigmas[0]``).
        sigmas: decreasing grid ending in 0, e.g. :func:`karras_sigmas`.

    Returns: ``(B, C, H, W)`` float64 final sample. To observe the trajectory, wrap the denoiser
    (:func:`record_calls`).
    """
    x = initial_state(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = call_denoiser(denoiser, x, s, cond, model_dtype)
        x = x0 + (s_next / s) * (x - x0)  # = x + (s_next - s) * (x - x0) / s
    return x


def sample_ddim(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                model_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DDIM with eta = 0 (Song et al. 2021), written in its own variance-preserving coordinates.

    ``x_t = alpha x0 + sqrt(1 - alpha^2) eps`` with ``alpha = 1/sqrt(1 + sigma^2)``. Karras et al.
    (2022) showed this update is exactly an Euler step of the ODE in ``x / alpha``; we keep the
    DDIM form to make that equivalence a tested fact rather than an assumption.
    """
    x = initial_state(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = call_denoiser(denoiser, x, s, cond, model_dtype)
        a, a_next = 1 / (1 + s**2).sqrt(), 1 / (1 + s_next**2).sqrt()
        x_t = a * x
        eps = (x_t - a * x0) / (1 - a**2).sqrt()
        x = (a_next * x0 + (1 - a_next**2).sqrt() * eps) / a_next
    return x


def sample_heun(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                model_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """EDM's deterministic 2nd-order Heun sampler (Karras et al. 2022, Algorithm 1 without churn).

    With the default 18-step grid it makes 35 network calls, the paper's setting.
    """
    x = initial_state(noise, sigmas)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = call_denoiser(denoiser, x, s, cond, model_dtype)
        d = (x - x0) / s
        x_euler = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_euler - call_denoiser(denoiser, x_euler, s_next, cond, model_dtype)) / s_next
            x = x + (s_next - s) * 0.5 * (d + d_next)
        else:
            x = x_euler
    return x


def sample_dpmpp_2m(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                    model_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep 2nd order in ``lambda = -log sigma``, data prediction.

    One network call per step; the previous step's ``x0_hat`` supplies the second-order correction.
    """
    x = initial_state(noise, sigmas)
    history = None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x, history = dpmpp_2m_step(x, call_denoiser(denoiser, x, s, cond, model_dtype), s, s_next, history)
    return x


def dpmpp_2m_step(x: torch.Tensor, x0: torch.Tensor, s: torch.Tensor, s_next: torch.Tensor, history):
    """One DPM-Solver++(2M) step from sigma ``s`` to ``s_next`` given ``x0 = D(x, s)``; ``history`` is
    the previous step's ``(x0, h)`` (None at the first step). Returns ``(x_next, history)``."""
    if s_next == 0:
        return x0, None
    h = (s / s_next).log()  # lambda_next - lambda
    if history is None:
        d = x0
    else:
        prev_x0, prev_h = history
        r = prev_h / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
    return (s_next / s) * x - torch.expm1(-h) * d, (x0, h)


def sample_euler_ancestral(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, cond=None,
                           model_dtype: torch.dtype = torch.float32,
                           step_noise: torch.Tensor | None = None) -> torch.Tensor:
    """A *stochastic* control: ancestral Euler steps that inject fresh noise at every step.

    Args:
        step_noise: ``(steps, B, C, H, W)`` unit noise injected at each step (required: the sampler
            draws nothing itself). Different ``step_noise`` for the same initial ``noise`` gives a
            different image, which is what breaks reproducibility.
    """
    if step_noise is None or step_noise.shape[:2] != (len(sigmas) - 1, noise.shape[0]):
        raise ValueError("sample_euler_ancestral needs step_noise of shape (steps, B, ...)")
    x = initial_state(noise, sigmas)
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x = ancestral_step(x, call_denoiser(denoiser, x, s, cond, model_dtype), s, s_next, step_noise[i])
    return x


def ancestral_step(x: torch.Tensor, x0: torch.Tensor, s: torch.Tensor, s_next: torch.Tensor,
                    step_noise: torch.Tensor) -> torch.Tensor:
    """One ancestral Euler step from sigma ``s`` to ``s_next`` given ``x0 = D(x, s)``, injecting
    ``step_noise`` (unit, shaped like x)."""
    s_up = torch.minimum(s_next, (s_next**2 * (s**2 - s_next**2) / s**2).sqrt())
    s_down = (s_next**2 - s_up**2).sqrt()
    return x0 + (s_down / s) * (x - x0) + s_up * step_noise.to(torch.float64)


@dataclass(frozen=True)
class SamplerSpec:
    """What the rest of the package needs to know about a sampler, kept next to its function.

    ``fn(denoiser, noise, sigmas, cond=None, model_dtype=...)`` returns the ``(B, C, H, W)`` float64
    sample; ``calls(steps)`` is how many denoiser evaluations it makes on a grid of ``steps`` sigmas
    (plus the final 0), the cost axis of chapter 2's sampler study; ``stochastic`` samplers also take
    ``step_noise`` (``(steps, B, C, H, W)``), which :func:`generate` draws from an explicit stream.
    """

    fn: Callable[..., torch.Tensor]
    calls: Callable[[int], int]
    stochastic: bool = False
    description: str = ""


def _one_call_per_step(steps: int) -> int:
    return steps


def _heun_calls(steps: int) -> int:
    # two calls per step, except the last step to sigma = 0, which is a plain Euler step
    return 2 * steps - 1


SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(sample_euler, _one_call_per_step, description="Euler, 1st order"),
    "ddim": SamplerSpec(sample_ddim, _one_call_per_step, description="DDIM (eta = 0), 1st order"),
    "heun": SamplerSpec(sample_heun, _heun_calls, description="EDM's Heun, 2nd order"),
    "dpmpp-2m": SamplerSpec(sample_dpmpp_2m, _one_call_per_step, description="DPM-Solver++(2M), 2nd order multistep"),
    "euler-ancestral": SamplerSpec(sample_euler_ancestral, _one_call_per_step, stochastic=True,
                                   description="ancestral Euler, injects fresh noise every step"),
}


def _sampler_spec(sampler: str) -> SamplerSpec:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler]


def network_calls(sampler: str, steps: int) -> int:
    """Number of denoiser evaluations a sampler makes on a grid of ``steps`` sigmas (plus the final 0)."""
    return _sampler_spec(sampler).calls(steps)


class CallRecorder(torch.nn.Module):
    """A denoiser that forwards to another and keeps every evaluation (made by :func:`record_calls`).

    ``calls``: one ``(x, sigma, output)`` per call, in call order: ``x`` and ``output`` are detached
    copies of the ``(B, C, H, W)`` input and output, ``sigma`` a float (the samplers evaluate a whole
    batch at one noise level).
    """

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.calls: list[tuple[torch.Tensor, float, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.denoiser(x, sigma, cond)
        self.calls.append((x.detach().clone(), torch.as_tensor(sigma).reshape(-1)[0].item(), out.detach().clone()))
        return out


def record_calls(denoiser: Denoiser) -> CallRecorder:
    """Wrap ``denoiser`` so that every evaluation a sampler makes is kept in ``.calls``.

    The samplers have no trajectory hook on purpose: observing them is done from the outside, so the
    code that produces the book's samples is the code that is observed. The wrapper returns the
    denoiser's outputs unchanged, so a recorded run gives bit-identical samples::

        rec = record_calls(model)
        sample_euler(rec, noise, karras_sigmas(18))
        for x, sigma, x0_hat in rec.calls: ...
    """
    return CallRecorder(denoiser)


# ----------------------------------------------------------------------------- generate and its checks


def resolve_device(denoiser, device: str | torch.device | None = None) -> torch.device:
    """The device to sample on: ``device`` when given, else the device of the first parameter or
    buffer of ``denoiser`` or of a model it wraps (:func:`~reprodiff.denoisers.wrapped`), else CPU (a parameter-free
    denoiser, e.g. a function)."""
    if device is not None:
        return torch.device(device)
    for d in wrapped(denoiser):
        if isinstance(d, torch.nn.Module):
            for t in itertools.chain(d.parameters(), d.buffers()):
                return t.device
    return torch.device("cpu")


def _as_shape(value) -> tuple[int, ...] | None:
    try:
        shape = tuple(operator.index(v) for v in value)
    except TypeError:
        return None
    return shape if len(shape) == 3 else None


def _declared_shape(denoiser) -> tuple[int, ...] | None:
    """The ``(C, H, W)`` a model says it works on: its own ``.shape`` (analytic MoLRG denoiser), its
    backbone's (U-ViT, MLP) or the ``info`` a loaded checkpoint carries; None when it declares none."""
    for d in wrapped(denoiser):
        info = getattr(d, "info", None)
        for value in (getattr(d, "shape", None), getattr(getattr(d, "backbone", None), "shape", None),
                      info.get("shape") if isinstance(info, dict) else None):
            if value is not None and (shape := _as_shape(value)) is not None:
                return shape
    return None


def check_shape(shape: Sequence[int], denoiser) -> tuple[int, int, int]:
    """``shape`` as ``(C, H, W)`` positive ints; raises ValueError if malformed or unlike the shape
    ``denoiser`` declares it was trained on."""
    try:
        values = tuple(shape)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(_is_integer(v) and operator.index(v) > 0 for v in values):
        raise ValueError(f"shape must be (C, H, W), three positive integers; got {shape!r}")
    shape = tuple(operator.index(v) for v in values)
    declared = _declared_shape(denoiser)
    if declared is not None and declared != shape:
        raise ValueError(f"model trained on {declared} images, asked for {shape}")
    return shape  # type: ignore[return-value]


def check_seeds(seeds) -> torch.Tensor:
    """``seeds`` as an int64 tensor; raises ValueError when empty, negative or repeated (samples
    are paired by seed)."""
    seeds = _seed_tensor(seeds)
    if seeds.numel() == 0:
        raise ValueError("no seeds given: generate makes one sample per seed")
    if (seeds < 0).any():
        raise ValueError(f"seeds must be non-negative, got {int(seeds.min())}")
    unique, counts = torch.unique(seeds, return_counts=True)
    if (counts > 1).any():
        dup = unique[counts > 1].tolist()
        raise ValueError(f"seed ids must be unique (samples are paired by seed); repeated: {dup[:5]}"
                         + ("..." if len(dup) > 5 else ""))
    return seeds


def check_positive(value, what: str) -> int:
    """``value`` as an int >= 1; raises ValueError naming ``what`` otherwise."""
    if not _is_integer(value) or operator.index(value) < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return operator.index(value)


def check_labels(labels, n: int, denoiser) -> torch.Tensor | None:
    """``labels`` for ``n`` samples as an int64 tensor (or None), checked against the classes of the
    backbone behind ``denoiser`` (:func:`~reprodiff.denoisers.backbone_classes`); raises ValueError on a mismatch."""
    known, num_classes = backbone_classes(denoiser)
    if labels is None:
        if known and num_classes is not None:
            raise ValueError(f"this model is class-conditional ({num_classes} classes): pass labels= "
                             f"(0-{num_classes - 1}, or {num_classes} for the unconditional null label)")
        return None
    if known and num_classes is None:
        raise ValueError("this model is unconditional (its backbone has no class embedding): do not pass labels=")
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    labels = labels.to(torch.int64)
    if labels.shape != (n,):
        raise ValueError(f"labels must have one entry per seed: shape ({n},), got {tuple(labels.shape)}")
    if known and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}] ({num_classes} is the null label of "
                         f"classifier-free guidance); got values from {int(labels.min())} to {int(labels.max())}")
    return labels


def check_request(denoiser, shape: Sequence[int], n: int, steps, batch_size, labels):
    """The checks every sampler entry point makes before any work: ``(steps, batch_size, shape, labels)``,
    checked (:func:`check_positive`, :func:`check_shape`, :func:`check_labels` for ``n`` samples)."""
    steps = check_positive(steps, "steps")
    batch_size = check_positive(batch_size, "batch_size")
    shape = check_shape(shape, denoiser)
    return steps, batch_size, shape, check_labels(labels, n, denoiser)


def step_noise(seeds: torch.Tensor, shape: Sequence[int], stream: int | None,
               steps: int) -> Callable[[int, int], torch.Tensor] | None:
    """``step_noise_for`` of :func:`run_sampler`: the noise a stochastic sampler injects over ``steps`` steps,
    drawn per seed from that seed's ``1 + stream`` (stream 0 is its initial noise, so the two never
    coincide); None when ``stream`` is None (a deterministic sampler)."""
    return None if stream is None else seed_noise(seeds, shape, 1 + stream, steps)


def seed_noise(seeds: torch.Tensor, shape: Sequence[int], stream: int = 0,
               steps: int | None = None) -> Callable[[int, int], torch.Tensor]:
    """``noise_for(start, stop)`` for :func:`run_sampler`: the CPU noise of ``seeds[start:stop]``
    (:func:`noise_for_seeds`), ``(B, C, H, W)`` initial noise, or with ``steps`` the
    ``(steps, B, C, H, W)`` noise a stochastic sampler injects."""
    def noise_for(start: int, stop: int) -> torch.Tensor:
        if steps is None:
            return noise_for_seeds(seeds[start:stop].tolist(), shape, stream=stream)
        return noise_for_seeds(seeds[start:stop].tolist(), (steps, *shape), stream=stream).transpose(0, 1)
    return noise_for


def run_sampler(fn: Callable[..., torch.Tensor], denoiser: Denoiser, noise_for: Callable[[int, int], torch.Tensor],
                sigmas: torch.Tensor, *, n: int, labels: torch.Tensor | None = None, batch_size: int,
                device: str | torch.device | None = None,
                step_noise_for: Callable[[int, int], torch.Tensor] | None = None,
                per_sample: dict[str, torch.Tensor] | None = None, what: str = "sampling",
                seeds: torch.Tensor | None = None,
                hint: str = "check the model (did its training diverge?), its guidance and the sigma grid",
                desc: str = "sampling", progress: bool = False, **kwargs) -> torch.Tensor:
    """The one way into a sampler: every sampling run of the package (:func:`generate`,
    :func:`generate_from_noise`, DPS, the trajectory studies) goes through here.

    Runs ``fn(denoiser, noise, sigmas, cond=labels, **kwargs)`` (a sampler of :data:`SAMPLERS`, or
    one with the same signature such as :func:`reprodiff.inverse.dps_sample`) on samples
    ``start:stop`` of ``n``, ``batch_size`` at a time, on ``device`` (``None``: the device of the
    model, :func:`resolve_device`). Everything a batch needs is moved there: the sigma grid, the
    initial noise ``noise_for(start, stop)`` (made on the CPU by the caller, so the noise is a
    function of the seed only), the ``(n,)`` ``labels``, the injected noise
    ``step_noise_for(start, stop)`` of a stochastic sampler and every ``(n, ...)`` tensor of
    ``per_sample`` (e.g. DPS's measurements ``y``), sliced per batch; other keyword arguments (DPS's
    operator and ``zeta``) are passed as they are. The model is in eval mode (restored afterwards)
    and denormals are flushed.

    Returns ``(n, C, H, W)`` float32 images clamped to [-1, 1], on the CPU. A batch with a NaN or
    infinite image (checked before the clamp, which would hide an inf) raises
    :class:`~reprodiff.checks.NonFiniteError` naming ``what``, the bad ``seeds`` and ``hint``.
    """
    from tqdm.auto import tqdm

    device = resolve_device(denoiser, device)
    sigmas = sigmas.to(device)
    outs = []
    with eval_mode(denoiser) as model:
        for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
            stop = start + batch_size
            cond = None if labels is None else labels[start:stop].to(device)
            batch = dict(kwargs)
            if step_noise_for is not None:
                batch["step_noise"] = step_noise_for(start, stop).to(device)
            for key, value in (per_sample or {}).items():
                batch[key] = value[start:stop].to(device)
            with flush_denormal():
                images = fn(model, noise_for(start, stop).to(device), sigmas, cond=cond, **batch).float()
                checks.finite_output(images, what, None if seeds is None else seeds[start:stop], hint)
                outs.append(images.clamp(-1, 1).cpu())
    return torch.cat(outs)


def _what(sampler: str, steps: int, denoiser, name: str) -> str:
    """How a sampling run is named in its errors: sampler, steps and model."""
    model = type(denoiser).__name__
    if (backbone := getattr(denoiser, "backbone", None)) is not None:
        model += f" of a {type(backbone).__name__}"
    return f"{sampler}-{steps} sampling of {name or 'a model'} ({model})"


@functools.lru_cache(maxsize=None)
def _code_digest() -> str:
    """Digest of the source that turns weights and noise into a sample (this module, the
    preconditioning and objectives, the backbones): editing any of them invalidates cached samples."""
    import importlib
    from pathlib import Path

    h = hashlib.sha256()
    for module in ("reprodiff.sampling", "reprodiff.denoisers", "reprodiff.backbones", "reprodiff.runtime"):
        h.update(Path(importlib.import_module(module).__file__).read_bytes())
    return h.hexdigest()


def _sample_key(denoiser, seeds: torch.Tensor, shape, labels, sigmas: torch.Tensor, sampler: str,
                batch_size: int, noise_stream: int, device) -> str | None:
    """The cache key of one deterministic :func:`generate` call, or ``None`` when it is not cached
    (not a trained network, on an accelerator, or the sample cache is off)."""
    if not isinstance(denoiser, Precond) or torch.device(device).type != "cpu" or not cache.sample_cache_enabled():
        return None
    h = hashlib.sha256()
    for part in (f"format {cache.CACHE_FORMAT}", torch.__version__, _code_digest(), type(denoiser.backbone).__qualname__,
                 denoiser.objective.name, sampler, str(tuple(shape)), str(batch_size), str(noise_stream),
                 str(torch.get_num_threads()), "labels" if labels is not None else "no labels"):
        h.update(part.encode() + b"\0")
    for name, t in sorted(denoiser.state_dict().items()):
        h.update(f"{name} {t.dtype} {tuple(t.shape)}".encode() + b"\0")
        h.update(cache.raw_bytes(t))
    for t in (seeds.to(torch.int64), sigmas.to(torch.float64), *(() if labels is None else (labels.to(torch.int64),))):
        h.update(cache.raw_bytes(t))
    return h.hexdigest()


@torch.no_grad()
def generate_from_noise(denoiser: Denoiser, noise: torch.Tensor, *, sampler: str = "heun", steps: int = 18,
                        sigma_min: float = 0.002, sigma_max: float = 80.0,
                        labels: torch.Tensor | Sequence[int] | None = None, batch_size: int = 256,
                        name: str = "") -> Samples:
    """Sample from given unit initial noises ``(B, C, H, W)`` (e.g. interpolated ones) with a
    deterministic sampler; sample k is numbered k. :func:`generate` runs the same loop with the
    noise drawn from the seeds, and the two agree bit for bit on the same noise and batch size.
    Sampling runs on the model's device (as :func:`generate` with ``device=None``); the images
    come back on CPU. ValueError when ``noise`` holds NaN or inf, or the sigma grid is invalid
    (:func:`karras_sigmas`)."""
    spec = _sampler_spec(sampler)
    if spec.stochastic:
        raise ValueError(f"{sampler} is stochastic: generate_from_noise runs deterministic samplers only")
    if noise.dim() != 4:
        raise ValueError(f"noise must be shaped (B, C, H, W), got {tuple(noise.shape)}")
    checks.finite_images("noise", noise)
    steps, batch_size, _, labels = check_request(denoiser, noise.shape[1:], len(noise), steps, batch_size, labels)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max)
    images = run_sampler(spec.fn, denoiser, lambda a, b: noise[a:b].float(), sigmas, n=len(noise), labels=labels,
                         batch_size=batch_size, desc=f"sampling {name or sampler}",
                         what=_what(sampler, steps, denoiser, name))
    return Samples(images, torch.arange(len(noise)), name=name, labels=labels, sampler=f"{sampler}-{steps}")


@torch.no_grad()
def generate(denoiser: Denoiser, seeds: Sequence[int] | torch.Tensor, shape: Sequence[int], *,
             sampler: str = "heun", steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0,
             labels: torch.Tensor | Sequence[int] | None = None, batch_size: int = 256, noise_stream: int = 0,
             step_noise_stream: int | None = None, device: str | torch.device | None = None,
             name: str = "", progress: bool = False, cache_samples: bool = True) -> Samples:
    """Sample one image per seed with a given sampler: the book's everyday entry point.

    Args:
        seeds: distinct non-negative integer seed ids; sample k starts from ``noise_for_seeds([k], shape)``.
        shape: ``(C, H, W)``; must match the image shape the model declares, if it declares one.
        labels: ``(len(seeds),)`` integer class labels, required exactly for class-conditional models.
        step_noise_stream: for ``euler-ancestral`` only, which noise stream supplies the injected
            noise (two models given different streams see different fresh noise).
        device: where the sampler runs; ``None`` (default): the device of the model's first
            parameter or buffer, looking through wrappers (guidance, call recorders), CPU for a
            denoiser without any. The noise is drawn on CPU either way and the images return on CPU.
        cache_samples: reuse (and keep) the samples of a trained network drawn with a deterministic
            sampler on CPU from the package's cache (module docstring); ``False`` always samples.

    Every argument is checked before any sampling work (a bad seed must not surface after an hour),
    the sigma grid's ends too (:func:`karras_sigmas`: ``0 < sigma_min < sigma_max``, finite). The
    model is put in eval mode for sampling and left in the train/eval modes it came in. Results are
    bitwise reproducible for a fixed batch size and thread count, and equal to float rounding
    across batch sizes or thread counts (see the module docstring).

    Returns: :class:`Samples` with float32 images clamped to [-1, 1], on CPU; never a NaN or
    infinite image (:class:`~reprodiff.checks.NonFiniteError` names the sampler, model and seeds).
    """
    spec = _sampler_spec(sampler)
    if spec.stochastic and step_noise_stream is None:
        raise ValueError("the stochastic sampler needs step_noise_stream (its injected noise is explicit)")
    seeds = check_seeds(seeds)
    steps, batch_size, shape, labels = check_request(denoiser, shape, len(seeds), steps, batch_size, labels)
    device = resolve_device(denoiser, device)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max).to(device)
    key = None if spec.stochastic or not cache_samples else \
        _sample_key(denoiser, seeds, shape, labels, sigmas, sampler, batch_size, noise_stream, device)
    if key is not None and (images := cache.read_samples(key, (len(seeds), *shape))) is not None:
        return Samples(images, seeds, name=name, labels=labels, sampler=f"{sampler}-{steps}")

    step_noise_for = step_noise(seeds, shape, step_noise_stream if spec.stochastic else None, steps)
    images = run_sampler(spec.fn, denoiser, seed_noise(seeds, shape, noise_stream), sigmas, n=len(seeds),
                         labels=labels, batch_size=batch_size, device=device, step_noise_for=step_noise_for,
                         desc=f"sampling {name or sampler}", progress=progress,
                         what=_what(sampler, steps, denoiser, name), seeds=seeds)
    if key is not None:
        cache.write_samples(key, images)
    return Samples(images, seeds, name=name, labels=labels, sampler=f"{sampler}-{steps}")


def record_trajectory(model: torch.nn.Module, seeds: Sequence[int] | range, shape: Sequence[int],
                      steps: int) -> CallRecorder:
    """``model``'s Euler trajectory from ``seeds`` in one batch, on the model's device: every
    ``(x, sigma, x0_hat)`` it evaluated, in ``.calls`` (tensors on that device)."""
    seeds = torch.tensor(list(seeds), dtype=torch.int64)
    rec = record_calls(model)
    with torch.no_grad():
        run_sampler(sample_euler, rec, seed_noise(seeds, shape), karras_sigmas(steps), n=len(seeds),
                    batch_size=max(len(seeds), 1), seeds=seeds,
                    what=f"the Euler-{steps} trajectory of {type(model).__name__}")
    return rec
