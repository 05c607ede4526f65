import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser
from reprodiff.sampling import (SAMPLERS, Samples, generate, karras_sigmas, network_calls, noise_for_seeds,
                                record_calls, sample_ddim, sample_euler, sample_euler_ancestral)


def test_noise_is_independent_of_batch_size_and_order():
    full = noise_for_seeds(range(10), (1, 8, 8))
    assert torch.equal(full[3:5], noise_for_seeds([3, 4], (1, 8, 8)))
    assert torch.equal(full[[7, 2]], noise_for_seeds([7, 2], (1, 8, 8)))
    assert not torch.equal(noise_for_seeds([3], (1, 8, 8), stream=1), full[3:4])


def test_karras_sigmas():
    s = karras_sigmas(18)
    assert s.shape == (19,) and s[0] == 80 and abs(float(s[17]) - 0.002) < 1e-12 and s[-1] == 0
    assert (s[:-1] > s[1:]).all()


@pytest.fixture(scope="module")
def gaussian():
    return GaussianDenoiser.from_data(load_dataset("digits").images)


@pytest.mark.parametrize("name", ["euler", "ddim", "heun", "dpmpp-2m"])
def test_deterministic_samplers_are_bit_identical_twice(gaussian, name):
    a = generate(gaussian, range(8), (1, 8, 8), sampler=name, steps=10)
    b = generate(gaussian, range(8), (1, 8, 8), sampler=name, steps=10)
    assert torch.equal(a.images, b.images)


def test_batch_size_changes_samples_only_by_float_rounding(gaussian):
    # the promise of the module docstring: bitwise at one batch size, rounding-level across sizes
    a = generate(gaussian, range(12), (1, 8, 8), steps=8, batch_size=12)
    b = generate(gaussian, range(12), (1, 8, 8), steps=8, batch_size=5)
    again = generate(gaussian, range(12), (1, 8, 8), steps=8, batch_size=5)
    assert torch.equal(b.images, again.images)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=1e-5)


_TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    from reprodiff.sampling import generate

    class Tiny(torch.nn.Module):
        # a float32 conv net with the denoiser signature: what a trained model computes, in miniature
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.SiLU(),
                                           torch.nn.Conv2d(16, 1, 3, padding=1))

        def forward(self, x, sigma, cond=None):
            s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
            return x / (1 + s**2) + self.net(x / (1 + s**2).sqrt()) * s / (1 + s**2).sqrt()

    torch.manual_seed(0)
    model = Tiny()
    out = generate(model, range(24), (1, 8, 8), sampler="heun", steps=6, batch_size=10)
    torch.save(out.images, sys.argv[1])
