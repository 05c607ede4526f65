"""Figures the chapters share: same-noise grids, similarity histograms, RP heatmaps, curves with bands.

Every function draws on a new (or given) matplotlib figure and returns it; none changes global
matplotlib state beyond what seaborn's context manager scopes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .sampling import Samples

__all__ = ["same_noise_grid", "image_grid", "rp_heatmap", "curve_with_band", "nearest_grid",
           "survival_curves", "rp_bars", "inverse_grid", "sensitivity_curves", "REGIME_COLORS", "LINE_COLORS",
           "onset_figure", "pair_figure", "dip_figure", "per_label_figure", "trajectory_gap_figure",
           "drift_figure", "samples_with_nearest", "training_progress_figure"]

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


def _axes(ax, figsize: tuple[float, float]):
    """``(fig, ax)``: a new figure of ``figsize`` when ``ax`` is None, else ``ax`` and its figure."""
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize) if ax is None else (ax.figure, ax)


def _finish(fig, ax, xlabel: str, ylabel: str, title: str | None, **legend):
    """Axis labels, a light grid, the legend (``legend``: its keyword arguments), the title when there
    is one, and a tight layout: the finished ``fig``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def rp_heatmap(matrix: torch.Tensor, labels: Sequence[str], title: str = "RP score", ax=None, fmt: str = ".2f",
               vmin: float = 0.0, vmax: float = 1.0):
    """Seaborn heatmap of a symmetric score matrix with annotated cells."""
    import seaborn as sns

    fig, ax = _axes(ax, (0.75 * len(labels) + 2.2, 0.6 * len(labels) + 1.4))
    sns.heatmap(matrix.numpy(), annot=True, fmt=fmt, xticklabels=labels, yticklabels=labels, vmin=vmin,
                vmax=vmax, cmap="viridis", square=True, cbar_kws={"shrink": 0.8}, ax=ax, annot_kws={"size": 8})
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def curve_with_band(x: Sequence[float], curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                    xlabel: str, ylabel: str, logx: bool = True, title: str | None = None, ax=None,
                    shade: Sequence[tuple[float, float, str]] = ()):
    """Lines with confidence bands: ``curves[name] = (values, lower, upper)``; ``shade`` = (x0, x1, label) spans."""
    fig, ax = _axes(ax, (6, 3.4))
    for x0, x1, label in shade:
        ax.axvspan(x0, x1, alpha=0.45, color=REGIME_COLORS.get(label, "0.9"), label=label, lw=0)
    for k, (name, (v, lo, hi)) in enumerate(curves.items()):
        color = LINE_COLORS[k % len(LINE_COLORS)]
        ax.plot(x, v, marker="o", ms=3, label=name, color=color)
        ax.fill_between(x, lo, hi, alpha=0.15, color=color, lw=0)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    return _finish(fig, ax, xlabel, ylabel, title, fontsize=8)


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
    fig, ax = _axes(ax, (7.5, 3.6))
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
    from .metrics import survival

    fig, ax = _axes(ax, (7, 3.4 + 0.2 * len(curves)))
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
    # the legend below the axes: the curves fill the whole panel
    return _finish(fig, ax, xlabel, "fraction of pairs above t", title, fontsize=8, loc="upper center",
                   bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)


def nearest_similarity_bands(sweep, title: str | None = None, ax=None):
    """Along a sweep: where held-out real images' similarity to their nearest training image falls
    (5-95% band and median), each model's median, and the one same-image threshold."""
    fig, ax = _axes(ax, (6.5, 3.4))
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
    return _finish(fig, ax, "training-set size N", "similarity to nearest training image", title, fontsize=7)


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


