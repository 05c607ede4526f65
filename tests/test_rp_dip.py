"""reprodiff.rp_dip: where the RP dip across the transition comes from (chapter 5), and its figure."""

from types import SimpleNamespace

import matplotlib
import pytest
import torch

from reprodiff.experiments import TrainingTimeStudy
from reprodiff.metrics import SameImageRule, Score
from reprodiff.plots import dip_figure
from reprodiff.rp_dip import dip_study
from reprodiff.sampling import Samples

matplotlib.use("Agg")


def _sc(v: float) -> Score:
    return Score("X", v, (v - 0.1, v + 0.1), 10, 0.9, "", "pixel")


def test_dip_study_takes_the_nearest_snapshot_and_pairs_it_with_the_wide_model():
    seeds = range(5)
    imgs = torch.rand(5, 1, 8, 8) * 2 - 1
    wide_samples = {("B (2M)", n): Samples(imgs, torch.arange(5)) for n in (16, 32, 64)}
    crossings = {"A (1M)": 40.0, "B (2M)": None}
    sweep = SimpleNamespace(sizes=["A (1M)", "B (2M)"], n_train=[16, 32, 64], samples=wide_samples,
                            rp={"A vs B": [_sc(0.6), _sc(0.3), _sc(0.4)]},
                            gl_crossing=lambda size, level: crossings[size])
    # the snapshot at step 200 copies the wide model at N = 16 and draws its negative at N = 32
    snap = {(16, 200): Samples(imgs, torch.arange(5)), (32, 200): Samples(-imgs, torch.arange(5))}
    snap.update({(n, k): Samples(imgs, torch.arange(5)) for n in (16, 32) for k in (100, 300)})
    gl = {16: [_sc(1.0), _sc(0.0), _sc(0.0)], 32: [_sc(1.0), _sc(1.0), _sc(0.0)]}
    times = TrainingTimeStudy([100, 200, 300], [16, 32], gl, gl, {}, snap)
    dip = dip_study(sweep, times, seeds, SameImageRule(0.99, "test", "pixel"), at_step=190,
                    short={"A (1M)": "A", "B (2M)": "B"})
    assert dip.early == 200 and dip.n_train == [16, 32] and dip.pair == "A vs B"
    assert [s.value for s in dip.rp_early] == [1.0, 0.0] and [s.value for s in dip.rp_end] == [0.6, 0.3]
    # the early GL at N = 16, 32 is 0 and 1: it crosses 0.5 half-way between them in log N
    assert dip.crossings == {"A (end)": 40.0, "A (step 200)": pytest.approx(2 ** 4.5), "B (end)": None}
    assert dip.summary().splitlines() == ["GL crosses 0.5: A (end) at N ~ 40", "GL crosses 0.5: A (step 200) at N ~ 23",
                                          "GL crosses 0.5: B (end) not within N <= 32"]
    assert dip.rp_summary().splitlines() == ["RP A vs B: N=16: 0.60, N=32: 0.30",
                                             "RP A step 200 vs B: N=16: 1.00, N=32: 0.00"]
    curves = dip.curves()
    assert list(curves) == ["A vs B (both at the end)", "A at step 200 vs B"]
    assert curves["A vs B (both at the end)"][1] == pytest.approx([0.5, 0.2])
    fig = dip_figure(dip)
    assert sorted(ln.get_xdata()[0] for ln in fig.axes[0].get_lines() if ln.get_label().startswith("GL = 0.5")) \
        == [pytest.approx(2 ** 4.5), 40.0]
    matplotlib.pyplot.close(fig)
