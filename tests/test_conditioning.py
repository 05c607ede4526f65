"""reprodiff.conditioning: RP per label, the same-label null and style across labels (chapter 6)."""

import matplotlib
import pytest
import torch

from reprodiff.backbones import build_backbone
from reprodiff.conditioning import (cross_label_correlation, every_label, ink_and_centre, per_label_rp,
                                    same_label_other_noise, style_table)
from reprodiff.denoisers import Guided, Precond
from reprodiff.metrics import SameImageRule
from reprodiff.plots import per_label_figure
from reprodiff.sampling import Samples, generate

matplotlib.use("Agg")
RULE = SameImageRule(0.99, "a test threshold", "pixel")


def test_same_label_other_noise_moves_each_image_by_whole_label_cycles():
    imgs = torch.arange(6.0).reshape(6, 1, 1, 1).expand(6, 1, 2, 2)
    labels = torch.arange(6) % 3
    s = Samples(imgs, torch.arange(6), name="m", labels=labels)
    out = same_label_other_noise(s, 3)
    assert out.seeds.tolist() == [0, 1, 2, 3, 4, 5] and out.name == "m (seed + 3)"
    assert out.images[:, 0, 0, 0].tolist() == [3, 4, 5, 0, 1, 2]  # seed k holds seed k + 3's image
    assert torch.equal(out.labels, labels)  # the same label on every seed
    assert torch.equal(same_label_other_noise(s, 6).images, imgs)  # a whole cycle is the identity


def test_per_label_rp_scores_each_label_s_seeds_separately():
    imgs = torch.rand(6, 1, 4, 4) * 2 - 1
    labels = torch.arange(6) % 2
    a = Samples(imgs, torch.arange(6))
    b = Samples(torch.where((labels == 0).reshape(-1, 1, 1, 1), imgs, -imgs), torch.arange(6))  # agrees on label 0
    r = per_label_rp({"a": a, "b": b, "c": a}, [("a", "b"), ("a", "c")], labels, range(6), "pixel", RULE)
    assert list(r.scores) == [0, 1] and r.scores[0][("a", "b")].n == 3
    assert r.scores[0][("a", "b")].value == 1.0 and r.scores[1][("a", "b")].value == 0.0
    assert r.means() == {0: 1.0, 1: 0.5}
    assert r.summary() == "  0: 1.00, 1: 0.50" and r.summary(per_line=1) == "  0: 1.00\n  1: 0.50"
    fig = per_label_figure(r, title="t")
    assert fig.axes[0].get_title() == "t" and list(fig.axes[0].get_xticks()) == [0, 1]
    matplotlib.pyplot.close(fig)


def test_every_label_is_the_guided_model_per_label():
    torch.manual_seed(0)
    model = Precond(build_backbone("mlp-xs", (1, 4, 4), num_classes=3), "edm")
    out = every_label(model, [4, 7], (1, 4, 4), 3, guidance=2.0, steps=4)
    assert out.shape == (3, 2, 1, 4, 4)
    for c in (0, 2):
        ref = generate(Guided(model, 2.0), [4, 7], (1, 4, 4), labels=torch.tensor([c, c]), steps=4)
        assert torch.equal(out[c], ref.images)
    assert not torch.equal(out[0, 0], out[0, 1])  # one seed per column


def test_ink_centre_and_cross_label_correlation():
    imgs = -torch.ones(2, 3, 1, 2, 4)
    imgs[:, 0, :, :, 0] = 1  # seed 0: ink in column 0; seed 1: column 3; seed 2: columns 1 and 2
    imgs[:, 1, :, :, 3] = 1
    imgs[:, 2, :, :, 1:3] = 1
    ink, centre = ink_and_centre(imgs)
    assert ink[0].tolist() == pytest.approx([0.5, 0.5, 1.0]) and centre[0].tolist() == pytest.approx([0.0, 3.0, 1.5])
    feature = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.5]])
    assert cross_label_correlation(feature) == pytest.approx(float(torch.corrcoef(feature)[0, 1]))
    assert cross_label_correlation(feature, 1) < 0  # seeds shifted by one: no longer paired
    # every label draws the same image from a seed: ink and centre agree across labels at the same seed
    text = style_table(imgs[:1].expand(9, 3, 1, 2, 4).clone(), [0, 1, 2], "pixel", pair=(3, 8)).splitlines()
    assert len(text) == 4 and text[3].startswith("a 3 vs an 8, median similarity")
    assert [ln.split()[-2] for ln in text[1:]] == ["1.00", "1.00", "1.00"]
    assert all(float(ln.split()[-1]) < 1 for ln in text[1:])  # the next seed: not the same drawing