def onset_figure(times, report, longer=None, pair_seeds: Sequence[int] = ()):
    """Four panels of memorization along training, from a
    :class:`reprodiff.agreement.TrainingTimeStudy` ``times`` and its
    :class:`reprodiff.snapshots.OnsetReport` ``report``: GL and RP with D* against the training step
    (one line per N, dashed for ``longer``, the runs trained longer), the onset step against N with
    the fitted line (triangles: no onset by the last step; stars: the longer runs, not fitted), and
    RP between the two training seeds ``pair_seeds`` with its 95% band."""
    import matplotlib.pyplot as plt

    from .metrics import Scores

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.6))
    axes = axes.ravel()
    colours = dict(zip(times.n_train, plt.cm.viridis(torch.linspace(0, 0.9, len(times.n_train)).tolist())))
    for n, colour in colours.items():
        axes[0].plot(times.steps, Scores(times.gl[n]).values, marker="o", ms=3, color=colour, label=f"N={n}")
        axes[1].plot(times.steps, Scores(times.rp_optimal[n]).values, marker="o", ms=3, color=colour, label=f"N={n}")
    for n in longer.n_train if longer else ():
        for ax, scores in zip(axes, (longer.gl[n], longer.rp_optimal[n])):
            ax.plot(longer.steps, Scores(scores).values, ls="--", lw=1, color=colours.get(n, "k"),
                    label=f"N={n}, {longer.steps[-1]:,} steps")
    for n, rps in times.rp_seeds.items():
        rps = Scores(rps)
        axes[3].plot(times.steps, rps.values, marker="o", ms=3, color=colours.get(n, "k"), label=f"N={n}")
        axes[3].fill_between(times.steps, rps.lower, rps.upper, color=colours.get(n, "k"), alpha=0.15)
    for ax, title in zip(axes[[0, 1, 3]], ("GL along training", "RP(model, D*) along training",
                                           f"RP between training seeds {pair_seeds} on the same subset")):
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].axhline(0.5, color="0.5", lw=0.8, ls=":")
    axes[1].legend(fontsize=8, ncol=3, loc="upper left")
    axes[3].legend(fontsize=8)
    reached, censored = report.reached, report.censored
    axes[2].plot(list(reached), list(reached.values()), "o", color="C0", label="GL falls to 0.5 (fitted)")
    axes[2].plot(censored, [report.last_step] * len(censored), "^", color="C3",
                 label=f"not by step {report.last_step:,} (onset later)")
    last = report.tested_steps[-1] if report.tested_steps else None
    for n, t in report.tested.items():
        axes[2].plot([n], [t if t is not None else last], "*", ms=12, color="C2",
                     label=f"N={n} trained {last:,} steps (not fitted)")
    if report.has_fit:
        grid = torch.linspace(0, max(times.n_train), 50)
        axes[2].plot(grid, report.a + report.b * grid, color="0.3", lw=1,
                     label=f"fit: {report.a:.0f} + {report.b:.1f} N")
    axes[2].set_xlabel("training-set size N")
    axes[2].set_ylabel("training step")
    axes[2].set_title("Memorization onset vs N", fontsize=10)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def pair_figure(study, threshold: float, title: str = "Two networks from the same noise"):
    """Two panels from :func:`reprodiff.agreement.pair_study`: RP of the shared and the disjoint
    pair against N with their 95% bands, and the survival curves of both pairs' similarities at the
    smallest and the largest N."""
    import matplotlib.pyplot as plt

    from .metrics import Scores

    n = study.pair_n
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    curve_with_band(list(n), {"same training data": Scores(study.shared).band(),
                              "disjoint training data": Scores(study.disjoint).band()},
                    xlabel="training-set size N (each model)", ylabel="RP score", title=title, ax=axes[0])
    survival_curves({f"N={k} {kind}": s.similarities for k, sh, dj in zip(n, study.shared, study.disjoint)
                     for kind, s in (("same", sh), ("disjoint", dj)) if k in (n[0], n[-1])},
                    threshold=threshold, xlim=(0.5, 1.0), title="Threshold-free: fraction of seeds above t",
                    ax=axes[1])
    fig.tight_layout()
    return fig


def dip_figure(study):
    """RP against N across the memorization-generalization transition from
    :func:`reprodiff.agreement.dip_study`, with each model's GL = 0.5 crossing as a vertical line."""
    fig = curve_with_band(study.n_train, study.curves(), xlabel="training-set size N", ylabel="RP score",
                          title="RP across the transition, with each model's GL = 0.5 crossing")
    for (k, v), style in zip(study.crossings.items(), (":", "--", "-.")):
        if v:
            fig.axes[0].axvline(v, color="0.3", ls=style, lw=1, label=f"GL = 0.5: {k}")
    fig.axes[0].legend(fontsize=7)
    return fig


