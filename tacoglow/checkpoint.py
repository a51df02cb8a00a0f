"""Reading and writing checkpoints: NVIDIA's layouts and tacoglow's own.

A checkpoint is untrusted input. Everything is read with ``torch.load(weights_only=True)``,
which builds nothing but tensors and plain containers. The one exception is NVIDIA/waveglow's
published files, which pickle the whole ``glow.WaveGlow`` module object: those go through
:class:`_AllowlistUnpickler`, which resolves only the handful of names such a file contains,
maps each of them to an inert record (no torch or ``glow`` class is ever constructed, no
``__setstate__`` of a real class runs) and refuses every other name.

Layouts understood (``detect_layout`` names them):

- ``tacoglow``: ``{"format": "tacoglow", "model": ..., "config", "audio", "text", "step",
  "state_dict"}``: self-describing, tensors and plain types only.
- ``ngc``: NVIDIA DeepLearningExamples / torch.hub: ``{"state_dict", "config", ...}``, keys may
  carry DDP's ``module.`` (or ``module.1.``) prefix.
- ``tacotron2-standalone``: NVIDIA/tacotron2 training files ``{"state_dict", "optimizer",
  "iteration", ...}``; no config, so dimensions come from tensor shapes.
- ``waveglow-legacy``: NVIDIA/waveglow ``{"model": <pickled module>, ...}``, zip or the older
  non-zip serialization; its fused per-flow ``cond_layer`` is split into ``cond_layers.i``.
- ``state-dict``: a bare ``{key: tensor}`` mapping.
- ``jik876``: HiFi-GAN as jik876/hifi-gan saves it, ``{"generator": state_dict}``, with its
  ``config.json`` in the same folder (or a config passed in).
- ``ngc-hifigan``: HiFi-GAN from NVIDIA DeepLearningExamples / NGC: ``{"generator", "config",
  "train_setup", ...}``, ``module.`` prefixes, resblock keys nested (``resblocks.i.j``) or flat.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
import types
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, cast

import torch

from .audio import AudioConfig
from .errors import TacoglowError
from .hifigan import HiFiGAN, HiFiGANConfig
from .tacotron2 import Tacotron2, Tacotron2Config
from .verifier import PhoneVerifier, VerifierConfig
from .waveglow import WaveGlow, WaveGlowConfig

FORMAT = "tacoglow"
FORMAT_VERSION = 1


class CheckpointError(TacoglowError, ValueError):
    """A checkpoint could not be used; the message is one line naming the file and the fix."""


# --------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------

class _Record:
    """Inert stand-in for a pickled object: it only stores the state the pickle hands it."""

    _pickled_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


def _record_class(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (_Record,), {"_pickled_name": qualified})


# The only classes a pickled NVIDIA WaveGlow holds. They become records, never real objects.
_RECORDED = {
    name: _record_class(name)
    for name in (
        "glow.WaveGlow", "glow.WN", "glow.Invertible1x1Conv",
        "glow_old.WaveGlow", "glow_old.WN", "glow_old.Invertible1x1Conv",
        "__main__.WaveGlow", "__main__.WN", "__main__.Invertible1x1Conv",
        "torch.nn.modules.conv.Conv1d", "torch.nn.modules.conv.ConvTranspose1d",
        "torch.nn.modules.container.ModuleList", "torch.nn.utils.weight_norm.WeightNorm",
    )
}

# Plain functions and types needed to rebuild tensors and containers (the same ones that
# torch's weights-only loader accepts).
_FUNCTIONS = {
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "__builtin__.set": set,
    "__builtin__.frozenset": frozenset,
    "torch.Size": torch.Size,
    "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
}


class _Refused(pickle.UnpicklingError):
    pass


def _copyreg_reconstructor(cls: type, base: type, state: Any) -> Any:
    # Protocol 0/1 pickles of objects: only record classes can reach this (cls came from
    # find_class, which refuses everything else).
    if not (isinstance(cls, type) and issubclass(cls, _Record)):
        raise _Refused(f"copyreg._reconstructor of {cls!r}")
    return cls()


class _AllowlistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in _RECORDED:
            return _RECORDED[qualified]
        if qualified in _FUNCTIONS:
            return _FUNCTIONS[qualified]
        if qualified == "copyreg._reconstructor" or qualified == "copy_reg._reconstructor":
            return _copyreg_reconstructor
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        raise _Refused(qualified)


def _allowlist_pickle_module() -> types.ModuleType:
    """A stand-in for the ``pickle`` module, handed to ``torch.load`` for legacy WaveGlow files."""
    module = types.ModuleType("tacoglow_allowlist_pickle")
    module.__dict__.update(
        Unpickler=_AllowlistUnpickler,
        UnpicklingError=pickle.UnpicklingError,
        load=lambda f, **kwargs: _AllowlistUnpickler(f, **kwargs).load(),
        loads=lambda data, **kwargs: _AllowlistUnpickler(io.BytesIO(data), **kwargs).load(),
    )
    return module


def _describe_load_failure(path: Path, error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, (EOFError,)) or "failed finding central directory" in text or "truncated" in text:
        return f"{path}: the file is truncated or damaged ({text[:120]}); download or copy it again"
    return (f"{path}: not a readable PyTorch checkpoint ({text[:160]}); "
            "check that this is the right file and download it again")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file safely (no pickled code runs) and return its contents on CPU."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; pass the file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty; download or copy it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(_describe_load_failure(path, error)) from None
    except Exception as error:  # torch reports damage as RuntimeError, EOFError, zipfile errors...
        raise CheckpointError(_describe_load_failure(path, error)) from None
    # The weights-only reader met a class: only a pickled NVIDIA WaveGlow may go further.
    try:
        with warnings.catch_warnings():
            # The old non-zip format compares each pickled class's source with ours; records have none.
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            return torch.load(path, map_location="cpu", weights_only=False,
                              pickle_module=_allowlist_pickle_module())
    except _Refused as refused:
        raise CheckpointError(
            f"{path}: refused: the file asks to build '{refused}', which no Tacotron 2, WaveGlow or "
            "HiFi-GAN checkpoint contains; only tensors and NVIDIA's WaveGlow module records are accepted") from None
    except Exception as error:
        raise CheckpointError(_describe_load_failure(path, error)) from None


# --------------------------------------------------------------------------------------------
# Layouts → state dict + config
# --------------------------------------------------------------------------------------------

@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds, normalised: ``kind`` is "tacotron2", "waveglow" or "hifigan"."""

    path: Path
    layout: str
    kind: str
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for people (``tacoglow info``): layout, size, step, config, audio and text settings."""
        n_params = sum(v.numel() for k, v in self.state_dict.items() if v.is_floating_point() and "running_" not in k)
        dtypes = ", ".join(sorted({str(v.dtype).replace("torch.", "") for v in self.state_dict.values()}))
        lines = [f"file:       {self.path}", f"model:      {self.kind}", f"layout:     {self.layout}",
                 f"parameters: {n_params:,} in {len(self.state_dict)} tensors ({dtypes})"]
        if self.step is not None:
            lines.append(f"step:       {self.step}")
        for title, section in (("config", self.config), ("audio", self.audio.to_dict()), ("text", self.text)):
            if section or title != "text":
                lines += [f"{title}:", *(f"  {key}: {value}" for key, value in section.items())]
        return "\n".join(lines)


def _strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # DDP wraps the model as ``module.``; NVIDIA's entrypoints also strip ``module.1.``.
    if not any("module." in key for key in state_dict):
        return dict(state_dict)
    return {key.replace("module.1.", "").replace("module.", ""): value for key, value in state_dict.items()}


def _kind_of(state_dict: Mapping[str, Any]) -> str | None:
    if "embedding.weight" in state_dict and any(k.startswith("decoder.") for k in state_dict):
        return "tacotron2"
    if "upsample.weight" in state_dict and any(k.startswith("WN.") for k in state_dict):
        return "waveglow"
    return None


def _record_state_dict(record: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a recorded module tree (``_parameters``, persistent ``_buffers``, ``_modules``)."""
    out: dict[str, torch.Tensor] = {}
    state = getattr(record, "__dict__", {})
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_record_state_dict(child, f"{prefix}{name}."))
    return out


