"""Train many small models together: one vmapped step over stacked parameters (``torch.func``).

The regimes chapter trains a grid of same-architecture models that differ only in their training
subset and seed. ``train_many(configs)`` groups the configs whose networks have the same shape and
the same optimisation schedule, stacks each group's parameters (``stack_module_state``) and runs
*one* ``vmap(functional_call(...))`` forward/backward per step for the whole group, so the many
small kernels of a small UNet become fewer, larger ones.

Per model, the update is the one :func:`reprodiff.training.train` makes: the same initialisation
(``torch.manual_seed(cfg.seed)``), the same generator and order of random draws (batch indices,
label dropout, sigma, noise), the objective's weighted loss, AdamW with linear warm-up (Adam is
elementwise, so one AdamW over the stacked tensors is K independent AdamWs) and the same EMA.
Results agree with ``train(cfg)`` to float32 round-off (the vmapped kernels sum in another order),
not bitwise; ``train_many`` run twice on the same group is bit-identical.

Each finished model is written exactly where and how ``train`` writes it (``checkpoint_dir(cfg)``,
``model.safetensors`` + ``model.json``), so ``load_or_train(cfg)`` finds it. Resumable states use
``train``'s per-model format too (``state.safetensors`` + ``state.json`` in the model's directory):
an interrupted ``train_many`` resumes under ``train_many`` or ``train``, and vice versa.

On CPU training is single-threaded (as in ``train``: torch's worker threads ignore flush-to-zero);
``workers=n`` spreads the groups over ``n`` spawned processes, one core each. A worker whose parent
dies saves its resumable state and exits, as on Ctrl-C.

Speed (2-core AMD EPYC, UNet-XS, 40-step slopes measured by ``benchmarks/bench.py --only
ensemble``): vmap gains per core only where per-op overhead dominates a step. At batch 128 one UNet-XS
step already runs the convolutions near the core's FP32 peak (~60 GFLOP/s), vmap's batching rules
add elementwise work (separate bias and GroupNorm affine passes, layout copies), and a group of 8
is 0.98x as fast as 8 ``train`` runs (16: 0.95x); at batch 64 it is 1.28x (16: 1.20x), at batch 32
~1.5x. UNet-S gains nothing (0.88-1.09x at batch 128-32). With ``workers=2`` a group of 16 took
1.62x (batch 128) and 2.18x (batch 64) less time than one-by-one ``train``, against 2.08x and
2.07x for :func:`~reprodiff.training.load_or_train_many` (one model per process, no vmap).
``torch.compile`` of the vmapped step cost ~45 s of compilation and then ran ~20% slower; channels-last
is slower too. On a GPU, where a small model leaves most of the device idle, batching K models is
where vmap should pay off (not measured here).

Two ``vmap`` workarounds, applied to a private copy of the network only:

* diffusers' ``Attention`` defaults to ``F.scaled_dot_product_attention``, which has no batching
  rule on CPU (vmap falls back to a slow per-model loop); the copy uses the classic
  ``AttnProcessor`` (the same math with ``bmm`` and ``softmax``).
* after an attention block the activations can carry strides that ``group_norm`` inspects with a
  channels-last contiguity query that vmap does not implement ("NYI: querying is_contiguous inside
  of vmap for memory_format other than torch.contiguous_format"); a forward pre-hook makes every
  ``GroupNorm`` input contiguous first (a no-op for already contiguous inputs).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from . import __version__
from .backbones import count_parameters
from .data import ImageData
from .denoisers import Precond
from .sampling import flush_denormal
from .storage import atomic_save_safetensors, atomic_write_json, load_safetensors, read_json
from .training import (CACHE_FORMAT, TrainConfig, _check_meta, _lr_at, build_model, checkpoint_dir,
                       cpu_threads, load_model, training_data)

__all__ = ["train_many", "group_configs", "GROUP_FIELDS"]

#: config fields that must agree for models to train in one vmapped group (they fix the network's
#: shape or the optimiser's schedule); the rest (data subset, seed, label dropout, checkpointing)
#: may differ per model
GROUP_FIELDS = ("backbone", "objective", "conditional", "dropout", "steps", "batch_size", "lr", "warmup",
                "weight_decay", "ema")


@dataclass
class _Member:
    """One model of a group, with the state it starts from."""

    cfg: TrainConfig
    data: ImageData
    path: Path
    step: int = 0
    losses: list = field(default_factory=list)
    seconds: float = 0.0
    state: dict[str, torch.Tensor] | None = None  # train()-format resumable state, if any


def _group_key(cfg: TrainConfig, data: ImageData, step: int = 0) -> tuple:
    num_classes = data.num_classes if cfg.conditional else None  # sizes the class embedding
    return (*(getattr(cfg, f) for f in GROUP_FIELDS), tuple(data.shape), num_classes, step)


def _split(members: list, max_group: int | None) -> list[list]:
    if max_group is None:
        return [members]
    return [members[i:i + max_group] for i in range(0, len(members), max_group)]


def _unique(configs: Iterable[TrainConfig]) -> list[TrainConfig]:
    out, seen = [], set()
    for cfg in configs:
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"train_many takes TrainConfig objects, got {type(cfg).__name__}")
        if cfg.hash not in seen:
            seen.add(cfg.hash)
            out.append(cfg)
    return out


def group_configs(configs: Sequence[TrainConfig], max_group: int | None = None) -> list[list[TrainConfig]]:
    """Partition ``configs`` into the groups :func:`train_many` trains together (ignoring the cache).

    Configs are compatible when they agree on :data:`GROUP_FIELDS` and on the shape (and, for
    conditional models, the number of classes) of their data. Groups keep the order of first
    appearance; ``max_group`` caps a group's size. Duplicates are dropped.
    """
    groups: dict[tuple, list[TrainConfig]] = {}
    for cfg in _unique(configs):
        data, _ = training_data(cfg)
        groups.setdefault(_group_key(cfg, data), []).append(cfg)
    return [chunk for g in groups.values() for chunk in _split(g, max_group)]


def _pending_member(cfg: TrainConfig) -> _Member:
    data, _ = training_data(cfg)  # raises on impossible subsets before anything heavy
    path = checkpoint_dir(cfg)
    m = _Member(cfg, data, path)
    state_json, state_file = path / "state.json", path / "state.safetensors"
    if state_json.exists() and state_file.exists():
        meta = read_json(state_json)
        _check_meta(meta, cfg, path)
        m.state = load_safetensors(state_file)
        m.step, m.losses, m.seconds = meta["step"], meta["losses"], meta["seconds"]
    return m


def train_many(configs: Sequence[TrainConfig], progress: bool = True, device: str | None = None,
               max_group: int | None = None, workers: int | None = None) -> list[Precond]:
    """Train every config not yet in the cache, compatible ones together, and return all the models.

    Args:
        configs: any list of :class:`~reprodiff.training.TrainConfig`; they are grouped by
            :data:`GROUP_FIELDS` (plus data shape and, when resuming, the step reached) and each
            group trains as one vmapped ensemble. Cached configs are skipped; duplicates train once.
        progress: one tqdm bar over all model-steps.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
        max_group: largest number of models stacked in one group (memory grows linearly with it).
        workers: CPU only: split the groups over this many (spawned) processes, one core each,
            since training on CPU is single-threaded as in ``train``. Default
            ``$REPRODIFF_WORKERS``, else the number of CPU cores (1 on an accelerator), as
            :func:`~reprodiff.training.load_or_train_many`.

    Returns:
        The EMA models in the order of ``configs``, loaded from the cache exactly as
        :func:`~reprodiff.training.load_or_train` returns them (eval mode, ``.config``, ``.info``).
    """
    from tqdm.auto import tqdm

    if max_group is not None and max_group < 1:
        raise ValueError("max_group must be positive (or None for no limit)")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cpu = torch.device(device).type == "cpu"
    if workers is None:
        workers = int(os.environ.get("REPRODIFF_WORKERS", 0)) or ((os.cpu_count() or 1) if on_cpu else 1)
    if workers < 1:
        raise ValueError("workers must be positive")
    if workers > 1 and not on_cpu:
        raise ValueError("workers > 1 splits CPU cores between processes; use workers=1 on an accelerator")
    configs = list(configs)
    todo = [c for c in _unique(configs) if not (checkpoint_dir(c) / "model.json").exists()]
    members = [_pending_member(c) for c in todo]  # validates every config before any training
    groups: dict[tuple, list[_Member]] = {}
    for m in members:
        groups.setdefault(_group_key(m.cfg, m.data, m.step), []).append(m)
    chunks = [chunk for g in groups.values() for chunk in _split(g, max_group)]
    plan = _assign(chunks, workers) if workers > 1 and chunks else None
    if plan is not None and len(plan) == 1:  # one worker would only add a process start
        plan = None
    n_groups = sum(len(a) for a in plan) if plan else len(chunks)

    total = sum(m.cfg.steps - m.step for m in members)
    desc = f"training {len(members)} models in {n_groups} group{'s' * (n_groups != 1)}"
    if plan:
        desc += f" on {len(plan)} workers"
    bar = tqdm(total=total, initial=0, unit="model-step", disable=not progress or not members, desc=desc)
    try:
        if plan:
            _run_workers([[[m.cfg for m in c] for c in a] for a in plan], bar)
        else:
            for i, chunk in enumerate(chunks):
                _train_group(chunk, torch.device(device), bar, f"group {i + 1}/{len(chunks)}")
    finally:
        bar.close()
    return [load_model(c) for c in configs]


# ----------------------------------------------------------------------------- worker processes


def _assign(chunks: list[list[_Member]], workers: int) -> list[list[list[_Member]]]:
    """Split groups bigger than a fair share of the work into near-equal parts, then deal them out."""
    def cost(chunk):
        return sum(m.cfg.steps - m.step for m in chunk)  # model-steps (ignores architecture cost)

    fair = sum(cost(c) for c in chunks) / workers
    out = []
    for c in chunks:
        parts = min(len(c), math.ceil(cost(c) / fair - 1e-9))
        size = math.ceil(len(c) / parts)
        out.extend(c[i:i + size] for i in range(0, len(c), size))
    plan: list[list[list[_Member]]] = [[] for _ in range(workers)]
    load = [0] * workers
    for c in sorted(out, key=cost, reverse=True):
        w = load.index(min(load))
        plan[w].append(c)
        load[w] += cost(c)
    return [p for p in plan if p]


class _QueueBar:
    """What ``_train_group`` needs of a tqdm bar, forwarded to the parent process."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def update(self, n: int) -> None:
        self.queue.put(("steps", n))

    def set_postfix_str(self, text: str) -> None:
        self.queue.put(("postfix", text))


