"""Models along their training: sampling the snapshots a run saved, and when memorization sets in.

* :func:`sample_at_steps`: one model's samples at several of its saved training steps, from the same
  seeds; the one way the book samples a run along training (the sweep's memorization study and the
  fine-tunes' drift).
* :class:`OnsetReport` and :func:`onset_report`: the step where GL falls to 0.5 at each N, the line
  ``onset = a + b N`` through those inside training, its residuals, what it predicts for the N that
  have not reached the onset, a test of the line on a run trained longer that it was not fitted on,
  the slope's range when each onset may lie anywhere between its two bracketing snapshots
  (:func:`slope_range`), and the line of a second training seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .metrics import Scores, rp_score
from .sampling import Samples, generate

__all__ = ["sample_at_steps", "rp_along_steps", "slope_range", "OnsetReport", "onset_report"]


def sample_at_steps(config, steps: Sequence[int], seeds: Sequence[int] | range, shape: Sequence[int], *,
                    name: str = "{step}", sampler: str = "heun", sampling_steps: int = 18, batch_size: int = 256,
                    given: Mapping[int, Samples] | None = None) -> list[Samples]:
    """Sample the model of ``config`` (a :class:`reprodiff.training.TrainConfig`) at each training
    step of ``steps`` (its ``snapshots`` and/or ``config.steps``, the finished model) from the same
    ``seeds``: one :class:`Samples` per step, in the order of ``steps``. ``given`` maps steps whose
    samples are already drawn (e.g. step 0 as the base model's, or the finished model's) to them;
    they are returned as they are, not sampled again. ``name`` names each sample set, with ``{step}``
    replaced by its step. Raises ValueError for a step the run saved no snapshot at."""
    from .training import load_model

    given = dict(given or {})
    return [given[k] if k in given else
            generate(load_model(config, step=k), seeds, shape, sampler=sampler, steps=sampling_steps,
                     batch_size=batch_size, name=name.replace("{step}", str(k)))
            for k in steps]


def slope_range(ns: Sequence[float], brackets: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The lowest and highest least-squares slope of ``onset = a + b N`` through the points
    ``(ns[i], t_i)`` over every choice of each ``t_i`` inside ``brackets[i] = (lo, hi)`` (the two
    snapshot steps around an interpolated onset). The slope is linear in the ``t_i``, with weight
    ``(N_i - mean N)``, so its extremes put each onset at one end of its bracket: the upper end where
    the weight is positive for the highest slope, the lower end for the lowest. ValueError for fewer
    than two distinct N, a length mismatch or a bracket with ``lo > hi``."""
    if len(ns) != len(brackets):
        raise ValueError(f"slope_range needs one bracket per N, got {len(ns)} N and {len(brackets)} brackets")
    if len(set(ns)) < 2:
        raise ValueError(f"slope_range needs at least two distinct N, got {list(ns)}")
    if any(lo > hi for lo, hi in brackets):
        raise ValueError(f"each bracket must be (lo, hi) with lo <= hi, got {list(brackets)}")
    mean = sum(ns) / len(ns)
    sxx = sum((n - mean) ** 2 for n in ns)
    w = [(n - mean) / sxx for n in ns]
    high = sum(wi * (hi if wi > 0 else lo) for wi, (lo, hi) in zip(w, brackets))
    low = sum(wi * (lo if wi > 0 else hi) for wi, (lo, hi) in zip(w, brackets))
    return float(low), float(high)


