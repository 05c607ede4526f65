"""Device placement without a GPU: the gpu profile's code paths never mix devices.

No accelerator is needed: :class:`Accelerator` is a ``TorchFunctionMode`` under which a tensor of
the :class:`OnAccel` subclass *is* on ``cuda:0`` (its data stays on the CPU, so everything computes
as on the CPU). ``.to("cuda")``, ``.cuda()``, ``.cpu()`` and factories given ``device=`` move tensors
on and off it, ``.device`` reports it, and an op that takes an accelerator tensor together with a
CPU tensor of one or more dimensions raises CUDA's mixed-device error (CUDA accepts CPU scalars,
cross-device copies and CPU indices, and so does this mode). A model is put "on the GPU" by
:func:`to_accelerator`, as ``load_or_train`` puts it on ``runtime.default_device()`` on Colab.

Before the one sampling runner, ``inverse.reconstruct``, ``regimes.trajectory_gap`` and
``agreement.calibrate_patch_sizes`` (chapters 7, 4 and 5) handed CPU noise to a model on the GPU
and failed here exactly as they would on CUDA.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from reprodiff import metrics, runtime, sampling
from reprodiff.agreement import calibrate_patch_sizes
from reprodiff.backbones import build_backbone
from reprodiff.data import load_dataset
from reprodiff.denoisers import GaussianDenoiser, OptimalDenoiser, Precond
from reprodiff.inverse import make_operator, measure, reconstruct
from reprodiff.regimes import trajectory_gap
from reprodiff.sampling import generate, generate_from_noise, noise_for_seeds

SHAPE = (1, 8, 8)
ACCEL = torch.device("cuda", 0)
SRC = Path(__file__).resolve().parents[1] / "src" / "reprodiff"


class OnAccel(torch.Tensor):
    """A tensor that stands for one on the accelerator (see the module docstring)."""

    __torch_function__ = torch._C._disabled_torch_function_impl


def _on(t):
    return t.as_subclass(OnAccel) if isinstance(t, torch.Tensor) and not isinstance(t, OnAccel) else t


def _off(t):
    return t.as_subclass(torch.Tensor) if isinstance(t, OnAccel) else t


def _is_accel(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def _getter(func) -> str | None:
    """The name of the tensor attribute that ``func`` reads (``"device"``), or None for an op."""
    owner = getattr(func, "__self__", None)
    return owner.__name__ if getattr(func, "__name__", "") == "__get__" and hasattr(owner, "__objclass__") else None


#: what CUDA accepts across devices: copies into a tensor and CPU index tensors
_CROSS_DEVICE_OK = {torch.Tensor.copy_, torch.Tensor.__setitem__, torch.Tensor.__getitem__}


class Accelerator(TorchFunctionMode):
    """Tensors of :class:`OnAccel` are on ``cuda:0``; mixing them with CPU tensors raises."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        getter = _getter(func)
        if getter == "device":
            return ACCEL if isinstance(args[0], OnAccel) else func(*args)
        if getter in ("is_cuda", "is_cpu"):
            return isinstance(args[0], OnAccel) == (getter == "is_cuda")
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on = any(isinstance(t, OnAccel) for t in tensors)
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu) or "device" in kwargs:
            return self._move(func, args, kwargs, on)
        if on and func not in _CROSS_DEVICE_OK and any(not isinstance(t, OnAccel) and t.dim() > 0 for t in tensors):
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 and cpu! (in {name})")
        if on and func is torch.Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")
        out = func(*args, **kwargs)
        return tree_map(_on, out) if on else out

    @staticmethod
    def _move(func, args, kwargs, on):
        target = {torch.Tensor.cuda: True, torch.Tensor.cpu: False}.get(func)
        if func in (torch.Tensor.cuda, torch.Tensor.cpu):
            return (_on if target else _off)(args[0])
        if func is torch.Tensor.to:
            rest = []
            for a in args[1:]:
                if isinstance(a, (str, torch.device)):
                    target, a = _is_accel(a), torch.device("cpu")
                elif isinstance(a, torch.Tensor):  # .to(other): other's dtype and device
                    target, a = isinstance(a, OnAccel), _off(a)
                rest.append(a)
            args = (args[0], *rest)
        if "device" in kwargs:
            if kwargs["device"] is not None:
                target = _is_accel(kwargs["device"])
            kwargs = {**kwargs, "device": torch.device("cpu")}
        out = func(*args, **kwargs)
        return tree_map(_on if (on if target is None else target) else _off, out)


