"""Text → waveform: one library class that the CLI, the server and the benchmarks stand on.

Layers, each usable on its own::

    Synthesizer.synthesize(text)          # whole text → one waveform (sentences batched)
      └─ Synthesizer.stream(text)         # the same, yielded sentence by sentence
           └─ Synthesizer.synthesize_ids  # token ids → mels (one Tacotron 2 batch)
                └─ Synthesizer.vocode     # mel → audio (HiFi-GAN, WaveGlow or Griffin-Lim)

``Synthesizer.stream_audio(text)`` yields each sentence's audio in pieces as the vocoder makes them
(HiFi-GAN vocodes overlapping chunks, so a long sentence's first audio does not wait for all of it; the first
sentence's chunks start while Tacotron 2 still decodes it, see :mod:`tacoglow.streaming`).

Randomness: Tacotron 2's prenet keeps dropout on at inference and WaveGlow samples noise, so
every request gets its own generators, derived from its seed (one for Tacotron 2 and one for
the vocoder, per sentence, and one more for each further decoding when the voice chooses among
``candidates``, see :mod:`tacoglow.verifier`). A request's audio therefore depends only on its
text and seed, not on what else shares its batch, and ``seed`` reproduces it exactly.

Settings (WaveGlow's sigma and denoiser, Griffin-Lim's, the text front-end, the decoding cap, the
pause between sentences) are one :class:`~tacoglow.synthesis.SynthesisConfig`, read from the voice's
checkpoint and overridden by the caller.

Pauses and rate: each sentence job carries its speaking rate and the seconds of silence that follow it
(``synthesis.sentence_pause`` between the sentences of plain text, none after the last; SSML's breaks and
``<s>``/``<p>`` edges, see :mod:`tacoglow.ssml`). Its mel is stretched in time by the rate before vocoding
(:func:`tacoglow.audio.stretch_mel`), and every consumer (``synthesize``'s joined audio and ``Speech.starts``,
the streams' ``SentenceResult.pause``, the server's encoders) puts exactly that silence after it.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence, cast

import torch

from .audio import AudioConfig, stretch_mel
from .checkpoint import CheckpointError, LoadedCheckpoint, build_model, inspect_checkpoint
from .config import ConfigError
from .errors import TacoglowError
from .hifigan import HiFiGAN
from .ops import fbgemm_available
from .quantized import int8_conv_available, int8_unavailable_reason
from .ssml import SSMLSegment, parse_ssml
from .streaming import stream_mel
from .synthesis import SynthesisConfig, voice_synthesis_config
from .tacotron2 import Tacotron2, Tacotron2Output
from .text import TextError, prepare_text, split_sentences
from .text.words import WordSpan, spans_from_ids, word_spans
from .timings import WordTiming, shift_words, word_timings
from .verifier import PhoneVerifier, best_candidate
from .vocoders import GriffinLimVocoder, HiFiGANVocoder, Vocoder, WaveGlowVocoder
from .waveglow import WaveGlow

log = logging.getLogger(__name__)

# What runs the networks: torch (eager) or ONNX Runtime (tacoglow.export).
BACKENDS = ("torch", "onnx")
VOICE_VERIFIER = "verifier.pt"  # a voice folder's phone verifier, beside its tacotron2.pt
_GOLDEN = 0x9E3779B97F4A7C15  # spreads consecutive sentence indices over the seed space


class SynthesisError(TacoglowError, RuntimeError):
    """Synthesis produced something unusable (e.g. NaN in a mel); the message says which sentence."""


@dataclass
class SentenceResult:
    """One sentence: its mel, alignment, why decoding stopped, and its audio."""

    text: str
    ids: list[int]
    mel: torch.Tensor            # (n_mel, frames), postnet output without the stop frame
    alignment: torch.Tensor      # (decoder steps, len(ids))
    stopped_by: str              # "gate": the stop token fired; "cap": the step cap ended it
    audio: torch.Tensor | None = None  # (round(frames / rate) * hop_length,) float32
    rate: float = 1.0            # speaking rate: the mel is stretched to round(frames / rate) frames for the audio
    pause: float = 0.0           # seconds of silence after this sentence in its request's audio
    spans: list[WordSpan] = field(default_factory=list)  # the spoken words: which of ``ids`` each covers
    frames_per_step: int = 1     # the model's n_frames_per_step: mel frames per alignment row

    @property
    def mel_length(self) -> int:
        return int(self.mel.shape[-1])

    def word_timings(self, duration: float) -> list[WordTiming]:
        """The sentence's words in seconds from the start of its audio, when that audio lasts ``duration`` s.

        The decoded frames (the alignment's steps before the stop step), and the frames of ``mel`` (whose silences
        refine the boundaries), are spread evenly over ``duration``: audio vocoded from a mel stretched in time
        gets timings stretched alike (see :mod:`tacoglow.timings`).
        """
        steps = self.alignment.shape[0] - (1 if self.stopped_by == "gate" else 0)
        frames = max(steps, 0) * self.frames_per_step
        return word_timings(self.alignment, self.spans, frames_per_step=self.frames_per_step,
                            seconds_per_frame=duration / frames if frames else 0.0, duration=duration,
                            mel=self.mel, mel_seconds_per_frame=duration / max(self.mel_length, 1))


@dataclass
class Speech:
    """A whole request: float32 audio in [-1, 1] at ``sample_rate``, and its sentences."""

    audio: torch.Tensor
    sample_rate: int
    sentences: list[SentenceResult] = field(default_factory=list)
    seed: int = 0
    starts: list[int] = field(default_factory=list)  # where each sentence's audio begins in ``audio``, in samples

    @property
    def duration(self) -> float:
        return self.audio.numel() / self.sample_rate

    @property
    def words(self) -> list[WordTiming]:
        """Every spoken word with its start and end in ``audio`` (seconds), in order (see :meth:`sentence_words`)."""
        return [word for words in self.sentence_words() for word in words]

    def sentence_words(self) -> list[list[WordTiming]]:
        """Each sentence's spoken words in seconds of ``audio``: its :meth:`SentenceResult.word_timings` over its
        own audio, moved to where that audio begins (``starts``)."""
        words = []
        for sentence, start in zip(self.sentences, self.starts):
            samples = 0 if sentence.audio is None else sentence.audio.numel()
            words.append(shift_words(sentence.word_timings(samples / self.sample_rate), start / self.sample_rate))
        return words


class AudioChunk(NamedTuple):
    """A piece of one sentence's audio (:meth:`Synthesizer.stream_audio`)."""

    sentence: int                    # the sentence's position in its request
    audio: torch.Tensor              # (samples,) float32
    result: SentenceResult | None    # after a sentence's pieces, an empty one with the sentence, its audio whole


