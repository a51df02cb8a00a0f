"""Dataset preparation: transcripts and recordings in, model-rate wavs, mel features and an index out; and the
reading side that training uses (`PreparedData`, the batch collators, length-bucketed batches).

`prepare_dataset(DATA_DIR, OUT_DIR)` reads one of two input layouts:

* LJSpeech: `DATA_DIR/metadata.csv` with `id|text|normalized text` rows (two-column `id|text` rows are also
  accepted) and the audio in `DATA_DIR/wavs/<id>.wav`.
* A `path|text` filelist, as NVIDIA's training scripts use: DATA_DIR is the filelist itself, or a folder
  holding exactly one `*.txt` filelist (and no metadata.csv). Paths are relative to the filelist's folder;
  a clip's id is its file name without the extension.

and writes

    OUT_DIR/dataset.json     format, version, AudioConfig, text front-end, summary (written last)
    OUT_DIR/train.jsonl      one clip per line: {"id", "text", "ids", "wav", "mel", "frames", "samples"}
    OUT_DIR/val.jsonl
    OUT_DIR/wavs/<id>.wav    16-bit PCM mono at the model's sampling rate
    OUT_DIR/mels/<id>.pt     float32 (n_mel_channels, frames) log mel of exactly that wav (torch.save)
    OUT_DIR/skipped.tsv      id or file:line <TAB> reason <TAB> detail
    OUT_DIR/summary.txt      clips, hours, characters, split sizes, longest clips, skips by reason, the first
                             few skipped clips with their reasons
    OUT_DIR/phone_timings.jsonl  copied from DATA_DIR when it has one (a synthesized corpus's phone timings,
                             for guided attention) and the audio is not trimmed

Text: the normalized column when a row has one, otherwise tacoglow's `normalize_text` of the text; the
result is what `english_cleaners` is given, and is stored with its ids. Audio may have any rate, channel
count or format soundfile can read (the format is recognised by content, not by extension).

Clips are skipped, never fatal, with one reason each: missing file, unreadable audio, empty audio,
non-finite samples, silent audio, too short, too long, empty text, no speakable text, malformed line,
invalid id, duplicate id. Clipped recordings are kept and counted. Characters that the cleaners' output has
no symbol for are dropped, as in training, and counted in the summary; a text left with no letters is
skipped.

The validation split is a seeded shuffle of the kept ids, so it depends only on the seed and on which clips
were kept. An OUT_DIR that already holds files is refused unless `force=True`, which deletes the outputs of
the previous run (and refuses if the folder holds anything else); there is no partial resume, since one
pass over LJSpeech takes minutes.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import librosa
import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from torch import Tensor

from .audio import AudioConfig, mel_spectrogram, resample, save_wav
from .config import ConfigError
from .errors import TacoglowError
from .text import NORMALIZER_VERSION, TEXT_FRONTEND_VERSION, normalize_text, text_to_sequence
from .text.cleaners import english_cleaners
from .text.symbols import FIRST_LETTER_ID, PAD, SYMBOL_TO_ID

__all__ = ["prepare_dataset", "DATASET_FORMAT", "DATASET_VERSION", "DatasetError", "Clip", "PreparedData",
           "TextMelBatch", "AudioMelBatch", "collate_text_mel", "collate_audio_mel", "bucket_batches"]

log = logging.getLogger(__name__)

DATASET_FORMAT = "tacoglow-dataset"
DATASET_VERSION = 1
CLEANERS = ["english_cleaners"]
# Everything prepare_dataset writes into OUT_DIR; force=True deletes only these.
_OUTPUT_NAMES = frozenset({"dataset.json", "train.jsonl", "val.jsonl", "skipped.tsv", "summary.txt",
                           "wavs", "mels", "phone_timings.jsonl"})
# A corpus made by a synthesizer may know when each phone of each clip sounds (recipes/slt/build_corpus.py
# writes Festival's segments here); prepare carries the file along for guided attention on true alignments.
PHONE_TIMINGS = "phone_timings.jsonl"

_Record = TypeVar("_Record")

SILENT_PEAK = 1e-3  # -60 dBFS: a recording whose loudest sample is below this holds no speech
CLIP_LEVEL = 0.999  # a sample at or beyond this magnitude sits at full scale...
CLIP_RUN = 3  # ...and this many in a row, of one sign, mean the recording was clipped
TRIM_TOP_DB = 40.0  # silence trimming: frames this far below the loudest frame are silence
TRIM_MARGIN_SECONDS = 0.05  # kept on each side of the trimmed speech so onsets and decays survive
SKIPPED_SHOWN = 5  # skipped clips named in summary.txt (all of them are in skipped.tsv)


@dataclass(frozen=True)
class _Row:
    """One transcript line: where the audio is and the text english_cleaners will see."""

    key: str  # id for an LJSpeech row, the file path for a filelist row; names the row in skipped.tsv
    id: str
    path: Path
    text: str
    source: str  # "normalized-column" or "normalizer"


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------------------
# Reading transcripts
# ---------------------------------------------------------------------------------------------------------

_INVALID_ID_RE = re.compile(r"[/\\\x00-\x1f]")


def _read_lines(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8-sig")
    return [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _text_and_source(raw: str, normalized: str | None) -> tuple[str, str]:
    if normalized is not None and normalized.strip():
        return normalized.strip(), "normalized-column"
    return normalize_text(raw.strip()), "normalizer"


def _read_ljspeech(data_dir: Path) -> tuple[list[_Row], list[tuple[str, str, str]]]:
    metadata = data_dir / "metadata.csv"
    rows, skipped = [], []
    for line_number, line in _read_lines(metadata):
        fields = line.split("|")
        if len(fields) not in (2, 3):
            skipped.append((f"{metadata.name}:{line_number}", "malformed line",
                            f"expected id|text or id|text|normalized text, got {len(fields)} fields"))
            continue
        clip_id = fields[0].strip()
        text, source = _text_and_source(fields[1], fields[2] if len(fields) == 3 else None)
        rows.append(_Row(clip_id, clip_id, data_dir / "wavs" / f"{clip_id}.wav", text, source))
    return rows, skipped


def _read_filelist(filelist: Path) -> tuple[list[_Row], list[tuple[str, str, str]]]:
    rows, skipped = [], []
    for line_number, line in _read_lines(filelist):
        fields = line.split("|")
        if len(fields) != 2:
            skipped.append((f"{filelist.name}:{line_number}", "malformed line",
                            f"expected path|text, got {len(fields)} fields"))
            continue
        relative = fields[0].strip()
        text, source = _text_and_source(fields[1], None)
        rows.append(_Row(relative, Path(relative).stem, filelist.parent / relative, text, source))
    return rows, skipped


def _read_source(data_dir: Path) -> tuple[list[_Row], list[tuple[str, str, str]], Path]:
    """Rows, malformed lines and the folder the audio paths live under."""
    if data_dir.is_file():
        return (*_read_filelist(data_dir), data_dir.parent)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such dataset folder or filelist")
    if (data_dir / "metadata.csv").is_file():
        return (*_read_ljspeech(data_dir), data_dir)
    filelists = sorted(data_dir.glob("*.txt"))
    if len(filelists) == 1:
        return (*_read_filelist(filelists[0]), data_dir)
    if not filelists:
        raise FileNotFoundError(f"{data_dir}: found neither metadata.csv (LJSpeech layout) nor a *.txt filelist")
    raise ConfigError(f"{data_dir}: holds {len(filelists)} *.txt filelists "
                     f"({', '.join(f.name for f in filelists[:4])}); pass the one to use as DATA_DIR")


# ---------------------------------------------------------------------------------------------------------
# One clip
# ---------------------------------------------------------------------------------------------------------

def _text_ids(text: str) -> tuple[list[int], str]:
    """(ids, characters the cleaners produce that have no symbol); raises _Skip when nothing is speakable."""
    if not text.strip():
        raise _Skip("empty text")
    ids = text_to_sequence(text, CLEANERS)
    plain = re.sub(r"\{[^}]*\}", " ", text)  # ARPAbet in braces maps to phones, not characters
    dropped = "".join(ch for ch in english_cleaners(plain) if ch not in SYMBOL_TO_ID or ch == PAD)
    if not any(i >= FIRST_LETTER_ID for i in ids):
        raise _Skip("no speakable text", f"{text[:60]!r} has no letters or phones after cleaning")
    return ids, dropped


def _is_clipped(audio: np.ndarray) -> bool:
    """True when CLIP_RUN consecutive samples sit at full scale with one sign (flat-topped waveform)."""
    for sign in (1.0, -1.0):
        at_limit = (sign * audio >= CLIP_LEVEL).astype(np.int32)
        if at_limit.sum() >= CLIP_RUN:
            run = np.convolve(at_limit, np.ones(CLIP_RUN, dtype=np.int32), mode="valid")
            if run.max() >= CLIP_RUN:
                return True
    return False


def _load_audio(path: Path, config: AudioConfig, trim_silence: bool,
                max_seconds: float | None) -> tuple[np.ndarray, bool]:
    """The recording as mono float32 in [-1, 1] at config.sampling_rate, and whether it was clipped."""
    if not path.is_file():
        raise _Skip("missing file", str(path))
    try:
        info = soundfile.info(str(path))
        # Without trimming the length is known before reading: a long file costs nothing.
        if not trim_silence and max_seconds is not None and info.duration > max_seconds:
            raise _Skip("too long", f"{info.duration:.2f} s > {max_seconds:g} s")
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except (RuntimeError, ValueError, OSError) as error:  # LibsndfileError is a RuntimeError
        raise _Skip("unreadable audio", str(error).splitlines()[0] if str(error) else type(error).__name__)
    if data.size == 0:
        raise _Skip("empty audio", f"{info.format} file with no samples")
    if not np.isfinite(data).all():
        raise _Skip("non-finite samples", "NaN or infinite samples")
    audio = data.mean(axis=1)
    peak = float(np.abs(audio).max())
    if peak < SILENT_PEAK:
        raise _Skip("silent audio", f"peak {peak:.2g}")
    clipped = peak > 1.0 or _is_clipped(audio)
    if rate != config.sampling_rate:
        audio = resample(np.ascontiguousarray(audio, dtype=np.float32), rate, config.sampling_rate)
    audio = np.clip(audio, -1.0, 1.0)  # float files beyond full scale; resampling overshoot
    if trim_silence:
        _, (start, end) = librosa.effects.trim(audio, top_db=TRIM_TOP_DB, frame_length=config.win_length,
                                               hop_length=config.hop_length)
        margin = round(TRIM_MARGIN_SECONDS * config.sampling_rate)
        audio = audio[max(0, start - margin):min(len(audio), end + margin)]
    seconds = len(audio) / config.sampling_rate
    if max_seconds is not None and seconds > max_seconds:
        raise _Skip("too long", f"{seconds:.2f} s > {max_seconds:g} s")
    if len(audio) <= config.filter_length:
        raise _Skip("too short", f"{len(audio)} samples; a mel frame needs more than {config.filter_length}")
    return audio, clipped


def _write_clip(audio: np.ndarray, wav_path: Path, mel_path: Path, config: AudioConfig) -> tuple[int, int]:
    """Write the wav, then the mel of the wav as written (16-bit), so training reads back the same numbers.

    Returns (samples, frames).
    """
    save_wav(wav_path, audio, config.sampling_rate)
    written, _ = soundfile.read(str(wav_path), dtype="float32")  # int16 / 32768, as load_wav reads it
    mel = mel_spectrogram(torch.from_numpy(written), config)  # (n_mel_channels, frames)
    torch.save(mel.contiguous(), mel_path)
    return len(written), mel.size(1)


# ---------------------------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------------------------

def _claim_output(out_dir: Path, source_dir: Path, force: bool) -> None:
    if out_dir.resolve() == source_dir.resolve():
        raise ConfigError(f"OUT_DIR {out_dir} is the source folder; its wavs/ would be overwritten. "
                         "Choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"OUT_DIR {out_dir} exists and is not a folder")
    existing = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
    if existing:
        if not force:
            raise ConfigError(f"OUT_DIR {out_dir} is not empty; pass --force to replace the dataset prepared there")
        foreign = [entry.name for entry in existing if entry.name not in _OUTPUT_NAMES]
        if foreign:
            raise ConfigError(f"refusing to clear OUT_DIR {out_dir}: it holds files that dataset preparation does "
                             f"not write ({', '.join(foreign[:5])})")
        for entry in existing:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    (out_dir / "mels").mkdir(exist_ok=True)


def _choose_validation(ids: list[str], val_fraction: float, val_count: int | None,
                       val_ids: Iterable[str] | None, seed: int) -> set[str]:
    if val_ids is not None:
        wanted = {i.strip() for i in val_ids if i.strip()}
        missing = wanted.difference(ids)
        if missing:
            log.warning("%d of %d validation ids are not among the prepared clips (skipped or absent), e.g. %s",
                        len(missing), len(wanted), sorted(missing)[0])
        return wanted.intersection(ids)
    if val_count is None:
        val_count = math.ceil(val_fraction * len(ids)) if val_fraction > 0 else 0
    if len(ids) > 1 and val_count >= len(ids):
        log.warning("validation set of %d would leave no training clips; using %d", val_count, len(ids) - 1)
    val_count = min(val_count, len(ids) - 1) if len(ids) > 1 else 0
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return set(order[:val_count])


def _write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")


def _summary_text(summary: dict[str, Any], out_dir: Path, skipped: Sequence[tuple[str, str, str]]) -> str:
    lines = [f"dataset {out_dir}",
             f"clips       {summary['clips']} ({summary['train']} train, {summary['val']} validation)",
             f"audio       {summary['hours']:.3f} hours ({summary['seconds']:.1f} s)",
             f"characters  {summary['characters']}",
             f"clipped     {summary['clipped']} clips kept despite clipping"]
    if summary["dropped_characters"]:
        dropped = ", ".join(f"{ch!r}×{n}" for ch, n in summary["dropped_characters"].items())
        lines.append(f"dropped     characters without a symbol: {dropped}")
    lines.append("longest clips:")
    lines += [f"  {item['id']}  {item['seconds']:.2f} s" for item in summary["longest"]]
    lines.append(f"skipped     {summary['skipped']}")
    lines += [f"  {reason}: {count}" for reason, count in summary["skipped_by_reason"].items()]
    if skipped:
        lines.append(f"first {min(len(skipped), SKIPPED_SHOWN)} skipped (all in skipped.tsv):")
        lines += [f"  {key}: {reason}" + (f" ({detail})" if detail else "")
                  for key, reason, detail in skipped[:SKIPPED_SHOWN]]
    return "\n".join(lines) + "\n"


def _audio_config(audio: AudioConfig | str | os.PathLike | None) -> AudioConfig:
    """An AudioConfig as given, read from JSON (its fields, or a dataset.json's "audio"), or NVIDIA's."""
    if audio is None:
        return AudioConfig()
    if isinstance(audio, AudioConfig):
        return audio
    with open(audio, encoding="utf-8") as f:
        fields = json.load(f)
    return AudioConfig.from_dict(fields.get("audio", fields) if isinstance(fields, dict) else fields)


def prepare_dataset(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    audio: AudioConfig | str | os.PathLike | None = None,
    val_fraction: float = 0.02,
    val_count: int | None = None,
    val_ids: Iterable[str] | None = None,
    trim_silence: bool = False,
    max_seconds: float | None = 15.0,
    seed: int = 1234,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare DATA_DIR (LJSpeech layout or a `path|text` filelist) as a training set in OUT_DIR.

    Args:
        audio: signal settings; wavs are written at `audio.sampling_rate` and mels computed with them. An
            AudioConfig, a JSON file of its fields or a dataset.json whose audio to reuse; None: NVIDIA's
            22050 Hz settings.
        val_fraction: share of the kept clips, rounded up, that forms the validation set.
        val_count: validation set size; overrides `val_fraction`.
        val_ids: exactly these ids form the validation set; overrides both.
        trim_silence: cut leading and trailing silence (TRIM_TOP_DB below the peak, TRIM_MARGIN_SECONDS kept).
        max_seconds: clips longer than this (after trimming) are skipped; None keeps all.
        seed: seed of the validation shuffle.
        force: replace a dataset already prepared in OUT_DIR.
        progress: show a progress bar.

    Returns:
        The summary stored in dataset.json: clips, train, val, seconds, hours, characters, clipped,
        longest, skipped, skipped_by_reason, dropped_characters, text_sources.

    Raises FileNotFoundError when DATA_DIR has no recognised layout, ValueError for unusable arguments or an
    OUT_DIR that cannot be claimed.
    """
    from tqdm import tqdm

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_count is not None and val_count < 0:
        raise ConfigError(f"val_count must be >= 0, got {val_count}")
    if max_seconds is not None and max_seconds <= 0:
        raise ConfigError(f"max_seconds must be positive, got {max_seconds}")
    audio = _audio_config(audio)
    rows, skipped, source_dir = _read_source(data_dir)
    _claim_output(out_dir, source_dir, force)

    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    clipped = 0
    dropped: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    for row in tqdm(rows, desc="preparing", unit="clip", disable=not progress):
        try:
            if not row.id or row.id in (".", "..") or _INVALID_ID_RE.search(row.id):
                raise _Skip("invalid id", f"{row.id!r} cannot name a file")
            if row.id in seen:
                raise _Skip("duplicate id", f"{row.id} appears earlier")
            seen.add(row.id)
            ids, dropped_here = _text_ids(row.text)
            samples, is_clipped = _load_audio(row.path, audio, trim_silence, max_seconds)
            wav, mel = f"wavs/{row.id}.wav", f"mels/{row.id}.pt"
            n_samples, frames = _write_clip(samples, out_dir / wav, out_dir / mel, audio)
        except _Skip as skip:
            skipped.append((row.key, skip.reason, skip.detail))
            continue
        clipped += is_clipped
        dropped.update(dropped_here)
        sources[row.source] += 1
        items.append({"id": row.id, "text": row.text, "ids": ids, "wav": wav, "mel": mel,
                      "frames": frames, "samples": n_samples})
    if not items:
        raise ConfigError(f"no usable clips in {data_dir}: all {len(skipped)} were skipped "
                         f"(see {out_dir / 'skipped.tsv'})")
    _write_skipped(out_dir / "skipped.tsv", skipped)

    validation = _choose_validation([item["id"] for item in items], val_fraction, val_count, val_ids, seed)
    train = [item for item in items if item["id"] not in validation]
    val = [item for item in items if item["id"] in validation]
    _write_jsonl(out_dir / "train.jsonl", train)
    _write_jsonl(out_dir / "val.jsonl", val)

    seconds = sum(item["samples"] for item in items) / audio.sampling_rate
    longest = sorted(items, key=lambda item: -item["samples"])[:5]
    summary = {
        "clips": len(items),
        "train": len(train),
        "val": len(val),
        "seconds": round(seconds, 3),
        "hours": round(seconds / 3600, 4),
        "characters": sum(len(item["text"]) for item in items),
        "clipped": clipped,
        "longest": [{"id": item["id"], "seconds": round(item["samples"] / audio.sampling_rate, 3)}
                    for item in longest],
        "skipped": len(skipped),
        "skipped_by_reason": dict(collections.Counter(reason for _, reason, _ in skipped).most_common()),
        "dropped_characters": dict(dropped.most_common()),
        "text_sources": dict(sources),
    }
    # The timings hold for the recordings as they are: trimmed audio starts at another time.
    timings = source_dir / PHONE_TIMINGS
    has_timings = timings.is_file() and not trim_silence
    if has_timings:
        shutil.copyfile(timings, out_dir / PHONE_TIMINGS)
    elif timings.is_file():
        log.warning("%s: not carried along, since trimmed recordings no longer start where they were timed",
                    timings)
    text_source = next(iter(sources)) if len(sources) == 1 else "mixed"
    dataset = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "audio": audio.to_dict(),
        "text": {"source": text_source,
                 "normalizer_version": NORMALIZER_VERSION if sources["normalizer"] else None,
                 "cleaners": CLEANERS,
                 "frontend": TEXT_FRONTEND_VERSION},
        "trim_silence": trim_silence,
        "phone_timings": PHONE_TIMINGS if has_timings else None,
        "source_dir": str(data_dir.resolve()),
        "summary": summary,
    }
    (out_dir / "summary.txt").write_text(_summary_text(summary, out_dir, skipped), encoding="utf-8")
    # Written last: a dataset.json means the folder is complete.
    (out_dir / "dataset.json").write_text(json.dumps(dataset, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    log.info("prepared %d clips (%.2f h) in %s; skipped %d", len(items), seconds / 3600, out_dir, len(skipped))
    return summary


def _write_skipped(path: Path, skipped: list[tuple[str, str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for key, reason, detail in skipped:
            f.write("\t".join(field.replace("\t", " ").replace("\n", " ") for field in (key, reason, detail))
                    + "\n")


# ==========================================================================================================
# Reading a prepared dataset, and batching it for training
# ==========================================================================================================

class DatasetError(TacoglowError, RuntimeError):
    """A prepared dataset folder that is missing, incomplete or of another format; the message says which
    file and what to do."""


@dataclass
class Clip:
    """One line of train.jsonl / val.jsonl."""

    id: str
    ids: list[int]
    wav: Path
    mel: Path
    frames: int
    samples: int
    text: str = ""  # what the ids were made from (before the cleaners)


class PreparedData:
    """A prepared dataset folder: its audio settings, text front-end and clips."""

    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir)
        meta_path = self.dir / "dataset.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.dir}: no dataset.json; prepare the data first (tacoglow prepare)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{meta_path}: not JSON ({error}); prepare the data again (tacoglow prepare)") from None
        if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DatasetError(f"{meta_path}: format is {found!r}, not {DATASET_FORMAT!r}; point --data at a "
                               "folder written by tacoglow prepare")
        if meta.get("version") != DATASET_VERSION:
            raise DatasetError(f"{meta_path}: dataset version {meta.get('version')} is not supported "
                               f"({DATASET_VERSION} is); prepare the data again with this tacoglow")
        self.audio = AudioConfig.from_dict(meta["audio"])
        self.text: dict[str, Any] = dict(meta.get("text") or {})
        self.train = self._read("train.jsonl")
        self.val = self._read("val.jsonl")
        if not self.train:
            raise DatasetError(f"{self.dir}/train.jsonl: no clips")

    def _read(self, name: str) -> list[Clip]:
        path = self.dir / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing; the dataset folder is incomplete")
        return _read_records(path, "a clip record", lambda d: Clip(
            id=str(d["id"]), ids=[int(i) for i in d["ids"]], wav=self.dir / d["wav"], mel=self.dir / d["mel"],
            frames=int(d["frames"]), samples=int(d["samples"]), text=str(d.get("text", ""))))

    def phone_timings(self) -> dict[str, list[tuple[str, float, str]]]:
        """Each clip's phone segments (phone, end in seconds, word; "0" for a pause) from ``phone_timings.jsonl``,
        by clip id; empty when the dataset has none. Read from the file at each call (a run reads it once)."""
        path = self.dir / PHONE_TIMINGS
        if not path.is_file():
            return {}
        what = 'a phone timing record {"id": ..., "segments": [[phone, end_seconds, word], ...]}'
        return dict(_read_records(path, what, lambda d: (
            str(d["id"]), [(str(p), float(end), str(w)) for p, end, w in d["segments"]])))

    def load_mel(self, clip: Clip) -> Tensor:
        mel = torch.load(clip.mel, map_location="cpu", weights_only=True)
        if mel.dim() != 2 or mel.size(0) != self.audio.n_mel_channels:
            raise DatasetError(f"{clip.mel}: expected a ({self.audio.n_mel_channels}, frames) mel, "
                                f"got {tuple(mel.shape)}")
        return mel.float()

    def load_segment(self, clip: Clip, start: int, length: int) -> Tensor:
        """``length`` samples from ``start`` as float32 in [-1, 1], zero-padded past the clip's end."""
        with soundfile.SoundFile(clip.wav) as f:
            if f.samplerate != self.audio.sampling_rate:
                raise DatasetError(f"{clip.wav}: {f.samplerate} Hz, but the dataset says "
                                    f"{self.audio.sampling_rate} Hz; prepare the data again")
            f.seek(start)
            data = f.read(length, dtype="float32", always_2d=True)
        audio = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy())
        return F.pad(audio, (0, length - audio.numel()))


def _read_records(path: Path, what: str, parse: Callable[[Any], _Record]) -> list[_Record]:
    """Each non-blank line of the JSON-lines file ``path`` through ``parse``; a line that does not parse is a
    DatasetError naming the file, the line and ``what`` it should be."""
    records = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(parse(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise DatasetError(f"{path}:{n}: not {what} ({error})") from None
    return records


class _TensorBatch:
    __dataclass_fields__: ClassVar[dict[str, Any]]  # each batch class is a @dataclass

    def to(self, device: torch.device | str):
        """A copy with every tensor on ``device``."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device, non_blocking=True)
                                            for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), Tensor)})


@dataclass
class TextMelBatch(_TensorBatch):
    """Tacotron 2 training batch. Mels are zero-padded to a multiple of r = n_frames_per_step."""

    text: Tensor  # (B, T_in) int64, zero-padded
    text_lengths: Tensor  # (B,) int64
    mels: Tensor  # (B, n_mel, T), T a multiple of r
    mel_lengths: Tensor  # (B,) int64, real frames
    gate: Tensor  # (B, T / r) float: 1 from the step holding the last real frame on (the reference's target)
    ids: list[str]
    # (B, T / r, 2) float: the input positions [lo, hi] each decoder step should attend, from phone timings
    # (tacoglow.train.alignment); NaN for items without a timing. None: no item has one.
    attention_bands: Tensor | None = None

    @property
    def step_lengths(self) -> Tensor:
        """(B,) decoder steps that hold real frames: ceil(mel_lengths / r)."""
        r = self.mels.size(2) // self.gate.size(1)
        return (self.mel_lengths + r - 1) // r


@dataclass
class AudioMelBatch(_TensorBatch):
    """WaveGlow training batch: audio segments and the mels computed from them."""

    audio: Tensor  # (B, segment_length) float32
    mels: Tensor  # (B, n_mel, 1 + segment_length // hop_length)
    ids: list[str]


def collate_text_mel(clips: Sequence[Clip], mels: Sequence[Tensor], r: int,
                     bands: Sequence[np.ndarray | None] | None = None) -> TextMelBatch:
    """Pad a batch; ``bands``: each clip's (ceil(frames / r), 2) attention targets or None."""
    text_lengths = torch.tensor([len(c.ids) for c in clips], dtype=torch.int64)
    mel_lengths = torch.tensor([m.size(1) for m in mels], dtype=torch.int64)
    t = int(math.ceil(int(mel_lengths.max()) / r) * r)
    text = torch.zeros(len(clips), int(text_lengths.max()), dtype=torch.int64)
    padded = torch.zeros(len(clips), mels[0].size(0), t)
    gate = torch.zeros(len(clips), t // r)
    for i, (clip, mel) in enumerate(zip(clips, mels)):
        text[i, :len(clip.ids)] = torch.tensor(clip.ids, dtype=torch.int64)
        padded[i, :, :mel.size(1)] = mel
        gate[i, (mel.size(1) - 1) // r:] = 1.0
    attention_bands = None
    if bands is not None and any(b is not None for b in bands):
        attention_bands = torch.full((len(clips), t // r, 2), math.nan)
        for i, b in enumerate(bands):
            if b is not None:
                attention_bands[i, :len(b)] = torch.from_numpy(b[:t // r])
    return TextMelBatch(text, text_lengths, padded, mel_lengths, gate, [c.id for c in clips], attention_bands)


def collate_audio_mel(data: PreparedData, clips: Sequence[Clip], starts: Sequence[int],
                      segment_length: int) -> AudioMelBatch:
    audio = torch.stack([data.load_segment(c, s, segment_length) for c, s in zip(clips, starts)])
    # The mel comes from the segment itself, as the reference's MelAudioLoader does.
    return AudioMelBatch(audio, mel_spectrogram(audio, data.audio), [c.id for c in clips])


def bucket_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, *, bucket_batches: int = 32,
                   rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """One epoch's batches (lists of indices) for process ``rank`` of ``world_size``.

    Shuffle, then sort each pool of ``bucket_batches * batch_size`` items by length and cut it into batches
    of similar lengths (little padding); shuffle the batches. Deterministic given (seed, epoch); incomplete
    batches are dropped, and every process gets the same number of batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool].tolist(), key=lambda i: lengths[i])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk) - batch_size + 1, batch_size)]
    batches = [batches[k] for k in rng.permutation(len(batches))]
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]
