"""Chapter 5's machinery: the closed-form local and smoothed denoisers, disjoint training subsets and
the shared/disjoint pair study, the patch-size calibration, the leaderboard and the closed-form study,
the training-time study and the RP dip across the transition."""

from dataclasses import replace
from types import SimpleNamespace

import matplotlib
import pytest
import torch

from reprodiff.agreement import (CEILING, PAIR_KINDS, Leaderboard, PairStudy, TrainingTimeStudy, calibrate_patch_sizes,
                                 choose_smoothing, closed_form_study, closest_denoiser, dip_study, leaderboard,
                                 longer_vs_wide, median_rows, pair_study,
                                 quality_along_training)
from reprodiff.configs import AgreementConfig, SizeLabel
from reprodiff.data import load_dataset, subset
from reprodiff.denoisers import (BlendedDenoiser, GaussianDenoiser, LocalDenoiser, OptimalDenoiser,
                                 SmoothedOptimalDenoiser)
from reprodiff.metrics import SameImageRule, Score, Scores, bootstrap_ci
from reprodiff.plots import dip_figure, pair_figure
from reprodiff.profiles import get_config
from reprodiff.sampling import Samples, generate
from reprodiff.training import TrainConfig, training_data

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").images


def _naive_local(train, x, sigma, k, equivariant):
    """Pixel by pixel, straight from the definition (zero padding)."""
    r = k // 2
    pad = lambda t: torch.nn.functional.pad(t, (r, r, r, r))  # noqa: E731
    xp, yp = pad(x.double()), pad(train.double())
    b, c, h, w = x.shape
    out = torch.empty(b, c, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            q = xp[:, :, i:i + k, j:j + k].reshape(b, -1)
            spots = [(u, v) for u in range(h) for v in range(w)] if equivariant else [(i, j)]
            pool = torch.cat([yp[:, :, u:u + k, v:v + k].reshape(len(train), -1) for u, v in spots])
            centre = torch.cat([train[:, :, u, v].double() for u, v in spots])
            wts = torch.softmax(-((q[:, None] - pool[None]) ** 2).sum(-1) / (2 * sigma**2), dim=1)
            out[:, :, i, j] = wts @ centre
    return out


@pytest.mark.parametrize("equivariant", [False, True])
def test_local_denoiser_matches_its_definition(digits, equivariant):
    train, x = digits[:6], torch.randn(3, 1, 8, 8)
    for sigma in (0.3, 2.0):
        fast = LocalDenoiser(train, 3, equivariant=equivariant, dtype=torch.float64, chunk_size=50)(x, sigma)
        assert torch.allclose(fast.double(), _naive_local(train, x, sigma, 3, equivariant), atol=1e-6)


def test_a_local_denoiser_whose_patch_covers_the_image_is_the_optimal_denoiser(digits):
    train, x = digits[:200], 2 * torch.randn(5, 1, 8, 8)
    for sigma in (0.05, 0.5, 5.0):
        local = LocalDenoiser(train, 15, equivariant=False, dtype=torch.float64)(x, sigma)
        assert torch.allclose(local, OptimalDenoiser(train)(x, sigma), atol=1e-6)


def test_local_denoiser_schedule_shape_determinism_and_bad_sizes(digits):
    den = LocalDenoiser(digits[:50], ((10.0, 7), (1.0, 3), (0.1, 1)))
    assert [den.size_at(s) for s in (80.0, 2.0, 0.002)] == [7, 3, 1]
    x = torch.randn(4, 1, 8, 8)
    out = den(x, torch.tensor([5.0, 5.0, 0.01, 0.01]))  # rows at different noise levels use different sizes
    assert out.shape == x.shape and torch.equal(out, den(x, torch.tensor([5.0, 5.0, 0.01, 0.01])))
    assert torch.equal(out[:2], den(x[:2], 5.0)) and torch.equal(out[2:], den(x[2:], 0.01))
    for bad in (4, 0, ((1.0, 2),), ()):
        with pytest.raises(ValueError, match="patch"):
            LocalDenoiser(digits[:5], bad)
    with pytest.raises(ValueError, match="shaped"):
        den(torch.randn(1, 3, 8, 8), 1.0)


def test_smoothed_optimal_denoiser_is_dstar_without_smoothing_and_deterministic(digits):
    train, x = digits[:100], torch.randn(6, 1, 8, 8)
    for sigma in (0.1, 1.0):
        assert torch.allclose(SmoothedOptimalDenoiser(train, 0.0)(x, sigma), OptimalDenoiser(train)(x, sigma))
    a, b = SmoothedOptimalDenoiser(train, 0.5, n_draws=8), SmoothedOptimalDenoiser(train, 0.5, n_draws=8)
    assert a(x, 0.3).shape == x.shape and torch.equal(a(x, 0.3), b(x, 0.3))
    assert not torch.allclose(a(x, 0.3), OptimalDenoiser(train)(x, 0.3))
    with pytest.raises(ValueError, match="smoothing"):
        SmoothedOptimalDenoiser(train, -1.0)


def test_disjoint_subsets_do_not_overlap_and_keep_old_names(digits):
    data = load_dataset("digits")
    a, b = subset(data, 100), subset(data, 100, offset=100)
    rows = lambda d: {tuple(r.tolist()) for r in d.images.flatten(1)}  # noqa: E731
    assert not rows(a) & rows(b) and rows(subset(data, 200)) == rows(a) | rows(b)
    with pytest.raises(ValueError, match="after the first 1700"):
        subset(data, 200, offset=1700)
    base = TrainConfig(dataset="digits", n_train=100, holdout=297)
    assert "subset_offset" not in base.hashed_fields()  # models cached before the field keep their names
    moved = replace(base, subset_offset=100)
    assert moved.hash != base.hash and "+100" in moved.name
    assert not rows(training_data(base)[0]) & rows(training_data(moved)[0])
    with pytest.raises(ValueError, match="subset_offset"):
        TrainConfig(subset_offset=-1, n_train=5)


def test_agreement_config_pairs_share_or_split_the_data():
    cfg = get_config("agreement", "cpu")
    assert isinstance(cfg, AgreementConfig)
    for n in cfg.pair_n:
        pair = cfg.pair_configs(n)
        assert pair["shared a"].n_train == pair["shared b"].n_train == n
        assert pair["shared a"].seed != pair["shared b"].seed
        assert pair["disjoint b"] == replace(pair["shared b"], subset_offset=n)
    sweep_models = set(cfg.sweep.model_configs().values()) | set(cfg.sweep.replicate_configs().values())
    assert cfg.models["N=16 shared a"] in sweep_models and cfg.models["N=16 shared b"] in sweep_models
    # chapter 1's shared model keeps its hash: the largest N has no snapshots
    assert cfg.sweep.model_configs()[(cfg.size, max(cfg.sweep.n_train))].snapshots == ()
    assert cfg.sweep.model_configs()[(cfg.size, 16)].snapshots == cfg.sweep.snapshots
    with pytest.raises(ValueError, match="leaderboard N"):
        replace(cfg, leaderboard_n=(17,))
    # the onset models extend the sweep: its own N keep chapter 3's models, the new N get snapshots
    assert set(cfg.pair_models) | set(cfg.onset_models) | set(cfg.extended_models) == set(cfg.models)
    onset = cfg.onset_sweep
    assert onset.model_configs()[(cfg.size, 16)] == cfg.sweep.model_configs()[(cfg.size, 16)]
    for n in cfg.onset_n:
        m = cfg.onset_models[f"N={n} onset"]
        assert m.n_train == n and m.snapshots == cfg.sweep.snapshots and m.steps == cfg.sweep.base.steps
        # and the second pair seed at the same N, same recipe, for the onset line's second seed
        m2 = cfg.onset_models[f"N={n} onset seed {cfg.pair_seeds[1]}"]
        assert replace(m2, seed=m.seed) == m and m2.seed == cfg.pair_seeds[1]
        assert (n, cfg.size, cfg.pair_seeds[1]) in onset.replicates
    with pytest.raises(ValueError, match="onset N"):
        replace(cfg, onset_n=(max(cfg.sweep.n_train),))
    # the extended run: the sweep's model at that N with more steps and later snapshots
    for n in cfg.extend_n:
        m = cfg.extended_models[f"N={n}, {cfg.extend_steps} steps"]
        short = cfg.sweep.model_configs()[(cfg.size, n)]
        assert replace(m, steps=short.steps, snapshots=short.snapshots) == short
        assert set(short.snapshots) < set(m.snapshots) and max(m.snapshots) < m.steps == cfg.extend_steps
    with pytest.raises(ValueError, match="extend_n"):
        replace(cfg, extend_n=(16,), extend_steps=cfg.sweep.base.steps)
    for profile in ("gpu", "smoke", "paper"):
        assert get_config("agreement", profile).models  # every profile builds its pairs


def test_calibration_finds_the_patch_size_of_a_local_network(digits):
    train = digits[:20]
    net = LocalDenoiser(train, 3, dtype=torch.float64)
    cal = calibrate_patch_sizes(net, train, range(100, 104), (1, 8, 8), (1, 3, 5), steps=6)
    assert len(cal.schedule) == 6 and all(k in (1, 3, 5) for _, k in cal.schedule)
    low = [k for s, k in cal.schedule if s < 2]  # where the sizes differ, the right one wins
    assert low and set(low) == {3}
    assert "best" in cal.table()


def test_leaderboard_ranks_closed_forms_and_keeps_ceilings_out(digits):
    train = digits[:30]
    net = generate(LocalDenoiser(train, 3), range(16), (1, 8, 8), steps=6)
    cands = {"copy": Samples(net.images.clone(), net.seeds), "D*": generate(OptimalDenoiser(train), range(16),
                                                                             (1, 8, 8), steps=6),
             "mean": Samples(train.mean(0, keepdim=True).expand(16, -1, -1, -1), net.seeds)}
    lb = leaderboard(net, cands, 30, ceilings=("copy",))
    assert lb.r2["copy"] == 1.0 and float(lb.similarity["copy"].min()) > 0.999
    assert lb.ranking() == sorted(["D*", "mean"], key=lambda k: -float(lb.similarity[k].median()))
    name, margin = lb.winner()
    assert name == lb.ranking()[0] and margin >= 0
    lo, hi = lb.margin_interval()
    assert lo <= margin <= hi
    # a clear winner is named with its interval; the same rows with the runner-up copied are a tie
    assert lo > 0 and lb.verdict().startswith(f"closest closed form {name} (median ")  # D* vs the mean image
    tied = leaderboard(net, {**cands, "twin": Samples(cands[name].images.clone(), net.seeds)}, 30, ceilings=("copy",))
    assert tied.margin_interval() == (0.0, 0.0) and tied.verdict().startswith("closest closed forms tied: ")
    assert lb.table().splitlines()[2].strip().startswith("copy")
    best, medians = choose_smoothing(net, train, (0.5,), steps=6)
    assert set(medians) == {0.0, 0.5} and best in medians


def test_training_time_onset_interpolates_and_fits_a_line():
    def sc(v):
        return Score("GL", v, (v, v), 10, 0.9, "", "pixel")

    study = TrainingTimeStudy([100, 200, 300, 400], [16, 32, 64],
                              {16: [sc(1.0), sc(0.0), sc(0.0), sc(0.0)], 32: [sc(1.0), sc(1.0), sc(0.0), sc(0.0)],
                               64: [sc(1.0)] * 4}, {}, {})
    assert study.onset(16) == 150 and study.onset(32) == 250 and study.onset(64) is None
    a, b, used = study.onset_fit()
    assert used == [16, 32] and b == pytest.approx(100 / 16) and a == pytest.approx(50)
    assert study.bracket(16) == (100, 200) and study.bracket(32) == (200, 300) and study.bracket(64) is None
    early = TrainingTimeStudy([100, 200], [8], {8: [sc(0.2), sc(0.0)]}, {}, {})
    assert early.onset(8) == 100 and early.bracket(8) == (0, 100)  # copying from the first snapshot on
    # a second training seed: its own GL, onsets and line; no second seed at N = 64
    study.gl_second = {16: [sc(1.0), sc(1.0), sc(0.0), sc(0.0)], 32: [sc(1.0), sc(1.0), sc(1.0), sc(0.0)]}
    assert study.onset(16, second=True) == 250 and study.bracket(32, second=True) == (300, 400)
    a2, b2, used2 = study.onset_fit(second=True)
    assert used2 == [16, 32] and b2 == pytest.approx(100 / 16) and a2 == pytest.approx(150)
    with pytest.raises(ValueError, match="no second training seed at N=64"):
        study.onset(64, second=True)


def test_bootstrap_median_interval():
    values = torch.cat([torch.zeros(30), torch.ones(70)])
    assert bootstrap_ci(values, statistic="median") == (1.0, 1.0)  # the mean's interval would not be a point
    lo, hi = bootstrap_ci(torch.arange(101.0), statistic="median")
    assert lo < 50 < hi
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci(values, statistic="mode")


def test_blend_is_a_convex_combination_and_closest_denoiser_picks_the_reference(digits):
    train = digits[:40]
    d_star, gauss = OptimalDenoiser(train), GaussianDenoiser.from_data(train)
    x, sigma = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.1, 1.0, 5.0])
    a, b = d_star(x, sigma), gauss(x, sigma)
    assert torch.equal(BlendedDenoiser(d_star, gauss, 1.0)(x, sigma), a)
    assert torch.equal(BlendedDenoiser(d_star, gauss, 0.0)(x, sigma), b)
    assert torch.allclose(BlendedDenoiser(d_star, gauss, 0.25)(x, sigma), 0.25 * a + 0.75 * b)
    with pytest.raises(ValueError, match="weight"):
        BlendedDenoiser(d_star, gauss, 1.5)
    reference = generate(gauss, range(6), (1, 8, 8), steps=6)
    best, medians = closest_denoiser(reference, {w: BlendedDenoiser(d_star, gauss, w) for w in (1.0, 0.5, 0.0)},
                                     steps=6)
    assert best == 0.0 and medians[0.0] == pytest.approx(1.0) and set(medians) == {1.0, 0.5, 0.0}


