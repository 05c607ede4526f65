"""Non-diffusion controls: generators that also map a shared latent code to images.

A VAE decoder, like a diffusion sampler, is a deterministic map from a Gaussian latent to an image,
so "same latent, same image?" can be asked of two independently trained VAEs with exactly the same
seeds, descriptor and threshold. Zhang et al. (2024) argue such generators are *not* reproducible
across models: nothing ties one model's latent coordinates to another's (the prior is rotation
invariant), whereas the diffusion noise lives in image space and the ODE is pinned to the data by
the denoiser it integrates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .runtime import cpu_threads, derive_seed, flush_denormal
from .sampling import Samples, noise_for_seeds

__all__ = ["VAEConfig", "MLPVAE", "vae_dir", "load_or_train_vae", "decode_seeds"]


@dataclass(frozen=True)
class VAEConfig:
    """A small fully connected VAE on a dataset (by name, all images)."""

    dataset: str = "digits"
    latent: int = 8
    hidden: int = 256
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    beta: float = 1.0
    seed: int = 0

    @property
    def hash(self) -> str:
        """12 hex digits naming this VAE's cache entry."""
        from .cache import config_hash

        return config_hash({"kind": "vae", **asdict(self)})

    @property
    def name(self) -> str:
        return f"vae-h{self.hidden}-z{self.latent}-s{self.seed}"

    # the training pool's protocol (:class:`reprodiff.training.TrainJob`)
    def cached(self) -> bool:
        """Whether the trained VAE is in the cache."""
        from .cache import is_cached

        return is_cached(vae_dir(self))

    def train_cached(self, progress: bool = True) -> None:
        """Train the VAE into the cache (:func:`load_or_train_vae`)."""
        load_or_train_vae(self, progress=progress)

    def load_cached(self) -> MLPVAE:
        """The cached VAE (on the CPU)."""
        return load_or_train_vae(self, progress=False)

    def training_flops(self) -> float:
        """Training FLOPs, for scheduling: a VAE is an MLP, about 6 FLOPs per parameter per image."""
        from .backbones import count_parameters
        from .data import load_dataset

        with torch.random.fork_rng(devices=[]):
            params = count_parameters(MLPVAE(load_dataset(self.dataset).shape, self.latent, self.hidden))
        return 6.0 * params * self.batch_size * self.steps


class MLPVAE(nn.Module):
    """Gaussian-latent VAE with MLP encoder/decoder; images in [-1, 1] (tanh output)."""

    def __init__(self, shape: tuple[int, int, int], latent: int, hidden: int) -> None:
        super().__init__()
        d = math.prod(shape)
        self.shape, self.latent = tuple(shape), latent
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, d), nn.Tanh())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent)`` -> ``(B, C, H, W)`` in [-1, 1]."""
        return self.decoder(z).reshape(z.shape[0], *self.shape)

    def loss(self, y: torch.Tensor, generator: torch.Generator, beta: float) -> torch.Tensor:
        mu, logvar = self.encoder(y.flatten(1)).chunk(2, dim=1)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
        recon = ((self.decode(z) - y) ** 2).flatten(1).sum(1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        # a fixed observation variance of 0.1 balances the two terms for images in [-1, 1]
        return (recon / (2 * 0.1) + beta * kl).mean()


def vae_dir(cfg: VAEConfig):
    """The cache folder of ``cfg``'s VAE."""
    from .cache import entry_dir

    return entry_dir("vae", cfg.name, cfg.hash)


def load_or_train_vae(cfg: VAEConfig, progress: bool = True) -> MLPVAE:
    """Train (or load from the model cache) the VAE ``cfg`` describes; returns it in eval mode.

    Shares the model cache's conventions (:mod:`reprodiff.cache`): checksummed files, a lock per
    entry, and the caller's global RNG left alone.
    """
    from tqdm.auto import tqdm

    from .cache import entry_lock, is_cached, read_model, write_model
    from .data import load_dataset

    data = load_dataset(cfg.dataset)
    path = vae_dir(cfg)

    def build() -> MLPVAE:
        torch.manual_seed(cfg.seed)
        return MLPVAE(data.shape, cfg.latent, cfg.hidden)

    def load() -> MLPVAE:
        _, weights = read_model(path, cfg.hash, asdict(cfg))
        with torch.random.fork_rng(devices=[]):
            model = build()
        model.load_state_dict(weights)
        return model.eval().requires_grad_(False)

    if is_cached(path):
        return load()
    with entry_lock(path):
        if is_cached(path):  # another process trained it while we waited
            return load()
        with torch.random.fork_rng(devices=[]):
            model = build()
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "vae-batches"))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        with flush_denormal(), cpu_threads(1 if not torch.cuda.is_available() else None):
            for _ in tqdm(range(cfg.steps), desc=f"training {cfg.name}", disable=not progress):
                y = data.images[torch.randint(len(data), (cfg.batch_size,), generator=gen)]
                loss = model.loss(y, gen, cfg.beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        write_model(path, model.state_dict(), {"hash": cfg.hash, "config": asdict(cfg), "final_loss": loss.item()})
    return model.eval().requires_grad_(False)


@torch.no_grad()
def decode_seeds(vae: MLPVAE, seeds, name: str = "") -> Samples:
    """Decode latent ``z_k = noise_for_seeds([k], (latent,))`` for each seed k: the VAE's 'same noise'."""
    seeds = list(map(int, seeds))
    z = noise_for_seeds(seeds, (vae.latent,))
    return Samples(vae.decode(z).clamp(-1, 1), torch.tensor(seeds), name=name, sampler="VAE decoder")
