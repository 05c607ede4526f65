import pytest
import torch

from reprodiff.cache import CheckpointError
from reprodiff.profiles import PROFILES, check_resources, get_config
from reprodiff.training import TrainConfig, checkpoint_dir, load_model, load_or_train, train, training_data

TINY = dict(backbone="unet-xs", steps=6, batch_size=8, checkpoint_every=3, n_train=64)


def test_config_hash_is_stable_and_content_addressed():
    a, b = TrainConfig(**TINY), TrainConfig(**TINY)
    assert a.hash == b.hash and len(a.hash) == 12
    assert TrainConfig(**{**TINY, "seed": 1}).hash != a.hash
    # checkpoint_every does not change the weights, so it does not rename the model
    assert TrainConfig(**{**TINY, "checkpoint_every": 100}).hash == a.hash


def test_config_hash_golden_value():
    # a changed hash silently retires every cached model: change this value only on purpose
    # (a new TrainConfig field, or a CACHE_FORMAT bump for code that trains other bits)
    assert TrainConfig().hash == "d794fb6cc657"
    assert TrainConfig(**TINY).hash == "c482baaa2c15"


def test_config_normalises_numpy_integers():
    import numpy as np

    assert TrainConfig(**{**TINY, "n_train": np.int64(64)}).hash == TrainConfig(**TINY).hash


def test_bad_configs_raise_before_training():
    with pytest.raises(ValueError, match="unknown backbone"):
        TrainConfig(backbone="resnet")
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="flow")
    with pytest.raises(ValueError, match="only 1797 images"):
        train(TrainConfig(**{**TINY, "n_train": 5000}), progress=False)


def test_train_roundtrips_through_checkpoint_and_cache():
    cfg = TrainConfig(**TINY)
    model = train(cfg, progress=False)
    files = sorted(p.name for p in checkpoint_dir(cfg).iterdir())
    assert files == ["model.json", "model.safetensors"]
    loaded = load_or_train(cfg)  # from the cache, no training
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x, 1.0), loaded(x, 1.0))
    assert loaded.info["steps"] == 6 and loaded.info["hash"] == cfg.hash


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    import shutil

    cfg = TrainConfig(**{**TINY, "dropout": 0.1})
    torch.manual_seed(123)
    expected = torch.get_rng_state()
    a = train(cfg, progress=False)
    assert torch.equal(torch.get_rng_state(), expected)
    shutil.rmtree(checkpoint_dir(cfg))
    b = train(cfg, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_train_uses_the_cache_instead_of_retraining():
    cfg = TrainConfig(**TINY)
    train(cfg, progress=False)
    stamp = (checkpoint_dir(cfg) / "model.safetensors").stat().st_mtime_ns
    again = train(cfg, progress=False)
    assert (checkpoint_dir(cfg) / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.info["hash"] == cfg.hash


def test_corrupt_or_mismatched_checkpoints_are_detected():
    cfg = TrainConfig(**TINY)
    train(cfg, progress=False)
    weights = checkpoint_dir(cfg) / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(cfg)
    other = TrainConfig(**{**TINY, "seed": 5})
    with pytest.raises(CheckpointError, match="different config"):
        load_model(other, path=checkpoint_dir(cfg))


def test_conditional_training_and_molrg_data():
    cfg = TrainConfig(**{**TINY, "dataset": "molrg", "conditional": True, "backbone": "uvit-s", "steps": 2})
    data, held = training_data(cfg)
    assert len(data) == 64 and held is None
    model = train(cfg, progress=False)
    out = model(torch.randn(3, 1, 8, 8), 1.0, torch.tensor([0, 1, 4]))
    assert out.shape == (3, 1, 8, 8)


@pytest.mark.parametrize("experiment", ["same_noise", "architectures", "fine_tuning", "conditional"])
def test_profiles_and_fail_fast_resources(experiment, offline):
    for p in PROFILES:
        assert get_config(experiment, p).profile == p
    with pytest.raises(ValueError, match="unknown profile"):
        get_config(experiment, "tpu")
    with pytest.raises(ValueError, match="unknown experiment"):
        get_config("nope", "cpu")
    # the gpu profile stops at the first download it cannot make (offline here), before any training
    from reprodiff.data import ResourceUnavailableError
    cfg = get_config(experiment, "gpu")
    assert all(m.dataset == "cifar10" for m in cfg.models.values()) and cfg.descriptor == "sscd"
    with pytest.raises(ResourceUnavailableError, match="(?s)cifar10.*SSCD"):
        check_resources(list(cfg.models.values()), cfg.descriptor)


def test_load_or_train_many_trains_missing_models_in_parallel_and_keeps_order():
    from reprodiff.training import load_or_train_many
    a = TrainConfig(**{**TINY, "steps": 2})
    b = TrainConfig(**{**TINY, "steps": 2, "seed": 1})
    train(a, progress=False)  # one cached, one missing
    models = load_or_train_many({"b": b, "a": a}, workers=2, progress=False)
    assert list(models) == ["b", "a"] and models["b"].config == b and models["a"].config == a
    both = load_or_train_many([b, TrainConfig(**{**TINY, "steps": 2, "seed": 2}), a], workers=2, progress=False)
    assert [m.config.seed for m in both] == [1, 2, 0]
    with pytest.raises(ValueError, match="only 1797 images"):
        load_or_train_many([TrainConfig(**{**TINY, "n_train": 9999})], progress=False)


def test_train_missing_trains_only_what_is_missing_and_says_what(tmp_path):
    from reprodiff.cache import is_cached
    from reprodiff.training import train_missing

    a, b = TrainConfig(**{**TINY, "steps": 2}), TrainConfig(**{**TINY, "steps": 2, "seed": 1})
    train(a, progress=False)
    assert train_missing([a, b, b], workers=2, progress=False) == [b]  # duplicates train once
    assert is_cached(checkpoint_dir(b)) and train_missing([a, b], progress=False) == []


def test_training_step_ms_times_the_step_train_runs():
    from reprodiff.training import training_step_ms

    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    ms = training_step_ms(steps=2, repeats=1)
    assert 0 < ms < 10_000 and torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), state)


