"""Raw network backbones, built from diffusers, behind one small interface.

A backbone maps ``(x_in, c_noise, class_labels) -> F`` and knows nothing about training objectives:
the preconditioning wrappers in :mod:`reprodiff.denoisers` turn it into a denoiser. A registry maps
short names (``"unet-s"``, ``"unet-m"``, ``"uvit-s"``, ...) to architectures, so a chapter asks for a
model by name and every architecture works at every image size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["BackboneSpec", "BACKBONES", "build_backbone", "Backbone", "count_parameters", "flops_per_image"]


@dataclass(frozen=True)
class BackboneSpec:
    """An architecture by name: ``kind`` is ``"unet"``, ``"uvit"`` or ``"mlp"``; ``kwargs`` its size."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    # the smoke profile's stand-ins for the gpu profile's models (its code path at toy scale)
    "unet-tiny": BackboneSpec("unet", dict(channels=(8, 16), layers=1), "UNet, 8/16 channels (smoke profile)"),
    "unet-tiny-attn": BackboneSpec("unet", dict(channels=(8, 16), layers=1, attention=True),
                                   "UNet, 8/16 channels with self-attention (smoke profile)"),
    "uvit-tiny": BackboneSpec("uvit", dict(width=32, depth=2, heads=2, patch=4), "U-ViT, width 32, patch 4 (smoke profile)"),
    "unet-xs": BackboneSpec("unet", dict(channels=(16, 32), layers=1), "UNet, 16/32 channels"),
    "unet-xs-deep": BackboneSpec("unet", dict(channels=(16, 32), layers=2), "UNet, 16/32 channels, 2 res-blocks per level"),
    "unet-xs-attn": BackboneSpec("unet", dict(channels=(16, 32), layers=1, attention=True),
                                 "UNet, 16/32 channels, self-attention at 4x4 and in the middle"),
    "unet-s": BackboneSpec("unet", dict(channels=(32, 64), layers=1), "UNet, 32/64 channels"),
    "unet-m": BackboneSpec("unet", dict(channels=(64, 128), layers=1), "UNet, 64/128 channels"),
    "unet-deep": BackboneSpec("unet", dict(channels=(32, 64), layers=2), "UNet, 32/64 channels, 2 res-blocks per level"),
    "unet-attn": BackboneSpec("unet", dict(channels=(32, 64), layers=1, attention=True),
                              "UNet, 32/64 channels, self-attention at 4x4 and in the middle"),
    "unet-l": BackboneSpec("unet", dict(channels=(128, 256, 256), layers=2, attention=True),
                           "UNet, 128/256/256 channels with attention (gpu profile)"),
    "uvit-xs": BackboneSpec("uvit", dict(width=64, depth=4, heads=4, patch=2), "U-ViT, width 64, 5 blocks, patch 2"),
    "uvit-s": BackboneSpec("uvit", dict(width=128, depth=6, heads=4, patch=2), "U-ViT, width 128, 7 blocks, patch 2"),
    "uvit-m": BackboneSpec("uvit", dict(width=256, depth=8, heads=8, patch=2), "U-ViT, width 256, 9 blocks (gpu profile)"),
    # for MoLRG data, which has no spatial structure for convolutions to exploit
    "mlp-xs": BackboneSpec("mlp", dict(width=128, depth=3), "MLP on flattened pixels, width 128, 3 residual blocks"),
    "mlp-s": BackboneSpec("mlp", dict(width=256, depth=3), "MLP on flattened pixels, width 256, 3 residual blocks"),
    "mlp-m": BackboneSpec("mlp", dict(width=512, depth=3), "MLP on flattened pixels, width 512, 3 residual blocks"),
}


