import json

import pytest
import torch

import reprodiff.ensemble as ens
from reprodiff.ensemble import group_configs, train_many
from reprodiff.training import TrainConfig, checkpoint_dir, load_or_train, train

TINY = dict(backbone="unet-xs", steps=6, batch_size=8, checkpoint_every=3, n_train=64)
# vmapped kernels sum in another order than the per-model ones: agreement is float32 round-off,
# amplified a little by Adam's normalisation over 6 steps (observed max abs difference ~1e-6)
ATOL = 2e-5


@pytest.fixture(autouse=True)
def _in_process(monkeypatch):
    # train_many (and train) run single-threaded on CPU; keep the reference runs here in this process
    # too, and start worker processes only where a test asks for them
    monkeypatch.setenv("REPRODIFF_WORKERS", "1")


def _assert_close(a, b, atol=ATOL):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=atol, rtol=0), (k, (sa[k] - sb[k]).abs().max())


def _assert_equal(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def _wipe(cfg):
    for f in checkpoint_dir(cfg).iterdir():
        f.unlink()


def test_train_many_of_one_matches_train_and_uses_its_cache_format():
    cfg = TrainConfig(**TINY)
    ref = train(cfg, progress=False)
    meta_ref = json.loads((checkpoint_dir(cfg) / "model.json").read_text())
    _wipe(cfg)

    (model,) = train_many([cfg], progress=False)
    assert sorted(p.name for p in checkpoint_dir(cfg).iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((checkpoint_dir(cfg) / "model.json").read_text())
    assert set(meta) == set(meta_ref) | {"ensemble"} and meta["ensemble"] == 1
    for key in ("hash", "config", "format", "steps", "shape", "num_classes", "n_train", "parameters"):
        assert meta[key] == meta_ref[key], key
    assert meta["losses"][-1][0] == meta_ref["losses"][-1][0]
    assert meta["losses"][-1][1] == pytest.approx(meta_ref["losses"][-1][1], rel=1e-4)
    _assert_close(model, ref)
    loaded = load_or_train(cfg)  # found in the cache: no training
    _assert_equal(loaded, model)
    assert not loaded.training and loaded.info["hash"] == cfg.hash


@pytest.mark.parametrize("extra", [dict(objective="v", conditional=True), dict(objective="eps", backbone="uvit-xs"),
                                   dict(backbone="unet-xs-attn")])  # attention: both vmap workarounds
def test_train_many_matches_train_for_other_objectives_and_backbones(extra):
    cfg = TrainConfig(**{**TINY, **extra})
    ref = train(cfg, progress=False)
    _wipe(cfg)
    _assert_close(train_many([cfg], progress=False)[0], ref)


def test_models_trained_together_equal_each_trained_alone(tmp_path, monkeypatch):
    cfgs = [TrainConfig(**{**TINY, "n_train": 32}),
            TrainConfig(**{**TINY, "seed": 1}),
            TrainConfig(**{**TINY, "n_train": 48, "subset_seed": 3, "seed": 2})]
    together = train_many(cfgs, progress=False)
    assert [m.info["ensemble"] for m in together] == [3, 3, 3]
    assert [m.info["n_train"] for m in together] == [32, 64, 48]
    for i, (cfg, m) in enumerate(zip(cfgs, together)):
        monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / f"alone{i}"))
        _assert_close(m, train_many([cfg], progress=False)[0])
    # and they really are different models
    a, b = together[0].state_dict(), together[1].state_dict()
    assert not torch.allclose(a["backbone.net.conv_in.weight"], b["backbone.net.conv_in.weight"])


def test_train_many_is_deterministic():
    cfgs = [TrainConfig(**TINY), TrainConfig(**{**TINY, "seed": 1, "n_train": 32})]
    first = train_many(cfgs, progress=False)
    for c in cfgs:
        _wipe(c)
    second = train_many(cfgs, progress=False)
    for a, b in zip(first, second):
        _assert_equal(a, b)


def test_dropout_draws_differ_per_model_and_are_deterministic():
    cfgs = [TrainConfig(**{**TINY, "dropout": 0.5}), TrainConfig(**{**TINY, "dropout": 0.5, "seed": 1})]
    first = train_many(cfgs, progress=False)
    for c in cfgs:
        _wipe(c)
    second = train_many(cfgs, progress=False)
    for a, b in zip(first, second):
        _assert_equal(a, b)
    no_dropout = train_many([TrainConfig(**TINY)], progress=False)[0]
    assert not torch.allclose(first[0].state_dict()["backbone.net.conv_in.weight"],
                              no_dropout.state_dict()["backbone.net.conv_in.weight"], atol=1e-4)


