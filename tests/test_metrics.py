import pytest
import torch

from reprodiff.data import load_dataset
from reprodiff.metrics import (SSCD_THRESHOLD, DescriptorUnavailableError, PixelDescriptor, SSCDDescriptor,
                               bootstrap_ci, calibrate_threshold, error_matrix, get_descriptor, gl_score,
                               gu_memorization, nearest_neighbors, null_similarity, paired_error, paired_similarity,
                               resolve_threshold, rp_matrix, rp_score)
from reprodiff.sampling import Samples


def _samples(images, seeds, name):
    return Samples(images, torch.tensor(seeds), name=name, sampler="test")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").images


def test_rp_pairs_by_seed_not_by_order(digits):
    imgs = digits[:50]
    a = _samples(imgs, list(range(50)), "a")
    perm = torch.randperm(50)
    b = _samples(imgs[perm], perm.tolist(), "b")  # same images, shuffled order, seeds travel along
    assert torch.allclose(paired_similarity(a, b), torch.ones(50), atol=1e-5)
    assert rp_score(a, b, threshold=0.99).value == 1.0


def test_rp_refuses_mismatched_seed_sets(digits):
    a = _samples(digits[:4], [0, 1, 2, 3], "a")
    b = _samples(digits[:4], [0, 1, 2, 9], "b")
    with pytest.raises(ValueError, match="same seeds"):
        rp_score(a, b)


def test_rp_calibrated_threshold_from_the_null(digits):
    a = _samples(digits[:200], list(range(200)), "a")
    b = _samples(digits[:200] + 0.05 * torch.randn(200, 1, 8, 8), list(range(200)), "b")
    score = rp_score(a, b)
    null = null_similarity(a, b)
    assert null.numel() == 200 * 199
    assert score.threshold == pytest.approx(calibrate_threshold(null, 0.99))
    assert score.value > 0.95 and score.ci[0] <= score.value <= score.ci[1]
    assert "99th percentile" in str(score) and "200 seed pairs" in str(score)
    # unrelated pairs: RP near the null rate
    c = _samples(digits[200:400], list(range(200)), "c")
    assert rp_score(a, c).value < 0.1


def test_rp_matrix_is_symmetric_with_unit_diagonal(digits):
    sets = [_samples(digits[:100] + s * torch.randn(100, 1, 8, 8), list(range(100)), f"m{s}") for s in (0.0, 0.1, 0.2)]
    res = rp_matrix(sets)
    mat = res.values
    assert torch.equal(mat, mat.T) and torch.equal(mat.diagonal(), torch.ones(3, dtype=torch.float64))
    assert "across 3 sample sets" in res.threshold_rule and res.n == 100
    assert (res.lower <= mat).all() and (mat <= res.upper).all()
    assert res.off_diagonal().numel() == 6


def test_pixel_descriptor_is_unit_norm_and_shift_invariant(digits):
    f = PixelDescriptor()(digits[:10])
    assert torch.allclose(f.norm(dim=1), torch.ones(10), atol=1e-5)
    assert torch.allclose(PixelDescriptor()(digits[:10] * 0.5 + 0.1), f, atol=1e-5)


def test_nearest_neighbors_chunked_matches_dense():
    q = torch.nn.functional.normalize(torch.randn(20, 16), dim=1)
    r = torch.nn.functional.normalize(torch.randn(300, 16), dim=1)
    v, i = nearest_neighbors(q, r, k=3, chunk_size=37)
    dv, di = (q @ r.T).topk(3, dim=1)
    assert torch.allclose(v, dv) and torch.equal(i, di)


def test_gl_score_copies_vs_novel_under_the_same_image_rule(digits):
    from reprodiff.metrics import same_image_rule

    train, held = digits[:1000], digits[1000:1300]
    rule = same_image_rule(train, held)
    copies = _samples(train[:100], list(range(100)), "copies")
    novel = _samples(digits[1300:1400], list(range(100)), "novel")
    assert gl_score(copies, train, threshold=rule).value == 0.0
    gl_novel = gl_score(novel, train, threshold=rule)
    assert gl_novel.value > 0.8  # novel real digits are judged novel (about 99% by construction)
    with pytest.raises(ValueError, match="threshold="):
        gl_score(novel, train)


