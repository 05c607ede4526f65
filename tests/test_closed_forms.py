"""reprodiff.closed_forms: which closed-form denoiser predicts a network from the same noise (chapter 5)."""

import pytest
import torch

from reprodiff.closed_forms import CEILING, closed_form_study, median_rows
from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser
from reprodiff.experiments import Leaderboard


def test_closed_form_study_ranks_the_network_s_own_closed_form_first():
    train = load_dataset("digits").images[:40]
    gauss = GaussianDenoiser.from_data(train)
    # the "network" is the Gaussian denoiser itself: it wins, the blend picks weight 0 (all Gaussian),
    # and another copy of it as the ceiling agrees on every seed
    study = closed_form_study(gauss, train, 40, range(6), range(100, 103), (1, 8, 8), smoothings=(1.0,),
                              patch_sizes=(1, 3), blend_weights=(1.0, 0.0), equivariant=True, other=gauss, steps=4)
    board = study.board
    assert study.weight == 0.0 and set(study.schedules) == {"position-bound", "equivariant"}
    assert list(board.similarity)[:3] == ["D*", f"smoothed D* (s = {study.smoothing:g})", "Gaussian denoiser"]
    assert {"local, position-bound, k(sigma)", "local, equivariant, k(sigma)", "local, equivariant, 3x3 fixed",
            "blend: 0 local + 1 Gaussian", CEILING} <= set(board.similarity)
    assert board.ceilings == (CEILING,) and float(board.similarity[CEILING].median()) == pytest.approx(1.0)
    name, margin = board.winner()
    assert name in ("Gaussian denoiser", "blend: 0 local + 1 Gaussian") and margin == pytest.approx(0.0, abs=1e-6)
    assert study.headline().startswith(f"N=40: closest closed form {name} (median 1.000, margin ")
    assert study.headline().endswith("; the other network 1.000")
    lines = study.schedule_summary().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["N=40 position-bound", "N=40 equivariant"]
    assert all(ln.endswith(str([k for _, k in cal.schedule])) for ln, cal in zip(lines, study.schedules.values()))


def test_median_rows_match_rows_by_prefix_and_mark_missing_ones():
    boards = {16: Leaderboard(16, {"D*": torch.tensor([0.2, 0.4, 0.6]), "blend: 0.5 local": torch.tensor([0.9])}, {}),
              64: Leaderboard(64, {"D*": torch.tensor([0.1, 0.3])}, {})}
    rows = median_rows(boards, {"D*": "D*", "blend": "blend:"})
    assert rows["D*"] == pytest.approx([0.4, 0.1])  # torch's median of an even count is the lower middle
    assert rows["blend"][0] == pytest.approx(0.9) and rows["blend"][1] != rows["blend"][1]  # nan
