"""What a training run is set to do: `TrainConfig`, the named recipes (`PRESETS`), and the learning-rate and
guided-attention schedules computed from them."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..config import ConfigError, DictConfig

__all__ = ["MODELS", "RUN_FIELDS", "TrainConfig", "PRESETS", "load_train_config", "learning_rate_at",
           "guided_attention_weight_at"]

MODELS = ("tacotron2", "waveglow", "hifigan", "verifier")


@dataclass
class TrainConfig(DictConfig):
    """Everything a run needs besides its data. Defaults are NVIDIA's Tacotron 2 recipe
    (``scripts/train_tacotron2.sh``); ``PRESETS`` holds the named recipes. Saved as ``run_dir/config.json``
    and inside every checkpoint."""

    model: str = "tacotron2"  # "tacotron2", "waveglow", "hifigan" or "verifier"
    # Tacotron2Config / WaveGlowConfig / HiFiGANConfig / VerifierConfig fields that differ from the model's defaults.
    model_config: dict[str, Any] = field(default_factory=dict)

    # Optimiser: "adam" as the reference, or "adamw" (HiFi-GAN's; torch's default decoupled decay 0.01 unless
    # weight_decay says otherwise).
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping (the norm is still checked)
    # Learning rate = learning_rate * anneal_factor ** p, p = how many of anneal_at have been reached,
    # counted in anneal_unit ("epoch" as the reference, or "step"). A factor of 0.3 follows NVIDIA's
    # recipes instead: x1, x0.3, x0.1, x0.03, ... (see learning_rate_at).
    anneal_at: list[int] = field(default_factory=lambda: [500, 1000, 1500])
    anneal_unit: str = "epoch"
    anneal_factor: float = 0.1
    lr_decay: float = 1.0  # and x lr_decay per anneal_unit on top (HiFi-GAN: 0.999 per epoch, ExponentialLR)

    # Batches
    batch_size: int = 48  # per process
    bucket_batches: int = 32  # length bucketing: batches drawn from pools of this many batches' items
    max_frames: int | None = None  # Tacotron 2: leave out training clips longer than this (mel frames)
    segment_length: int = 16000  # WaveGlow: audio samples per training segment
    seed: int = 1234
    # Tacotron 2 input: each word the pronunciation lexicon knows is read as ARPAbet with this probability,
    # drawn anew per word and step (NVIDIA's Flowtron / RAD-TTS "p_arpabet"); 0 keeps the dataset's
    # character ids. A voice trained with p > 0 reads every known word as phones at synthesis.
    p_arpabet: float = 0.0
    # Tacotron 2 input: ", " before every label (tacoglow.text.symbols.LEADING_PAUSE_IDS), so that the silence
    # every recording starts with has a symbol of its own instead of being read from the first phone; the
    # checkpoint records it (text.leading_pause) and synthesis reads with it.
    leading_pause: bool = False

    # Tacotron 2 loss: mel MSE + postnet MSE + gate BCE (+ guided attention).
    masked_loss: bool = False  # False: padding counts, as the reference; True: only real frames/steps
    gate_pos_weight: float = 1.0  # BCE weight of "stop" targets (one per item when masked_loss)
    # Guided attention (Tachibana et al., 2017): penalises attention far from the diagonal n/N = t/T.
    guided_attention_weight: float = 0.0
    guided_attention_sigma: float = 0.2
    guided_attention_half_life: int | None = None  # steps for the weight to halve; None: constant
    guided_attention_stop: int | None = None  # step from which the term is off
    # With the corpus's phone timings (phone_timings.jsonl, tacoglow.train.alignment), the guided-attention term
    # pulls each decoder step towards the symbols of the phone it predicts instead of the diagonal band; clips
    # without a usable timing keep the diagonal. Width: Gaussian fall-off, in symbols, outside the target.
    attention_timings: bool = False
    attention_timings_sigma: float = 1.0
    # Parallel scheduled sampling (Duckworth et al., 2019): this share of the decoder's input steps (r frames
    # each) are the model's own teacher-forced predictions (a first pass without gradients) instead of the
    # recorded frames, so that training sees inputs like those of free-running synthesis. 0: the reference.
    scheduled_sampling: float = 0.0
    # Free-running steps: a second pass beside the teacher-forced one, in which this share of the decoder's steps
    # read its own output of the step before (detached) instead of the recorded frames, so that runs of such
    # steps drift as at synthesis, which a first pass's one-step predictions (scheduled_sampling) cannot show;
    # its loss is added to the teacher-forced one. 0: off (the reference).
    free_running: float = 0.0
    # Attention forcing (Dou et al., 2020), for that second pass: its steps read the teacher-forced pass's
    # attention weights instead of their own, so that its frames keep the recorded frames' timing and the loss
    # compares like with like; a cross-entropy term (weight: this value) keeps the attention's own weights on
    # that alignment. 0: off.
    attention_forcing: float = 0.0
    # WaveGlow loss
    waveglow_sigma: float = 1.0
    # HiFi-GAN: discriminator widths divided by this (1: the paper's); the generator's input mels, None for the
    # dataset's own, or a folder of ground-truth-aligned mels from `prepare_gta` (fine-tuning, as jik876's
    # --fine_tuning), read at the same positions as the audio. The phone verifier trains on those beside the
    # dataset's own.
    discriminator_divisor: int = 1
    input_mels: str | None = None

    # Precision: "none", "fp16" (CUDA, with a GradScaler) or "bf16" (autocast).
    amp: str = "none"

    # Length of the run and bookkeeping (may change when a run is resumed).
    max_steps: int | None = None
    epochs: int | None = 1501
    log_every: int = 10
    val_every: int = 1000
    val_items: int | None = 64  # validation clips used (None: all)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row

    def __post_init__(self) -> None:
        self.adam_betas = cast(tuple[float, float], tuple(self.adam_betas))  # a list when read from JSON
        self.anneal_at = list(self.anneal_at)
        self.model_config = dict(self.model_config)

        def fail(message: str) -> None:
            raise ConfigError(f"invalid TrainConfig: {message}")

        if self.model not in MODELS:
            fail(f"model must be one of {MODELS}, got {self.model!r}")
        if self.anneal_unit not in ("epoch", "step"):
            fail(f"anneal_unit must be 'epoch' or 'step', got {self.anneal_unit!r}")
        if self.optimizer not in ("adam", "adamw"):
            fail(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0 < self.lr_decay <= 1:
            fail(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.amp not in ("none", "fp16", "bf16"):
            fail(f"amp must be 'none', 'fp16' or 'bf16', got {self.amp!r}")
        if self.max_steps is None and self.epochs is None:
            fail("set max_steps or epochs (or both): the run needs an end")
        for name in ("batch_size", "bucket_batches", "log_every", "val_every", "checkpoint_every",
                     "keep_checkpoints", "max_nonfinite", "segment_length",
                     "discriminator_divisor"):
            if getattr(self, name) < 1:
                fail(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            fail(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.p_arpabet <= 1.0:
            fail(f"p_arpabet must be in [0, 1], got {self.p_arpabet}")
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            fail(f"scheduled_sampling must be in [0, 1], got {self.scheduled_sampling}")
        if not 0.0 <= self.free_running <= 1.0:
            fail(f"free_running must be in [0, 1], got {self.free_running}")
        if self.attention_forcing < 0:
            fail(f"attention_forcing must be >= 0 (the weight of its attention term), got {self.attention_forcing}")
        if self.attention_forcing > 0 and self.free_running <= 0:
            fail("attention_forcing forces the attention of the free-running pass, and free_running is 0: set "
                 "free_running > 0 (e.g. 1.0: every step of that pass reads the decoder's own output)")
        if self.attention_timings and self.guided_attention_weight <= 0:
            fail("attention_timings guides attention through the guided-attention term, whose weight is "
                 f"{self.guided_attention_weight}: set guided_attention_weight > 0 (e.g. 2.0)")
        if self.attention_timings_sigma <= 0:
            fail(f"attention_timings_sigma must be positive, got {self.attention_timings_sigma}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d


# Fields that describe how long and how verbosely a run goes, and its learning-rate schedule (a run that is
# extended past its plan needs its annealing points moved); they may differ when a run is resumed. The
# learning rate is recomputed from the schedule at every step, so a changed schedule applies at once.
RUN_FIELDS = frozenset({"max_steps", "epochs", "log_every", "val_every", "val_items", "checkpoint_every",
                        "keep_checkpoints", "max_nonfinite", "amp",
                        "learning_rate", "anneal_at", "anneal_unit", "anneal_factor", "lr_decay"})

# Tacotron 2 "small": NVIDIA's layers at half width (the "reduced" size, 7.4 M parameters) predicting
# r = 3 frames per decoder step, with guided attention so that alignment comes early. Measured on the
# 2-core EPYC this was sized on (idle), batch 32 of 3 s clips (258 frames): 1.3 s/step with 2 threads,
# 1.9 s/step with 1 (r = 2 costs 1.9 / 2.7 s), so 5,000 steps take about 2 hours.
_TACOTRON2_SMALL = dict(
    symbols_embedding_dim=256, encoder_embedding_dim=256, attention_rnn_dim=512, attention_dim=128,
    decoder_rnn_dim=512, prenet_dim=128, postnet_embedding_dim=256, n_frames_per_step=3)
# WaveGlow "small": 8 flows of a 4-layer, 64-channel WN (10.2 M parameters, 6.5 M of them the fixed-size
# mel upsampler); RTF ~1 at inference on 2 cores. Batch 8 x 8000 samples: 2.0 s/step with 1 thread.
_WAVEGLOW_SMALL = dict(n_flows=8, n_layers=4, n_channels=64)
# HiFi-GAN: the paper's recipe (jik876's config_v1.json: AdamW 2e-4, betas (0.8, 0.99), lr x0.999 per epoch,
# batch 16 of 8192 samples, no clipping); "small" trains V2 (0.9 M parameters) against discriminators of a
# quarter width, batch 4, for CPUs.
_HIFIGAN: dict[str, Any] = dict(model="hifigan", optimizer="adamw", learning_rate=2e-4, adam_betas=(0.8, 0.99),
                                weight_decay=0.01, grad_clip=None, anneal_at=[], lr_decay=0.999, segment_length=8192)

# The phone verifier (tacoglow.verifier, 1.3 M parameters): AdamW 1e-3, batch 24 clips; about 1 s per step on
# one CPU thread. On the default voice's corpus its phone error rate fell from 19% (step 250) to 7.8% (1,000).
_VERIFIER = TrainConfig(model="verifier", optimizer="adamw", learning_rate=1e-3, weight_decay=0.01, grad_clip=5.0,
                        anneal_at=[], batch_size=24, max_steps=2000, epochs=None, log_every=10, val_every=250,
                        val_items=48, checkpoint_every=250)

PRESETS: dict[str, dict[str, TrainConfig]] = {
    "tacotron2": {
        # scripts/train_tacotron2.sh: Adam 1e-3, wd 1e-6, clip 1.0, batch 48, lr x0.1 at epochs 500/1000/1500.
        "nvidia": TrainConfig(),
        "small": TrainConfig(
            model_config=_TACOTRON2_SMALL, batch_size=32, anneal_at=[5000, 14000], anneal_unit="step",
            anneal_factor=0.3, max_frames=1000, masked_loss=True, gate_pos_weight=5.0,
            guided_attention_weight=2.0, guided_attention_half_life=5000, max_steps=20_000, epochs=None,
            log_every=10, val_every=250, val_items=32, checkpoint_every=250),
    },
    "waveglow": {
        # scripts/train_waveglow.sh: Adam 1e-4, no weight decay, no clipping, batch 4 x 8000 samples.
        "nvidia": TrainConfig(model="waveglow", learning_rate=1e-4, weight_decay=0.0, grad_clip=None,
                              anneal_at=[], batch_size=4, segment_length=8000, epochs=1501,
                              val_items=16),
        "small": TrainConfig(model="waveglow", model_config=_WAVEGLOW_SMALL, learning_rate=1e-4,
                             weight_decay=0.0, grad_clip=None, anneal_at=[], batch_size=8,
                             segment_length=8000, max_steps=50_000, epochs=None, log_every=10,
                             val_every=500, val_items=16, checkpoint_every=500),
    },
    "hifigan": {
        "v1": TrainConfig(**_HIFIGAN, batch_size=16, epochs=3100, val_every=1000, val_items=16,
                          checkpoint_every=5000),
        "small": TrainConfig(**_HIFIGAN, model_config={"upsample_initial_channel": 128}, discriminator_divisor=4,
                             batch_size=4, max_steps=100_000, epochs=None, val_every=1000, val_items=8,
                             checkpoint_every=1000),
    },
    "verifier": {"small": _VERIFIER},
}


def load_train_config(config: TrainConfig | str | os.PathLike | None, model: str) -> TrainConfig:
    """A TrainConfig from an object, a preset name (``PRESETS[model]``) or a JSON file of its fields
    (missing fields take the TrainConfig defaults, i.e. NVIDIA's Tacotron 2 recipe)."""
    if model not in MODELS:
        raise ConfigError(f"model must be one of {MODELS}, got {model!r}")
    if config is None:
        config = "small"
    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, str) and config in PRESETS[model]:
        cfg = PRESETS[model][config]
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"--config {config}: neither a preset ({', '.join(PRESETS[model])}) nor a JSON file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            cfg = TrainConfig.from_dict({"model": model, **d})
        except (json.JSONDecodeError, ValueError, TypeError) as error:
            raise ConfigError(f"{path}: not a usable training config: {error}") from None
    if cfg.model != model:
        raise ConfigError(f"the config is for {cfg.model}, not {model}")
    return dataclasses.replace(cfg)  # a copy: presets stay untouched


