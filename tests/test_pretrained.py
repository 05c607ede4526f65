"""The diffusers DDPM adapter, on tiny random UNets saved locally (offline, seconds)."""

import json

import pytest
import torch

from reprodiff.pretrained import (DiffusersDenoiser, PretrainedUnavailableError, load_diffusers_denoiser,
                                  locate_diffusers_model)
from reprodiff.runtime import cpu_threads, flush_denormal
from reprodiff.sampling import generate, sample_ddim

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny UNets gain nothing from intra-op threads, and on a busy 2-core machine torch's spinning
    workers made each call ~30x slower (0.5 s instead of 17 ms); the package's own rule for CPU work."""
    with cpu_threads(1), flush_denormal():
        yield


def tiny_unet(seed: int = 0, channels: int = 3, size: int = 8):
    from reprodiff.smoke import tiny_unet as unet

    return unet(seed, channels, size)


def save_pipeline(folder, seed: int = 0, channels: int = 3, size: int = 8, **scheduler):
    """A DDPMPipeline folder (unet/ + scheduler/) with a random tiny UNet: what the Hub serves."""
    from reprodiff.smoke import write_ddpm_pipeline

    write_ddpm_pipeline(folder, seed, size, channels, **scheduler)
    return folder


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("ddpm"))


def diffusers_ddim(unet, scheduler_config, noise_vp, steps, float64):
    """diffusers' own DDIM loop (eta = 0, final alpha 1, no clipping): the reference."""
    scheduler = diffusers.DDIMScheduler.from_config(scheduler_config, set_alpha_to_one=True, clip_sample=False)
    if float64:  # diffusers keeps its table in float32; a float64 reference needs the same values in float64
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    scheduler.set_timesteps(steps)
    x = noise_vp
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x


CASES = {  # (steps, scheduler settings): the spacings and prediction types diffusers offers
    "epsilon, leading, 10 steps": (10, {}),
    "epsilon, leading, 25 steps": (25, {}),
    "epsilon, leading + offset 1": (10, {"steps_offset": 1}),
    "v_prediction, trailing": (10, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}),
    "sample prediction": (10, {"prediction_type": "sample"}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_package_ddim_on_the_adapter_is_diffusers_ddim(case, dtype, pipeline_dir):
    steps, settings = CASES[case]
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, **settings)
    model = load_diffusers_denoiser(pipeline_dir, scheduler=scheduler).to(dtype)
    sigmas = model.ddim_sigmas(steps)
    noise = torch.randn(3, *model.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = sample_ddim(model, noise, sigmas, model_dtype=dtype)
    # the package scales unit noise by sigmas[0]; diffusers starts from x_T = sqrt(abar_T) * x_VE
    x_vp = (noise * sigmas[0] / (1 + sigmas[0] ** 2).sqrt()).to(dtype)
    ref = diffusers_ddim(model.unet, model.scheduler_config, x_vp, steps, dtype == torch.float64)
    # float64: rounding only (measured: at most 4e-14 of the largest |x0|, 6e-16 for epsilon
    # prediction); float32: the UNet rounding inputs scaled in two ways (measured at most 1.6e-6)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = max(1.0, ref.abs().max().item())
    err = (ours - ref.double()).abs().max().item()
    assert err <= rtol * scale


def recorded_timesteps(model, sigmas, dtype):
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda m, args: seen.append(args[1].clone()))
    try:
        for s in sigmas:
            model(torch.zeros(2, *model.shape, dtype=dtype), torch.as_tensor(s).to(dtype))
    finally:
        handle.remove()
    return torch.stack([t[0] for t in seen]).double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_table_sigmas_call_the_unet_at_their_integer_timesteps(dtype, pipeline_dir):
    model = load_diffusers_denoiser(pipeline_dir).to(dtype)
    scheduler = diffusers.DDIMScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(10)
    t = recorded_timesteps(model, model.ddim_sigmas(10)[:-1], dtype)
    assert torch.equal(t, scheduler.timesteps.double())
    assert model.sigma_to_t(model.sigmas.to(dtype)).tolist() == list(range(1000))


