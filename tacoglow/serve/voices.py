"""The voices one server speaks with: each loaded voice with its vocoders and its own batching scheduler.

Sentences of different voices cannot share a Tacotron 2 batch, so every voice the
:class:`~tacoglow.catalog.VoiceCatalog` has loaded gets a :class:`BatchScheduler` of its own, started on its
first request. A request holds its voice (:meth:`Voices.acquire`) until the scheduler is done with its job, so
the catalog never unloads a voice under a running request; once a voice is unloaded, its scheduler stops after
the batch it is running.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from ..audio import AudioConfig
from ..catalog import UnknownVoiceError, VoiceCatalog
from ..errors import TacoglowError
from ..synthesis import SynthesisConfig
from ..synthesizer import GriffinLimVocoder, HiFiGANVocoder, Synthesizer, WaveGlowVocoder
from .api import OPENAI_MODELS, ApiError
from .batching import BatchScheduler, EventLog
from .limits import ServerLimits


def vocoders_of(synth: Synthesizer) -> dict[str, Any]:
    """The vocoders a request may choose for this voice, its own first (Griffin-Lim is always one)."""
    vocoders: dict[str, Any] = {}
    if isinstance(synth.vocoder, HiFiGANVocoder):
        vocoders["hifigan"] = synth.vocoder
    if isinstance(synth.vocoder, WaveGlowVocoder):
        vocoders["waveglow"] = synth.vocoder
    vocoders["griffin-lim"] = (synth.vocoder if isinstance(synth.vocoder, GriffinLimVocoder)
                               else synth.griffin_lim_vocoder())
    return vocoders


class Voice:
    """A loaded voice as the server runs it: its synthesizer, vocoders and scheduler (started here)."""

    def __init__(self, name: str, synth: Synthesizer, limits: ServerLimits, events: EventLog):
        self.name, self.synth, self.vocoders = name, synth, vocoders_of(synth)
        self.scheduler = BatchScheduler(synth, max_active=limits.max_concurrent, max_queue=limits.max_queue,
                                        batch_wait=limits.batch_wait, events=events)
        self.scheduler.start()


def _stop_soon(voice: Voice) -> None:
    """Stop a voice's scheduler on a thread of its own: the caller may hold another scheduler's lock."""
    threading.Thread(target=voice.scheduler.stop, name=f"tacoglow-stop-{voice.name}", daemon=True).start()


class Voices:
    """The catalog's voices as the server runs them."""

    def __init__(self, catalog: VoiceCatalog, limits: ServerLimits, events: EventLog):
        self.catalog, self.limits, self.events = catalog, limits, events
        self._running: dict[str, Voice] = {}
        self._lock = threading.Lock()
        catalog.unload_hooks.append(self._unloaded)

    def check(self, name: str | None) -> str:
        """The voice ``name`` means, or a 422 naming the known voices."""
        try:
            return self.catalog.resolve(name)
        except UnknownVoiceError as error:
            raise ApiError(422, str(error), param="voice") from None

    async def acquire(self, name: str | None) -> Voice:
        """The voice, loaded (on a worker thread) if need be, held until :meth:`release`."""
        name = self.check(name)
        synth = self.catalog.try_acquire(name)
        if synth is None:
            loading = asyncio.get_running_loop().run_in_executor(None, self.catalog.acquire, name)
            try:
                synth = await asyncio.shield(loading)
            except asyncio.CancelledError:  # the load goes on; give the voice back once it is done
                loading.add_done_callback(
                    lambda done: None if done.cancelled() or done.exception() else self.catalog.release(name))
                raise
            except TacoglowError as error:  # a damaged or unreadable voice folder
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise ApiError(500, f"voice {name!r} could not be loaded: {message}") from None
        try:
            return self._running_for(name, synth)
        except BaseException:
            self.catalog.release(name)
            raise

    def release(self, voice: Voice) -> None:
        self.catalog.release(voice.name)

    def _running_for(self, name: str, synth: Synthesizer) -> Voice:
        with self._lock:
            voice = self._running.get(name)
            if voice is not None and voice.synth is synth:
                return voice
            self._running[name] = fresh = Voice(name, synth, self.limits, self.events)
        if voice is not None:  # unloaded and loaded again before its hook ran
            _stop_soon(voice)
        return fresh

    def _unloaded(self, name: str, synth: Synthesizer) -> None:
        with self._lock:
            voice = self._running.get(name)
            if voice is None or voice.synth is not synth:
                return
            del self._running[name]
        _stop_soon(voice)

    def running(self) -> list[Voice]:
        with self._lock:
            return list(self._running.values())

    def lengths(self) -> tuple[int, int]:
        """(waiting, active) requests over every voice."""
        counts = [voice.scheduler.lengths() for voice in self.running()]
        return sum(w for w, _ in counts), sum(a for _, a in counts)

    def stop(self, error: Exception) -> None:
        self.catalog.unload_hooks.remove(self._unloaded)
        for voice in self.running():
            voice.scheduler.stop(error)

    # ------------------------------------------------------------------ /voices
    def describe(self) -> list[dict]:
        """Every voice with its settings, loaded or not (reading an unloaded voice's checkpoint the first time);
        a voice whose checkpoint cannot be read has an ``error`` instead of its settings."""
        return [self._describe(name) for name in self.catalog.names]

    def _describe(self, name: str) -> dict:
        catalog = self.catalog
        synth, files = catalog.peek(name), catalog.files(name)
        about = {"name": name, "loaded": synth is not None, "default": name == catalog.default_name,
                 "aliases": catalog.aliases if name == catalog.default_name else [], "models": list(OPENAI_MODELS),
                 "files": {k: str(v) for k, v in dataclasses.asdict(files).items() if k != "name" and v}
                 if files else None}
        if synth is None:
            assert files is not None  # the default voice is always loaded
            try:
                settings, audio = catalog.settings(name)
            except (TacoglowError, OSError) as error:  # a damaged voice folder: the others are still listed
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                return {**about, "vocoders": [], "error": f"voice {name!r} cannot be read: {message}"}
            return {**about, **_settings(settings, audio, list(dict.fromkeys([files.vocoder, "griffin-lim"])))}
        vocoders = vocoders_of(synth)
        waveglow, hifigan = vocoders.get("waveglow"), vocoders.get("hifigan")
        return {**about, **_settings(synth.synthesis, synth.audio, list(vocoders)),
                "max_sentence_chars": synth.max_chars,
                "tacotron2": dataclasses.asdict(synth.tacotron2.config),
                "waveglow": dataclasses.asdict(waveglow.waveglow.config) if waveglow else None,
                "hifigan": {"config": hifigan.hifigan.config.to_dict(),
                            "denoiser_strength": hifigan.denoiser_strength} if hifigan else None}


def _settings(settings: SynthesisConfig, audio: AudioConfig, vocoders: list[str]) -> dict:
    """What /voices says of a voice's settings, loaded or not (a loaded WaveGlow's sigma is its settings')."""
    waveglow = "waveglow" in vocoders
    return {"sample_rate": audio.sampling_rate, "vocoders": vocoders, "default_vocoder": vocoders[0],
            "sigma": settings.sigma if waveglow else None,
            "denoiser_strength": settings.denoiser_strength if waveglow else None,
            "griffin_lim": {"power": settings.griffin_lim_power,
                            "inversion_iters": settings.griffin_lim_inversion_iters},
            "normalize": settings.normalize, "arpabet": settings.arpabet, "synthesis": settings.to_dict(),
            "audio": audio.to_dict()}
