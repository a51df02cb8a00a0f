"""Audio front end: one `AudioConfig`, the reference STFT, log-mel features, WAV I/O and Griffin-Lim.

Every number here follows NVIDIA's Tacotron 2 recipe (22.05 kHz, 1024-point STFT, hop 256, 80 Slaney mel
bands up to 8 kHz, natural-log compression floored at 1e-5), so features computed here match the features
NVIDIA's checkpoints were trained on.
"""
from __future__ import annotations

import functools
import io
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ConfigError, DictConfig
from .errors import TacoglowError

__all__ = [
    "AudioConfig",
    "AudioError",
    "STFT",
    "mel_spectrogram",
    "stretch_mel",
    "dynamic_range_compression",
    "dynamic_range_decompression",
    "mel_to_linear",
    "load_wav",
    "resample",
    "save_wav",
    "to_pcm16",
    "wav_bytes",
    "griffin_lim",
]

logger = logging.getLogger(__name__)


class AudioError(TacoglowError, ValueError):
    """An audio file that cannot be read or written, or samples refused (NaN); the message names the file."""


@dataclass(frozen=True)
class AudioConfig(DictConfig):
    """Signal-processing settings shared by data preparation, Tacotron 2 and WaveGlow.

    Field names are NVIDIA's (`filter_length` is the FFT size). Frozen, hence hashable: it is the key of the
    feature caches below.
    """

    sampling_rate: int = 22050
    filter_length: int = 1024  # n_fft
    hop_length: int = 256  # WaveGlow's upsampler assumes exactly 256 samples per mel frame
    win_length: int = 1024
    n_mel_channels: int = 80
    mel_fmin: float = 0.0
    # 8000 Hz is the training default; NVIDIA's shipped config.json says 7000, but only its TensorRT export
    # reads that file. None means sampling_rate / 2.
    mel_fmax: float | None = 8000.0
    # int16 full scale: WAV samples are divided by this to land in [-1, 1].
    max_wav_value: float = 32768.0

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(f"invalid AudioConfig: {message}")

        if self.sampling_rate <= 0:
            fail(f"sampling_rate must be positive, got {self.sampling_rate}")
        if self.filter_length <= 0 or self.hop_length <= 0 or self.win_length <= 0:
            fail("filter_length, hop_length and win_length must be positive")
        if self.win_length > self.filter_length:
            fail(f"win_length ({self.win_length}) must not exceed filter_length ({self.filter_length})")
        if self.n_mel_channels <= 0:
            fail(f"n_mel_channels must be positive, got {self.n_mel_channels}")
        fmax = self.sampling_rate / 2 if self.mel_fmax is None else self.mel_fmax
        if not 0 <= self.mel_fmin < fmax <= self.sampling_rate / 2:
            fail(f"need 0 <= mel_fmin < mel_fmax <= sampling_rate/2, got {self.mel_fmin}, {self.mel_fmax}")
        if self.max_wav_value <= 0:
            fail(f"max_wav_value must be positive, got {self.max_wav_value}")


# ---------------------------------------------------------------------------------------------------------
# STFT with the reference's conv1d formulation
# ---------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _window(filter_length: int, win_length: int) -> np.ndarray:
    """Periodic Hann of win_length, zero-padded to filter_length and centred; float64 (filter_length,)."""
    import scipy.signal

    window = scipy.signal.get_window("hann", win_length, fftbins=True)
    left = (filter_length - win_length) // 2
    return np.pad(window, (left, filter_length - win_length - left))


@functools.lru_cache(maxsize=8)
def _fourier_rows(filter_length: int) -> np.ndarray:
    """Real rows then imaginary rows of the one-sided DFT matrix: float64 (2 * (n_fft//2 + 1), n_fft)."""
    cutoff = filter_length // 2 + 1
    dft = np.fft.fft(np.eye(filter_length))[:cutoff]
    return np.vstack([dft.real, dft.imag])


@functools.lru_cache(maxsize=8)
def _inverse_rows(filter_length: int, hop_length: int) -> np.ndarray:
    """Synthesis rows: pinv(scale * fourier).T, float64 (2 * (n_fft//2 + 1), n_fft).

    The scale n_fft / hop makes overlap-added frames come out near unit gain before the window-sum
    normalisation; the reference undoes it afterwards, and we must too to reproduce its numbers.
    """
    scale = filter_length / hop_length
    return np.linalg.pinv(scale * _fourier_rows(filter_length)).T