_FLOW_KEY = re.compile(r"^WN\.(\d+)\.")


def _convert_legacy_waveglow(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA/waveglow key layouts → DeepLearningExamples ``cond_layers.i`` / ``res_skip_layers.i``."""
    out: dict[str, torch.Tensor] = {}
    flows = sorted({int(m.group(1)) for k in sd if (m := _FLOW_KEY.match(k))})
    for key, value in sd.items():
        if ".cond_layer." not in key and ".res_layers." not in key and ".skip_layers." not in key:
            out[key] = value
    for k in flows:
        p = f"WN.{k}."
        n_layers = len({key.split(".")[3] for key in sd if key.startswith(p + "in_layers.")})
        # One fused Conv1d(n_mel*n_group, 2*C*L, 1) per flow; weight norm is per output
        # channel, so g/v/bias slice exactly into L convs of 2*C outputs.
        for suffix in ("bias", "weight", "weight_g", "weight_v"):
            fused = sd.get(f"{p}cond_layer.{suffix}")
            if fused is None:
                continue
            width = fused.shape[0] // n_layers
            for i in range(n_layers):
                out[f"{p}cond_layers.{i}.{suffix}"] = fused[i * width:(i + 1) * width].clone()
        # Oldest layout: separate res_layers (L-1 of C outputs) and skip_layers (L of C outputs).
        if any(key.startswith(p + "skip_layers.") for key in sd):
            for i in range(n_layers):
                for suffix in ("bias", "weight", "weight_g", "weight_v"):
                    skip = sd.get(f"{p}skip_layers.{i}.{suffix}")
                    if skip is None:
                        continue
                    res = sd.get(f"{p}res_layers.{i}.{suffix}")
                    merged = skip if res is None else torch.cat([res, skip], dim=0)
                    out[f"{p}res_skip_layers.{i}.{suffix}"] = merged
    return out


def _count(sd: Mapping[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for key in sd if (m := rx.match(key))})


def tacotron2_config_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Dimensions of a Tacotron 2 read off its tensors; the rest is the torch.hub default."""
    cfg = Tacotron2Config().to_dict()
    n_symbols, emb = sd["embedding.weight"].shape
    enc_conv = sd["encoder.convolutions.0.0.conv.weight"]
    post0 = sd["postnet.convolutions.0.0.conv.weight"]
    n_mel = post0.shape[1]
    proj = sd["decoder.linear_projection.linear_layer.weight"]
    location = sd["decoder.attention_layer.location_layer.location_conv.conv.weight"]
    cfg.update(
        n_symbols=n_symbols, symbols_embedding_dim=emb,
        encoder_n_convolutions=_count(sd, r"^encoder\.convolutions\.(\d+)\.0\.conv\.weight$"),
        encoder_embedding_dim=enc_conv.shape[0], encoder_kernel_size=enc_conv.shape[2],
        attention_rnn_dim=sd["decoder.attention_rnn.weight_hh"].shape[1],
        decoder_rnn_dim=sd["decoder.decoder_rnn.weight_hh"].shape[1],
        attention_dim=sd["decoder.attention_layer.query_layer.linear_layer.weight"].shape[0],
        attention_location_n_filters=location.shape[0],
        attention_location_kernel_size=location.shape[2],
        prenet_dim=sd["decoder.prenet.layers.0.linear_layer.weight"].shape[0],
        n_mel_channels=n_mel, n_frames_per_step=proj.shape[0] // n_mel,
        postnet_embedding_dim=post0.shape[0], postnet_kernel_size=post0.shape[2],
        postnet_n_convolutions=_count(sd, r"^postnet\.convolutions\.(\d+)\.0\.conv\.weight$"),
    )
    return cfg


def waveglow_config_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A WaveGlow config (NVIDIA's nested form) read off its tensors."""
    n_flows = _count(sd, r"^WN\.(\d+)\.")
    start = sd["WN.0.start.weight_v"] if "WN.0.start.weight_v" in sd else sd["WN.0.start.weight"]
    in0 = sd["WN.0.in_layers.0.weight_v"] if "WN.0.in_layers.0.weight_v" in sd else sd["WN.0.in_layers.0.weight"]
    sizes = [sd[f"convinv.{k}.conv.weight"].shape[0] for k in range(n_flows)]
    n_group = sizes[0]
    changes = [k for k in range(1, n_flows) if sizes[k] != sizes[k - 1]]
    n_early_every = changes[0] if changes else WaveGlowConfig().n_early_every
    n_early_size = sizes[changes[0] - 1] - sizes[changes[0]] if changes else WaveGlowConfig().n_early_size
    return {
        "n_mel_channels": sd["upsample.weight"].shape[0], "n_flows": n_flows, "n_group": n_group,
        "n_early_every": n_early_every, "n_early_size": n_early_size,
        "WN_config": {"n_layers": _count(sd, r"^WN\.0\.in_layers\.(\d+)\."),
                      "kernel_size": in0.shape[2], "n_channels": start.shape[0]},
    }


def detect_layout(obj: Any) -> str:
    if isinstance(obj, dict):
        if obj.get("format") == FORMAT:
            return "tacoglow"
        if isinstance(obj.get("model"), _Record):
            return "waveglow-legacy"
        if isinstance(obj.get("generator"), Mapping):
            return "ngc-hifigan" if isinstance(obj.get("config"), Mapping) else "jik876"
        if "mpd" in obj and "msd" in obj:
            return "hifigan-discriminators"
        if isinstance(obj.get("state_dict"), Mapping):
            return "ngc" if isinstance(obj.get("config"), Mapping) else "tacotron2-standalone"
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return "state-dict"
    return "unknown"


# --------------------------------------------------------------------------------------------
# HiFi-GAN layouts
# --------------------------------------------------------------------------------------------

# The reference's names of the audio settings -> AudioConfig's: jik876's config.json, NVIDIA's train_setup.
_JIK876_AUDIO = {"sampling_rate": "sampling_rate", "n_fft": "filter_length", "hop_size": "hop_length",
                 "win_size": "win_length", "num_mels": "n_mel_channels", "fmin": "mel_fmin", "fmax": "mel_fmax"}
_NGC_AUDIO = {"sampling_rate": "sampling_rate", "filter_length": "filter_length", "hop_length": "hop_length",
              "win_length": "win_length", "num_mels": "n_mel_channels", "mel_fmin": "mel_fmin",
              "mel_fmax": "mel_fmax", "max_wav_value": "max_wav_value"}
_NESTED_RESBLOCK = re.compile(r"^resblocks\.(\d+)\.(\d+)\.(.+)$")
_JIK876_NAME = re.compile(r"^g_(\d+)$")  # jik876 names its generator files g_<step, 8 digits>


def _holds_hifigan(obj: Any, layout: str) -> bool:
    if layout in ("jik876", "ngc-hifigan", "hifigan-discriminators"):
        return True
    if layout == "tacoglow":
        return obj.get("model") == "hifigan"
    return layout == "state-dict" and "conv_pre.bias" in _strip_prefixes(obj)


def _flat_resblock_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NVIDIA's nested ``resblocks.i.j.`` keys -> jik876's flat ``resblocks.{i*K+j}.`` (K, the kernels per
    stage, read off the keys); the 4-D weights NVIDIA's loader also accepts, (..., 1), lose their last axis."""
    nested = {key: m for key in sd if (m := _NESTED_RESBLOCK.match(key))}
    kernels = 1 + max((int(m.group(2)) for m in nested.values()), default=0)
    out = {}
    for key, value in sd.items():
        if key in nested:
            stage, j, rest = nested[key].groups()
            key = f"resblocks.{int(stage) * kernels + int(j)}.{rest}"
        out[key] = value.squeeze(-1) if value.dim() == 4 and value.size(-1) == 1 else value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable JSON config ({str(error)[:120]}); fix or replace it") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(d).__name__}, not a config object; fix or replace it")
    return d


def _hifigan_config(given: Any, source: Path) -> dict[str, Any]:
    """A generator config as tacoglow stores it, from a HiFiGANConfig or a dict (tacoglow's keys when it has
    ``n_mel_channels``, else the reference's)."""
    if isinstance(given, HiFiGANConfig):
        return given.to_dict()
    if not isinstance(given, Mapping):
        raise CheckpointError(f"{source}: its HiFi-GAN config is a {type(given).__name__}, not a dict")
    try:
        config = (HiFiGANConfig.from_dict(dict(given)) if "n_mel_channels" in given
                  else HiFiGANConfig.from_reference(dict(given)))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: its config cannot build a HiFi-GAN: {error}") from None
    return config.to_dict()


def _reference_audio(path: Path, settings: Mapping[str, Any], names: Mapping[str, str] | None = None) -> AudioConfig:
    """AudioConfig from settings named as `names` maps them (the reference's -> ours; None: ours already)."""
    if names is not None:
        settings = {ours: settings[theirs] for theirs, ours in names.items() if theirs in settings}
    try:
        return AudioConfig.from_dict(dict(settings))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its audio settings are unusable: {error}; fix them or re-save the checkpoint"
                              ) from None


