"""A saved generator or slot model copied as a bfloat16 snapshot, small enough to keep in the repository.

    python -m experiments.checkpoints.snapshot SRC DST

SRC: a folder a training run saved its model into (``--out`` of ``memkit train adapter|slots``, after the run
ended or was stopped with ``--max-steps``). DST (a new folder) gets the same artifact with every floating-point
weight stored as bfloat16 (half the bytes; ``--init-from DST`` loads it back as float32), the same ``.json``
(training config, data, summary) with the new weights' sha256 and a ``snapshot`` record (where from, the weights'
dtype), and ``training_log.json`` when SRC has one. Nothing else of SRC (checkpoints, optimizer state) is
copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from memkit import artifacts
from memkit.adapters.generator import KIND as GENERATOR_KIND
from memkit.adapters.generator import AdapterGenerator
from memkit.errors import ConfigError
from memkit.slots.model import KIND as SLOTS_KIND
from memkit.slots.model import SlotModel

KINDS = ((GENERATOR_KIND, AdapterGenerator), (SLOTS_KIND, SlotModel))


def snapshot(src: str | Path, dst: str | Path) -> Path:
    """Writes SRC's model into DST as bfloat16 (see the module doc); returns DST. DST must not exist yet (or be
    an empty folder): the snapshot is written into a temporary folder beside it and renamed into place, so DST
    never mixes files of two saves. One ``ConfigError`` line when SRC holds no generator or slot model or DST
    is taken."""
    src, dst = Path(src), Path(dst)
    for kind, cls in KINDS:
        if (src / kind.config_file).is_file():
            break
    else:
        raise ConfigError(f"{src} holds no generator ({GENERATOR_KIND.config_file}) or slot model "
                          f"({SLOTS_KIND.config_file})")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConfigError(f"{dst} already exists and is not an empty folder; give a new one (or remove it first)")
    meta = artifacts.read_meta(src, kind)
    model = cls.load(src)
    model.to(torch.bfloat16)
    extra = {k: v for k, v in meta.items() if k not in ("format", "config", "weights_sha256", "snapshot")}
    extra["snapshot"] = {"from": str(src), "weights_dtype": "bfloat16"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}"    # mkdir: the umask's mode, as any folder
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        model.save(tmp, extra=extra)
        log = src / "training_log.json"
        if log.is_file():
            shutil.copyfile(log, tmp / "training_log.json")
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="the folder the run saved its generator or slot model into")
    parser.add_argument("dst", type=Path, help="the snapshot's folder: a new one (or an empty one)")
    args = parser.parse_args(argv)
    try:
        out = snapshot(args.src, args.dst)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"snapshot in {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
