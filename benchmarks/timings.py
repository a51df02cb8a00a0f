"""Accuracy of tacoglow's word timings against the word boundaries of the Festival voice that taught the model.

    python benchmarks/timings.py                       # the default voice, the corpus's validation phrases
    python benchmarks/timings.py --limit 50 --methods mean argmax --seeds 1 2 3
    python benchmarks/timings.py --corpus corpora/slt_prepared   # also check the clips against the corpus's own

Truth: Festival's `cmu_us_slt_arctic_hts` speaks each phrase and reports where each word is: a word starts where
its first segment starts and ends where its last segment ends (the Word relation, through SylStructure to the
Segment relation's end times). A word with no segments of its own (the possessive "'s", whose sound Festival
puts in the word before) is joined to the word before. The phrases are the validation phrases of the default
voice's corpus (`recipes/slt/build_corpus.py`: LJSpeech's 100 validation transcripts, `data/ljspeech_val.txt`,
split at punctuation into phrases of 25 to 90 label characters, none of them in the training corpus), and Festival
is given each phrase's label exactly as the recipe gives it.

Clips: each wav is made as `tacoglow prepare` made the corpus's (the recipe prepares without trimming): mono
float, resampled from Festival's 32 kHz to 22050 Hz (`tacoglow.audio.resample`), clipped to [-1, 1], written as
16-bit PCM and read back, and its mel computed by `tacoglow.audio.mel_spectrogram`. No sample is cut, so
Festival's times are the clip's times. `--corpus DIR` compares the clips with a prepared corpus's wavs.

Estimate: the voice's Tacotron 2 is teacher-forced on the clip's mel and its text (the ids and word spans its
`Synthesizer` makes of the label, ARPAbet as the voice reads), with prenet dropout on as in every Tacotron 2 pass
(seeded); its alignment gives word timings by `tacoglow.timings.word_timings` (`--methods`), with the silences of
the teacher-forced postnet mel (the library's default) and without them (the attention alone).

Matching: the words of the estimate are the front-end's (`tacoglow.text.words`); Festival splits some of them
("forty-two" -> forty, two; "buxton's" -> buxton, 's; "prs" -> p, r, s) and drops apostrophes ("o'donnell" ->
odonnell). Both word lists are reduced to their letters, run together, and aligned by `difflib`; one of our words
is matched when its letters align, in order, with all the letters of one or more consecutive Festival words and
with nothing else. It then starts where the first of them starts and ends where the last ends. Unmatched words
are counted and left out.

Errors are absolute differences in milliseconds, over all matched words: starts, ends, and both together; phrases
1-60 apart from the rest, on which the library's constants were chosen.

Free-running synthesis (`--free-running`) has no truth of its own: its words last as long as the model decides.
Festival's boundaries are moved onto its mel by dynamic time warping of the log-mel frames, and its timings are
compared with those. DTW's own error is measured where the answer is known: moving the boundaries onto the
teacher-forced mel, which is frame-aligned with the clip, should move nothing.
"""
from __future__ import annotations

import argparse
import difflib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import soundfile
import torch

from tacoglow.audio import mel_spectrogram, resample, save_wav
from tacoglow.hub import default_checkpoints
from tacoglow.quantized import avoid_amx
from tacoglow.synthesizer import Synthesizer
from tacoglow.timings import METHODS, WordTiming, word_timings

from corpus_recipe import recipe

REPO = Path(__file__).resolve().parents[1]
TUNED_FROM = 60  # tacoglow.timings' constants were chosen on the phrases from this index on


@dataclass
class Clip:
    id: str
    label: str
    audio: np.ndarray            # float32 at the voice's rate, as the corpus holds it
    words: list[WordTiming]      # Festival's


def phrases(path: Path, limit: int | None) -> list[tuple[str, str]]:
    """(id, label) of the validation phrases, as `build_corpus.py` makes them (its default lengths)."""
    items = [(p.id, p.label) for p in recipe.read_phrases(path, 25, 90)]
    return items[:limit] if limit else items