def test_sample_labelled_guides_conditional_models_only():
    from types import SimpleNamespace

    from reprodiff.conditioning import sample_labelled

    torch.manual_seed(0)
    cond = Precond(build_backbone("mlp-xs", (1, 4, 4), num_classes=3), "edm")
    plain = Precond(build_backbone("mlp-xs", (1, 4, 4)), "edm")
    labels = torch.tensor([0, 2])
    out = sample_labelled({"c": cond, "u": plain}, {"c": SimpleNamespace(conditional=True),
                                                     "u": SimpleNamespace(conditional=False)},
                          [3, 5], (1, 4, 4), labels, guidance=1.5, steps=4)
    assert [s.name for s in out.values()] == ["c", "u"]
    assert torch.equal(out["c"].images, generate(Guided(cond, 1.5), [3, 5], (1, 4, 4), labels=labels, steps=4).images)
    assert torch.equal(out["u"].images, generate(plain, [3, 5], (1, 4, 4), steps=4).images)
    with pytest.raises(ValueError, match="unconditional"):  # a config that says conditional about a plain model
        sample_labelled({"u": plain}, {"u": SimpleNamespace(conditional=True)}, [3], (1, 4, 4), labels[:1],
                        guidance=1.5, steps=4)


def test_reference_table_lists_rp_to_the_reference_and_its_accuracy_per_scale():
    from types import SimpleNamespace

    from reprodiff.conditioning import reference_table
    from reprodiff.metrics import Score

    def sc(v):
        return Score("RP", v, (v, v), 4, 0.9, "", "pixel")

    study = SimpleNamespace(scales=[0.0, 2.0], reference_name="linear CFG",
                            reference={0.0: {"net a": sc(0.1), "net b": sc(0.2)},
                                       2.0: {"net a": sc(0.3), "net b": sc(0.4)}},
                            reference_samples={0.0: Samples(torch.zeros(2, 1, 2, 2), torch.arange(2)),
                                               2.0: Samples(torch.ones(2, 1, 2, 2), torch.arange(2))})
    clf = SimpleNamespace(accuracy=lambda images, labels: float(images.mean()) * 0.5 + 0.25)
    lines = reference_table(study, clf, torch.tensor([0, 1]), {"net a": "a", "net b": "b"}).splitlines()
    assert lines[0] == "   w  RP to linear CFG (a, b)   label accuracy of linear CFG"
    assert lines[1] == f"   0  0.10, 0.20{0.25:>36.2f}" and lines[2] == f"   2  0.30, 0.40{0.75:>36.2f}"


def test_pair_table_rows_are_pairs_and_columns_conditions():
    from reprodiff.conditioning import pair_table
    from reprodiff.metrics import Score

    def sc(v):
        return Score("RP", v, (v - 0.1, v + 0.1), 4, 0.9, "", "pixel")

    pairs = [("UNet a", "UNet b"), ("UNet a", "UNet c")]
    cols = {"x": {pairs[0]: sc(0.5), pairs[1]: sc(0.3)}, "y": {pairs[0]: sc(0.7), pairs[1]: sc(0.2)}}
    lines = pair_table(cols, pairs, {"UNet a": "a", "UNet b": "b", "UNet c": "c"}, (20, 22)).splitlines()
    assert lines == [f"{'pair':14s}{'x':>20s}{'y':>22s}",
                     f"{'a vs b':14s}{'0.50 [0.40, 0.60]':>20s}{'0.70 [0.60, 0.80]':>22s}",
                     f"{'a vs c':14s}{'0.30 [0.20, 0.40]':>20s}{'0.20 [0.10, 0.30]':>22s}"]


def test_median_table_is_the_threshold_free_twin():
    import torch

    from reprodiff.conditioning import median_table
    from reprodiff.metrics import Score

    def sc(sims):
        return Score("RP", 0.5, (0.4, 0.6), len(sims), 0.9, "", "pixel", similarities=torch.tensor(sims))

    pairs = [("UNet a", "UNet b")]
    lines = median_table({"x": {pairs[0]: sc([0.9] * 5)}, "y": {pairs[0]: sc([0.1, 0.2, 0.3, 0.4, 0.5])}}, pairs,
                         {"UNet a": "a", "UNet b": "b"}, (22, 22)).splitlines()
    assert lines[0] == f"{'median':14s}{'x':>22s}{'y':>22s}"
    assert lines[1].startswith(f"{'a vs b':14s}{'0.900 [0.900,0.900]':>22s}") and "0.300 [" in lines[1]


def test_samples_with_nearest_puts_each_sample_over_its_gl_neighbour():
    from types import SimpleNamespace

    from reprodiff.plots import samples_with_nearest

    g = torch.Generator().manual_seed(0)
    train = torch.rand(4, 1, 4, 4, generator=g) * 2 - 1
    s = Samples(torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.tensor([1, 0, 2]))
    gl = {"m": SimpleNamespace(nearest=torch.tensor([3, 0, 2]))}  # in stored order: seed 1 -> 3, seed 0 -> 0
    fig = samples_with_nearest({"m": s}, gl, train, [0, 1], title="t")
    shown = [torch.as_tensor(ax.images[0].get_array().data).double() for ax in fig.axes if ax.images]
    expected = [s.images[1], s.images[0], train[0], train[3]]
    assert len(shown) == 4
    for img, want in zip(shown, expected):
        assert torch.allclose(img, ((want[0] + 1) / 2).double(), atol=1e-6)
    matplotlib.pyplot.close(fig)


