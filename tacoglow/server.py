"""HTTP speech server: an OpenAI-compatible endpoint, a native one and a web page over one Synthesizer.

Endpoints (every error is JSON ``{"error": {"message", "type", "param", "code"}}``)::

    POST /v1/audio/speech   OpenAI's audio API: model, input, voice, response_format, speed
    POST /v1/synthesize     tacoglow's own: text, seed, sigma, denoiser_strength, vocoder, speed, format
    GET  /health  /voices  /metrics (Prometheus text)  /  (a page that plays the stream)

Requests are batched across clients by :class:`tacoglow.batching.BatchScheduler`; this module only
translates HTTP to jobs and pieces of audio back to bytes. ``wav``, ``pcm`` and ``jsonl`` (native:
one JSON line per sentence with its audio and alignment) are streamed sentence by sentence; the
other formats are encoded once the last sentence is ready.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import ipaddress
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import soundfile
import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batching import BatchScheduler, EventLog, Job, Piece, QueueFull, TimedOut
from .synthesizer import GriffinLimVocoder, SynthesisError, Synthesizer, WaveGlowVocoder, _new_seed

__all__ = ["ServerLimits", "create_app", "add_serve_arguments", "run_serve", "EventLog"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
# OpenAI's voice names; each maps to the loaded voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_PCM_RATE = 24000  # OpenAI's `pcm` is raw 24 kHz 16-bit little-endian mono
OPUS_RATE = 24000        # libsndfile's Opus encoder takes 8, 12, 16, 24 or 48 kHz only
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
               "opus": "audio/ogg; codecs=opus", "jsonl": "application/x-ndjson"}
STREAMED = ("wav", "pcm", "jsonl")
SOUNDFILE_FORMATS = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"),
                     "wav": ("WAV", "PCM_16")}
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)


@dataclass
class ServerLimits:
    """What one server accepts; each limit answers with a JSON error, never a hang."""

    max_input_chars: int = 4096    # OpenAI's limit for `input`; longer gets 413
    max_concurrent: int = 8        # requests synthesized at once (one sentence each per batch)
    max_queue: int = 32            # requests waiting for a slot; more get 503 + Retry-After
    request_timeout: float = 60.0  # seconds from arrival to the last byte; then 504 or a cut stream
    batch_wait: float = 0.01       # seconds to gather concurrent requests after an idle spell


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


class _StreamCut(Exception):
    """A stream that had started cannot finish; the connection is closed without the final chunk."""


def _error(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else ("server_busy" if status == 503 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ metrics
class _Histogram:
    def __init__(self):
        self.counts, self.sum, self.count = [0] * len(LATENCY_BUCKETS), 0.0, 0

    def observe(self, value: float) -> None:
        self.counts = [c + (value <= b) for c, b in zip(self.counts, LATENCY_BUCKETS)]
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        return ([f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(LATENCY_BUCKETS, self.counts)]
                + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                   f"{name}_count {self.count}"])


class Metrics:
    """Counters fed by the HTTP edge and the scheduler's events; labels come from fixed sets only."""

    COUNTERS = {"tacoglow_requests_total": "HTTP requests by endpoint and status code.",
                "tacoglow_request_errors_total": "HTTP responses with status >= 400.",
                "tacoglow_cancelled_total": "Requests dropped before their end, by reason.",
                "tacoglow_audio_seconds_total": "Seconds of audio synthesized.",
                "tacoglow_batches_total": "Tacotron 2 batches run.",
                "tacoglow_batched_sentences_total": "Sentences decoded in those batches."}
    HISTOGRAMS = {"tacoglow_request_duration_seconds": "Accepted speech requests, arrival to last byte.",
                  "tacoglow_first_audio_seconds": "Arrival to the first sentence's audio."}

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: dict[str, dict[str, float]] = {name: {} for name in self.COUNTERS}
        self.histograms = {name: _Histogram() for name in self.HISTOGRAMS}

    def add(self, name: str, labels: str = "", amount: float = 1) -> None:
        with self._lock:
            self.counters[name][labels] = self.counters[name].get(labels, 0) + amount

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.histograms[name].observe(seconds)

    def on_event(self, event: dict) -> None:
        if event["event"] == "batch":
            self.add("tacoglow_batches_total")
            self.add("tacoglow_batched_sentences_total", amount=len(event["items"]))
        elif event["event"] == "sentence":
            self.add("tacoglow_audio_seconds_total", amount=event["seconds"])
        elif event["event"] == "cancelled":
            self.add("tacoglow_cancelled_total", f'reason="{event["reason"]}"')

    def render(self, waiting: int, active: int) -> str:
        out = []
        with self._lock:
            for name, text in self.COUNTERS.items():
                out += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
                out += [f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}"
                        for labels, value in sorted(self.counters[name].items())]
            for name, text in self.HISTOGRAMS.items():
                out += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *self.histograms[name].lines(name)]
        gauges = {"tacoglow_queue_length": ("Requests waiting for a synthesis slot.", waiting),
                  "tacoglow_active_requests": ("Requests being synthesized.", active),
                  "process_resident_memory_bytes": ("Resident memory size in bytes.", _resident_bytes())}
        for name, (text, value) in gauges.items():
            if value is not None:
                out += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(out) + "\n"


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ------------------------------------------------------------------------------------------ encoding
def _streamed_wav_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes are 0xFFFFFFFF, the placeholder streaming readers accept."""
    return (b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
            + b"data\xff\xff\xff\xff")


def _piece_bytes(piece: Piece, fmt: str, pause: int, sample_rate: int) -> bytes:
    """A sentence as streamed: the pause before it (all but the first), then its samples."""
    pcm = np.concatenate([np.zeros(pause if piece.index else 0, "<i2"), piece.pcm]).tobytes()
    if fmt != "jsonl":
        return pcm
    alignment = (piece.alignment.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    line = {"index": piece.index, "total": piece.total, "text": piece.text, "stopped_by": piece.stopped_by,
            "sample_rate": sample_rate, "audio": base64.b64encode(pcm).decode(),
            "alignment": {"steps": alignment.shape[0], "symbols": alignment.shape[1],
                          "data": base64.b64encode(alignment.tobytes()).decode()}}
    return json.dumps(line).encode() + b"\n"


def _encode_whole(pieces: list[Piece], fmt: str, pause: int, sample_rate: int) -> bytes:
    if fmt not in SOUNDFILE_FORMATS:
        return b"".join(_piece_bytes(p, fmt, pause, sample_rate) for p in pieces)
    samples = np.frombuffer(b"".join(_piece_bytes(p, "pcm", pause, sample_rate) for p in pieces), "<i2")
    buffer = io.BytesIO()
    container, subtype = SOUNDFILE_FORMATS[fmt]
    soundfile.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ requests
class OpenAISpeechRequest(BaseModel):
    """OpenAI's ``/v1/audio/speech`` body; other fields are ignored, as OpenAI's clients may add some."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str
    voice: str
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # accepted; Tacotron 2 has no style prompt
    stream_format: Literal["audio"] = "audio"


