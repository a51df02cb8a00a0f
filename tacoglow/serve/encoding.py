"""Pieces of audio to response bytes: streamed WAV, raw PCM and JSON lines, or whole mp3, opus and flac files."""
from __future__ import annotations

import base64
import io
import json
import struct

import numpy as np
import soundfile
import torch

from .batching import Piece

OPENAI_PCM_RATE = 24000  # OpenAI's `pcm` is raw 24 kHz 16-bit little-endian mono
OPUS_RATE = 24000        # libsndfile's Opus encoder takes 8, 12, 16, 24 or 48 kHz only
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
               "opus": "audio/ogg; codecs=opus", "jsonl": "application/x-ndjson"}
STREAMED = ("wav", "pcm", "jsonl")
SOUNDFILE_FORMATS = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"),
                     "wav": ("WAV", "PCM_16")}


def streamed_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes are 0xFFFFFFFF, the placeholder streaming readers accept."""
    return (b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
            + b"data\xff\xff\xff\xff")


def piece_bytes(piece: Piece, fmt: str, sample_rate: int) -> bytes:
    """A sentence as streamed: its samples, then the silence that follows it (its job's pause; none after the
    last sentence of plain text). In ``jsonl``, ``audio`` holds both and ``pause`` the silence's samples."""
    pcm = np.concatenate([piece.pcm, np.zeros(piece.pause, "<i2")]).tobytes()
    if fmt != "jsonl":
        return pcm
    alignment = (piece.alignment.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    # word times count from the start of this line's audio, which begins with the sentence (its pause follows)
    words = [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in piece.words]
    line = {"index": piece.index, "total": piece.total, "text": piece.text, "stopped_by": piece.stopped_by,
            "sample_rate": sample_rate, "audio": base64.b64encode(pcm).decode(), "pause": piece.pause,
            "alignment": {"steps": alignment.shape[0], "symbols": alignment.shape[1],
                          "data": base64.b64encode(alignment.tobytes()).decode()},
            "words": words}
    return json.dumps(line).encode() + b"\n"


def encode_whole(pieces: list[Piece], fmt: str, sample_rate: int) -> bytes:
    """All of a request's sentences as one file (or one body of PCM or JSON lines)."""
    if fmt not in SOUNDFILE_FORMATS:
        return b"".join(piece_bytes(p, fmt, sample_rate) for p in pieces)
    samples = np.frombuffer(b"".join(piece_bytes(p, "pcm", sample_rate) for p in pieces), "<i2")
    buffer = io.BytesIO()
    container, subtype = SOUNDFILE_FORMATS[fmt]
    soundfile.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()
