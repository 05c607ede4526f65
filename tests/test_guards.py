"""Bad inputs fail early with a message that says what is wrong (sampling and scoring)."""

import re

import numpy as np
import pytest
import torch

from reprodiff.backbones import build_backbone
from reprodiff.data import load_dataset
from reprodiff.denoisers import Guided, OptimalDenoiser, Precond
from reprodiff.metrics import gl_score, null_similarity, paired_similarity, rp_matrix, rp_score
from reprodiff.sampling import Samples, generate, record_calls

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").images


@pytest.fixture
def recorded(digits):
    """A denoiser that counts its calls: validation must fail before the first one."""
    return record_calls(OptimalDenoiser(digits[:20]))


@pytest.fixture(scope="module")
def conditional():
    return Precond(build_backbone("mlp-xs", SHAPE, num_classes=3), "edm")


@pytest.fixture(scope="module")
def unconditional():
    return Precond(build_backbone("mlp-xs", SHAPE), "edm")


# ----------------------------------------------------------------------------- generate: seeds, steps, shape


@pytest.mark.parametrize("seeds,match", [
    ([3, 1, 3], r"unique.*repeated: \[3\]"),
    ([], "no seeds"),
    ([0, 0.7], "seeds must be integers"),
    (np.array([0.0, 1.0]), "seeds must be integers"),
    (torch.tensor([0.0, 1.0]), "float32 tensor"),
    (torch.zeros(2, 2, dtype=torch.int64), "1-d"),
    ([0, -1], "non-negative"),
])
def test_bad_seeds_fail_before_any_sampling(recorded, seeds, match):
    with pytest.raises(ValueError, match=match):
        generate(recorded, seeds, SHAPE, steps=2)
    assert recorded.calls == []


def test_integer_seeds_of_every_kind_are_accepted(recorded):
    ref = generate(recorded, [0, 5, 2], SHAPE, steps=2).images
    for seeds in (np.array([0, 5, 2]), [np.int64(0), np.int32(5), 2], torch.tensor([0, 5, 2], dtype=torch.int32)):
        out = generate(recorded, seeds, SHAPE, steps=2)
        assert torch.equal(out.images, ref) and out.seeds.dtype == torch.int64


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(steps=2.5), "steps must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(shape=(8, 8)), r"shape must be \(C, H, W\)"),
    (dict(shape=(1, 0, 8)), "three positive integers"),
    (dict(shape=(1, 8.0, 8)), "three positive integers"),
])
def test_bad_steps_and_shapes(recorded, kwargs, match):
    kw = dict(shape=SHAPE, steps=2) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(recorded, [0, 1], kw.pop("shape"), **kw)
    assert recorded.calls == []


def test_shape_must_match_what_the_model_declares(digits, unconditional):
    expected = r"model trained on \(1, 8, 8\) images, asked for \(1, 16, 16\)"
    with pytest.raises(ValueError, match=expected):  # backbone.shape (MLP, U-ViT)
        generate(unconditional, [0], (1, 16, 16))
    with pytest.raises(ValueError, match=expected):  # through a wrapper
        generate(record_calls(unconditional), [0], (1, 16, 16))
    loaded = OptimalDenoiser(digits[:5])
    loaded.info = {"shape": [1, 8, 8]}  # what a checkpoint carries (UNet backbones store no shape)
    with pytest.raises(ValueError, match=expected):
        generate(loaded, [0], (1, 16, 16))
    assert generate(loaded, [0], [1, 8, 8], steps=2).images.shape == (1, 1, 8, 8)


# ----------------------------------------------------------------------------- generate: labels and mode


