"""Home Assistant's Wyoming protocol (``tacoglow serve --wyoming tcp://127.0.0.1:10200``), as wyoming-piper speaks it.

Events, each a JSON line with an optional binary payload (the ``wyoming`` package)::

    describe                      -> info: one TTS program, tacoglow, with every voice of the catalog
    synthesize {text, voice.name} -> audio-start (the voice's rate, 16-bit, mono), audio-chunk..., audio-stop
    synthesize-start {voice}, synthesize-chunk {text}..., synthesize, synthesize-stop
                                  -> for each run of whole sentences as the text arrives: audio-start,
                                     audio-chunk..., audio-stop; then the rest, and synthesize-stopped

Audio streams as the vocoder makes it (:meth:`Synthesizer.stream_audio`: a WaveGlow or Griffin-Lim voice
sentence by sentence; a HiFi-GAN voice in pieces, its first while Tacotron 2 still decodes the first sentence),
in chunks of :data:`SAMPLES_PER_CHUNK`, each sentence followed by its pause (the voice's, or an SSML break: text
with ``text_format`` "ssml", or starting with ``<speak>`` unless ``text_format`` is "text", is SSML; a streamed
SSML document is spoken whole at synthesize-stop), so the audio of a ``synthesize`` equals ``tacoglow
synthesize`` of the same text and seed, sample for sample (a HiFi-GAN voice's pieces: within float rounding,
or a few percent of waveform where its int8 arithmetic quantizes each piece on its own). A client streaming
text also sends the whole text as a plain ``synthesize`` (for servers without streaming); it is not spoken
twice. Refused input (empty or too long text, an unknown voice, event data not shaped as the protocol says)
and failed synthesis are answered with an ``error`` event; the connection stays open.

Synthesis runs on a worker thread, one request at a time: Home Assistant asks for one answer at a time, and
the CPU is better spent finishing it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from functools import partial
from typing import Awaitable, Callable, TypeVar, Union

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from .. import __version__
from ..audio import to_pcm16
from ..catalog import UnknownVoiceError, VoiceCatalog
from ..config import ConfigError
from ..errors import TacoglowError
from ..ssml import is_ssml
from ..synthesizer import SynthesisError, new_seed, pause_samples
from ..text import TextError, sentence_ends
from .limits import ServerLimits

log = logging.getLogger(__name__)

SAMPLES_PER_CHUNK = 1024  # wyoming-piper's chunk size
LANGUAGES = ["en_US"]
ATTRIBUTION = Attribution(name="tacoglow (Tacotron 2)", url="https://arxiv.org/abs/1712.05884")
Send = Callable[[Event], Awaitable[None]]  # writes one event to the client
# From the worker thread: the sample rate first, then each sentence's samples with the silence after it, then None.
_Item = Union[int, bytes, Exception, None]


def complete_sentences(text: str) -> tuple[str, str]:
    """Streamed text → (its whole sentences, the rest still to come): sentences end as the text front-end
    splits them (:func:`tacoglow.text.sentence_ends`: not after "Dr." or an initial), and one is whole once
    whitespace follows its last mark, since more text may yet extend "3." into "3.5"."""
    ends = [end for end in sentence_ends(text) if end < len(text)]  # followed by whitespace, by the rule
    if not ends:
        return "", text
    cut = len(text) - len(text[ends[-1]:].lstrip())  # the whitespace after it goes with the sentence
    return text[:cut], text[cut:]


class WyomingSpeaker:
    """What every connection shares: the voices, the seed of every request, the input limit and the worker."""

    def __init__(self, catalog: VoiceCatalog, seed: int | None = None,
                 max_input_chars: int = ServerLimits.max_input_chars):
        self.catalog, self.seed, self.max_input_chars = catalog, seed, max_input_chars
        self._one_at_a_time = threading.Lock()

    def info(self) -> Info:
        voices = [TtsVoice(name=name, description=self._description(name), attribution=ATTRIBUTION, installed=True,
                           version=None, languages=LANGUAGES) for name in self.catalog.names]
        program = TtsProgram(name="tacoglow", description="Tacotron 2 text-to-speech", attribution=ATTRIBUTION,
                             installed=True, version=__version__, voices=voices, supports_synthesize_streaming=True)
        return Info(tts=[program])

    def _description(self, name: str) -> str:
        files = self.catalog.files(name)
        return "the default voice" if files is None else f"{name} (Tacotron 2 + {files.vocoder})"

    async def speak(self, text: str, voice: str | None, send: Send, ssml: bool | None = None) -> None:
        """Synthesize ``text`` and send its audio events; TacoglowError (a TextError, UnknownVoiceError...) for
        refused input, before any audio. ``ssml``: whether ``text`` is SSML (None: when it starts with <speak>)."""
        ssml = is_ssml(text) if ssml is None else ssml
        name = self.catalog.resolve(voice)
        if len(text) > self.max_input_chars:
            raise TextError(f"the text has {len(text)} characters; this server takes at most {self.max_input_chars}")
        if not text.strip():
            raise TextError("text is empty: give at least one word to speak")
        loop, queue = asyncio.get_running_loop(), asyncio.Queue[_Item]()
        stop = threading.Event()  # set when the client is gone: the worker stops after its sentence
        seed = new_seed() if self.seed is None else self.seed

        def put(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                with self._one_at_a_time, self.catalog.use(name) as synth:
                    rate = synth.audio.sampling_rate
                    put(rate)
                    # Each sentence's audio as the vocoder gives it out (a HiFi-GAN voice's first audio leaves
                    # while Tacotron 2 still decodes), then the silence after it (the voice's pause, or SSML's).
                    for chunk in synth.stream_audio(text, seed=seed, ssml=ssml):
                        if chunk.result is None:
                            put(to_pcm16(chunk.audio).astype("<i2").tobytes())  # as the WAV of synthesize
                            continue
                        put(bytes(2 * pause_samples(chunk.result.pause, rate)))
                        if stop.is_set():
                            break
                put(None)
            except Exception as error:  # noqa: BLE001 - handed to the connection, which answers with an error event
                put(error)

        worker = loop.run_in_executor(None, work)
        try:
            started = False
            rate = 0
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, int):
                    rate = item
                    continue
                if not started:  # after the first sentence: text the voice refuses gets no audio-start
                    await send(AudioStart(rate=rate, width=2, channels=1).event())
                    started = True
                await self._send_audio(send, item, rate)
            await send(AudioStop().event())
        finally:
            stop.set()
            await worker

    @staticmethod
    async def _send_audio(send: Send, audio: bytes, rate: int) -> None:
        step = 2 * SAMPLES_PER_CHUNK
        for start in range(0, len(audio), step):
            await send(AudioChunk(rate=rate, width=2, channels=1, audio=audio[start:start + step]).event())


class WyomingHandler(AsyncEventHandler):
    """One connection: answers each event in turn (see the module's docstring)."""

    def __init__(self, speaker: WyomingSpeaker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__(reader, writer)
        self.speaker = speaker
        self.streaming: str | None = None  # the voice of a text stream in progress
        self.pending = ""  # streamed text not spoken yet
        self.markup: bool | None = None  # the stream's text_format: SSML (True), text (False), or not said
        self.refused = False  # the stream's SSML document was refused: its other chunks are dropped

    async def run(self) -> None:
        try:
            await super().run()  # reads events until the client leaves; closes the connection in any case
        except (AttributeError, TypeError, KeyError) as error:  # JSON that is no event ("[1]"): the reader's error
            log.warning("closed a Wyoming connection that sent something that is no event (%s)", error)

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._answered(self._handle(event))
        except (ConnectionError, asyncio.IncompleteReadError):
            return False  # the client is gone (perhaps while it was told of an error)
        return True

    async def _answered(self, work: Awaitable[None]) -> None:
        """Await ``work``; a failure is answered with an error event (only a client that is gone is raised)."""
        try:
            await work
        except (ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered, and the connection stays open
            await self.write_event(_error_event(error))

    async def _handle(self, event: Event) -> None:
        speak = partial(self.speaker.speak, send=self.write_event)
        if Describe.is_type(event.type):
            await self.write_event(self.speaker.info().event())
        elif Synthesize.is_type(event.type):
            if self.streaming is None:  # while text streams, this is the same text again, for older servers
                request = _parsed(Synthesize, event)
                voice = request.voice.name if request.voice else None
                await speak(request.text, voice, ssml=_markup(request.text_format))
        elif SynthesizeStart.is_type(event.type):
            start = _parsed(SynthesizeStart, event)
            self.streaming = self.speaker.catalog.resolve(start.voice.name if start.voice else None)
            self.pending, self.markup, self.refused = "", _markup(start.text_format), False
        elif SynthesizeChunk.is_type(event.type):
            if self.streaming is None:
                raise TextError("synthesize-chunk before synthesize-start: start a text stream first")
            await self._chunk(_parsed(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(event.type):
            if self.streaming is None:
                raise TextError("synthesize-stop before synthesize-start: start a text stream first")
            rest, voice, self.streaming, self.pending = self.pending, self.streaming, None, ""
            if rest.strip() and not self.refused:  # refused ("?" alone, bad SSML): the error, then the stop
                await self._answered(speak(rest, voice, ssml=self.markup))
            await self.write_event(SynthesizeStopped().event())
        else:
            log.debug("ignored a %r event", event.type)

    async def _chunk(self, text: str) -> None:
        """Streamed text: each run of whole sentences is spoken as soon as it is complete; an SSML document is
        spoken whole at synthesize-stop (its pieces would not be documents)."""
        if self.refused:
            return
        self.pending += text
        limit = self.speaker.max_input_chars
        if self.markup or (self.markup is None and is_ssml(self.pending)):
            if len(self.pending) > limit:
                self.refused, self.pending = True, ""
                raise TextError(f"the streamed SSML document has over {limit} characters; this server takes at "
                                f"most {limit}: the rest of this stream is ignored")
            return
        whole, self.pending = complete_sentences(self.pending)
        if len(self.pending) > limit:  # no sentence ends: speak what there is
            whole, self.pending = whole + self.pending, ""
        if whole.strip():
            await self.speaker.speak(whole, self.streaming, send=self.write_event, ssml=False)


# What each event a client sends must hold, as the protocol says.
_SHAPES = {"synthesize": '{"text": "...", "voice": {"name": "..."}}', "synthesize-start": '{"voice": {"name": "..."}}',
           "synthesize-chunk": '{"text": "..."}'}
_Request = TypeVar("_Request", Synthesize, SynthesizeStart, SynthesizeChunk)


def _parsed(kind: type[_Request], event: Event) -> _Request:
    """The event as ``kind``; a TextError (answered as a bad request) when its data is not what the protocol says,
    e.g. no text, a number for text, or a voice that is not an object with a name."""
    try:
        parsed = kind.from_event(event)
        text, voice = getattr(parsed, "text", ""), getattr(parsed, "voice", None)
        valid = (isinstance(text, str) and isinstance(event.data.get("voice") or {}, dict)  # "quick" is no voice
                 and (voice is None or isinstance(voice.name, (str, type(None)))))
    except (KeyError, TypeError, AttributeError, ValueError):  # from_event reads the data as a dict of dicts
        valid = False
    if not valid:
        got = json.dumps(event.data, ensure_ascii=False, default=repr)[:80]
        raise TextError(f"a {event.type} event's data must be {_SHAPES[event.type]}, got {got}")
    return parsed


def _markup(text_format: object) -> bool | None:
    """Whether the client says its text is SSML (``text_format`` "ssml") or plain ("text"); None: it does not say,
    and text that starts with <speak> is SSML."""
    return text_format == "ssml" if text_format in ("ssml", "text") else None


def _error_event(error: Exception) -> Event:
    if isinstance(error, UnknownVoiceError):
        return Error(text=str(error), code="unknown-voice").event()
    if isinstance(error, (TacoglowError, ValueError)) and not isinstance(error, SynthesisError):
        return Error(text=str(error).splitlines()[0], code="bad-request").event()
    if isinstance(error, SynthesisError):
        return Error(text=f"synthesis failed: {str(error).splitlines()[0]}", code="synthesis-failed").event()
    log.exception("synthesis failed", exc_info=error)
    return Error(text="synthesis failed; see the server log", code="internal-error").event()


def wyoming_server(uri: str) -> AsyncServer:
    """The server for ``uri`` (tcp://HOST:PORT, unix://PATH or stdio://); ConfigError for anything else."""
    try:
        return AsyncServer.from_uri(uri)
    except ValueError as error:
        raise ConfigError(f"--wyoming {uri}: {error}; e.g. tcp://127.0.0.1:10200") from None


async def serve_wyoming(speaker: WyomingSpeaker, server: AsyncServer) -> None:
    """Answer Wyoming clients until cancelled."""
    await server.run(partial(WyomingHandler, speaker))


def run_wyoming(catalog: Callable[[], VoiceCatalog], server: AsyncServer | str, *, seed: int | None = None,
                max_input_chars: int = ServerLimits.max_input_chars) -> None:
    """Load the voices with ``catalog()``, then serve Wyoming with ``server`` (or at its URI) until interrupted."""
    server = wyoming_server(server) if isinstance(server, str) else server
    speaker = WyomingSpeaker(catalog(), seed=seed, max_input_chars=max_input_chars)
    log.info("serving Wyoming with the voices %s", ", ".join(speaker.catalog.names))
    asyncio.run(serve_wyoming(speaker, server))
