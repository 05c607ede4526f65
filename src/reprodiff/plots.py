"""Figures the chapters share: same-noise grids, similarity histograms, RP heatmaps, curves with bands.

Every function draws on a new (or given) matplotlib figure and returns it; none changes global
matplotlib state beyond what seaborn's context manager scopes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .sampling import Samples

__all__ = ["same_noise_grid", "image_grid", "similarity_histogram", "rp_heatmap", "curve_with_band", "nearest_grid"]


def _to_numpy_image(img: torch.Tensor):
    img = ((img.float().clamp(-1, 1) + 1) / 2).cpu()
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


def image_grid(rows: Mapping[str, torch.Tensor], col_titles: Sequence[str] | None = None, scale: float = 1.1,
               title: str | None = None):
    """A grid of images: one row per entry of ``rows`` (``(n, C, H, W)`` each, in [-1, 1])."""
    import matplotlib.pyplot as plt

    names = list(rows)
    n_cols = max(v.shape[0] for v in rows.values())
    fig, axes = plt.subplots(len(names), n_cols, figsize=(scale * n_cols + 1.8, scale * len(names) + 0.5),
                             squeeze=False)
    for r, name in enumerate(names):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < rows[name].shape[0]:
                arr, cmap = _to_numpy_image(rows[name][c])
                ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 1 - (0.35 / height if title else 0)))
    return fig


def same_noise_grid(samples: Sequence[Samples], seeds: Sequence[int], title: str | None = None):
    """Rows = models, columns = seeds: each column starts every model from the same initial noise."""
    rows = {s.name: s.by_seed(seeds) for s in samples}
    return image_grid(rows, [f"seed {k}" for k in seeds], title=title)


def similarity_histogram(paired: torch.Tensor, unpaired: torch.Tensor, threshold: float | None = None,
                         xlabel: str = "similarity", title: str | None = None, ax=None):
    """Density histograms of same-seed (paired) vs different-seed (null) similarities, threshold marked."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    else:
        fig = ax.figure
    with sns.axes_style("whitegrid"):
        lo = float(min(paired.min(), unpaired.min()))
        bins = torch.linspace(lo, 1.0, 60).numpy()
        ax.hist(unpaired.numpy(), bins=bins, density=True, alpha=0.6, color="tab:gray",
                label=f"different seeds (n={unpaired.numel():,})")
        ax.hist(paired.numpy(), bins=bins, density=True, alpha=0.7, color="tab:blue",
                label=f"same seed (n={paired.numel():,})")
        if threshold is not None:
            ax.axvline(threshold, color="tab:red", ls="--", lw=1.2, label=f"threshold {threshold:.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("density")
        ax.legend(fontsize=8, loc="upper left")
        if title:
            ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def rp_heatmap(matrix: torch.Tensor, labels: Sequence[str], title: str = "RP score", ax=None, fmt: str = ".2f",
               vmin: float = 0.0, vmax: float = 1.0):
    """Seaborn heatmap of a symmetric score matrix with annotated cells."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        fig, ax = plt.subplots(figsize=(0.75 * len(labels) + 2.2, 0.6 * len(labels) + 1.4))
    else:
        fig = ax.figure
    sns.heatmap(matrix.numpy(), annot=True, fmt=fmt, xticklabels=labels, yticklabels=labels, vmin=vmin,
                vmax=vmax, cmap="viridis", square=True, cbar_kws={"shrink": 0.8}, ax=ax, annot_kws={"size": 8})
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def curve_with_band(x: Sequence[float], curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                    xlabel: str, ylabel: str, logx: bool = True, title: str | None = None, ax=None,
                    shade: Sequence[tuple[float, float, str]] = ()):
    """Lines with confidence bands: ``curves[name] = (values, lower, upper)``; ``shade`` = (x0, x1, label) spans."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.4))
    else:
        fig = ax.figure
    for x0, x1, label in shade:
        color = {"memorization": "tab:blue", "transition": "tab:orange"}.get(label, "tab:green")
        ax.axvspan(x0, x1, alpha=0.1, color=color, label=label)
    for name, (v, lo, hi) in curves.items():
        line, = ax.plot(x, v, marker="o", ms=3, label=name)
        ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def nearest_grid(sweep, size: str, seeds: Sequence[int], n_train: Sequence[int] | None = None,
                 title: str | None = None):
    """For each N of a :class:`reprodiff.experiments.SweepResult`: a row of ``size``'s samples for
    ``seeds`` and, below it, each sample's nearest training image."""
    rows: dict[str, torch.Tensor] = {}
    for n in n_train or sweep.n_train:
        s = sweep.samples[(size, n)]
        position = {int(k): i for i, k in enumerate(s.seeds)}  # nearest[] follows the samples' order
        nn = sweep.nearest[(size, n)][torch.tensor([position[int(k)] for k in seeds])]
        rows[f"N={n}: sample"] = s.by_seed(seeds)
        rows[f"N={n}: nearest"] = sweep.train_sets[n][nn]
    return image_grid(rows, [f"seed {k}" for k in seeds], scale=0.75, title=title)