def per_label_figure(per_label, title: str | None = None):
    """RP per label with 95% intervals, one offset series of points per model pair, from
    :func:`reprodiff.conditioning.per_label_rp`."""
    import matplotlib.pyplot as plt

    classes = list(per_label.scores)
    pairs = list(next(iter(per_label.scores.values())))
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for i, p in enumerate(pairs):
        x = [c + (i - 1) * 0.22 for c in classes]
        sc = [per_label.scores[c][p] for c in classes]
        ax.errorbar(x, [s.value for s in sc], yerr=[[s.value - s.ci[0] for s in sc], [s.ci[1] - s.value for s in sc]],
                    fmt="o", capsize=2, label=f"{p[0]} vs {p[1]}")
    ax.set_xticks(classes)
    ax.set(xlabel="label", ylabel="RP (book's rule)", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def trajectory_gap_figure(gaps: Mapping[int, tuple[Sequence[float], Mapping[str, torch.Tensor]]], model: str):
    """One panel per reference: the median (over seeds) RMS difference between ``model``'s denoised
    estimate and the reference's along the model's own sampling trajectory, against sigma, one line
    per N; ``gaps[N]`` is :func:`reprodiff.regimes.trajectory_gap`'s ``(sigmas, {reference:
    (n_sigmas, n_seeds)})``."""
    import matplotlib.pyplot as plt

    refs = list(next(iter(gaps.values()))[1])
    fig, axes = plt.subplots(1, len(refs), figsize=(6 * len(refs), 3.6), sharey=True)
    for n, (sig, by_ref) in gaps.items():
        for ax, ref in zip(axes, refs):
            ax.plot(sig, by_ref[ref].median(1).values, marker="o", ms=3, label=f"N={n}")
    for ax, ref in zip(axes, refs):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("noise level sigma (sampling runs left to right)")
        ax.set_title(f"{model} vs {ref}, along the model's trajectory", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("median RMS difference of denoised estimates")
    fig.tight_layout()
    return fig


def drift_figure(steps: Sequence[int], rp: Mapping[str, Sequence]):
    """RP along fine-tuning with 95% bands, one line per labelled pair (one
    :class:`reprodiff.metrics.Score` per step of ``steps``; step 0, the base, is drawn at 1 on the
    log axis and labelled "base")."""
    from .metrics import Scores

    x = [max(k, 1) for k in steps]
    fig = curve_with_band(x, {k: Scores(v).band() for k, v in rp.items()}, xlabel="fine-tuning step (log scale)",
                          ylabel="RP (book's rule)", title="RP along fine-tuning", logx=True)
    fig.axes[0].set_xticks(x, ["base", *map(str, steps[1:])])
    return fig


def samples_with_nearest(samples: Mapping[str, Samples], gl: Mapping[str, object], train_images: torch.Tensor,
                         seeds: Sequence[int], title: str | None = None):
    """For each named sample set: a row of its samples for ``seeds`` and, below it, each sample's
    nearest training image in ``train_images`` (the neighbour its GL score found, ``gl[name].nearest``,
    which follows the samples' stored order)."""
    rows: dict[str, torch.Tensor] = {}
    for name, s in samples.items():
        position = {int(k): i for i, k in enumerate(s.seeds)}
        rows[name] = s.by_seed(seeds)
        rows[f"{name} → nearest"] = train_images[gl[name].nearest[torch.tensor([position[int(k)] for k in seeds])]]
    return image_grid(rows, [f"seed {k}" for k in seeds], scale=0.8, title=title)


def training_progress_figure(progress, between_references: tuple[float, float], sigma: float = 0.5):
    """RP to the reference models against held-out x0 error along one training run
    (:class:`reprodiff.experiments.TrainingProgress`), each saved step labelled, beside the
    references' own error range (vertical band) and their RP among themselves (horizontal band)."""
    import matplotlib.pyplot as plt

    errors, (lo, hi) = progress.error_at(sigma)
    rp = [sum(progress.rp_range(i)) / 2 for i in range(len(progress.steps))]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(errors, rp, "o-", color="tab:red", label=f"{progress.name} along training (mid-range RP to a UNet)")
    for e, r, k in zip(errors, rp, progress.steps):
        ax.annotate(f"{k:,}", (e, r), fontsize=8, textcoords="offset points", xytext=(4, 4))
    ax.axhspan(*between_references, color="black", alpha=0.12, label="RP between two UNets (range)")
    ax.axvspan(lo, hi, color="tab:blue", alpha=0.15, label="the UNets' x0 error (range)")
    ax.set_xlabel(f"held-out x0 error at sigma = {sigma:g}")
    ax.set_ylabel("RP to the UNets")
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