# ----------------------------------------------------------------------------- shared or disjoint training data


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
    assert len(lines) == 2 * (1 + len(ns)) and lines[0].split()[:3] == ["N", "RP", "same"]
    assert lines[1].split()[:2] == [str(ns[0]), "1.00"] and study.shared[0].interval() in lines[1]
    # the threshold-free half: identical closed forms have median similarity 1 with a [1, 1] interval
    assert lines[1 + len(ns)].split()[:3] == ["N", "median", "same"]
    assert lines[2 + len(ns)].split()[:4] == [str(ns[0]), "1.000", "[1.000,", "1.000]"]
    assert float(lines[2 + len(ns)].split()[4]) == pytest.approx(float(study.disjoint[0].similarities.median()), abs=5e-4)
    fig = pair_figure(study, rule.threshold, title="two D*")
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["same training data", "disjoint training data"]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [1.0, 1.0] and fig.axes[0].get_title() == "two D*"
    assert len(fig.axes[1].get_lines()) >= 4  # same and disjoint at the smallest and the largest N
    matplotlib.pyplot.close(fig)
    with pytest.raises(KeyError):
        pair_study({}, ns, cfg.pair_configs, range(4), (1, 8, 8), rule, steps=6)


# ----------------------------------------------------------------------------- the closed-form study


