"""Rendering a benchmark run: the JSON document, a markdown table and the plots beside it.

Owns: the JSON shape written by ``--json`` (``{"benchmark": ..., "config": {...}, "results": [row, ...]}``,
one row per method x protocol point, fields as ``experiments.bench.protocols.summarise`` makes them), the
markdown report written by ``--report PATH`` (one table row per result, then links to the PNG plots written
next to it), and the short summary table columns the CLI prints. Knows nothing of models or how rows are made.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.bench.plots import plot_f1_vs_context, plot_f1_vs_docs

COLUMNS = [  # (header, row field, format)
    ("method", "method", "{}"), ("setting", "setting", "{}"), ("protocol", "protocol", "{}"),
    ("docs", "n_docs", "{}"), ("context", "context_tokens", "{}"), ("questions", "n_questions", "{}"),
    ("EM", "em", "{:.1f}"), ("F1", "f1", "{:.1f}"), ("p50 ms", "latency_ms_p50", "{:.1f}"),
    ("p95 ms", "latency_ms_p95", "{:.1f}"), ("tokens/q", "tokens_per_question", "{:.0f}"),
    ("FLOPs/q", "flops_per_question", "{:.3g}"), ("peak MB", "peak_memory_mb", "{:.0f}"),
    ("bytes/doc", "bytes_per_doc", "{:.0f}"), ("cut", "truncation_rate", "{:.0%}"), ("F1 drop", "f1_drop", "{:.1f}"),
]


def cell(row: dict, field: str, fmt: str) -> str:
    value = row.get(field)
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def phase_of(row: dict) -> str:
    return f"{row['protocol']}/{row['phase']}" if row.get("phase") else row["protocol"]


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(report: dict, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(report), encoding="utf-8")
    return out


def markdown(report: dict, images: list[Path] | None = None) -> str:
    """The report as markdown: what was run, one table row per result, then the plots."""
    cfg = report.get("config", {})
    lines = [f"# memkit benchmark: {report['benchmark']}", ""]
    facts = [("model", cfg.get("model")), ("non-embedding parameters", cfg.get("non_embedding_params")),
             ("device", cfg.get("device")), ("seed", cfg.get("seed")),
             ("protocols", ", ".join(cfg.get("protocols", []))),
             ("documents / questions in the benchmark", f"{cfg.get('n_documents')} / {cfg.get('n_questions')}")]
    lines += [f"- {k}: {v}" for k, v in facts if v is not None]
    lines += ["", "EM and F1 are x100. FLOPs/q = 2 x non-embedding params x tokens read per question, plus the "
              "method's encode cost amortised over the questions (see experiments/bench/costs.py).", ""]
    lines.append("| " + " | ".join(h for h, _, _ in COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in report["results"]:
        shown = dict(row, protocol=phase_of(row))
        lines.append("| " + " | ".join(cell(shown, f, fmt) for _, f, fmt in COLUMNS) + " |")
    configs = {(r["method"], json.dumps(r.get("method_config", {}), sort_keys=True)) for r in report["results"]}
    if configs:
        lines += ["", "## Method options", ""]
        lines += [f"- {name}: `{conf}`" for name, conf in sorted(configs)]
    for image in images or []:
        lines += ["", f"![{image.stem}]({image.name})"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, path: str | Path) -> list[Path]:
    """Write the markdown report at ``path`` and its PNG plots beside it; every file written, report first."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for suffix, draw in (("f1_vs_context", plot_f1_vs_context), ("f1_vs_docs", plot_f1_vs_docs)):
        image = out.with_name(f"{out.stem}_{suffix}.png")
        if draw(report["results"], image):
            images.append(image)
    out.write_text(markdown(report, images), encoding="utf-8")
    return [out, *images]