""")


def test_same_seeds_give_bitwise_identical_samples_in_two_processes(tmp_path, monkeypatch):
    # this process and a fresh interpreter run the same script; one subprocess keeps the test to one torch import
    import reprodiff

    script = tmp_path / "sample.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    src = str(Path(reprodiff.__file__).parents[1])
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "theirs.pt")], cwd=tmp_path,
                            env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE)
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "ours.pt")])
    runpy.run_path(str(script), run_name="__main__")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    ours, theirs = torch.load(tmp_path / "ours.pt"), torch.load(tmp_path / "theirs.pt")
    assert ours.shape == (24, 1, 8, 8) and ours.abs().sum() > 0
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_registry_counts_the_denoiser_calls_each_sampler_really_makes(gaussian, name, steps):
    rec = record_calls(gaussian)
    kw = dict(step_noise_stream=0) if SAMPLERS[name].stochastic else {}
    out = generate(rec, range(3), (1, 8, 8), sampler=name, steps=steps, **kw)
    assert len(rec.calls) == SAMPLERS[name].calls(steps) == network_calls(name, steps)
    # the recorder only observes: same samples as without it
    assert torch.equal(out.images, generate(gaussian, range(3), (1, 8, 8), sampler=name, steps=steps, **kw).images)
    x, sigma, x0 = rec.calls[0]
    assert x.shape == x0.shape == (3, 1, 8, 8) and sigma == pytest.approx(80.0)


def test_network_calls_of_an_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'ddpm'; choose one of euler, ddim"):
        network_calls("ddpm", 10)
    assert [n for n, spec in SAMPLERS.items() if spec.stochastic] == ["euler-ancestral"]


def test_ddim_equals_euler_in_sigma_coordinates(gaussian):
    noise = noise_for_seeds(range(6), (1, 8, 8))
    s = karras_sigmas(12)
    assert torch.allclose(sample_ddim(gaussian, noise, s), sample_euler(gaussian, noise, s), atol=1e-9)


def test_samplers_agree_at_many_steps(gaussian):
    outs = [generate(gaussian, range(16), (1, 8, 8), sampler=n, steps=200).images for n in ("ddim", "heun", "dpmpp-2m")]
    for o in outs[1:]:
        assert (o - outs[0]).abs().max() < 2e-2


@pytest.mark.parametrize("name,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp-2m", 2)])
def test_samplers_converge_to_the_exact_ode_solution_at_their_order(name, order):
    # for N(0, v I) data D(x) = v / (v + sigma^2) x and the ODE solution is x(sigma) ~ sqrt(v + sigma^2)
    v = 0.3
    den = GaussianDenoiser(torch.zeros(4), v * torch.eye(4))
    noise = noise_for_seeds(range(3), (1, 2, 2))
    exact = noise.double() * 80 * v**0.5 / (v + 80**2) ** 0.5
    err = [(SAMPLERS[name].fn(den, noise, karras_sigmas(n), model_dtype=torch.float64) - exact).abs().max()
           for n in (32, 64, 128)]
    assert err[2] < err[1] < err[0]
    assert 2 ** order * 0.8 < err[1] / err[2] < 2 ** order * 1.25


def test_stochastic_sampler_depends_on_its_explicit_noise(gaussian):
    a = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=0)
    b = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=0)
    c = generate(gaussian, range(8), (1, 8, 8), sampler="euler-ancestral", steps=10, step_noise_stream=1)
    assert torch.equal(a.images, b.images) and not torch.allclose(a.images, c.images)
    with pytest.raises(ValueError, match="step_noise"):
        sample_euler_ancestral(gaussian, noise_for_seeds([0], (1, 8, 8)), karras_sigmas(4))
    with pytest.raises(ValueError, match="step_noise_stream"):
        generate(gaussian, range(2), (1, 8, 8), sampler="euler-ancestral")


def test_bad_sampler_name():
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(OptimalDenoiser(torch.zeros(2, 1, 2, 2)), [0], (1, 2, 2), sampler="ddpm")


def test_samples_require_unique_seeds():
    with pytest.raises(ValueError, match="unique"):
        Samples(torch.zeros(2, 1, 2, 2), torch.tensor([1, 1]))


def test_samples_select_keeps_seed_image_and_label_pairs():
    s = Samples(torch.arange(4.0).reshape(4, 1, 1, 1), torch.tensor([7, 3, 5, 1]), "m", torch.tensor([0, 1, 2, 3]))
    sub = s.select([5, 7])
    assert sub.seeds.tolist() == [5, 7] and sub.images.flatten().tolist() == [2.0, 0.0]
    assert sub.labels.tolist() == [2, 0] and sub.name == "m"
    assert torch.equal(s.by_seed([1, 3]), sub.images.new_tensor([[[[3.0]]], [[[1.0]]]]))
    with pytest.raises(KeyError, match="seed 9 not in samples 'm'"):
        s.select([9])


# --- the sample cache ----------------------------------------------------------------------------

@pytest.fixture
def tiny_net():
    from reprodiff.backbones import build_backbone
    from reprodiff.denoisers import Precond

    torch.manual_seed(0)
    return Precond(build_backbone("mlp-xs", (1, 8, 8), num_classes=3), "edm")


def test_sample_cache_serves_a_trained_network_bit_for_bit(tiny_net, sampling_runs):
    from reprodiff.cache import cache_root

    kw = dict(sampler="heun", steps=6, batch_size=4, labels=[0, 1, 2, 0, 1, 2])
    fresh = generate(tiny_net, range(6), (1, 8, 8), cache_samples=False, **kw)
    first = generate(tiny_net, range(6), (1, 8, 8), **kw)
    again = generate(tiny_net, range(6), (1, 8, 8), name="again", **kw)
    assert len(sampling_runs) == 2  # the uncached run and the first cached one; the third is served
    assert torch.equal(fresh.images, first.images) and torch.equal(first.images, again.images)
    assert again.name == "again" and torch.equal(again.seeds, torch.arange(6)) and again.sampler == "heun-6"
    assert torch.equal(again.labels, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert len(list((cache_root() / "samples").rglob("*.safetensors"))) == 1


@pytest.mark.parametrize("change", ["seeds", "labels", "steps", "batch", "sampler", "weights", "stream"])
def test_sample_cache_misses_when_anything_that_shapes_a_sample_changes(tiny_net, sampling_runs, change):
    kw = dict(sampler="heun", steps=6, batch_size=4, labels=[0, 1, 2, 0, 1, 2])
    seeds = range(6)
    generate(tiny_net, seeds, (1, 8, 8), **kw)
    if change == "seeds":
        seeds = range(1, 7)
    elif change == "labels":
        kw["labels"] = [2, 1, 0, 0, 1, 2]
    elif change == "steps":
        kw["steps"] = 7
    elif change == "batch":
        kw["batch_size"] = 3
    elif change == "sampler":
        kw["sampler"] = "euler"
    elif change == "weights":
        with torch.no_grad():
            next(tiny_net.parameters()).view(-1)[0] += 1e-6
    else:
        kw["noise_stream"] = 1
    out = generate(tiny_net, seeds, (1, 8, 8), **kw)
    assert len(sampling_runs) == 2
    assert torch.equal(out.images, generate(tiny_net, seeds, (1, 8, 8), cache_samples=False, **kw).images)


def test_sample_cache_recomputes_a_damaged_entry_and_can_be_turned_off(tiny_net, sampling_runs, monkeypatch):
    from reprodiff.cache import cache_root

    kw = dict(sampler="euler", steps=5, labels=[0, 1, 2])
    first = generate(tiny_net, range(3), (1, 8, 8), **kw)
    (entry,) = (cache_root() / "samples").rglob("*.safetensors")
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF  # flip bits of the last pixel
    entry.write_bytes(bytes(data))
    assert torch.equal(generate(tiny_net, range(3), (1, 8, 8), **kw).images, first.images)
    assert len(sampling_runs) == 2
    monkeypatch.setenv("REPRODIFF_SAMPLE_CACHE", "0")
    generate(tiny_net, range(3), (1, 8, 8), **kw)
    generate(tiny_net, range(3), (1, 8, 8), **kw)
    assert len(sampling_runs) == 4


def test_sample_cache_keeps_only_trained_networks_and_deterministic_samplers(gaussian, tiny_net):
    from reprodiff.cache import cache_root

    generate(gaussian, range(3), (1, 8, 8), steps=4)  # a closed form: cheap, and not a Precond
    generate(tiny_net, range(3), (1, 8, 8), steps=4, labels=[0, 1, 2], sampler="euler-ancestral",
             step_noise_stream=0)
    assert not (cache_root() / "samples").exists()


# --- the device sampling runs on -----------------------------------------------------------------

class _PlainWrapper:
    """A wrapper that is not a torch module (like a user's guidance function): found through ``.denoiser``."""

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def __call__(self, x, sigma, cond=None):
        return self.denoiser(x, sigma, cond)


def test_sampling_device_is_the_models_unless_given(tiny_net, gaussian):
    from reprodiff.denoisers import Guided
    from reprodiff.sampling import resolve_device

    cpu, meta = torch.device("cpu"), torch.device("meta")
    on_meta = torch.nn.Linear(2, 2, device="meta")  # a model that is not on CPU, without an accelerator
    assert resolve_device(tiny_net) == cpu  # parameters
    assert resolve_device(gaussian) == cpu  # a closed form: buffers only
    assert resolve_device(lambda x, sigma, cond=None: x) == cpu  # neither
    assert resolve_device(on_meta) == meta
    assert resolve_device(record_calls(on_meta)) == meta and resolve_device(_PlainWrapper(on_meta)) == meta
    assert resolve_device(Guided(tiny_net, 1.0)) == cpu
    assert resolve_device(tiny_net, "meta") == meta and resolve_device(on_meta, "cpu") == cpu


def test_generate_samples_on_the_models_device_by_default(monkeypatch):
    import reprodiff.sampling as sampling

    seen = []

    def loop(fn, denoiser, noise_for, sigmas, *, n, device=None, **kwargs):
        seen.append((torch.device(device), sigmas.device))
        return torch.zeros(n, 2, 1, 1)

    monkeypatch.setattr(sampling, "run_sampler", loop)
    on_meta = torch.nn.Conv2d(2, 2, 1, device="meta")
    generate(on_meta, range(3), (2, 1, 1), steps=2)
    generate(on_meta, range(3), (2, 1, 1), steps=2, device="cpu")
    meta, cpu = torch.device("meta"), torch.device("cpu")
    assert seen == [(meta, meta), (cpu, cpu)]


def test_generate_on_the_default_device_is_cpu_sampling_bit_for_bit(tiny_net, sampling_runs):
    kw = dict(sampler="heun", steps=5, batch_size=4, labels=[0, 1, 2, 0, 1])
    default = generate(tiny_net, range(5), (1, 8, 8), cache_samples=False, **kw)
    on_cpu = generate(tiny_net, range(5), (1, 8, 8), device="cpu", cache_samples=False, **kw)
    assert torch.equal(default.images, on_cpu.images) and default.images.device.type == "cpu"
    # and both name one cache entry: the second call is served
    generate(tiny_net, range(5), (1, 8, 8), **kw)
    served = generate(tiny_net, range(5), (1, 8, 8), device="cpu", **kw)
    assert len(sampling_runs) == 3 and torch.equal(served.images, default.images)