def test_closed_form_study_ranks_the_network_s_own_closed_form_first():
    train = load_dataset("digits").images[:40]
    gauss = GaussianDenoiser.from_data(train)
    # the "network" is the Gaussian denoiser itself: it wins, the blend picks weight 0 (all Gaussian),
    # and another copy of it as the ceiling agrees on every seed
    study = closed_form_study(gauss, train, 40, range(6), range(100, 103), (1, 8, 8), smoothings=(1.0,),
                              patch_sizes=(1, 3), blend_weights=(1.0, 0.0), equivariant=True, fixed_patch=True,
                              other=gauss, steps=4)
    board = study.board
    assert study.weight == 0.0 and set(study.schedules) == {"position-bound", "equivariant"}
    assert list(board.similarity)[:3] == ["D*", f"smoothed D* (s = {study.smoothing:g})", "Gaussian denoiser"]
    assert {"local, position-bound, k(sigma)", "local, equivariant, k(sigma)", "local, equivariant, 3x3 fixed",
            "blend: 0 local + 1 Gaussian", CEILING} <= set(board.similarity)
    assert board.ceilings == (CEILING,) and float(board.similarity[CEILING].median()) == pytest.approx(1.0)
    name, margin = board.winner()
    assert name in ("Gaussian denoiser", "blend: 0 local + 1 Gaussian") and margin == pytest.approx(0.0, abs=1e-6)
    assert study.headline().startswith("N=40: closest closed forms tied: ")  # the blend at weight 0 is the Gaussian
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


