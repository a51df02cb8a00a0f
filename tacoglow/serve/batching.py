"""Many concurrent requests, one model: sentences from different requests share Tacotron 2 batches.

A :class:`BatchScheduler` admits at most ``max_active`` requests at once and keeps at most
``max_queue`` more waiting (:class:`QueueFull` beyond that). One thread takes the next sentence of
every active request (round robin, gathered for ``batch_wait`` seconds after an idle spell), decodes
them as one batch with :meth:`Synthesizer.decode_jobs`, vocodes each with its request's options and
hands it over at once, so a request's first sentence is out while the rest are still to come.
Every sentence draws randomness only from its own seeded generators
(:class:`~tacoglow.synthesizer.SentenceJob`), so a request's audio does not depend on what shares
its batch. A cancelled request (client gone, time-out) is dropped from the schedule: the sentence
already in the model finishes, nothing after it runs.

No HTTP here: the server (``tacoglow.serve``) is one user; anything that can call ``deliver`` from another
thread can be another.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from scipy.signal import resample_poly

from ..audio import stretch_mel
from ..synthesizer import SentenceJob, SentenceResult, SynthesisError, Synthesizer, Vocoder, pause_samples
from ..timings import WordTiming

log = logging.getLogger(__name__)


class EventLog:
    """What the scheduler did (bounded, newest last), plus hooks called with each event.

    Events: ``queued``, ``batch`` (``items``: (job, sentence index, sentences) before decoding),
    ``sentence`` (after vocoding, with ``seconds`` of audio), ``finished``, ``cancelled``
    (``reason``); users may add their own (the server adds ``chunk`` and ``rejected``).
    Hooks run on the emitting thread: a hook that blocks holds that thread (tests use this).
    """

    def __init__(self, maxlen: int = 2000):
        self._events: deque[dict] = deque(maxlen=maxlen)
        self._hooks: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, hook: Callable[[dict], None]) -> None:
        self._hooks.append(hook)

    def unsubscribe(self, hook: Callable[[dict], None]) -> None:
        self._hooks.remove(hook)

    def emit(self, name: str, **fields: Any) -> None:
        event = {"event": name, "time": time.monotonic(), **fields}
        with self._lock:
            self._events.append(event)
        for hook in list(self._hooks):
            hook(event)

    def find(self, name: str | None = None, **match: Any) -> list[dict]:
        with self._lock:
            events = list(self._events)
        return [e for e in events if (name is None or e["event"] == name)
                and all(e.get(k) == v for k, v in match.items())]


@dataclass
class Piece:
    """One synthesized sentence: 16-bit samples at the request's sample rate, and the silence after it."""

    index: int
    total: int
    text: str
    stopped_by: str
    alignment: torch.Tensor  # (decoder steps, symbols)
    pcm: np.ndarray          # int16 (samples,)
    pause: int = 0           # samples of silence that follow, at the same rate (the job's pause)
    words: list[WordTiming] = field(default_factory=list)  # spoken words, seconds from the start of ``pcm``


class Job:
    """One request: its sentences and options. ``deliver`` receives each :class:`Piece`, then ``None``
    at the end, or an exception; it is called from the scheduler's thread. ``on_end`` is called once when the
    scheduler is done with the job (finished, cancelled or stopped; from whichever thread ends it)."""

    _ids = itertools.count(1)

    def __init__(self, sentences: list[SentenceJob], deliver: Callable[[Piece | Exception | None], None], *,
                 vocoder: Vocoder | None = None, options: dict | None = None, speed: float = 1.0,
                 sample_rate: int | None = None, deadline: float = math.inf,
                 on_end: Callable[[], None] | None = None):
        self.id = next(self._ids)
        self.sentences, self.deliver, self.on_end = sentences, deliver, on_end
        self.vocoder, self.options, self.speed = vocoder, options or {}, speed
        self.sample_rate, self.deadline = sample_rate, deadline
        self.created = time.monotonic()
        self.next = 0  # the next sentence to schedule
        self.done = False
        self.cancelled: str | None = None
        self._ended = threading.Lock()

    def end(self) -> None:
        """Call ``on_end``, the first time only."""
        if self.on_end is not None and self._ended.acquire(blocking=False):
            self.on_end()


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """Delivered to a job whose deadline passed while it was scheduled or waiting."""


