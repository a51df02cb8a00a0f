"""NVIDIA's torch.hub usage works offline against this repository."""
import shutil

import pytest
import torch

from conftest import REPO, fixture_path
from helpers import rel_err

HIFIGAN_FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """NVIDIA-layout files under NVIDIA's own names in a temporary $TORCH_HOME/checkpoints."""
    home = tmp_path / "torch_home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.copy(fixture_path("tacotron2_small_ngc.pt"), home / "checkpoints" / "nvidia_tacotron2pyt_fp16_20190427")
    shutil.copy(fixture_path("waveglow_small_ngc.pt"), home / "checkpoints" / "nvidia_waveglowpyt_fp16_20190427")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("TACOGLOW_OFFLINE", "1")
    return home


def test_hub_example_runs_offline(torch_home):
    tacotron2 = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local", model_math="fp16")
    waveglow = torch.hub.load(str(REPO), "nvidia_waveglow", source="local", model_math="fp16")
    waveglow = waveglow.remove_weightnorm(waveglow)
    waveglow = waveglow.eval()
    tacotron2 = tacotron2.eval()
    utils = torch.hub.load(str(REPO), "nvidia_tts_utils", source="local")
    sequences, lengths = utils.prepare_input_sequence(["Hello world, this is a test.", "Hi."])
    assert sequences.dtype == torch.int64 and lengths.tolist() == sorted(lengths.tolist(), reverse=True)
    assert sequences.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        mel, mel_lengths, alignments = tacotron2.infer(sequences, lengths)
        audio = waveglow.infer(mel)
    assert mel.shape[0] == 2 and mel.shape[1] == 80
    assert audio.shape == (2, mel.shape[2] * 256)
    assert torch.isfinite(audio).all()


def test_hub_models_equal_direct_loading(torch_home):
    tacotron2 = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local", model_math="fp16").eval()
    case = torch.load(fixture_path("tacotron2_small_cases.pt"))["cases"][2]
    torch.manual_seed(case["seed"])
    mel, mel_lengths, _ = tacotron2.infer(case["text_padded"], case["input_lengths"])
    assert torch.equal(mel_lengths, case["mel_lengths"]) and rel_err(mel, case["mel"]) < 1e-4


def test_prepare_input_sequence_matches_reference_ids():
    from tacoglow.hub import TTSUtils
    from tacoglow.text import text_to_sequence

    padded, lengths = TTSUtils.prepare_input_sequence(["a", "Dr. Smith paid $5.", "hello"], cpu_run=True)
    expected = [text_to_sequence(t, ["english_cleaners"]) for t in ["Dr. Smith paid $5.", "hello", "a"]]
    assert lengths.tolist() == [len(e) for e in expected]
    for row, ids in zip(padded, expected):
        assert row[:len(ids)].tolist() == ids and not row[len(ids):].any()


def test_offline_without_files_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TACOGLOW_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        torch.hub.load(str(REPO), "nvidia_waveglow", source="local", model_math="fp16")
    message = str(e.value)
    assert "nvidia_waveglowpyt_fp16_20190427" in message and str(tmp_path / "checkpoints") in message


def test_checkpoint_argument_and_untrained_models(tmp_path):
    model = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local",
                           checkpoint=str(fixture_path("tacotron2_small_standalone.pt")))
    assert model.config.encoder_embedding_dim == 64
    fresh = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local", pretrained=False,
                           symbols_embedding_dim=32, encoder_embedding_dim=32, decoder_rnn_dim=48,
                           attention_rnn_dim=48, postnet_embedding_dim=16, prenet_dim=16)
    assert fresh.embedding.weight.shape == (148, 32)
    wg = torch.hub.load(str(REPO), "nvidia_waveglow", source="local", pretrained=False,
                        n_flows=4, WN_config={"n_layers": 2, "n_channels": 8, "kernel_size": 3})
    assert wg.config.n_flows == 4 and wg.config.n_channels == 8