class SynthesizeRequest(BaseModel):
    """tacoglow's own options; a misspelled field is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")
    text: str
    voice: str | None = None
    format: Literal["wav", "pcm", "flac", "mp3", "opus", "jsonl"] = "wav"
    stream: bool = True  # wav, pcm and jsonl only; the other formats are sent whole
    seed: int | None = Field(None, ge=0, lt=1 << 63)
    vocoder: Literal["waveglow", "griffin-lim"] | None = None
    sigma: float | None = Field(None, ge=0.0, le=2.0)
    denoiser_strength: float | None = Field(None, ge=0.0, le=1.0)
    speed: float = Field(1.0, ge=0.25, le=4.0)


async def _parse(request: Request, model: type[BaseModel], max_bytes: int) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "send the body as JSON with 'Content-Type: application/json'")
    too_large = ApiError(413, f"the request body is larger than {max_bytes} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError(422, f"{param}: {first['msg']}" if param else first["msg"], param=param) from None


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# ------------------------------------------------------------------------------------------ the service
class SpeechService:
    """What the endpoints share: the synthesizer, its vocoders, the scheduler and the metrics."""

    def __init__(self, synth: Synthesizer, limits: ServerLimits, voice_name: str, events: EventLog):
        self.synth, self.limits, self.voice_name, self.events = synth, limits, voice_name, events
        self.vocoders: dict[str, Any] = {}
        if isinstance(synth.vocoder, WaveGlowVocoder):
            self.vocoders["waveglow"] = synth.vocoder
        self.vocoders["griffin-lim"] = (synth.vocoder if isinstance(synth.vocoder, GriffinLimVocoder)
                                        else synth.griffin_lim_vocoder())
        self.metrics = Metrics()
        events.subscribe(self.metrics.on_event)
        self.scheduler = BatchScheduler(synth, max_active=limits.max_concurrent, max_queue=limits.max_queue,
                                        batch_wait=limits.batch_wait, events=events)

    def check_voice(self, name: str | None) -> None:
        if name is not None and name not in (self.voice_name, *OPENAI_VOICES):
            raise ApiError(422, f"unknown voice {name!r}; this server has {self.voice_name!r} "
                                f"(OpenAI's names {', '.join(OPENAI_VOICES)} map to it)", param="voice")

    async def speak(self, request: Request, text: str, *, param: str, fmt: str, stream: bool, sample_rate: int,
                    seed: int | None = None, vocoder: str | None = None, options: dict | None = None,
                    speed: float = 1.0) -> Response:
        arrival = time.monotonic()
        limits = self.limits
        if len(text) > limits.max_input_chars:
            raise ApiError(413, f"{param} has {len(text)} characters; this server takes at most "
                                f"{limits.max_input_chars}", param=param)
        vocoder = vocoder or next(iter(self.vocoders))
        if vocoder not in self.vocoders:
            raise ApiError(422, f"vocoder {vocoder!r} is not loaded; this server has {list(self.vocoders)}",
                           param="vocoder")
        seed = _new_seed() if seed is None else seed
        try:
            sentences = self.synth.sentence_jobs(text, seed)
        except ValueError as error:
            raise ApiError(422, f"{param}: {error}", param=param) from None
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def deliver(item: Piece | Exception | None) -> None:  # called on the synthesis thread
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop has closed (shutdown)
                pass

        job = Job(sentences, deliver, vocoder=self.vocoders[vocoder], options=options, speed=speed,
                  sample_rate=sample_rate, deadline=arrival + limits.request_timeout)
        try:
            self.scheduler.submit(job)
        except QueueFull as full:
            self.events.emit("rejected", reason="queue full")
            raise ApiError(503, f"the server is busy ({limits.max_concurrent} requests running, "
                                f"{limits.max_queue} waiting); retry after {full.retry_after} s",
                           headers={"Retry-After": str(full.retry_after)}) from None
        except RuntimeError:
            raise ApiError(503, "the server is shutting down") from None
        pause = round(self.synth.sentence_pause * sample_rate)
        headers = {"X-Seed": str(seed), "X-Sample-Rate": str(sample_rate), "X-Sentences": str(len(sentences)),
                   "X-Request-Id": str(job.id)}
        disconnect = asyncio.ensure_future(_disconnected(request))
        try:
            pieces = [await self._next(job, queue, disconnect)]
            self.metrics.observe("tacoglow_first_audio_seconds", time.monotonic() - arrival)
            if stream and fmt in STREAMED:
                return StreamingResponse(self._stream(job, queue, pieces[0], fmt, pause, sample_rate, arrival),
                                         media_type=MEDIA_TYPES[fmt], headers=headers)
            while (piece := await self._next(job, queue, disconnect)) is not None:
                pieces.append(piece)
        except BaseException:
            self.scheduler.cancel(job, "error")  # no-op when _next already cancelled it
            raise
        finally:
            disconnect.cancel()
        body = await run_in_threadpool(_encode_whole, pieces, fmt, pause, sample_rate)
        self.metrics.observe("tacoglow_request_duration_seconds", time.monotonic() - arrival)
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def _next(self, job: Job, queue: asyncio.Queue, disconnect: asyncio.Future | None) -> Piece | None:
        """The job's next piece (None at its end); cancels the job on time-out or disconnect."""
        get = asyncio.ensure_future(queue.get())
        try:
            done, _ = await asyncio.wait({get} if disconnect is None else {get, disconnect},
                                         timeout=max(0.0, job.deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()
        if get not in done:
            reason = "disconnect" if disconnect is not None and disconnect in done else "timeout"
            self.scheduler.cancel(job, reason)
            if reason == "disconnect":
                raise ApiError(499, "the client disconnected")
        item = get.result() if get in done else TimedOut()
        if isinstance(item, ApiError):
            raise item
        if isinstance(item, TimedOut):
            raise ApiError(504, f"synthesis took longer than {self.limits.request_timeout:g} s")
        if isinstance(item, SynthesisError):  # a one-line reason meant for users (e.g. a damaged model)
            raise ApiError(500, f"synthesis failed: {str(item).splitlines()[0]}")
        if isinstance(item, Exception):
            raise ApiError(500, "synthesis failed; see the server log")
        return item

    async def _stream(self, job: Job, queue: asyncio.Queue, piece: Piece | None, fmt: str, pause: int,
                      sample_rate: int, arrival: float):
        try:
            if fmt == "wav":
                yield _streamed_wav_header(sample_rate)
            while piece is not None:
                yield _piece_bytes(piece, fmt, pause, sample_rate)
                self.events.emit("chunk", job=job.id, index=piece.index)
                try:
                    piece = await self._next(job, queue, None)
                except ApiError as error:
                    raise _StreamCut(error.message) from None
            self.metrics.observe("tacoglow_request_duration_seconds", time.monotonic() - arrival)
        finally:  # also when the client disconnects: Starlette then cancels this iterator
            self.scheduler.cancel(job, "disconnect")


class _Edge:
    """Pure ASGI middleware (streams pass untouched): the Host allow-list and the request counters."""

    ENDPOINTS = ("/", "/health", "/voices", "/metrics", "/v1/audio/speech", "/v1/synthesize")

    def __init__(self, app, metrics: Callable[[], Metrics | None], allowed_hosts: set[str] | None):
        self.app, self.metrics, self.allowed_hosts = app, metrics, allowed_hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]").lower()
        try:
            if self.allowed_hosts is not None and host not in self.allowed_hosts:
                message = f"Host {host!r} is not served here; use {sorted(self.allowed_hosts)[0]}"
                await _error(400, message)(scope, receive, send_and_watch)
            else:
                await self.app(scope, receive, send_and_watch)
        except _StreamCut as error:
            log.warning("stream cut: %s", error)
        finally:
            if (metrics := self.metrics()) is not None:
                path = scope["path"]
                endpoint = path if path in self.ENDPOINTS else "/static" if path.startswith("/static/") else "other"
                metrics.add("tacoglow_requests_total", f'endpoint="{endpoint}",code="{status}"')
                if status >= 400:
                    metrics.add("tacoglow_request_errors_total", f'endpoint="{endpoint}",code="{status}"')


# ------------------------------------------------------------------------------------------ the app
def create_app(synthesizer: Synthesizer | Callable[[], Synthesizer], *, limits: ServerLimits | None = None,
               voice_name: str = "default", allowed_hosts: set[str] | None = None,
               events: EventLog | None = None) -> FastAPI:
    """The FastAPI app. ``synthesizer`` may be a factory, called once at start-up.

    ``allowed_hosts``: Host header names served (``None``: any; :func:`run_serve` sets the loopback
    names when bound to loopback). ``events``: an :class:`EventLog` to watch the scheduler and streams.
    """
    limits = limits or ServerLimits()
    events = events or EventLog()
    max_body = limits.max_input_chars * 6 + 4096  # room for JSON's \uXXXX escapes

    async def lifespan(app: FastAPI):
        synth = synthesizer if isinstance(synthesizer, Synthesizer) else synthesizer()
        app.state.service = service = SpeechService(synth, limits, voice_name, events)
        service.scheduler.start()
        try:
            yield
        finally:
            service.scheduler.stop(ApiError(503, "the server is shutting down"))
            events.unsubscribe(service.metrics.on_event)

    app = FastAPI(title="tacoglow", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_Edge, metrics=lambda: getattr(getattr(app.state, "service", None), "metrics", None),
                       allowed_hosts=allowed_hosts)
    app.add_exception_handler(ApiError, lambda r, e: _error(e.status, e.message, e.param, e.headers))
    app.add_exception_handler(StarletteHTTPException, lambda r, e: _error(e.status_code, str(e.detail)))
    app.add_exception_handler(Exception, lambda r, e: _error(500, "internal error; see the server log"))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.post("/v1/audio/speech")
    async def openai_speech(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        body: OpenAISpeechRequest = await _parse(request, OpenAISpeechRequest, max_body)
        if body.model not in (*OPENAI_MODELS, "tacoglow"):
            raise ApiError(422, f"unknown model {body.model!r}; use one of {', '.join(OPENAI_MODELS)}", "model")
        service.check_voice(body.voice)
        if body.response_format == "aac":
            raise ApiError(422, "response_format 'aac' is not available: no AAC encoder is installed; "
                                "use mp3, opus, flac, wav or pcm", "response_format")
        rate = {"pcm": OPENAI_PCM_RATE, "opus": OPUS_RATE}.get(body.response_format, service.synth.audio.sampling_rate)
        return await service.speak(request, body.input, param="input", fmt=body.response_format, stream=True,
                                   sample_rate=rate, speed=body.speed)

    @app.post("/v1/synthesize")
    async def synthesize(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        body: SynthesizeRequest = await _parse(request, SynthesizeRequest, max_body)
        service.check_voice(body.voice)
        options = {k: v for k, v in (("sigma", body.sigma), ("denoiser_strength", body.denoiser_strength))
                   if v is not None}
        rate = OPUS_RATE if body.format == "opus" else service.synth.audio.sampling_rate
        return await service.speak(request, body.text, param="text", fmt=body.format, stream=body.stream,
                                   sample_rate=rate, seed=body.seed, vocoder=body.vocoder, options=options,
                                   speed=body.speed)

    @app.get("/health")
    async def health(request: Request) -> dict:
        waiting, active = request.app.state.service.scheduler.lengths()
        return {"status": "ok", "queue": waiting, "active": active}

    @app.get("/voices")
    async def voices(request: Request) -> dict:
        service: SpeechService = request.app.state.service
        synth, waveglow = service.synth, service.vocoders.get("waveglow")
        voice = {"name": service.voice_name, "aliases": list(OPENAI_VOICES), "models": list(OPENAI_MODELS),
                 "sample_rate": synth.audio.sampling_rate, "vocoders": list(service.vocoders),
                 "default_vocoder": next(iter(service.vocoders)),
                 "sigma": waveglow.sigma if waveglow else None,
                 "denoiser_strength": waveglow.denoiser_strength if waveglow else None,
                 "griffin_lim": {"power": synth.griffin_lim_power,
                                 "inversion_iters": synth.griffin_lim_inversion_iters},
                 "normalize": synth.normalize, "arpabet": getattr(synth, "arpabet", False),
                 "max_sentence_chars": synth.max_chars,
                 "tacotron2": dataclasses.asdict(synth.tacotron2.config),
                 "waveglow": dataclasses.asdict(waveglow.waveglow.config) if waveglow else None,
                 "audio": synth.audio.to_dict()}
        return {"voices": [voice], "limits": dataclasses.asdict(service.limits),
                "formats": {"openai": ["mp3", "opus", "flac", "wav", "pcm"],
                            "native": ["wav", "pcm", "flac", "mp3", "opus", "jsonl"],
                            "streamed": list(STREAMED)}}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        service: SpeechService = request.app.state.service
        return Response(service.metrics.render(*service.scheduler.lengths()), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"})

    return app


# ------------------------------------------------------------------------------------------ command line
def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """Server options of ``tacoglow serve`` (the voice options come from :func:`tacoglow.cli.add_voice_arguments`)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--voice-name", default="default", help="name of the loaded voice in /voices")
    d = ServerLimits()
    p.add_argument("--max-input-chars", type=int, default=d.max_input_chars,
                   help=f"longest input, in characters (default {d.max_input_chars})")
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent,
                   help=f"requests synthesized at once (default {d.max_concurrent})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"requests waiting beyond those; more get 503 (default {d.max_queue})")
    p.add_argument("--timeout", type=float, default=d.request_timeout,
                   help=f"seconds a request may take (default {d.request_timeout:g})")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait * 1000,
                   help=f"milliseconds to gather concurrent requests (default {d.batch_wait * 1000:g})")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_serve(args: argparse.Namespace) -> int:
    """``tacoglow serve``: load the voice, then serve until interrupted."""
    import uvicorn

    from .cli import load_synthesizer

    limits = ServerLimits(max_input_chars=args.max_input_chars, max_concurrent=args.max_concurrent,
                          max_queue=args.max_queue, request_timeout=args.timeout, batch_wait=args.batch_wait_ms / 1000)
    if limits.max_input_chars < 1 or limits.max_concurrent < 1 or limits.max_queue < 0:
        raise ValueError("--max-input-chars and --max-concurrent must be at least 1, --max-queue at least 0")
    if limits.request_timeout <= 0 or limits.batch_wait < 0:
        raise ValueError("--timeout must be positive and --batch-wait-ms at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    synth = load_synthesizer(args)
    allowed = {"localhost", "127.0.0.1", "::1"} if _is_loopback(args.host) else None
    if allowed is None:
        log.warning("serving on %s: anyone who can reach it can use it; put an authenticating proxy in front",
                    args.host)
    app = create_app(synth, limits=limits, voice_name=args.voice_name, allowed_hosts=allowed)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
