"""Figures the chapters share: same-noise grids, similarity histograms, RP heatmaps, curves with bands.

Every function draws on a new (or given) matplotlib figure and returns it; none changes global
matplotlib state beyond what seaborn's context manager scopes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .sampling import Samples

__all__ = ["same_noise_grid", "image_grid", "rp_heatmap", "curve_with_band", "nearest_grid",
           "survival_curves", "rp_bars", "inverse_grid", "sensitivity_curves", "REGIME_COLORS", "LINE_COLORS"]

#: light fills for regime shading, kept apart from the line colours of models
REGIME_COLORS = {"memorization": "#9ecae1", "transition": "#fdd0a2", "generalization": "#c7e9c0"}
#: dark, distinct line colours for models and references (never the regime fills' hues)
LINE_COLORS = ("black", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _to_numpy_image(img: torch.Tensor):
    img = ((img.float().clamp(-1, 1) + 1) / 2).cpu()
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


def image_grid(rows: Mapping[str, torch.Tensor], col_titles: Sequence[str] | None = None, scale: float = 1.1,
               title: str | None = None):
    """A grid of images: one row per entry of ``rows`` (``(n, C, H, W)`` each, in [-1, 1]).

    The layout is computed in inches (not by ``tight_layout``), so every cell is a square of
    ``scale`` inches and rows sit as close together as columns, whatever the labels and titles.
    """
    import matplotlib.pyplot as plt

    names = list(rows)
    n_cols = max(v.shape[0] for v in rows.values())
    gap = 0.04 * scale  # inches between cells
    left = 0.085 * max(len(n) for n in names) + 0.2  # room for the row labels (fontsize 10)
    top = (0.28 if col_titles is not None else 0.06) + (0.36 if title else 0.0)
    width = left + n_cols * scale + (n_cols - 1) * gap + 0.08
    height = top + len(names) * scale + (len(names) - 1) * gap + 0.08
    fig, axes = plt.subplots(len(names), n_cols, figsize=(width, height), squeeze=False,
                             gridspec_kw=dict(left=left / width, right=1 - 0.08 / width, top=1 - top / height,
                                              bottom=0.08 / height, wspace=gap / scale, hspace=gap / scale))
    for r, name in enumerate(names):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < rows[name].shape[0]:
                arr, cmap = _to_numpy_image(rows[name][c])
                ax.imshow(arr, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=9, pad=3)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.06 / height, va="top")
    return fig


def same_noise_grid(samples: Sequence[Samples], seeds: Sequence[int], title: str | None = None):
    """Rows = models, columns = seeds: each column starts every model from the same initial noise."""
    rows = {s.name: s.by_seed(seeds) for s in samples}
    return image_grid(rows, [f"seed {k}" for k in seeds], title=title)


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
        ax.axvspan(x0, x1, alpha=0.45, color=REGIME_COLORS.get(label, "0.9"), label=label, lw=0)
    for k, (name, (v, lo, hi)) in enumerate(curves.items()):
        color = LINE_COLORS[k % len(LINE_COLORS)]
        ax.plot(x, v, marker="o", ms=3, label=name, color=color)
        ax.fill_between(x, lo, hi, alpha=0.15, color=color, lw=0)
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
    """For each N of a :class:`reprodiff.regimes.SweepResult`: a row of ``size``'s samples for
    ``seeds`` and, below it, each sample's nearest training image."""
    rows: dict[str, torch.Tensor] = {}
    for n in n_train or sweep.n_train:
        s = sweep.samples[(size, n)]
        position = {int(k): i for i, k in enumerate(s.seeds)}  # nearest[] follows the samples' order
        nn = sweep.nearest[(size, n)][torch.tensor([position[int(k)] for k in seeds])]
        rows[f"N={n}: sample"] = s.by_seed(seeds)
        rows[f"N={n}: nearest"] = sweep.train_sets[n][nn]
    return image_grid(rows, [f"seed {k}" for k in seeds], scale=0.75, title=title)


