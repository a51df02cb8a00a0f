"""benchmarks/intelligibility.py's scoring: word errors and which reference words a transcript misses."""
import sys

import numpy as np
import soundfile

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from intelligibility import Sentence, SystemResult, missed_words, score, word_errors, words  # noqa: E402


def test_missed_words_mark_the_substituted_and_deleted_reference_words():
    reference = words("Eleven. If I am alive and taken prisoner,")
    assert missed_words(reference, words("oven if i am alive and taken prisoner")) == [True] + [False] * 7
    # "am" deleted, "maybe" inserted: only the deleted reference word is missed
    assert missed_words(reference, words("eleven if i alive and maybe taken prisoner")) == \
        [False, False, False, True, False, False, False, False]
    assert missed_words(reference, []) == [True] * 8
    assert missed_words([], ["hello"]) == []


def test_missed_words_count_what_word_errors_counts():
    cases = [("the quick brown fox jumps", "a quick brown fox fox jumps over"),
             ("reached the same conclusion as", "which the same conclusion"),
             ("yet he could not overcome", "it he could not over come"),
             ("one two three", "three two one")]
    for reference, hypothesis in cases:
        ref, hyp = words(reference), words(hypothesis)
        substitutions, deletions, _ = word_errors(ref, hyp)
        assert sum(missed_words(ref, hyp)) == substitutions + deletions, (reference, hypothesis)


def test_score_counts_the_sentences_whose_first_word_is_missed(tmp_path):
    class Scripted:  # a recogniser that hears what it is told to
        key, title = "scripted", "Scripted"

        def __init__(self, transcripts):
            self.transcripts = iter(transcripts)

        def __call__(self, audio):
            return next(self.transcripts)

        hypothesis_words = staticmethod(words)

    sentences = []
    for n, label in enumerate(["eleven if i am alive", "yet he could not", "drove to the corner"]):
        wav = tmp_path / f"{n}.wav"
        soundfile.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
        sentences.append(Sentence(id=str(n), text=label, label=label, wav=wav))
    result = SystemResult("voice", sentences, None, 1)
    score(result, [Scripted(["oven if i am alive", "yet he could not", "through to the corner"])])
    total = result.scores["scripted"]
    assert (total.first_words_missed, total.sentences, total.errors, total.reference_words) == (2, 3, 2, 13)


def test_teacher_forced_voice_speaks_each_teacher_wav_frame_for_frame(tmp_path):
    import torch
    from intelligibility import run_teacher_forced

    from tacoglow.audio import load_wav, mel_spectrogram
    from tacoglow.synthesizer import Synthesizer

    voice = Synthesizer.from_checkpoints(REPO / "tacoglow" / "voices" / "default" / "tacotron2.pt",
                                         griffin_lim_iters=2)  # no vocoder named: Griffin-Lim
    rate = voice.audio.sampling_rate
    sentences = []
    for n, seconds in enumerate([0.5, 0.83]):  # 0.83 s: a frame count that is no multiple of r = 3
        wav = tmp_path / f"teacher{n}.wav"
        t = np.arange(int(seconds * rate)) / rate
        soundfile.write(str(wav), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
        sentences.append(Sentence(id=f"s{n}", text="Hi there.", label="hi there.", wav=wav))
    result = run_teacher_forced(SystemResult("teacher", sentences, None, 1), voice, "voice", tmp_path / "tf", 1, 7)
    for source, spoken in zip(sentences, result.sentences):
        frames = mel_spectrogram(load_wav(source.wav, rate), voice.audio).size(1)
        audio = load_wav(spoken.wav, rate)
        assert audio.numel() == frames * voice.audio.hop_length  # one vocoded frame per teacher frame
        assert torch.isfinite(audio).all() and audio.abs().max() > 0
    # Seeded (prenet dropout, vocoder): the same run makes the same audio, so rows compare across runs.
    again = run_teacher_forced(SystemResult("teacher", sentences, None, 1), voice, "voice", tmp_path / "tf2", 1, 7)
    assert all(torch.equal(load_wav(a.wav, rate), load_wav(b.wav, rate))
               for a, b in zip(result.sentences, again.sentences))