def _inspect_hifigan(path: Path, obj: Any, layout: str, config: Any) -> LoadedCheckpoint:
    if layout == "hifigan-discriminators":
        raise CheckpointError(
            f"{path}: holds HiFi-GAN's discriminators (mpd, msd), not its generator; pass the generator file "
            "(jik876: g_NNNNNNNN, NVIDIA: hifigan_gen_checkpoint_N.pt)")
    audio, step, extra, reference, source = AudioConfig(), None, {}, None, path
    model_config: dict[str, Any] = {}
    if layout == "tacoglow":
        sd, model_config = dict(obj["state_dict"]), dict(obj.get("config") or {})
        audio = _reference_audio(path, obj.get("audio") or {})
        step = obj.get("step")
        extra = {k: v for k, v in obj.items() if k not in ("state_dict", "config", "audio", "text", "step")}
    elif layout == "ngc-hifigan":
        sd, reference = _strip_prefixes(obj["generator"]), obj["config"]
        train_setup = obj.get("train_setup") if isinstance(obj.get("train_setup"), Mapping) else {}
        audio, extra = _reference_audio(path, train_setup, _NGC_AUDIO), {"train_setup": dict(train_setup)}
        train_state = obj.get("train_state")
        step = train_state.get("iters_all") if isinstance(train_state, Mapping) else None
    else:  # jik876's file, or a bare state dict: the config is the config.json beside it
        sd = _strip_prefixes(obj["generator"] if layout == "jik876" else obj)
        beside = path.parent / "config.json"
        if config is None and beside.is_file():
            reference, source = _read_json(beside), beside
            audio = _reference_audio(beside, reference, _JIK876_AUDIO)
        step = int(m.group(1)) if (m := _JIK876_NAME.match(path.name)) else None
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: key '{bad[0]}' of the state dict is not a tensor; the file is damaged")
    if isinstance(config, (str, os.PathLike)):  # a config.json: its audio settings too
        source, config = Path(config), _read_json(Path(config))
        audio = _reference_audio(source, config, _JIK876_AUDIO)
    if config is not None:
        reference = config
    if reference is not None:
        model_config = _hifigan_config(reference, source)
    return LoadedCheckpoint(path=path, layout=layout, kind="hifigan", state_dict=_flat_resblock_keys(sd),
                            config=model_config, audio=audio, step=step, extra=extra)


