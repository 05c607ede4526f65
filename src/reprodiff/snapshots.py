"""Models along their training: sampling the snapshots a run saved, and when memorization sets in.

* :func:`sample_at_steps`: one model's samples at several of its saved training steps, from the same
  seeds; the one way the book samples a run along training (the sweep's memorization study and the
  fine-tunes' drift).
* :class:`OnsetReport` and :func:`onset_report`: the step where GL falls to 0.5 at each N, the line
  ``onset = a + b N`` through those inside training, its residuals, what it predicts for the N that
  have not reached the onset, and a test of the line on a run trained longer that it was not fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .metrics import Scores, rp_score
from .sampling import Samples, generate

__all__ = ["sample_at_steps", "rp_along_steps", "OnsetReport", "onset_report"]


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


@dataclass
class OnsetReport:
    """Memorization onsets along training and the line through them.

    ``onsets[N]``: the step where GL first falls to ``level`` (``None``: not within ``last_step``);
    ``a``, ``b``: the least-squares line ``onset = a + b N`` through the N in ``fitted`` (``nan``
    when fewer than two N reach the onset); ``last_gl[N]``: GL at the last step; ``tested[N]``: the
    onset of a run trained longer (to ``tested_last_step``) that the line was not fitted on, with
    its GL at each of ``tested_steps`` in ``tested_gl[N]``; ``batch_size``: the training batch, to
    state the slope as passes over the training set.
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
        lines = [f"memorization onset ~ {self.a:.0f} + {self.b:.1f} x N steps (from N = {self.fitted})"
                 if self.has_fit else
                 f"memorization onset: fewer than two N reach it within {self.last_step} steps"]
        last = self.tested_steps[-1] if self.tested_steps else None
        for n, t in self.tested.items():
            lines.append(f"onset at N={n} trained longer: line {self.predict(n):.0f}, observed "
                         + (f"{t:.0f}" if t is not None else f"none by step {last}"))
        return "\n".join(lines)


def onset_report(times, longer=None, *, batch_size: int, level: float = 0.5) -> OnsetReport:
    """The memorization onsets of a :class:`reprodiff.agreement.TrainingTimeStudy` ``times``, the
    line through them (:meth:`TrainingTimeStudy.onset_fit`), and its test on ``longer``, a study of
    runs trained for more steps (not fitted; ``None`` for no test). ``batch_size``: the runs'
    training batch."""
    a, b, fitted = times.onset_fit(level)
    return OnsetReport(
        level=level, onsets={n: times.onset(n, level) for n in times.n_train}, a=a, b=b, fitted=fitted,
        last_step=times.steps[-1], last_gl={n: times.gl[n][-1].value for n in times.n_train},
        batch_size=batch_size,
        tested={n: longer.onset(n, level) for n in longer.n_train} if longer else {},
        tested_steps=list(longer.steps) if longer else [],
        tested_gl={n: Scores(longer.gl[n]).values for n in longer.n_train} if longer else {})


def rp_along_steps(a: Sequence[Samples], b: Sequence[Samples] | Samples, descriptor, rule) -> Scores:
    """RP (:func:`reprodiff.metrics.rp_score` under the same-image ``rule``) between ``a[k]`` and
    ``b[k]`` at each training step k, the samples of two runs at the same steps (from
    :func:`sample_at_steps`); ``b`` one :class:`Samples` compares every step with it (a fixed
    reference, e.g. the base model). One :class:`reprodiff.metrics.Score` per step."""

    b = [b] * len(a) if isinstance(b, Samples) else list(b)
    if len(a) != len(b):
        raise ValueError(f"rp_along_steps needs as many steps on both sides, got {len(a)} and {len(b)}")
    return Scores(rp_score(x, y, descriptor, threshold=rule) for x, y in zip(a, b))