def festival(items: list[tuple[str, str]], work: Path) -> dict[str, tuple[Path, list[WordTiming]]]:
    """Speak each label with Festival in one process; each id's wav and its words with their times."""
    lines = [f"({recipe.VOICE})",
             "(define (say id text path)"
             " (let ((utt (utt.synth (eval (list 'Utterance 'Text text)))))"
             "  (utt.save.wave utt path 'riff)"
             "  (mapcar (lambda (w) (format t \"W %s %s %s %s\\n\" id (item.name w)"
             "    (item.feat w \"R:SylStructure.daughter1.daughter1.segment_start\")"
             "    (item.feat w \"R:SylStructure.daughtern.daughtern.end\")))"
             "   (utt.relation.items utt 'Word))))"]
    for clip_id, label in items:
        path = work / f"{clip_id}.wav"
        lines.append(f"(unwind-protect (say \"{clip_id}\" {recipe._scheme_string(label)} \"{path}\")"
                     f" (format t \"failed {clip_id}\\n\"))")
    script = work / "timings.scm"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=False).stdout
    words: dict[str, list[WordTiming]] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[0] == "W":
            said = words.setdefault(fields[1], [])
            word = WordTiming(fields[2], float(fields[3]), float(fields[4]))
            if word.end == 0 and said:  # no segments of its own ("'s"): its sound ends the word before it
                said[-1] = WordTiming(said[-1].text + word.text, said[-1].start, said[-1].end)
            else:
                said.append(word)
    return {i: (work / f"{i}.wav", words[i]) for i, _ in items if i in words and (work / f"{i}.wav").is_file()}


def corpus_audio(path: Path, rate: int) -> np.ndarray:
    """The clip as `tacoglow prepare` writes it (no trimming): mono, resampled, clipped, 16-bit."""
    data, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if source_rate != rate:
        audio = resample(np.ascontiguousarray(audio, dtype=np.float32), source_rate, rate)
    buffer = io.BytesIO()
    save_wav(buffer, np.clip(audio, -1.0, 1.0), rate)
    buffer.seek(0)
    written, _ = soundfile.read(buffer, dtype="float32")
    return written


def _letters(words: list[WordTiming]) -> tuple[str, list[int]]:
    """The words' letters run together (lower case, nothing else), and the word each letter comes from."""
    text, owner = "", []
    for k, word in enumerate(words):
        letters = re.sub(r"[^a-z]", "", word.text.lower())
        text += letters
        owner += [k] * len(letters)
    return text, owner


def match(ours: list[WordTiming], theirs: list[WordTiming]) -> list[tuple[WordTiming, WordTiming]]:
    """(our word, Festival's word or words joined) for each of our words whose letters are exactly those of one
    or more consecutive Festival words ("forty-two": forty, two; "buxton's": buxton, 's; "prs": p, r, s)."""
    mine, my_owner = _letters(ours)
    their_text, their_owner = _letters(theirs)
    to_theirs: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, mine, their_text, autojunk=False).get_matching_blocks():
        for j in range(block.size):
            to_theirs[block.a + j] = block.b + j
    pairs = []
    for k, word in enumerate(ours):
        chars = [i for i, o in enumerate(my_owner) if o == k]
        found = [to_theirs.get(i) for i in chars]
        if not chars or None in found:
            continue
        words = sorted({their_owner[j] for j in found if j is not None})
        covered = [j for j, o in enumerate(their_owner) if o in words]
        if words != list(range(words[0], words[-1] + 1)) or covered != found:
            continue  # not whole Festival words, or not only this word's letters
        pairs.append((word, WordTiming(word.text, theirs[words[0]].start, theirs[words[-1]].end)))
    return pairs


def row(name: str, signed: np.ndarray) -> str:
    """A table row of absolute errors (and the signed median: positive when ours are late)."""
    ms = 1000 * np.abs(signed)
    return (f"| {name} | {len(ms)} | {np.median(ms):.1f} | {np.percentile(ms, 95):.1f} | {ms.mean():.1f} | "
            f"{(ms < 20).mean():.0%} | {(ms < 50).mean():.0%} | {1000 * np.median(signed):+.1f} |")


