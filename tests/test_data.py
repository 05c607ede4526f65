import pytest
import torch

from reprodiff.data import DatasetUnavailableError, MoLRG, load_dataset, split_holdout, subset


def test_digits_shape_range_labels():
    d = load_dataset("digits")
    assert d.images.shape == (1797, 1, 8, 8)
    assert d.images.min() == -1 and d.images.max() == 1
    assert d.labels.shape == (1797,) and set(d.labels.tolist()) == set(range(10))


def test_subsets_are_nested_and_seeded():
    d = load_dataset("digits")
    small, large = subset(d, 16, seed=3), subset(d, 256, seed=3)
    assert torch.equal(small.images, large.images[:16])
    assert not torch.equal(subset(d, 16, seed=4).images, small.images)


def test_subset_larger_than_data_is_a_clear_error():
    d = load_dataset("digits")
    with pytest.raises(ValueError, match="only 1797 images"):
        subset(d, 5000)


def test_holdout_is_disjoint_from_every_subset():
    d = load_dataset("digits")
    pool, held = split_holdout(d, 200)
    assert len(pool) + len(held) == len(d)
    rows = {tuple(x.flatten().tolist()) for x in held.images}
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in subset(pool, len(pool)).images)
    # digits contains a few exact duplicates; the index split itself must be disjoint
    assert overlap < 5


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


def test_cifar10_offline_fails_fast_with_a_message(tmp_path, offline):
    with pytest.raises(DatasetUnavailableError, match="(?s)cifar10.*could not be downloaded.*unreachable"):
        load_dataset("cifar10", root=tmp_path)
    assert not any(tmp_path.iterdir())  # no partial download left behind


def test_cifar10_is_read_from_its_release_format(tmp_path):
    """The python release's pickles (CHW rows of uint8) become NCHW images in [-1, 1], pixel for pixel."""
    import pickle

    from reprodiff.smoke import write_cifar10

    folder = write_cifar10(tmp_path, per_batch=7)
    train, test = load_dataset("cifar10", root=tmp_path), load_dataset("cifar10", root=tmp_path, train=False)
    assert train.images.shape == (35, 3, 32, 32) and test.images.shape == (7, 3, 32, 32)
    assert train.num_classes == 10 and train.labels.dtype == torch.int64
    with open(folder / "data_batch_2", "rb") as f:
        entry = pickle.load(f)
    row = torch.as_tensor(entry["data"][3]).float()  # image 3 of batch 2: 1,024 red, then green, then blue
    assert torch.equal(train.images[7 + 3], (row / 255 * 2 - 1).reshape(3, 32, 32))
    assert train.labels[7 + 3] == entry["labels"][3]


def test_cifar10_bad_download_is_rejected_and_nothing_is_kept(tmp_path, monkeypatch):
    import reprodiff.data as data

    monkeypatch.setattr(data, "download_file", lambda url, dest: dest.write_bytes(b"not the archive"))
    with pytest.raises(DatasetUnavailableError, match="MD5"):
        load_dataset("cifar10", root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_molrg_samples_lie_in_their_subspace():
    dist = MoLRG((1, 8, 8), num_classes=3, dim=4, seed=1)
    data = dist.sample(100, seed=0)
    assert data.images.shape == (100, 1, 8, 8)
    x = data.images.reshape(100, -1).double()
    U = dist.bases[data.labels]  # (100, 64, 4)
    proj = (U @ (U.transpose(1, 2) @ x.unsqueeze(-1))).squeeze(-1)
    assert torch.allclose(proj, x, atol=1e-5)