@dataclass
class OnsetReport:
    """Memorization onsets along training and the line through them.

    ``onsets[N]``: the step where GL first falls to ``level`` (``None``: not within ``last_step``);
    ``a``, ``b``: the least-squares line ``onset = a + b N`` through the N in ``fitted`` (``nan``
    when fewer than two N reach the onset); ``last_gl[N]``: GL at the last step; ``tested[N]``: the
    onset of a run trained longer (to ``tested_last_step``) that the line was not fitted on, with
    its GL at each of ``tested_steps`` in ``tested_gl[N]``; ``batch_size``: the training batch, to
    state the slope as passes over the training set. ``brackets[N]``: the snapshot steps around each
    fitted onset, and ``slopes``: the slope's range with every onset anywhere inside its bracket
    (:func:`slope_range`). ``second_seed``: a second training seed of the same models, with its onsets,
    its line ``(a, b, fitted N)`` and its slope range (empty / ``nan`` without one).
    """

    level: float
    onsets: dict[int, float | None]
    a: float
    b: float
    fitted: list[int]
    last_step: int
    last_gl: dict[int, float]
    batch_size: int
    tested: dict[int, float | None]
    tested_steps: list[int]
    tested_gl: dict[int, list[float]]
    brackets: dict[int, tuple[int, int]] = field(default_factory=dict)
    slopes: tuple[float, float] = (math.nan, math.nan)
    second_seed: int | None = None
    second_onsets: dict[int, float | None] = field(default_factory=dict)
    second_fit: tuple[float, float, list[int]] = (math.nan, math.nan, [])
    second_slopes: tuple[float, float] = (math.nan, math.nan)

    @property
    def has_fit(self) -> bool:
        """Whether at least two N reached the onset, so the line exists."""
        return bool(self.fitted) and not math.isnan(self.b)

    @property
    def reached(self) -> dict[int, float]:
        """N -> onset step, for the N whose onset falls inside training (the fitted points)."""
        return {n: t for n, t in self.onsets.items() if t is not None}

    @property
    def censored(self) -> list[int]:
        """The N whose GL has not fallen to ``level`` by the last step (their onset is later)."""
        return [n for n, t in self.onsets.items() if t is None]

    def predict(self, n: float) -> float:
        """The line's onset step at training-set size ``n``."""
        return self.a + self.b * n

    def residuals(self) -> list[float]:
        """Observed minus fitted onset step, for each N in :attr:`reached` (in that order)."""
        return [t - self.predict(n) for n, t in self.reached.items()]

    def summary(self) -> str:
        """The onset per N, the line with its residuals, its slope as passes over the training set,
        its predictions for the N that have not reached the onset, and its out-of-fit test."""
        lines = [f"N={n}: memorization onset (GL falls to 0.5) " + (f"at step ~{t:.0f}" if t is not None
                                                                     else f"not within {self.last_step} steps")
                 for n, t in self.onsets.items()]
        if not self.has_fit:
            return "\n".join([*lines, "fewer than two N reach the onset: no fit"])
        a, b = self.a, self.b
        lines.append(f"linear fit through N = {self.fitted}: onset ~ {a:.0f} + {b:.1f} x N steps; residuals "
                     + ", ".join(f"{r:+.0f}" for r in self.residuals()))
        lines.append(f"  at batch {self.batch_size}, a slope of {b:.1f} steps per image is "
                     f"{b * self.batch_size:.0f} passes over the training set before the onset, whatever N")
        lo, hi = self.slopes
        lines.append("  the onsets lie between snapshots "
                     + ", ".join(f"{s0}-{s1} (N={n})" for n, (s0, s1) in self.brackets.items())
                     + f"; with each anywhere in its bracket the slope ranges {lo:.1f}-{hi:.1f} steps per image")
        if self.second_seed is not None:
            a2, b2, fitted2 = self.second_fit
            lines.append(f"second training seed ({self.second_seed}): onsets "
                         + ", ".join(f"N={n}: " + (f"~{t:.0f}" if t is not None else f"none by {self.last_step}")
                                     for n, t in self.second_onsets.items()))
            lines.append(f"  linear fit through N = {fitted2}: onset ~ {a2:.0f} + {b2:.1f} x N steps; slope range "
                         f"within the brackets {self.second_slopes[0]:.1f}-{self.second_slopes[1]:.1f}"
                         if not math.isnan(b2) else "  fewer than two N reach the onset: no fit")
        for n in self.censored:
            lines.append(f"  N={n}: the line puts the onset at step {self.predict(n):.0f}; at the last step, "
                         f"{self.last_step}, GL is still {self.last_gl[n]:.2f}")
        last = self.tested_steps[-1] if self.tested_steps else None
        for n, t in self.tested.items():
            lines.append(f"test beyond the fit: N={n} trained {last:,} steps, line {self.predict(n):.0f}, observed "
                         + (f"{t:.0f} ({t - self.predict(n):+.0f} steps)" if t is not None else f"no onset by {last}"))
            lines.append("  GL along that run: " + ", ".join(f"{k}: {g:.2f}"
                                                             for k, g in zip(self.tested_steps, self.tested_gl[n])))
        return "\n".join(lines)

    def headline(self) -> str:
        """The line, and its test on the run trained longer, in one or two lines."""
        second = (f"; seed {self.second_seed}: slope {self.second_fit[1]:.1f}"
                  if self.second_seed is not None and not math.isnan(self.second_fit[1]) else "")
        lines = [f"memorization onset ~ {self.a:.0f} + {self.b:.1f} x N steps (from N = {self.fitted}; slope "
                 f"{self.slopes[0]:.1f}-{self.slopes[1]:.1f} within the snapshot brackets{second})"
                 if self.has_fit else
                 f"memorization onset: fewer than two N reach it within {self.last_step} steps"]
        last = self.tested_steps[-1] if self.tested_steps else None
        for n, t in self.tested.items():
            lines.append(f"onset at N={n} trained longer: line {self.predict(n):.0f}, observed "
                         + (f"{t:.0f}" if t is not None else f"none by step {last}"))
        return "\n".join(lines)


