"""One sentence's mel while Tacotron 2 decodes it: the postnet run over windows of the frames decoded so far, so
that a vocoder can start long before the decoder stops (``Synthesizer.stream_audio``).

The postnet's five convolutions (kernel 5) see ``postnet_context`` = 10 frames on each side. A window of frames
[start, end) is therefore final once the decoder is ``postnet_context`` frames past ``end``; it is computed over
[start - 10, end + 10) and cut back to [start, end). The pieces join into the postnet mel of the whole sentence
up to float rounding (the convolutions run on other lengths), and the sentence's result is the one
:meth:`Tacotron2.infer_detailed` gives.
"""
from __future__ import annotations

from typing import Generator, Sequence

import torch
from torch import Tensor

from .ops import run_to_end
from .tacotron2 import Tacotron2, Tacotron2Config, Tacotron2Output

__all__ = ["postnet_context", "stream_mel"]


def postnet_context(config: Tacotron2Config) -> int:
    """Frames on each side of a frame that its postnet output depends on."""
    return config.postnet_n_convolutions * (config.postnet_kernel_size - 1) // 2


def _postnet_window(model: Tacotron2, mel: Tensor, start: int, end: int) -> Tensor:
    """mel (n_mel, T) before the postnet -> the postnet mel of frames [start, end), (1, n_mel, end - start)."""
    context = postnet_context(model.config)
    low, high = max(0, start - context), min(mel.size(1), end + context)
    window = mel[:, low:high].unsqueeze(0)  # (1, n_mel, high - low); the convolutions pad outside it with zeros
    engine = getattr(model, "postnet_mel", None)  # tacoglow.export.OnnxTacotron2 runs it on ONNX Runtime
    full = engine(window) if engine is not None else window + model.postnet(window)
    return full[:, :, start - low:end - low]


@torch.inference_mode()
def stream_mel(model: Tacotron2, ids: Sequence[int], generator: torch.Generator, max_decoder_steps: int,
               piece_frames: int = 16, precision: str = "fp32") -> Generator[Tensor, None, Tacotron2Output]:
    """One sentence, ``model.infer_detailed`` of ``ids`` with its own ``generator`` (the per-item mode), yielding
    its postnet mel in pieces (1, n_mel, n >= ``piece_frames`` but the last) as soon as each is final. The pieces
    cover the frames before the stop frame, ``mel_postnet[0, :, :mel_lengths[0]]``; the generator returns
    infer_detailed's :class:`Tacotron2Output`. ``model`` may be a ``tacoglow.export.OnnxTacotron2`` (it stands
    in for one, its postnet run on ONNX Runtime too)."""
    if piece_frames < 1:
        raise ValueError(f"piece_frames must be at least 1, got {piece_frames}")
    config = model.config
    n_mel, r = config.n_mel_channels, config.n_frames_per_step
    # A frame is final once the decoder is past its postnet context, and it is before the stop frame once the
    # decoder is past the stop step's r frames.
    lag = max(postnet_context(config), r)
    device = model.embedding.weight.device if isinstance(model, Tacotron2) else torch.device("cpu")  # ONNX: CPU
    sequence = torch.tensor([list(ids)], dtype=torch.long, device=device)
    steps = model.generate(sequence, torch.tensor([len(ids)]), [generator], max_decoder_steps, precision=precision)
    if config.decoder_no_early_stopping:  # frames past the stop are zeroed only once decoding ends: one piece
        whole = run_to_end(steps)
        yield whole.mel_postnet[:1, :, :int(whole.mel_lengths[0])]
        return whole
    frames: list[Tensor] = []  # (r, n_mel) per decoder step, before the postnet
    emitted = 0
    while True:
        try:
            out = next(steps)  # (1, n_mel * r + 1)
        except StopIteration as done:
            result: Tacotron2Output = done.value
            break
        frames.append(out[0, :n_mel * r].view(r, n_mel))
        decoded = len(frames) * r
        if decoded - lag - emitted >= piece_frames:
            yield _piece(model, frames, emitted, decoded - lag)
            emitted = decoded - lag
    length = int(result.mel_lengths[0])
    if emitted < length:
        yield _piece(model, frames, emitted, length)
    return result


def _piece(model: Tacotron2, frames: list[Tensor], start: int, end: int) -> Tensor:
    """The postnet mel of frames [start, end) from the decoder's steps so far, ``frames`` ((r, n_mel) each):
    only the steps from its left context on are joined (the context lies in them: it starts after frame 0
    only when ``start`` is ``postnet_context`` or more frames in)."""
    r = model.config.n_frames_per_step
    first_step = max(0, start - postnet_context(model.config)) // r
    mel = torch.cat(frames[first_step:]).t()  # (n_mel, decoded frames from step first_step on)
    return _postnet_window(model, mel, start - first_step * r, end - first_step * r)