def test_gu_ratio_flags_copies_only(digits):
    train = digits[:500]
    assert gu_memorization(train[:50] + 0.01 * torch.randn(50, 1, 8, 8), train).value == 1.0
    assert gu_memorization(digits[1000:1100], train).value < 0.2


def test_bootstrap_interval_contains_the_mean():
    hits = (torch.arange(100) < 70).double()
    lo, hi = bootstrap_ci(hits)
    assert lo < 0.7 < hi and hi - lo < 0.25


def test_paired_error(digits):
    a = _samples(digits[:5], list(range(5)), "a")
    b = _samples(digits[:5] + 0.5, list(range(5)), "b")
    assert torch.equal(paired_error(a, a, "mae"), torch.zeros(5))
    assert torch.allclose(error_matrix([a, b])[0, 1], torch.tensor(0.5, dtype=torch.float64))


def test_sscd_offline_fails_fast_with_a_clear_message(tmp_path, offline):
    from reprodiff.cache import cache_root
    from reprodiff.metrics import SSCDDescriptor
    with pytest.raises(DescriptorUnavailableError, match="(?s)could not be downloaded.*descriptor='pixel'"):
        SSCDDescriptor(path=tmp_path / "sscd.pt")
    assert not (tmp_path / "sscd.pt").exists()
    with pytest.raises(DescriptorUnavailableError):
        SSCDDescriptor()  # into the cache: which must stay as it was
    assert not (cache_root() / "sscd").exists()


def test_corrupt_sscd_weights_are_reported(tmp_path):
    from reprodiff.metrics import SSCDDescriptor
    (tmp_path / "sscd.pt").write_bytes(b"half a download")
    with pytest.raises(DescriptorUnavailableError, match="unreadable"):
        SSCDDescriptor(path=tmp_path / "sscd.pt")


class _FakeSSCD:
    """A descriptor that, like SSCD, brings its own threshold (and counts how often it is used)."""

    name = "fake-sscd"
    fixed_threshold = 0.6

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return PixelDescriptor()(images)


def test_scores_hold_the_columns_a_plot_and_a_table_need():
    from reprodiff.metrics import Score, Scores

    scores = Scores(Score("RP", v, (v - 0.1, v + 0.2), 10, 0.5, "rule", "pixel") for v in (0.25, 0.75, 0.5))
    assert scores.values == [0.25, 0.75, 0.5] and scores.lower == [0.15, 0.65, 0.4]
    assert scores.band() == ([0.25, 0.75, 0.5], [0.15, 0.65, 0.4], [0.45, 0.95, 0.7])
    assert scores.span() == (0.25, 0.75) and scores.mean() == 0.5 and isinstance(scores, list)


def test_a_descriptor_with_a_fixed_threshold_uses_it_everywhere(digits):
    desc = _FakeSSCD()
    a = _samples(digits[:20], list(range(20)), "a")
    b = _samples(digits[20:40], list(range(20)), "b")
    rule = "the fake-sscd descriptor's fixed threshold"
    score = rp_score(a, b, desc)
    assert (score.threshold, score.threshold_rule, score.descriptor) == (0.6, rule, "fake-sscd")
    gl = gl_score(a, digits[100:200], desc)  # no threshold= needed
    assert (gl.threshold, gl.threshold_rule) == (0.6, rule)
    mat = rp_matrix([a, b], desc)
    assert (mat.threshold, mat.threshold_rule) == (0.6, rule)
    assert rp_score(a, b, desc, threshold=0.3).threshold_rule == "given"  # a given threshold still wins


def test_threshold_rules_of_the_builtin_descriptors():
    def never():
        raise AssertionError("calibrated although the threshold is fixed")

    sscd = SSCDDescriptor.__new__(SSCDDescriptor)  # no weights needed to read its rule
    assert resolve_threshold(sscd, None, never) == (SSCD_THRESHOLD, "the paper's SSCD threshold")
    assert resolve_threshold(PixelDescriptor(), None, lambda: (0.4, "calibrated")) == (0.4, "calibrated")
    assert resolve_threshold(PixelDescriptor(), 0.7, never, "my rule") == (0.7, "my rule")
    assert resolve_threshold(object(), 0.7, never) == (0.7, "given")  # descriptors without the attribute


