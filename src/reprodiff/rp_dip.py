"""Where the RP dip across the memorization-generalization transition comes from (chapter 5).

Zhang et al. explain the dip in RP between two widths by the two models leaving memorization at
different N. :func:`dip_study` marks where each model's GL crosses 0.5 and adds a pair whose
crossings lie further apart: the small model stopped early (a training snapshot) against the wider
model at the end of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .metrics import SameImageRule, Score, rp_score, score_band
from .sampling import Samples

__all__ = ["DipStudy", "dip_study"]


@dataclass
class DipStudy:
    """RP against N for the two finished widths and for the early snapshot against the wide model.

    ``n_train``: the N with snapshots that the sweep also has; ``pair``: the sweep's RP pair of the
    two finished widths and ``rp_end`` its RP at ``n_train``; ``rp_early``: RP of the small model at
    step ``early`` with the wide finished model; ``crossings[label]``: N where each model's GL
    crosses 0.5 (``None``: not within ``n_train``); ``small`` and ``wide``: short model names.
    """

    n_train: list[int]
    early: int
    small: str
    wide: str
    pair: str
    rp_end: list[Score]
    rp_early: list[Score]
    crossings: dict[str, float | None]

    @property
    def early_label(self) -> str:
        return f"{self.small} at step {self.early} vs {self.wide}"

    def curves(self) -> dict[str, tuple[list[float], list[float], list[float]]]:
        """``{label: (values, lower, upper)}`` of both pairs, for :func:`reprodiff.plots.curve_with_band`."""
        return {f"{self.pair} (both at the end)": score_band(self.rp_end), self.early_label: score_band(self.rp_early)}

    def summary(self) -> str:
        """Where each GL crosses 0.5."""
        return "\n".join(f"GL crosses 0.5: {k} at N ~ {v:.0f}" if v else
                         f"GL crosses 0.5: {k} not within N <= {self.n_train[-1]}" for k, v in self.crossings.items())

    def rp_summary(self) -> str:
        """Both pairs' RP at each N, in two decimals."""
        return "\n".join([f"RP {self.pair}: "
                          + ", ".join(f"N={n}: {s.value:.2f}" for n, s in zip(self.n_train, self.rp_end)),
                          f"RP {self.small} step {self.early} vs {self.wide}: "
                          + ", ".join(f"N={n}: {s.value:.2f}" for n, s in zip(self.n_train, self.rp_early))])


def dip_study(sweep, times, seeds: Sequence[int] | range, rule: SameImageRule, *, at_step: float,
              short: Mapping[str, str] | None = None) -> DipStudy:
    """From a two-width :class:`reprodiff.experiments.SweepResult` ``sweep`` and the small width's
    :class:`reprodiff.experiments.TrainingTimeStudy` ``times``: the snapshot step nearest ``at_step``,
    RP of that snapshot's samples with the wide model's finished ones from the same ``seeds`` at every
    N both have, and the GL = 0.5 crossings of the small model (finished and early) and of the wide
    one. ``short`` maps the sweep's size labels to the names printed (default: the labels)."""
    from .experiments import gl_crossing

    small, wide = sweep.sizes
    short = dict(short or {})
    s_small, s_wide = short.get(small, small), short.get(wide, wide)
    early = min(times.steps, key=lambda k: abs(k - at_step))
    ns = [n for n in times.n_train if n in sweep.n_train]
    early_gl = [times.gl[n][times.steps.index(early)] for n in ns]
    early_rp = [rp_score(times.samples[(n, early)], Samples(sweep.samples[(wide, n)].by_seed(seeds), seeds),
                         rule.descriptor, threshold=rule) for n in ns]
    crossings = {f"{s_small} (end)": sweep.gl_crossing(small, 0.5),
                 f"{s_small} (step {early})": gl_crossing(ns, [s.value for s in early_gl]),
                 f"{s_wide} (end)": sweep.gl_crossing(wide, 0.5)}
    pair = next(iter(sweep.rp))
    rp_end = [sweep.rp[pair][sweep.n_train.index(n)] for n in ns]
    return DipStudy(ns, early, s_small, s_wide, pair, rp_end, early_rp, crossings)
