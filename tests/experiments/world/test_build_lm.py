"""The world LM recipe's pieces: training examples tokenise exactly as prompts do, losses fall where asked,
the curriculum's phases hold."""

from __future__ import annotations

import random

import pytest
import torch

from experiments.world.build_lm import build_model, example_mask, weighted_loss
from experiments.world.lm_data import _qa_tokens, copy_stream, packed_batches, snippet
from experiments.world.lm_recipe import Recipe
from memkit.prompts import qa_prompt


def test_example_ids_equal_the_whole_text_and_weights_mark_answers(tiny_tokenizer):
    passages = ["Ada Varn lives in Port Elsin. She works as a weaver.", "Filler about the weather."]
    qas = [("Where does Ada Varn live?", "Port Elsin"), ("What is Ada Varn's job?", "weaver")]
    ids, weights = _qa_tokens(tiny_tokenizer, passages, qas, passage_weight=0.1, question_weight=0.2)
    text = qa_prompt(qas[0][0], passages) + " Port Elsin\n\n" + qa_prompt(qas[1][0]) + " weaver\n"
    assert ids == tiny_tokenizer.encode(text, add_special_tokens=False)
    answered = tiny_tokenizer.decode([i for i, w in zip(ids, weights) if w == 1.0])
    assert answered == " Port Elsin\n weaver\n"
    body_len = len(tiny_tokenizer.encode(qa_prompt("x", passages)[: -len(qa_prompt("x"))], add_special_tokens=False))
    assert set(weights[:body_len]) == {0.1}
    assert set(weights[body_len:]) == {0.2, 1.0}   # questions 0.2, answers 1


def test_snippet_keeps_the_answer_and_the_first_sentence():
    text = "Ada Varn is a keeper. She likes tea. She lives in Port Elsin. The roof is new. Birds sing."
    for seed in range(20):
        cut = snippet(text, ["Port Elsin"], 0.0, random.Random(seed))
        assert cut == "Ada Varn is a keeper. She lives in Port Elsin."
    assert snippet(text, ["Port Elsin"], 1.0, random.Random(0)) == text


def test_a_fact_snippet_drops_only_filler_so_same_kind_values_still_compete():
    text = ("Some facts about Ada Varn follow. The roof is new. Ada Varn was born in Kesmoor. Birds sing. "
            "She lives in Port Elsin. She works as a weaver. She was born in 1970.")
    for seed in range(10):
        cut = snippet(text, ["Port Elsin"], 0.0, random.Random(seed), facts=True)
        assert cut == ("Some facts about Ada Varn follow. Ada Varn was born in Kesmoor. She lives in Port Elsin. "
                       "She works as a weaver. She was born in 1970.")


def test_weighted_loss_matches_a_full_logits_reference(tiny_tokenizer):
    recipe = Recipe(hidden=32, heads=2, layers=1, intermediate=64, window=32)
    model = build_model(recipe, tiny_tokenizer)
    ids = torch.randint(3, len(tiny_tokenizer), (2, 17))
    weights = torch.zeros(2, 17)
    weights[:, 5:9] = 0.1
    weights[:, 12:] = 1.0
    loss, answer_loss = weighted_loss(model, ids, weights, torch.zeros_like(ids))
    logits = model(input_ids=ids[:, :-1]).logits
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    w = weights[:, 1:]
    torch.testing.assert_close(loss, (per_token * w).sum() / w.sum())
    torch.testing.assert_close(answer_loss, per_token[w == 1.0].mean())
    loss.backward()
    assert model.lm_head.weight.grad is not None


def test_packed_examples_do_not_see_each_other(tiny_tokenizer):
    """Each packed example is scored as if it were alone in the row, from position 0."""
    recipe = Recipe(hidden=32, heads=2, layers=2, intermediate=64, window=32)
    model = build_model(recipe, tiny_tokenizer).eval()
    first = torch.randint(3, len(tiny_tokenizer), (1, 7))
    second = torch.randint(3, len(tiny_tokenizer), (1, 9))
    row = torch.cat([first, second], dim=1)
    segments = torch.tensor([[0] * 7 + [1] * 9])
    mask, positions = example_mask(segments)
    assert positions.tolist() == [list(range(7)) + list(range(9))]
    packed = model(input_ids=row, attention_mask=mask, position_ids=positions).logits
    torch.testing.assert_close(packed[:, 7:], model(input_ids=second).logits)
    torch.testing.assert_close(packed[:, :7], model(input_ids=first).logits)
    # without the mask the second example would read the first: the logits differ
    assert not torch.allclose(model(input_ids=row).logits[:, 7:], model(input_ids=second).logits, atol=1e-4)


def test_packed_batches_mark_every_example(tiny_tokenizer):
    recipe = Recipe(window=64, batch_size=2, short_until=0.0, mix_reading=0.4, mix_closed_book=0.3,
                    mix_documents=0.2, mix_copy=0.1)
    ids, weights, segments = next(packed_batches(recipe, tiny_tokenizer, random.Random(0), {"frac": 0.0}))
    assert ids.shape == weights.shape == segments.shape == (2, 65)
    eos = tiny_tokenizer.eos_token_id
    for row_ids, row_segs in zip(ids.tolist(), segments.tolist()):
        assert row_segs[0] == 0 and all(b - a in (0, 1) for a, b in zip(row_segs, row_segs[1:]))
        for i in range(len(row_ids) - 1):   # an example ends with eos; the next token starts a new one
            assert (row_segs[i + 1] != row_segs[i]) == (row_ids[i] == eos)


