"""Which closed-form denoiser predicts a trained network from the same noise (chapter 5's leaderboard).

* :func:`closed_form_study`: at one training set, choose every closed form's free parameters on
  calibration seeds (the smoothing of D*, the patch size at every noise level of the local
  denoisers, the weight of a local/Gaussian blend), sample them all from the comparison seeds, and
  rank them by similarity to the network's samples (:func:`reprodiff.experiments.leaderboard`), with
  another trained network as the ceiling.
* :func:`median_rows`: each board's median similarity for rows named by prefix, across N (for a
  line per closed form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from .sampling import generate

__all__ = ["ClosedFormStudy", "closed_form_study", "median_rows", "CEILING"]

#: the leaderboard row of the other training seed's network: a ceiling, shown, never ranked
CEILING = "the other training seed (network)"


@dataclass
class ClosedFormStudy:
    """One training set's leaderboard with the parameters chosen for it.

    ``board``: the :class:`reprodiff.experiments.Leaderboard`; ``smoothing``: the chosen smoothing of
    D*; ``weight``: the chosen weight of the local denoiser in the blend; ``schedules[kind]``: the
    :class:`reprodiff.experiments.PatchCalibration` of the ``"position-bound"`` (and
    ``"equivariant"``) local denoiser.
    """

    board: object
    smoothing: float
    weight: float
    schedules: dict[str, object]

    def schedule_summary(self) -> str:
        """One line per local denoiser: its patch size at each noise level, largest sigma first."""
        return "\n".join(f"N={self.board.n} {kind}: patch size along sigma = {cal.schedule[0][0]:.0f} ... "
                         f"{cal.schedule[-1][0]:.3f}: {[k for _, k in cal.schedule]}"
                         for kind, cal in self.schedules.items())

    def headline(self) -> str:
        """The closest closed form, its median similarity and margin, and the ceiling's median."""
        board = self.board
        name, margin = board.winner()
        ceiling = (f"; the other network {float(board.similarity[board.ceilings[0]].median()):.3f}"
                   if board.ceilings else "")
        return (f"N={board.n}: closest closed form {name} (median {float(board.similarity[name].median()):.3f}, "
                f"margin {margin:.3f}){ceiling}")


def closed_form_study(network: torch.nn.Module, train_images: torch.Tensor, n: int, seeds: Sequence[int] | range,
                      calibration_seeds: Sequence[int] | range, shape: Sequence[int], *,
                      smoothings: Sequence[float], patch_sizes: Sequence[int], blend_weights: Sequence[float],
                      equivariant: bool = False, other: torch.nn.Module | None = None, descriptor="pixel",
                      sampler: str = "heun", steps: int = 18, batch_size: int = 256) -> ClosedFormStudy:
    """Rank closed-form denoisers of ``train_images`` (``(N, C, H, W)`` in [-1, 1], the network's
    training set of size ``n``) by how close their samples from ``seeds`` are to ``network``'s.

    Candidates, in this order: D*, smoothed D* (smoothing chosen among ``smoothings`` and 0), the
    Gaussian denoiser, the position-bound local denoiser with a patch size per noise level (chosen
    among ``patch_sizes`` along the network's trajectories), with ``equivariant`` also the
    equivariant one and a fixed 3x3 equivariant one, and a blend ``w local + (1 - w) Gaussian``
    (``w`` chosen among ``blend_weights``). All choices use ``calibration_seeds``, which the
    comparison does not. ``other`` (another training seed's network), when given, is the ceiling row.
    """
    from .denoisers import BlendedDenoiser, GaussianDenoiser, LocalDenoiser, OptimalDenoiser, SmoothedOptimalDenoiser
    from .experiments import calibrate_patch_sizes, choose_smoothing, closest_denoiser, leaderboard

    kw = dict(sampler=sampler, steps=steps, batch_size=batch_size)
    mine = generate(network, seeds, shape, **kw)
    calib_net = generate(network, calibration_seeds, shape, **kw)
    smooth, _ = choose_smoothing(calib_net, train_images, smoothings, descriptor=descriptor, **kw)
    cands = {"D*": OptimalDenoiser(train_images),
             f"smoothed D* (s = {smooth:g})": SmoothedOptimalDenoiser(train_images, smooth),
             "Gaussian denoiser": GaussianDenoiser.from_data(train_images)}
    schedules = {}
    for eq in ((False, True) if equivariant else (False,)):
        cal = calibrate_patch_sizes(network, train_images, calibration_seeds, shape, patch_sizes, equivariant=eq,
                                    steps=steps)
        kind = "equivariant" if eq else "position-bound"
        schedules[kind] = cal
        cands[f"local, {kind}, k(sigma)"] = LocalDenoiser(train_images, cal.schedule, equivariant=eq)
        if eq:
            cands["local, equivariant, 3x3 fixed"] = LocalDenoiser(train_images, 3, equivariant=True)
    local, gauss = cands["local, position-bound, k(sigma)"], cands["Gaussian denoiser"]
    weight, _ = closest_denoiser(calib_net, {w: BlendedDenoiser(local, gauss, w) for w in blend_weights},
                                 descriptor=descriptor, **kw)
    cands[f"blend: {weight:g} local + {1 - weight:g} Gaussian"] = BlendedDenoiser(local, gauss, weight)
    samples = {k: generate(d, seeds, shape, **kw) for k, d in cands.items()}
    if other is not None:
        samples[CEILING] = generate(other, seeds, shape, **kw)
    board = leaderboard(mine, samples, n, descriptor=descriptor, ceilings=(CEILING,) if other is not None else ())
    return ClosedFormStudy(board, smooth, weight, schedules)


def median_rows(boards: Mapping[int, object], prefixes: Mapping[str, str]) -> dict[str, list[float]]:
    """``{label: [median similarity at each board's N]}`` for the first row of each board whose name
    starts with ``prefixes[label]`` (names carry chosen parameters, e.g. the blend's weight); ``nan``
    where a board has no such row."""
    return {label: [next((float(v.median()) for k, v in board.similarity.items() if k.startswith(prefix)),
                         float("nan")) for board in boards.values()]
            for label, prefix in prefixes.items()}
