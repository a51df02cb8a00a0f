"""Training throughput of the Tacotron 2 and WaveGlow recipes on this machine, with synthetic batches.

    python benchmarks/train_throughput.py                          # small recipes, 1 thread
    python benchmarks/train_throughput.py --configs small nvidia --threads 2
    python benchmarks/train_throughput.py --models tacotron2 --threads 2 --amp none bf16

Each row times full training steps (forward, loss, backward, clipping, Adam) exactly as ``tacoglow.train``
takes them, after ``--warmup`` untimed steps, and reports the median. Tacotron 2 throughput is mel frames
per second (NVIDIA's "items/s"), WaveGlow's audio samples per second. Batches are synthetic: random symbol
ids (15 per second of speech) and log-mel-like frames for Tacotron 2, noise segments for WaveGlow.
``--amp bf16`` runs the forward pass under bfloat16 autocast, as ``tacoglow train --amp bf16`` does.

Timings are only meaningful on an otherwise idle machine: the load average is printed with the table.
The "nvidia" recipes are the reference sizes (28 M / 268 M parameters): on a 2-core CPU a single step takes
from tens of seconds (Tacotron 2, batch 48) to minutes (WaveGlow, 512 channels); --batch-size shortens them.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

from tacoglow import data as D
from tacoglow import train as T
from tacoglow.audio import AudioConfig, mel_spectrogram
from tacoglow.tacotron2 import Tacotron2, Tacotron2Config
from tacoglow.waveglow import WaveGlow, WaveGlowConfig, WaveGlowLoss

SYMBOLS_PER_SECOND = 15  # about LJSpeech's speaking rate in characters


def _autocast(cfg: T.TrainConfig):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp == "bf16")


def _tacotron2_step(cfg: T.TrainConfig, seconds: float, audio: AudioConfig):
    model = Tacotron2(Tacotron2Config.from_dict(cfg.model_config)).train()
    r = model.config.n_frames_per_step
    b, frames = cfg.batch_size, round(seconds * audio.sampling_rate / audio.hop_length)
    clips = [D.Clip(f"x{i}", torch.randint(1, 148, (round(seconds * SYMBOLS_PER_SECOND),)).tolist(), None, None,
                    frames, 0) for i in range(b)]
    batch = D.collate_text_mel(clips, [torch.randn(audio.n_mel_channels, frames) * 2 - 6 for _ in clips], r)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def step(k: int) -> None:
        with _autocast(cfg):
            outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
        T.backward_and_step(T.tacotron2_loss(outputs, batch, cfg, k), model, optimizer, scaler, cfg.grad_clip)

    return model, step, b * frames, "mel frames/s", f"{frames} frames"


def _waveglow_step(cfg: T.TrainConfig, seconds: float, audio: AudioConfig):
    model = WaveGlow(WaveGlowConfig.from_dict(cfg.model_config)).train()
    audio_batch = (torch.rand(cfg.batch_size, cfg.segment_length) * 2 - 1) * 0.3
    mels = mel_spectrogram(audio_batch, audio)
    criterion = WaveGlowLoss(cfg.waveglow_sigma)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def step(k: int) -> None:
        with _autocast(cfg):
            output = model(mels, audio_batch)
        loss = criterion(output)
        T.backward_and_step({"loss": loss}, model, optimizer, scaler, cfg.grad_clip)

    return model, step, audio_batch.numel(), "samples/s", f"{cfg.segment_length} samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tacotron2", "waveglow"], choices=T.MODELS)
    parser.add_argument("--configs", nargs="+", default=["small"], choices=["small", "nvidia"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--seconds", type=float, default=3.0, help="Tacotron 2 clip length in seconds")
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipes' batch size")
    parser.add_argument("--amp", nargs="+", default=["none"], choices=["none", "bf16"],
                        help="precisions to time: none (fp32) and/or bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    audio = AudioConfig()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    header = (f"{'model':<10} {'config':<7} {'amp':<5} {'params':>8} {'batch':>5} {'item':>14} {'s/step':>8} "
              f"{'throughput':>22}")
    print(header)
    print("-" * len(header))
    for model_name in args.models:
        for name, amp in [(n, a) for n in args.configs for a in args.amp]:
            cfg = dataclasses.replace(T.load_train_config(name, model_name), amp=amp)
            if args.batch_size:
                cfg = dataclasses.replace(cfg, batch_size=args.batch_size)
            build = _tacotron2_step if model_name == "tacotron2" else _waveglow_step
            model, step, items, unit, item = build(cfg, args.seconds, audio)
            for k in range(args.warmup):
                step(k)
            times = []
            for k in range(args.steps):
                started = time.perf_counter()
                step(args.warmup + k)
                times.append(time.perf_counter() - started)
            seconds = statistics.median(times)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{model_name:<10} {name:<7} {amp:<5} {params:>7.2f}M {cfg.batch_size:>5} {item:>14} {seconds:>8.2f} "
                  f"{items / seconds:>10.0f} {unit:<11}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
