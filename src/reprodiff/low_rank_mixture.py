"""Trained models against the closed forms of a mixture of low-rank Gaussians (chapter 4).

On MoLRG data the exact denoiser of the distribution is known, so a model can be placed between
memorizing (D* of its training set), learning the distribution (the true denoiser) and learning only
its Gaussian approximation (the Gaussian denoiser). :func:`mixture_references` builds the three per
N for :func:`reprodiff.regimes.reference_study`; :func:`subspace_energies` and
:func:`mixture_summary` report how close each model's samples are to each reference's, and whether
they lie on the mixture (inside one component's subspace).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .metrics import paired_similarity

__all__ = ["mixture_references", "subspace_energies", "mixture_summary"]


def mixture_references(train_sets: Mapping[int, torch.Tensor], true: torch.nn.Module) -> dict[str, dict]:
    """``{"D*": {N: D* of train_sets[N]}, "true": {N: true}, "Gaussian": {N: Gaussian denoiser of
    train_sets[N]}}``: the references of a MoLRG sweep (``true``: the mixture's exact denoiser,
    :meth:`reprodiff.data.MoLRG.denoiser`, shared by every N)."""
    from .denoisers import GaussianDenoiser, OptimalDenoiser

    return {"D*": {n: OptimalDenoiser(x) for n, x in train_sets.items()}, "true": {n: true for n in train_sets},
            "Gaussian": {n: GaussianDenoiser.from_data(x) for n, x in train_sets.items()}}


def subspace_energies(mixture, sweep, study, references: Sequence[str] = ("D*", "Gaussian", "true")
                      ) -> dict[str, list[float]]:
    """Median :meth:`reprodiff.data.MoLRG.subspace_energy` (1 for every sample of the mixture) of each
    model's samples in ``sweep`` and of each reference's in ``study``, one value per N."""
    def median(samples):
        return float(mixture.subspace_energy(samples.images).median())

    energy = {size: [median(sweep.samples[(size, n)]) for n in sweep.n_train] for size in sweep.sizes}
    energy.update({ref: [median(study.samples[(ref, n)]) for n in sweep.n_train] for ref in references})
    return energy


def mixture_summary(sweep, study, energy: Mapping[str, Sequence[float]], size: str | None = None) -> str:
    """Threshold-free lines, by N: the median similarity of model ``size``'s samples (default: the
    sweep's last size) to each reference's, of D*'s and the Gaussian denoiser's to the true
    denoiser's, and the subspace energies ``energy`` (:func:`subspace_energies`)."""
    size = size or sweep.sizes[-1]
    ns = ", ".join(map(str, sweep.n_train))
    lines = ["median similarity of the larger model's samples to each reference, by N:"]
    for ref in ("D*", "true", "Gaussian"):
        meds = [float(sc.similarities.median()) for sc in study.rp[ref][size]]
        lines.append(f"  {ref:9s}" + "".join(f"{m:7.2f}" for m in meds) + f"   (N = {ns})")
    lines.append("and of the analytic references to the true denoiser's samples:")
    for ref in ("D*", "Gaussian"):
        meds = [float(paired_similarity(study.samples[(ref, n)], study.samples[("true", n)]).median())
                for n in sweep.n_train]
        lines.append(f"  {ref:9s}" + "".join(f"{m:7.2f}" for m in meds))
    lines.append("energy inside one component's subspace (median; 1 for every sample of the mixture), by N:")
    lines += [f"  {name:16s}" + "".join(f"{v:7.2f}" for v in values) for name, values in energy.items()]
    return "\n".join(lines)
