"""Package benchmarks (not timed tests): run ``python benchmarks/bench.py`` and read the ratios.

Every comparison is measured in this one run against a baseline measured alongside it:

1. training step time of ``reprodiff.training.train`` vs a plain hand-written diffusers loop
   (``UNet2DModel`` + ``DDPMScheduler.add_noise`` + epsilon MSE, the diffusers tutorial's loop) on the
   same backbone and batch. Goal: ratio <= 1.05.
2. the empirical optimal denoiser D* (streaming log-sum-exp over chunks) vs the naive broadcast
   formula, at N = 1,797 digits: time per call and peak memory, each in a fresh subprocess.
   Goal: >= 10x.
3. sampler throughput in images/s for every sampler.
4. (``--only sample-cache``) a chapter's sampling of a trained network (512 seeds, Heun-18, batch
   256, as the chapters sample) served from the sample cache vs sampled, both in this run.
5. (``--only step-variants``) ways to make one CPU training step faster, each as a ratio to the
   plain eager step measured in the same run: channels-last memory format, fused AdamW, oneDNN
   convolutions switched off, and ``torch.compile`` (its compile time reported apart).

Earlier measurements of code that has left the package (vmapped model ensembles) are in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_training(steps: int, batch: int, backbone: str) -> dict:
    """Per-step cost of both loops as the slope between a short and a long run (fixed set-up cost,
    e.g. building the model, its EMA copy and the Accelerator, is reported separately)."""
    from diffusers import DDPMScheduler

    from reprodiff.backbones import build_backbone
    from reprodiff.data import load_dataset
    from reprodiff.runtime import cpu_threads
    from reprodiff.training import TrainConfig, train

    data = load_dataset("digits")

    def ours(n):
        os.environ["REPRODIFF_CACHE"] = tempfile.mkdtemp()
        train(TrainConfig(backbone=backbone, steps=n, batch_size=batch, checkpoint_every=10**9), progress=False)

    def plain(n):
        # same threading as train() on CPU (single-threaded; see reprodiff.runtime.cpu_threads)
        with cpu_threads(1 if not torch.cuda.is_available() else None):
            plain_loop(n)

    def plain_loop(n):
        torch.manual_seed(0)
        unet = build_backbone(backbone, data.shape).net  # the same diffusers UNet2DModel
        sched = DDPMScheduler(num_train_timesteps=1000)
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        torch.set_flush_denormal(True)
        for _ in range(n):
            y = data.images[torch.randint(len(data), (batch,), generator=g)]
            noise = torch.randn(y.shape, generator=g)
            t = torch.randint(0, 1000, (batch,), generator=g)
            pred = unet(sched.add_noise(y, noise, t), t).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.set_flush_denormal(False)

    short = max(steps // 4, 1)
    ours(short)  # warm-up (imports, first allocations)
    res = {}
    for name, fn in (("plain", plain), ("ours", ours)):
        t_short = _best_of(lambda fn=fn: fn(short), 2)
        t_long = _best_of(lambda fn=fn: fn(steps), 2)
        per_step = (t_long - t_short) / (steps - short)
        res[name] = (per_step, t_short - short * per_step)
    return {"backbone": backbone, "batch": batch, "steps": steps,
            "ours_ms_per_step": 1000 * res["ours"][0], "plain_ms_per_step": 1000 * res["plain"][0],
            "ours_setup_s": res["ours"][1], "plain_setup_s": res["plain"][1],
            "ratio": res["ours"][0] / res["plain"][0]}


_DSTAR_CHILD = r"""
import json, resource, sys, time, torch
from reprodiff.data import load_dataset
from reprodiff.denoisers import OptimalDenoiser, optimal_denoiser_naive
mode, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
train = load_dataset("digits").images
x = torch.randn(batch, *train.shape[1:]) * 2.0
fast = OptimalDenoiser(train)
fn = (lambda: fast(x, 1.0)) if mode == "chunked" else (lambda: optimal_denoiser_naive(train, x, 1.0))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn()
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
working = (x.shape[0] * len(train) * x[0].numel() * 8 if mode == "naive"
           else x.shape[0] * (min(fast.chunk_size, len(train)) + x[0].numel()) * 8)
