"""The shared training loop: options, items by position, accumulation, data parallelism over two gloo processes,
bf16, checkpoints that a crash cannot tear, and resumption that ends where an uninterrupted run ends."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memkit import checkpoint
from memkit.adapters.generator import AdapterGenerator
from memkit.adapters.train import AdapterTrainConfig, ContextQA, train_generator
from memkit.distributed import launch_command
from memkit.errors import ConfigError, MemkitError
from memkit.training import ItemBatches, LoopConfig, part_rng, run_steps
from traininghelpers import Toy, toy_cfg, toy_data, toy_loss

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(log=lambda _line: None)


def optimizer_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint.find(directory) / checkpoint.OPTIMIZER))


class Crash(Exception):
    pass


# ---------------------------------------------------------------- options and items

@pytest.mark.parametrize("bad,flag", [({"grad_accum": 0}, "--grad-accum"), ({"batch_size": 6, "grad_accum": 4}, "--batch-size"),
                                      ({"precision": "fp16"}, "--precision"), ({"checkpoint_every": -1}, "--checkpoint-every"),
                                      ({"batch_size": 0}, "--batch-size"), ({"max_steps": 0, "minutes": 0}, "--minutes")])
def test_bad_loop_options_name_their_flag(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        LoopConfig(**bad).validate()
    LoopConfig(batch_size=6, grad_accum=3, precision="bf16", checkpoint_every=0).validate()


def test_item_batches_serve_each_step_by_position_and_fast_forward():
    batches = ItemBatches(itertools.count(), 6)
    assert batches.part(0, 0, 1) == [0, 1, 2, 3, 4, 5]
    assert batches.part(1, 0, 2) == [6, 7, 8] and batches.part(1, 1, 2) == [9, 10, 11]
    assert batches.part(3, 1, 3) == [20, 21]                  # a later step: the items before it skipped
    later = ItemBatches(itertools.count(), 6)                   # a resumed run, or a process owning later parts
    assert later.part(3, 1, 3) == [20, 21]
    with pytest.raises(ValueError):
        later.part(2, 0, 1)                                     # already dropped
    with pytest.raises(ConfigError, match="--batch-size"):
        later.part(4, 0, 4)
    with pytest.raises(MemkitError, match="ran out"):
        ItemBatches(iter(range(5)), 3).part(1, 0, 1)
    assert part_rng(0, 3, 1).random() == part_rng(0, 3, 1).random() != part_rng(0, 3, 2).random()


# ---------------------------------------------------------------- accumulation and data parallelism

def test_accumulation_averages_the_micro_batches():
    """grad_accum 2 steps with the gradient of the mean of its two micro-batch losses."""
    one = Toy()
    seen, grads = [], {}
    for name, p in one.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.clone()))

    def step_loss(step, part, parts):
        seen.append((step, part, parts))
        return toy_loss(one, dropout=0.0)(step, part, parts)

    run_steps(one, step_loss, toy_cfg(max_steps=1, grad_accum=2, max_grad_norm=0.0, warmup_steps=1, lr=0.1), **QUIET)
    assert seen == [(0, 0, 2), (0, 1, 2)]
    ref = Toy()
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1, betas=(0.9, 0.95), weight_decay=0.0)
    (sum(toy_loss(ref, dropout=0.0)(0, part, 2)[0] for part in range(2)) / 2).backward()
    for name, p in ref.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-7), name
    opt.step()
    for (name, p), q in zip(one.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name
    assert float(one.seen) == 2 and not torch.equal(one.lin.weight, Toy().lin.weight)


WORKER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import torch
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    from traininghelpers import Toy, toy_cfg, toy_loss
    from memkit.distributed import finish
    from memkit.training import run_steps
    model = Toy()
    report = run_steps(model, toy_loss(model), toy_cfg(grad_accum=1, checkpoint_every=0), log=lambda _l: None)
    rank = torch.distributed.get_rank()
    out = {{k: v.detach().contiguous() for k, v in model.state_dict().items()}}
    out["losses"] = torch.tensor(report.losses, dtype=torch.float64)
    save_file(out, sys.argv[1] + f"/rank{{rank}}.safetensors")
    finish()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_two_micro_batches(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), tests=str(ROOT / "tests")))
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path)], env={**env, "RANK": str(r),
                                                                                 "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]

    single = Toy()
    report = run_steps(single, toy_loss(single), toy_cfg(grad_accum=2, checkpoint_every=0), **QUIET)
    for name, value in single.named_parameters():
        assert torch.equal(ranks[0][name], ranks[1][name]), name            # the processes stay in step
        assert torch.allclose(ranks[0][name], value, rtol=1e-5, atol=1e-6), name
    assert not torch.equal(single.lin.weight, Toy().lin.weight)            # something was trained
    assert torch.allclose(ranks[0]["losses"], torch.tensor(report.losses, dtype=torch.float64), atol=1e-6)


def test_launch_runs_the_command_again_under_accelerate():
    cmd = launch_command(4, ["train", "adapter", "--max-steps", "10"])
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[-6:] == ["-m", "cli.main", "train", "adapter", "--max-steps", "10"]
    two = launch_command(4, ["x"], num_machines=2, machine_rank=1, main_address="10.0.0.1", main_port=1234)
    assert two[two.index("--main_process_ip") + 1] == "10.0.0.1" and two[two.index("--machine_rank") + 1] == "1"
    for bad in (dict(num_processes=0), dict(num_processes=3, num_machines=2, main_address="h"),
                dict(num_processes=2, num_machines=2)):
        with pytest.raises(ConfigError):
            launch_command(argv=[], **bad)


# ---------------------------------------------------------------- bf16

def test_bf16_autocast_trains_a_float32_model():
    model = Toy()
    kinds = []

    def step_loss(step, part, parts):
        kinds.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        x, y = toy_data(0, 0, per_part=16)                      # one batch, learnt over and over
        out = model.lin(x)
        assert out.dtype == torch.bfloat16                      # the matmul ran in bfloat16
        out = out + model.extra
        loss = F.mse_loss(out.float(), y)
        return loss, {}

    report = run_steps(model, step_loss, toy_cfg(precision="bf16", max_steps=12, batch_size=1, lr=0.05,
                                                 checkpoint_every=0), **QUIET)
    assert all(kinds) and len(kinds) == 12
    assert all(torch.isfinite(torch.tensor(report.losses)))
    assert report.losses[-1] < 0.7 * report.losses[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------- checkpoints and resumption

def seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


def test_weight_decay_shrinks_matrices_and_leaves_vectors_alone():
    """With no gradient, AdamW's step is the decay alone: the weight matrix shrinks, the bias and the extra
    vector stay as they were."""
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def no_gradient(step, part, parts):
        return sum((p * 0).sum() for p in model.parameters()), {}

    run_steps(model, no_gradient, toy_cfg(weight_decay=0.5, max_steps=3, checkpoint_every=0), **QUIET)
    assert model.lin.weight.abs().sum() < 0.99 * before["lin.weight"].abs().sum()
    assert torch.equal(model.lin.bias, before["lin.bias"]) and torch.equal(model.extra, before["extra"])


def test_on_step_sees_every_step_with_its_planned_total():
    model = Toy()
    seen = []
    run_steps(model, toy_loss(model), toy_cfg(checkpoint_every=0), on_step=lambda s, t: seen.append((s, t)), **QUIET)
    assert seen == [(s, 6) for s in range(6)]


def test_a_log_line_shows_each_part_averaged_over_the_steps_since_the_last_line():
    model = Toy()
    inner = toy_loss(model)

    def step_loss(step, part, parts):
        loss, _ = inner(step, part, parts)
        shown = {"qa": float(step)}                        # 0, 1, ..., 24 over the first 25 steps
        if step % 2:
            shown["extra"] = 10.0 * step                   # on odd steps only: 10, 30, ..., 230
        return loss, shown

    lines = []
    run_steps(model, step_loss, toy_cfg(max_steps=25, checkpoint_every=0), log=lines.append)
    line = next(l for l in lines if l.startswith("step 25/25"))
    assert " qa 12.000 " in line and " extra 120.000 " in line, line


def test_resume_after_a_crash_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    seed_globals(0)
    straight = Toy()
    full = run_steps(straight, toy_loss(straight, global_rng=True), toy_cfg(), checkpoint_dir=tmp_path / "straight",
                     **QUIET)

    seed_globals(0)
    crashed = Toy()
    inner = toy_loss(crashed, global_rng=True)

    def dying(step, part, parts):
        if step == 3:
            raise Crash                                        # killed during step 4: step 2's checkpoint is kept
        return inner(step, part, parts)

    with pytest.raises(Crash):
        run_steps(crashed, dying, toy_cfg(), checkpoint_dir=tmp_path / "run", **QUIET)
    assert checkpoint.latest_step(tmp_path / "run") == 2        # at most one interval lost
    before = json.loads(next((tmp_path / "run").glob("step-*/state.json")).read_text())

    seed_globals(5)
    resumed = Toy(seed=5)                                       # whatever it starts from is replaced
    report = run_steps(resumed, toy_loss(resumed, global_rng=True), toy_cfg(resume=str(tmp_path / "run")),
                       checkpoint_dir=tmp_path / "run", **QUIET)
    assert report.resumed_at == 2 and report.steps == 6
    assert report.resumed_seconds == before["seconds"] and before["step"] == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert report.losses == full.losses
    want, got = optimizer_state(tmp_path / "straight"), optimizer_state(tmp_path / "run")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert checkpoint.latest_step(tmp_path / "run") == 6
    assert [p.name for p in (tmp_path / "run").iterdir() if p.is_dir()] == [checkpoint.find(tmp_path / "run").name]


ITEMS = [ContextQA(["Ada Varn lives in Port Elsin. She is a weaver."], [("Where does Ada Varn live?", "Port Elsin")]),
         ContextQA(["Bo Kell lives in Dunmere. He is a baker."], [("What does Bo Kell do?", "baker")]),
         ContextQA(["Cy Rone lives in Harnby. She is a smith. She was born in 1950."],
                   [("When was Cy Rone born?", "1950"), ("Where does Cy Rone live?", "Harnby")]),
         ContextQA(["Di Mo lives in Kessin. Kessin lies on the coast."], [("Where does Di Mo live?", "Kessin")])]


def stream(crash_at: int | None = None):
    for i, item in enumerate(itertools.cycle(ITEMS)):
        if i == crash_at:
            raise Crash
        yield item


def test_a_generator_run_resumed_from_its_checkpoint_equals_one_never_stopped(tiny_lm, tmp_path):
    """The adapter recipe's loop end to end: items fast-forwarded, per-micro-batch randomness, the optimizer."""
    def fresh():
        return AdapterGenerator.for_lm(tiny_lm, tiny_lm.target_modules("attn_out"), state_rank=16, svd_rank=4,
                                       alpha=32.0, base_rank=2)

    cfg = dict(state_rank=16, svd_rank=4, alpha=32.0, base_rank=2, chunk_tokens=8, batch_size=4, grad_accum=2,
               lr=5e-2, warmup_steps=1, max_steps=4, minutes=0, merge_extra=0.5, checkpoint_every=2)
    straight = fresh()
    full = train_generator(tiny_lm, straight, stream(), AdapterTrainConfig(**cfg), **QUIET)
    stopped = fresh()
    with pytest.raises(Crash):                                  # the stream dies in step 3 (items 12..15)
        train_generator(tiny_lm, stopped, stream(crash_at=13), AdapterTrainConfig(**cfg),
                        checkpoint_dir=tmp_path, **QUIET)
    resumed = fresh()
    report = train_generator(tiny_lm, resumed, stream(), AdapterTrainConfig(**cfg, resume=str(tmp_path)),
                             checkpoint_dir=tmp_path, **QUIET)
    assert report.resumed_at == 2 and report.losses == full.losses
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(straight.parts[0].a2.weight, fresh().parts[0].a2.weight)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    model = Toy()
    run_steps(model, toy_loss(model), toy_cfg(max_steps=2), checkpoint_dir=tmp_path, **QUIET)
    for change, flag in (({"batch_size": 4}, "--batch-size"), ({"grad_accum": 2}, "--grad-accum"),
                         ({"lr": 0.01}, "--lr"), ({"seed": 1}, "--seed")):
        with pytest.raises(ConfigError, match=flag):
            run_steps(model, toy_loss(model), toy_cfg(max_steps=4, resume=str(tmp_path), **change), **QUIET)

    class Wider(Toy):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 5)

    with pytest.raises(ConfigError, match="lin.weight"):
        run_steps(Wider(), toy_loss(model), toy_cfg(max_steps=4, resume=str(tmp_path)), **QUIET)
    with pytest.raises(ConfigError, match="--resume"):
        run_steps(model, toy_loss(model), toy_cfg(resume=str(tmp_path / "nothing")), **QUIET)
    # options that say how long or how often may change: a longer run goes on from step 2
    report = run_steps(model, toy_loss(model), toy_cfg(max_steps=3, eval_every=7, resume=str(tmp_path)), **QUIET)
    assert report.resumed_at == 2 and report.steps == 3


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = Toy()
    run_steps(model, toy_loss(model), toy_cfg(max_steps=2), checkpoint_dir=tmp_path, **QUIET)
    before = checkpoint.find(tmp_path)
    state = json.loads((before / checkpoint.STATE).read_text())
    assert state["step"] == 2 and len(state["losses"]) == 2 and state["parts"] == 1

    real_rename = os.rename

    def dies(src, dst):
        raise Crash                                            # killed just before the new folder is named

    monkeypatch.setattr(os, "rename", dies)
    with pytest.raises(Crash):
        run_steps(model, toy_loss(model), toy_cfg(max_steps=4, resume=str(tmp_path)), checkpoint_dir=tmp_path,
                  **QUIET)
    monkeypatch.setattr(os, "rename", real_rename)
    half = tmp_path / ".tmp-step-00000004-abcdef"              # what a kill -9 mid-write leaves
    half.mkdir()
    (half / checkpoint.MODEL).write_bytes(b"torn")
    assert checkpoint.find(tmp_path) == before and checkpoint.latest_step(tmp_path) == 2
    report = run_steps(model, toy_loss(model), toy_cfg(max_steps=4, resume=str(tmp_path)), checkpoint_dir=tmp_path,
                       **QUIET)
    assert report.steps == 4 and checkpoint.latest_step(tmp_path) == 4
    assert not half.exists() and not before.exists()
