"""reprodiff.low_rank_mixture: trained models against the closed forms of a MoLRG (chapter 4)."""

from types import SimpleNamespace

import pytest
import torch

from reprodiff.data import MoLRG
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.low_rank_mixture import mixture_references, mixture_summary, subspace_energies
from reprodiff.metrics import Score
from reprodiff.sampling import Samples


def test_mixture_references_are_d_star_gaussian_and_one_shared_true_denoiser():
    mixture = MoLRG(num_classes=2, dim=2, seed=0)
    sets = {8: mixture.sample(8).images, 32: mixture.sample(32, seed=1).images}
    true = mixture.denoiser()
    refs = mixture_references(sets, true)
    assert list(refs) == ["D*", "true", "Gaussian"] and all(list(r) == [8, 32] for r in refs.values())
    assert refs["true"][8] is true and refs["true"][32] is true
    assert isinstance(refs["D*"][8], OptimalDenoiser) and isinstance(refs["Gaussian"][32], GaussianDenoiser)
    x, sigma = torch.randn(3, 1, 8, 8), torch.full((3,), 0.01)
    # D* of a set returns its nearest training image at small sigma
    assert torch.allclose(refs["D*"][8](sets[8][:3], sigma), sets[8][:3], atol=1e-3)
    assert not torch.allclose(refs["D*"][8](x, sigma), refs["D*"][32](x, sigma))


def test_subspace_energies_and_summary():
    mixture = MoLRG(num_classes=2, dim=2, seed=0)
    on = Samples(mixture.sample(4).images, torch.arange(4))  # on the mixture: energy 1
    off = Samples(torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.arange(4))
    sweep = SimpleNamespace(sizes=["small (1k)", "large (2k)"], n_train=[8, 32],
                            samples={(s, n): on if s.startswith("large") else off for s in ("small (1k)", "large (2k)")
                                     for n in (8, 32)})

    def sc(values):
        return Score("RP", 0.5, (0.4, 0.6), 4, 0.9, "", "pixel", similarities=torch.tensor(values))

    study = SimpleNamespace(samples={(r, n): on if r != "Gaussian" else off for r in ("D*", "true", "Gaussian")
                                     for n in (8, 32)},
                            rp={r: {"large (2k)": [sc([0.1, 0.2, 0.3]), sc([0.7, 0.8, 0.9])]}
                                for r in ("D*", "true", "Gaussian")})
    energy = subspace_energies(mixture, sweep, study)
    assert list(energy) == ["small (1k)", "large (2k)", "D*", "Gaussian", "true"]
    assert energy["large (2k)"] == pytest.approx([1.0, 1.0]) and energy["true"] == pytest.approx([1.0, 1.0])
    assert all(v < 0.9 for v in energy["small (1k)"] + energy["Gaussian"])  # noise spreads over every subspace
    lines = mixture_summary(sweep, study, energy).splitlines()
    assert lines[1] == "  D*          0.20   0.80   (N = 8, 32)"
    assert lines[4] == "and of the analytic references to the true denoiser's samples:"
    assert lines[5] == "  D*          1.00   1.00" and float(lines[6].split()[1]) < 1.0
    assert lines[8].split() == ["small", "(1k)", *(f"{v:.2f}" for v in energy["small (1k)"])] and len(lines) == 13