def test_labels_of_a_class_conditional_model(conditional):
    with pytest.raises(ValueError, match=r"class-conditional \(3 classes\): pass labels="):
        generate(conditional, [0, 1], SHAPE, steps=2)
    with pytest.raises(ValueError, match="integer class ids, got dtype torch.float32"):
        generate(conditional, [0, 1], SHAPE, steps=2, labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"one entry per seed: shape \(2,\), got \(3,\)"):
        generate(conditional, [0, 1], SHAPE, steps=2, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 3\] \(3 is the null label"):
        generate(conditional, [0, 1], SHAPE, steps=2, labels=[0, 4])
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        generate(conditional, [0, 1], SHAPE, steps=2, labels=[-1, 0])
    out = generate(conditional, [0, 1], SHAPE, steps=2, labels=[2, 3])  # a list; 3 = the null label
    assert torch.equal(out.labels, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="pass labels="):  # the check sees through guidance
        generate(Guided(conditional, 1.0, null_label=3), [0], SHAPE, steps=2)


def test_no_labels_for_an_unconditional_model(unconditional):
    with pytest.raises(ValueError, match="unconditional.*do not pass labels="):
        generate(unconditional, [0, 1], SHAPE, steps=2, labels=torch.tensor([0, 1]))


def test_generate_leaves_the_model_in_the_modes_it_came_in(conditional):
    conditional.train()
    conditional.backbone.blocks[0].eval()  # a mixed state must survive too
    before = [m.training for m in conditional.modules()]
    generate(conditional, [0], SHAPE, steps=2, labels=[1])
    assert [m.training for m in conditional.modules()] == before
    conditional.eval()
    generate(conditional, [0], SHAPE, steps=2, labels=[1])
    assert not any(m.training for m in conditional.modules())


def test_samples_need_1d_integer_seeds():
    with pytest.raises(ValueError, match="seeds must be integers"):
        Samples(torch.zeros(2, *SHAPE), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="1-d"):
        Samples(torch.zeros(2, *SHAPE), torch.tensor([[0], [1]]))


# ----------------------------------------------------------------------------- scores


def _samples(images, name):
    return Samples(images, torch.arange(len(images)), name=name, sampler="test")


def test_non_finite_samples_are_refused_by_every_score(digits):
    good = _samples(digits[:6], "good")
    images = digits[6:12].clone()
    images[1, 0, 0, 0], images[4, 0, 3, 3] = float("nan"), float("inf")
    bad = _samples(images, "diverged")
    msg = r"2 of 6 samples in the second set 'diverged' have non-finite pixels .*seeds \[1, 4\]"
    for score in (rp_score, paired_similarity, null_similarity):
        with pytest.raises(ValueError, match=msg):
            score(good, bad)
    with pytest.raises(ValueError, match="2 of 6 samples in the first set 'diverged'"):
        rp_score(bad, good, threshold=0.5)
    with pytest.raises(ValueError, match="non-finite"):
        rp_matrix([good, bad])
    with pytest.raises(ValueError, match="2 of 6 samples in the sample set 'diverged'"):
        gl_score(bad, digits[100:200], threshold=0.9)


def test_rp_needs_two_seeds_to_calibrate(digits):
    a, b = _samples(digits[:1], "a"), _samples(digits[1:2], "b")
    with pytest.raises(ValueError, match="at least 2 seeds"):
        rp_score(a, b)
    assert rp_score(a, b, threshold=0.5).n == 1  # a given threshold needs no null


def test_paired_scores_refuse_images_of_different_shapes(digits):
    a = _samples(digits[:4], "A")
    b = _samples(torch.nn.functional.interpolate(digits[4:8], size=(16, 16)), "B")
    for score in (rp_score, paired_similarity):
        with pytest.raises(ValueError, match=r"A has \(1, 8, 8\) images, B has \(1, 16, 16\)"):
            score(a, b)


@pytest.mark.parametrize("train_shape", [(50, 64), (50, 4, 4, 4)])
def test_gl_refuses_training_images_shaped_unlike_the_samples(digits, train_shape):
    s = _samples(digits[:4], "s")
    expected = f"training images are {train_shape[1:]} each, the samples (1, 8, 8)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        gl_score(s, torch.zeros(train_shape), threshold=0.9)