def _stft_basis(rows: np.ndarray, window: np.ndarray, dtype: torch.dtype) -> Tensor:
    # The reference casts basis and window to the working precision before multiplying; doing the same keeps
    # our float32 results bit-identical to its. Shape (2 * n_bins, 1, n_fft): one conv1d filter per row.
    return torch.from_numpy(rows).to(dtype)[:, None, :] * torch.from_numpy(window).to(dtype)


def _stft_real_imag(audio: Tensor, forward_basis: Tensor, hop_length: int) -> tuple[Tensor, Tensor]:
    """audio (B, T) -> real and imaginary parts, each (B, n_fft//2 + 1, 1 + T // hop)."""
    n_fft = forward_basis.size(-1)
    if audio.size(1) <= n_fft // 2:
        raise ValueError(
            f"audio has {audio.size(1)} samples; the STFT's reflect padding needs more than {n_fft // 2}")
    padded = F.pad(audio.unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect")  # (B, 1, T + n_fft)
    spectrum = F.conv1d(padded, forward_basis, stride=hop_length)  # (B, 2 * n_bins, frames)
    real, imag = spectrum.chunk(2, dim=1)
    return real, imag


def _magnitude(real: Tensor, imag: Tensor) -> Tensor:
    # No epsilon under the square root: silent frames give exactly 0, as in the reference.
    return torch.sqrt(real**2 + imag**2)


class STFT(nn.Module):
    """Short-time Fourier transform written as strided convolutions, as in NVIDIA's Tacotron 2 code.

    `transform(audio (B, T))` gives `(magnitude, phase)`, each `(B, filter_length//2 + 1, 1 + T//hop)`, using a
    periodic Hann window and reflect padding of filter_length/2 on both sides. `inverse(magnitude, phase)`
    gives `(B, 1, hop * (frames - 1))`, normalised by the window's overlapped sum of squares. The WaveGlow
    denoiser relies on this exact pair.
    """

    forward_basis: Tensor  # buffers, registered in __init__
    inverse_basis: Tensor

    def __init__(self, filter_length: int = 1024, hop_length: int = 256, win_length: int = 1024) -> None:
        super().__init__()
        if win_length > filter_length:
            raise ValueError(f"win_length ({win_length}) must not exceed filter_length ({filter_length})")
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.win_length = win_length
        window = _window(filter_length, win_length)
        # Derived from the three sizes, so they are not saved with the module.
        self.register_buffer("forward_basis", _stft_basis(_fourier_rows(filter_length), window, torch.float32),
                             persistent=False)
        self.register_buffer("inverse_basis",
                             _stft_basis(_inverse_rows(filter_length, hop_length), window, torch.float32),
                             persistent=False)

    def transform(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        if audio.dim() != 2:
            raise ValueError(f"expected audio of shape (batch, samples), got {tuple(audio.shape)}")
        real, imag = _stft_real_imag(audio.to(self.forward_basis.dtype), self.forward_basis, self.hop_length)
        return _magnitude(real, imag), torch.atan2(imag, real)

    def inverse(self, magnitude: Tensor, phase: Tensor) -> Tensor:
        spectrum = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        audio = F.conv_transpose1d(spectrum, self.inverse_basis, stride=self.hop_length)  # (B, 1, L_padded)
        window_sum = self._window_sumsquare(magnitude.size(-1), audio.device)  # (L_padded,)
        # Divide only where the overlapped window energy is non-negligible (the padded edges can be ~0).
        # (Dividing by 1 elsewhere, rather than selecting after a division by ~0, keeps gradients finite.)
        valid = window_sum > torch.finfo(torch.float32).tiny
        audio = torch.where(valid, audio / torch.where(valid, window_sum, torch.ones_like(window_sum)), audio)
        audio = audio * (self.filter_length / self.hop_length)
        half = self.filter_length // 2
        return audio[:, :, half:audio.size(-1) - half]

    def forward(self, audio: Tensor) -> Tensor:
        """Analysis then synthesis: (B, T) -> (B, 1, hop * (T // hop))."""
        return self.inverse(*self.transform(audio))

    def _window_sumsquare(self, n_frames: int, device: torch.device) -> Tensor:
        """Sum of squared, hop-shifted windows over n_frames frames: float32 (n_fft + hop * (n_frames - 1),)."""
        squared = torch.from_numpy(_window(self.filter_length, self.win_length) ** 2)  # float64 (n_fft,)
        # Overlap-add of the squared window, frame by frame, in float64 (the reference accumulates the float64
        # window into a float32 buffer; the two agree to float32 rounding).
        ones = torch.ones(1, 1, n_frames, dtype=torch.float64)
        total = F.conv_transpose1d(ones, squared.view(1, 1, -1), stride=self.hop_length)
        return total.view(-1).to(device=device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------
# Mel features
# ---------------------------------------------------------------------------------------------------------

def dynamic_range_compression(x: Tensor, C: float = 1.0, clip_val: float = 1e-5) -> Tensor:
    """log(max(x, clip_val) * C): the reference's mel compression (natural log, floor at -11.51)."""
    return torch.log(torch.clamp(x, min=clip_val) * C)


def dynamic_range_decompression(x: Tensor, C: float = 1.0) -> Tensor:
    """Inverse of `dynamic_range_compression` (above the floor)."""
    return torch.exp(x) / C


@functools.lru_cache(maxsize=8)
def _mel_basis_numpy(config: AudioConfig, float64: bool) -> np.ndarray:
    # librosa's defaults are the reference's: Slaney mel scale (htk=False) and area-normalised filters.
    import librosa  # slow to import: only when a filter bank is first built

    return librosa.filters.mel(
        sr=config.sampling_rate, n_fft=config.filter_length, n_mels=config.n_mel_channels,
        fmin=config.mel_fmin, fmax=config.mel_fmax, dtype=np.float64 if float64 else np.float32)


@functools.lru_cache(maxsize=16)
def _mel_tensors(config: AudioConfig, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """(forward STFT basis (2 * n_bins, 1, n_fft), mel basis (n_mel, n_bins)) in dtype on device.

    Keyed on everything the tensors depend on; callers must treat them as read-only.
    """
    window = _window(config.filter_length, config.win_length)
    forward_basis = _stft_basis(_fourier_rows(config.filter_length), window, dtype)
    mel_basis = torch.from_numpy(_mel_basis_numpy(config, dtype == torch.float64)).to(dtype)
    return forward_basis.to(device), mel_basis.to(device)


def _check_waveform(audio: Tensor) -> None:
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples; clean the signal before computing features")
    if audio.numel() and (audio.min() < -1.0 or audio.max() > 1.0):
        raise ValueError(
            f"audio must lie in [-1, 1] but spans [{audio.min().item():.4g}, {audio.max().item():.4g}]; "
            "divide integer PCM by AudioConfig.max_wav_value (32768 for int16), or clip/peak-normalise first")


def mel_spectrogram(audio: Tensor, config: AudioConfig = AudioConfig()) -> Tensor:
    """Log-mel spectrogram exactly as NVIDIA's `TacotronSTFT.mel_spectrogram`.

    Args:
        audio: `(batch, samples)` float waveform in [-1, 1]; a 1-D waveform gives a 2-D result.
        config: signal settings.

    Returns:
        `(batch, n_mel_channels, 1 + samples // hop_length)` natural-log mel magnitudes (floor log(1e-5)).
        Computed in the input's precision for float32/float64, in float32 otherwise.
    """
    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(f"expected audio of shape (batch, samples) or (samples,), got {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point in [-1, 1], got {audio.dtype}; "
                         "divide integer PCM by AudioConfig.max_wav_value")
    _check_waveform(audio)
    if audio.dtype not in (torch.float32, torch.float64):
        audio = audio.float()
    forward_basis, mel_basis = _mel_tensors(config, audio.dtype, audio.device)
    magnitude = _magnitude(*_stft_real_imag(audio, forward_basis, config.hop_length))  # (B, n_bins, frames)
    mel = dynamic_range_compression(torch.matmul(mel_basis, magnitude))  # (B, n_mel, frames)
    return mel.squeeze(0) if squeeze else mel


def stretch_mel(mel: Tensor, rate: float) -> Tensor:
    """Change the speaking rate of a mel (n_mel, frames) → (n_mel, max(1, round(frames / rate))): 0.5 doubles its
    length, 2 halves it; the pitch stays, since each frame's spectrum is kept.

    Linear interpolation in time between neighbouring frames (``F.interpolate``, ``align_corners=False``):
    deterministic, and the identity (the same tensor) at rate 1 and for an empty mel.
    """
    if rate == 1.0 or mel.shape[-1] == 0:
        return mel
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a positive number, got {rate}")
    frames = max(1, round(mel.shape[-1] / rate))
    return F.interpolate(mel[None], size=frames, mode="linear", align_corners=False)[0]


# ---------------------------------------------------------------------------------------------------------
# WAV I/O
# ---------------------------------------------------------------------------------------------------------

def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """audio (samples,) float32 -> (round(samples * target / orig),) float32: soxr when installed, else scipy's
    polyphase filter."""
    try:
        import soxr
    except ImportError:
        soxr = None
    if soxr is not None:
        return soxr.resample(audio, orig_rate, target_rate).astype(np.float32, copy=False)
    g = math.gcd(orig_rate, target_rate)
    import scipy.signal

    return scipy.signal.resample_poly(audio, target_rate // g, orig_rate // g).astype(np.float32, copy=False)




def load_wav(path: str | os.PathLike | BinaryIO, sampling_rate: int | None = 22050) -> Tensor:
    """Read any file soundfile understands (WAV, FLAC, OGG, ...) as mono float32 in [-1, 1].

    Channels are averaged. If the file's rate differs from `sampling_rate` the audio is resampled (soxr when
    installed, else scipy's polyphase filter) and a notice is logged; `sampling_rate=None` keeps the file's
    own rate. Samples outside [-1, 1] (float files, resampling overshoot) are clipped.

    Returns:
        `(samples,)` float32 tensor.
    """
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<file object>")
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {name}")
    try:
        # Integer PCM is scaled by 1 / 2^(bits-1), so int16 becomes x / 32768 exactly as in the reference.
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except RuntimeError as error:  # soundfile.LibsndfileError and friends
        raise AudioError(f"cannot read audio file {name}: {error}") from error
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    audio = audio.astype(np.float32, copy=False)
    if sampling_rate is not None and file_rate != sampling_rate:
        logger.info("resampling %s from %d Hz to %d Hz", name, file_rate, sampling_rate)
        audio = resample(audio, file_rate, sampling_rate)
    if audio.size and not np.isfinite(audio).all():
        raise AudioError(f"audio file {name} contains NaN or infinite samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        if peak > 1.01:  # beyond resampling overshoot: the file itself is out of range
            logger.warning("%s peaks at %.3f; clipping to [-1, 1]", name, peak)
        audio = np.clip(audio, -1.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(audio))


def _as_mono_float(audio: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(audio, Tensor):
        audio = audio.detach().cpu().float().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2 and 1 in audio.shape:
        audio = audio.reshape(-1)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (samples,), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise AudioError("audio contains NaN or infinite samples; refusing to write it")
    return audio


def to_pcm16(audio: Tensor | np.ndarray) -> np.ndarray:
    """A mono float waveform → the int16 samples `save_wav` writes: clipped to [-1, 1] (integer conversion would
    wrap loud samples around to the opposite sign), then rounded at full scale 32767, explicitly, so the result
    does not depend on libsndfile's float-to-int settings."""
    return np.round(np.clip(_as_mono_float(audio), -1.0, 1.0) * 32767.0).astype(np.int16)


def save_wav(path_or_filelike: str | os.PathLike | BinaryIO, audio: Tensor | np.ndarray, sampling_rate: int,
             subtype: str = "PCM_16") -> None:
    """Write a mono waveform (float, nominally in [-1, 1]) as a sound file, 16-bit PCM WAV by default.

    Samples are clipped to [-1, 1] first: integer conversion would otherwise wrap loud samples around to
    the opposite sign. The container follows the file extension when soundfile knows it (".flac", ...) and
    is WAV otherwise and for file objects.
    """
    samples = to_pcm16(audio) if subtype == "PCM_16" else np.clip(_as_mono_float(audio), -1.0, 1.0)
    file_format = "WAV"
    if isinstance(path_or_filelike, (str, os.PathLike)):
        extension = os.path.splitext(os.fspath(path_or_filelike))[1].lstrip(".").upper()
        if extension in soundfile.available_formats():
            file_format = extension
    try:
        soundfile.write(path_or_filelike, samples, sampling_rate, subtype=subtype, format=file_format)
    except (RuntimeError, ValueError) as error:  # libsndfile errors; bad format/subtype combinations
        target = (os.fspath(path_or_filelike) if isinstance(path_or_filelike, (str, os.PathLike))
                  else "<file object>")
        raise AudioError(f"cannot write {file_format}/{subtype} audio to {target}: {error}") from error


def wav_bytes(audio: Tensor | np.ndarray, sampling_rate: int, subtype: str = "PCM_16") -> bytes:
    """The bytes of a complete WAV file holding `audio` (see `save_wav`)."""
    buffer = io.BytesIO()
    save_wav(buffer, audio, sampling_rate, subtype=subtype)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Griffin-Lim: a vocoder-free fallback
# ---------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _mel_pseudo_inverse(config: AudioConfig) -> Tensor:
    """Least-squares map from mel to linear magnitudes: float64 (n_bins, n_mel), CPU."""
    return torch.linalg.pinv(torch.from_numpy(_mel_basis_numpy(config, True)))


MEL_INVERSION_ITERS = 100  # mel_to_linear's default: the mel fits to about 0.03% (relative L1)


def mel_to_linear(mel_magnitudes: Tensor, config: AudioConfig = AudioConfig(),
                  n_iters: int = MEL_INVERSION_ITERS) -> Tensor:
    """Non-negative linear magnitudes whose mel projection is closest to the given mel magnitudes.

    The pseudo-inverse of the mel basis gives negative side lobes; clamped to 0 they leave a spectrum whose mel
    is off by about 2% (relative L1 on speech) and whose energy is smeared over each band's bins. Lee & Seung's
    multiplicative updates for non-negative least squares, started from the clamped pseudo-inverse, fit the
    mel to 0.03% in 100 iterations, and Griffin-Lim does better from that spectrum: on 25 sentences of
    festival speech, the log-mel L1 of 60 Griffin-Lim iterations' audio falls from 0.146 to 0.121 and
    pocketsphinx's word error rate from 17.3% to 14.0% (14.6% on the original audio).

    Args:
        mel_magnitudes: `(..., n_mel_channels, frames)` linear (not log) mel magnitudes, >= 0.
        n_iters: multiplicative updates; 0 gives the clamped pseudo-inverse.

    Returns:
        `(..., filter_length // 2 + 1, frames)` magnitudes, >= 0, same dtype as the input (float32/float64).
    """
    if n_iters < 0:
        raise ValueError(f"n_iters must be >= 0, got {n_iters}")
    dtype, device = mel_magnitudes.dtype, mel_magnitudes.device
    inverse = _mel_pseudo_inverse(config).to(device=device, dtype=dtype)  # (n_bins, n_mel)
    # For the updates, a strictly positive start: a multiplicative update never moves a zero.
    linear = torch.clamp(inverse @ mel_magnitudes, min=1e-8 if n_iters else 0.0)  # (..., n_bins, frames)
    if n_iters == 0:
        return linear
    basis = torch.from_numpy(_mel_basis_numpy(config, True)).to(device=device, dtype=dtype)  # (n_mel, n_bins)
    numerator = basis.T @ mel_magnitudes  # (..., n_bins, frames), fixed
    for _ in range(n_iters):
        # x <- x * B^T y / (B^T B x); B^T (B x) costs n_mel/n_bins of forming B^T B.
        linear = linear * numerator / (basis.T @ (basis @ linear)).clamp_min(1e-12)
    return linear


def check_griffin_lim_settings(n_iters: int, power: float, inversion_iters: int) -> None:
    """``ConfigError`` for settings `griffin_lim` refuses, so callers can fail before decoding."""
    if n_iters < 0:
        raise ConfigError(f"n_iters must be >= 0, got {n_iters}", "n_iters")
    if not 0 < power <= 4:
        raise ConfigError(f"power must be in (0, 4], got {power}", "power")
    if inversion_iters < 0:
        raise ConfigError(f"inversion_iters must be >= 0, got {inversion_iters}", "inversion_iters")


def griffin_lim(mel: Tensor, config: AudioConfig = AudioConfig(), n_iters: int = 60, momentum: float = 0.99,
                generator: torch.Generator | None = None, power: float = 1.0,
                inversion_iters: int = MEL_INVERSION_ITERS) -> Tensor:
    """Waveform from a log-mel spectrogram without a neural vocoder.

    The log compression is undone, mel magnitudes are mapped to linear ones by non-negative least squares
    (`mel_to_linear`), and the phase is estimated with fast Griffin-Lim (Perraudin, Balazs & Sondergaard,
    2013): Griffin-Lim plus an extrapolation step of weight `momentum`.

    Args:
        mel: `(batch, n_mel_channels, frames)` or `(n_mel_channels, frames)` log mel, as `mel_spectrogram`
            produces.
        n_iters: projection iterations.
        momentum: 0 gives plain Griffin-Lim; 0.99 is the paper's recommendation.
        generator: if given, the initial phase is uniform random drawn from it; if None the initial phase is
            zero. Either way the result is deterministic and the global RNG is untouched.
        power: the linear magnitudes are raised to this power first, then scaled back to their energy (per
            item), so the loudness stays. Values above 1 sharpen the smoothed spectra an acoustic model
            predicts and reduce Griffin-Lim's artefacts (Tacotron, Wang et al. 2017, used 1.2 to 1.5); 1 keeps
            the spectrum as given.
        inversion_iters: `mel_to_linear`'s iterations; 0 gives the clamped pseudo-inverse.

    Returns:
        `(batch, frames * hop_length)` waveform (or `(frames * hop_length,)` for 2-D input), not clipped.
    """
    check_griffin_lim_settings(n_iters, power, inversion_iters)
    if momentum < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    squeeze = mel.dim() == 2
    if squeeze:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3 or mel.size(1) != config.n_mel_channels:
        raise ValueError(f"expected mel of shape (batch, {config.n_mel_channels}, frames), got {tuple(mel.shape)}")
    dtype = torch.float64 if mel.dtype == torch.float64 else torch.float32
    mel = mel.to(dtype)
    batch, _, frames = mel.shape
    length = frames * config.hop_length

    magnitude = mel_to_linear(dynamic_range_decompression(mel), config, inversion_iters)  # (B, n_bins, frames)
    if power != 1.0:
        # Sharpen, then give each item back the energy it had: the power shapes the spectrum, not the loudness
        # (a mel peaking at magnitude 10 would come out 4x louder at power 1.6, and clip).
        energy = magnitude.square().sum(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        magnitude = magnitude ** power
        magnitude = magnitude * torch.sqrt(energy / magnitude.square().sum(dim=(1, 2), keepdim=True).clamp_min(1e-30))

    window = torch.hann_window(config.win_length, periodic=True, dtype=dtype, device=mel.device)
    stft_args: dict[str, Any] = dict(n_fft=config.filter_length, hop_length=config.hop_length,
                                     win_length=config.win_length, window=window, center=True)

    def analyse(audio: Tensor) -> Tensor:
        # A centred STFT of frames * hop samples has frames + 1 columns; the last one has no target.
        return torch.stft(audio, pad_mode="reflect", return_complex=True, **stft_args)[..., :frames]

    def synthesise(angles: Tensor) -> Tensor:
        return torch.istft(magnitude * angles, length=length, **stft_args)  # (B, frames * hop)

    if generator is None:
        angles = torch.ones_like(magnitude, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    else:
        phase = torch.rand(magnitude.shape, generator=generator, dtype=dtype, device=generator.device)
        angles = torch.polar(torch.ones_like(phase), 2 * math.pi * phase).to(mel.device)

    # Perraudin's update c_n = t_n + a (t_n - t_{n-1}) only matters through its phase, and is proportional
    # to t_n - a / (1 + a) * t_{n-1}, which is what is applied here.
    weight = momentum / (1.0 + momentum)
    previous = torch.zeros_like(angles)
    for _ in range(n_iters):
        rebuilt = analyse(synthesise(angles))  # (B, n_bins, frames) complex
        angles = rebuilt - weight * previous
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    audio = synthesise(angles)
    return audio.squeeze(0) if squeeze else audio