def onset_report(times, longer=None, *, batch_size: int, level: float = 0.5,
                 second_seed: int | None = None) -> OnsetReport:
    """The memorization onsets of a :class:`reprodiff.agreement.TrainingTimeStudy` ``times``, the
    line through them (:meth:`TrainingTimeStudy.onset_fit`), the slope's range over the snapshot
    brackets (:func:`slope_range`), and its test on ``longer``, a study of runs trained for more
    steps (not fitted; ``None`` for no test). ``batch_size``: the runs' training batch.
    ``second_seed``: the seed of ``times.gl_second`` (its onsets and line are reported too)."""
    a, b, fitted = times.onset_fit(level)
    brackets = {n: times.bracket(n, level) for n in fitted}
    slopes = slope_range(fitted, list(brackets.values())) if len(fitted) >= 2 else (math.nan, math.nan)
    second = {}
    if second_seed is not None:
        ns = [n for n in times.n_train if n in times.gl_second]
        fit2 = times.onset_fit(level, second=True)
        second = dict(second_seed=second_seed, second_onsets={n: times.onset(n, level, second=True) for n in ns},
                      second_fit=fit2,
                      second_slopes=slope_range(fit2[2], [times.bracket(n, level, second=True) for n in fit2[2]])
                      if len(fit2[2]) >= 2 else (math.nan, math.nan))
    return OnsetReport(
        level=level, onsets={n: times.onset(n, level) for n in times.n_train}, a=a, b=b, fitted=fitted,
        last_step=times.steps[-1], last_gl={n: times.gl[n][-1].value for n in times.n_train},
        batch_size=batch_size,
        tested={n: longer.onset(n, level) for n in longer.n_train} if longer else {},
        tested_steps=list(longer.steps) if longer else [],
        tested_gl={n: Scores(longer.gl[n]).values for n in longer.n_train} if longer else {},
        brackets=brackets, slopes=slopes, **second)


def rp_along_steps(a: Sequence[Samples], b: Sequence[Samples] | Samples, descriptor, rule) -> Scores:
    """RP (:func:`reprodiff.metrics.rp_score` under the same-image ``rule``) between ``a[k]`` and
    ``b[k]`` at each training step k, the samples of two runs at the same steps (from
    :func:`sample_at_steps`); ``b`` one :class:`Samples` compares every step with it (a fixed
    reference, e.g. the base model). One :class:`reprodiff.metrics.Score` per step."""

    b = [b] * len(a) if isinstance(b, Samples) else list(b)
    if len(a) != len(b):
        raise ValueError(f"rp_along_steps needs as many steps on both sides, got {len(a)} and {len(b)}")
    return Scores(rp_score(x, y, descriptor, threshold=rule) for x, y in zip(a, b))