def to_accelerator(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every parameter and buffer on the stand-in accelerator, in place."""
    for module in model.modules():
        for group in (module._parameters, module._buffers):
            for name, t in group.items():
                if t is not None:
                    group[name] = t.detach().as_subclass(OnAccel)
    return model


def _net(backbone: str = "unet-tiny") -> Precond:
    torch.manual_seed(0)
    net = Precond(build_backbone(backbone, SHAPE), "edm")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # off its zero-initialised output layer: a model that draws something
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.fixture(scope="module")
def train():
    return load_dataset("digits").images[:16]


def _on_cpu(t: torch.Tensor) -> torch.Tensor:
    assert type(t) is torch.Tensor, "a result was left on the accelerator; the package returns CPU tensors"
    return t


def test_the_stand_in_accelerator_catches_what_cuda_would():
    net = to_accelerator(_net("mlp-xs"))
    with Accelerator():
        assert sampling.resolve_device(net) == ACCEL
        x = torch.zeros(2, *SHAPE)
        with pytest.raises(RuntimeError, match="same device"):
            net(x, torch.ones(2))  # CPU input, GPU weights
        out = net(x.to(ACCEL), torch.ones(2).to(ACCEL))
        assert out.device == ACCEL and out.cpu().device.type == "cpu"
        assert (x.to(ACCEL) * torch.tensor(2.0)).device == ACCEL  # a CPU scalar is fine, as on CUDA


@pytest.mark.parametrize("backbone", ["unet-tiny", "mlp-xs"])
def test_reconstruct_runs_on_the_models_device(train, backbone):
    """Chapter 7: DPS with the model on the GPU (noise, measurements and labels go to its device)."""
    op = make_operator("box-inpainting", SHAPE, top=4, left=0, height=4, width=8)
    y = measure(op, train[:3], noise_std=0.05)
    kw = dict(zeta=0.5, steps=3, batch_size=2)
    cpu = reconstruct(_net(backbone), op, y, range(3), SHAPE, **kw)
    cpu_sto = reconstruct(_net(backbone), op, y, range(3), SHAPE, step_noise_stream=1, **kw)
    net = to_accelerator(_net(backbone))
    with Accelerator():
        gpu = reconstruct(net, op, y, range(3), SHAPE, **kw)
        gpu_sto = reconstruct(net, op, y, range(3), SHAPE, step_noise_stream=1, **kw)
    assert torch.equal(_on_cpu(gpu.images), cpu.images) and torch.equal(_on_cpu(gpu_sto.images), cpu_sto.images)


def test_trajectory_gap_runs_on_the_models_device(train):
    """Chapter 4: the model on the GPU, the closed forms D* and the Gaussian denoiser on the CPU."""
    refs = {"D*": OptimalDenoiser(train), "Gaussian": GaussianDenoiser.from_data(train)}
    sig_cpu, cpu = trajectory_gap(_net(), refs, range(3), SHAPE, steps=3)
    net = to_accelerator(_net())
    with Accelerator():
        sig, gpu = trajectory_gap(net, refs, range(3), SHAPE, steps=3)
    assert sig == sig_cpu and all(torch.equal(_on_cpu(gpu[r]), cpu[r]) for r in refs)


def test_calibrate_patch_sizes_runs_on_the_models_device(train):
    """Chapter 5: the network on the GPU, the local denoisers on the training images' device (CPU)."""
    cpu = calibrate_patch_sizes(_net(), train, range(100, 103), SHAPE, (1, 3), steps=3)
    net = to_accelerator(_net())
    with Accelerator():
        gpu = calibrate_patch_sizes(net, train, range(100, 103), SHAPE, (1, 3), steps=3)
    assert gpu.errors == cpu.errors and gpu.schedule == cpu.schedule


def test_generate_and_generate_from_noise_run_on_the_models_device():
    cpu = generate(_net(), range(3), SHAPE, steps=3, cache_samples=False).images
    noise = noise_for_seeds(range(3), SHAPE)
    net = to_accelerator(_net())
    with Accelerator():
        gpu = generate(net, range(3), SHAPE, steps=3).images
        from_noise = generate_from_noise(net, noise, steps=3).images
    assert torch.equal(_on_cpu(gpu), cpu) and torch.equal(_on_cpu(from_noise), cpu)


def test_sscd_embeds_on_the_default_device(monkeypatch):
    loaded = []
    monkeypatch.setattr(metrics, "_sscd", lambda device: loaded.append(device) or device)
    monkeypatch.setattr(runtime, "default_device", lambda: ACCEL)
    metrics.get_descriptor("sscd")
    metrics.get_descriptor("sscd", device="cpu")
    assert loaded == ["cuda:0", "cpu"]


# ----------------------------------------------------------------------------- one way into sampling


def _sampler_functions() -> set[str]:
    from reprodiff.inverse import dps_sample

    return {spec.fn.__name__ for spec in sampling.SAMPLERS.values()} | {dps_sample.__name__}


def test_every_sampler_call_in_the_package_goes_through_the_runner():
    """A sampler function (or a ``SamplerSpec.fn``) is only ever *called* inside ``run_sampler``;
    elsewhere it is passed to it. A direct call would skip the device handling tested above."""
    names, bypass = _sampler_functions(), []
    for path in sorted(SRC.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        runner_lines = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "run_sampler":
                runner_lines = set(range(node.lineno, node.end_lineno + 1))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or node.lineno in runner_lines:
                continue
            f = node.func
            callee = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if callee in names or callee == "fn":
                bypass.append(f"{path.name}:{node.lineno} calls {callee}")
    assert not bypass, "sampler calls that bypass sampling.run_sampler: " + "; ".join(bypass)
    assert names >= {"sample_euler", "sample_heun", "dps_sample"}  # the check looks for the right names