class Backbone(nn.Module):
    """Common interface: ``forward(x, c_noise, class_labels=None) -> F`` with F shaped like x.

    Args (forward):
        x: ``(B, C, H, W)`` network input (already scaled by the preconditioning's ``c_in``).
        c_noise: ``(B,)`` noise conditioning (a transformed sigma; see the objectives).
        class_labels: ``(B,)`` int64 in ``[0, num_classes]`` where ``num_classes`` is the null label
            used for classifier-free guidance; ``None`` for unconditional backbones.
    """

    num_classes: int | None
    #: the layers LoRA adapts by default (peft ``target_modules``: names, matched as suffixes)
    lora_targets: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class UNetBackbone(Backbone):
    """diffusers' ``UNet2DModel`` (the DDPM/EDM-style UNet) at a configurable width and depth."""

    # every convolution of the residual blocks, their time projections, and attention if present
    lora_targets = ("conv1", "conv2", "time_emb_proj", "to_q", "to_k", "to_v", "to_out.0")

    def __init__(self, shape: tuple[int, int, int], channels: tuple[int, ...], layers: int,
                 attention: bool = False, num_classes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        down, up = [], []
        for level in range(len(channels)):
            attn = attention and level > 0
            down.append("AttnDownBlock2D" if attn else "DownBlock2D")
            up.insert(0, "AttnUpBlock2D" if attn else "UpBlock2D")
        self.num_classes = num_classes
        self.net = UNet2DModel(
            sample_size=shape[1], in_channels=shape[0], out_channels=shape[0],
            down_block_types=tuple(down), up_block_types=tuple(up), block_out_channels=tuple(channels),
            layers_per_block=layers, norm_num_groups=_groups(channels[0]), add_attention=attention,
            attention_head_dim=min(32, channels[-1]), dropout=dropout,
            num_class_embeds=None if num_classes is None else num_classes + 1,
        )

    def forward(self, x, c_noise, class_labels=None):
        if (class_labels is None) != (self.num_classes is None):
            raise ValueError("class labels must be given exactly when the backbone is class-conditional")
        return self.net(x, c_noise, class_labels=class_labels, return_dict=False)[0]


class UViTBackbone(Backbone):
    """A small U-ViT (Bao et al. 2023) assembled from diffusers blocks.

    Time (and class) enter as extra tokens; the first half of the transformer blocks feed long skip
    connections into the second half, as in U-ViT.
    """

    # attention projections and both feed-forward layers of every transformer block
    lora_targets = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")

    def __init__(self, shape: tuple[int, int, int], width: int, depth: int, heads: int, patch: int,
                 num_classes: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.embeddings import PatchEmbed, TimestepEmbedding, Timesteps

        c, h, w = shape
        if h % patch or w % patch:
            raise ValueError(f"patch size {patch} must divide the image size {h}x{w}")
        self.shape, self.patch, self.num_classes = shape, patch, num_classes
        self.patch_embed = PatchEmbed(height=h, width=w, patch_size=patch, in_channels=c, embed_dim=width,
                                      pos_embed_type="sincos")
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.class_embed = None if num_classes is None else nn.Embedding(num_classes + 1, width)

        def block() -> nn.Module:
            return BasicTransformerBlock(width, heads, width // heads, dropout=dropout, activation_fn="gelu")

        half = depth // 2
        self.in_blocks = nn.ModuleList(block() for _ in range(half))
        self.mid_block = block()
        self.out_blocks = nn.ModuleList(block() for _ in range(half))
        self.skips = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(half))
        self.norm = nn.LayerNorm(width)
        self.to_pixels = nn.Linear(width, patch * patch * c)
        nn.init.zeros_(self.to_pixels.weight)
        nn.init.zeros_(self.to_pixels.bias)

    def forward(self, x, c_noise, class_labels=None):
        if (class_labels is None) != (self.num_classes is None):
            raise ValueError("class labels must be given exactly when the backbone is class-conditional")
        b = x.shape[0]
        tokens = self.patch_embed(x)
        extra = [self.time_embed(self.time_proj(c_noise.reshape(-1).expand(b)).to(x.dtype))]
        if self.class_embed is not None:
            extra.append(self.class_embed(class_labels))
        n_extra = len(extra)
        h = torch.cat([e.unsqueeze(1) for e in extra] + [tokens], dim=1)
        skips = []
        for blk in self.in_blocks:
            h = blk(h)
            skips.append(h)
        h = self.mid_block(h)
        for blk, skip in zip(self.out_blocks, self.skips):
            h = blk(skip(torch.cat([h, skips.pop()], dim=-1)))
        h = self.to_pixels(self.norm(h[:, n_extra:]))
        c, hh, ww = self.shape
        p = self.patch
        h = h.reshape(b, hh // p, ww // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(b, c, hh, ww)


class MLPBackbone(Backbone):
    """A residual MLP on flattened pixels, for data without spatial structure (MoLRG).

    The noise level enters through diffusers' sinusoidal embedding and is added to every block,
    as in the small MLP denoisers used for low-rank Gaussian mixtures (Wang et al. 2024).
    """

    # the two linear layers of each residual block (Sequential positions 1 and 4) and the output's
    lora_targets = ("1", "4")

    def __init__(self, shape: tuple[int, int, int], width: int, depth: int, num_classes: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.shape, self.num_classes = tuple(shape), num_classes
        dim = shape[0] * shape[1] * shape[2]
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.class_embed = None if num_classes is None else nn.Embedding(num_classes + 1, width)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Dropout(dropout),
                          nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x, c_noise, class_labels=None):
        if (class_labels is None) != (self.num_classes is None):
            raise ValueError("class labels must be given exactly when the backbone is class-conditional")
        b = x.shape[0]
        emb = self.time_embed(self.time_proj(c_noise.reshape(-1).expand(b)).to(x.dtype))
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels)
        h = self.inp(x.reshape(b, -1))
        for blk in self.blocks:
            h = h + blk(h + emb)
        return self.out(h).reshape(x.shape)


def build_backbone(name: str, shape: tuple[int, int, int], num_classes: int | None = None,
                   dropout: float = 0.0) -> Backbone:
    """Instantiate a registered backbone for images of ``shape = (C, H, W)``.

    Args:
        name: a key of :data:`BACKBONES`.
        num_classes: number of classes for a class-conditional model (an extra null label is added
            for classifier-free guidance); ``None`` for unconditional.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    cls = {"unet": UNetBackbone, "uvit": UViTBackbone, "mlp": MLPBackbone}[spec.kind]
    return cls(tuple(shape), **spec.kwargs, num_classes=num_classes, dropout=dropout)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.lru_cache(maxsize=None)
def flops_per_image(backbone: str, shape: tuple[int, int, int]) -> float:
    """Forward + backward FLOPs (matrix products and convolutions) of one ``(C, H, W)`` image through
    the registered ``backbone`` (unconditional); built under a forked RNG, so the caller's global RNG
    is left alone. Cached per (backbone, shape)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):
        net = build_backbone(backbone, shape)
    counter = FlopCounterMode(display=False)
    with counter:
        net(torch.zeros(1, *shape), torch.zeros(1), None).sum().backward()
    return float(counter.get_total_flops())