def test_recipe_validation_names_the_problem():
    with pytest.raises(ValueError, match="multiple of heads"):
        Recipe(hidden=100, heads=3).validate()
    with pytest.raises(ValueError, match="add up to 1"):
        Recipe(mix_reading=0.9).validate()
    with pytest.raises(ValueError, match="--short-window"):
        Recipe(window=256, short_window=512).validate()
    with pytest.raises(ValueError, match="--reading-only-until"):
        Recipe(reading_only_until=1.5).validate()
    with pytest.raises(ValueError, match="--snippet-until"):
        Recipe(snippet_until=0.0).validate()
    Recipe().validate()


def test_copy_examples_repeat_their_list_and_score_only_the_repeat(tiny_tokenizer):
    from experiments.world.names import build_pools, person_names

    test_names = {name for name, _ in person_names(build_pools(0), "test")}
    stream = copy_stream(Recipe(copy_weight=0.5), tiny_tokenizer, random.Random(0))
    for _ in range(20):
        ids, weights = next(stream)
        assert len(ids) == len(weights)
        text = tiny_tokenizer.decode(ids)
        first, again = text.split("\n")
        items = first.removeprefix("List: ").rstrip(".").split(", ")
        assert again == "Again: " + ", ".join(items) + "."
        assert 4 <= len(items) <= 16 and not test_names & set(items)
        n_first = len(tiny_tokenizer.encode(first + "\n", add_special_tokens=False))
        assert set(weights[:n_first + 1]) == {0.0} and set(weights[n_first + 1:]) == {0.5}


def _example_starts(tok, ids, segments) -> list[str]:
    """The first few characters of every example that starts inside the rows."""
    starts = []
    for row_ids, row_segs in zip(ids.tolist(), segments.tolist()):
        for i in range(len(row_ids)):
            if i == 0 or row_segs[i] != row_segs[i - 1]:
                starts.append(tok.decode(row_ids[i:i + 12]))
    return starts


def test_the_curriculum_reads_only_on_short_rows_first_then_mixes_on_full_rows(tiny_tokenizer):
    recipe = Recipe(window=128, batch_size=2, short_window=64, short_until=0.5, reading_only_until=0.5,
                    mix_reading=0.3, mix_closed_book=0.5, mix_documents=0.0, mix_copy=0.2)
    progress = {"frac": 0.0}
    batches = packed_batches(recipe, tiny_tokenizer, random.Random(0), progress)
    early = [next(batches) for _ in range(6)]
    assert all(ids.shape == (4, 65) for ids, _, _ in early)
    starts = [s for ids, _, segs in early for s in _example_starts(tiny_tokenizer, ids, segs)]
    assert not any(s.startswith("Question") for s in starts)        # no closed-book example yet
    assert any(s.startswith("List") for s in starts)                  # copy examples come from the start
    progress["frac"] = 0.6
    late = [next(batches) for _ in range(6)]
    assert all(ids.shape == (2, 129) for ids, _, _ in late)
    starts = [s for ids, _, segs in late for s in _example_starts(tiny_tokenizer, ids, segs)]
    assert any(s.startswith("Question") for s in starts)


def test_a_saved_stage_reloads_with_a_longer_window(tiny_tokenizer, tmp_path):
    from experiments.world.build_lm import load_stage

    small = Recipe(hidden=32, heads=2, layers=1, intermediate=64, window=32)
    model = build_model(small, tiny_tokenizer)
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    tok, again = load_stage(Recipe(hidden=32, heads=2, layers=1, intermediate=64, window=64,
                                   init_from=str(tmp_path)))
    assert again.config.max_position_embeddings == 64 and tok.model_max_length == 64
    ids = torch.randint(3, len(tok), (1, 20))
    torch.testing.assert_close(again(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ValueError, match="same sizes"):
        load_stage(Recipe(hidden=64, heads=2, layers=1, intermediate=64, init_from=str(tmp_path)))


TINY = dict(vocab_size=400, hidden=32, heads=2, layers=1, intermediate=64, window=64, short_window=32, batch_size=2,
            warmup_steps=2, eval_every=1000, eval_questions=2, threads=1, max_steps=6, checkpoint_every=2,
            weight_decay=0.05, short_until=0.5, reading_only_until=0.3)


@pytest.mark.slow
def test_the_world_lm_trains_in_the_shared_loop_and_resumes_bit_identical(tmp_path, monkeypatch):
    """The recipe runs on memkit.training.run_steps: a run stopped by a crash at step 5 and resumed from its
    --out folder ends with the weights and losses of one never stopped (the data of a step, curriculum included,
    is a function of its position)."""
    import json

    from safetensors.torch import load_file

    import experiments.world.build_lm as build_lm

    straight = build_lm.train(Recipe(**TINY), tmp_path / "straight", log=lambda _m: None)
    assert straight["steps"] == 6 and set(straight["final_probe"]) >= {"step", "reading_test F1"}

    calls = {"n": 0}
    real = build_lm.weighted_loss

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(build_lm, "weighted_loss", dying)
    with pytest.raises(RuntimeError, match="killed"):
        build_lm.train(Recipe(**TINY), tmp_path / "run", log=lambda _m: None)
    monkeypatch.setattr(build_lm, "weighted_loss", real)
    resumed = build_lm.train(Recipe(**TINY, resume=str(tmp_path / "run")), tmp_path / "run", log=lambda _m: None)
    assert resumed["resumed_at"] == 4
    logs = [json.loads((tmp_path / d / "training_log.json").read_text()) for d in ("straight", "run")]
    assert logs[0]["loss_every_10"] == logs[1]["loss_every_10"]
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("straight", "run"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(Exception, match="--resume"):        # other data choices: the checkpoint says no
        build_lm.train(Recipe(**{**TINY, "mix_copy": 0.25, "mix_reading": 0.25}, resume=str(tmp_path / "run")),
                       tmp_path / "other", log=lambda _m: None)