# ----------------------------------------------------------------------------- the RP dip across the transition


def _dip_sc(v: float) -> Score:
    return Score("X", v, (v - 0.1, v + 0.1), 10, 0.9, "", "pixel")


def test_dip_study_reports_every_n_each_widths_gl_and_whether_gl_settled():
    small, wide = SizeLabel("A", "1M"), SizeLabel("B", "2M")
    crossings = {small: 40.0, wide: None}
    rule = SameImageRule(0.99, "test", "pixel", interval=(0.985, 0.995))
    # RP scores with real similarities: N = 32 draws 4 of 10 pairs above every threshold of the interval
    sims = {16: torch.tensor([0.999] * 8 + [0.5] * 2), 32: torch.tensor([0.999] * 4 + [0.5] * 6),
            64: torch.tensor([0.999] * 4 + [0.5] * 6), 128: torch.tensor([0.999] * 3 + [0.992] * 2 + [0.5] * 5)}
    rp = [Score("RP", float((v > 0.99).double().mean()), (0.0, 1.0), 10, 0.99, "test", "pixel", similarities=v)
          for v in sims.values()]
    sweep = SimpleNamespace(sizes=[small, wide], n_train=[16, 32, 64, 128], rp={"A vs B": rp}, rule=rule,
                            gl={small: [_dip_sc(0.0), _dip_sc(0.6), _dip_sc(1.0), _dip_sc(1.0)],
                                wide: [_dip_sc(0.0), _dip_sc(0.0), _dip_sc(0.2), _dip_sc(1.0)]},
                            gl_crossing=lambda size, level: crossings[size])
    gl = {16: [_dip_sc(1.0), _dip_sc(0.0), _dip_sc(0.0)], 32: [_dip_sc(1.0), _dip_sc(0.9), _dip_sc(0.6)],
          24: [_dip_sc(1.0), _dip_sc(0.5), _dip_sc(0.5)]}
    times = TrainingTimeStudy([100, 200, 300], [16, 24, 32], gl, gl, {}, {})
    dip = dip_study(sweep, times, rule)
    assert dip.n_train == [16, 32, 64, 128] and dip.pair == "A vs B"  # every N of the sweep, snapshots or not
    assert [s.value for s in dip.rp_end] == [0.8, 0.4, 0.4, 0.5]
    assert dip.settle == {16: (200, 0.0, 0.0), 32: (200, 0.9, 0.6)}  # N = 24 is not a point of the sweep
    assert dip.stable(16) is True and dip.stable(32) is False and dip.stable(64) is None
    assert dip.gl == {"A": [0.0, 0.6, 1.0, 1.0], "B": [0.0, 0.0, 0.2, 1.0]}
    assert dip.summary().splitlines() == ["GL crosses 0.5: A (end) at N ~ 40", "GL crosses 0.5: B (end) not within N <= 128"]
    rows = dip.table(rule).splitlines()
    assert rows[1].split()[-4:] == ["0.00", "->", "0.00", "stable"] and rows[2].endswith("0.90 -> 0.60 still moving")
    assert rows[3].endswith("no snapshots") and "0.30-0.50" in rows[4]  # N = 128: 3 pairs above 0.995, 5 above 0.985
    assert rows[-1].startswith("stable: A's GL changed by at most 0.05 from its last snapshot to the end of training")
    assert dip.lowest() == 32  # the first of the tied inner minima
    v = dip.verdicts(rule).splitlines()
    assert v[0].startswith("RP at N=32 0.40 [0.00, 1.00] vs N=16 0.80 [0.00, 1.00]: lower across")
    assert "vs N=128" in v[1] and ": at the threshold only across" in v[1]  # 0.4 vs 0.3-0.5: flips inside
    assert dip.headline() == ("RP A vs B: 0.80 [0.00, 1.00] at N=16, 0.40 [0.00, 1.00] at N=32, 0.50 [0.00, 1.00] "
                              "at N=128 (lowest at N=32)")
    with pytest.raises(ValueError, match="scored at threshold"):
        dip_study(sweep, times, SameImageRule(0.98, "test", "pixel"))
    # the wide width's last snapshots: a column of its own, and the footer no longer says it saved none
    both = dip_study(sweep, times, rule, wide_last={16: (500, 0.0), 64: (500, 0.5), 48: (500, 1.0)})
    assert both.settle_wide == {16: (500, 0.0, 0.0), 64: (500, 0.5, 0.2)}
    assert both.stable(16, wide=True) is True and both.stable(64, wide=True) is False and both.stable(32, wide=True) is None
    rows = both.table(rule).splitlines()
    assert "B GL step 500 -> end" in rows[0] and rows[3].endswith("0.50 -> 0.20 still moving")
    assert rows[2].endswith("no snapshots") and rows[-1].startswith("stable: each width's GL changed by at most 0.05")
    # the small width trained longer at N = 32, against the wide one: its last sample copies the wide one's
    imgs = torch.rand(4, 1, 8, 8) * 2 - 1
    sweep.samples = {(wide, 32): Samples(imgs, torch.arange(4))}
    longer = TrainingTimeStudy([100, 200], [32, 48], {32: [_dip_sc(0.9), _dip_sc(0.2)], 48: [_dip_sc(1.0)] * 2}, {},
                               {}, {(32, 200): Samples(imgs, torch.arange(4)), (48, 200): Samples(-imgs, torch.arange(4))})
    assert longer_vs_wide(sweep, longer, rule) == \
        "N=32: A trained 200 steps (GL 0.90 at step 100, 0.20 at 200) vs B: RP 1.00 [0.51, 1.00]"
    assert list(dip.curves()) == ["A vs B (both at the end of training)"]
    fig = dip_figure(dip)
    assert [ln.get_xdata()[0] for ln in fig.axes[0].get_lines() if ln.get_label().startswith("GL = 0.5")] == [40.0]
    matplotlib.pyplot.close(fig)