def test_decoder_settings_set_as_in_nvidias_examples_take_effect(torch_home):
    from tacoglow import GriffinLimVocoder, Synthesizer

    tacotron2 = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local", model_math="fp16").eval()
    case = torch.load(fixture_path("tacotron2_small_cases.pt"))["cases"][2]

    def infer(**kwargs):
        torch.manual_seed(case["seed"])
        return tacotron2.infer_detailed(case["text_padded"], case["input_lengths"], **kwargs)

    full = infer()
    assert full.mel_lengths.tolist() == [0, 0, 51] and full.mel_postnet.size(2) == 52  # the reference's stops
    tacotron2.decoder.max_decoder_steps = 5
    capped = infer()
    assert capped.mel_postnet.size(2) == capped.alignments.size(1) == 5 and capped.mel_lengths.tolist() == [0, 0, 5]
    assert torch.equal(capped.alignments, full.alignments[:, :5])  # the same first steps, then the cap
    assert infer(max_decoder_steps=7).alignments.size(1) == 7  # an explicit cap still wins
    synth = Synthesizer(tacotron2, GriffinLimVocoder(n_iters=1), frames_per_symbol=None)
    assert synth.step_cap(10) == 5  # the Synthesizer's caps follow the setting too

    tacotron2.decoder.gate_threshold = 0.7  # above every gate output here: all items run to the cap
    late = infer()
    assert late.mel_lengths.tolist() == [5, 5, 5] and not late.gate_stopped.any()
    tacotron2.decoder.gate_threshold = 0.3  # below them: all items stop at the first step
    early = infer()
    assert early.mel_postnet.size(2) == 1 and early.gate_stopped.all()
    assert (tacotron2.config.max_decoder_steps, tacotron2.config.gate_threshold) == (5, 0.3)
    with pytest.raises(ValueError, match="max_decoder_steps"):
        tacotron2.decoder.max_decoder_steps = 0


@pytest.fixture
def hifigan_home(tmp_path, monkeypatch):
    """A small NVIDIA-layout HiFi-GAN under NVIDIA's file name in a temporary $TORCH_HOME/checkpoints."""
    home = tmp_path / "torch_home"
    (home / "checkpoints").mkdir(parents=True)
    shutil.copy(HIFIGAN_FIXTURES / "hifigan_dle_v1small.pt",
                home / "checkpoints" / "hifigan_gen_checkpoint_10000_ft.pt")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("TACOGLOW_OFFLINE", "1")
    return home


def test_hifigan_entrypoint_returns_nvidias_triple_offline(hifigan_home):
    cases = torch.load(HIFIGAN_FIXTURES / "hifigan_cases.pt")
    golden = cases["dle_v1small"]
    hifigan, train_setup, denoiser = torch.hub.load(str(REPO), "nvidia_hifigan", source="local", model_math="fp16")
    assert not hifigan.training and train_setup["hop_length"] == 16 and train_setup["sampling_rate"] == 22050
    audio = hifigan(cases["mel"])  # frozen: no torch.no_grad needed
    assert not audio.requires_grad and rel_err(audio, golden["audio_no_weight_norm"]) < 1e-4
    assert rel_err(denoiser.bias_spec, golden["denoiser_bias_spec"]) < 1e-4
    denoised = denoiser(audio.squeeze(1), strength=0.1)
    assert rel_err(denoised, golden["denoised_strength0.1"]) < 1e-4


def test_hifigan_entrypoint_without_the_file_or_untrained(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TACOGLOW_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        torch.hub.load(str(REPO), "nvidia_hifigan", source="local")
    message = str(e.value)
    assert "hifigan_gen_checkpoint_10000_ft.pt" in message and str(tmp_path / "checkpoints") in message
    hifigan, train_setup, denoiser = torch.hub.load(str(REPO), "nvidia_hifigan", source="local", pretrained=False,
                                                    upsample_initial_channel=32, resblock="2",
                                                    resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]])
    assert (train_setup, denoiser) == ({}, None)
    assert hifigan.config.upsample_initial_channel == 32 and hifigan.conv_pre.weight_v.shape == (32, 80, 7)
