"""HiFi-GAN against the reference implementations' outputs (jik876/hifi-gan and NVIDIA's), every checkpoint
layout, and the generator's invariants on tiny configs."""
import copy
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tacoglow import Denoiser, HiFiGAN, HiFiGANConfig, load_hifigan, quantized, save_model
from tacoglow.checkpoint import CheckpointError, inspect_checkpoint, load_model
from tacoglow.quantized import int8_conv_available

from helpers import rel_err

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY = HiFiGANConfig(upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=16,
                     resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 2, 3]])
TINY2 = HiFiGANConfig(resblock="2", upsample_rates=[2, 2, 2], upsample_kernel_sizes=[4, 4, 6],
                      upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])

# (file, layout, golden case): every file holds one of the three reference models.
FILES = [
    ("hifigan_dle_v1small.pt", "ngc-hifigan", "dle_v1small"),
    ("hifigan_dle_v1small_flat.pt", "ngc-hifigan", "dle_v1small"),
    ("hifigan_jik876_type1/g_00000700", "jik876", "jik876_type1"),
    ("hifigan_jik876_type2/g_00000700", "jik876", "jik876_type2"),
    ("hifigan_dle_type2.pt", "ngc-hifigan", "jik876_type2"),  # NVIDIA's code cannot run type 2: jik876's output
]


@pytest.fixture(scope="module")
def cases():
    return torch.load(FIXTURES / "hifigan_cases.pt")


def perturbed(config: HiFiGANConfig, seed: int = 0) -> HiFiGAN:
    """A random generator whose weight norms are not those of its directions (as after training)."""
    torch.manual_seed(seed)
    model = HiFiGAN(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.8, 2.5))
    return model


@pytest.mark.parametrize("name,layout,case", FILES)
def test_every_layout_loads_and_matches_the_reference(name, layout, case, cases):
    path = FIXTURES / name
    loaded = inspect_checkpoint(path)
    assert (loaded.layout, loaded.kind) == (layout, "hifigan")
    golden = cases[case]
    model = load_hifigan(path)
    assert not model.training and not any(k.endswith("weight_g") for k in model.state_dict())
    assert not any(p.requires_grad for p in model.parameters())
    assert model.config.to_reference() == {**cases["configs"][case], "num_mels": 80}
    audio = model(cases["mel"])  # frozen: the inference kernels without torch.no_grad
    assert audio.shape == golden["audio_no_weight_norm"].shape
    assert rel_err(audio, golden["audio_no_weight_norm"]) < 1e-4


@pytest.mark.parametrize("name,layout,case", FILES[::2])
def test_weight_norm_and_autograd_path_match_the_reference(name, layout, case, cases):
    model, _ = load_model(FIXTURES / name)  # weight norm kept
    assert any(k.endswith("weight_g") for k in model.state_dict())
    mel = cases["mel"]
    with torch.no_grad():
        assert rel_err(model(mel), cases[case]["audio"]) < 1e-4  # infer, weight norm folded on the fly
    audio = model(mel)  # the modules themselves, as in training
    assert audio.requires_grad
    assert rel_err(audio.detach(), cases[case]["audio"]) < 1e-4


@pytest.mark.parametrize("config", [TINY, TINY2], ids=["type1", "type2"])
def test_shapes_at_batch_one_and_many_and_batch_independence(config):
    model = perturbed(config)
    mel = torch.randn(3, 80, 9)
    audio = model.infer(mel)
    assert audio.shape == (3, 1, 9 * config.hop_length)
    assert audio.abs().max() <= 1
    for i in range(3):
        one = model.infer(mel[i:i + 1])
        assert one.shape == (1, 1, 9 * config.hop_length)
        assert rel_err(one, audio[i:i + 1]) < 1e-5
    assert model.infer(mel[:, :, :1]).shape == (3, 1, config.hop_length)  # a single frame
    for bad in (mel[:, :40], mel[0], mel[:, :, :0]):
        with pytest.raises(ValueError, match="expected a mel of shape"):
            model(bad)


@pytest.mark.parametrize("config", [TINY, TINY2], ids=["type1", "type2"])
def test_inference_kernels_equal_the_modules(config):
    model = perturbed(config)
    mel = torch.randn(2, 80, 11)
    reference = model.forward(mel).detach()  # autograd on: the modules
    assert rel_err(model.infer(mel), reference) < 1e-5
    with torch.inference_mode():
        assert rel_err(model(mel), reference) < 1e-5


def test_folding_weight_norm_preserves_the_output():
    model = perturbed(TINY)
    mel = torch.randn(2, 80, 10)
    before = model.forward(mel).detach()
    assert model.remove_weight_norm() is model
    assert model.remove_weight_norm() is model  # idempotent
    keys = model.state_dict().keys()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in keys)
    assert "resblocks.3.convs1.2.weight" in keys and "ups.1.weight" in keys
    assert rel_err(model.forward(mel).detach(), before) < 1e-6
    assert rel_err(model.infer(mel), before) < 1e-5