def test_incompatible_configs_are_grouped_and_all_trained_in_order():
    a = TrainConfig(**TINY)
    b = TrainConfig(**{**TINY, "seed": 1, "n_train": 32})
    c = TrainConfig(**{**TINY, "batch_size": 4})          # another batch: another group
    d = TrainConfig(**{**TINY, "backbone": "uvit-xs"})    # another architecture: another group
    assert group_configs([a, c, b, d, a]) == [[a, b], [c], [d]]
    assert group_configs([a, b], max_group=1) == [[a], [b]]
    models = train_many([a, c, b, d, a], progress=False)
    assert [m.config for m in models] == [a, c, b, d, a]
    assert [m.info["ensemble"] for m in models] == [2, 1, 2, 1, 2]


def test_work_is_split_evenly_over_workers():
    def members(n, steps=6):
        return [ens._pending_member(TrainConfig(**{**TINY, "steps": steps, "seed": s})) for s in range(n)]

    def sizes(plan):
        return [[len(chunk) for chunk in worker] for worker in plan]

    assert sizes(ens._assign([members(16)], 2)) == [[8], [8]]
    assert sizes(ens._assign([members(3)], 2)) == [[2], [1]]
    # a long group is split, short ones fill the other worker
    assert sizes(ens._assign([members(4, steps=60), members(2), members(2)], 2)) == [[2, 2], [2, 2]]
    assert sizes(ens._assign([members(1)], 4)) == [[1]]


def test_worker_processes_train_the_same_models(tmp_path, monkeypatch):
    cfgs = [TrainConfig(**{**TINY, "seed": s, "n_train": 32 + 8 * s}) for s in range(2)]
    in_process = train_many(cfgs, progress=False)
    monkeypatch.setenv("REPRODIFF_CACHE", str(tmp_path / "workers"))
    in_workers = train_many(cfgs, progress=False, workers=2)  # one model in each of two processes
    assert [m.info["ensemble"] for m in in_workers] == [1, 1]
    for a, b in zip(in_process, in_workers):
        _assert_close(a, b)


def test_cached_configs_are_skipped():
    a, b = TrainConfig(**TINY), TrainConfig(**{**TINY, "seed": 1})
    train_many([a], progress=False)
    stamp = (checkpoint_dir(a) / "model.json").stat().st_mtime_ns
    models = train_many([a, b], progress=False)
    assert (checkpoint_dir(a) / "model.json").stat().st_mtime_ns == stamp
    assert [m.info["ensemble"] for m in models] == [1, 1]


def _interrupt_after_first_checkpoint(monkeypatch, n_members):
    real, calls = ens.atomic_write_json, []

    def interrupt(obj, path):
        real(obj, path)
        if path.name == "state.json":
            calls.append(path)
            if len(calls) == n_members:  # every member has written its step-3 state
                raise KeyboardInterrupt
    monkeypatch.setattr(ens, "atomic_write_json", interrupt)
    return real


def test_interrupted_group_resumes_and_matches_an_uninterrupted_run(monkeypatch):
    cfgs = [TrainConfig(**TINY), TrainConfig(**{**TINY, "seed": 1, "n_train": 32})]
    full = train_many(cfgs, progress=False)
    for c in cfgs:
        _wipe(c)

    real = _interrupt_after_first_checkpoint(monkeypatch, len(cfgs))
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, progress=False)
    monkeypatch.setattr(ens, "atomic_write_json", real)
    for c in cfgs:
        state = json.loads((checkpoint_dir(c) / "state.json").read_text())
        assert state["step"] == 3 and not (checkpoint_dir(c) / "model.json").exists()

    resumed = train_many(cfgs, progress=False)
    for a, b in zip(full, resumed):
        assert b.info["steps"] == 6 and not (checkpoint_dir(b.config) / "state.json").exists()
        _assert_close(a, b, atol=1e-6)


def test_state_format_is_shared_with_train(monkeypatch):
    cfg = TrainConfig(**TINY)
    full = train(cfg, progress=False)
    _wipe(cfg)
    real = _interrupt_after_first_checkpoint(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_many([cfg], progress=False)
    monkeypatch.setattr(ens, "atomic_write_json", real)
    resumed = train(cfg, progress=False)  # train() picks up train_many's step-3 state
    assert resumed.info["steps"] == 6
    _assert_close(full, resumed)


def test_bad_inputs_raise_before_training():
    with pytest.raises(TypeError, match="TrainConfig"):
        train_many([dict(TINY)], progress=False)
    with pytest.raises(ValueError, match="max_group"):
        train_many([TrainConfig(**TINY)], progress=False, max_group=0)
    with pytest.raises(ValueError, match="workers"):
        train_many([TrainConfig(**TINY)], progress=False, workers=0)
    with pytest.raises(ValueError, match="CPU"):
        train_many([TrainConfig(**TINY)], progress=False, device="cuda", workers=2)
    ok, bad = TrainConfig(**TINY), TrainConfig(**{**TINY, "n_train": 5000})
    with pytest.raises(ValueError, match="only 1797 images"):
        train_many([ok, bad], progress=False)
    assert not checkpoint_dir(ok).exists()