def _interrupt_if_orphaned(queue) -> None:  # pragma: no cover - subprocess
    # a parent killed without the chance to stop its workers (SIGTERM, SIGKILL) must not leave them
    # training: save the resumable state, as on Ctrl-C, and exit without waiting on the dead reader
    import _thread
    from multiprocessing import parent_process

    parent = parent_process()
    if parent is not None:
        parent.join()
        queue.cancel_join_thread()
        _thread.interrupt_main()


def _worker(chunks: list[list[TrainConfig]], queue) -> None:  # pragma: no cover - subprocess
    import signal
    import threading
    import traceback

    def interrupt(*_):
        # Ctrl-C reaches both the process group and (from the parent) this process: save once
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    threading.Thread(target=_interrupt_if_orphaned, args=(queue,), daemon=True).start()
    try:
        for i, chunk in enumerate(chunks):
            _train_group([_pending_member(c) for c in chunk], torch.device("cpu"), _QueueBar(queue),
                         f"worker group {i + 1}/{len(chunks)}")
    except KeyboardInterrupt:
        queue.put(("interrupted", None))
    except BaseException:
        queue.put(("error", traceback.format_exc()))
    else:
        queue.put(("done", None))


def _run_workers(plan: list[list[list[TrainConfig]]], bar) -> None:
    import multiprocessing
    import queue as queue_module
    import signal

    ctx = multiprocessing.get_context("spawn")  # fork would copy the parent's threads and locks
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(chunks, queue), daemon=True) for chunks in plan]
    for p in procs:
        p.start()
    finished, errors = 0, []
    try:
        while finished < len(procs):
            try:
                kind, value = queue.get(timeout=0.5)
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a train_many worker died (exit code {dead[0]}); saved states resume on "
                                       "the next call. A script using workers > 1 needs the "
                                       "`if __name__ == '__main__':` guard of multiprocessing's spawn") from None
                continue
            if kind == "steps":
                bar.update(value)
            elif kind == "postfix":
                bar.set_postfix_str(value)
            elif kind == "interrupted":
                raise KeyboardInterrupt
            else:
                finished += 1
                if kind == "error":
                    errors.append(value)
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)  # each saves its resumable states, then exits
        for p in procs:
            p.join(timeout=120)
        raise
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    if errors:
        raise RuntimeError("a train_many worker failed:\n" + errors[0])


