import pytest
import torch

from reprodiff.runtime import SEED_PURPOSES, cpu_threads, denormals_flushed, derive_seed, flush_denormal


def test_flush_denormal_restores_the_state_it_found():
    torch.set_flush_denormal(False)
    with flush_denormal():
        assert denormals_flushed()
        with flush_denormal():
            assert denormals_flushed()
        assert denormals_flushed()  # the inner block must not switch it off early
    assert not denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        with flush_denormal():
            pass
        assert denormals_flushed()  # a caller who switched it on keeps it on
    finally:
        torch.set_flush_denormal(False)


def test_cpu_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_derived_seeds_keep_their_values_and_never_collide():
    # these values are baked into every trained model and data split: they must not change
    assert derive_seed(3, "train-batches", 1) == 3 * 7919 + 1 + 104_729
    assert derive_seed(5, "sample-noise", 2) == 5 + 2 * 1_000_003_489
    assert derive_seed(0, "holdout") == 10_007
    for purpose in SEED_PURPOSES:  # within a purpose, e.g. initial vs injected noise of any two seeds
        indices = range(4) if purpose in ("train-batches", "sample-noise") else range(1)
        seen = {}
        for base in range(1000):
            for index in indices:
                seed = derive_seed(base, purpose, index)
                assert seed not in seen, (purpose, base, index, seen.get(seed))
                seen[seed] = (base, index)
    with pytest.raises(ValueError, match="unknown seed purpose"):
        derive_seed(0, "nope")