def _hifigan_model(loaded: LoadedCheckpoint) -> HiFiGAN:
    model = HiFiGAN(HiFiGANConfig.from_dict(loaded.config))
    # A file saved after remove_weight_norm() holds plain `weight`s: fold the model too, so the keys match.
    if not any(key.endswith(".weight_g") for key in loaded.state_dict):
        model.remove_weight_norm()
    return model


def inspect_checkpoint(path: str | os.PathLike, config: HiFiGANConfig | Mapping | str | os.PathLike | None = None
                       ) -> LoadedCheckpoint:
    """Read any supported checkpoint into a :class:`LoadedCheckpoint` (no model is built).

    ``config`` (HiFi-GAN files only) is used instead of the file's own generator config or the ``config.json``
    beside it: a :class:`HiFiGANConfig`, a dict (tacoglow's or the reference's keys) or a JSON file like
    jik876's ``config.json`` (whose audio settings are read too).
    """
    path = Path(path)
    obj = read_checkpoint(path)
    layout = detect_layout(obj)
    if _holds_hifigan(obj, layout):
        return _inspect_hifigan(path, obj, layout, config)
    audio, text, step, extra = AudioConfig(), {}, None, {}
    if layout == "tacoglow":
        sd, config = dict(obj["state_dict"]), dict(obj.get("config") or {})
        try:
            audio = AudioConfig.from_dict(obj["audio"]) if obj.get("audio") else AudioConfig()
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: its audio settings are unusable: {error}; re-save the checkpoint") from None
        text, step = dict(obj.get("text") or {}), obj.get("step")
        extra = {k: v for k, v in obj.items() if k not in ("state_dict", "config", "audio", "text", "step")}
    elif layout == "waveglow-legacy":
        sd, config = _record_state_dict(obj["model"]), {}
        step = obj.get("iteration")
    elif layout in ("ngc", "tacotron2-standalone"):
        sd = _strip_prefixes(obj["state_dict"])
        config = dict(obj.get("config") or {})
        step = obj.get("iteration", obj.get("epoch"))
    elif layout == "state-dict":
        sd, config = _strip_prefixes(obj), {}
    else:
        what = type(obj).__name__ if not isinstance(obj, dict) else f"a dict with keys {sorted(obj)[:6]}"
        raise CheckpointError(
            f"{path}: holds {what}, not a Tacotron 2, WaveGlow or HiFi-GAN checkpoint; pass a file saved by "
            "tacoglow, NVIDIA or jik876/hifi-gan")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: key '{bad[0]}' of the state dict is not a tensor; the file is damaged")
    kind = obj.get("model") if layout == "tacoglow" else _kind_of(sd)
    if kind == "verifier" and config:  # tacoglow's own model: no other layout, no shapes to infer
        return LoadedCheckpoint(path=path, layout=layout, kind=kind, state_dict=sd, config=config, audio=audio,
                                text=text, step=step, extra=extra)
    if kind not in ("tacotron2", "waveglow"):
        raise CheckpointError(
            f"{path}: its {len(sd)} tensors are neither a Tacotron 2 nor a WaveGlow (no 'embedding.weight' "
            "or 'upsample.weight' key); pass a Tacotron 2 or WaveGlow checkpoint")
    if kind == "waveglow":
        sd = _convert_legacy_waveglow(sd)
    if not config:
        try:
            config = tacotron2_config_from_shapes(sd) if kind == "tacotron2" else waveglow_config_from_shapes(sd)
        except (KeyError, IndexError) as error:
            raise CheckpointError(
                f"{path}: cannot tell the {kind} dimensions: key {error} is missing; the file is incomplete") from None
    return LoadedCheckpoint(path=path, layout=layout, kind=kind, state_dict=sd, config=config,
                            audio=audio, text=text, step=step, extra=extra)