def test_sscd_preprocessing_offline_with_a_stand_in_network(tmp_path):
    class Probe(torch.nn.Module):
        # features: per-channel mean, min and max of the network's input, exposing the preprocessing
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[1:] == (3, 320, 320)
            return torch.cat([x.mean((2, 3)), x.amin((2, 3)), x.amax((2, 3))], 1)

    path = tmp_path / "probe.torchscript.pt"
    torch.jit.script(Probe()).save(str(path))
    desc = SSCDDescriptor(path=path, batch_size=2)
    gray = torch.full((3, 1, 8, 8), -1.0)
    gray[1], gray[2] = 1.0, 0.0  # black, white, mid-gray
    f = desc(gray)
    assert f.shape == (3, 9) and f.dtype == torch.float32
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for img, level in zip(f, (0.0, 1.0, 0.5)):
        expected = ((level - mean) / std).repeat(3)  # gray repeated to RGB, constant after resizing
        torch.testing.assert_close(img, expected / expected.norm())


def test_unknown_descriptor_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown descriptor 'clip'"):
        get_descriptor("clip")


def test_wilson_interval_is_honest_at_the_edges():
    from reprodiff.metrics import wilson_ci

    lo, hi = wilson_ci(0, 256)
    assert lo == 0.0 and hi == pytest.approx(0.0148, abs=2e-4)
    assert wilson_ci(256, 256)[1] == 1.0 and wilson_ci(256, 256)[0] == pytest.approx(1 - 0.0148, abs=2e-4)
    lo, hi = wilson_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    for bad in ((3, 2), (-1, 5), (1.5, 4)):
        with pytest.raises(ValueError):
            wilson_ci(*bad)


def test_scores_of_a_proportion_use_wilson_intervals(digits):
    a = _samples(digits[:64], list(range(64)), "a")
    b = _samples(digits[64:128], list(range(64)), "b")
    s = rp_score(a, b, threshold=0.999)
    assert s.value == 0.0 and s.ci[1] > 0.03  # the bootstrap would have said [0, 0]


def test_same_image_rule_is_shared_by_rp_and_gl_and_checks_its_descriptor(digits):
    from reprodiff.metrics import same_image_rule, survival

    train, held = digits[:1000], digits[1000:1300]
    rule = same_image_rule(train, held, dataset="digits")
    nn = nearest_neighbors(PixelDescriptor()(held), PixelDescriptor()(train))[0][:, 0]
    assert rule.threshold == pytest.approx(float(nn.double().quantile(0.99)), abs=1e-6)
    a = _samples(train[:50], list(range(50)), "a")
    rp, gl = rp_score(a, a, threshold=rule), gl_score(a, train, threshold=rule)
    assert (rp.threshold, rp.threshold_rule) == (gl.threshold, gl.threshold_rule) == (rule.threshold, rule.rule)
    assert rp.value == 1.0 and gl.value == 0.0  # a copy is the same image, for RP and GL alike
    other = type(rule)(rule.threshold, rule.rule, "sscd", "digits")
    with pytest.raises(ValueError, match="calibrated for the sscd"):
        rp_score(a, a, threshold=other)
    with pytest.raises(ValueError, match="quantile"):
        same_image_rule(train, held, quantile=1.0)
    sims = torch.tensor([0.1, 0.5, 0.9, 0.95])
    assert survival(sims, [0.0, 0.5, 0.92, 1.0]).tolist() == [1.0, 0.5, 0.25, 0.0]


def test_a_calibrated_threshold_carries_its_bootstrap_interval_and_tells_robust_orderings(digits):
    from reprodiff.metrics import SameImageRule, quantile_interval, same_image_rule

    train, held = digits[:1000], digits[1000:1300]
    rule = same_image_rule(train, held, dataset="digits")
    lo, hi = rule.interval
    assert lo < rule.threshold < hi and hi - lo < 0.05 and "95% bootstrap interval" in str(rule)
    nn = nearest_neighbors(PixelDescriptor()(held), PixelDescriptor()(train))[0][:, 0]
    assert quantile_interval(nn, 0.99) == rule.interval  # one seed: the same interval every time
    wide = quantile_interval(nn[:30], 0.99)  # fewer held-out images: a wider interval
    assert wide[1] - wide[0] > hi - lo
    # RP across the interval: a similarity inside it counts at one end and not at the other
    sims = torch.tensor([lo - 0.01, (lo + hi) / 2, hi + 0.001, 0.5])
    assert rule.rp_range(sims) == (0.25, 0.5)
    # one pair always above the other vs. two that cross inside the interval
    assert rule.ordering(torch.full((4,), 0.999), sims) == "higher"
    assert rule.ordering(sims, torch.full((4,), 0.999)) == "lower"
    crossing = torch.tensor([hi + 0.001, lo - 0.01, 0.0, 0.0])
    assert rule.ordering(crossing, torch.tensor([(lo + hi) / 2, (lo + hi) / 2, 0.0, 0.0])) == "at the threshold only"
    fixed = SameImageRule(0.6, "fixed", "sscd")  # no interval: every range collapses to the threshold
    assert fixed.interval is None and fixed.rp_range(torch.tensor([0.5, 0.7])) == (0.5, 0.5)


