"""Where NVIDIA's published checkpoints live, and how to find or fetch them.

NVIDIA's torch.hub entrypoints save their downloads as ``$TORCH_HOME/checkpoints/<file name>``
(not torch.hub's own ``hub/checkpoints``); both folders are searched. Downloads use a short
time-out and are switched off by ``TACOGLOW_OFFLINE=1`` (the tests always set it).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import torch

from .errors import TacoglowError

log = logging.getLogger(__name__)

OFFLINE_ENV = "TACOGLOW_OFFLINE"
DOWNLOAD_TIMEOUT_S = 20.0

_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia"
_HIFIGAN_URL = (f"{_NGC}/dle/hifigan__pyt_ckpt_mode-finetune_ds-ljs22khz/versions/21.08.0_amp/files/"
                "hifigan_gen_checkpoint_10000_ft.pt")
# (model, math) → NVIDIA's NGC URL (version 19.09.0); the file name is the URL's last part.
NVIDIA_URLS = {
    ("tacotron2", "fp32"): f"{_NGC}/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/nvidia_tacotron2pyt_fp32_20190427",
    ("tacotron2", "fp16"): f"{_NGC}/tacotron2_pyt_ckpt_amp/versions/19.09.0/files/nvidia_tacotron2pyt_fp16_20190427",
    ("waveglow", "fp32"): f"{_NGC}/waveglow_ckpt_fp32/versions/19.09.0/files/nvidia_waveglowpyt_fp32_20190427",
    ("waveglow", "fp16"): f"{_NGC}/waveglow_ckpt_amp/versions/19.09.0/files/nvidia_waveglowpyt_fp16_20190427",
    # One HiFi-GAN file for both: V1 trained with AMP on LJSpeech, then fine-tuned on FastPitch's mels.
    ("hifigan", "fp32"): _HIFIGAN_URL,
    ("hifigan", "fp16"): _HIFIGAN_URL,
}


class NotAvailableError(TacoglowError, FileNotFoundError):
    """A published checkpoint is neither cached nor downloadable; the message says what to do."""


def nvidia_file_name(model: str, math: str = "fp32") -> str:
    if math not in ("fp32", "fp16"):
        raise ValueError(f"model_math must be 'fp32' or 'fp16', got {math!r}")
    return NVIDIA_URLS[(model, math)].rsplit("/", 1)[-1]


def checkpoint_dirs() -> list[Path]:
    """``$TORCH_HOME/checkpoints`` (NVIDIA's entrypoints) first, then torch.hub's checkpoint folder."""
    torch_home = Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(
        os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))))
    dirs = [torch_home / "checkpoints", Path(torch.hub.get_dir()) / "checkpoints"]
    return list(dict.fromkeys(dirs))


def find_nvidia_checkpoint(model: str, math: str | None = None) -> Path | None:
    """The cached NVIDIA file for ``model`` ('tacotron2', 'waveglow' or 'hifigan'); fp16 (AMP) first unless
    ``math`` says."""
    maths = [math] if math else ["fp16", "fp32"]
    for m in maths:
        name = nvidia_file_name(model, m)
        for folder in checkpoint_dirs():
            if (folder / name).is_file():
                return folder / name
    return None


def how_to_get(model: str, math: str = "fp16") -> str:
    name = nvidia_file_name(model, math)
    return (f"put NVIDIA's {name} (from {NVIDIA_URLS[(model, math)]}) in {checkpoint_dirs()[0]}, "
            f"or pass a checkpoint path")


def fetch_nvidia_checkpoint(model: str, math: str = "fp32", force_reload: bool = False) -> Path:
    """Return NVIDIA's published checkpoint, from the cache or downloaded into ``$TORCH_HOME/checkpoints``."""
    name = nvidia_file_name(model, math)
    if not force_reload:
        for folder in checkpoint_dirs():
            if (folder / name).is_file():
                return folder / name
    target = checkpoint_dirs()[0] / name
    if os.getenv(OFFLINE_ENV, "").lower() in ("1", "true", "yes"):
        raise NotAvailableError(
            f"{name} is not cached and downloads are off ({OFFLINE_ENV}=1): {how_to_get(model, math)}")
    url = NVIDIA_URLS[(model, math)]
    log.info("downloading %s to %s", url, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, f)
        os.replace(tmp, target)  # never leave a half-downloaded file under NVIDIA's name
    except OSError as error:
        raise NotAvailableError(f"could not download {name} ({error}): {how_to_get(model, math)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


BUNDLED_VOICE_DIR = Path(__file__).resolve().parent / "voices" / "default"
VOICE_DIR_ENV = "TACOGLOW_VOICE_DIR"  # a folder with tacotron2.pt (and optionally hifigan.pt and/or waveglow.pt)
VOCODERS = ("auto", "hifigan", "waveglow", "griffin-lim")


def default_checkpoints() -> tuple[Path, Path | None]:
    """(Tacotron 2, WaveGlow or None) for synthesis when the user names no checkpoint.

    The voice in ``$TACOGLOW_VOICE_DIR`` or, by default, the one bundled with the package comes
    first; otherwise NVIDIA's published pair from the torch.hub cache. Raises :class:`NotAvailableError`
    saying how to get one.
    """
    voice_dir = Path(os.environ.get(VOICE_DIR_ENV) or BUNDLED_VOICE_DIR)
    bundled = voice_dir / "tacotron2.pt"
    if bundled.is_file():
        vocoder = voice_dir / "waveglow.pt"
        return bundled, (vocoder if vocoder.is_file() else None)
    tacotron2 = find_nvidia_checkpoint("tacotron2")
    if tacotron2 is None:
        t2, wg = nvidia_file_name("tacotron2", "fp16"), nvidia_file_name("waveglow", "fp16")
        raise NotAvailableError(
            f"no voice is installed: put NVIDIA's {t2} and {wg} (from {NVIDIA_URLS[('tacotron2', 'fp16')]} "
            f"and {NVIDIA_URLS[('waveglow', 'fp16')]}) in {checkpoint_dirs()[0]}, "
            "or pass --tacotron2 FILE [--waveglow FILE]")
    return tacotron2, find_nvidia_checkpoint("waveglow")


def default_hifigan() -> Path | None:
    """The installed voice's ``hifigan.pt`` (beside its ``tacotron2.pt``), if it has one."""
    voice_dir = Path(os.environ.get(VOICE_DIR_ENV) or BUNDLED_VOICE_DIR)
    path = voice_dir / "hifigan.pt"
    return path if path.is_file() and (voice_dir / "tacotron2.pt").is_file() else None


def choose_checkpoints(tacotron2: Path | None = None, waveglow: Path | None = None, hifigan: Path | None = None,
                       vocoder: str = "auto") -> tuple[Path, Path | None, Path | None]:
    """(Tacotron 2, WaveGlow or None, HiFi-GAN or None) to load, from what the user named and the installed voice.

    ``vocoder``: "auto" takes a HiFi-GAN when one is given or installed, else a WaveGlow, else neither
    (Griffin-Lim); "hifigan" and "waveglow" insist on that one; "griffin-lim" loads neither.
    """
    if vocoder not in VOCODERS:
        raise TacoglowError(f"vocoder must be one of {VOCODERS}, got {vocoder!r}")
    if tacotron2 is None:
        tacotron2, installed = default_checkpoints()
        waveglow = waveglow or installed
        hifigan = hifigan or default_hifigan()
    for name, path in (("hifigan", hifigan), ("waveglow", waveglow)):
        if vocoder == name and path is None:
            raise TacoglowError(f"--vocoder {name} needs a checkpoint of it: pass --{name} FILE")
    if vocoder == "griffin-lim":
        return tacotron2, None, None
    if vocoder == "waveglow" or (vocoder == "auto" and hifigan is None):
        return tacotron2, waveglow, None
    return tacotron2, None, hifigan


class TTSUtils:
    """What NVIDIA's ``nvidia_tts_utils()`` returns: text → padded id batches, sorted longest first."""

    @staticmethod
    def text_to_sequence(text: str, cleaner_names=("english_cleaners",)) -> list[int]:
        from .text import text_to_sequence

        return text_to_sequence(text, list(cleaner_names))

    @staticmethod
    def pad_sequences(batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad with id 0 in order of decreasing length → (padded (B, T) int64, lengths (B,) int64)."""
        lengths, order = torch.sort(torch.LongTensor([len(x) for x in batch]), dim=0, descending=True)
        padded = torch.zeros(len(batch), int(lengths[0]) if len(batch) else 0, dtype=torch.long)
        for row, i in enumerate(order.tolist()):
            padded[row, :len(batch[i])] = batch[i]
        return padded, lengths

    @staticmethod
    def prepare_input_sequence(texts: list[str], cpu_run: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """NVIDIA's ``english_cleaners`` ids for each text, padded and sorted (the order is not returned)."""
        if isinstance(texts, str):
            texts = [texts]
        batch: list[torch.Tensor] = [torch.IntTensor(TTSUtils.text_to_sequence(t)) for t in texts]
        if not batch or any(len(x) == 0 for x in batch):
            raise ValueError("every text must contain at least one character the model can speak")
        padded, lengths = TTSUtils.pad_sequences(batch)
        if not cpu_run and torch.cuda.is_available():
            padded, lengths = padded.cuda().long(), lengths.cuda().long()
        return padded, lengths