def test_quality_along_training_rates_each_snapshot_and_the_gaussian_null(digits):
    from reprodiff.configs import SweepConfig
    from reprodiff.training import TrainConfig

    sweep = SweepConfig("digits", TrainConfig(dataset="digits", holdout=297, steps=4, batch_size=8),
                        {SizeLabel("A", "1M"): "unet-tiny"}, (16, 32), snapshots=(2,))
    seeds = range(6)
    real = training_data(sweep.model_configs()[(SizeLabel("A", "1M"), 16)])[0].images[:6]
    noise = torch.rand(6, 1, 8, 8) * 2 - 1
    samples = {(16, 2): Samples(noise, torch.arange(6)), (16, 4): Samples(real, torch.arange(6))}

    class Judge:  # confidence: the fraction of images that are exactly a training digit of N = 16
        def confidence(self, images):
            return float(torch.stack([(real == im).flatten(1).all(1).any() for im in images]).double().mean())

    times = TrainingTimeStudy([2, 4], [16], {}, {}, {}, samples)
    q = quality_along_training(times, sweep, Judge(), 0.9, 0.95, seeds, steps=4)
    assert q.confidence == {16: [0.0, 1.0]} and q.null == {16: 0.0} and q.steps == [2, 4]
    rows = q.table().splitlines()
    assert rows[1].split() == ["2", "0.00"] and rows[2].split() == ["4", "1.00"] and rows[3].split() == ["Gaussian", "0.00"]
    assert rows[4].startswith("classifier confidence in held-out real digits (the ceiling): 0.90 (accuracy 0.95)")
    with pytest.raises(ValueError, match="no samples at N=16, steps \\[8\\]"):
        quality_along_training(replace(times, steps=[2, 8]), sweep, Judge(), 0.9, 0.95, seeds, steps=4)


