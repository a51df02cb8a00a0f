"""Several voices in one process: voice folders by name, each loaded on its first use, a few at a time.

A voice folder is what ``TACOGLOW_VOICE_DIR`` accepts: ``tacotron2.pt``, and optionally ``hifigan.pt`` and/or
``waveglow.pt`` beside it. ``--voice-dir DIR`` names a folder of such folders; each one is a voice named after
its folder (:func:`find_voices`).

:class:`VoiceCatalog` lists them without loading anything. A voice is loaded when first used
(:meth:`VoiceCatalog.use`), once even when several threads ask for it together, and at most ``max_loaded`` of
them stay loaded: before one more is loaded, the least recently used voice that nothing is using is unloaded.
A voice in use is never unloaded under its user; when every loaded voice is in use, the bound is exceeded until
they are released. The default voice (the installed one, or the one ``--tacotron2`` names) is loaded from the
start, never unloaded and not counted; other names can be aliases of it (the server's OpenAI voice names).

Every folder voice is loaded with the same :class:`VoiceOptions` (the command line's voice options): its own
settings come from its checkpoint (:func:`tacoglow.synthesis.voice_synthesis_config`), with the options given
applied over them, as ``tacoglow synthesize`` does for one voice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .audio import AudioConfig
from .checkpoint import inspect_checkpoint
from .config import ConfigError
from .errors import TacoglowError
from .hub import VOCODERS, choose_checkpoints
from .synthesis import SynthesisConfig, voice_synthesis_config
from .synthesizer import Synthesizer

log = logging.getLogger(__name__)

VOICE_FILE = "tacotron2.pt"  # what makes a sub-folder of --voice-dir a voice


class UnknownVoiceError(TacoglowError, LookupError):
    """A voice name the catalog does not know; the message lists the names it knows."""


@dataclass(frozen=True)
class VoiceFiles:
    """The checkpoints of one voice: a Tacotron 2 and at most one vocoder (none: Griffin-Lim)."""

    name: str
    tacotron2: Path
    waveglow: Path | None = None
    hifigan: Path | None = None

    @property
    def vocoder(self) -> str:
        return "hifigan" if self.hifigan else "waveglow" if self.waveglow else "griffin-lim"


def find_voices(voice_dir: str | os.PathLike, vocoder: str = "auto") -> list[VoiceFiles]:
    """The voice folders in ``voice_dir`` (sub-folders holding ``tacotron2.pt``), sorted by name; nothing is read.

    ``vocoder`` chooses each voice's vocoder as ``--vocoder`` does (see :func:`tacoglow.hub.choose_checkpoints`);
    a voice that lacks the one insisted on is refused here, naming its folder, not at its first request.
    """
    voice_dir = Path(voice_dir)
    if not voice_dir.is_dir():
        raise ConfigError(f"{voice_dir}: no such folder; --voice-dir names a folder whose sub-folders each hold "
                          f"a {VOICE_FILE} (and optionally hifigan.pt or waveglow.pt)")
    if vocoder not in VOCODERS:
        raise ConfigError(f"vocoder must be one of {VOCODERS}, got {vocoder!r}")
    voices = []
    for folder in sorted(p for p in voice_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / VOICE_FILE).is_file():
            log.warning("%s: no %s in it, so it is not a voice", folder, VOICE_FILE)
            continue
        present = {name: folder / f"{name}.pt" for name in ("waveglow", "hifigan") if (folder / f"{name}.pt").is_file()}
        if vocoder in ("waveglow", "hifigan") and vocoder not in present:
            raise ConfigError(f"{folder}: has no {vocoder}.pt, but --vocoder {vocoder} asks every voice for one; "
                              "add it, or choose another --vocoder")
        tacotron2, waveglow, hifigan = choose_checkpoints(folder / VOICE_FILE, present.get("waveglow"),
                                                          present.get("hifigan"), vocoder)
        voices.append(VoiceFiles(folder.name, tacotron2, waveglow, hifigan))
    if not voices:
        raise ConfigError(f"{voice_dir}: none of its sub-folders holds a {VOICE_FILE}; put each voice in a "
                          "folder of its own, named after the voice")
    return voices


@dataclass(frozen=True)
class VoiceOptions:
    """How each voice of a catalog is loaded: the same device, backend and settings overrides for all."""

    device: str = "cpu"
    backend: str = "torch"
    overrides: Mapping[str, Any] = field(default_factory=dict)  # SynthesisConfig fields, e.g. {"sigma": 0.8}

    def _overrides(self, files: VoiceFiles) -> dict[str, Any]:
        overrides = dict(self.overrides)
        if files.hifigan is not None and "denoiser_strength" in overrides:  # the strength of the vocoder loaded
            overrides["hifigan_denoiser_strength"] = overrides.pop("denoiser_strength")
        return overrides

    def load(self, files: VoiceFiles) -> Synthesizer:
        return Synthesizer.from_checkpoints(files.tacotron2, files.waveglow, hifigan=files.hifigan,
                                            device=self.device, backend=self.backend, **self._overrides(files))

    def settings(self, files: VoiceFiles) -> tuple[SynthesisConfig, AudioConfig]:
        """The settings the voice will have once loaded, read from its Tacotron 2 checkpoint (no model is built)."""
        checkpoint = inspect_checkpoint(files.tacotron2)
        return dataclasses.replace(voice_synthesis_config(checkpoint), **self._overrides(files)), checkpoint.audio


@dataclass(eq=False)
class _Entry:
    name: str
    files: VoiceFiles | None  # None: the default voice, given loaded
    synth: Synthesizer | None = None
    users: int = 0  # requests holding it (and one while it loads for them)
    last_used: int = 0
    loading: threading.Lock = field(default_factory=threading.Lock)  # one load at a time per voice
    settings: tuple[SynthesisConfig, AudioConfig] | None = None  # read once for an unloaded voice


class VoiceCatalog:
    """The default voice and the voices of a folder, by name; see the module's docstring.

    Args:
        default: the default voice, loaded.
        voices: the other voices (:func:`find_voices`), loaded on first use.
        options: how they are loaded (the same for all).
        default_name: the default voice's name.
        max_loaded: how many of ``voices`` may stay loaded at once (None: no bound).
    """

    def __init__(self, default: Synthesizer, voices: Sequence[VoiceFiles] = (), *,
                 options: VoiceOptions | None = None, default_name: str = "default", max_loaded: int | None = None):
        if max_loaded is not None and max_loaded < 1:
            raise ConfigError(f"--max-loaded-voices must be at least 1, got {max_loaded}")
        self.default_name, self.options, self.max_loaded = default_name, options or VoiceOptions(), max_loaded
        self._entries = {default_name: _Entry(default_name, None, default)}
        for files in voices:
            if files.name in self._entries:
                raise ConfigError(f"{files.tacotron2.parent}: a voice named {files.name!r} is there already "
                                  "(the default voice's name, --voice-name); rename the folder")
            self._entries[files.name] = _Entry(files.name, files)
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self.loads: Counter[str] = Counter()  # how many times each voice was loaded
        # Called with (name, synthesizer) after a voice is unloaded, outside the catalog's lock.
        self.unload_hooks: list[Callable[[str, Synthesizer], None]] = []

    # ------------------------------------------------------------------ names
    @property
    def names(self) -> list[str]:
        """Every voice, the default first, then the folder voices in name order."""
        return list(self._entries)

    def add_aliases(self, aliases: Sequence[str]) -> None:
        """Make each of ``aliases`` a name of the default voice (refused where a voice has that name)."""
        for alias in aliases:
            entry = self._entries.get(alias)
            if entry is not None and entry.files is not None:
                raise ConfigError(f"{entry.files.tacotron2.parent}: {alias!r} names the default voice here "
                                  "(one of OpenAI's voice names); rename the folder")
            self._aliases[alias] = self.default_name

    @property
    def aliases(self) -> list[str]:
        return list(self._aliases)

    def resolve(self, name: str | None) -> str:
        """The voice ``name`` means (None and the aliases: the default voice), or :class:`UnknownVoiceError`."""
        if name is None:
            return self.default_name
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        known = ", ".join(repr(n) for n in self._entries)
        aliases = f" ({', '.join(self._aliases)} name {self.default_name!r})" if self._aliases else ""
        raise UnknownVoiceError(f"unknown voice {name!r}; the voices are {known}{aliases}")

    def files(self, name: str) -> VoiceFiles | None:
        """A folder voice's checkpoints (None for the default voice)."""
        return self._entries[self.resolve(name)].files

    # ------------------------------------------------------------------ state
    def is_loaded(self, name: str) -> bool:
        return self._entries[self.resolve(name)].synth is not None

    def peek(self, name: str) -> Synthesizer | None:
        """The voice if it is loaded now, without holding it or counting a use (e.g. to describe it)."""
        return self._entries[self.resolve(name)].synth

    def loaded(self) -> list[str]:
        """The folder voices loaded now, least recently used first."""
        with self._lock:
            entries = [e for e in self._entries.values() if e.files is not None and e.synth is not None]
        return [e.name for e in sorted(entries, key=lambda e: e.last_used)]

    def in_use(self, name: str) -> int:
        """How many users hold the voice now."""
        return self._entries[self.resolve(name)].users

    def settings(self, name: str) -> tuple[SynthesisConfig, AudioConfig]:
        """The voice's settings and audio settings; an unloaded voice's are read from its checkpoint once."""
        entry = self._entries[self.resolve(name)]
        synth = entry.synth
        if synth is not None:
            return synth.synthesis, synth.audio
        if entry.settings is None:
            assert entry.files is not None  # the default voice is always loaded
            entry.settings = self.options.settings(entry.files)
        return entry.settings

    # ------------------------------------------------------------------ use
    def acquire(self, name: str | None) -> Synthesizer:
        """The voice ``name``, loaded here if it is not (which may take seconds), held until :meth:`release`."""
        entry = self._entries[self.resolve(name)]
        unloaded: list[tuple[str, Synthesizer]] = []
        with self._lock:
            entry.users += 1  # from now on it is not unloaded
            if entry.synth is None:
                unloaded = self._unload_idle(room=1)  # make room first: memory never holds more than the bound
        self._announce(unloaded)
        try:
            if entry.synth is None:
                with entry.loading:  # a second thread asking for it waits for this load, then finds it loaded
                    if entry.synth is None:
                        assert entry.files is not None
                        log.info("loading voice %r from %s", entry.name, entry.files.tacotron2.parent)
                        synth = self.options.load(entry.files)
                        with self._lock:
                            entry.synth = synth
                            self.loads[entry.name] += 1
        except BaseException:
            self.release(entry.name)
            raise
        with self._lock:
            entry.last_used = next(self._clock)
            synth = entry.synth
            unloaded = self._unload_idle()  # loads of other voices at the same time may have gone past the bound
        self._announce(unloaded)
        assert synth is not None
        return synth

    def try_acquire(self, name: str | None) -> Synthesizer | None:
        """:meth:`acquire` when the voice is loaded now (no wait); None when it would have to be loaded."""
        entry = self._entries[self.resolve(name)]
        with self._lock:
            if entry.synth is None:
                return None
            entry.users += 1
            entry.last_used = next(self._clock)
            return entry.synth

    def release(self, name: str | None) -> None:
        """Give back a voice from :meth:`acquire`; the bound is then enforced again."""
        entry = self._entries[self.resolve(name)]
        with self._lock:
            if entry.users <= 0:
                raise RuntimeError(f"voice {entry.name!r} released more often than acquired")
            entry.users -= 1
            entry.last_used = next(self._clock)
            unloaded = self._unload_idle()
        self._announce(unloaded)

    @contextlib.contextmanager
    def use(self, name: str | None) -> Iterator[Synthesizer]:
        """``with catalog.use("name") as synth:`` the voice, held for the block."""
        synth = self.acquire(name)
        try:
            yield synth
        finally:
            self.release(name)

    def _unload_idle(self, room: int = 0) -> list[tuple[str, Synthesizer]]:
        """Unload idle folder voices, least recently used first, until ``room`` more fit in the bound (lock held)."""
        if self.max_loaded is None:
            return []
        loaded = sorted((e for e in self._entries.values() if e.files is not None and e.synth is not None),
                        key=lambda e: e.last_used)
        excess = len(loaded) + room - self.max_loaded
        unloaded = []
        for entry in loaded:
            if excess <= 0:
                break
            if entry.users == 0 and entry.synth is not None:
                unloaded.append((entry.name, entry.synth))
                entry.synth = None
                excess -= 1
        return unloaded

    def _announce(self, unloaded: list[tuple[str, Synthesizer]]) -> None:
        for name, synth in unloaded:
            log.info("unloaded voice %r (at most %s loaded)", name, self.max_loaded)
            for hook in list(self.unload_hooks):
                hook(name, synth)