def test_between_table_sigmas_the_timestep_interpolates_monotonically(pipeline_dir):
    model = load_diffusers_denoiser(pipeline_dir)
    sigmas = torch.logspace(-2, 2, 200, dtype=torch.float64).clamp(model.sigma_min, model.sigma_max)
    t = model.sigma_to_t(sigmas)
    assert (t[1:] >= t[:-1]).all() and (t > 0).any() and (t % 1 != 0).any()
    lo, hi = model.sigmas[499], model.sigmas[500]
    mid = model.sigma_to_t((lo * hi).sqrt().reshape(1)).item()  # log-midpoint of two entries
    assert 499 < mid < 500 and abs(mid - 499.5) < 1e-9
    # outside the table: clamped to its ends (EDM's sigma_min = 0.002 lies below a DDPM's 0.01)
    assert model.sigma_to_t(torch.tensor([0.002, 1e4], dtype=torch.float64)).tolist() == [0.0, 999.0]
    t_seen = recorded_timesteps(model, torch.linspace(1.0, 2.0, 7), torch.float32)
    assert (t_seen[1:] > t_seen[:-1]).all()


def test_generate_with_the_adapter_is_deterministic(pipeline_dir):
    model = load_diffusers_denoiser(pipeline_dir)
    assert model.shape == (3, 8, 8) and 0.009 < model.sigma_min < 0.011 and model.sigma_max > 80
    a = generate(model, range(3), model.shape, sigma_min=model.sigma_min)  # Heun, 18-step Karras grid
    b = generate(model, range(3), model.shape, sigma_min=model.sigma_min)
    assert a.images.shape == (3, 3, 8, 8) and torch.equal(a.images, b.images)
    assert torch.isfinite(a.images).all() and a.images.abs().max() <= 1
    with pytest.raises(ValueError, match=r"trained on \(3, 8, 8\)"):
        generate(model, range(2), (3, 16, 16))


def test_bare_unet_folder_needs_a_scheduler(tmp_path, monkeypatch):
    tiny_unet().save_pretrained(tmp_path)
    with pytest.raises(PretrainedUnavailableError, match="no scheduler config"):
        load_diffusers_denoiser(tmp_path)
    model = load_diffusers_denoiser(tmp_path, scheduler=diffusers.DDPMScheduler())
    assert isinstance(model, DiffusersDenoiser) and model.shape == (3, 8, 8)
    diffusers.DDPMScheduler().save_config(tmp_path)  # scheduler_config.json beside the UNet
    assert locate_diffusers_model(tmp_path).unet_subfolder == ""


def test_bad_sources_are_clear_errors_before_any_weights_are_read(tmp_path, pipeline_dir, monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the source was checked")

    monkeypatch.setattr(diffusers.UNet2DModel, "from_pretrained", no_weights)
    with pytest.raises(PretrainedUnavailableError, match="does not exist"):
        load_diffusers_denoiser(tmp_path / "missing")
    with pytest.raises(PretrainedUnavailableError, match="holds no UNet"):
        load_diffusers_denoiser(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", "sample_size": 64}))
    with pytest.raises(PretrainedUnavailableError, match="UNet2DConditionModel, not the UNet2DModel"):
        load_diffusers_denoiser(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8,
                                                      "num_class_embeds": 10}))
    with pytest.raises(PretrainedUnavailableError, match="class-conditional"):
        load_diffusers_denoiser(tmp_path, scheduler=diffusers.DDPMScheduler())
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
    with pytest.raises(PretrainedUnavailableError, match="no discrete beta schedule"):
        load_diffusers_denoiser(tmp_path, scheduler={"_class_name": "ScoreSdeVeScheduler", "sigma_max": 1348.0})
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedUnavailableError, match="cannot fetch 'nobody/no-such-ddpm'") as offline:
        load_diffusers_denoiser("nobody/no-such-ddpm")
    assert "\n" not in str(offline.value)  # the command line reports it in one line


def test_the_adapter_is_unconditional_and_needs_a_finite_schedule(pipeline_dir):
    model = load_diffusers_denoiser(pipeline_dir)
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.zeros(1, *model.shape), 1.0, torch.tensor([3]))
    abar = torch.linspace(0.99, 0.0, 10)  # zero terminal SNR
    with pytest.raises(ValueError, match="zero terminal SNR"):
        DiffusersDenoiser(model.unet, abar)
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersDenoiser(model.unet, abar[:-1], "flow")
