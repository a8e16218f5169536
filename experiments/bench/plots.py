"""The benchmark's plots: F1 against context length, and F1 against documents ingested, one line per method.

Owns: drawing result rows into PNG files with matplotlib's object API on the headless Agg canvas (no pyplot,
no global backend switch, no display needed). Knows nothing of how rows were produced.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from experiments.bench.config import MethodSpec


def _series(rows: list[dict], x: str, protocols: tuple[str, ...]) -> dict[str, list[tuple[float, float]]]:
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["protocol"] not in protocols or row.get("n_questions", 1) == 0:
            continue
        name = MethodSpec(row["method"], row["setting"]).label
        if len(protocols) > 1:
            name = f"{name} ({row['protocol']})"
        lines.setdefault(name, []).append((float(row[x]), float(row["f1"])))
    return {k: sorted(v) for k, v in lines.items()}


def _draw(lines: dict[str, list[tuple[float, float]]], path: Path, *, title: str, xlabel: str, log_x: bool) -> bool:
    if not lines:
        return False
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in sorted(lines.items()):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=name, linestyle="--" if "(retention)" in name else "-")
    if log_x and all(x > 0 for pts in lines.values() for x, _ in pts):
        ax.set_xscale("log", base=2)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("F1")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return True


def plot_f1_vs_context(rows: list[dict], path: Path) -> bool:
    """F1 against context length (the sweep); False when there is nothing to draw."""
    return _draw(_series(rows, "context_tokens", ("sweep",)), path, title="F1 by context length",
                 xlabel="context length (tokens)", log_x=True)


def plot_f1_vs_docs(rows: list[dict], path: Path) -> bool:
    """F1 against documents ingested (stream and retention); False when there is nothing to draw."""
    return _draw(_series(rows, "n_docs", ("stream", "retention")), path, title="F1 by documents ingested",
                 xlabel="documents ingested", log_x=False)