def learning_rate_at(cfg: TrainConfig, step: int, epoch: int) -> float:
    """NVIDIA's ``adjust_learning_rate``: lr0 * factor^p after p annealing points; its factor-0.3 recipes
    alternate x0.3 and x0.1/0.3 (1, 0.3, 0.1, 0.03, ...). Times lr_decay^(epoch or step)."""
    now = epoch if cfg.anneal_unit == "epoch" else step
    p = sum(now >= point for point in cfg.anneal_at)
    decay = cfg.lr_decay ** now  # exponential decay: a function of the counters, so a resumed run has it too
    if cfg.anneal_factor == 0.3:
        return cfg.learning_rate * decay * 0.1 ** (p // 2) * (0.3 if p % 2 else 1.0)
    return cfg.learning_rate * decay * cfg.anneal_factor ** p


def guided_attention_weight_at(cfg: TrainConfig, step: int) -> float:
    """The guided-attention term's weight at ``step``: constant or halving every ``half_life`` steps, 0 from
    ``guided_attention_stop`` on."""
    if cfg.guided_attention_weight <= 0 or (cfg.guided_attention_stop is not None
                                            and step >= cfg.guided_attention_stop):
        return 0.0
    if cfg.guided_attention_half_life is None:
        return cfg.guided_attention_weight
    return cfg.guided_attention_weight * 0.5 ** (step / cfg.guided_attention_half_life)
