"""What a class label adds to the noise (chapter 6): RP per label, the same-label null, and how much
of a drawing's style the noise fixes across labels.

* :func:`same_label_other_noise`: samples re-paired so that seed k holds another seed's image with
  the same label, the null for "same label, other noise".
* :class:`PerLabelRP` and :func:`per_label_rp`: RP of every model pair on the seeds of each label.
* :func:`every_label`: one guided model drawing every label from the same seeds.
* :func:`cross_label_correlation`, :func:`ink_and_centre` and :func:`style_table`: whether the
  noise fixes a drawing's ink and horizontal position whatever the label (correlation across seeds
  between the drawings of two labels, against the next seed as a control).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .metrics import SameImageRule, Score, Scores, paired_similarity, rp_score
from .sampling import Samples, generate

__all__ = ["same_label_other_noise", "PerLabelRP", "per_label_rp", "every_label", "cross_label_correlation",
           "ink_and_centre", "style_table", "sample_labelled", "reference_table", "pair_table", "median_table",
           "SeedPairCheck", "seed_pair_check"]


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

    def table(self) -> str:
        """One line per model (GL) and per kind (RP between its two seeds), each with its 95% interval."""
        return "\n".join([*(f"GL {k:18s} {s.interval()}" for k, s in self.gl.items()),
                          *(f"RP {kind + ' pair':18s} {s.interval()}" for kind, s in self.rp.items())])


def seed_pair_check(samples: Mapping[str, Samples], train_images: torch.Tensor, seeds: tuple[int, int], descriptor,
                    rule: SameImageRule, kinds: Sequence[str] = ("conditional", "unconditional")) -> SeedPairCheck:
    """GL against ``train_images`` ``(N, C, H, W)`` of every sample set of ``samples`` (named
    ``"{kind} s{seed}"``), and RP between the two training ``seeds`` of each of ``kinds``, under the
    same-image ``rule``."""
    from .metrics import gl_score

    a, b = seeds
    gl = {k: gl_score(s, train_images, descriptor, threshold=rule) for k, s in samples.items()}
    rp = {kind: rp_score(samples[f"{kind} s{a}"], samples[f"{kind} s{b}"], descriptor, threshold=rule)
          for kind in kinds}
    return SeedPairCheck(gl, rp)
