"""Models along their training (reprodiff.snapshots): sampling saved snapshots, RP along the steps, and
the memorization-onset report with its figure (chapters 5 and 8)."""

from dataclasses import replace

import matplotlib
import pytest
import torch

from reprodiff.agreement import TrainingTimeStudy
from reprodiff.metrics import Score
from reprodiff.plots import onset_figure
from reprodiff.sampling import Samples, generate
from reprodiff.snapshots import onset_report, rp_along_steps, sample_at_steps, slope_range
from reprodiff.training import TrainConfig, load_model, train

matplotlib.use("Agg")

CFG = TrainConfig(backbone="unet-xs", steps=6, batch_size=8, n_train=32, holdout=16, snapshots=(2, 4))
SHAPE = (1, 8, 8)


def _sc(v: float) -> Score:
    return Score("GL", v, (v, v), 10, 0.9, "", "pixel")


def test_sample_at_steps_samples_each_snapshot_and_keeps_given_samples():
    train(CFG, progress=False)
    seeds = range(4)
    base = Samples(torch.zeros(4, *SHAPE), torch.arange(4), name="base")
    out = sample_at_steps(CFG, [0, 2, 4, 6], seeds, SHAPE, name="m@{step}", sampling_steps=4, given={0: base})
    assert out[0] is base and [s.name for s in out[1:]] == ["m@2", "m@4", "m@6"]
    for step, s in zip([2, 4, 6], out[1:]):
        ref = generate(load_model(CFG, step=step), seeds, SHAPE, steps=4, cache_samples=False)
        assert torch.equal(s.images, ref.images) and s.seeds.tolist() == [0, 1, 2, 3]
    assert not torch.equal(out[1].images, out[3].images)  # the snapshot is not the finished model
    with pytest.raises(ValueError, match="not at 3"):
        sample_at_steps(CFG, [3], seeds, SHAPE)


def test_rp_along_steps_pairs_step_by_step_or_with_one_reference():
    imgs = torch.rand(6, *SHAPE) * 2 - 1
    same = Samples(imgs, torch.arange(6))
    other = Samples(-imgs, torch.arange(6))
    fixed = rp_along_steps([same, other], same, "pixel", 0.99)
    assert [s.value for s in fixed] == [1.0, 0.0]
    paired = rp_along_steps([same, other], [same, other], "pixel", 0.99)
    assert [s.value for s in paired] == [1.0, 1.0]
    with pytest.raises(ValueError, match="as many steps"):
        rp_along_steps([same, other], [same], "pixel", 0.99)


def _studies():
    gl = {16: [_sc(1.0), _sc(0.0), _sc(0.0), _sc(0.0)], 32: [_sc(1.0), _sc(1.0), _sc(0.0), _sc(0.0)],
          64: [_sc(1.0), _sc(1.0), _sc(1.0), _sc(0.75)]}
    times = TrainingTimeStudy([100, 200, 300, 400], [16, 32, 64], gl, gl, {16: gl[16]})
    longer_gl = {64: [_sc(1.0), _sc(1.0), _sc(0.0), _sc(0.0)]}
    longer = TrainingTimeStudy([200, 400, 600, 800], [64], longer_gl, longer_gl, {})
    return times, longer


def test_onset_report_fits_the_line_predicts_the_censored_and_tests_the_longer_run():
    times, longer = _studies()
    r = onset_report(times, longer, batch_size=8)
    # onsets 150 and 250 at N = 16, 32: the line 50 + 6.25 N, through both exactly
    assert r.onsets == {16: 150, 32: 250, 64: None} and r.fitted == [16, 32] and r.has_fit
    assert r.a == pytest.approx(50) and r.b == pytest.approx(6.25) and r.residuals() == pytest.approx([0, 0])
    assert r.censored == [64] and r.predict(64) == pytest.approx(450) and r.tested == {64: 500}
    assert r.summary().splitlines() == [
        "N=16: memorization onset (GL falls to 0.5) at step ~150",
        "N=32: memorization onset (GL falls to 0.5) at step ~250",
        "N=64: memorization onset (GL falls to 0.5) not within 400 steps",
        "linear fit through N = [16, 32]: onset ~ 50 + 6.2 x N steps; residuals +0, +0",
        "  at batch 8, a slope of 6.2 steps per image is 50 passes over the training set before the onset, whatever N",
        "  the onsets lie between snapshots 100-200 (N=16), 200-300 (N=32); with each anywhere in its bracket the "
        "slope ranges 0.0-12.5 steps per image",
        "  N=64: the line puts the onset at step 450; at the last step, 400, GL is still 0.75",
        "test beyond the fit: N=64 trained 800 steps, line 450, observed 500 (+50 steps)",
        "  GL along that run: 200: 1.00, 400: 1.00, 600: 0.00, 800: 0.00"]
    assert r.brackets == {16: (100, 200), 32: (200, 300)} and r.slopes == pytest.approx((0.0, 12.5))
    assert r.headline().splitlines() == ["memorization onset ~ 50 + 6.2 x N steps (from N = [16, 32]; slope 0.0-12.5 "
                                         "within the snapshot brackets)",
                                         "onset at N=64 trained longer: line 450, observed 500"]


