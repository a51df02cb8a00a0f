"""Synthesize an LJSpeech-layout corpus with Festival's CMU ARCTIC SLT HTS voice.

Each LJSpeech transcript is split at punctuation into phrases of `--min-chars` to `--max-chars` spoken
characters (about 2 to 5 seconds of this voice), never inside a word. A phrase's label is what tacoglow's
frozen front-end makes of it, `english_cleaners(normalize_text(phrase))`, restricted to the model's symbols;
Festival is given exactly that label, so numbers and abbreviations are spoken as the label spells them.

Training phrases are the first `--phrases` of all phrases from `--train-list` in a fixed shuffled order
(`--seed`), so a larger N extends a smaller corpus. Validation phrases are all phrases from `--val-list`;
their ids go to `val_ids.txt` for `tacoglow prepare --val-ids`. Both lists default to the LJSpeech
transcripts under `data/` (see its README); a list whose name ends in `.gz` is read gzip-compressed.

`--short N` adds N short training items (ids `<utterance>_s`), one from each of the first N transcripts of
`--train-list` in another fixed shuffled order: the last one to four words of one of its clauses, ended by
the clause's mark (a comma, colon or semicolon becomes a period), e.g. "Newgate." or "in the past.". They
teach the decoder to stop after a word or two; the phrases above are never shorter than `--min-chars`.

`--words N` adds N one-word items (ids `word_<word>`): the shortest words of `--train-list` (two to four
letters with a vowel), in a fixed shuffled order, each ended by ".", "!" or "?" (6:2:2), e.g.
"Me." or "Yet?". Short clause ends are rarely a single two-phone word, and without these a voice may run
"Hi." into the step cap. The words of the short inputs the default voice is tested on (`HELD_OUT_WORDS`) are
left out, so that the test measures what the voice learned, not what it heard.

Output (`--out`): `metadata.csv` (id|phrase|label), `wavs/<id>.wav` (Festival's 16-bit PCM at its own rate),
`val_ids.txt`, and `phone_timings.jsonl`: Festival's segments of each clip (phone, end time, word), from
`phones/<id>.phones`. Re-running skips phrases whose wav and timings already exist.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile
from tqdm import tqdm

from tacoglow.text import normalize_text, symbols
from tacoglow.text.cleaners import english_cleaners

log = logging.getLogger("build_corpus")

DATA = Path(__file__).resolve().parents[2] / "data"

VOICE = "voice_cmu_us_slt_arctic_hts"
SPEAKABLE = frozenset(symbols) - {"_"}  # single characters only; the '@' phones are multi-character

# A phrase may end after one of these marks (and any closing quotes or brackets) followed by a space...
_BREAK_RE = re.compile(r"[,;:.!?][\"')\]]*(?=\s)")
# ...but not after a period that ends a title or an initial ("Mr. Oswald", "J. Edgar", "U.S. Army").
_TITLES = {"mr", "mrs", "ms", "dr", "drs", "st", "co", "jr", "sr", "maj", "gen", "rev", "lt", "hon", "sgt",
           "capt", "esq", "ltd", "col", "ft", "no", "vol", "messrs", "mt", "gov", "sen", "rep", "prof"}


@dataclass(frozen=True)
class Phrase:
    id: str
    text: str  # the transcript's words, as written
    label: str  # what Festival says and what the model reads


def label_text(text: str) -> str:
    """tacoglow's front-end reading of `text`, keeping only characters the model has symbols for.

    Punctuation glued between two words becomes a space: the cleaners turn "12:47" into
    "twelve:forty-seven", which Festival would spell out letter by letter.
    """
    cleaned = english_cleaners(normalize_text(text))
    kept = "".join(ch if ch in SPEAKABLE else " " for ch in cleaned)
    kept = re.sub(r"(?<=[a-z])[:;,!?()]+(?=[a-z])", " ", kept)
    return re.sub(r"\s+", " ", kept).strip()


def _break_points(text: str) -> list[int]:
    points = []
    for match in _BREAK_RE.finditer(text):
        if text[match.start()] == ".":
            word = text[:match.start()].rsplit(None, 1)[-1] if text[:match.start()].strip() else ""
            word = word.lstrip("\"'([")
            if len(word) == 1 or "." in word or word.lower() in _TITLES:
                continue
        points.append(match.end())
    return points


def split_phrases(text: str, min_chars: int, max_chars: int) -> list[tuple[str, str]]:
    """Split a transcript at punctuation into (phrase, label) pairs whose labels have min..max characters.

    Pieces between break points are merged greedily while the label fits in `max_chars`; a piece that alone
    is too long, and a phrase that stays too short, are dropped rather than cut mid-clause.
    """
    cuts = [0, *_break_points(text), len(text)]
    pieces = [text[a:b].strip() for a, b in zip(cuts, cuts[1:])]
    pieces = [piece for piece in pieces if piece]
    phrases: list[tuple[str, str]] = []
    current = ""
    for piece in pieces:
        joined = f"{current} {piece}".strip()
        if len(label_text(joined)) <= max_chars:
            current = joined
            continue
        if current:
            phrases.append((current, label_text(current)))
        current = piece
    if current:
        label = label_text(current)
        # A short tail joins the previous phrase when both fit together.
        if len(label) < min_chars and phrases:
            merged = f"{phrases[-1][0]} {current}"
            if len(label_text(merged)) <= max_chars:
                phrases[-1] = (merged, label_text(merged))
                current = ""
        if current:
            phrases.append((current, label))
    return [(phrase, label) for phrase, label in phrases
            if min_chars <= len(label) <= max_chars and any(ch.isalpha() for ch in label)]


def short_piece(text: str, rng: random.Random, max_words: int = 4) -> tuple[str, str] | None:
    """The last 1..`max_words` words of a random clause of `text`, ended by a sentence mark, and its label."""
    cuts = [0, *_break_points(text), len(text)]
    clauses = [text[a:b].strip() for a, b in zip(cuts, cuts[1:])]
    clauses = [clause for clause in clauses if any(ch.isalpha() for ch in clause)]
    if not clauses:
        return None
    words = [word.strip("\"'()[]") for word in rng.choice(clauses).split()]
    words = [word for word in words if any(ch.isalnum() for ch in word)]
    # Mostly one or two words, as short inputs are: weights 4:3:2:1 for 1..4 words.
    n = rng.choices(range(1, max_words + 1), weights=range(max_words, 0, -1))[0]
    piece = re.sub(r"[,;:\s]+$", "", " ".join(words[-min(n, len(words)):]))
    if not re.search(r"[.!?]$", piece):
        piece += "."
    label = label_text(piece)
    if len(label) < 2 or not any(ch.isalpha() for ch in label):
        return None
    return piece, label


def read_short(transcripts: Path, count: int, seed: int) -> list[Phrase]:
    """`count` short items, one from each transcript of a fixed shuffled order (see the module's notes)."""
    rng = random.Random(seed)
    lines = [line for line in read_lines(transcripts) if line.strip()]
    rng.shuffle(lines)
    items = []
    for line in lines:
        if len(items) == count:
            break
        utterance_id, text = line.split("|")[0].strip(), line.split("|")[1]
        piece = short_piece(text, rng)
        if piece is not None:
            items.append(Phrase(f"{utterance_id}_s", *piece))
    return items


# The words of tests/test_voice.py's short inputs: never taught directly (see the module's notes).
HELD_OUT_WORDS = frozenset("hi yes no ok thanks hello good morning thank you stop go ahead sure of course really why "
                           "not see seven maybe all right goodbye forty two".split())


def read_words(transcripts: Path, count: int, seed: int) -> list[Phrase]:
    """`count` one-word items from the shortest words of the transcripts (see the module's notes)."""
    words = sorted({word for line in read_lines(transcripts) if "|" in line
                    for word in re.findall(r"[a-z]+", line.split("|")[1].lower())
                    if 2 <= len(word) <= 4 and re.search("[aeiouy]", word) and word not in HELD_OUT_WORDS})
    rng = random.Random(seed)
    rng.shuffle(words)
    items = []
    for k, word in enumerate(words[:count]):
        piece = word.capitalize() + ".!?"[[0, 0, 0, 1, 2, 0, 0, 0, 1, 2][k % 10]]
        label = label_text(piece)
        if len(label) >= 2 and any(ch.isalpha() for ch in label):
            items.append(Phrase(f"word_{word}", piece, label))
    return items


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, gzip-compressed when its name ends in `.gz`."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def read_phrases(transcripts: Path, min_chars: int, max_chars: int) -> list[Phrase]:
    phrases = []
    for line_number, line in enumerate(read_lines(transcripts), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2:
            raise ValueError(f"{transcripts}:{line_number}: expected 'id|text', got {line[:60]!r}")
        utterance_id, text = fields[0].strip(), fields[1]
        for k, (phrase, label) in enumerate(split_phrases(text, min_chars, max_chars)):
            phrases.append(Phrase(f"{utterance_id}_{k}", phrase, label))
    return phrases


# Speak `text` into the wav `path` and write each of its segments to `phones` as "phone end_seconds word":
# Festival's own timing of the sound it made (the HTS engine's state durations; the last segment ends where
# the wav does), with the word each phone belongs to ("0" for a pause; Festival's item ids tell two equal
# words apart). Training can supervise attention with these instead of a diagonal prior.
SAY = """(define (say text path phones)
 (let ((utt (utt.synth (eval (list 'Utterance 'Text text)))) (fd (fopen phones "w")))
  (utt.save.wave utt path 'riff)
  (mapcar (lambda (s) (format fd "%s %f %s\\n" (item.name s) (item.feat s 'end)
                               (item.feat s 'R:SylStructure.parent.parent.id)))
          (utt.relation.items utt 'Segment))
  (fclose fd)))"""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _synthesize_chunk(chunk: list[Phrase], work_dir: Path, wav_dir: Path) -> list[str]:
    """One Festival process speaks every phrase of `chunk`; returns the ids it failed on.

    Festival writes into `work_dir`; only when the process has finished are the wavs moved into `wav_dir`,
    so an interrupted build never leaves a truncated wav where a re-run would take it for a finished one.
    """
    work_dir.mkdir(parents=True)
    lines = [f"({VOICE})", SAY]
    for phrase in chunk:
        path = work_dir / f"{phrase.id}.wav"
        # unwind-protect: a phrase Festival cannot speak is reported instead of ending the script.
        lines.append(f"(unwind-protect (say {_scheme_string(phrase.label)} {_scheme_string(str(path))}"
                     f" {_scheme_string(str(path.with_suffix('.phones')))})"
                     f" (format t \"failed %s\\n\" {_scheme_string(phrase.id)}))")
    script = work_dir / "chunk.scm"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True)
    if result.returncode != 0:
        log.warning("festival exited with %d: %s", result.returncode, result.stderr.strip()[-300:])
    failed = []
    for phrase in chunk:
        path = work_dir / f"{phrase.id}.wav"
        try:
            ok = path.exists() and soundfile.info(str(path)).frames > 0
        except RuntimeError:
            ok = False
        phones = path.with_suffix(".phones")
        if ok and phones.exists():
            phones.replace(wav_dir.parent / "phones" / phones.name)
            path.replace(wav_dir / path.name)
        else:
            failed.append(phrase.id)
    shutil.rmtree(work_dir)
    return failed


def synthesize(phrases: list[Phrase], out_dir: Path, workers: int, chunk_size: int) -> list[str]:
    """Speak every phrase without a wav yet; returns the ids that failed."""
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "phones").mkdir(exist_ok=True)
    work_root = out_dir / ".festival"
    shutil.rmtree(work_root, ignore_errors=True)  # leftovers of an interrupted run
    # A wav made for another label (an earlier version of this recipe) is made again.
    metadata = out_dir / "metadata.csv"
    made_for = {}
    if metadata.is_file():
        made_for = dict(line.split("|")[0::2] for line in metadata.read_text(encoding="utf-8").splitlines())
    stale = [p for p in phrases if made_for.get(p.id, p.label) != p.label]
    for phrase in stale:
        (wav_dir / f"{phrase.id}.wav").unlink(missing_ok=True)
    if stale:
        log.info("%d wavs were made for an older label; synthesizing them again", len(stale))
    # Festival speaks deterministically, so a phrase whose timings are missing (a corpus built before they
    # were written) is spoken again for them; its wav comes out the same.
    pending = [p for p in phrases if not (wav_dir / f"{p.id}.wav").exists()
               or not (out_dir / "phones" / f"{p.id}.phones").exists()]
    log.info("%d of %d phrases to synthesize with %d festival workers", len(pending), len(phrases), workers)
    chunks = [pending[i:i + chunk_size] for i in range(0, len(pending), chunk_size)]
    failed: list[str] = []
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(pending), unit="phrase", desc="festival", mininterval=5) as bar:
        jobs = [pool.submit(_synthesize_chunk, chunk, work_root / f"chunk{i:05d}", wav_dir)
                for i, chunk in enumerate(chunks)]
        for job, chunk in zip(jobs, chunks):
            failed += job.result()
            bar.update(len(chunk))
    shutil.rmtree(work_root, ignore_errors=True)
    elapsed = time.monotonic() - start
    if pending:
        audio_seconds = sum(soundfile.info(str(wav_dir / f"{p.id}.wav")).duration
                            for p in pending if p.id not in failed)
        log.info("synthesized %.1f min of audio in %.1f min wall time: %.1fx real time with %d workers",
                 audio_seconds / 60, elapsed / 60, audio_seconds / max(elapsed, 1e-9), workers)
    if failed:
        log.warning("festival could not speak %d phrases: %s", len(failed), ", ".join(failed[:10]))
    return failed