class BatchScheduler:
    """Admission (bounded) and one synthesis thread that batches sentences across requests."""

    def __init__(self, synth: Synthesizer, *, max_active: int = 8, max_queue: int = 32, batch_wait: float = 0.01,
                 events: EventLog | None = None):
        self.synth, self.max_active, self.max_queue, self.batch_wait = synth, max_active, max_queue, batch_wait
        self.events = events or EventLog()
        self._cond = threading.Condition()  # re-entrant lock: cancel() is called with it held
        self._active: list[Job] = []
        self._waiting: deque[Job] = deque()
        self._stopping = False
        self._seconds_per_job = 1.0  # running mean, for QueueFull.retry_after
        self._thread = threading.Thread(target=self._run, name="tacoglow-synthesis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, error: Exception | None = None, wait: bool = True) -> None:
        """Stop the thread; jobs not finished receive ``error`` (default: a RuntimeError). The thread ends after
        the batch it is running; ``wait`` waits for that."""
        with self._cond:
            self._stopping = True
            jobs = self._active + list(self._waiting)
            self._active, self._waiting = [], deque()
            self._cond.notify_all()
        for job in jobs:
            job.deliver(error or RuntimeError("the synthesis thread stopped"))
            job.end()
        if wait and self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    @property
    def running(self) -> bool:
        """Whether the synthesis thread runs (started and not stopped)."""
        return self._thread.is_alive()

    def lengths(self) -> tuple[int, int]:
        """(waiting, active) requests."""
        with self._cond:
            return len(self._waiting), len(self._active)

    def submit(self, job: Job) -> None:
        """Admit ``job``, or raise :class:`QueueFull` (or RuntimeError when stopping)."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("the synthesis thread is stopping")
            if len(self._active) < self.max_active:
                self._active.append(job)
            elif len(self._waiting) < self.max_queue:
                self._waiting.append(job)
            else:
                rounds = math.ceil((len(self._waiting) + 1) / self.max_active)
                raise QueueFull(max(1, math.ceil(rounds * self._seconds_per_job)))
            self._cond.notify()
        self.events.emit("queued", job=job.id, sentences=len(job.sentences))

    def cancel(self, job: Job, reason: str) -> None:
        """Drop ``job`` from the schedule (no-op once finished or cancelled)."""
        with self._cond:
            if job.cancelled or job.done:
                return
            job.cancelled = reason
            if job in self._active:
                self._active.remove(job)
                self._promote()
            elif job in self._waiting:
                self._waiting.remove(job)
        self.events.emit("cancelled", job=job.id, reason=reason, scheduled=job.next, total=len(job.sentences))
        job.end()

    def _promote(self) -> None:
        while self._waiting and len(self._active) < self.max_active:
            self._active.append(self._waiting.popleft())

    def _take(self) -> list[tuple[Job, SentenceJob]] | None:
        """The next sentence of up to ``batch_size`` active requests; None when stopping."""
        with self._cond:
            idle = not self._active
            while not self._active and not self._stopping:
                self._cond.wait()
            if idle and self.batch_wait > 0:  # gather requests that arrive together
                end = time.monotonic() + self.batch_wait
                while len(self._active) < self.synth.batch_size and (left := end - time.monotonic()) > 0:
                    self._cond.wait(left)
            if self._stopping:
                return None
            now = time.monotonic()
            for job in [j for j in self._active + list(self._waiting) if j.deadline < now]:
                self.cancel(job, "timeout")
                job.deliver(TimedOut(f"request {job.id} passed its deadline"))
            picked = self._active[:self.synth.batch_size]
            self._active = self._active[len(picked):] + picked  # round robin beyond batch_size
            batch = [(job, job.sentences[job.next]) for job in picked]
            for job in picked:
                job.next += 1
            return batch

    def _decode(self, sentences: list[SentenceJob]) -> list[SentenceResult | Exception]:
        try:
            return list(self.synth.decode_jobs(sentences))
        except Exception as error:  # noqa: BLE001 - retry one by one, so only the culprit fails
            if len(sentences) == 1:
                return [error]
            return [self._decode([s])[0] for s in sentences]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            self.events.emit("batch", items=[(job.id, s.index, len(job.sentences)) for job, s in batch])
            for (job, sentence), result in zip(batch, self._decode([s for _, s in batch])):
                if job.cancelled:
                    continue
                try:
                    if isinstance(result, Exception):
                        raise result
                    piece = self._render(job, sentence, result)
                except Exception as error:  # noqa: BLE001 - reported to its request; the thread goes on
                    if isinstance(error, SynthesisError):
                        log.error("%s", error)
                    else:
                        log.exception("synthesis failed for %r", sentence.text[:60])
                    self.cancel(job, "error")
                    job.deliver(error)
                    continue
                job.deliver(piece)
                self.events.emit("sentence", job=job.id, index=sentence.index, total=len(job.sentences),
                                 seconds=piece.pcm.size / (job.sample_rate or self.synth.audio.sampling_rate))
                if sentence.index == len(job.sentences) - 1:
                    self._finish(job)

    def _finish(self, job: Job) -> None:
        with self._cond:
            if job in self._active:
                self._active.remove(job)
            job.done = True
            self._promote()
            self._seconds_per_job = 0.9 * self._seconds_per_job + 0.1 * (time.monotonic() - job.created)
        job.deliver(None)
        self.events.emit("finished", job=job.id)
        job.end()

    def _render(self, job: Job, sentence: SentenceJob, result: SentenceResult) -> Piece:
        # The sentence's rate (SSML) times the request's speed: the duration changes, the pitch stays.
        mel = stretch_mel(result.mel, sentence.rate * job.speed)
        audio = self.synth.vocode(mel, generator=sentence.generator(1), vocoder=job.vocoder, **job.options).numpy()
        rate = self.synth.audio.sampling_rate
        if job.sample_rate and job.sample_rate != rate:
            g = math.gcd(job.sample_rate, rate)
            audio = resample_poly(audio, job.sample_rate // g, rate // g)
        # As tacoglow.audio.save_wav: clip, then round to int16 at full scale 32767.
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
        words = result.word_timings(pcm.size / (job.sample_rate or rate))  # stretched with the mel
        return Piece(sentence.index, len(job.sentences), sentence.text, result.stopped_by, result.alignment, pcm,
                     pause_samples(sentence.pause, job.sample_rate or rate), words)