def test_kernels_follow_weight_changes():
    model = perturbed(TINY)
    mel = torch.randn(1, 80, 6)
    first = model.infer(mel)
    with torch.no_grad():
        model.conv_post.bias.add_(0.5)
    assert not torch.allclose(model.infer(mel), first)
    assert rel_err(model.infer(mel), model.forward(mel).detach()) < 1e-5


def test_copies_and_pickles_after_inference():
    model = perturbed(TINY2)
    mel = torch.randn(1, 80, 6)
    audio = model.infer(mel)  # prepares (and caches) the inference kernels
    assert torch.equal(copy.deepcopy(model).infer(mel), audio)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=False).infer(mel), audio)


def test_backward_reaches_every_parameter():
    model = perturbed(TINY2).train()
    audio = model(torch.randn(2, 80, 5))
    audio.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_precision_is_close_and_unknown_precision_refused():
    model = perturbed(TINY).remove_weight_norm()
    mel = torch.randn(1, 80, 8)
    exact = model.infer(mel)
    approx = model.infer(mel, precision="bf16")
    assert approx.dtype == torch.float32 and rel_err(approx, exact) < 5e-2
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16', 'int8'\), got 'int4'"):
        model.infer(mel, precision="int4")


@pytest.mark.skipif(not int8_conv_available(), reason="this torch build lacks oneDNN's quantized convolutions")
@pytest.mark.parametrize("config", [TINY, TINY2], ids=["type1", "type2"])
def test_int8_precision_is_close_to_fp32_but_not_fp32(config):
    model = perturbed(config).remove_weight_norm()
    mel = torch.randn(2, 80, 8)
    exact = model.infer(mel)
    approx = model.infer(mel, precision="int8")
    # Measured 0.3-2.5% on eight seeds of each config (8-bit activations; 1e-7 would mean fp32 ran).
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert 1e-3 < rel_err(approx, exact) < 0.06
    assert torch.equal(model.infer(mel), exact)  # each precision keeps its own kernels
    # Batch rows are quantized together but convolved apart: a row alone gives about the same audio.
    assert rel_err(model.infer(mel[1:], precision="int8"), exact[1:]) < 0.06
    mel[0, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinity cannot be quantized"):
        model.infer(mel, precision="int8")


def test_int8_refused_without_quantized_convolutions(monkeypatch):
    monkeypatch.setattr("tacoglow.hifigan.int8_conv_available", lambda: False)
    monkeypatch.setattr(quantized, "cpu_has_amx", lambda: False)
    model = perturbed(TINY).remove_weight_norm()
    with pytest.raises(ValueError, match="precision 'int8' is not available: it needs a CPU build of torch with "
                                         "oneDNN's quantized convolutions; use 'fp32'"):
        model.infer(torch.randn(1, 80, 8), precision="int8")


def isa_env(monkeypatch, onednn=None, dnnl=None):
    """The oneDNN ISA variables as given (None: unset), restored after the test."""
    for name, value in (("ONEDNN_MAX_CPU_ISA", onednn), ("DNNL_MAX_CPU_ISA", dnnl)):
        monkeypatch.setenv(name, "x")  # recorded, so that whatever the test leaves is undone
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)


