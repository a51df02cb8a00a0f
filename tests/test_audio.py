"""Audio front end against NVIDIA's reference features, plus WAV I/O and Griffin-Lim behaviour."""
import io
import logging

import librosa
import numpy as np
import pytest
import soundfile
import torch

from tacoglow.audio import (
    STFT,
    AudioConfig,
    dynamic_range_compression,
    dynamic_range_decompression,
    griffin_lim,
    load_wav,
    mel_spectrogram,
    mel_to_linear,
    save_wav,
    wav_bytes,
)

from conftest import fixture_path
from helpers import rel_err


@pytest.fixture(scope="module")
def reference():
    return torch.load(fixture_path("signal_mel.pt"))


def test_mel_matches_reference(reference):
    mel = mel_spectrogram(reference["wav_normalized"])
    assert mel.shape == reference["mel"].shape
    assert mel.shape[-1] == 1 + reference["wav_normalized"].shape[-1] // 256
    assert rel_err(mel, reference["mel"]) < 1e-4


def test_mel_cache_is_keyed_on_dtype_and_config(reference):
    wav = reference["wav_normalized"]
    mel64 = mel_spectrogram(wav.double())
    assert mel64.dtype == torch.float64
    assert rel_err(mel64, reference["mel"]) < 1e-4
    assert mel_spectrogram(wav).dtype == torch.float32
    # A different config must not be served the cached default basis.
    mel40 = mel_spectrogram(wav, AudioConfig(n_mel_channels=40, mel_fmax=7000.0))
    assert mel40.shape == (1, 40, reference["mel"].shape[-1])
    # 1-D input gives a 2-D result.
    assert torch.equal(mel_spectrogram(wav[0]), mel_spectrogram(wav)[0])


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan")])
def test_mel_rejects_out_of_range_audio(bad):
    audio = torch.zeros(1, 4096)
    audio[0, 100] = bad
    with pytest.raises(ValueError, match=r"\[-1, 1\]|NaN"):
        mel_spectrogram(audio)


def test_mel_rejects_too_short_audio():
    with pytest.raises(ValueError, match="samples"):
        mel_spectrogram(torch.zeros(1, 300))


def test_dynamic_range_round_trip():
    x = torch.tensor([1e-7, 1e-5, 0.5, 3.0])
    y = dynamic_range_decompression(dynamic_range_compression(x))
    assert torch.allclose(y, torch.tensor([1e-5, 1e-5, 0.5, 3.0]))


