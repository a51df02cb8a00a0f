"""Training Tacotron 2, WaveGlow, HiFi-GAN and the phone verifier on a prepared dataset: one loop per model.

    train_tacotron2(data_dir, run_dir, "small")    # text -> mel, teacher forcing
    train_waveglow(data_dir, run_dir, "small")     # mel -> audio, random segments
    train_hifigan(data_dir, run_dir, "small")      # mel -> audio, random segments, against discriminators
    train_verifier(data_dir, run_dir)              # mel -> phones (CTC): chooses among decodings at synthesis
    prepare_gta("t2.pt", data_dir)                 # teacher-forced mels for fine-tuning a vocoder on them

``data_dir`` is what ``tacoglow prepare`` writes (dataset.json, train.jsonl, val.jsonl, wavs/, mels/).
``run_dir`` holds everything a run produces, so a run describes itself::

    run_dir/config.json                 the TrainConfig (on resume: only run-length and schedule fields may change)
    run_dir/log.jsonl                   one JSON object per logged step / validation
    run_dir/checkpoints/step_XXXXXXX.pt model checkpoint (loads in load_tacotron2 / Synthesizer) + training state
    run_dir/plots/                      Tacotron 2 validation: alignment, mel, gate and inference PNGs, a WAV
    run_dir/tensorboard/                the same scalars, when TensorBoard is installed

A run resumes from its newest checkpoint (model, optimizer, grad scaler, step, epoch, position in the
epoch, RNG states), so a resumed run continues the same loss curve. SIGINT/SIGTERM finish the current
step, save a checkpoint and return. Steps with a non-finite loss are skipped and counted; ``max_nonfinite``
of them in a row stop the run. Under ``torchrun`` the batches are sharded over processes (gloo on CPU,
nccl on CUDA) and only rank 0 writes files.

Recipes (``--config nvidia|small|FILE``; HiFi-GAN: ``v1|small|FILE``): "nvidia" is NVIDIA's
DeepLearningExamples recipe, "v1" the HiFi-GAN paper's; "small" is sized for training on a few CPU cores (see
``PRESETS``).

Several processes (``--run`` is spelled ``--run-dir`` here: torchrun would take ``--run`` for its own
``--run-path``)::

    torchrun --standalone --nproc_per_node 2 -m tacoglow train tacotron2 --data DATA --run-dir RUN

Training checkpoints carry the optimizer state (about twice the model's size); ``export_checkpoint`` writes
the model alone for shipping.

Modules: ``config`` (TrainConfig, PRESETS, schedules), ``run`` (the run folder, process group, logs, one
optimisation step), ``checkpoints`` (save, resume, warm start, export), ``tacotron2``, ``waveglow``,
``hifigan`` and ``verifier`` (the loops), ``gta`` (ground-truth-aligned mels), ``losses`` (the Tacotron 2 loss and
guided attention), ``alignment`` (attention targets from phone timings). HiFi-GAN's discriminators and losses
sit beside the model, in :mod:`tacoglow.hifigan`.
"""
from .checkpoints import ResumePoint, export_checkpoint, latest_checkpoint, resume_point
from .config import MODELS, PRESETS, TrainConfig, learning_rate_at, load_train_config
from .gta import prepare_gta
from .hifigan import train_hifigan, validate_hifigan
from .losses import attention_scores, guided_attention_loss
from .run import StepResult, TrainingError, backward_and_step
from .tacotron2 import tacotron2_loss, train_tacotron2, validate_tacotron2
from .verifier import train_verifier, validate_verifier
from .waveglow import train_waveglow, validate_waveglow

__all__ = [
    "TrainConfig", "PRESETS", "MODELS", "load_train_config", "train_tacotron2", "train_waveglow", "TrainingError",
    "tacotron2_loss", "guided_attention_loss", "attention_scores", "learning_rate_at",
    "backward_and_step", "StepResult", "validate_tacotron2", "validate_waveglow", "latest_checkpoint",
    "resume_point", "ResumePoint", "export_checkpoint", "train_hifigan", "validate_hifigan", "prepare_gta",
    "train_verifier", "validate_verifier",
]
