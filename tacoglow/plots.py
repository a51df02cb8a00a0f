"""Training plots: alignments, mels and stop-token curves as PNG files (matplotlib's Agg canvas, no pyplot state).

Each ``save_*`` function writes ``path`` and returns the matplotlib Figure (TensorBoard logs it too), or None
when matplotlib is not installed (training goes on without plots; one warning says how to get them).
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor

__all__ = ["save_alignment_plot", "save_gate_plot", "save_mel_plot"]

log = logging.getLogger("tacoglow.train")  # the training log: the missing-matplotlib warning belongs there


def _figure(rows: int):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(9, 3.2 * rows), dpi=100, layout="constrained")
    return figure, figure.subplots(rows, 1, squeeze=False)[:, 0]


_WARNED_NO_MATPLOTLIB: list[bool] = []


def _save_figure(figure_axes, path: Path):
    """Write the figure as PNG and return it (for TensorBoard), or None without matplotlib."""
    if figure_axes is None:
        if not _WARNED_NO_MATPLOTLIB:
            _WARNED_NO_MATPLOTLIB.append(True)
            log.warning("matplotlib is not installed: no plots (pip install 'tacoglow[train]')")
        return None
    figure_axes[0].savefig(path)
    return figure_axes[0]


def save_gate_plot(path: Path, predicted: Tensor, target: Tensor, title: str):
    """Stop-token probability per decoder step (sigmoid of the gate) against its target."""
    fa = _figure(1)
    if fa is not None:
        ax = fa[1][0]
        ax.plot(target.float().cpu().numpy(), color="tab:green", label="target", linewidth=2, alpha=0.6)
        ax.plot(predicted.float().cpu().numpy(), color="tab:red", label="predicted", linestyle="", marker=".")
        ax.set(xlabel="decoder step", ylabel="stop probability", title=title, ylim=(-0.05, 1.05))
        ax.legend(loc="upper left")
    return _save_figure(fa, path)


def save_alignment_plot(path: Path, alignment: Tensor, title: str):
    """alignment (decoder steps, text positions) as an image: text position up, decoder step right."""
    fa = _figure(1)
    if fa is not None:
        ax = fa[1][0]
        image = ax.imshow(alignment.float().cpu().numpy().T, aspect="auto", origin="lower",
                          interpolation="none", vmin=0.0, vmax=1.0)
        ax.set(xlabel="decoder step", ylabel="text position", title=title)
        fa[0].colorbar(image, ax=ax)
    return _save_figure(fa, path)


def save_mel_plot(path: Path, predicted: Tensor, target: Tensor, title: str):
    fa = _figure(2)
    if fa is not None:
        low, high = float(target.min()), float(target.max())
        for ax, mel, name in zip(fa[1], (predicted, target), ("predicted (postnet)", "target")):
            image = ax.imshow(mel.float().cpu().numpy(), aspect="auto", origin="lower", interpolation="none",
                              vmin=low, vmax=high)
            ax.set(xlabel="frame", ylabel="mel channel", title=f"{title}: {name}")
            fa[0].colorbar(image, ax=ax)
    return _save_figure(fa, path)