def test_last_snapshot_gl_scores_each_models_last_snapshot_and_skips_the_largest_n():
    from reprodiff.agreement import last_snapshot_gl
    from reprodiff.configs import SweepConfig
    from reprodiff.regimes import load_sweep

    a, b = SizeLabel("A", "1M"), SizeLabel("B", "2M")
    sweep = SweepConfig("digits", TrainConfig(dataset="digits", holdout=297, steps=4, batch_size=8),
                        {a: "unet-tiny", b: "unet-tiny"}, (16, 32), snapshots=(2,))
    assert sweep.model_configs()[(b, 16)].snapshots == (2,) and sweep.model_configs()[(b, 32)].snapshots == ()
    load_sweep(sweep, progress=False)
    rule = SameImageRule(0.99, "test", "pixel")
    out = last_snapshot_gl(sweep, b, range(4), rule, steps=2)
    assert list(out) == [16] and out[16][0] == 2 and 0.0 <= out[16][1] <= 1.0  # no snapshots at N = 32


def test_pair_study_verdicts_say_where_the_ordering_holds():
    rule = SameImageRule(0.99, "test", "pixel", interval=(0.985, 0.995))
    def sc(v):
        return Score("RP", 0.0, (0.0, 1.0), len(v), 0.99, "test", "pixel", similarities=torch.tensor(v))
    clear, close = sc([0.999] * 6 + [0.5] * 4), sc([0.999] * 2 + [0.992] * 2 + [0.5] * 6)
    none = sc([0.5] * 10)
    ps = PairStudy([16, 128], Scores([clear, close]), Scores([none, sc([0.999] * 3 + [0.5] * 7)]), {}, {})
    v = ps.verdicts(rule).splitlines()
    assert v[0] == ("N=16: RP same data 0.60-0.60, disjoint 0.00-0.00 across the threshold's interval; "
                    "same vs disjoint: higher")
    assert v[1].endswith("same vs disjoint: at the threshold only") and "same data 0.20-0.40" in v[1]