def _seeded(seed: int, index: int, stream: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed + index * _GOLDEN + stream * 0x632BE59BD9B4E019) % (1 << 63))
    return g


class SentenceJob(NamedTuple):
    """One sentence of one request, with everything that makes its audio reproducible.

    Jobs from different requests can share a Tacotron 2 batch (:meth:`Synthesizer.decode_jobs`):
    each draws its randomness only from its own generators.
    """

    seed: int
    index: int      # type: ignore[assignment]  # shadows tuple.index; the sentence's position in its request
    text: str
    ids: list[int]
    rate: float = 1.0   # speaking rate (SSML's <prosody rate>): 0.5 is half as fast, about twice as long
    pause: float = 0.0  # seconds of silence after this sentence

    def generator(self, stream: int) -> torch.Generator:
        """A fresh generator for this sentence: stream 0 feeds Tacotron 2's prenet, 1 the vocoder."""
        return _seeded(self.seed, self.index, stream)


class Synthesizer:
    """Text → speech with a Tacotron 2 and a vocoder (HiFi-GAN, WaveGlow or Griffin-Lim).

    Args:
        tacotron2: the acoustic model (eval mode is set here).
        vocoder: a :class:`WaveGlowVocoder`, :class:`GriffinLimVocoder` or anything with the
            same call; ``None`` means Griffin-Lim with the settings of ``synthesis``. A WaveGlow or
            Griffin-Lim vocoder given here keeps its own settings, and ``synthesis`` records them.
        synthesis: sigma, denoiser, Griffin-Lim, text front-end, decoding cap and sentence pause
            (:class:`~tacoglow.synthesis.SynthesisConfig`; its defaults when ``None``).
        audio: the audio settings both models were trained with (checked against the vocoder's).
        cleaners: NVIDIA's cleaner pipeline, applied after :func:`tacoglow.text.normalize_text`.
        max_chars: longer sentences are split further so none is cut off by the decoding cap.
        batch_size: sentences per Tacotron 2 batch.
        verifier: the phone verifier that chooses among ``synthesis.candidates`` decodings of each sentence
            (:mod:`tacoglow.verifier`); without one, each sentence is decoded once.
        **settings: fields of ``synthesis`` to override, e.g. ``frames_per_symbol=None``.
    """

    def __init__(self, tacotron2: Tacotron2, vocoder: Vocoder | None = None, *,
                 synthesis: SynthesisConfig | None = None, audio: AudioConfig | None = None,
                 device: str | torch.device = "cpu", cleaners: Sequence[str] = ("english_cleaners",),
                 max_chars: int | None = None, batch_size: int = 8, verifier: PhoneVerifier | None = None,
                 **settings: Any):
        self.device = torch.device(device)
        self.tacotron2 = tacotron2.eval().to(self.device)
        self.audio = audio or AudioConfig()
        synthesis = dataclasses.replace(synthesis or SynthesisConfig(), **settings)
        if vocoder is None:
            vocoder = GriffinLimVocoder.from_config(self.audio, synthesis)
        elif isinstance(vocoder, WaveGlowVocoder):
            synthesis = dataclasses.replace(synthesis, sigma=vocoder.sigma, denoiser_strength=vocoder.denoiser_strength)
        elif isinstance(vocoder, HiFiGANVocoder):
            synthesis = dataclasses.replace(synthesis, hifigan_denoiser_strength=vocoder.denoiser_strength,
                                            hifigan_precision=vocoder.precision)
        elif isinstance(vocoder, GriffinLimVocoder):
            synthesis = dataclasses.replace(synthesis, griffin_lim_iters=vocoder.n_iters,
                                            griffin_lim_power=vocoder.power,
                                            griffin_lim_inversion_iters=vocoder.inversion_iters)
        self._synthesis = synthesis
        self.vocoder = vocoder
        if getattr(self.vocoder, "audio", self.audio) != self.audio:
            raise ConfigError(f"the Tacotron 2 and the vocoder disagree on audio settings: "
                              f"{self.audio} vs {self.vocoder.audio}; use a pair trained on the same features")
        if isinstance(self.vocoder, WaveGlowVocoder):
            self.vocoder.waveglow.to(self.device)
        elif isinstance(self.vocoder, HiFiGANVocoder):
            self.vocoder.hifigan.to(self.device)
        self.cleaners = tuple(cleaners)
        config = self.tacotron2.config
        # ~7 frames per character of speech: keep sentences short enough for the step cap.
        self.max_chars = max_chars or max(40, int(config.max_decoder_steps * config.n_frames_per_step / 7))
        self.batch_size = batch_size
        self.verifier = None if verifier is None else verifier.eval().to(self.device)

    @property
    def synthesis(self) -> SynthesisConfig:
        """This voice's settings (fixed at construction: the vocoder was built from them)."""
        return self._synthesis

    def griffin_lim_vocoder(self, n_iters: int | None = None) -> GriffinLimVocoder:
        """A Griffin-Lim vocoder with this voice's settings (e.g. to stand in for its WaveGlow)."""
        return GriffinLimVocoder.from_config(self.audio, self._synthesis, n_iters)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_checkpoints(cls, tacotron2: str | Path, waveglow: str | Path | None = None, *,
                         hifigan: str | Path | None = None, device: str | torch.device = "cpu", backend: str = "torch",
                         verifier: str | Path | None = None, **kwargs: Any) -> "Synthesizer":
        """Load a Tacotron 2 and (optionally) a WaveGlow or a HiFi-GAN from any supported checkpoint layout.

        A HiFi-GAN in jik876's layout finds its ``config.json`` beside the file (see
        :func:`tacoglow.checkpoint.inspect_checkpoint`); its audio settings must be the Tacotron 2's. A voice
        whose settings ask for ``candidates`` > 1 takes the phone verifier ``verifier``, else the
        ``verifier.pt`` beside its Tacotron 2; without one it decodes each sentence once.

        The settings are the voice's: the Tacotron 2 checkpoint's ``synthesis`` section (e.g. a measured
        ``griffin_lim_power``) and the text front-end it was trained with (``text.arpabet``,
        ``text.leading_pause``), over the :class:`~tacoglow.synthesis.SynthesisConfig` defaults. Keyword
        arguments named after its fields override them (``sigma=1.0``, ``griffin_lim_power=1.0``); the others
        go to the constructor.

        backend: "torch" (eager, the default) or "onnx": the networks are exported at load time and run
        on ONNX Runtime (CPU, fp32; random numbers still come from torch, so the audio matches "torch" to
        float rounding; see tacoglow.export).
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnx" and torch.device(device).type != "cpu":
            raise ConfigError(f"the onnx backend runs on the CPU, not {device}: use backend='torch' there")
        fields = {f.name for f in dataclasses.fields(SynthesisConfig)}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in fields}
        t2 = inspect_checkpoint(tacotron2)
        synthesis = dataclasses.replace(voice_synthesis_config(t2), **overrides)  # refused now, not after decoding
        off_cpu = backend == "onnx" or torch.device(device).type != "cpu"  # not torch on the CPU
        if ("hifigan_precision" not in overrides and synthesis.hifigan_precision == "int8"
                and (off_cpu or not int8_conv_available())):
            # A voice's int8 is a CPU speed setting: where it cannot run, the voice runs in fp32 (asked for
            # explicitly, int8 is refused there instead).
            why = "the voice's int8 needs torch's CPU backend" if off_cpu else int8_unavailable_reason()
            log.info("%s: its HiFi-GAN runs in fp32 here (%s)", tacotron2, why)
            synthesis = dataclasses.replace(synthesis, hifigan_precision="fp32")
        if synthesis.tacotron2_precision != "fp32" and (off_cpu or (
                synthesis.tacotron2_precision in ("fp16", "int8") and not fbgemm_available())):
            if "tacotron2_precision" in overrides:
                raise ConfigError(f"tacotron2_precision {synthesis.tacotron2_precision!r} is for torch on an x86 CPU; "
                                  f"here ({backend}, {device}) Tacotron 2 generates in fp32: leave it unset or 'fp32'")
            log.info("%s: Tacotron 2 generates in fp32 here (the voice's %s is for torch on the CPU)", tacotron2,
                     synthesis.tacotron2_precision)
            synthesis = dataclasses.replace(synthesis, tacotron2_precision="fp32")
        model = cast(Tacotron2, build_model(t2, "tacotron2"))
        beside = Path(tacotron2).parent / VOICE_VERIFIER
        if verifier is None and synthesis.candidates > 1 and beside.is_file():
            verifier = beside
        elif verifier is None and synthesis.candidates > 1:
            log.info("%s: no %s beside it, so each sentence is decoded once", tacotron2, VOICE_VERIFIER)
        if verifier is not None:
            checked = inspect_checkpoint(verifier)
            _check_audio_pair(t2, checked)
            kwargs["verifier"] = cast(PhoneVerifier, build_model(checked, "verifier"))
        if waveglow is not None and hifigan is not None:
            raise ConfigError("give a WaveGlow or a HiFi-GAN, not both")
        if hifigan is not None:
            hg = inspect_checkpoint(hifigan)
            _check_audio_pair(t2, hg)
            vocoder: Vocoder = HiFiGANVocoder(cast(HiFiGAN, build_model(hg, "hifigan")),
                                              denoiser_strength=synthesis.hifigan_denoiser_strength, audio=t2.audio,
                                              precision=synthesis.hifigan_precision)
        elif waveglow is None:
            vocoder = GriffinLimVocoder.from_config(t2.audio, synthesis)
        else:
            wg = inspect_checkpoint(waveglow)
            _check_audio_pair(t2, wg)
            vocoder = WaveGlowVocoder(cast(WaveGlow, build_model(wg, "waveglow")), sigma=synthesis.sigma,
                                      denoiser_strength=synthesis.denoiser_strength, audio=t2.audio)
        if backend == "onnx":
            from .export import OnnxHiFiGAN, OnnxTacotron2, OnnxWaveGlow

            model = cast(Tacotron2, OnnxTacotron2(model.eval()))  # stands in for the model (see OnnxTacotron2)
            if isinstance(vocoder, WaveGlowVocoder):
                vocoder.engine = OnnxWaveGlow(vocoder.waveglow)
            elif isinstance(vocoder, HiFiGANVocoder):
                if vocoder.precision != "fp32":
                    raise ConfigError(f"hifigan_precision {vocoder.precision!r} is torch's; ONNX Runtime runs the "
                                      "exported fp32 graph: use --backend torch, or hifigan_precision fp32")
                vocoder.engine = OnnxHiFiGAN(vocoder.hifigan)
        return cls(model, vocoder, synthesis=synthesis, audio=t2.audio, device=device, **kwargs)

    # ---------------------------------------------------------------- text
    def text_to_ids(self, text: str) -> list[int]:
        """Normalised, cleaned symbol ids; ``TextError`` (a ValueError) for empty or unspeakable text."""
        return prepare_text(text, normalize=self._synthesis.normalize, cleaners=self.cleaners,
                            arpabet=self._synthesis.arpabet, leading_pause=self._synthesis.leading_pause)

    def word_spans(self, text: str, ids: Sequence[int]) -> list[WordSpan]:
        """The spoken words of a sentence whose model input is ``ids``, each displayed as the front-end reads
        it from ``text`` (:func:`tacoglow.text.words.word_spans`); from the ids alone when ``text`` does not
        give exactly these ids."""
        try:
            if self.text_to_ids(text) == list(ids):
                return word_spans(text, normalize=self._synthesis.normalize, cleaners=self.cleaners,
                                  arpabet=self._synthesis.arpabet, leading_pause=self._synthesis.leading_pause)
        except TextError:
            pass
        return spans_from_ids(ids)

    def split(self, text: str) -> list[str]:
        """The sentences of ``text`` that will be decoded one by one."""
        if not text or not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        return split_sentences(text, max_chars=self.max_chars)

    @property
    def candidates(self) -> int:
        """Decodings made of each sentence (``synthesis.candidates`` with a verifier to choose, else 1)."""
        return self._synthesis.candidates if self.verifier is not None else 1

    def step_cap(self, n_ids: int) -> int:
        """Decoder steps allowed for an input of ``n_ids`` symbols."""
        config, synthesis = self.tacotron2.config, self._synthesis
        if synthesis.frames_per_symbol is None:  # the reference's behaviour: only max_decoder_steps
            return config.max_decoder_steps
        frames = synthesis.min_frames + synthesis.frames_per_symbol * n_ids
        return int(min(config.max_decoder_steps, math.ceil(frames / config.n_frames_per_step)))

    # ---------------------------------------------------------------- stages
    @torch.inference_mode()
    def synthesize_ids(self, ids: Sequence[Sequence[int]], generators: Sequence[torch.Generator],
                       texts: Sequence[str] | None = None) -> list[SentenceResult]:
        """Token ids → mels, as one Tacotron 2 batch; results in input order."""
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        padded = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for i, x in enumerate(ids):
            padded[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        caps = torch.tensor([self.step_cap(len(x)) for x in ids], dtype=torch.long)
        out = self.tacotron2.infer_detailed(padded.to(self.device), lengths, generator=list(generators),
                                            max_decoder_steps=caps, precision=self._synthesis.tacotron2_precision)
        return [self._result(out, i, ids[i], texts[i] if texts is not None else "") for i in range(len(ids))]

    def _result(self, out: Tacotron2Output, i: int, ids: Sequence[int], text: str) -> SentenceResult:
        """Item ``i`` of a Tacotron 2 batch as a sentence result (no audio yet)."""
        r = self.tacotron2.config.n_frames_per_step
        n = int(out.mel_lengths[i])
        mel = out.mel_postnet[i, :, :n]
        if not torch.isfinite(mel).all():
            raise SynthesisError(f"Tacotron 2 produced NaN or infinite values for {text[:60]!r}; "
                                 "the checkpoint is damaged or was trained on other features")
        stopped_by = "gate" if bool(out.gate_stopped[i]) else "cap"
        if stopped_by == "cap":
            log.warning("decoding of %r stopped at the step cap (%d frames) without a stop token; "
                        "the model may not be trained enough for this text", text[:60], n)
        steps = math.ceil(n / r) + (1 if stopped_by == "gate" else 0)
        return SentenceResult(text=text, ids=list(ids), mel=mel, alignment=out.alignments[i, :steps, :len(ids)],
                              stopped_by=stopped_by, spans=self.word_spans(text, ids), frames_per_step=r)

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor, generator: torch.Generator | None = None, *,
               vocoder: Vocoder | None = None, **options) -> torch.Tensor:
        """mel (n_mel, frames) or (1, n_mel, frames) → float32 audio (frames * hop_length,).

        ``vocoder`` overrides the synthesizer's own for this call (e.g. Griffin-Lim beside WaveGlow).
        """
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        frames = mel.shape[-1]
        if frames == 0:
            return torch.zeros(0)
        vocoder = self.vocoder if vocoder is None else vocoder
        audio = vocoder(mel.to(self.device), generator=generator, **options)[0]
        return audio[:frames * self.audio.hop_length].float().cpu()

    def vocode_chunks(self, mel: torch.Tensor, generator: torch.Generator | None = None, *,
                      vocoder: Vocoder | None = None, **options) -> Iterator[torch.Tensor]:
        """:meth:`vocode` in pieces whose concatenation equals it: a HiFi-GAN's first piece covers a few frames
        (``first_frames``, ``chunk_frames`` are its options; see :meth:`HiFiGANVocoder.chunks`), so it is out
        long before the sentence's whole audio; other vocoders give one piece."""
        vocoder = self.vocoder if vocoder is None else vocoder
        if not isinstance(vocoder, HiFiGANVocoder) or mel.shape[-1] == 0:
            options = {k: v for k, v in options.items() if k not in ("first_frames", "chunk_frames")}
            yield self.vocode(mel, generator, vocoder=vocoder, **options)
            return
        mel = mel.unsqueeze(0) if mel.dim() == 2 else mel
        for piece in vocoder.chunks(mel.to(self.device), **options):
            yield piece[0].float().cpu()

    # ---------------------------------------------------------------- sentence jobs
    def sentence_jobs(self, text: str, seed: int, ssml: bool = False) -> list[SentenceJob]:
        """The sentences of ``text`` as jobs, each followed by ``synthesis.sentence_pause`` seconds of silence but
        the last; ``TextError`` (a ValueError) for empty or unspeakable text. ``ssml``: ``text`` is an SSML
        document (:func:`tacoglow.ssml.parse_ssml`; ``SSMLError``, also a ValueError, when it is refused)."""
        if ssml:
            return self.segment_jobs(parse_ssml(text, self._synthesis.sentence_pause).segments, seed)
        sentences, pause = self.split(text), self._synthesis.sentence_pause
        # A piece without a letter or digit ("?" in "Wait... ?") is no sentence, as in SSML; text of nothing else
        # is refused by text_to_ids, naming it.
        sentences = [s for s in sentences if any(c.isalnum() for c in s)] or sentences
        return [SentenceJob(seed, j, s, self.text_to_ids(s), 1.0, pause if j + 1 < len(sentences) else 0.0)
                for j, s in enumerate(sentences)]

    def segment_jobs(self, segments: Sequence[SSMLSegment], seed: int) -> list[SentenceJob]:
        """SSML segments → sentence jobs: each segment's text split into sentences (``synthesis.sentence_pause``
        between them, the segment's pause after its last), at the segment's rate. A piece without a letter or
        digit (the "." after a ``<break>``) is skipped, its pause added to the job before it."""
        jobs: list[SentenceJob] = []
        for segment in segments:
            sentences = split_sentences(segment.text, max_chars=self.max_chars)
            for k, sentence in enumerate(sentences):
                pause = segment.pause if k + 1 == len(sentences) else self._synthesis.sentence_pause
                if not any(c.isalnum() for c in sentence):
                    if jobs:
                        jobs[-1] = jobs[-1]._replace(pause=jobs[-1].pause + pause)
                    continue
                jobs.append(SentenceJob(seed, len(jobs), sentence, self.text_to_ids(sentence), segment.rate, pause))
        if not jobs:
            raise TextError("the SSML document has no text to speak: give at least one word")
        return jobs

    def decode_jobs(self, jobs: Sequence[SentenceJob]) -> list[SentenceResult]:
        """Jobs from any number of requests → mels (no audio yet), as one Tacotron 2 batch, in order.

        Each result equals what its request gets alone; vocode ``stretch_mel(result.mel, job.rate)`` with
        ``generator=job.generator(1)``. Results carry their job's rate and pause.
        """
        k = self.candidates
        # Candidate 0 of a job is its single decoding (generator stream 0); candidate c > 0 draws from stream 2 + c
        # (stream 1 is the vocoder's).
        results = self.synthesize_ids([job.ids for job in jobs for _ in range(k)],
                                      [job.generator(2 + c if c else 0) for job in jobs for c in range(k)],
                                      texts=[job.text for job in jobs for _ in range(k)])
        if k > 1:
            assert self.verifier is not None  # self.candidates is 1 without one
            groups = [results[i * k:(i + 1) * k] for i in range(len(jobs))]
            results = [group[best_candidate(self.verifier, [r.mel for r in group], job.ids,
                                            [r.stopped_by == "gate" for r in group])]
                       for job, group in zip(jobs, groups)]
        for job, result in zip(jobs, results):
            result.rate, result.pause = job.rate, job.pause
        return results

    # ---------------------------------------------------------------- requests
    def _sentences(self, text: str, seed: int, ssml: bool = False) -> list[SentenceJob]:
        return self.sentence_jobs(text, seed, ssml)

    def _mels(self, jobs: Sequence[SentenceJob],
              first_alone: bool = True) -> Iterator[tuple[SentenceJob, SentenceResult]]:
        """Jobs → results without audio, in order: the first sentence alone (its audio comes soonest) unless
        ``first_alone`` is False, the rest ``batch_size`` at a time. Results do not depend on the grouping."""
        if not jobs:
            return
        first = 1 if first_alone else 0
        bounds = [0] * first + list(range(first, len(jobs), self.batch_size)) + [len(jobs)]
        for start, end in zip(bounds, bounds[1:]):
            chunk = jobs[start:end]
            yield from zip(chunk, self.decode_jobs(chunk))

    def _decode(self, jobs: Sequence[SentenceJob], **options) -> Iterator[SentenceResult]:
        """Jobs → results with audio (each sentence vocoded in one piece), in order."""
        for job, result in self._mels(jobs):
            result.audio = self.vocode(stretch_mel(result.mel, job.rate), generator=job.generator(1), **options)
            yield result

    def stream(self, text: str, seed: int | None = None, *, ssml: bool = False, **options) -> Iterator[SentenceResult]:
        """Yield each sentence with its audio as soon as it is ready (Tacotron 2 runs in batches). Each sentence's
        audio followed by ``result.pause`` seconds of silence, in order, is :meth:`synthesize`'s audio."""
        seed = new_seed() if seed is None else int(seed)
        yield from self._decode(self._sentences(text, seed, ssml), **options)

    def stream_audio(self, text: str, seed: int | None = None, *, ssml: bool = False,
                     **options) -> Iterator[AudioChunk]:
        """:meth:`stream` in audio pieces: each sentence's audio as its vocoder gives it out (with HiFi-GAN,
        the first few frames first; see :meth:`vocode_chunks`), each piece as soon as it is made. With
        HiFi-GAN the first sentence is vocoded while Tacotron 2 decodes it (unless its rate stretches the mel, or
        the voice chooses among ``candidates`` decodings, which must all be finished first),
        so the first audio waits for a few decoder steps, not the whole sentence. After a
        sentence's pieces comes an empty one that carries its result, whose audio is the pieces joined (equal
        to what :meth:`stream` gives, within float rounding) and whose ``pause`` is the silence that follows."""
        seed = new_seed() if seed is None else int(seed)
        jobs = self._sentences(text, seed, ssml)
        # The first sentence's audio starts while Tacotron 2 still decodes it, where the vocoder takes a mel in
        # pieces (HiFi-GAN) and the mel needs no stretching; the others are decoded in batches, as by stream().
        first = jobs[:1] if jobs and self._streams_decoding(jobs[0]) else []
        for job in first:
            yield from self._stream_decoding(job, **options)
        for job, result in self._mels(jobs[len(first):], first_alone=not first):  # the rest in whole batches
            pieces: list[torch.Tensor] = []
            mel = stretch_mel(result.mel, job.rate)
            for piece in self.vocode_chunks(mel, generator=job.generator(1), **options):
                pieces.append(piece)
                yield AudioChunk(job.index, piece, None)
            result.audio = torch.cat(pieces)
            yield AudioChunk(job.index, torch.zeros(0), result)

    def _streams_decoding(self, job: SentenceJob) -> bool:
        vocoder = self.vocoder
        return (hasattr(self.tacotron2, "generate") and isinstance(vocoder, HiFiGANVocoder) and job.rate == 1.0
                and vocoder.denoiser_strength == 0 and self.candidates == 1)

    def _stream_decoding(self, job: SentenceJob, **options) -> Iterator[AudioChunk]:
        """One sentence's audio chunks while Tacotron 2 decodes it (:func:`tacoglow.streaming.stream_mel`), then
        its result: the one :meth:`decode_jobs` gives, with the chunks joined as its audio."""
        mels = stream_mel(self.tacotron2, job.ids, job.generator(0), self.step_cap(len(job.ids)),
                          precision=self._synthesis.tacotron2_precision)
        decoded: list[Tacotron2Output] = []

        def pieces() -> Iterator[torch.Tensor]:  # the mel's pieces, keeping what decoding returns
            decoded.append((yield from mels))

        audio: list[torch.Tensor] = []
        for piece in cast(HiFiGANVocoder, self.vocoder).stream(pieces(), **options):
            audio.append(piece[0].float().cpu())
            yield AudioChunk(job.index, audio[-1], None)
        result = self._result(decoded[0], 0, job.ids, job.text)
        result.rate, result.pause, result.audio = job.rate, job.pause, torch.cat(audio) if audio else torch.zeros(0)
        yield AudioChunk(job.index, torch.zeros(0), result)

    def _join(self, sentences: list[SentenceResult], seed: int) -> Speech:
        pieces: list[torch.Tensor] = []
        starts, at = [], 0
        for s in sentences:
            assert s.audio is not None  # vocoded by _decode
            starts.append(at)
            silence = torch.zeros(pause_samples(s.pause, self.audio.sampling_rate))
            pieces += [s.audio, silence]
            at += s.audio.numel() + silence.numel()
        audio = torch.cat(pieces) if pieces else torch.zeros(0)
        return Speech(audio=audio, sample_rate=self.audio.sampling_rate, sentences=sentences, seed=seed,
                      starts=starts)

    def synthesize(self, text: str, seed: int | None = None,
                   progress: Callable[[int, int], None] | None = None, *, ssml: bool = False, **options) -> Speech:
        """Whole text → one waveform; each sentence followed by its pause of silence (``synthesis.sentence_pause``
        between sentences; with ``ssml``, ``text`` is an SSML document and its breaks and edges set them).

        ``progress(done, total)`` is called after each sentence; ``options`` go to the vocoder
        (``sigma``, ``denoiser_strength`` for WaveGlow).
        """
        seed = new_seed() if seed is None else int(seed)
        jobs = self._sentences(text, seed, ssml)
        results = []
        for result in self._decode(jobs, **options):
            results.append(result)
            if progress is not None:
                progress(len(results), len(jobs))
        return self._join(results, seed)

    def synthesize_ssml(self, ssml: str, seed: int | None = None,
                        progress: Callable[[int, int], None] | None = None, **options) -> Speech:
        """An SSML document (:mod:`tacoglow.ssml`) → one waveform: :meth:`synthesize` with ``ssml=True``.
        ``SSMLError`` (a ValueError) for a refused document; what it ignores is logged as warnings."""
        return self.synthesize(ssml, seed, progress, ssml=True, **options)

    def synthesize_batch(self, texts: Sequence[str], seeds: Sequence[int | None] | None = None,
                         **options) -> list[Speech]:
        """Several requests, their sentences decoded together in Tacotron 2 batches; results in input
        order, each equal to what :meth:`synthesize` gives for it alone with the same seed."""
        chosen = [(new_seed() if s is None else int(s)) for s in (seeds or [None] * len(texts))]
        if len(chosen) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(chosen)} seeds")
        jobs = [self._sentences(t, s) for t, s in zip(texts, chosen)]  # validates every text first
        flat = [job for per_text in jobs for job in per_text]
        results = iter(list(self._decode(flat, **options)))
        return [self._join([next(results) for _ in per_text], seed) for per_text, seed in zip(jobs, chosen)]


def new_seed() -> int:
    """A fresh random seed for a request that names none (63 bits, from the operating system)."""
    return secrets.randbits(63)


def pause_samples(seconds: float, sample_rate: int) -> int:
    """Samples of ``seconds`` of silence at ``sample_rate``, rounded to the nearest (how every consumer counts)."""
    return int(round(seconds * sample_rate))



def _check_audio_pair(t2: LoadedCheckpoint, vocoder: LoadedCheckpoint) -> None:
    if t2.audio != vocoder.audio:
        raise CheckpointError(f"{t2.path} and {vocoder.path} were trained on different audio settings "
                              f"({t2.audio} vs {vocoder.audio}); use a Tacotron 2 and a vocoder of the same features")