def dtw_map(source: torch.Tensor, target: torch.Tensor, hop_seconds: float):
    """A function taking times in ``source``'s audio to times in ``target``'s, from the dynamic time warping of
    their log-mel frames (n_mel, frames) with Euclidean distances."""
    _, path = librosa.sequence.dtw(X=source.double().numpy(), Y=target.double().numpy(), metric="euclidean")
    path = path[::-1]
    frames = np.unique(path[:, 0])
    partners = np.array([path[path[:, 0] == i, 1].mean() for i in frames])
    return lambda t: float(np.interp(t / hop_seconds, frames, partners)) * hop_seconds


def moved(words: list[WordTiming], where) -> list[WordTiming]:
    return [WordTiming(w.text, where(w.start), where(w.end)) for w in words]


@dataclass
class Errors:
    """Signed boundary errors (ours - truth, seconds) by phrase index."""

    starts: list[tuple[int, float]] = field(default_factory=list)
    ends: list[tuple[int, float]] = field(default_factory=list)

    def add(self, phrase: int, pairs: list[tuple[WordTiming, WordTiming]]) -> None:
        self.starts += [(phrase, mine.start - truth.start) for mine, truth in pairs]
        self.ends += [(phrase, mine.end - truth.end) for mine, truth in pairs]

    def both(self, phrases: range | None = None) -> np.ndarray:
        return np.array([e for k, e in self.starts + self.ends if phrases is None or k in phrases])


