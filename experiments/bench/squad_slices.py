"""Cut a SQuAD JSON file into slices of whole articles, so that training and evaluation never share an article.

    python -m experiments.bench.squad_slices dev-v1.1.json --articles 0:32 --out squad-dev-a.json
    python -m experiments.bench.squad_slices dev-v1.1.json --articles 32:48 --out squad-dev-b.json

The slice is the file's own JSON with ``data`` cut to the articles ``START:STOP`` (Python slice, in the file's
order), and a ``memkit_slice`` field naming the source's sha256 and the range, so a number reported on a slice
says exactly which questions it used. Used where SQuAD train is not at hand: train on one slice of dev and
report on another. Knows nothing of models or storage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def parse_range(text: str) -> tuple[int, int | None]:
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start or 0), (int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"--articles {text!r} is not START:STOP with whole numbers (e.g. 0:32)") from None


def cut(source: Path, start: int, stop: int | None) -> dict:
    raw = source.read_bytes()
    root = json.loads(raw)
    if not isinstance(root, dict) or not isinstance(root.get("data"), list):
        raise ValueError(f"{source}: not a SQuAD file (no top-level 'data' list)")
    articles = root["data"][start:stop]
    if not articles:
        raise ValueError(f"{source}: articles {start}:{'' if stop is None else stop} is empty "
                         f"(the file has {len(root['data'])})")
    return {**root, "data": articles, "memkit_slice": {
        "source": source.name, "source_sha256": hashlib.sha256(raw).hexdigest(),
        "articles": f"{start}:{'' if stop is None else stop}",
        "questions": sum(len(p.get("qas", [])) for a in articles if isinstance(a, dict)
                         for p in a.get("paragraphs", []) if isinstance(p, dict))}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="a SQuAD JSON file, e.g. dev-v1.1.json")
    ap.add_argument("--articles", required=True, help="START:STOP, a Python slice of the file's articles")
    ap.add_argument("--out", type=Path, required=True, help="where to write the slice (JSON)")
    args = ap.parse_args(argv)
    try:
        start, stop = parse_range(args.articles)
        sliced = cut(args.source, start, stop)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(sliced), "utf-8")
    info = sliced["memkit_slice"]
    print(f"{args.out}: articles {info['articles']} of {info['source']} (sha256 {info['source_sha256'][:12]}...), "
          f"{len(sliced['data'])} articles, {info['questions']} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