def test_onset_report_fits_the_second_training_seed_too():
    times, _ = _studies()
    times.gl_second = {16: [_sc(1.0), _sc(1.0), _sc(0.0), _sc(0.0)], 32: [_sc(1.0), _sc(1.0), _sc(1.0), _sc(0.0)],
                       64: [_sc(1.0)] * 4}
    r = onset_report(times, batch_size=8, second_seed=2)
    assert r.second_onsets == {16: 250, 32: 350, 64: None} and r.second_fit == (pytest.approx(150), pytest.approx(6.25),
                                                                              [16, 32])
    assert r.second_slopes == pytest.approx((0.0, 12.5))
    lines = r.summary().splitlines()
    assert "second training seed (2): onsets N=16: ~250, N=32: ~350, N=64: none by 400" in lines
    assert "  linear fit through N = [16, 32]: onset ~ 150 + 6.2 x N steps; slope range within the brackets 0.0-12.5" \
        in lines
    assert r.headline().endswith("within the snapshot brackets; seed 2: slope 6.2)")


def test_slope_range_puts_each_onset_at_the_end_of_its_bracket_that_tilts_the_line():
    # points at N = 0, 10, 20 with brackets of +-5 steps around 0, 100, 200 (slope 10): the extremes tilt the
    # outer points apart (the middle point has weight 0)
    lo, hi = slope_range([0, 10, 20], [(-5, 5), (95, 105), (195, 205)])
    assert lo == pytest.approx((195 - 5) / 20) and hi == pytest.approx((205 + 5) / 20)
    assert slope_range([16, 32], [(150, 150), (250, 250)]) == pytest.approx((6.25, 6.25))  # points: one slope
    with pytest.raises(ValueError, match="two distinct N"):
        slope_range([16, 16], [(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="one bracket per N"):
        slope_range([16, 32], [(0, 1)])
    with pytest.raises(ValueError, match="lo <= hi"):
        slope_range([16, 32], [(2, 1), (0, 1)])


def test_onset_report_without_two_onsets_has_no_line():
    times, _ = _studies()
    times = replace(times, gl={**times.gl, 32: [_sc(1.0)] * 4})
    r = onset_report(times, batch_size=8)
    assert not r.has_fit and r.fitted == [16] and r.tested == {}
    assert r.summary().splitlines()[-1] == "fewer than two N reach the onset: no fit"
    assert r.headline() == "memorization onset: fewer than two N reach it within 400 steps"


def test_onset_figure_draws_the_fitted_line_the_censored_and_the_test():
    times, longer = _studies()
    r = onset_report(times, longer, batch_size=8)
    fig = onset_figure(times, r, longer, (0, 1))
    ax = fig.axes[2]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    fit = lines["fit: 50 + 6.2 N"]
    assert fit.get_ydata()[0] == pytest.approx(50) and fit.get_ydata()[-1] == pytest.approx(50 + 6.25 * 64)
    assert list(lines["GL falls to 0.5 (fitted)"].get_ydata()) == [150, 250]
    assert list(lines["not by step 400 (onset later)"].get_xdata()) == [64]
    assert list(lines["N=64 trained 800 steps (not fitted)"].get_ydata()) == [500]
    assert len(fig.axes[0].get_lines()) == 3 + 1 + 1  # one per N, the longer run, the 0.5 line
    assert fig.axes[3].get_title() == "RP between training seeds (0, 1) on the same subset"
    matplotlib.pyplot.close(fig)
