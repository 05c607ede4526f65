"""What a class label adds to the noise (chapter 6): RP per label, the same-label null, and how much
of a drawing's style the noise fixes across labels.

* :func:`same_label_other_noise`: samples re-paired so that seed k holds another seed's image with
  the same label, the null for "same label, other noise".
* :class:`PerLabelRP` and :func:`per_label_rp`: RP of every model pair on the seeds of each label.
* :func:`every_label`: one guided model drawing every label from the same seeds.
* :class:`SharedNullGuided`: classifier-free guidance with another model's unconditional estimate
  (the control that tells amplification from a less reproducible null estimate).
* :func:`regime_check` and :func:`regime_table`: GL and RP between two training seeds at one N, for
  conditional models at several guidance scales and their unconditional twins.
* :func:`cross_label_correlation`, :func:`ink_and_centre` and :func:`style_table`: whether the
  noise fixes a drawing's ink and horizontal position whatever the label (correlation across seeds
  between the drawings of two labels, against the next seed as a control).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import nn

from .denoisers import Guided, class_count
from .metrics import SameImageRule, Score, Scores, paired_similarity, rp_score
from .sampling import Samples, generate

__all__ = ["SharedNullGuided", "same_label_other_noise", "PerLabelRP", "per_label_rp", "every_label",
           "cross_label_correlation",
           "ink_and_centre", "style_table", "sample_labelled", "reference_table", "pair_table", "median_table",
           "SeedPairCheck", "seed_pair_check", "regime_check", "regime_table", "regime_summary"]


def same_label_other_noise(samples: Samples, by: int, labels: torch.Tensor | None = None) -> Samples:
    """``samples`` re-paired so that seed k holds the image of the seed ``by`` places further along
    (cyclically, in the order of ``samples.seeds``): another noise, and, when seed k draws label
    ``k % by`` as the book's seeds do, the same label. ``labels``: the labels the result carries
    (default: the samples' own)."""
    seeds = [int(s) for s in samples.seeds]
    order = [seeds[(i + by) % len(seeds)] for i in range(len(seeds))]
    return Samples(samples.by_seed(order), torch.tensor(seeds), name=f"{samples.name} (seed + {by})",
                   labels=samples.labels if labels is None else labels)


@dataclass
class PerLabelRP:
    """``scores[c][(a, b)]``: RP of models ``a`` and ``b`` on the seeds that draw label ``c``."""

    scores: dict[int, dict[tuple[str, str], Score]]

    def means(self) -> dict[int, float]:
        """Each label's RP averaged over the model pairs."""
        return {c: Scores(row.values()).mean() for c, row in self.scores.items()}

    def summary(self, per_line: int = 5) -> str:
        """Each label's mean RP in two decimals, ``per_line`` labels to a line."""
        means = list(self.means().items())
        return "\n".join("  " + ", ".join(f"{c}: {v:.2f}" for c, v in means[i:i + per_line])
                         for i in range(0, len(means), per_line))


def per_label_rp(samples: Mapping[str, Samples], pairs: Sequence[tuple[str, str]], labels: torch.Tensor,
                 seeds: Sequence[int] | range, descriptor, rule: SameImageRule) -> PerLabelRP:
    """RP of every pair of ``pairs`` (names in ``samples``) under the same-image ``rule``, on the
    seeds of each label separately: ``labels[i]`` is the label of ``seeds[i]``."""
    seeds = list(seeds)
    scores = {}
    for c in sorted({int(v) for v in labels}):
        idx = [k for k, v in zip(seeds, labels.tolist()) if v == c]
        scores[c] = {p: rp_score(samples[p[0]].select(idx), samples[p[1]].select(idx), descriptor, threshold=rule)
                     for p in pairs}
    return PerLabelRP(scores)


def every_label(model, seeds: Sequence[int] | range, shape: Sequence[int], num_classes: int, *,
                guidance: float, sampler: str = "heun", steps: int = 18, batch_size: int = 256) -> torch.Tensor:
    """A class-conditional ``model`` under classifier-free guidance ``guidance``, drawing every label
    from each of ``seeds``: images ``(num_classes, len(seeds), C, H, W)`` in [-1, 1]."""
    from .denoisers import Guided

    seeds = list(seeds)
    return torch.stack([generate(Guided(model, guidance), seeds, shape, labels=torch.full((len(seeds),), c),
                                 sampler=sampler, steps=steps, batch_size=batch_size).images
                        for c in range(num_classes)])


def ink_and_centre(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two features of images ``(L, S, C, H, W)`` in [-1, 1]: the mean ink (pixel value + 1) and the
    ink-weighted mean column (horizontal centre, in pixels), each ``(L, S)``."""
    ink = (images + 1).mean(dim=(2, 3, 4))
    cols = torch.arange(images.shape[-1], dtype=torch.float32)
    mass = (images + 1).sum(dim=(2, 3))  # (L, S, W): ink per column
    return ink, (mass * cols).sum(-1) / mass.sum(-1)


def cross_label_correlation(feature: torch.Tensor, shift: int = 0) -> float:
    """Mean Pearson correlation across seeds of ``feature`` ``(L, S)`` between every ordered pair of
    distinct labels; ``shift`` rolls the second label's seeds (``1``: the next seed, a control)."""
    values = []
    for c in range(feature.shape[0]):
        for d in range(feature.shape[0]):
            if c != d:
                x, y = feature[c], feature[d].roll(shift)
                values.append(torch.corrcoef(torch.stack([x, y]))[0, 1])
    return float(torch.stack(values).mean())


def style_table(images: torch.Tensor, seeds: Sequence[int], descriptor, pair: tuple[int, int] = (3, 8)) -> str:
    """How much the noise fixes across labels, for :func:`every_label`'s images ``(L, S, C, H, W)``:
    the cross-label correlation of ink and centre, and the median similarity of the two labels of
    ``pair`` drawn from the same seed, each against the next seed as a control."""
    ink, centre = ink_and_centre(images)
    ids = torch.tensor(list(seeds))
    a, b = pair
    same = paired_similarity(Samples(images[a], ids), Samples(images[b], ids), descriptor)
    other = paired_similarity(Samples(images[a], ids), Samples(images[b].roll(1, 0), ids), descriptor)
    return "\n".join([
        f"{'':34s}{'same seed':>10s}{'next seed (control)':>22s}",
        f"{'ink, correlation across labels':34s}{cross_label_correlation(ink):>10.2f}"
        f"{cross_label_correlation(ink, 1):>22.2f}",
        f"{'centre, correlation across labels':34s}{cross_label_correlation(centre):>10.2f}"
        f"{cross_label_correlation(centre, 1):>22.2f}",
        f"{f'a {a} vs an {b}, median similarity':34s}{same.median():>10.2f}{other.median():>22.2f}"])


def sample_labelled(models: Mapping[str, torch.nn.Module], configs: Mapping[str, object],
                    seeds: Sequence[int] | range, shape: Sequence[int], labels: torch.Tensor, *, guidance: float,
                    sampler: str = "heun", steps: int = 18, batch_size: int = 256) -> dict[str, Samples]:
    """Sample conditional and unconditional models from the same ``seeds``: a model whose training
    config (``configs[name]``, a :class:`reprodiff.training.TrainConfig`) is ``conditional`` draws
    ``labels`` under classifier-free guidance ``guidance``, the others draw without labels. Each
    :class:`Samples` is named by its model's key."""
    from .denoisers import Guided

    kw = dict(sampler=sampler, steps=steps, batch_size=batch_size)
    return {k: generate(Guided(m, guidance), seeds, shape, labels=labels, name=k, **kw) if configs[k].conditional
            else generate(m, seeds, shape, name=k, **kw) for k, m in models.items()}


def reference_table(study, classifier, labels: torch.Tensor, short: Mapping[str, str]) -> str:
    """For each guidance scale of a :class:`reprodiff.experiments.GuidanceStudy` with a closed-form
    reference: RP of every model with the reference (models named by ``short``), and the label
    accuracy of the reference's samples under ``classifier`` (a
    :class:`reprodiff.metrics.QualityClassifier`; ``labels``: the labels they were drawn with)."""
    names = list(next(iter(study.reference.values())))
    ref = study.reference_name
    lines = [f"{'w':>4s}  RP to {ref} (" + ", ".join(short[n] for n in names) + f")   label accuracy of {ref}"]
    for w in study.scales:
        acc = classifier.accuracy(study.reference_samples[w].images, labels)
        lines.append(f"{w:4g}  " + ", ".join(f"{study.reference[w][n].value:.2f}" for n in names) + f"{acc:>36.2f}")
    return "\n".join(lines)


def pair_table(columns: Mapping[str, Mapping[tuple[str, str], Score]], pairs: Sequence[tuple[str, str]],
               short: Mapping[str, str], widths: Sequence[int]) -> str:
    """RP with its 95% interval for each model pair of ``pairs`` (rows, named by ``short``) under each
    condition of ``columns`` (``{title: {pair: Score}}``, each ``widths[i]`` characters wide)."""
    lines = [f"{'pair':14s}" + "".join(f"{title:>{w}s}" for title, w in zip(columns, widths))]
    lines += [f"{short[a] + ' vs ' + short[b]:14s}"
              + "".join(f"{col[(a, b)].interval():>{w}s}" for col, w in zip(columns.values(), widths))
              for a, b in pairs]
    return "\n".join(lines)


def median_table(columns: Mapping[str, Mapping[tuple[str, str], Score]], pairs: Sequence[tuple[str, str]],
                 short: Mapping[str, str], widths: Sequence[int]) -> str:
    """:func:`pair_table`'s threshold-free twin: each cell's median paired similarity with a bootstrap
    95% interval, so a difference in RP can be told apart from a difference in typical similarity."""
    from .metrics import bootstrap_ci

    def cell(score: Score) -> str:
        lo, hi = bootstrap_ci(score.similarities, statistic="median")
        return f"{float(score.similarities.median()):.3f} [{lo:.3f},{hi:.3f}]"

    lines = [f"{'median':14s}" + "".join(f"{title:>{w}s}" for title, w in zip(columns, widths))]
    lines += [f"{short[a] + ' vs ' + short[b]:14s}" + "".join(f"{cell(col[(a, b)]):>{w}s}"
                                                                for col, w in zip(columns.values(), widths))
              for a, b in pairs]
    return "\n".join(lines)


@dataclass
class SeedPairCheck:
    """GL of every model against one training set, and RP between the two training seeds of each kind.

    ``gl[name]``: GL of each sample set; ``rp[kind]``: RP of ``"{kind} s{a}"`` with ``"{kind} s{b}"``.
    """

    gl: dict[str, Score]
    rp: dict[str, Score]
    samples: dict[str, Samples] = field(default_factory=dict)  #: the scored sample sets, by name (if kept)

    def table(self) -> str:
        """One line per model (GL) and per kind (RP between its two seeds), each with its 95% interval."""
        return "\n".join([*(f"GL {k:18s} {s.interval()}" for k, s in self.gl.items()),
                          *(f"RP {kind + ' pair':18s} {s.interval()}" for kind, s in self.rp.items())])

    def orderings(self, rule: SameImageRule, against: str = "unconditional") -> dict[str, dict[str, str]]:
        """Each other kind against the kind ``against``, at every threshold of ``rule``'s interval
        (:meth:`reprodiff.metrics.SameImageRule.ordering`): ``{"RP between seeds": {kind: verdict},
        "copies, s<k>": {kind: verdict}}``, where a copy (``1 - GL``) is a sample above the threshold
        from its nearest training image, so ``"higher"`` copies means lower GL at every threshold."""
        kinds = [k for k in self.rp if k != against]
        seeds = sorted({k.rsplit(" ", 1)[1] for k in self.gl})
        out = {"RP between seeds": {k: rule.ordering(self.rp[k].similarities, self.rp[against].similarities)
                                    for k in kinds}}
        for s in seeds:
            out[f"copies, {s}"] = {k: rule.ordering(self.gl[f"{k} {s}"].similarities,
                                                    self.gl[f"{against} {s}"].similarities) for k in kinds}
        return out


def seed_pair_check(samples: Mapping[str, Samples], train_images: torch.Tensor, seeds: tuple[int, int], descriptor,
                    rule: SameImageRule, kinds: Sequence[str] = ("conditional", "unconditional")) -> SeedPairCheck:
    """GL against ``train_images`` ``(N, C, H, W)`` of every sample set of ``samples`` (named
    ``"{kind} s{seed}"``), and RP between the two training ``seeds`` of each of ``kinds``, under the
    same-image ``rule``."""
    from .metrics import get_descriptor, gl_score

    a, b = seeds
    feats = get_descriptor(descriptor)(train_images)  # once for every sample set
    gl = {k: gl_score(s, train_images, descriptor, threshold=rule, train_features=feats) for k, s in samples.items()}
    rp = {kind: rp_score(samples[f"{kind} s{a}"], samples[f"{kind} s{b}"], descriptor, threshold=rule)
          for kind in kinds}
    return SeedPairCheck(gl, rp, dict(samples))


def regime_check(models: Mapping[str, torch.nn.Module], configs: Mapping[str, object], train_images: torch.Tensor,
                 seeds: Sequence[int] | range, shape: Sequence[int], labels: torch.Tensor, descriptor,
                 rule: SameImageRule, *, scales: Sequence[float] = (0.0, 1.0), sampler: str = "heun", steps: int = 18,
                 batch_size: int = 256) -> SeedPairCheck:
    """Chapter 6's memorization check at one N, with guidance held apart from conditioning.

    ``models`` are named ``"conditional s{seed}"`` and ``"unconditional s{seed}"`` for two training
    seeds (``configs[name]``, a :class:`reprodiff.training.TrainConfig`, says which are
    ``conditional``). Every conditional model draws ``labels`` at each guidance scale of ``scales``
    (named ``"conditional w={w} s{seed}"``), the unconditional ones draw without labels, all from
    the same ``seeds``; then :func:`seed_pair_check` (GL against ``train_images``, RP between the two
    training seeds of each kind). The scales are checked before any sampling.
    """
    from .denoisers import Guided

    scales = [float(w) for w in scales]
    if not scales:
        raise ValueError("regime_check needs at least one guidance scale")
    for k, m in models.items():
        if configs[k].conditional:
            for w in scales:
                Guided(m, w)  # a bad scale fails here
    seed_ids = sorted({int(k.rsplit(" s", 1)[1]) for k in models})
    if len(seed_ids) != 2 or set(models) != {f"{kind} s{s}" for kind in ("conditional", "unconditional") for s in seed_ids}:
        raise ValueError(f"models must be 'conditional s<a>', 'conditional s<b>', 'unconditional s<a>', "
                         f"'unconditional s<b>'; got {sorted(models)}")
    kw = dict(sampler=sampler, steps=steps, batch_size=batch_size)
    samples = {}
    for k, m in models.items():
        kind, seed = k.rsplit(" ", 1)
        if configs[k].conditional:
            for w in scales:
                name = f"{kind} w={w:g} {seed}"
                # w = 0 is the bare model (Guided returns it unchanged), so its samples can come from the cache
                samples[name] = generate(m if w == 0 else Guided(m, w), seeds, shape, labels=labels, name=name, **kw)
        else:
            samples[k] = generate(m, seeds, shape, name=k, **kw)
    kinds = [f"conditional w={w:g}" for w in scales] + ["unconditional"]
    return seed_pair_check(samples, train_images, tuple(seed_ids), descriptor, rule, kinds)


def regime_table(checks: Mapping[int, SeedPairCheck]) -> str:
    """:func:`regime_check`'s results at each N (``{N: check}``) in one table: per N and kind, the GL of
    each training seed and the RP between the two seeds, each with its 95% interval."""
    lines = []
    for n, check in checks.items():
        kinds = list(check.rp)
        seeds = sorted({k.rsplit(" ", 1)[1] for k in check.gl})
        if not lines:
            lines.append(f"{'':22s}" + "".join(f"{'GL, ' + s:>19s}" for s in seeds) + f"{'RP ' + ' vs '.join(seeds):>19s}")
        lines.append(f"N = {n}")
        for kind in kinds:
            lines.append(f"  {kind.replace('w=', 'w = '):20s}" + "".join(f"{check.gl[f'{kind} {s}'].interval():>19s}"
                                                                      for s in seeds)
                         + f"{check.rp[kind].interval():>19s}")
    return "\n".join(lines)


def regime_summary(checks: Mapping[int, SeedPairCheck]) -> str:
    """:func:`regime_check`'s point values at each N (``{N: check}``) in three lines per N (for a
    chapter's headline): the conditional GL of both training seeds at each guidance scale, the
    unconditional GL, and RP between the seeds of each kind."""
    lines = []
    for n, check in checks.items():
        seeds = sorted({k.rsplit(" ", 1)[1] for k in check.gl})
        scales = [k.split("w=", 1)[1] for k in check.rp if k.startswith("conditional w=")]
        def both(kind: str, check: SeedPairCheck = check, seeds: list[str] = seeds) -> str:  # both seeds' GL
            return ", ".join(f"{check.gl[f'{kind} {s}'].value:.2f}" for s in seeds)

        on = f" (seeds {', '.join(s.lstrip('s') for s in seeds)})"
        lines.append(f"N = {n}: conditional GL " + " and ".join(f"{both(f'conditional w={w}')} at w = {w}" for w in scales)
                     + on)
        lines.append(f"N = {n}: unconditional GL {both('unconditional')}{on}")
        lines.append(f"N = {n}, RP between seeds: conditional "
                     + ", ".join(f"w = {w} {check.rp[f'conditional w={w}'].value:.2f}" for w in scales)
                     + f"; unconditional {check.rp['unconditional'].value:.2f}")
    return "\n".join(lines)


class SharedNullGuided(Guided):
    """Classifier-free guidance whose unconditional estimate comes from another denoiser ``null_denoiser``.

    ``D_w(x, sigma, c) = (1 + w) D(x, sigma, c) - w U(x, sigma)``, with ``U`` = ``null_denoiser`` at its
    null label (``null_label``, by default its class count) when it is class-conditional, or without a
    label when it is unconditional. Guide several models with one shared ``U`` and the difference
    between two guided estimates at the same ``x`` is ``(1 + w)`` times the difference between their
    conditional ones: the difference between their unconditional estimates is gone (chapter 6's
    control for why agreement falls with ``w``). With ``null_denoiser=denoiser`` it is :class:`Guided`.

    Fails here, before any sampling: an unconditional ``denoiser``, a non-finite or negative
    ``guidance``, a ``null_denoiser`` that is not a module, a null label out of range, or a
    ``null_label`` for an unconditional ``null_denoiser``.
    """

    def __init__(self, denoiser: nn.Module, null_denoiser: nn.Module, guidance: float,
                 null_label: int | None = None) -> None:
        super().__init__(denoiser, guidance)
        if not isinstance(null_denoiser, nn.Module):
            raise ValueError(f"null_denoiser must be a denoiser (an nn.Module), got {type(null_denoiser).__name__}")
        classes = class_count(null_denoiser)
        if classes is None and null_label is not None:
            raise ValueError("null_denoiser is unconditional: it takes no null_label")
        label = classes if null_label is None else int(null_label)
        if classes is not None and not 0 <= label <= classes:
            raise ValueError(f"null_label must lie in [0, {classes}] for this null_denoiser, got {label}")
        self.null_denoiser = null_denoiser
        self.null_label = label  # the null_denoiser's (None: unconditional)

    def forward(self, x, sigma, cond=None):
        if cond is None:
            raise ValueError("guided sampling needs class labels (cond)")
        c = self.denoiser(x, sigma, cond)
        if self.guidance == 0:
            return c
        u = self.null_denoiser(x, sigma, None if self.null_label is None else torch.full_like(cond, self.null_label))
        if u.shape != c.shape:
            raise ValueError(f"null_denoiser returns {tuple(u.shape)}, the model {tuple(c.shape)}: one image shape")
        return (1 + self.guidance) * c - self.guidance * u
