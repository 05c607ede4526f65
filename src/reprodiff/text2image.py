"""Text-to-image models from the same latent noise: Stable Diffusion checkpoints through diffusers.

The paper's text-to-image check (Section 4): give different Stable Diffusion versions the same
initial latent noise and the same prompt, integrate a deterministic sampler, and compare the
images. Here every pipeline gets its scheduler replaced by DDIM with ``eta = 0`` (the probability
flow ODE, deterministic), and its initial latents are :func:`reprodiff.sampling.noise_for_seeds`
of each seed, the book's one noise convention, so seed ``k`` means the same latent noise for every
checkpoint that shares a latent shape. The chapter runs this on the ``gpu`` profile only (the
checkpoints are gigabytes); the unit tests run it on a tiny randomly initialised pipeline that is
built and saved locally.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .sampling import Samples, noise_for_seeds

__all__ = ["load_pipeline", "latent_shape", "same_latent_images", "pipeline_call", "text_study", "planned_calls"]


def load_pipeline(model_id: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A diffusers text-to-image pipeline from the Hub or a local folder, made deterministic.

    The scheduler becomes :class:`diffusers.DDIMScheduler` built from the checkpoint's own scheduler
    config (same noise schedule and timestep spacing), sampled with ``eta = 0`` by
    :func:`same_latent_images`. The safety checker is not loaded: it would black out some images and
    so change what is compared.

    Raises:
        ResourceUnavailableError: if the checkpoint can neither be found locally nor downloaded.
    """
    from diffusers import DDIMScheduler, DiffusionPipeline

    from .data import ResourceUnavailableError

    try:
        pipe = DiffusionPipeline.from_pretrained(model_id, torch_dtype=dtype, safety_checker=None,
                                                 requires_safety_checker=False)
    except (OSError, ValueError) as exc:
        raise ResourceUnavailableError(f"cannot load the text-to-image checkpoint {model_id!r} ({exc}); the "
                                       "gpu profile needs internet access to the Hugging Face Hub") from exc
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def latent_shape(pipe, height: int | None = None, width: int | None = None) -> tuple[int, int, int]:
    """``(C, h, w)`` of the initial latents ``pipe`` uses for images of ``height x width`` pixels
    (default: the UNet's native size)."""
    scale = pipe.vae_scale_factor
    size = pipe.unet.config.sample_size * scale
    height, width = height or size, width or size
    if height % scale or width % scale:
        raise ValueError(f"height and width must be multiples of {scale} (the VAE's downsampling), got {height}x{width}")
    return pipe.unet.config.in_channels, height // scale, width // scale


def pipeline_call(pipe, prompt: str, latents: torch.Tensor, steps: int, guidance: float,
                  height: int, width: int) -> torch.Tensor:
    """One deterministic batch: images ``(B, 3, H, W)`` in [-1, 1] from ``latents`` and one prompt."""
    out = pipe(prompt=[prompt] * len(latents), latents=latents.to(pipe.device, pipe.unet.dtype),
               num_inference_steps=steps, guidance_scale=guidance, eta=0.0, height=height, width=width,
               output_type="pt")
    return (out.images.float().cpu() * 2 - 1).clamp(-1, 1)


@torch.no_grad()
def same_latent_images(pipes: dict[str, object], prompts: Sequence[str], seeds: Sequence[int], *, steps: int = 50,
                       guidance: float = 7.5, height: int | None = None, width: int | None = None,
                       batch_size: int = 8, progress: bool = False) -> dict[str, Samples]:
    """Every pipeline's image for every (prompt, seed), all from the same latent noise per seed.

    Sample ``i * len(seeds) + j`` is prompt ``i`` from seed ``seeds[j]`` (its label is ``i``), so the
    returned :class:`Samples` pair up by id across pipelines, as :func:`reprodiff.metrics.rp_score`
    expects. Every pipeline must use the same latent shape, or "the same noise" has no meaning.
    """
    from tqdm.auto import tqdm

    if not pipes or not prompts or not len(seeds):
        raise ValueError("same_latent_images needs at least one pipeline, one prompt and one seed")
    shapes = {name: latent_shape(p, height, width) for name, p in pipes.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the pipelines' latent shapes differ ({shapes}): the same noise cannot start them all")
    shape = next(iter(shapes.values()))
    scale = next(iter(pipes.values())).vae_scale_factor
    h, w = shape[1] * scale, shape[2] * scale
    seeds = list(seeds)
    ids = torch.arange(len(prompts) * len(seeds))
    labels = ids // len(seeds)
    out = {}
    for name, pipe in pipes.items():
        images = []
        for prompt in tqdm(prompts, desc=f"sampling {name}", disable=not progress):
            for start in range(0, len(seeds), batch_size):
                noise = noise_for_seeds(seeds[start:start + batch_size], shape)
                images.append(pipeline_call(pipe, prompt, noise, steps, guidance, h, w))
        out[name] = Samples(torch.cat(images), ids, name=name, labels=labels, sampler=f"ddim-{steps}")
    return out


def text_study(cfg, descriptor, rule, *, progress: bool = False):
    """The text-to-image comparison of a conditional chapter config ``cfg``: every pipeline of
    ``cfg.text_models`` (on the GPU in float16 when there is one) draws every prompt of
    ``cfg.prompts`` from seeds ``range(cfg.text_seeds)`` (:func:`same_latent_images`), and RP
    between the pipelines under the same-image ``rule`` with ``descriptor``. Returns the
    :class:`reprodiff.metrics.RPMatrix` and the samples by pipeline name."""
    from .metrics import rp_matrix

    on_device = dict(device="cuda", dtype=torch.float16) if torch.cuda.is_available() else dict(device="cpu")
    pipes = {name: load_pipeline(model_id, **on_device) for name, model_id in cfg.text_models.items()}
    text = same_latent_images(pipes, cfg.prompts, range(cfg.text_seeds), steps=cfg.text_steps,
                              guidance=cfg.text_guidance, progress=progress)
    return rp_matrix([text[n] for n in text], descriptor, threshold=rule), text


def planned_calls(cfg) -> str:
    """The calls :func:`text_study` makes, as Python source to print where it cannot run
    (no GPU, no Hub): the pipelines of ``cfg.text_models``, :func:`same_latent_images` on
    ``cfg.prompts`` and ``cfg.text_seeds`` seeds, and RP between the pipelines under the book's
    same-image rule for ``cfg.descriptor`` on ``cfg.dataset`` (``cfg``: a conditional chapter
    config, e.g. its ``gpu`` profile)."""
    lines = ["on_gpu = dict(device='cuda', dtype=torch.float16)", "pipes = {",
             *(f"    {n!r}: load_pipeline({i!r}, **on_gpu)," for n, i in cfg.text_models.items()),
             "}", "prompts = (", *(f"    {p!r}," for p in cfg.prompts), ")",
             f"text = same_latent_images(pipes, prompts, range({cfg.text_seeds}), "
             f"steps={cfg.text_steps}, guidance={cfg.text_guidance:g})",
             f"rp_matrix([text[n] for n in pipes], {cfg.descriptor!r}, "
             f"threshold=book_rule({cfg.dataset!r}, {cfg.descriptor!r}))"]
    return "\n".join(lines)
