"""Two networks on the same or on disjoint training data, from the same noise (chapter 5).

:func:`pair_study` samples, at each training-set size N, a model, a second training seed on the
**same** subset and the same second seed on a **disjoint** subset (the next N images of the pool),
and scores RP of each pair and GL of every model against its own training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from .metrics import SameImageRule, Score, gl_score, rp_score
from .sampling import Samples, generate

__all__ = ["PairStudy", "pair_study", "PAIR_KINDS"]

#: the three models at each N: two training seeds on one subset, and the second seed on another subset
PAIR_KINDS = ("shared a", "shared b", "disjoint b")


@dataclass
class PairStudy:
    """RP of two networks on shared and on disjoint training data, per N.

    ``shared[i]`` and ``disjoint[i]``: RP at ``pair_n[i]`` of ``"shared a"`` with ``"shared b"`` and
    with ``"disjoint b"``; ``gl[(N, kind)]``: GL of each model against its own training set;
    ``samples["N={N} {kind}"]``: the samples.
    """

    pair_n: list[int]
    shared: list[Score]
    disjoint: list[Score]
    gl: dict[tuple[int, str], Score]
    samples: dict[str, Samples]

    def table(self) -> str:
        """RP of both pairs with their intervals and the three models' GL, one row per N."""
        lines = [f"{'N':>6s}  {'RP same data':>20s}  {'RP disjoint data':>20s}  {'GL a':>6s}  {'GL b':>6s}  "
                 f"{'GL b disjoint':>13s}"]
        for n, sh, dj in zip(self.pair_n, self.shared, self.disjoint):
            lines.append(f"{n:6d}  {sh.interval():>20s}  {dj.interval():>20s}  {self.gl[(n, 'shared a')].value:6.2f}"
                         f"  {self.gl[(n, 'shared b')].value:6.2f}  {self.gl[(n, 'disjoint b')].value:13.2f}")
        return "\n".join(lines)


def pair_study(models: Mapping[str, torch.nn.Module], pair_n: Sequence[int],
               configs: Callable[[int], Mapping[str, object]], seeds: Sequence[int] | range,
               shape: Sequence[int], rule: SameImageRule, *, sampler: str = "heun", steps: int = 18,
               batch_size: int = 256) -> PairStudy:
    """Sample every model of ``models`` (keyed ``"N={N} {kind}"`` for each N of ``pair_n`` and kind of
    :data:`PAIR_KINDS`) from ``seeds`` and score the shared and disjoint pairs at each N under the
    same-image ``rule``; ``configs(N)`` maps each kind to its :class:`reprodiff.training.TrainConfig`
    (e.g. :meth:`reprodiff.configs.AgreementConfig.pair_configs`), whose training set GL compares with."""
    from .training import training_data

    samples = {k: generate(m, seeds, shape, sampler=sampler, steps=steps, batch_size=batch_size, name=k)
               for k, m in models.items()}
    shared, disjoint, gl = [], [], {}
    for n in pair_n:
        a, b, d = (samples[f"N={n} {k}"] for k in PAIR_KINDS)
        shared.append(rp_score(a, b, rule.descriptor, threshold=rule))
        disjoint.append(rp_score(a, d, rule.descriptor, threshold=rule))
        for k, cfg in configs(n).items():
            gl[(n, k)] = gl_score(samples[f"N={n} {k}"], training_data(cfg)[0].images, rule.descriptor,
                                  threshold=rule)
    return PairStudy(list(pair_n), shared, disjoint, gl, samples)