# --------------------------------------------------------------------------------------------
# Building models
# --------------------------------------------------------------------------------------------

_NAMES = {"tacotron2": "Tacotron 2", "waveglow": "WaveGlow", "hifigan": "HiFi-GAN", "verifier": "phone verifier"}
_LOADERS = {"tacotron2": "--tacotron2 / load_tacotron2", "waveglow": "--waveglow / load_waveglow",
            "hifigan": "load_hifigan", "verifier": "load_verifier (or as verifier.pt beside a voice's tacotron2.pt)"}


def _check_state_dict(path: Path, model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise CheckpointError(
            f"{path}: key '{missing[0]}' is missing ({len(missing)} missing in all); the file does not match "
            "this model's layout")
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected key '{unexpected[0]}' ({len(unexpected)} in all); the file does not match "
            "this model's layout")
    for key, tensor in expected.items():
        got = sd[key]
        if tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: key '{key}' has shape {tuple(got.shape)} in the file but the model built from its "
                f"config expects {tuple(tensor.shape)}; the config and weights disagree, fix or re-save the checkpoint")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise CheckpointError(f"{path}: key '{key}' holds NaN or infinite values; the checkpoint is damaged")


def build_model(loaded: LoadedCheckpoint, want: str) -> torch.nn.Module:
    """The model of an inspected checkpoint, weights loaded and checked, in eval mode; ``want`` is the kind the
    caller needs ("tacotron2" or "waveglow"): another kind is refused naming the loader to use."""
    path = loaded.path
    if loaded.kind != want:
        raise CheckpointError(
            f"{path}: holds a {_NAMES[loaded.kind]} checkpoint, not a {_NAMES[want]} one; "
            f"pass it through {_LOADERS[loaded.kind]}")
    if want == "hifigan" and not loaded.config:
        raise CheckpointError(f"{path}: carries no HiFi-GAN config and there is no config.json beside it; put the "
                              "config.json it was trained with in the same folder, or pass config=")
    try:
        if want == "tacotron2":
            model: torch.nn.Module = Tacotron2(Tacotron2Config.from_dict(loaded.config))
        elif want == "verifier":
            model = PhoneVerifier(VerifierConfig.from_dict(loaded.config))
        elif want == "hifigan":
            model = _hifigan_model(loaded)
        else:
            config = loaded.config
            cfg = WaveGlowConfig.from_dict(config) if "WN_config" not in config else WaveGlowConfig.from_nvidia(config)
            model = WaveGlow(cfg)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its config cannot build a {_NAMES[want]}: {error}") from None
    _check_state_dict(path, model, loaded.state_dict)
    model.load_state_dict(loaded.state_dict, strict=True)
    return model.eval()