print(json.dumps({"seconds": min(times), "peak_extra_mb": (peak - base) / 1024, "n_train": len(train),
                  "working_set_mb": working / 2**20}))
"""


def bench_optimal_denoiser(batch: int, repeats: int) -> dict:
    out = {}
    for mode in ("chunked", "naive"):
        res = subprocess.run([sys.executable, "-c", _DSTAR_CHILD, mode, str(batch), str(repeats)],
                             capture_output=True, text=True, check=True)
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    out["speedup"] = out["naive"]["seconds"] / out["chunked"]["seconds"]
    out["memory_ratio"] = out["naive"]["working_set_mb"] / out["chunked"]["working_set_mb"]
    out["batch"] = batch
    return out


def bench_samplers(backbone: str, n: int, steps: int) -> dict:
    from reprodiff.backbones import build_backbone
    from reprodiff.denoisers import Precond
    from reprodiff.sampling import SAMPLERS, generate

    torch.manual_seed(0)
    model = Precond(build_backbone(backbone, (1, 8, 8)), "edm").eval()
    out = {}
    for name in SAMPLERS:
        kw = {"step_noise_stream": 0} if name == "euler-ancestral" else {}
        generate(model, range(16), (1, 8, 8), sampler=name, steps=steps, **kw)  # warm-up
        t = _best_of(lambda name=name, kw=kw: generate(model, range(n), (1, 8, 8), sampler=name, steps=steps, batch_size=n, **kw), 2)
        out[name] = {"images_per_s": n / t, "seconds": t}
    return {"backbone": backbone, "n": n, "steps": steps, "samplers": out}


def bench_sample_cache(backbone: str, n: int = 512) -> dict:
    """Seconds to get a chapter's samples of one network: sampled (cache off) vs read from the cache,
    in a throwaway cache folder; the two must be the same bits."""
    from reprodiff.backbones import build_backbone
    from reprodiff.denoisers import Precond
    from reprodiff.sampling import generate

    torch.manual_seed(0)
    model = Precond(build_backbone(backbone, (1, 8, 8)), "edm").eval()
    kw = dict(sampler="heun", steps=18, batch_size=256)
    previous = os.environ.get("REPRODIFF_CACHE")
    os.environ["REPRODIFF_CACHE"] = tempfile.mkdtemp(prefix="reprodiff-bench-")
    try:
        t0 = time.perf_counter()
        sampled = generate(model, range(n), (1, 8, 8), cache_samples=False, **kw)
        t_sample = time.perf_counter() - t0
        generate(model, range(n), (1, 8, 8), **kw)  # fills the cache
        t0 = time.perf_counter()
        served = generate(model, range(n), (1, 8, 8), **kw)
        t_served = time.perf_counter() - t0
    finally:
        if previous is None:
            os.environ.pop("REPRODIFF_CACHE")
        else:
            os.environ["REPRODIFF_CACHE"] = previous
    return {"backbone": backbone, "n": n, "sampled_s": t_sample, "served_s": t_served,
            "speedup": t_sample / t_served, "identical": bool(torch.equal(sampled.images, served.images))}


def bench_step_variants(backbone: str, batch: int, steps: int, compile_: bool) -> dict:
    """Milliseconds per training step (forward, backward, AdamW) of one backbone under each variant,
    single-threaded as ``train`` runs on CPU; best of two timed blocks of ``steps`` steps each."""
    from reprodiff.denoisers import denoising_loss, draw_noise
    from reprodiff.runtime import cpu_threads
    from reprodiff.training import TrainConfig, build_model

    def run(variant: str) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build_model(TrainConfig(backbone=backbone), (1, 8, 8), 10)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=variant == "fused AdamW")
        layout = torch.channels_last if variant == "channels-last" else torch.contiguous_format
        model = model.to(memory_format=layout)
        net = torch.compile(model) if variant == "torch.compile" else model
        g = torch.Generator().manual_seed(0)
        y = torch.randn(batch, 1, 8, 8).contiguous(memory_format=layout)

        def step():
            sigma, noise = draw_noise(model.objective, y.shape, g)
            loss = denoising_loss(net, model.objective, y, sigma, noise, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        mkldnn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = variant != "oneDNN off"
        try:
            with cpu_threads(1):
                t0 = time.perf_counter()
                for _ in range(3):  # warm-up (and compilation)
                    step()
                warm = time.perf_counter() - t0
                best = _best_of(lambda: [step() for _ in range(steps)], 2)
        finally:
            torch.backends.mkldnn.enabled = mkldnn
        return 1000 * best / steps, warm

    variants = ["eager", "channels-last", "fused AdamW", "oneDNN off"] + (["torch.compile"] if compile_ else [])
    out = {v: run(v) for v in variants}
    base = out["eager"][0]
    return {"backbone": backbone, "batch": batch,
            "variants": {v: dict(ms=ms, warmup_s=w, speedup=base / ms) for v, (ms, w) in out.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-steps", type=int, default=80)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--backbone", default="unet-s")
    p.add_argument("--only", choices=["train", "dstar", "samplers", "sample-cache", "step-variants"], default=None)
    p.add_argument("--compile", action="store_true", help="include torch.compile in step-variants (minutes)")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"max RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.only in (None, "train"):
        r = bench_training(args.train_steps, args.batch, args.backbone)
        print(f"[train] {r['backbone']}, batch {r['batch']}, {r['steps']} steps: ours {r['ours_ms_per_step']:.1f} ms/step, "
              f"plain diffusers loop {r['plain_ms_per_step']:.1f} ms/step -> ratio {r['ratio']:.3f} (goal <= 1.05); "
              f"one-off set-up {r['ours_setup_s']:.2f} s vs {r['plain_setup_s']:.2f} s")
    if args.only in (None, "dstar"):
        r = bench_optimal_denoiser(batch=256, repeats=3)
        c, nv = r["chunked"], r["naive"]
        print(f"[D*] N={c['n_train']}, batch {r['batch']}, one call: chunked {1000 * c['seconds']:.1f} ms "
              f"(working set {c['working_set_mb']:.1f} MB, measured peak RSS growth {c['peak_extra_mb']:.0f} MB), "
              f"naive {1000 * nv['seconds']:.1f} ms (working set {nv['working_set_mb']:.0f} MB, measured peak RSS "
              f"growth {nv['peak_extra_mb']:.0f} MB) -> {r['speedup']:.1f}x faster (goal >= 10x), "
              f"{r['memory_ratio']:.0f}x smaller working set")
    if args.only in (None, "samplers"):
        r = bench_samplers(args.backbone, n=256, steps=18)
        for name, v in r["samplers"].items():
            print(f"[sampler] {name:16s} {r['backbone']}, {r['steps']} steps, {r['n']} images: "
                  f"{v['images_per_s']:.0f} images/s")
    if args.only in (None, "sample-cache"):
        for backbone in ("unet-xs", "unet-s"):
            r = bench_sample_cache(backbone)
            print(f"[sample cache] {backbone}, {r['n']} seeds, heun-18: sampled {r['sampled_s']:.2f} s, served from the "
                  f"cache {1000 * r['served_s']:.1f} ms -> {r['speedup']:.0f}x (identical bits: {r['identical']})")
    if args.only == "step-variants":
        for backbone in ("unet-xs", "unet-s"):
            r = bench_step_variants(backbone, 64, 20, args.compile)
            for name, v in r["variants"].items():
                print(f"[step] {backbone}, batch 64, {name:14s} {v['ms']:6.1f} ms/step -> {v['speedup']:.2f}x "
                      f"(warm-up {v['warmup_s']:.1f} s)")


if __name__ == "__main__":
    main()