def test_int8_is_kept_off_amx(monkeypatch):
    # On an AMX CPU oneDNN's int8 kernels cost tens of seconds and gigabytes per input length: int8 counts as
    # available only with oneDNN capped below AMX, which avoid_amx does unless the environment names a cap.
    monkeypatch.setattr(quantized, "cpu_has_amx", lambda: True)
    isa_env(monkeypatch)
    assert not quantized.int8_conv_available()
    model = perturbed(TINY).remove_weight_norm()
    with pytest.raises(ValueError, match="oneDNN would run int8 convolutions on AMX.*set "
                                         "ONEDNN_MAX_CPU_ISA=AVX512_CORE_FP16 .*ONEDNN_MAX_CPU_ISA is unset here"):
        model.infer(torch.randn(1, 80, 8), precision="int8")
    quantized.avoid_amx()
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == quantized.AMX_FREE_ISA == "AVX512_CORE_FP16"
    assert quantized.int8_conv_available() == ("onednn" in torch.backends.quantized.supported_engines)
    isa_env(monkeypatch, onednn="avx512_core_amx")  # a cap of the user's own is kept, and AMX is still AMX
    quantized.avoid_amx()
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "avx512_core_amx" and not quantized.int8_conv_available()
    isa_env(monkeypatch, dnnl="AVX2")  # the older name counts too
    quantized.avoid_amx()
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ
    assert quantized.int8_conv_available() == ("onednn" in torch.backends.quantized.supported_engines)
    monkeypatch.setattr(quantized, "cpu_has_amx", lambda: False)  # without AMX nothing is set
    isa_env(monkeypatch)
    quantized.avoid_amx()
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_cpu_flags_and_int8_instruction_sets(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    flags = quantized.cpu_flags(str(info))
    assert "avx512_vnni" in flags and "amx_int8" in flags and "flags" not in flags
    assert quantized.int8_instruction_sets(flags) == ["AVX2", "AVX-512 VNNI", "AMX"]
    assert quantized.int8_instruction_sets(frozenset({"avx2", "avx_vnni"})) == ["AVX2", "AVX-VNNI"]
    assert quantized.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_presets_and_their_sizes():
    sizes = {}
    for name in ("v1", "v2", "v3"):
        model = HiFiGAN(getattr(HiFiGANConfig, name)())
        sizes[name] = sum(p.numel() for key, p in model.named_parameters() if not key.endswith("weight_g"))
        assert model.config.hop_length == 256
    # Weight norm's g not counted: the paper gives 13.92 M, 0.92 M and 1.46 M.
    assert sizes == {"v1": 13_926_017, "v2": 925_985, "v3": 1_462_273}
    assert HiFiGANConfig() == HiFiGANConfig.v1()


@pytest.mark.parametrize("change,message", [
    ({"resblock": "3"}, "resblock must be"),
    ({"upsample_rates": [8, 8, 2]}, "upsample_kernel_sizes"),
    ({"upsample_kernel_sizes": [16, 15, 4, 4]}, "differ from it by an even number"),
    ({"resblock_kernel_sizes": [3, 6, 11]}, "odd"),
    ({"resblock_dilation_sizes": [[1, 3], [1, 3], [1, 3]]}, "takes 3 dilations"),
    ({"upsample_initial_channel": 8}, "cannot be halved"),
    ({"upsample_rates": []}, "non-empty list"),
])
def test_bad_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        HiFiGANConfig(**change)


def test_reference_config_round_trip():
    reference = json.loads((FIXTURES / "hifigan_jik876_type2" / "config.json").read_text())
    config = HiFiGANConfig.from_reference(reference)  # training and audio keys are left out
    assert config.resblock == "2" and config.to_reference().items() <= reference.items()
    assert HiFiGANConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="lacks"):
        HiFiGANConfig.from_reference({"resblock": "1"})


def test_jik876_config_beside_the_file_or_given(tmp_path, cases):
    folder = FIXTURES / "hifigan_jik876_type1"
    loaded = inspect_checkpoint(folder / "g_00000700")
    assert loaded.step == 700 and loaded.audio.hop_length == 32 and loaded.audio.filter_length == 128
    lonely = tmp_path / "g_00000700"
    shutil.copy(folder / "g_00000700", lonely)
    with pytest.raises(CheckpointError, match="config.json"):
        load_hifigan(lonely)
    golden = cases["jik876_type1"]["audio_no_weight_norm"]
    reference = json.loads((folder / "config.json").read_text())
    for config in (folder / "config.json", str(folder / "config.json"), reference,
                   HiFiGANConfig.from_reference(reference), HiFiGANConfig.from_reference(reference).to_dict()):
        with torch.no_grad():
            assert rel_err(load_hifigan(lonely, config=config)(cases["mel"]), golden) < 1e-4
    # A given config wins over the one beside the file; a wrong one is refused naming the key.
    with pytest.raises(CheckpointError, match="is missing .* does not match this model"):
        load_hifigan(folder / "g_00000700", config=HiFiGANConfig.v1())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config"):
        load_hifigan(lonely)


def test_nvidia_layout_metadata():
    loaded = inspect_checkpoint(FIXTURES / "hifigan_dle_v1small.pt")
    assert loaded.step == 700 and loaded.extra["train_setup"]["segment_size"] == 1024
    assert loaded.audio.hop_length == 16 and loaded.audio.sampling_rate == 22050
    assert any(k.startswith("resblocks.5.convs2.") for k in loaded.state_dict)  # nested keys flattened


@pytest.mark.parametrize("fold", [False, True])
def test_tacoglow_layout_round_trip(tmp_path, fold, cases):
    model, _ = load_model(FIXTURES / "hifigan_dle_v1small.pt")
    if fold:
        model.remove_weight_norm()
    path = tmp_path / "hifigan.pt"
    save_model(model, path, step=5)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "tacoglow" and raw["model"] == "hifigan" and raw["config"] == model.config.to_dict()
    loaded = inspect_checkpoint(path)
    assert (loaded.layout, loaded.kind, loaded.step) == ("tacoglow", "hifigan", 5)
    with torch.no_grad():
        audio = load_hifigan(path)(cases["mel"])
    assert rel_err(audio, cases["dle_v1small"]["audio_no_weight_norm"]) < 1e-4


def test_denoiser_matches_nvidia(cases):
    model = load_hifigan(FIXTURES / "hifigan_dle_v1small.pt")
    denoiser = Denoiser(model)
    golden = cases["dle_v1small"]
    assert rel_err(denoiser.bias_spec, golden["denoiser_bias_spec"]) < 1e-4
    denoised = denoiser(golden["audio_no_weight_norm"].squeeze(1), strength=0.1)
    assert denoised.shape == golden["denoised_strength0.1"].shape
    assert rel_err(denoised, golden["denoised_strength0.1"]) < 1e-4
