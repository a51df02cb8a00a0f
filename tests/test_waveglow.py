"""WaveGlow and its denoiser against NVIDIA's reference outputs, plus flow invariants on a tiny config."""
import pytest
import torch

from tacoglow.waveglow import Denoiser, WaveGlow, WaveGlowConfig, WaveGlowLoss

from conftest import fixture_path
from helpers import rel_err, tiny_waveglow


@pytest.fixture(scope="module")
def cases():
    return torch.load(fixture_path("waveglow_small_cases.pt"))


def load_small() -> WaveGlow:
    checkpoint = torch.load(fixture_path("waveglow_small_ngc.pt"), weights_only=True)
    state_dict = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    model = WaveGlow(WaveGlowConfig.from_nvidia(checkpoint["config"]))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small():
    return load_small()


def test_infer_matches_reference(small, cases):
    mel = cases["mel"]
    assert rel_err(small.infer(mel, sigma=0.0), cases["audio_sigma0"]) < 1e-4
    for case in cases["cases"]:
        torch.manual_seed(case["seed"])
        audio = small.infer(mel, sigma=case["sigma"])
        assert audio.shape == case["audio"].shape == (2, mel.shape[-1] * 256)
        assert rel_err(audio, case["audio"]) < 1e-4
        # A private generator seeded alike draws the same noise and leaves the global RNG alone.
        state = torch.get_rng_state()
        generator = torch.Generator().manual_seed(case["seed"])
        audio = small.infer(mel, sigma=case["sigma"], generator=generator)
        assert rel_err(audio, case["audio"]) < 1e-4
        assert torch.equal(state, torch.get_rng_state())


def test_remove_weightnorm_and_denoiser_match_reference(cases):
    model = load_small()
    model = model.remove_weightnorm(model)  # NVIDIA's calling convention
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert "WN.0.start.weight" in keys and "WN.0.in_layers.1.weight" in keys
    assert rel_err(model.infer(cases["mel"], sigma=0.0), cases["audio_sigma0_no_weightnorm"]) < 1e-4

    # The reference denoiser samples (and discards, sigma 0) noise: 2 global draws for this config
    # (n_group 4, one early output of 2 channels), each (1, 2, 88 * 256 / 4).
    torch.manual_seed(0)
    denoiser = Denoiser(model)
    after_denoiser = torch.get_rng_state()
    torch.manual_seed(0)
    for channels in (2, 2):
        torch.randn(1, channels, 88 * 64)
    assert torch.equal(after_denoiser, torch.get_rng_state())

    assert rel_err(denoiser.bias_spec, cases["denoiser_bias_spec"]) < 1e-4
    denoised = denoiser(cases["audio_sigma0"], strength=0.1)
    assert denoised.shape == cases["denoised_sigma0_strength0.1"].shape
    assert rel_err(denoised, cases["denoised_sigma0_strength0.1"]) < 1e-4


def test_remove_weightnorm_called_without_argument(cases):
    model = load_small()
    assert model.remove_weightnorm() is model
    assert model.remove_weightnorm() is model  # idempotent
    assert rel_err(model.infer(cases["mel"], sigma=0.0), cases["audio_sigma0"]) < 1e-4


def test_inverse_cache_follows_weight_changes(cases):
    model = load_small()
    mel = cases["mel"][:1]
    before = model.infer(mel, sigma=0.0)
    state = model.state_dict()
    perturbed = {k: (v.flip(0) if k.startswith("convinv") else v) for k, v in state.items()}
    model.load_state_dict(perturbed)
    changed = model.infer(mel, sigma=0.0)
    assert rel_err(changed, before) > 1e-3
    fresh = WaveGlow(model.config).eval()
    fresh.load_state_dict(perturbed)
    assert rel_err(changed, fresh.infer(mel, sigma=0.0)) < 1e-6
    assert not any("inverse" in k for k in model.state_dict())