def test_load_or_train_many_trains_vaes_in_the_same_pool_to_the_same_bits(tmp_path, monkeypatch):
    from reprodiff.controls import MLPVAE, VAEConfig, load_or_train_vae
    from reprodiff.training import load_or_train_many

    vae = VAEConfig(hidden=32, steps=5, batch_size=8)
    net = TrainConfig(**{**TINY, "steps": 2})
    both = load_or_train_many({"net": net, "vae": vae}, workers=2, progress=False)  # trained in two processes
    assert list(both) == ["net", "vae"] and isinstance(both["vae"], MLPVAE) and both["net"].config == net
    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "other"))
    alone = load_or_train_vae(vae, progress=False)  # trained here, in this process
    assert all(torch.equal(a, b) for a, b in zip(both["vae"].state_dict().values(), alone.state_dict().values()))


def test_pool_schedules_by_flops_and_leaves_the_global_rng_alone():
    from reprodiff.profiles import digits_model, get_config
    from reprodiff.controls import VAEConfig

    mlp_xs, mlp_s = (get_config("regimes").sweep("molrg")._config(label, 1024, 0)
                     for label in get_config("regimes").sweep("molrg").sizes)
    state = torch.get_rng_state()
    costs = [cfg.training_flops() for cfg in (digits_model("unet-s"), digits_model("unet-xs"), mlp_s, mlp_xs)]
    vae = VAEConfig(hidden=512, steps=2000).training_flops()
    assert torch.equal(torch.get_rng_state(), state)
    # UNet-S, UNet-XS (600 steps each), MLP-S, MLP-XS (2,000 steps each): the order their recorded
    # training seconds have; VAE-512 (2,000 steps) above the MLPs and below the UNet-S
    assert costs == sorted(costs, reverse=True) and costs[2] < vae < costs[0]


