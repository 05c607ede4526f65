"""Public diffusers DDPM checkpoints as denoisers of the package: ``denoiser(x, sigma) -> x0_hat``.

A diffusers ``UNet2DModel`` trained as in DDPM (Ho et al. 2020) predicts the noise ``eps`` (or ``v``,
or ``x0``) of a variance-preserving state ``x_vp = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` at an
integer timestep ``t`` of a discrete beta schedule. The package works in EDM's variance-exploding
coordinates (Karras et al. 2022), ``x = x0 + sigma n`` with images in [-1, 1]; the two meet at

    sigma_t = sqrt((1 - abar_t) / abar_t),      x_vp = x / sqrt(1 + sigma^2).

:class:`DiffusersDenoiser` is that change of coordinates as a thin wrapper. A sampler may ask for
any sigma (a Karras grid visits none of the table's), so a sigma between two entries of the table
maps to a *fractional* timestep, linear in ``log sigma`` between its neighbours: the idea of
k-diffusion's ``DiscreteSchedule.sigma_to_t`` (Crowson), which the positional timestep embedding
of these UNets accepts. :meth:`DiffusersDenoiser.ddim_sigmas` gives the sigmas diffusers'
``DDIMScheduler`` visits, so :func:`reprodiff.sampling.sample_ddim` on that grid is diffusers' DDIM
(Song et al. 2021, ``eta = 0``) step for step; the tests check it against diffusers' own loop.

The scheduler's ``clip_sample`` and ``thresholding`` are not applied: the denoiser returns the raw
estimate of ``x0``, as the probability-flow ODE needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data import ResourceUnavailableError
from .denoisers import as_sigma

__all__ = ["PretrainedUnavailableError", "DiffusersDenoiser", "DiffusersSource", "locate_diffusers_model",
           "load_diffusers_denoiser"]

_PREDICTIONS = ("epsilon", "v_prediction", "sample")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class PretrainedUnavailableError(ResourceUnavailableError):
    """A pretrained checkpoint is missing, cannot be downloaded, or is not an unconditional DDPM UNet."""


def _shape(unet_config) -> tuple[int, int, int]:
    """``(C, H, W)`` of a UNet2DModel config (``sample_size`` is an int or ``(H, W)``)."""
    size = unet_config.get("sample_size")
    if size is None:
        raise PretrainedUnavailableError("the UNet config declares no sample_size, so its image shape is unknown")
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(unet_config.get("in_channels", 3)), int(h), int(w)


class DiffusersDenoiser(torch.nn.Module):
    """A diffusers ``UNet2DModel`` on a discrete VP schedule, called as ``denoiser(x, sigma) -> x0_hat``.

    Args:
        unet: an unconditional ``UNet2DModel`` with the positional timestep embedding.
        alphas_cumprod: ``(T,)`` the schedule's ``abar_t``, t = 0..T-1 (kept in float64).
        prediction_type: what the UNet predicts: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.
        scheduler_config: the checkpoint's scheduler config, for :meth:`ddim_sigmas`.

    ``x``: ``(B, C, H, W)`` noisy images ``x0 + sigma n``; ``sigma``: scalar or ``(B,)``. Returns
    ``x0_hat`` shaped like ``x``. ``shape`` is the ``(C, H, W)`` the UNet was built for, ``sigmas``
    the ``(T,)`` float64 table ``sigma_t`` and ``sigma_min``/``sigma_max`` its ends.
    """

    def __init__(self, unet, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 scheduler_config: dict | None = None) -> None:
        super().__init__()
        if prediction_type not in _PREDICTIONS:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}; "
                             f"choose one of {', '.join(_PREDICTIONS)}")
        abar = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        sigmas = ((1 - abar) / abar).sqrt()
        if abar.ndim != 1 or len(abar) < 2 or not torch.isfinite(sigmas).all() or not (sigmas[1:] > sigmas[:-1]).all():
            raise ValueError("alphas_cumprod must be a decreasing table of at least 2 values in (0, 1); a zero "
                             "terminal SNR schedule (abar_T = 0, sigma_max = inf) has no variance-exploding form")
        self.unet = unet
        self.prediction_type = prediction_type
        self.scheduler_config = dict(scheduler_config or {"num_train_timesteps": len(abar)})
        # a plain attribute, not a buffer: .float()/.half() on the module must not round the table
        self.sigmas = sigmas
        self.shape = _shape(unet.config)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timesteps ``(B,)`` float64 of sigmas ``(B,)``: linear in ``log sigma`` between the
        table's neighbours (k-diffusion's ``sigma_to_t``), clamped to ``[0, T - 1]``.

        The table is first rounded to ``sigma``'s dtype, so an entry of the table that reaches the
        model in float32 (as the samplers pass it) still lands on its integer timestep exactly.
        """
        log_table = self.sigmas.to(sigma.dtype).to(torch.float64).log()
        s = sigma.detach().to("cpu", torch.float64).log().clamp(log_table[0], log_table[-1])
        i = (torch.searchsorted(log_table, s, right=True) - 1).clamp(0, len(log_table) - 2)
        gap = log_table[i + 1] - log_table[i]
        w = torch.where(gap > 0, (s - log_table[i]) / gap.clamp_min(1e-300), torch.zeros_like(s))
        return i + w

    def ddim_sigmas(self, steps: int) -> torch.Tensor:
        """The sigmas at which diffusers' ``DDIMScheduler.set_timesteps(steps)`` evaluates the model,
        then a final 0: ``(steps + 1,)`` float64, for :func:`reprodiff.sampling.sample_ddim`.

        diffusers' own code picks the timesteps, so the config's ``timestep_spacing`` and
        ``steps_offset`` are respected. The final 0 is diffusers' ``set_alpha_to_one=True``. diffusers'
        DDIM step lands on ``t - T // steps``, which is the next visited timestep for ``"leading"``
        spacing and for ``"trailing"`` when ``steps`` divides ``T``; with ``"linspace"`` diffusers' own
        loop skips between the two, and this grid follows the visited timesteps.
        """
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.scheduler_config)
        scheduler.set_timesteps(steps)
        return torch.cat([self.sigmas[scheduler.timesteps.long()], torch.zeros(1, dtype=torch.float64)])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("this diffusers UNet is unconditional: call it with cond=None")
        sigma = as_sigma(sigma, x)
        t = self.sigma_to_t(sigma.reshape(-1)).to(x.device, torch.float32)
        c_in = 1 / (1 + sigma**2).sqrt()  # sqrt(abar_t)
        out = self.unet(x * c_in, t, return_dict=False)[0]
        if out.shape[1] == 2 * x.shape[1]:  # a learned-variance UNet: the variance half is not needed
            out = out[:, : x.shape[1]]
        if self.prediction_type == "epsilon":
            return x - sigma * out
        if self.prediction_type == "v_prediction":  # x0 = sqrt(abar) x_vp - sqrt(1 - abar) v
            return c_in**2 * x - sigma * c_in * out
        return out