def load_tacotron2(path: str | os.PathLike, device: str | torch.device = "cpu") -> Tacotron2:
    """Build a :class:`Tacotron2` from any supported checkpoint layout, in eval mode."""
    return cast(Tacotron2, build_model(inspect_checkpoint(path), "tacotron2")).to(device)


def load_waveglow(path: str | os.PathLike, device: str | torch.device = "cpu") -> WaveGlow:
    """Build a :class:`WaveGlow` from any supported checkpoint layout, in eval mode."""
    return cast(WaveGlow, build_model(inspect_checkpoint(path), "waveglow")).to(device)


def load_hifigan(path: str | os.PathLike, device: str | torch.device = "cpu",
                 config: HiFiGANConfig | Mapping | str | os.PathLike | None = None) -> HiFiGAN:
    """Build a :class:`HiFiGAN` generator from jik876's, NVIDIA's or tacoglow's layout for inference: in eval
    mode, weight norm folded and parameters frozen (so that calling it runs its inference kernels even outside
    ``torch.no_grad``). ``config`` replaces the file's own generator config (or the ``config.json`` beside it).
    """
    model = cast(HiFiGAN, build_model(inspect_checkpoint(path, config), "hifigan")).remove_weight_norm()
    return model.requires_grad_(False).to(device)