def test_closed_form_study_adds_the_fixed_patch_row_only_when_asked():
    train = load_dataset("digits").images[:12]
    gauss = GaussianDenoiser.from_data(train)
    kw = dict(smoothings=(1.0,), patch_sizes=(1, 3), blend_weights=(0.5,), equivariant=True, steps=3)
    without = closed_form_study(gauss, train, 12, range(3), range(100, 102), (1, 8, 8), **kw)
    rows = set(without.board.similarity)
    assert "local, equivariant, k(sigma)" in rows and "local, equivariant, 3x3 fixed" not in rows
    with_fixed = closed_form_study(gauss, train, 12, range(3), range(100, 102), (1, 8, 8), fixed_patch=True, **kw)
    assert set(with_fixed.board.similarity) == rows | {"local, equivariant, 3x3 fixed"}
    with pytest.raises(ValueError, match="needs equivariant"):
        closed_form_study(gauss, train, 12, range(3), range(100, 102), (1, 8, 8), **{**kw, "equivariant": False},
                          fixed_patch=True)


def test_agreement_config_keeps_the_fixed_patch_among_the_equivariant_n():
    cfg = get_config("agreement", "cpu")
    assert set(cfg.fixed_patch_n) <= set(cfg.equivariant_n)
    with pytest.raises(ValueError, match="fixed-patch N"):
        replace(cfg, fixed_patch_n=(cfg.leaderboard_n[-1],))