def test_seed_spread_summarises_training_seed_pairs(digits):
    from reprodiff.metrics import seed_spread

    a = _samples(digits[:40], list(range(40)), "a")
    scores = [rp_score(a, a, threshold=0.5), rp_score(a, _samples(digits[40:80], list(range(40)), "b"), threshold=0.5)]
    spread = seed_spread(scores)
    assert spread.values == [1.0, scores[1].value] and "2 training-seed pairs" in str(spread)
    with pytest.raises(ValueError):
        seed_spread([])
    with pytest.raises(ValueError, match="share"):
        seed_spread([rp_score(a, a, threshold=0.5), rp_score(a, a, threshold=0.6)])


def test_in_classes_is_the_classifier_s_verdict_per_sample(digits):
    from reprodiff.metrics import QualityClassifier, in_classes

    data = load_dataset("digits")
    clf = QualityClassifier(data.images[:1000], data.labels[:1000])
    held, labels = data.images[1000:1100], data.labels[1000:1100]
    s = _samples(held, list(range(100)), "held-out")
    mask = in_classes(clf, s, (5, 6, 7, 8, 9))
    assert mask.dtype == torch.bool and mask.shape == (100,)
    assert torch.equal(mask, torch.isin(clf.probabilities(held).argmax(1), torch.tensor([5, 6, 7, 8, 9])))
    # a good classifier: the verdict matches the true label's class group on most held-out digits
    assert float((mask == (labels >= 5)).double().mean()) > 0.8
    assert not in_classes(clf, s, ()).any()



def test_compare_rp_tells_a_robust_ordering_from_one_at_the_threshold_only():
    from reprodiff.metrics import SameImageRule, compare_rp

    rule = SameImageRule(0.98, "test", "pixel", "digits", interval=(0.97, 0.99))
    high, low = torch.full((8,), 0.995), torch.full((8,), 0.5)
    c = compare_rp(rule, high, low, ("high", "low"))
    assert (c.verdict, c.median_verdict) == ("higher", "higher") and c.rp == ((1.0, 1.0), (0.0, 0.0))
    assert compare_rp(rule, low, high).verdict == "lower"
    # a: 0.985 counts up to 0.985; b: 0.975 counts only below 0.975. At 0.98 a is ahead, at 0.97 b is
    a = torch.tensor([0.985, 0.985, 0.0, 0.0])
    b = torch.tensor([0.995, 0.975, 0.975, 0.0])
    c = compare_rp(rule, a, b, ("a", "b"))
    assert c.verdict == "higher at the threshold only" and c.rp == ((0.5, 0.5), (0.25, 0.25))
    assert c.rp_range == ((0.0, 0.5), (0.25, 0.75)) and c.median_verdict == "overlap"
    assert compare_rp(rule, a, a).verdict == "tie"
    # a group is above another only if each of its members is above each member of the other side
    assert compare_rp(rule, [high, high], [low, low]).verdict == "higher"
    assert compare_rp(rule, [high, low], [low]).verdict == "tie"
    assert c.median[0][:2] == (float(a.double().median()),) * 2
    text = str(c)
    assert "a vs b: RP 0.50 vs 0.25 (0.00-0.50 vs 0.25-0.75 across the threshold's interval)" in text
    assert "higher at the threshold only" in text and "intervals overlap" in text
    one = torch.zeros(1000)
    one[0] = 0.985  # ordered at the threshold but alike in two decimals: printed with more
    assert "RP 0.001 vs 0.000 (0.000-0.001 vs 0.000 across" in str(compare_rp(rule, one, torch.zeros(1000)))
    with pytest.raises(ValueError, match="empty"):
        compare_rp(rule, [], low)
    with pytest.raises(ValueError, match="empty"):
        compare_rp(rule, high, torch.zeros(0))