def rp_bars(groups: Mapping[str, Sequence], labels: Sequence[str], title: str | None = None, ax=None):
    """Grouped bars of scores with their 95% intervals: one group per entry of ``labels`` (e.g. a pair
    of models), one bar per entry of ``groups`` (``{name: [Score per label]}``)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
    else:
        fig = ax.figure
    width = 0.8 / len(groups)
    for i, (name, scores) in enumerate(groups.items()):
        if len(scores) != len(labels):
            raise ValueError(f"group {name!r} has {len(scores)} scores for {len(labels)} labels")
        x = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(labels))]
        values = [s.value for s in scores]
        err = [[s.value - s.ci[0] for s in scores], [s.ci[1] - s.value for s in scores]]
        ax.bar(x, values, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(labels)), labels)
    ax.set(ylim=(0, 1), ylabel="RP (book's rule)", title=title)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def survival_curves(curves: Mapping[str, torch.Tensor], threshold: float | None = None, xlim: tuple[float, float] | None = None,
                    title: str | None = None, xlabel: str = "threshold t (similarity)", ax=None):
    """Threshold-free RP: for each set of similarities, the fraction of pairs above ``t`` against ``t``.

    Every RP score is one point of such a curve (at the book's threshold, marked); a curve that
    stays high further to the right means pairs that agree more tightly.
    """
    import matplotlib.pyplot as plt

    from .metrics import survival

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.4 + 0.2 * len(curves)))
    else:
        fig = ax.figure
    if xlim is None:
        lo = min(float(torch.quantile(v.double(), 0.02)) for v in curves.values())
        xlim = (max(-1.0, lo), 1.0)
    t = torch.linspace(xlim[0], xlim[1], 400)
    for k, (name, sims) in enumerate(curves.items()):
        ax.plot(t.numpy(), survival(sims, t).numpy(), color=LINE_COLORS[k % len(LINE_COLORS)], lw=1.6,
                label=f"{name} (median {float(sims.median()):.3f})")
    if threshold is not None:
        ax.axvline(threshold, color="tab:blue", ls="--", lw=1.2, label=f"same-image threshold {threshold:.3f}")
    ax.set_xlim(*xlim)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of pairs above t")
    ax.grid(alpha=0.3)
    # below the axes: the curves fill the whole panel
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def nearest_similarity_bands(sweep, title: str | None = None, ax=None):
    """Along a sweep: where held-out real images' similarity to their nearest training image falls
    (5-95% band and median), each model's median, and the one same-image threshold."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
    else:
        fig = ax.figure
    q = torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)
    band = torch.stack([s.similarities.double().quantile(q) for s in sweep.gl_ceiling]).numpy()
    ax.fill_between(sweep.n_train, band[:, 0], band[:, 2], color="0.75", alpha=0.5, lw=0,
                    label="held-out real images, 5-95%")
    ax.plot(sweep.n_train, band[:, 1], color="0.45", label="held-out real images, median")
    ax.axhline(sweep.threshold, color="tab:blue", ls="--", lw=1.2, label=f"same-image threshold {sweep.threshold:.3f}")
    for k, (size, scores) in enumerate(sweep.gl.items()):
        ax.plot(sweep.n_train, [float(s.similarities.median()) for s in scores], marker="o", ms=3,
                color=LINE_COLORS[k % len(LINE_COLORS)], label=f"{size} samples, median")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training-set size N")
    ax.set_ylabel("similarity to nearest training image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def inverse_grid(study, op, seeds: Sequence[int], title: str | None = None):
    """One inverse problem at a glance: rows are the ground truth, the measurement (drawn by
    ``op.view``), the baselines, every model's reconstruction and, when the study has one, the mean
    of the first model's reconstructions; columns are seeds (seed k reconstructs held-out image k)."""
    idx = list(seeds)
    rows = {"ground truth": study.truth[idx], "measurement": op.view(study.measurement[idx]).clamp(-1, 1)}
    extra = {} if getattr(study, "sample_mean", None) is None else {study.sample_mean.name: study.sample_mean}
    for name, s in {**study.baselines, **study.reconstructions, **extra}.items():
        rows[name] = s.by_seed(idx)
    return image_grid(rows, [f"seed {k}" for k in idx], scale=0.75, title=title)


def sensitivity_curves(result: Mapping[tuple[float, int], dict], title: str | None = None):
    """Two panels from :func:`reprodiff.experiments.dps_sensitivity`: RP between the two models
    (with its 95% interval) and mean PSNR, against the DPS step scale zeta, one line per step count."""
    import matplotlib.pyplot as plt

    zetas = sorted({z for z, _ in result})
    steps = sorted({n for _, n in result})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    x = list(range(len(zetas)))  # zeta = 0 has no place on a log axis: equally spaced, labelled
    for k, n in enumerate(steps):
        color = LINE_COLORS[k % len(LINE_COLORS)]
        rp = [result[(z, n)]["rp"] for z in zetas]
        axes[0].plot(x, [s.value for s in rp], "o-", color=color, label=f"{n} steps")
        axes[0].fill_between(x, [s.ci[0] for s in rp], [s.ci[1] for s in rp], color=color, alpha=0.15, lw=0)
        axes[1].plot(x, [result[(z, n)]["psnr"] for z in zetas], "o-", color=color, label=f"{n} steps")
    for ax, label in zip(axes, ("RP between the two models", "mean PSNR to the ground truth (dB)")):
        ax.set_xticks(x, [f"{z:g}" for z in zetas])
        ax.set_xlabel("DPS step scale zeta")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