def main(argv: list[str] | None = None) -> int:
    avoid_amx()  # as the command line does, before torch's first oneDNN operation
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tacotron2", type=Path, help="Tacotron 2 checkpoint (default: the installed voice)")
    parser.add_argument("--sentences", type=Path, default=REPO / "data" / "ljspeech_val.txt",
                        help="'id|text' transcripts, split into phrases as the corpus recipe does")
    parser.add_argument("--limit", type=int, default=None, help="first N phrases only")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="position estimators to measure, each with and without the mel's silences")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], help="prenet dropout seeds, one pass each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--corpus", type=Path, help="a prepared corpus (e.g. corpora/slt_prepared) to compare "
                                                    "the reproduced clips with")
    parser.add_argument("--free-running", action="store_true",
                        help="also time free-running synthesis against Festival's words moved onto it by DTW")
    parser.add_argument("--worst", type=int, default=0, help="print the N words with the largest errors")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if shutil.which("festival") is None:
        raise SystemExit("festival is not installed: apt-get install -y festival festvox-us-slt-hts")

    tacotron2 = args.tacotron2 or default_checkpoints()[0]
    synth = Synthesizer.from_checkpoints(tacotron2)
    model, rate, hop = synth.tacotron2, synth.audio.sampling_rate, synth.audio.hop_length
    r = model.config.n_frames_per_step
    items = phrases(args.sentences, args.limit)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        spoken = festival(items, Path(tmp))
        clips = [Clip(i, label, corpus_audio(spoken[i][0], rate), spoken[i][1]) for i, label in items if i in spoken]
    print(f"{len(clips)} of {len(items)} phrases spoken by Festival in {time.monotonic() - started:.1f} s; "
          f"{sum(len(c.audio) for c in clips) / rate:.1f} s of audio")
    if args.corpus:
        diffs = []
        for clip in clips:
            path = args.corpus / "wavs" / f"{clip.id}.wav"
            if path.is_file():
                theirs, _ = soundfile.read(str(path), dtype="float32")
                diffs.append(np.abs(theirs - clip.audio).max() if len(theirs) == len(clip.audio) else np.inf)
        print(f"against {args.corpus}: {len(diffs)} clips found, largest sample difference {max(diffs, default=0):.2g}")

    estimators = [((f"{m} + silences" + (" (default)" if m == METHODS[0] else "")) if silences
                   else f"{m}, attention only", m, silences) for m in args.methods for silences in (True, False)]
    errors = {name: Errors() for name, _, _ in estimators}
    free, dtw_itself = Errors(), Errors()
    worst: list[tuple[float, str, str, WordTiming, WordTiming]] = []
    unmatched = matched = capped = 0
    started = time.monotonic()
    for k, clip in enumerate(clips):
        ids = synth.text_to_ids(clip.label)
        spans = synth.word_spans(clip.label, ids)
        mel = mel_spectrogram(torch.from_numpy(clip.audio), synth.audio)  # (n_mel, frames)
        frames = mel.shape[-1]
        for seed in args.seeds:
            torch.manual_seed(seed)
            with torch.no_grad():
                _, predicted, _, alignment = model(torch.tensor([ids]), torch.tensor([len(ids)]), mel[None],
                                                   torch.tensor([frames]))
            for name, method, silences in estimators:
                ours = word_timings(alignment[0], spans, frames_per_step=r, seconds_per_frame=hop / rate,
                                    duration=len(clip.audio) / rate, method=method,
                                    mel=predicted[0, :, :frames] if silences else None)
                pairs = match(ours, clip.words)
                errors[name].add(k, pairs)
                if name == estimators[0][0] and seed == args.seeds[0]:
                    matched += len(pairs)
                    unmatched += len(ours) - len(pairs)
                    worst += [(max(abs(mine.start - truth.start), abs(mine.end - truth.end)), clip.id, clip.label,
                               mine, truth) for mine, truth in pairs]
                    if args.free_running:  # how far DTW alone moves boundaries where the truth is known
                        truths = [t for _, t in pairs]
                        onto_itself = dtw_map(mel, predicted[0, :, :frames], hop / rate)
                        dtw_itself.add(k, list(zip(moved(truths, onto_itself), truths)))
            if args.free_running:
                generator = torch.Generator().manual_seed(seed)
                (result,) = synth.synthesize_ids([ids], [generator], texts=[clip.label])
                capped += result.stopped_by == "cap"
                seconds = result.mel_length * hop / rate
                truth_there = moved(clip.words, dtw_map(mel, result.mel, hop / rate))
                free.add(k, match(result.word_timings(seconds), truth_there))
    print(f"teacher forcing{' and free-running synthesis' if args.free_running else ''}, and timings: "
          f"{time.monotonic() - started:.1f} s ({len(args.seeds)} seed(s), {args.threads} thread(s)); words matched "
          f"{matched}, unmatched {unmatched}" + (f"; free-running stopped at the cap: {capped}" if args.free_running
                                                  else "") + "\n")
    print("| estimator | boundaries | n | median ms | p95 ms | mean ms | < 20 ms | < 50 ms | signed median ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    default = errors[estimators[0][0]]
    held_out = range(0, min(TUNED_FROM, len(clips)))
    print(row(f"{estimators[0][0]} | word starts", np.array([e for _, e in default.starts])))
    print(row(f"{estimators[0][0]} | word ends", np.array([e for _, e in default.ends])))
    print(row(f"{estimators[0][0]} | both", default.both()))
    print(row(f"{estimators[0][0]} | both, phrases 1-{len(held_out)} (not used to choose constants)",
              default.both(held_out)))
    if len(clips) > TUNED_FROM:
        print(row(f"{estimators[0][0]} | both, phrases {TUNED_FROM + 1}-{len(clips)} (used to choose them)",
                  default.both(range(TUNED_FROM, len(clips)))))
    for name, _, _ in estimators[1:]:
        print(row(f"{name} | both", errors[name].both()))
    if args.free_running:
        print(row("free-running synthesis, against Festival's words moved by DTW | both", free.both()))
        print(row("DTW alone: teacher-forced mel, where no move is right | both", dtw_itself.both()))
    for error, clip_id, label, mine, truth in sorted(worst, key=lambda w: -w[0])[:args.worst]:
        print(f"{1000 * error:7.1f} ms {clip_id} {mine.text!r}: ours {mine.start:.3f}-{mine.end:.3f}, "
              f"Festival {truth.start:.3f}-{truth.end:.3f} ({label[:60]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