def test_stft_round_trip(reference):
    audio = reference["wav_normalized"]
    stft = STFT(1024, 256, 1024)
    magnitude, phase = stft.transform(audio)
    assert magnitude.shape == (1, 513, 1 + audio.shape[1] // 256)
    rebuilt = stft.inverse(magnitude, phase)
    n = rebuilt.shape[-1]
    assert rebuilt.shape == (1, 1, 256 * (audio.shape[1] // 256))
    assert rel_err(rebuilt[0, 0], audio[0, :n]) < 1e-5


def test_audio_config_dict_round_trip():
    config = AudioConfig(mel_fmax=7000.0)
    assert AudioConfig.from_dict(config.to_dict()) == config
    assert hash(AudioConfig()) == hash(AudioConfig())
    with pytest.raises(ValueError, match="hop"):
        AudioConfig.from_dict({**config.to_dict(), "hop": 200})
    with pytest.raises(ValueError, match="win_length"):
        AudioConfig(win_length=2048)


def test_load_wav_matches_reference_normalisation(reference):
    audio = load_wav(fixture_path("signal.wav"))
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert torch.equal(audio, reference["wav_normalized"][0])


def test_save_load_round_trip(tmp_path):
    t = torch.arange(22050) / 22050
    audio = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    path = tmp_path / "tone.wav"
    save_wav(path, audio, 22050)
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
    loaded = load_wav(path)
    assert loaded.shape == audio.shape
    assert (loaded - audio).abs().max() < 2 / 32768


def test_save_clips_instead_of_wrapping():
    data = wav_bytes(np.array([1.5, -1.5, 0.0, 1.0], dtype=np.float32), 22050)
    assert data[:4] == b"RIFF"
    samples, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    assert samples.tolist() == [32767, -32767, 0, 32767]


def test_load_wav_resamples_with_notice(tmp_path, caplog):
    rate = 16000
    t = np.arange(rate) / rate
    path = tmp_path / "16k.flac"
    save_wav(path, 0.5 * np.sin(2 * np.pi * 300 * t), rate)
    assert soundfile.info(str(path)).format == "FLAC"
    with caplog.at_level(logging.INFO, logger="tacoglow.audio"):
        audio = load_wav(path, sampling_rate=22050)
    assert "16000" in caplog.text and "22050" in caplog.text
    assert audio.shape == (22050,)
    # The tone survives resampling: its spectrum peaks at 300 Hz.
    spectrum = np.abs(np.fft.rfft(audio.numpy()))
    assert abs(np.argmax(spectrum) * 22050 / len(audio) - 300) < 2
    # None keeps the file's rate.
    assert load_wav(path, sampling_rate=None).shape == (rate,)


def test_load_wav_averages_channels(tmp_path):
    path = tmp_path / "stereo.wav"
    left = np.full(1000, 0.5, dtype=np.float32)
    soundfile.write(str(path), np.stack([left, -0.25 * np.ones(1000)], axis=1), 22050, subtype="FLOAT")
    audio = load_wav(path)
    assert torch.allclose(audio, torch.full((1000,), 0.125))


def test_load_wav_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_wav(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="garbage.wav"):
        load_wav(garbage)


def test_griffin_lim_reconstructs_the_mel(reference):
    mel = reference["mel"]
    frames = mel.shape[-1]
    audio = griffin_lim(mel, n_iters=60)
    assert audio.shape == (1, frames * 256)
    assert torch.equal(audio, griffin_lim(mel, n_iters=60))  # deterministic

    def convergence(waveform):
        rebuilt = mel_spectrogram(waveform.clamp(-1, 1))[..., :frames]
        return ((rebuilt.exp() - mel.exp()).norm() / mel.exp().norm()).item()

    start = convergence(griffin_lim(mel, n_iters=0))
    final = convergence(audio)
    assert final < 0.2 < start
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    state = torch.get_rng_state()
    seeded = griffin_lim(mel, n_iters=5, generator=g1)
    assert torch.equal(seeded, griffin_lim(mel, n_iters=5, generator=g2))
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert griffin_lim(mel[0], n_iters=1).shape == (frames * 256,)


def test_mel_to_linear_fits_the_mel_without_negative_magnitudes(reference):
    mel = dynamic_range_decompression(reference["mel"].double())  # (1, 80, frames) linear mel magnitudes
    config = AudioConfig()
    basis = torch.from_numpy(librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0,
                                                 dtype=np.float64))

    def misfit(linear):  # relative L1 of the linear magnitudes' mel against the target
        return ((basis @ linear - mel).abs().sum() / mel.abs().sum()).item()

    clamped, fitted = mel_to_linear(mel, config, n_iters=0), mel_to_linear(mel, config)
    assert clamped.shape == fitted.shape == (1, 513, mel.shape[-1]) and fitted.dtype == torch.float64
    assert clamped.min() >= 0 and fitted.min() >= 0
    assert misfit(fitted) < 0.5 * misfit(clamped), (misfit(fitted), misfit(clamped))
    assert torch.equal(fitted, mel_to_linear(mel, config))  # deterministic
    assert fitted[:, 372:].abs().max() < 1e-6  # above fmax (8 kHz = bin 371.5) no filter sees energy
    with pytest.raises(ValueError, match="n_iters"):
        mel_to_linear(mel, config, n_iters=-1)


def test_griffin_lim_power_sharpens_the_spectrum(reference):
    mel = reference["mel"]
    frames = mel.shape[-1]
    assert torch.equal(griffin_lim(mel, n_iters=10, power=1.0), griffin_lim(mel, n_iters=10))

    def contrast(waveform):  # spread of the log-mel over bands, averaged over frames
        rebuilt = mel_spectrogram(waveform.clamp(-1, 1))[..., :frames]
        return rebuilt.std(dim=1).mean().item()

    plain_audio, sharp_audio = griffin_lim(mel, n_iters=30), griffin_lim(mel, n_iters=30, power=1.5)
    assert contrast(sharp_audio) > contrast(plain_audio) * 1.1
    # ... at the same loudness: the sharpened magnitudes keep the energy of the plain ones
    ratio = (sharp_audio.square().mean() / plain_audio.square().mean()).sqrt().item()
    assert 0.8 < ratio < 1.25, ratio
    loud = griffin_lim(mel + 3.0, n_iters=30, power=1.5)  # a 20x louder mel stays 20x louder, not 90x
    assert 16 < (loud.square().mean() / plain_audio.square().mean()).sqrt().item() < 25
    for bad in (0.0, -1.0, 5.0):
        with pytest.raises(ValueError, match="power"):
            griffin_lim(mel, n_iters=1, power=bad)
