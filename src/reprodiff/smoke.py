"""Offline stand-ins for what the ``gpu`` profile downloads, so its code path runs on any CPU.

The ``smoke`` profile (:func:`reprodiff.profiles.get_config`) is each chapter's ``gpu``
configuration at toy scale: the same datasets, descriptors and pipelines by name, with tiny models,
few steps and few seeds. What the ``gpu`` profile would download is written here instead, in the
formats the real loaders read:

* CIFAR-10 in its python release format (``cifar-10-batches-py``), read by
  :func:`reprodiff.data.load_dataset`;
* a TorchScript network at the SSCD descriptor's path, run by :class:`reprodiff.metrics.SSCDDescriptor`
  with the real preprocessing (resize to 320x320, ImageNet normalisation);
* tiny randomly initialised Stable Diffusion pipelines, loaded by
  :func:`reprodiff.text2image.load_pipeline` from the folders the smoke config names;
* tiny randomly initialised DDPM pipelines (CIFAR-10-shaped), loaded by
  :func:`reprodiff.pretrained.load_diffusers_denoiser` as the public checkpoints would be.

``scripts/gpu-check --profile smoke`` prepares them in a temporary data root and cache
(:func:`prepare`) and executes every chapter; the test suite runs it, so a shape, dtype or loading
bug of the ``gpu`` profile shows up there, not in a reader's Colab session. None of this is data:
the images are smooth random fields, the descriptor is a fixed projection, the pipelines are
untrained.
"""

from __future__ import annotations

import pickle
import string
from pathlib import Path

import torch

__all__ = ["write_cifar10", "write_sscd_standin", "write_text_pipeline", "tiny_unet", "write_ddpm_pipeline", "text_model_dir",
           "ddpm_model_dir", "prepare"]


def write_cifar10(root: str | Path, per_batch: int = 120, seed: int = 0) -> Path:
    """Write a CIFAR-10-shaped stand-in (5 training pickles of ``per_batch`` images and a test pickle)
    into ``root/cifar-10-batches-py``, in the release's own format. Returns the folder."""
    from .data import CIFAR10_FOLDER

    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        # smooth colour fields with a class-dependent tint: 32x32x3, uint8, CHW rows like the release
        labels = torch.randint(10, (per_batch,), generator=gen)
        coarse = torch.rand(per_batch, 3, 4, 4, generator=gen)
        images = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
        images = (0.7 * images + 0.3 * (labels.view(-1, 1, 1, 1) / 9.0)).clamp(0, 1)
        entry = {"batch_label": name, "labels": labels.tolist(), "filenames": [f"{name}-{i}.png" for i in range(per_batch)],
                 "data": (images * 255).round().to(torch.uint8).reshape(per_batch, -1).numpy()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                     "truck"], "num_vis": 3072, "num_cases_per_batch": per_batch}, f)
    return folder


class _PooledFeatures(torch.nn.Module):
    """Stand-in for SSCD: 8x8 average-pooled colours through a fixed random projection to 64 numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(3 * 8 * 8, 64, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, 320, 320):  # the real model's input: SSCD's preprocessing must have run
            raise ValueError(f"expected (B, 3, 320, 320) preprocessed images, got {list(x.shape)}")
        return torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1) @ self.projection


def write_sscd_standin(path: str | Path) -> Path:
    """Save the TorchScript stand-in where :class:`~reprodiff.metrics.SSCDDescriptor` looks for SSCD."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(_PooledFeatures()).save(str(path))
    return path


def write_text_pipeline(path: str | Path, seed: int = 0) -> str:
    """A randomly initialised Stable Diffusion pipeline of a few thousand weights, saved to ``path``,
    with a stochastic scheduler on disk (:func:`reprodiff.text2image.load_pipeline` must replace it)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                    layers_per_block=1, norm_num_groups=8, cross_attention_dim=16, attention_head_dim=2,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8), latent_channels=4,
                            norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for ch in string.ascii_lowercase:
            vocab[ch] = len(vocab)
            vocab[ch + "</w>"] = len(vocab)
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                            num_attention_heads=2, num_hidden_layers=1, projection_dim=16,
                                            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return str(path)


def tiny_unet(seed: int = 0, channels: int = 3, size: int = 32):
    """A randomly initialised ``UNet2DModel`` of a few thousand weights (8/16 channels, no attention)."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                           layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"))


def write_ddpm_pipeline(path: str | Path, seed: int = 0, size: int = 32, channels: int = 3, **scheduler) -> str:
    """A :func:`tiny_unet` with a 1,000-step ``DDPMScheduler`` (``scheduler``: its options, e.g.
    ``prediction_type``), saved to ``path`` as ``DDPMPipeline.save_pretrained`` writes a Hub checkpoint."""
    from diffusers import DDPMPipeline, DDPMScheduler

    DDPMPipeline(unet=tiny_unet(seed, channels, size),
                 scheduler=DDPMScheduler(num_train_timesteps=1000, **scheduler)).save_pretrained(path)
    return str(path)


def ddpm_model_dir(index: int) -> Path:
    """Where the smoke profile's ``index``-th public-DDPM stand-in lives (inside the model cache)."""
    from .cache import cache_root

    return cache_root() / "smoke" / f"ddpm-{index}"


def text_model_dir(index: int) -> Path:
    """Where the smoke profile's ``index``-th text-to-image stand-in lives (inside the model cache)."""
    from .cache import cache_root

    return cache_root() / "smoke" / f"text-model-{index}"


def prepare(data_root: str | Path, text_models: int = 3, ddpm_models: int = 3) -> None:
    """Write every stand-in: CIFAR-10 under ``data_root``, SSCD, the text and DDPM pipelines in the
    model cache (``$REPRODIFF_CACHE``). Refuses a data root that holds a real CIFAR-10 download."""
    from .cache import cache_root
    from .data import CIFAR10_FOLDER

    data_root = Path(data_root)
    if (data_root / CIFAR10_FOLDER / "readme.html").exists():  # the real release ships a readme
        raise ValueError(f"{data_root} holds the real CIFAR-10: give the smoke run a folder of its own")
    write_cifar10(data_root)
    write_sscd_standin(cache_root() / "sscd" / "sscd_disc_large.torchscript.pt")
    for i in range(text_models):
        if not (text_model_dir(i) / "model_index.json").exists():
            write_text_pipeline(text_model_dir(i), seed=i)
    for i in range(ddpm_models):
        if not (ddpm_model_dir(i) / "model_index.json").exists():
            write_ddpm_pipeline(ddpm_model_dir(i), seed=i)
