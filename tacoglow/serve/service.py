"""The speech endpoints' shared work: a request's text to a scheduled job, its pieces back to a response."""
from __future__ import annotations

import asyncio
import time
from typing import cast

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..catalog import VoiceCatalog
from ..ssml import SSMLError, is_ssml
from ..synthesizer import SynthesisError, new_seed
from .api import ApiError, StreamCut
from .batching import BatchScheduler, EventLog, Job, Piece, QueueFull, TimedOut
from .encoding import MEDIA_TYPES, STREAMED, encode_whole, piece_bytes, streamed_wav_header
from .limits import ServerLimits
from .metrics import Metrics
from .voices import Voices


async def _disconnected(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so only that message is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class SpeechService:
    """What the endpoints share: the voices (each loaded one with its own scheduler), the seed of requests that
    name none, and the metrics."""

    def __init__(self, catalog: VoiceCatalog, limits: ServerLimits, events: EventLog, seed: int | None = None):
        self.limits, self.events, self.seed = limits, events, seed
        self.voices = Voices(catalog, limits, events)
        self.metrics = Metrics()
        events.subscribe(self.metrics.on_event)

    def check_voice(self, name: str | None) -> str:
        """The voice ``name`` means (None: the default voice), or a 422 naming the known voices."""
        return self.voices.check(name)

    async def speak(self, request: Request, text: str, *, voice: str | None, param: str, fmt: str, stream: bool,
                    sample_rate: int | None = None, seed: int | None = None, vocoder: str | None = None,
                    options: dict | None = None, speed: float = 1.0) -> Response:
        """``sample_rate``: of the answer (None: the voice's own)."""
        arrival = time.monotonic()
        limits = self.limits
        if len(text) > limits.max_input_chars:
            raise ApiError(413, f"{param} has {len(text)} characters; this server takes at most "
                                f"{limits.max_input_chars}", param=param)
        speaker = await self.voices.acquire(voice)
        held = True  # until the scheduler has the job, which then gives the voice back when it is done with it
        try:
            vocoder = vocoder or next(iter(speaker.vocoders))
            if vocoder not in speaker.vocoders:
                raise ApiError(422, f"vocoder {vocoder!r} is not loaded; voice {speaker.name!r} has "
                                    f"{list(speaker.vocoders)}", param="vocoder")
            seed = seed if seed is not None else self.seed if self.seed is not None else new_seed()
            try:  # input that starts with <speak> is SSML
                sentences = speaker.synth.sentence_jobs(text, seed, ssml=is_ssml(text))
            except SSMLError as error:
                raise ApiError(400, f"{param}: {error}", param=param) from None
            except ValueError as error:
                raise ApiError(422, f"{param}: {error}", param=param) from None
            sample_rate = sample_rate or speaker.synth.audio.sampling_rate
            queue: asyncio.Queue[Piece | Exception | None]
            loop, queue = asyncio.get_running_loop(), asyncio.Queue()

            def deliver(item: Piece | Exception | None) -> None:  # called on the synthesis thread
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # the event loop has closed (shutdown)
                    pass

            job = Job(sentences, deliver, vocoder=speaker.vocoders[vocoder], options=options, speed=speed,
                      sample_rate=sample_rate, deadline=arrival + limits.request_timeout,
                      on_end=lambda: self.voices.release(speaker))
            scheduler = speaker.scheduler
            try:
                scheduler.submit(job)
                held = False
            except QueueFull as full:
                self.events.emit("rejected", reason="queue full")
                raise ApiError(503, f"the server is busy ({limits.max_concurrent} requests running, "
                                    f"{limits.max_queue} waiting); retry after {full.retry_after} s",
                               headers={"Retry-After": str(full.retry_after)}) from None
            except RuntimeError:
                raise ApiError(503, "the server is shutting down") from None
        finally:
            if held:
                self.voices.release(speaker)
        headers = {"X-Seed": str(seed), "X-Sample-Rate": str(sample_rate), "X-Sentences": str(len(sentences)),
                   "X-Request-Id": str(job.id)}
        disconnect = asyncio.ensure_future(_disconnected(request))
        try:
            pieces = [await self._next(scheduler, job, queue, disconnect)]
            self.metrics.observe("tacoglow_first_audio_seconds", time.monotonic() - arrival)
            if stream and fmt in STREAMED:
                body = self._stream(scheduler, job, queue, pieces[0], fmt, sample_rate, arrival)
                return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)
            while (piece := await self._next(scheduler, job, queue, disconnect)) is not None:
                pieces.append(piece)
        except BaseException:
            scheduler.cancel(job, "error")  # no-op when _next already cancelled it
            raise
        finally:
            disconnect.cancel()
        # None only ends a job, and a request has at least one sentence: every item is a Piece.
        body = await run_in_threadpool(encode_whole, cast("list[Piece]", pieces), fmt, sample_rate)
        self.metrics.observe("tacoglow_request_duration_seconds", time.monotonic() - arrival)
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def _next(self, scheduler: BatchScheduler, job: Job, queue: asyncio.Queue,
                    disconnect: asyncio.Future | None) -> Piece | None:
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
            scheduler.cancel(job, reason)
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

    async def _stream(self, scheduler: BatchScheduler, job: Job, queue: asyncio.Queue, piece: Piece | None, fmt: str,
                      sample_rate: int, arrival: float):
        try:
            if fmt == "wav":
                yield streamed_wav_header(sample_rate)
            while piece is not None:
                yield piece_bytes(piece, fmt, sample_rate)
                self.events.emit("chunk", job=job.id, index=piece.index)
                try:
                    piece = await self._next(scheduler, job, queue, None)
                except ApiError as error:
                    raise StreamCut(error.message) from None
            self.metrics.observe("tacoglow_request_duration_seconds", time.monotonic() - arrival)
        finally:  # also when the client disconnects: Starlette then cancels this iterator
            scheduler.cancel(job, "disconnect")
