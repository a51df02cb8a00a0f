"""Speaking a file of lines into a folder: one WAV per line, named by its line number and seeded per line; and
the command line's other bulk forms: JSON lines in, one JSON result line out per input; raw PCM out as it is made.

The names and seeds are the contract of bulk synthesis (``tacoglow synthesize -i LINES -o DIR``): line n of
N is written to ``DIR/{n:04d}.wav`` (wider when N needs it) with seed ``seed + n - 1``, so a seeded run gives
the same file for a line however the lines are shared out. JSON lines (``--json-input``) follow the same
contract for the lines that name no ``output_file`` or ``seed``, counting every line of the input (blank ones
are skipped but counted).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, Sequence, TextIO

import numpy as np
from tqdm import tqdm

from .audio import save_wav, to_pcm16
from .catalog import VoiceCatalog
from .errors import TacoglowError
from .ssml import is_ssml
from .subtitles import write_sidecar
from .synthesizer import Speech, Synthesizer, new_seed, pause_samples

log = logging.getLogger(__name__)


def synthesize_text(synth: Synthesizer, text: str, seed: int | None = None, progress: bool = True,
                    ssml: bool = False) -> Speech:
    """``synth.synthesize`` with a progress bar for texts of several sentences, and a warning for each
    sentence cut at the decoding cap. ``text`` is SSML when ``ssml`` is set or it starts with ``<speak``."""
    bars: list[tqdm] = []

    def report(done: int, total: int) -> None:
        if total < 2 or not progress:
            return
        if not bars:  # created on first use, so that an error before any audio stays one line
            bars.append(tqdm(total=total, desc="synthesizing", unit="sentence"))
        bars[0].update(done - bars[0].n)

    try:
        speech = synth.synthesize(text, seed=seed, progress=report, ssml=ssml or is_ssml(text))
    finally:
        for bar in bars:
            bar.close()
    for sentence in speech.sentences:
        if sentence.stopped_by == "cap":
            log.warning("%r was cut at the decoding cap", sentence.text[:50])
    return speech


def read_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped; a TacoglowError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TacoglowError(f"{path}: no such text file")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as error:
        raise TacoglowError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = [line for line in lines if line]
    if not lines:
        raise TacoglowError(f"{path}: has no text lines")
    return lines


def line_name(n: int, total: int) -> str:
    """File name of line ``n`` (1-based) of ``total``: zero-padded so that names sort in input order."""
    return f"{n:0{max(4, len(str(total)))}d}.wav"


def line_seed(seed: int | None, n: int) -> int | None:
    """Seed of line ``n`` (1-based) in a run seeded with ``seed``; None draws a fresh one."""
    return None if seed is None else seed + n - 1


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TacoglowError(f"{out_dir}: with --input, -o must be a folder")
    return out_dir


def synthesize_lines(synth: Synthesizer, lines: list[str], out_dir: str | os.PathLike, seed: int | None = None,
                     progress: bool = True, ssml: bool = False, sidecars: Sequence[str] = ()) -> list[Path]:
    """Speak each line into its own WAV in ``out_dir`` (created); returns the paths in input order. A line is
    SSML when ``ssml`` is set or it starts with ``<speak``.

    ``sidecars``: suffixes (".srt", ".vtt", ".json") of subtitle and timings files written beside each WAV, with
    its name (:func:`tacoglow.subtitles.write_sidecar`)."""
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, line in enumerate(tqdm(lines, desc="synthesizing", unit="line", disable=not progress), start=1):
        speech = synth.synthesize(line, seed=line_seed(seed, n), ssml=ssml or is_ssml(line))
        paths.append(out_dir / line_name(n, len(lines)))
        save_wav(paths[-1], speech.audio, speech.sample_rate)
        for suffix in sidecars:
            write_sidecar(paths[-1].with_suffix(suffix), speech)
    log.info("wrote %d files to %s", len(lines), out_dir)
    return paths


def write_raw(synth: Synthesizer, text: str, out: BinaryIO, seed: int | None = None,
              ssml: bool = False) -> tuple[int, int]:
    """Speak ``text`` into ``out`` as raw 16-bit mono little-endian PCM at the voice's rate, each sentence
    written and flushed as soon as it is synthesized, followed by its pause: the same samples that the WAV of
    ``synth.synthesize`` with this seed holds. Returns (the seed used, the samples written)."""
    seed = new_seed() if seed is None else int(seed)
    written = 0
    for result in synth.stream(text, seed=seed, ssml=ssml or is_ssml(text)):
        assert result.audio is not None  # stream vocodes every sentence
        samples = np.concatenate([to_pcm16(result.audio),
                                  np.zeros(pause_samples(result.pause, synth.audio.sampling_rate), np.int16)])
        out.write(samples.astype("<i2").tobytes())
        out.flush()
        written += samples.size
    return seed, written


JSON_FIELDS = {"text": str, "output_file": str, "seed": int, "voice": str, "ssml": bool}


def read_json_request(line: str) -> dict[str, Any]:
    """One JSON line → its fields, checked (``text`` required; ``output_file``, ``seed``, ``voice`` and ``ssml``
    optional); a TacoglowError says what is wrong. (Whether ``voice`` names a voice is the catalog's to say.)"""
    try:
        request = json.loads(line)
    except ValueError as error:
        raise TacoglowError(f"not JSON ({error})") from None
    except RecursionError:  # "[[[[..." thousands deep
        raise TacoglowError("not JSON that can be read: it nests too deeply") from None
    if not isinstance(request, dict):
        raise TacoglowError(f"expected a JSON object such as {{\"text\": \"Hello.\"}}, got {type(request).__name__}")
    unknown = sorted(set(request) - set(JSON_FIELDS))
    if unknown:
        raise TacoglowError(f"unknown keys {unknown}; a line may have {', '.join(JSON_FIELDS)}")
    for key, kind in JSON_FIELDS.items():
        value = request.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise TacoglowError(f"{key!r} must be {kind.__name__}, got {json.dumps(value)[:40]}")
    if not (request.get("text") or "").strip():
        raise TacoglowError("'text' is required: the text to speak")
    if request.get("seed") is not None and not 0 <= request["seed"] < 1 << 63:
        raise TacoglowError(f"'seed' must be in [0, 2**63), got {request['seed']}")
    if request.get("output_file") is not None:
        check_output_file(request["output_file"])
    return request


def check_output_file(name: str) -> Path:
    """A JSON line's ``output_file`` → its path, taken as given, like ``-o``'s: relative to the current directory,
    or absolute. A JSON line speaks with the authority of the command that reads it, so it may write a WAV
    anywhere that command may; what it may not do is write anything but a ``.wav`` file (a line that names
    ``~/.bashrc`` would overwrite it with audio), or name a path that the system would cut short (a NUL byte:
    "a\\x00.wav" would be written as "a"). A TacoglowError says which."""
    if "\x00" in name:
        raise TacoglowError(f"'output_file' {name!r} holds a NUL character: no file can have that name")
    try:
        os.fsencode(name)
    except UnicodeEncodeError as error:  # a lone surrogate ("\ud800" in the JSON)
        raise TacoglowError(f"'output_file' {name!r} is no file name: {error.reason}") from None
    if not name.lower().endswith(".wav") or not Path(name).stem:
        raise TacoglowError(f"'output_file' {name[:80]!r} must name a .wav file (audio is written only to .wav)")
    path = Path(name)
    if path.is_dir():
        raise TacoglowError(f"'output_file' {name!r} is a folder: name a .wav file in it")
    return path


def synthesize_json_lines(voices: Synthesizer | VoiceCatalog, lines: Iterable[str | bytes], results: TextIO,
                          out_dir: str | os.PathLike | None = None, seed: int | None = None, ssml: bool = False,
                          total: int | None = None, voice_name: str = "default") -> int:
    """Speak each JSON line (:func:`read_json_request`) into a WAV, writing one JSON result line per input to
    ``results`` as soon as it is done: ``{"line", "output_file", "duration", "seed", "sentences", "voice"}``, or
    ``{"line", "error"}`` for a line that fails (the run goes on). Returns the number of failed lines. Lines
    given as bytes are decoded one by one as UTF-8, so a line that is not fails alone.

    A line without ``output_file`` goes to ``out_dir`` under the name ``-i`` gives line n (of ``total``,
    when known); without ``seed`` it gets ``seed + n - 1`` (as ``-i``), or a fresh one. Its text is SSML when
    its ``ssml`` is true, or when it has none and ``ssml`` is set or the text starts with ``<speak``. Its
    ``voice`` names one of ``voices`` (a :class:`~tacoglow.catalog.VoiceCatalog`, each voice loaded on first
    use; a single voice is a catalog of one, named ``voice_name``); without one, the default voice speaks.
    """
    catalog = voices if isinstance(voices, VoiceCatalog) else VoiceCatalog(voices, default_name=voice_name)
    failed = 0
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise TacoglowError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
            request = read_json_request(line)
            if request.get("output_file") is not None:
                path = check_output_file(request["output_file"])
            elif out_dir is not None:
                path = check_output_folder(out_dir) / line_name(n, max(total or 0, n))
            else:
                raise TacoglowError("no 'output_file', and no -o folder for the lines without one")
            text = request["text"]
            is_markup = request["ssml"] if request.get("ssml") is not None else (ssml or is_ssml(text))
            line_seed_ = request["seed"] if request.get("seed") is not None else line_seed(seed, n)
            voice = catalog.resolve(request.get("voice"))  # an unknown voice: the line fails, naming the known
            with catalog.use(voice) as synth:
                speech = synth.synthesize(text, seed=line_seed_, ssml=is_markup)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_wav(path, speech.audio, speech.sample_rate)
            result: dict[str, Any] = {"line": n, "output_file": str(path), "duration": round(speech.duration, 6),
                                      "seed": speech.seed, "sentences": len(speech.sentences), "voice": voice}
        except (TacoglowError, OSError) as error:
            failed += 1
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            result = {"line": n, "error": f"line {n}: {message}"}
            log.warning("%s", result["error"])
        results.write(json.dumps(result) + "\n")
        results.flush()
    return failed