@dataclass(frozen=True)
class DiffusersSource:
    """A located checkpoint, its configs read and checked, its weights not yet loaded.

    ``location``: a local folder or a Hub id; ``unet_subfolder``: ``"unet"`` for a pipeline folder,
    ``""`` for a bare UNet; ``scheduler_config``: the noise schedule the UNet was trained on.
    """

    location: str
    unet_subfolder: str
    unet_config: dict
    scheduler_config: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        return _shape(self.unet_config)

    def load(self, device: str | torch.device = "cpu") -> DiffusersDenoiser:
        """Load the UNet's weights (and build the schedule) into an eval-mode :class:`DiffusersDenoiser`."""
        from diffusers import DDPMScheduler, UNet2DModel

        try:
            unet = UNet2DModel.from_pretrained(self.location, **({"subfolder": self.unet_subfolder}
                                                                  if self.unet_subfolder else {}))
        except (OSError, ValueError, RuntimeError) as exc:
            raise PretrainedUnavailableError(f"cannot load the UNet weights of {self.location!r} "
                                             f"({_one_line(exc)})") from exc
        abar = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        model = DiffusersDenoiser(unet, abar, self.scheduler_config.get("prediction_type", "epsilon"),
                                  self.scheduler_config)
        return model.to(device).eval().requires_grad_(False)


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (the command line reports errors in one)."""
    return " ".join(str(exc).split())


def _read(folder: Path, *names: str) -> tuple[str, dict] | None:
    """The first of ``names`` (paths under ``folder``) that exists, and its JSON."""
    for name in names:
        if (folder / name).is_file():
            try:
                return name, json.loads((folder / name).read_text())
            except (OSError, ValueError) as exc:
                raise PretrainedUnavailableError(f"{folder / name} is not readable JSON ({_one_line(exc)})") from exc
    return None


def _config_folder(source: str) -> tuple[str, Path]:
    """``(location, folder holding its JSON configs)``: a local folder, or a Hub id whose configs are
    fetched (JSON files only, a few kB; the weights come later, in :meth:`DiffusersSource.load`)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path), path
    if path.exists():
        raise PretrainedUnavailableError(f"{source} is a file, not a diffusers model folder (expected unet/ and "
                                         "scheduler/, as DDPMPipeline.save_pretrained writes them)")
    if not _HUB_ID.fullmatch(source):
        raise PretrainedUnavailableError(f"{source} does not exist (neither a local folder nor a Hub id owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return source, Path(snapshot_download(source, allow_patterns=["*.json"]))
    except Exception as exc:  # offline, unknown repo, gated repo, ...: huggingface_hub has many error types
        raise PretrainedUnavailableError(f"cannot fetch {source!r} from the Hugging Face Hub ({type(exc).__name__}: "
                                         f"{_one_line(exc)}); without internet, pass a folder saved with "
                                         "save_pretrained") from exc


def _scheduler_config(scheduler: Any, folder: Path, source: str) -> dict:
    if scheduler is None:
        found = _read(folder, "scheduler/scheduler_config.json", "scheduler_config.json")
        if found is None:
            raise PretrainedUnavailableError(
                f"{source} has no scheduler config (scheduler/scheduler_config.json or scheduler_config.json): the "
                "noise schedule the UNet was trained on is needed; pass scheduler= (e.g. DDPMScheduler())")
        config = found[1]
    else:
        config = dict(getattr(scheduler, "config", scheduler))
    if "num_train_timesteps" not in config and "timesteps" in config:  # the 2022 format of google/ddpm-*
        config["num_train_timesteps"] = config["timesteps"]
    if "beta_schedule" not in config and config.get("trained_betas") is None:
        raise PretrainedUnavailableError(f"the scheduler of {source} ({config.get('_class_name', '?')}) has no "
                                         "discrete beta schedule: only DDPM-style (variance-preserving) schedules "
                                         "are supported")
    if config.get("prediction_type", "epsilon") not in _PREDICTIONS:
        raise PretrainedUnavailableError(f"{source} predicts {config['prediction_type']!r}; supported: "
                                         f"{', '.join(_PREDICTIONS)}")
    return config


def locate_diffusers_model(source: str | Path, scheduler: Any = None) -> DiffusersSource:
    """Find and check a DDPM checkpoint without loading its weights.

    ``source``: a Hub id (``"google/ddpm-cifar10-32"``), a folder written by
    ``DDPMPipeline.save_pretrained`` (``unet/`` and ``scheduler/``), or a bare ``UNet2DModel``
    folder with a ``scheduler_config.json`` beside it or ``scheduler=`` given (a diffusers scheduler
    or its config dict).

    Raises :class:`PretrainedUnavailableError` naming what is missing: no such folder, Hub
    unreachable, no UNet config, a model that is not an unconditional ``UNet2DModel`` with the
    positional timestep embedding, no DDPM-style schedule.
    """
    source = str(source)
    location, folder = _config_folder(source)
    found = _read(folder, "unet/config.json", "config.json")
    if found is None:
        raise PretrainedUnavailableError(f"{source} holds no UNet (no unet/config.json or config.json)")
    name, unet_config = found
    kind = unet_config.get("_class_name")
    if kind != "UNet2DModel":
        hint = " (a text-conditional model: see reprodiff.text2image)" if kind == "UNet2DConditionModel" else ""
        raise PretrainedUnavailableError(f"{source}/{name} describes a {kind or 'model of unknown class'}, not the "
                                         f"UNet2DModel of a DDPM checkpoint{hint}")
    if unet_config.get("num_class_embeds") or unet_config.get("class_embed_type"):
        raise PretrainedUnavailableError(f"{source} is a class-conditional UNet2DModel; only unconditional ones are "
                                         "supported")
    if unet_config.get("time_embedding_type", "positional") != "positional":
        raise PretrainedUnavailableError(f"{source} embeds time as {unet_config['time_embedding_type']!r}; a "
                                         "fractional timestep needs the positional embedding")
    _shape(unet_config)
    return DiffusersSource(location, "unet" if name.startswith("unet/") else "", unet_config,
                           _scheduler_config(scheduler, folder, source))


def load_diffusers_denoiser(source: str | Path, device: str | torch.device = "cpu",
                            scheduler: Any = None) -> DiffusersDenoiser:
    """A DDPM checkpoint as an eval-mode :class:`DiffusersDenoiser` on ``device``::

        model = load_diffusers_denoiser("google/ddpm-cifar10-32")
        samples = generate(model, range(64), model.shape, sigma_min=model.sigma_min)

    See :func:`locate_diffusers_model` for the accepted sources and the errors (all raised before
    any weights are read).
    """
    return locate_diffusers_model(source, scheduler).load(device)
