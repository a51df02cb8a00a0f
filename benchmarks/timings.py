"""Accuracy of tacoglow's word timings against the word boundaries of the Festival voice that taught the model.

    python benchmarks/timings.py                       # the default voice, the corpus's validation phrases
    python benchmarks/timings.py --limit 50 --methods mean argmax --seeds 1 2 3
    python benchmarks/timings.py --corpus corpora/slt_prepared   # also check the clips against the corpus's own

Truth: Festival's `cmu_us_slt_arctic_hts` speaks each phrase and reports where each word is: a word starts where
its first segment starts and ends where its last segment ends (the Word relation, through SylStructure to the
Segment relation's end times). The phrases are the validation phrases of the default voice's corpus
(`recipes/slt/build_corpus.py`: LJSpeech's 100 validation transcripts, `data/ljspeech_val.txt`, split at
punctuation into phrases of 25 to 90 label characters, none of them in the training corpus), and Festival is
given each phrase's label exactly as the recipe gives it.

Clips: each wav is made as `tacoglow prepare` made the corpus's (the recipe prepares without trimming): mono
float, resampled from Festival's 32 kHz to 22050 Hz (`tacoglow.audio.resample`), clipped to [-1, 1], written as
16-bit PCM and read back, and its mel computed by `tacoglow.audio.mel_spectrogram`. No sample is cut, so
Festival's times are the clip's times. `--corpus DIR` compares the clips with a prepared corpus's wavs.

Estimate: the voice's Tacotron 2 is teacher-forced on the clip's mel and its text (the ids and word spans its
`Synthesizer` makes of the label, ARPAbet as the voice reads), with prenet dropout on as in every Tacotron 2 pass
(seeded); its alignment gives word timings by `tacoglow.timings.word_timings` (`--methods`).

Matching: the words of the estimate are the front-end's (`tacoglow.text.words`); Festival splits hyphenated
words ("forty-two" -> "forty", "two"). Each of our words is split at its hyphens, the two word lists are aligned
by `difflib` (exact, lower-case pieces), and a word is matched when all its pieces align, in order, with
consecutive Festival words; it then starts where the first starts and ends where the last ends. Unmatched words
are counted and left out.

Errors are absolute differences in milliseconds, over all matched words: starts, ends, and both together.
Free-running synthesis has no truth to compare with (its words last as long as the model decides, not as long as
Festival's), so it is not measured here.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import io
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

from tacoglow.audio import mel_spectrogram, resample, save_wav
from tacoglow.hub import default_checkpoints
from tacoglow.synthesizer import Synthesizer
from tacoglow.timings import METHODS, WordTiming, word_timings

REPO = Path(__file__).resolve().parents[1]


def _load_recipe():
    """`recipes/slt/build_corpus.py` as a module: its phrase splitter, labels and voice name are reused as is."""
    path = REPO / "recipes" / "slt" / "build_corpus.py"
    spec = importlib.util.spec_from_file_location("build_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


recipe = _load_recipe()


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
            words.setdefault(fields[1], []).append(WordTiming(fields[2], float(fields[3]), float(fields[4])))
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


def match(ours: list[WordTiming], theirs: list[WordTiming]) -> list[tuple[WordTiming, WordTiming]]:
    """(our word, Festival's word or words joined) for each of our words found in Festival's list."""
    pieces, owner = [], []
    for k, word in enumerate(ours):
        for piece in word.text.split("-"):
            pieces.append(piece)
            owner.append(k)
    names = [w.text.lower() for w in theirs]
    to_theirs: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, pieces, names, autojunk=False).get_matching_blocks():
        for j in range(block.size):
            to_theirs[block.a + j] = block.b + j
    pairs = []
    for k, word in enumerate(ours):
        mine = [i for i, o in enumerate(owner) if o == k]
        found = [to_theirs.get(i) for i in mine]
        if None in found or found != list(range(found[0], found[0] + len(found))):  # type: ignore[arg-type]
            continue
        first, last = theirs[found[0]], theirs[found[-1]]  # type: ignore[index]
        pairs.append((word, WordTiming(word.text, first.start, last.end)))
    return pairs


def row(name: str, signed: np.ndarray) -> str:
    """A table row of absolute errors (and the signed median: positive when ours are late)."""
    ms = 1000 * np.abs(signed)
    return (f"| {name} | {len(ms)} | {np.median(ms):.1f} | {np.percentile(ms, 95):.1f} | {ms.mean():.1f} | "
            f"{(ms < 20).mean():.0%} | {(ms < 50).mean():.0%} | {1000 * np.median(signed):+.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tacotron2", type=Path, help="Tacotron 2 checkpoint (default: the installed voice)")
    parser.add_argument("--sentences", type=Path, default=REPO / "data" / "ljspeech_val.txt",
                        help="'id|text' transcripts, split into phrases as the corpus recipe does")
    parser.add_argument("--limit", type=int, default=None, help="first N phrases only")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="position estimators to measure")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], help="prenet dropout seeds, one pass each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--corpus", type=Path, help="a prepared corpus (e.g. corpora/slt_prepared) to compare "
                                                    "the reproduced clips with")
    parser.add_argument("--top-db", type=float, default=40.0,
                        help="silences of the predicted mel refine the boundaries: frames this far below its loudest "
                             "(default 40, the library's); 0: the attention alone")
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
    festival_s = time.monotonic() - started
    print(f"{len(clips)} of {len(items)} phrases spoken by Festival in {festival_s:.1f} s; "
          f"{sum(len(c.audio) for c in clips) / rate:.1f} s of audio")
    if args.corpus:
        diffs = []
        for clip in clips:
            path = args.corpus / "wavs" / f"{clip.id}.wav"
            if path.is_file():
                theirs, _ = soundfile.read(str(path), dtype="float32")
                diffs.append(np.abs(theirs - clip.audio).max() if len(theirs) == len(clip.audio) else np.inf)
        print(f"against {args.corpus}: {len(diffs)} clips found, largest sample difference {max(diffs, default=0):.2g}")

    errors: dict[str, dict[str, list[float]]] = {m: {"start": [], "end": []} for m in args.methods}
    worst: list[tuple[float, str, str, WordTiming, WordTiming]] = []
    unmatched = matched = 0
    started = time.monotonic()
    for clip in clips:
        ids = synth.text_to_ids(clip.label)
        spans = synth.word_spans(clip.label, ids)
        mel = mel_spectrogram(torch.from_numpy(clip.audio), synth.audio)[None]  # (1, n_mel, frames)
        frames = mel.shape[-1]
        for seed in args.seeds:
            torch.manual_seed(seed)
            with torch.no_grad():
                _, predicted, _, alignment = model(torch.tensor([ids]), torch.tensor([len(ids)]), mel,
                                                   torch.tensor([frames]))
            for method in args.methods:
                ours = word_timings(alignment[0], spans, frames_per_step=r, seconds_per_frame=hop / rate,
                                    duration=len(clip.audio) / rate, method=method,
                                    mel=predicted[0, :, :frames] if args.top_db else None, top_db=args.top_db)
                pairs = match(ours, clip.words)
                if method == args.methods[0] and seed == args.seeds[0]:
                    matched += len(pairs)
                    unmatched += len(ours) - len(pairs)
                for mine, truth in pairs:
                    errors[method]["start"].append(mine.start - truth.start)
                    errors[method]["end"].append(mine.end - truth.end)
                    if method == args.methods[0]:
                        worst.append((max(abs(mine.start - truth.start), abs(mine.end - truth.end)), clip.id,
                                      clip.label, mine, truth))
    model_s = time.monotonic() - started
    print(f"teacher forcing and timings: {model_s:.1f} s ({len(args.seeds)} seed(s), {args.threads} thread(s)); "
          f"words matched {matched}, unmatched {unmatched}\n")
    print("| estimator, boundary | boundaries | median ms | p95 ms | mean ms | < 20 ms | < 50 ms | signed median ms |")
    print("|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        starts, ends = np.array(errors[method]["start"]), np.array(errors[method]["end"])
        print(row(f"{method}, word starts", starts))
        print(row(f"{method}, word ends", ends))
        print(row(f"{method}, both", np.concatenate([starts, ends])))
    for error, clip_id, label, mine, truth in sorted(worst, key=lambda w: -w[0])[:args.worst]:
        print(f"{1000 * error:7.1f} ms {clip_id} {mine.text!r}: ours {mine.start:.3f}-{mine.end:.3f}, "
              f"Festival {truth.start:.3f}-{truth.end:.3f} ({label[:60]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
