"""What fine-tuning does to a model (chapter 8): the models side by side, by what they train and how
well they denoise held-out images of the fine-tuning classes (:func:`training_table`), and how their
noise-to-image map drifts from the base's along fine-tuning (:func:`drift_summary`)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

__all__ = ["training_table", "drift_summary", "rp_table", "split_by_base", "lora_table"]


def training_table(models: Mapping[str, torch.nn.Module], held_out: torch.Tensor, sigma: float = 0.5) -> str:
    """One row per model: its trainable weights (and their share of all weights), training steps and
    seconds (from the checkpoint's ``info``), and the RMS error of its clean-image estimate on the
    held-out images ``(B, C, H, W)`` in [-1, 1] at noise level ``sigma``
    (:func:`reprodiff.denoisers.x0_error`)."""
    from .denoisers import x0_error

    lines = [f"{'model':12s}{'trainable weights':>20s}{'steps':>7s}{'training time':>15s}{'held-out x0 error':>20s}"]
    for name, m in models.items():
        err = x0_error(m, held_out, sigmas=(sigma,))[0]
        info = m.info
        lines.append(f"{name:12s}{info['trainable_parameters']:>12,} "
                     f"({info['trainable_parameters'] / info['parameters']:4.0%})"
                     f"{info['steps']:>7,}{info['seconds']:>13.0f} s{err:>20.3f}")
    return "\n".join(lines)


def drift_summary(steps: Sequence[int], rp: Mapping[str, Sequence], fractions: Mapping[str, Sequence[float]],
                  classes: Sequence[int]) -> str:
    """RP of each labelled pair (:func:`reprodiff.snapshots.rp_along_steps`, one
    :class:`reprodiff.metrics.Score` per step) and each model's fraction of samples classified in
    ``classes``, at the fine-tuning ``steps`` (two decimals)."""
    lines = [f"RP at steps {list(steps)}:"]
    lines += [f"  {label:31s}" + ", ".join(f"{s.value:.2f}" for s in scores) for label, scores in rp.items()]
    lines.append(f"fraction of samples in {classes[0]}-{classes[-1]} at the same steps:")
    lines += [f"  {name:31s}" + ", ".join(f"{v:.2f}" for v in values) for name, values in fractions.items()]
    return "\n".join(lines)


def rp_table(rp: Mapping[tuple[str, str], object], rows: Sequence[str], columns: Sequence[str], width: int = 17) -> str:
    """RP with its 95% interval (:meth:`reprodiff.metrics.Score.interval`, no space after the comma)
    for each (row, column) pair of ``rp``; ``-`` where a model meets itself."""
    lines = [f"{'RP':11s}" + "".join(f"{b:>{width}s}" for b in columns)]
    lines += [f"{a:11s}" + "".join(f"{'-' if a == b else rp[(a, b)].interval().replace(', ', ','):>{width}s}"
                                   for b in columns) for a in rows]
    return "\n".join(lines)


def split_by_base(samples: Mapping[str, object], base: object, mask: torch.Tensor, descriptor, threshold: float,
                  what: str = "a 5-9") -> str:
    """RP to the ``base`` samples (fraction of seeds above ``threshold``, with the median similarity
    in brackets) of each of ``samples``, separately on the seeds where ``mask`` (``(B,)`` bool, in
    seed order, e.g. the base drew a target digit) holds and where it does not."""
    from .metrics import paired_similarity, survival

    lines = [f"RP to base (median similarity): on the {int(mask.sum())} seeds where the base drew {what} | "
             f"on the other {int((~mask).sum())}"]
    for name, s in samples.items():
        sims = paired_similarity(s, base, descriptor)
        kept, moved = sims[mask], sims[~mask]
        lines.append(f"  {name:9s} {float(survival(kept, [threshold])):.2f} ({kept.median():.2f})"
                     f"{float(survival(moved, [threshold])):>17.2f} ({moved.median():.2f})")
    return "\n".join(lines)


def lora_table(models: Mapping[str, torch.nn.Module], rp: Mapping[tuple[str, str], object],
               in_target: Mapping[str, float], names: Sequence[str], references: Sequence[str],
               what: str = "5-9") -> str:
    """One row per model of ``names`` (e.g. the LoRA ranks): trainable weights, RP with its 95% interval
    to each of ``references`` (``rp[(name, reference)]``), and the fraction of its samples
    classified in the target classes (``in_target[name]``)."""
    lines = [f"{'':10s}{'trainable':>10s}" + "".join(f"{'RP to ' + b:>18s}" for b in references)
             + f"{'in ' + what:>8s}"]
    lines += [f"{name:10s}{models[name].info['trainable_parameters']:>10,}"
              + "".join(f"{rp[(name, b)].interval().replace(', ', ','):>18s}" for b in references)
              + f"{in_target[name]:>8.2f}" for name in names]
    return "\n".join(lines)
