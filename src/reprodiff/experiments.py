"""Experiment drivers shared by chapters: each is a few package calls with a tidy result.

They exist so chapters narrate instead of looping: the loops over models, samplers and step counts
live here, tested, and every returned number carries its measurement statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .metrics import Descriptor, Score, rp_score
from .sampling import Samples, generate, network_calls

__all__ = ["sample_models", "SamplerStudy", "sampler_study", "stochastic_control"]


def sample_models(models: Mapping[str, torch.nn.Module], seeds: Sequence[int] | range, shape: Sequence[int], *,
                  sampler: str = "heun", steps: int = 18, batch_size: int = 256, progress: bool = False,
                  **kwargs) -> list[Samples]:
    """Sample every model from the same seeds with the same sampler; one :class:`Samples` per model."""
    return [generate(m, seeds, shape, sampler=sampler, steps=steps, name=name, batch_size=batch_size,
                     progress=progress, **kwargs) for name, m in models.items()]


@dataclass
class SamplerStudy:
    """RP of one model's samples under several samplers and step counts against a fine reference."""

    rows: list[dict]
    reference: Samples
    threshold: float
    threshold_rule: str

    def curve(self, sampler: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """``(network_calls, rp, lower, upper)`` for one sampler, by increasing step count."""
        r = [row for row in self.rows if row["sampler"] == sampler]
        return ([x["nfe"] for x in r], [x["rp"] for x in r], [x["lower"] for x in r], [x["upper"] for x in r])

    def table(self) -> str:
        """Rows: sampler; columns: steps; cells: RP / median similarity to the reference."""
        steps = sorted({r["steps"] for r in self.rows})
        lines = ["sampler     " + "".join(f"{s:>12d}" for s in steps) + "   (steps; cell = RP / median similarity)"]
        for sampler in dict.fromkeys(r["sampler"] for r in self.rows):
            cells = {r["steps"]: r for r in self.rows if r["sampler"] == sampler}
            lines.append(f"{sampler:10s}  " + "".join(f"{cells[s]['rp']:5.2f} / {cells[s]['median']:.3f}" if s in cells
                                                      else " " * 12 for s in steps))
        return "\n".join(lines)

    def min_nfe(self, sampler: str, level: float) -> int | None:
        """Fewest network calls at which ``sampler`` reaches RP >= ``level`` against the reference."""
        hits = [row["nfe"] for row in self.rows if row["sampler"] == sampler and row["rp"] >= level]
        return min(hits) if hits else None


def sampler_study(model: torch.nn.Module, seeds: Sequence[int] | range, shape: Sequence[int], *,
                  samplers: Sequence[str], step_counts: Sequence[int], threshold: float, threshold_rule: str,
                  descriptor: str | Descriptor = "pixel", reference_steps: int = 200,
                  batch_size: int = 256) -> SamplerStudy:
    """How few steps keep a sampler reproducing the ODE's own answer?

    The reference is Heun with ``reference_steps`` steps (an accurate ODE solution); each sampler at
    each step count is scored against it with the given threshold.
    """
    ref = generate(model, seeds, shape, sampler="heun", steps=reference_steps, name=f"heun-{reference_steps}",
                   batch_size=batch_size)
    rows = []
    for sampler in samplers:
        for steps in step_counts:
            s = generate(model, seeds, shape, sampler=sampler, steps=steps, name=f"{sampler}-{steps}",
                         batch_size=batch_size)
            score = rp_score(s, ref, descriptor, threshold=threshold, threshold_rule=threshold_rule)
            rows.append(dict(sampler=sampler, steps=steps, nfe=network_calls(sampler, steps), rp=score.value,
                             lower=score.ci[0], upper=score.ci[1], median=float(score.similarities.median())))
    return SamplerStudy(rows, ref, threshold, threshold_rule)


def stochastic_control(model_a: torch.nn.Module, model_b: torch.nn.Module, seeds: Sequence[int] | range,
                       shape: Sequence[int], *, threshold: float, threshold_rule: str, steps: int = 18,
                       descriptor: str | Descriptor = "pixel", batch_size: int = 256,
                       names: tuple[str, str] = ("A", "B")) -> tuple[Score, Score, list[Samples]]:
    """Same initial noise, but a stochastic sampler that injects fresh noise at every step.

    Returns ``(rp between the two models, rp of model A with itself under two noise streams,
    [A stream 1, A stream 2, B stream 2])``. Each model draws its own injected noise, as it would
    in practice; the initial noise is shared exactly as in the deterministic experiments.
    """
    kw = dict(sampler="euler-ancestral", steps=steps, batch_size=batch_size)
    a1 = generate(model_a, seeds, shape, step_noise_stream=1, name=f"{names[0]} (injected noise 1)", **kw)
    a2 = generate(model_a, seeds, shape, step_noise_stream=2, name=f"{names[0]} (injected noise 2)", **kw)
    b2 = generate(model_b, seeds, shape, step_noise_stream=3, name=f"{names[1]} (injected noise 3)", **kw)
    between = rp_score(a2, b2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    within = rp_score(a1, a2, descriptor, threshold=threshold, threshold_rule=threshold_rule)
    return between, within, [a1, a2, b2]
