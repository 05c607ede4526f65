"""reprodiff.shared_data: two networks on shared or disjoint training data (chapter 5), and its figure."""

import matplotlib
import pytest

from reprodiff.configs import get_config
from reprodiff.denoisers import OptimalDenoiser
from reprodiff.metrics import SameImageRule
from reprodiff.plots import pair_figure
from reprodiff.shared_data import PAIR_KINDS, pair_study
from reprodiff.training import training_data

matplotlib.use("Agg")


def test_pair_study_scores_shared_and_disjoint_pairs_and_gl():
    cfg = get_config("agreement", "cpu")
    ns = cfg.pair_n[:2]
    # D* of each training set: the two seeds on one subset are the same closed form (RP 1), the
    # disjoint subset's D* returns other digits (RP near 0), and every D* sample is a copy (GL 0)
    models = {f"N={n} {k}": OptimalDenoiser(training_data(c)[0].images)
              for n in ns for k, c in cfg.pair_configs(n).items()}
    rule = SameImageRule(0.95, "a test threshold", "pixel")
    study = pair_study(models, ns, cfg.pair_configs, range(12), (1, 8, 8), rule, steps=6)
    assert [s.value for s in study.shared] == [1.0, 1.0]
    assert all(s.value < 0.5 for s in study.disjoint)
    assert set(study.gl) == {(n, k) for n in ns for k in PAIR_KINDS}
    assert all(s.value == 0.0 for s in study.gl.values())
    lines = study.table().splitlines()
    assert len(lines) == 1 + len(ns) and lines[0].split()[:3] == ["N", "RP", "same"]
    assert lines[1].split()[:2] == [str(ns[0]), "1.00"] and study.shared[0].interval() in lines[1]
    fig = pair_figure(study, rule.threshold, title="two D*")
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["same training data", "disjoint training data"]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [1.0, 1.0] and fig.axes[0].get_title() == "two D*"
    assert len(fig.axes[1].get_lines()) >= 4  # same and disjoint at the smallest and the largest N
    matplotlib.pyplot.close(fig)
    with pytest.raises(KeyError):
        pair_study({}, ns, cfg.pair_configs, range(4), (1, 8, 8), rule, steps=6)