def load_verifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> PhoneVerifier:
    """Build a :class:`~tacoglow.verifier.PhoneVerifier` from a tacoglow checkpoint, in eval mode."""
    return cast(PhoneVerifier, build_model(inspect_checkpoint(path), "verifier")).to(device)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, LoadedCheckpoint]:
    """Build whichever model the file holds; returns it with the checkpoint's metadata."""
    loaded = inspect_checkpoint(path)
    return build_model(loaded, loaded.kind).to(device), loaded


# --------------------------------------------------------------------------------------------
# Writing tacoglow's own layout
# --------------------------------------------------------------------------------------------

def model_kind(model: torch.nn.Module) -> str:
    if isinstance(model, Tacotron2):
        return "tacotron2"
    if isinstance(model, WaveGlow):
        return "waveglow"
    if isinstance(model, HiFiGAN):
        return "hifigan"
    if isinstance(model, PhoneVerifier):
        return "verifier"
    raise TypeError(f"cannot save a {type(model).__name__}: expected Tacotron2, WaveGlow, HiFiGAN or PhoneVerifier")


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_dict(model: torch.nn.Module, audio: AudioConfig | None = None, text: Mapping[str, Any] | None = None,
                    step: int | None = None, dtype: torch.dtype | None = None, **extra: Any) -> dict[str, Any]:
    """A self-describing checkpoint: model type, config, audio settings, text front-end, step."""
    kind = model_kind(model)
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model": kind,
        "config": cast("Tacotron2 | WaveGlow", model).config.to_dict(), "audio": (audio or AudioConfig()).to_dict(),
        "text": dict(text or {}), "step": step, "state_dict": sd, **extra,
    }


def save_model(model: torch.nn.Module, path: str | os.PathLike, audio: AudioConfig | None = None,
               text: Mapping[str, Any] | None = None, step: int | None = None, dtype: torch.dtype | None = None,
               **extra: Any) -> None:
    """Write ``model`` in tacoglow's layout (loads with ``weights_only=True``), atomically."""
    atomic_save(checkpoint_dict(model, audio=audio, text=text, step=step, dtype=dtype, **extra), path)
