"""The serve benchmark's targets and its markdown table.

Owns: the targets (``TARGET_SPEEDUP``, ``TARGET_TAIL`` at ``TARGET_CLIENTS`` clients) and how a method's result
is judged against them (``targets``), and the markdown table of a whole run (``markdown``, ``fmt``). Reads the
result dicts only; knows nothing of processes or HTTP.
"""

from __future__ import annotations

TARGET_SPEEDUP = 20.0      # throughput at the target level / baseline throughput, at least
TARGET_TAIL = 5.0          # p99 at the target level / p50 at 1 client, at most
TARGET_CLIENTS = 16


def ratio(a, b) -> float | None:
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def targets(result: dict, target: int) -> dict:
    by = {lv["clients"]: lv for lv in result.get("load", [])}
    at, one = by.get(target, {}), by.get(1, {})
    base = result.get("baseline", {}).get("throughput")
    speedup = ratio(at.get("throughput"), base)
    tail = ratio(at.get("p99_ms"), one.get("p50_ms"))
    return {
        "clients": target,
        "speedup": {"value": speedup, "target": TARGET_SPEEDUP, "what": f"throughput at {target} clients / "
                                                                        f"memkit ask baseline throughput (>=)",
                    "pass": speedup is not None and speedup >= TARGET_SPEEDUP},
        "tail": {"value": tail, "target": TARGET_TAIL, "what": f"p99 at {target} clients / p50 at 1 client (<=)",
                 "pass": tail is not None and tail <= TARGET_TAIL},
    }


def fmt(x, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def markdown(result: dict) -> str:
    work = result.get("workload", {})
    name = f"{work['benchmark']}, " if work else ""
    lines = [f"## memkit serve benchmark ({name}seed {result['seed']}, {result['machine']['cpu_count']} CPUs, "
             f"{work.get('stored', result['config']['n_docs'])} documents)", "",
             "| method | clients | answers/s | p50 ms | p99 ms | mean batch | errors | EM % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        for lv in m.get("load", []):
            lines.append(f"| {name} | {lv['clients']} | {fmt(lv['throughput'])} | {fmt(lv['p50_ms'])} | "
                         f"{fmt(lv['p99_ms'])} | {fmt(lv.get('mean_batch_size'), 2)} | {lv['errors_total']} | "
                         f"{fmt(lv.get('exact_match'))} |")
    lines += ["", "| method | first answer s | baseline s/question | speedup | target | p99/p50(1) | target | "
                  "ingest docs/s alone | under load | asks/s during ingest | p99 ms during ingest |",
              "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        if "error" in m:
            lines.append(f"| {name} | error: {m['error'].splitlines()[0][:120]} |||||||||")
            continue
        t, ing = m["targets"], m["ingest"]
        sp, tl = t["speedup"], t["tail"]
        lines.append(
            f"| {name} | {fmt(m['startup']['first_answer_s'], 2)} | {fmt(m.get('baseline', {}).get('mean_s'), 2)} | "
            f"{fmt(sp['value'])}x | {'PASS' if sp['pass'] else 'MISS'} (>= {sp['target']:g}x at {t['clients']}) | "
            f"{fmt(tl['value'], 2)}x | {'PASS' if tl['pass'] else 'MISS'} (<= {tl['target']:g}x) | "
            f"{fmt(ing['alone']['documents_per_second'])} | {fmt(ing['under_load']['documents_per_second'])} | "
            f"{fmt(ing['asks_during_ingest']['throughput'])} (alone {fmt(ing['asks_alone']['throughput'])}) | "
            f"{fmt(ing['asks_during_ingest']['p99_ms'])} (alone {fmt(ing['asks_alone']['p99_ms'])}) |")
    return "\n".join(lines)
