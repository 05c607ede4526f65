import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty model cache (never the user's or the book's)."""
    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    yield


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A machine without network, whatever this one has: downloads fail as they would offline.

    The SSCD weights and CIFAR-10 downloads raise ``URLError``; torchvision is replaced by a stand-in whose
    dataset constructors raise ``URLError`` (so the test does not depend on whether torchvision is
    installed either); datasets are looked for in an empty folder.
    """
    import sys
    import types
    import urllib.error

    import reprodiff.data as data
    import reprodiff.metrics as metrics

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (simulated offline by the test)")

    monkeypatch.setattr(metrics, "download_file", refuse)
    monkeypatch.setattr(data, "download_file", refuse)
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=refuse, FashionMNIST=refuse)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setenv("REPRODIFF_DATA", str(tmp_path / "data"))
    if hasattr(metrics, "_sscd"):
        metrics._sscd.cache_clear()
    yield


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Any training or loading of a model fails the test: the CLI must refuse its input first."""
    import reprodiff.pretrained as pretrained
    import reprodiff.training as training

    def no_training(*args, **kwargs):
        raise AssertionError("the CLI started training before rejecting its input")

    def no_loading(*args, **kwargs):
        raise AssertionError("the CLI loaded a model before rejecting its input")

    monkeypatch.setattr(training, "_train_locked", no_training)
    monkeypatch.setattr(pretrained.DiffusersSource, "load", no_loading)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def digits():
    """The 1,797 real 8x8 digits, as images in [-1, 1]."""
    from reprodiff.data import load_dataset

    return load_dataset("digits").images


@pytest.fixture(scope="module")
def gaussian(digits):
    """The Gaussian denoiser of the first 1,500 digits."""
    from reprodiff.denoisers import GaussianDenoiser

    return GaussianDenoiser.from_data(digits[:1500])


@pytest.fixture
def sampling_runs(monkeypatch):
    """Counts the sampling loops that really run (a cache hit runs none)."""
    import reprodiff.sampling as sampling

    runs = []
    real = sampling.run_sampler

    def counted(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "run_sampler", counted)
    return runs


@pytest.fixture
def crash_after_first_state(monkeypatch):
    """``crash(cfg)``: train ``cfg`` until it has written its first resumable state, then crash there
    (SystemExit), leaving the state on disk as a killed run would."""
    import reprodiff.training as training

    def crash(cfg) -> None:
        real = training.write_state

        def write_then_crash(*args, **kwargs):
            real(*args, **kwargs)
            raise SystemExit("simulated crash after the first resumable state")

        monkeypatch.setattr(training, "write_state", write_then_crash)
        with pytest.raises(SystemExit):
            training.train(cfg, progress=False)
        monkeypatch.setattr(training, "write_state", real)

    return crash