def write_phone_timings(out_dir: Path, phrases: list[Phrase]) -> None:
    """Gather the phrases' Festival segments into `phone_timings.jsonl`, one line per clip:
    {"id": ..., "segments": [[phone, end_seconds, word], ...]} (`tacoglow prepare` carries the file along)."""
    with open(out_dir / "phone_timings.jsonl", "w", encoding="utf-8") as f:
        for phrase in phrases:
            path = out_dir / "phones" / f"{phrase.id}.phones"
            segments, n = [], 1
            try:
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                    phone, end, word = line.split()
                    segments.append([phone, round(float(end), 4), word])
            except (OSError, ValueError) as error:
                raise SystemExit(f"{path}:{n}: expected 'phone end_seconds word' lines ({error}); "
                                 "delete it and run build_corpus.py again to speak the phrase anew") from None
            f.write(json.dumps({"id": phrase.id, "segments": segments}) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-list", type=Path, default=DATA / "ljspeech_train.txt.gz",
                        help="'id|text' transcripts for training phrases, plain or .gz (default: LJSpeech's 12,500)")
    parser.add_argument("--val-list", type=Path, default=DATA / "ljspeech_val.txt",
                        help="'id|text' transcripts for validation phrases, plain or .gz (default: LJSpeech's 100)")
    parser.add_argument("--phrases", type=int, default=4000, help="number of training phrases")
    parser.add_argument("--out", type=Path, default=Path("corpora/slt"), help="corpus folder (LJSpeech layout)")
    parser.add_argument("--workers", type=int, default=2, help="festival processes run at once")
    parser.add_argument("--chunk-size", type=int, default=100, help="phrases per festival process")
    parser.add_argument("--min-chars", type=int, default=25, help="shortest label, in characters")
    parser.add_argument("--max-chars", type=int, default=90, help="longest label, in characters")
    parser.add_argument("--short", type=int, default=0,
                        help="number of short training items of one to four words (default 0)")
    parser.add_argument("--words", type=int, default=0,
                        help="number of one-word training items of two to four letters (default 0)")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the training phrase order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    if shutil.which("festival") is None:
        raise SystemExit("festival is not installed: apt-get install -y festival festvox-us-slt-hts")
    for path in (args.train_list, args.val_list):
        if not path.is_file():
            raise SystemExit(f"{path}: transcript list not found")

    train = read_phrases(args.train_list, args.min_chars, args.max_chars)
    random.Random(args.seed).shuffle(train)
    train = (train[:args.phrases] + read_short(args.train_list, args.short, args.seed + 1)
             + read_words(args.train_list, args.words, args.seed + 2))
    val = read_phrases(args.val_list, args.min_chars, args.max_chars)
    log.info("%d training phrases (%d short, %d words) and %d validation phrases", len(train), args.short,
             args.words, len(val))

    args.out.mkdir(parents=True, exist_ok=True)
    failed = set(synthesize(train + val, args.out, args.workers, args.chunk_size))
    done = [p for p in train + val if p.id not in failed]
    with open(args.out / "metadata.csv", "w", encoding="utf-8") as f:
        f.writelines(f"{p.id}|{p.text}|{p.label}\n" for p in done)
    with open(args.out / "val_ids.txt", "w", encoding="utf-8") as f:
        f.writelines(f"{p.id}\n" for p in val if p.id not in failed)
    write_phone_timings(args.out, done)
    log.info("wrote %s: %d phrases", args.out / "metadata.csv", len(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
