import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty model cache (never the user's or the book's)."""
    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    yield