def test_default_config_keys_and_parameter_count():
    with torch.device("meta"):
        model = WaveGlow(WaveGlowConfig())
    state = model.state_dict()
    assert len(state) == 938
    assert sum(p.numel() for p in model.parameters()) == 268_294_760
    assert list(state)[:5] == ["upsample.weight", "upsample.bias", "WN.0.in_layers.0.bias",
                               "WN.0.in_layers.0.weight_g", "WN.0.in_layers.0.weight_v"]
    assert state["WN.0.cond_layers.7.weight_v"].shape == (1024, 640, 1)
    assert state["WN.11.start.weight_v"].shape == (512, 2, 1)
    assert state["WN.4.end.weight"].shape == (6, 512, 1)
    assert state["convinv.8.conv.weight"].shape == (4, 4, 1)
    assert state["WN.3.res_skip_layers.7.weight_v"].shape == (512, 512, 1)
    model.remove_weightnorm()
    assert sum(p.numel() for p in model.parameters()) == 267_999_848
    with torch.device("meta"):
        wg256 = WaveGlow(WaveGlowConfig(n_channels=256))
    assert sum(p.numel() for p in wg256.parameters()) == 87_879_272


def test_config_nvidia_round_trip_and_validation():
    nvidia = {"n_mel_channels": 80, "n_flows": 12, "n_group": 8, "n_early_every": 4, "n_early_size": 2,
              "WN_config": {"n_layers": 8, "kernel_size": 3, "n_channels": 256}}
    config = WaveGlowConfig.from_nvidia(nvidia)
    assert config.n_channels == 256 and config.to_nvidia() == nvidia
    assert WaveGlowConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        WaveGlowConfig.from_dict({"n_flow": 3})
    with pytest.raises(ValueError, match="n_group"):
        WaveGlowConfig(n_group=7)
    with pytest.raises(ValueError, match="n_channels"):
        WaveGlowConfig(n_channels=0)
    with pytest.raises(ValueError, match="fewer than 2"):
        WaveGlowConfig(n_flows=17)


def test_forward_then_infer_recovers_audio():
    model = tiny_waveglow()
    mel = torch.randn(2, 80, 6)
    audio = 0.5 * torch.randn(2, 6 * 256)
    with torch.no_grad():
        z, log_s, log_det_w = model(mel, audio)
    assert z.shape == (2, 8, 6 * 32)
    assert [s.shape[1] for s in log_s] == [4, 4, 3, 3]
    assert len(log_det_w) == 4
    rebuilt = model.infer(mel, sigma=1.0, z=z)
    assert rel_err(rebuilt, audio) < 1e-4
    # Noise for the tiny config: (B, 6, L) for the last flows, then (B, 2, L) at its one early exit; the
    # latent layout of `forward` puts the early channels first.
    torch.manual_seed(5)
    sampled = model.infer(mel, sigma=0.7)
    torch.manual_seed(5)
    noise = [torch.randn(2, 6, 6 * 32), torch.randn(2, 2, 6 * 32)]
    manual = model.infer(mel, sigma=0.7, z=torch.cat([noise[1], noise[0]], 1))
    assert torch.equal(sampled, manual)


def test_training_step_runs_backward():
    model = tiny_waveglow().train()
    loss_fn = WaveGlowLoss(sigma=1.0)
    mel = torch.randn(2, 80, 4)
    audio = 0.1 * torch.randn(2, 1000)  # shorter than 4 * 256: the upsampled mel is trimmed
    z, log_s, log_det_w = model(mel, audio)
    assert z.shape == (2, 8, 125)
    loss = loss_fn((z, log_s, log_det_w))
    # The reference formula, written out.
    expected = (z.pow(2).sum() / 2 - sum(s.sum() for s in log_s) - sum(log_det_w)) / z.numel()
    assert torch.allclose(loss, expected)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.WN[0].in_layers[0].weight_g.grad.abs().sum() > 0