def test_seed_pair_check_scores_gl_of_each_model_and_rp_of_each_kind():
    from reprodiff.conditioning import seed_pair_check

    g = torch.Generator().manual_seed(0)
    train = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
    fresh = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
    ids = torch.arange(6)
    samples = {"conditional s0": Samples(train, ids), "conditional s2": Samples(train, ids),  # copies, agreeing
               "unconditional s0": Samples(fresh, ids), "unconditional s2": Samples(-fresh, ids)}
    check = seed_pair_check(samples, train, (0, 2), "pixel", RULE)
    assert check.gl["conditional s0"].value == 0.0 and check.gl["unconditional s0"].value == 1.0
    assert check.rp["conditional"].value == 1.0 and check.rp["unconditional"].value == 0.0
    lines = check.table().splitlines()
    assert len(lines) == 6 and lines[0] == f"GL {'conditional s0':18s} {check.gl['conditional s0'].interval()}"
    assert lines[-1] == f"RP {'unconditional pair':18s} {check.rp['unconditional'].interval()}"


def test_regime_check_samples_each_conditional_model_at_each_scale_and_orders_against_the_twins():
    from types import SimpleNamespace

    from reprodiff.conditioning import regime_check, regime_summary, regime_table

    torch.manual_seed(0)
    nets = {f"{kind} s{k}": Precond(build_backbone("mlp-xs", (1, 4, 4), num_classes=3 if kind == "conditional"
                                                   else None), "edm")
            for kind in ("conditional", "unconditional") for k in (0, 2)}
    cfgs = {k: SimpleNamespace(conditional=k.startswith("conditional")) for k in nets}
    labels, train = torch.tensor([0, 1, 2, 0]), torch.rand(5, 1, 4, 4) * 2 - 1
    check = regime_check(nets, cfgs, train, range(4), (1, 4, 4), labels, "pixel", RULE, scales=(0, 1.5), steps=3)
    assert set(check.gl) == {"conditional w=0 s0", "conditional w=1.5 s0", "unconditional s0",
                             "conditional w=0 s2", "conditional w=1.5 s2", "unconditional s2"}
    assert list(check.rp) == ["conditional w=0", "conditional w=1.5", "unconditional"]
    assert torch.equal(check.samples["conditional w=1.5 s2"].images,
                       generate(Guided(nets["conditional s2"], 1.5), range(4), (1, 4, 4), labels=labels, steps=3).images)
    assert torch.equal(check.samples["conditional w=0 s0"].images,
                       generate(nets["conditional s0"], range(4), (1, 4, 4), labels=labels, steps=3).images)
    table = regime_table({16: check, 32: check}).splitlines()
    assert table[1] == "N = 16" and table[5] == "N = 32" and len(table) == 9
    assert table[2].split()[:3] == ["conditional", "w", "="] and check.rp["unconditional"].interval() in table[4]
    summary = regime_summary({16: check}).splitlines()
    assert summary[0].startswith("N = 16: conditional GL ") and "at w = 1.5 (seeds 0, 2)" in summary[0]
    assert summary[2].endswith(f"unconditional {check.rp['unconditional'].value:.2f}")
    with pytest.raises(ValueError, match="finite number >= 0"):
        regime_check(nets, cfgs, train, range(4), (1, 4, 4), labels, "pixel", RULE, scales=(-1,), steps=3)
    with pytest.raises(ValueError, match="models must be"):
        regime_check({k: v for k, v in nets.items() if k != "unconditional s2"}, cfgs, train, range(4), (1, 4, 4),
                     labels, "pixel", RULE, steps=3)


def test_seed_pair_orderings_hold_across_the_threshold_interval_or_only_at_it():
    from reprodiff.conditioning import SeedPairCheck
    from reprodiff.metrics import Score

    def score(sims):
        return Score("RP", 0.0, (0.0, 0.0), len(sims), 0.98, "t", "pixel", similarities=torch.tensor(sims))

    rule = SameImageRule(0.98, "a test threshold", "pixel", interval=(0.97, 0.99))
    high, mid, low = score([0.995, 0.995, 0.5]), score([0.985, 0.5, 0.5]), score([0.5, 0.5, 0.5])
    check = SeedPairCheck(gl={"conditional s0": high, "unconditional s0": low, "conditional s2": mid,
                              "unconditional s2": score([0.975, 0.5, 0.5])},
                          rp={"conditional": mid, "unconditional": score([0.975, 0.975, 0.5])})
    out = check.orderings(rule)
    assert out == {"RP between seeds": {"conditional": "at the threshold only"},  # 1/3 vs 2/3 above 0.97, 1/3 vs 0 above 0.98
                   "copies, s0": {"conditional": "higher"}, "copies, s2": {"conditional": "at the threshold only"}}