# ----------------------------------------------------------------------------- one vmapped group


def _contiguous_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _vmappable_copy(model: Precond) -> Precond:
    """A parameter-free copy of ``model`` (meta tensors) with the two vmap workarounds applied."""
    from diffusers.models.attention_processor import Attention, AttnProcessor

    template = copy.deepcopy(model).to("meta")
    for mod in template.modules():
        if isinstance(mod, Attention):
            mod.set_processor(AttnProcessor())
        elif isinstance(mod, nn.GroupNorm):
            mod.register_forward_pre_hook(_contiguous_input)
    return template


def _train_group(members: list[_Member], device: torch.device, bar, label: str) -> None:
    from torch.func import functional_call, stack_module_state, vmap

    cfg0 = members[0].cfg
    K, B, step0 = len(members), cfg0.batch_size, members[0].step
    shape, num_classes = members[0].data.shape, members[0].data.num_classes
    null_label = num_classes

    # per model exactly as train(): seeded initialisation, its own generator, optional resume
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        nets, emas, gens = [], [], []
        for m in members:
            torch.manual_seed(m.cfg.seed)
            net = build_model(m.cfg, shape, num_classes)
            ema = copy.deepcopy(net)
            gen = torch.Generator().manual_seed(m.cfg.seed * 7919 + 1)
            if m.state is not None:
                net.load_state_dict({k[4:]: v for k, v in m.state.items() if k.startswith("net.")})
                ema.load_state_dict({k[4:]: v for k, v in m.state.items() if k.startswith("ema.")})
                gen.set_state(m.state["rng"])
            nets.append(net)
            emas.append(ema)
            gens.append(gen)
    # only dropout (vmap randomness="different") reads the global RNG: seed it from the group
    dropout_seed = int(hashlib.sha256(" ".join(m.cfg.hash for m in members).encode()).hexdigest()[:15], 16) + step0

    params, buffers = stack_module_state(nets)  # {name: (K, ...)} leaves; params require grad
    params = {k: v.detach().to(device).requires_grad_() for k, v in params.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    ema_params = {k: v.detach().to(device) for k, v in stack_module_state(emas)[0].items()}
    names = list(params)
    plist = [params[k] for k in names]
    ema_list = [ema_params[k] for k in names]

    opt = torch.optim.AdamW(plist, lr=cfg0.lr, weight_decay=cfg0.weight_decay)
    if all(m.state is not None and "opt.0.step" in m.state for m in members):
        for pid, p in enumerate(plist):
            opt.state[p] = {
                "step": members[0].state[f"opt.{pid}.step"].clone(),
                "exp_avg": torch.stack([m.state[f"opt.{pid}.exp_avg"] for m in members]).to(device),
                "exp_avg_sq": torch.stack([m.state[f"opt.{pid}.exp_avg_sq"] for m in members]).to(device),
            }
    for m in members:
        m.state = None  # loaded; free the memory

    template = _vmappable_copy(nets[0]).train()
    objective = template.objective

    def member_loss(p, b, y, n, sigma, cond):
        # Precond.loss for one model, with its noise passed in instead of drawn
        s = sigma.reshape(-1, 1, 1, 1)
        x0_hat = functional_call(template, (p, b), (y + s * n, sigma, cond))
        return (objective.weight(s) * (x0_hat - y) ** 2).mean()

    conditional = cfg0.conditional
    batched_loss = vmap(member_loss, in_dims=(0, 0, 0, 0, 0, 0 if conditional else None),
                        randomness="different" if cfg0.dropout > 0 else "error")

    images = [m.data.images.to(device) for m in members]
    labels = [m.data.labels.to(device) for m in members]

    def draw_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # the draws of train() + Precond.loss, in the same order, from each model's own generator
        ys, ns, sigmas, conds = [], [], [], []
        for m, g, im, lab in zip(members, gens, images, labels):
            idx = torch.randint(len(m.data), (B,), generator=g).to(device)
            if conditional:
                drop = torch.rand(B, generator=g).to(device) < m.cfg.label_dropout
                conds.append(torch.where(drop, torch.full_like(lab[idx], null_label), lab[idx]))
            sigmas.append(objective.sample_sigma(B, g))
            ns.append(torch.randn((B, *shape), generator=g))
            ys.append(im[idx])
        cond = torch.stack(conds) if conditional else None
        return torch.stack(ys), torch.stack(ns).to(device), torch.stack(sigmas).to(device), cond

    running: list[float | None] = [None] * K
    every = min(m.cfg.checkpoint_every for m in members)
    step, t0 = step0, time.perf_counter()

    def elapsed_share() -> float:
        nonlocal t0
        t = time.perf_counter()
        share, t0 = (t - t0) / K, t
        return share

    def save_states() -> None:
        share = elapsed_share()
        opt_states = [opt.state.get(p, {}) for p in plist]
        for k, (m, net, ema, gen) in enumerate(zip(members, nets, emas, gens)):
            m.seconds += share
            _load_slice(net, params, k)
            _load_slice(ema, ema_params, k)
            tensors = {f"opt.{pid}.{name}": (v if name == "step" else v[k]).clone()
                       for pid, st in enumerate(opt_states) for name, v in st.items()}
            tensors.update({f"net.{n}": v for n, v in net.state_dict().items()})
            tensors.update({f"ema.{n}": v for n, v in ema.state_dict().items()})
            tensors["rng"] = gen.get_state()
            atomic_save_safetensors(tensors, m.path / "state.safetensors")
            atomic_write_json(dict(hash=m.cfg.hash, config=m.cfg.to_dict(), step=step, losses=m.losses,
                                   seconds=m.seconds, version=__version__), m.path / "state.json")

    for m in members:
        m.path.mkdir(parents=True, exist_ok=True)
    try:
        # single-threaded on CPU, as train(): worker threads ignore flush-to-zero (see cpu_threads)
        with flush_denormal(), cpu_threads(1 if device.type == "cpu" else None), torch.random.fork_rng(devices=[]):
            torch.manual_seed(dropout_seed)
            while step < cfg0.steps:
                y, n, sigma, cond = draw_batch()
                for group in opt.param_groups:
                    group["lr"] = _lr_at(cfg0, step)
                losses = batched_loss(params, buffers, y, n, sigma, cond)  # (K,)
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()  # models share no parameters: the sum's gradient is per model
                opt.step()
                decay = min(cfg0.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_mul_(ema_list, decay)
                    torch._foreach_add_(ema_list, plist, alpha=1 - decay)
                step += 1
                for k, value in enumerate(losses.detach().cpu().tolist()):
                    running[k] = value if running[k] is None else 0.98 * running[k] + 0.02 * value
                    if step % 10 == 0 or step == cfg0.steps:
                        members[k].losses.append([step, round(running[k], 6)])
                bar.update(K)
                if step % 50 == 0:
                    bar.set_postfix_str(f"{label}, {K} models, mean loss {sum(running) / K:.4f}")
                if step % every == 0 and step < cfg0.steps:
                    save_states()
    except KeyboardInterrupt:
        save_states()
        raise

    share = elapsed_share()
    for k, (m, ema) in enumerate(zip(members, emas)):
        m.seconds += share
        _load_slice(ema, ema_params, k)
        meta = dict(hash=m.cfg.hash, config=m.cfg.to_dict(), version=__version__, format=CACHE_FORMAT,
                    steps=step, seconds=round(m.seconds, 2), losses=m.losses, shape=list(shape),
                    num_classes=num_classes, n_train=len(m.data), parameters=count_parameters(ema.backbone),
                    ensemble=K)
        # weights first, metadata last: a model.json always has its weights
        atomic_save_safetensors(ema.state_dict(), m.path / "model.safetensors")
        atomic_write_json(meta, m.path / "model.json")
        for f in ("state.safetensors", "state.json"):
            (m.path / f).unlink(missing_ok=True)


def _load_slice(module: nn.Module, stacked: dict[str, torch.Tensor], k: int) -> None:
    """Copy model ``k``'s slice of stacked parameters into ``module`` (on CPU)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(stacked[name][k].detach().cpu())