def _plain_training_loop(cfg: TrainConfig):
    """What ``train`` computes in one process, written out: no accelerate, no cache, no resuming.

    The batch generator draws images, label-dropout draws, sigma and noise for each step in this
    order; dropout masks come from the global RNG, seeded with ``cfg.seed`` before initialisation.
    """
    from reprodiff.denoisers import denoising_loss, draw_noise
    from reprodiff.runtime import cpu_threads, derive_seed, flush_denormal
    from reprodiff.training import build_model

    data, _ = training_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.shape, data.num_classes)
    ema = build_model(cfg, data.shape, data.num_classes)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "train-batches"))
    model.train()
    with flush_denormal(), cpu_threads(1):
        for step in range(cfg.steps):
            idx = torch.randint(len(data), (cfg.batch_size,), generator=gen)
            y, cond = data.images[idx], None
            if cfg.conditional:
                drop = torch.rand(cfg.batch_size, generator=gen) < cfg.label_dropout
                cond = torch.where(drop, data.num_classes, data.labels[idx])
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
            sigma, noise = draw_noise(model.objective, y.shape, gen)
            loss = denoising_loss(model, model.objective, y, sigma, noise, cond)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.mul_(decay).add_(p, alpha=1 - decay)
    return ema


def test_single_process_training_is_the_plain_loop_bit_for_bit():
    # pins the trained bits of every cached model: train() in one process (its batch sharding,
    # accelerate, the resumable state) must change nothing the plain loop computes
    cfg = TrainConfig(**{**TINY, "conditional": True, "label_dropout": 0.3, "dropout": 0.1, "warmup": 3})
    trained = train(cfg, progress=False)
    plain = _plain_training_loop(cfg)
    assert trained.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, plain.state_dict()[k]) for k, a in trained.state_dict().items())


def test_a_run_another_contains_is_copied_from_its_snapshots_to_the_bits_training_gives(tmp_path, monkeypatch):
    """``train_missing`` trains only the longer of two runs that differ in length (and snapshots) and
    copies the shorter one's files from its snapshots: the weights and snapshots training the shorter
    one gives, bit for bit, with its losses and the seconds its steps took."""
    from reprodiff.cache import read_model
    from reprodiff.training import _snapshot_dir, prefix_source, train_from_prefix, train_missing

    short = TrainConfig(**{**TINY, "steps": 10, "snapshots": (5,), "dropout": 0.1})
    long = TrainConfig(**{**TINY, "steps": 20, "snapshots": (5, 10, 15), "dropout": 0.1})
    assert prefix_source(short, [long]) is long and prefix_source(long, [short]) is None
    assert prefix_source(TrainConfig(**{**TINY, "steps": 10, "snapshots": (5,), "seed": 1}), [long]) is None
    assert prefix_source(TrainConfig(**{**TINY, "steps": 10, "snapshots": (4,), "dropout": 0.1}), [long]) is None
    assert prefix_source(TrainConfig(**{**TINY, "steps": 5, "dropout": 0.1}), [long]) is None  # a loss row apart
    direct = train(short, progress=False)
    direct_snapshot = load_model(short, step=5)

    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "other"))
    assert train_missing([short, long], workers=1, progress=False) == [short, long]
    copied = load_model(short)
    assert copied.info["prefix_of"].startswith(long.name) and copied.info["steps"] == 10
    for a, b in ((direct, copied), (direct_snapshot, load_model(short, step=5))):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert copied.info["losses"] == direct.info["losses"]
    long_meta, _ = read_model(_snapshot_dir(checkpoint_dir(long), 10), long.hash, long.hashed_fields())
    assert copied.info["seconds"] == long_meta["seconds"] > 0
    with pytest.raises(ValueError, match="does not contain"):
        train_from_prefix(long, short)

    # the pool's path: the copy waits for the longer run, then happens in this process
    from concurrent.futures import ThreadPoolExecutor

    from reprodiff import training

    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "pool"))
    monkeypatch.setattr(training, "_pool_executor", lambda workers: ThreadPoolExecutor(workers))
    monkeypatch.setattr(training, "_IN_PROCESS_FLOPS", 0)
    assert train_missing([short, long], workers=2, progress=False) == [short, long]
    pooled = load_model(short)
    assert all(torch.equal(x, y) for x, y in zip(direct.state_dict().values(), pooled.state_dict().values()))
