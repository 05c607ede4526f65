import pytest
import torch

from reprodiff.data import load_dataset
from reprodiff.metrics import (DescriptorUnavailableError, PixelDescriptor, bootstrap_ci, calibrate_threshold,
                               get_descriptor, gl_score, gu_memorization, nearest_neighbors, null_similarity,
                               paired_error, paired_similarity, rp_matrix, rp_score, error_matrix)
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


def test_gl_score_copies_vs_heldout_calibration(digits):
    train, held = digits[:1000], digits[1000:1300]
    copies = _samples(train[:100], list(range(100)), "copies")
    novel = _samples(digits[1300:1400], list(range(100)), "novel")
    assert gl_score(copies, train, heldout=held).value == 0.0
    gl_novel = gl_score(novel, train, heldout=held)
    assert gl_novel.value > 0.8  # novel real digits are judged novel (about 95% by construction)
    with pytest.raises(ValueError, match="heldout="):
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


def test_sscd_offline_fails_fast_with_a_clear_message(tmp_path):
    from reprodiff.metrics import SSCDDescriptor
    with pytest.raises(DescriptorUnavailableError, match="descriptor='pixel'"):
        SSCDDescriptor(path=tmp_path / "sscd.pt")
    assert not (tmp_path / "sscd.pt").exists()
    with pytest.raises(ValueError, match="unknown descriptor"):
        get_descriptor("clip")
