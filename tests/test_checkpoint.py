"""Every checkpoint layout loads and reproduces the reference; hostile files are refused."""
import os
import zipfile
from pathlib import Path

import pytest
import torch

from tacoglow.checkpoint import (
    CheckpointError,
    inspect_checkpoint,
    load_hifigan,
    load_tacotron2,
    load_waveglow,
    read_checkpoint,
    save_model,
)

from conftest import fixture_path
from helpers import rel_err


def test_ngc_and_standalone_tacotron2_hold_the_same_weights():
    ngc = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    standalone = load_tacotron2(fixture_path("tacotron2_small_standalone.pt"))
    assert inspect_checkpoint(fixture_path("tacotron2_small_standalone.pt")).layout == "tacotron2-standalone"
    # The standalone file has no config: dimensions come from shapes, the rest from the hub default.
    assert standalone.config.symbols_embedding_dim == 64 and standalone.config.max_decoder_steps == 1000
    for (k1, v1), (k2, v2) in zip(ngc.state_dict().items(), standalone.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_loaded_tacotron2_reproduces_reference_inference():
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    assert not model.training
    case = torch.load(fixture_path("tacotron2_small_cases.pt"))["cases"][0]
    torch.manual_seed(case["seed"])
    mel, lengths, _ = model.infer(case["text_padded"], case["input_lengths"])
    assert torch.equal(lengths, case["mel_lengths"])
    assert rel_err(mel, case["mel"]) < 1e-4


def test_waveglow_ngc_layout():
    model = load_waveglow(fixture_path("waveglow_small_ngc.pt"))
    cases = torch.load(fixture_path("waveglow_small_cases.pt"))
    audio = model.infer(cases["mel"], sigma=0.0)
    assert rel_err(audio, cases["audio_sigma0"]) < 1e-4


@pytest.mark.parametrize("name", ["waveglow_small_legacy.pt", "waveglow_small_legacy_nonzip.pt"])
def test_legacy_pickled_waveglow_loads_without_glow_module(name):
    loaded = inspect_checkpoint(fixture_path(name))
    assert loaded.layout == "waveglow-legacy" and loaded.kind == "waveglow"
    assert any(".cond_layers.1." in k for k in loaded.state_dict)
    assert not any(".cond_layer." in k for k in loaded.state_dict)
    model = load_waveglow(fixture_path(name))
    cases = torch.load(fixture_path("waveglow_small_legacy_cases.pt"))
    assert model.config.n_channels == cases["wn_config"]["n_channels"]
    assert model.config.n_layers == cases["wn_config"]["n_layers"]
    audio = model.infer(cases["mel"], sigma=0.0)
    assert audio.shape == cases["audio_sigma0"].shape
    assert rel_err(audio, cases["audio_sigma0"]) < 1e-4


def test_tacoglow_layout_round_trip_loads_weights_only(tmp_path):
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    path = tmp_path / "voice.pt"
    save_model(model, path, step=123, text={"cleaners": ["english_cleaners"]})
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["format"] == "tacoglow" and raw["model"] == "tacotron2" and raw["step"] == 123
    again = load_tacotron2(path)
    assert inspect_checkpoint(path).layout == "tacoglow"
    for v1, v2 in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(v1, v2)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_fp16_storage_loads_into_fp32_model(tmp_path):
    model = load_waveglow(fixture_path("waveglow_small_ngc.pt"))
    path = tmp_path / "wg16.pt"
    save_model(model, path, dtype=torch.float16)
    again = load_waveglow(path)
    assert next(again.parameters()).dtype == torch.float32
    w = model.state_dict()["upsample.weight"]
    assert torch.allclose(again.state_dict()["upsample.weight"], w, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- hostile and broken files

def _one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message
    assert "weights_only=False" not in message and "trust" not in message.lower()
    return message


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(tmp_path / "nope.pt")
    assert "nope.pt" in _one_line(e.value) and "no such file" in str(e.value)


def test_truncated_file(tmp_path):
    data = fixture_path("tacotron2_small_ngc.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(path)
    assert "cut.pt" in _one_line(e.value)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(path)
    assert "noise.pt" in _one_line(e.value)


def test_zip_of_wrong_content(tmp_path):
    path = tmp_path / "photos.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("holiday/readme.txt", "not a model")
    with pytest.raises(CheckpointError) as e:
        load_waveglow(path)
    assert "photos.pt" in _one_line(e.value)


def test_wrong_model_type(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(fixture_path("waveglow_small_ngc.pt"))
    assert "WaveGlow checkpoint, not a Tacotron 2" in _one_line(e.value)


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    ckpt = torch.load(fixture_path("tacotron2_small_ngc.pt"))
    ckpt["state_dict"]["module.decoder.gate_layer.linear_layer.weight"] = torch.zeros(1, 7)
    path = tmp_path / "bad_shape.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(path)
    message = _one_line(e.value)
    assert "bad_shape.pt" in message and "decoder.gate_layer.linear_layer.weight" in message
    assert "(1, 7)" in message and "(1, 160)" in message


def test_nan_weights_refused(tmp_path):
    ckpt = torch.load(fixture_path("tacotron2_small_ngc.pt"))
    ckpt["state_dict"]["module.embedding.weight"][3, 3] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(path)
    assert "embedding.weight" in _one_line(e.value) and "NaN" in str(e.value)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_that_would_run_a_command_is_refused(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker), "iteration": 1}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError) as e:
        load_waveglow(path)
    message = _one_line(e.value)
    assert "evil.pt" in message and "system" in message
    assert not marker.exists()


def test_pickle_building_a_foreign_class_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert "torch.nn.modules.linear.Linear" in _one_line(e.value)


# ---------------------------------------------------------------- HiFi-GAN files

HIFIGAN_NGC = Path(__file__).resolve().parent / "fixtures" / "hifigan_dle_v1small.pt"


def _edited_hifigan(tmp_path, name, edit):
    ckpt = torch.load(HIFIGAN_NGC, weights_only=True)
    edit(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def test_hifigan_truncated_file(tmp_path):
    data = HIFIGAN_NGC.read_bytes()
    path = tmp_path / "cut_hifigan.pt"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "cut_hifigan.pt" in _one_line(e.value) and "truncated" in str(e.value)


def test_hifigan_shape_mismatch_names_key_and_both_shapes(tmp_path):
    def edit(ckpt):
        ckpt["generator"]["module.conv_post.weight_v"] = torch.zeros(1, 4, 5)
    with pytest.raises(CheckpointError) as e:
        load_hifigan(_edited_hifigan(tmp_path, "bad_shape.pt", edit))
    message = _one_line(e.value)
    assert "bad_shape.pt" in message and "conv_post.weight_v" in message
    assert "(1, 4, 5)" in message and "(1, 4, 7)" in message


def test_hifigan_missing_key_and_nan_weights(tmp_path):
    path = _edited_hifigan(tmp_path, "missing.pt", lambda c: c["generator"].pop("module.resblocks.1.2.convs2.0.bias"))
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "resblocks.5.convs2.0.bias" in _one_line(e.value) and "missing" in str(e.value)

    def poison(ckpt):
        ckpt["generator"]["module.ups.0.weight_v"][0, 0, 0] = float("inf")
    with pytest.raises(CheckpointError) as e:
        load_hifigan(_edited_hifigan(tmp_path, "inf.pt", poison))
    assert "ups.0.weight_v" in _one_line(e.value) and "NaN or infinite" in str(e.value)


def test_hifigan_config_that_cannot_build(tmp_path):
    path = _edited_hifigan(tmp_path, "bad_config.pt", lambda c: c["config"].update(resblock="7"))
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "bad_config.pt" in _one_line(e.value) and "cannot build a HiFi-GAN" in str(e.value)
    path = _edited_hifigan(tmp_path, "no_rates.pt", lambda c: c["config"].pop("upsample_rates"))
    with pytest.raises(CheckpointError) as e:
        inspect_checkpoint(path)
    assert "upsample_rates" in _one_line(e.value)
    path = _edited_hifigan(tmp_path, "bad_audio.pt", lambda c: c["train_setup"].update(win_length=4096))
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "audio settings" in _one_line(e.value)


def test_hifigan_wrong_model_type():
    with pytest.raises(CheckpointError) as e:
        load_tacotron2(HIFIGAN_NGC)
    assert "HiFi-GAN checkpoint, not a Tacotron 2" in _one_line(e.value) and "load_hifigan" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        load_hifigan(fixture_path("waveglow_small_ngc.pt"))
    assert "WaveGlow checkpoint, not a HiFi-GAN" in _one_line(e.value)


def test_hifigan_discriminators_are_not_a_generator(tmp_path):
    path = tmp_path / "do_00000700"
    torch.save({"mpd": {"w": torch.zeros(1)}, "msd": {"w": torch.zeros(1)}, "steps": 700}, path)
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "discriminators" in _one_line(e.value) and "g_NNNNNNNN" in str(e.value)


def test_hifigan_generator_that_is_not_tensors(tmp_path):
    path = _edited_hifigan(tmp_path, "odd.pt", lambda c: c["generator"].update({"module.conv_pre.bias": [1, 2]}))
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "conv_pre.bias" in _one_line(e.value) and "not a tensor" in str(e.value)


def test_hifigan_pickle_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "g_00000001"
    torch.save({"generator": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        load_hifigan(path)
    assert "g_00000001" in _one_line(e.value) and "system" in str(e.value)
    assert not marker.exists()
