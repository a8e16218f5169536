"""The world LM recipe's pieces: training examples tokenise exactly as prompts do, losses fall where asked."""

from __future__ import annotations

import random

import pytest
import torch

from experiments.world.build_lm import (Recipe, _qa_tokens, build_model, example_mask, packed_batches, snippet,
                                        weighted_loss)
from memkit.prompts import qa_prompt


def test_example_ids_equal_the_whole_text_and_weights_mark_answers(tiny_tokenizer):
    passages = ["Ada Varn lives in Port Elsin. She works as a weaver.", "Filler about the weather."]
    qas = [("Where does Ada Varn live?", "Port Elsin"), ("What is Ada Varn's job?", "weaver")]
    ids, weights = _qa_tokens(tiny_tokenizer, passages, qas, passage_weight=0.1)
    text = qa_prompt(qas[0][0], passages) + " Port Elsin\n\n" + qa_prompt(qas[1][0]) + " weaver\n"
    assert ids == tiny_tokenizer.encode(text, add_special_tokens=False)
    answered = tiny_tokenizer.decode([i for i, w in zip(ids, weights) if w == 1.0])
    assert answered == " Port Elsin\n weaver\n"
    body_len = len(tiny_tokenizer.encode(qa_prompt("x", passages)[: -len(qa_prompt("x"))], add_special_tokens=False))
    assert set(weights[:body_len]) == {0.1} and 0.0 in weights[body_len:]


def test_snippet_keeps_the_answer_and_the_first_sentence():
    text = "Ada Varn is a keeper. She likes tea. She lives in Port Elsin. The roof is new. Birds sing."
    for seed in range(20):
        cut = snippet(text, ["Port Elsin"], 0.0, random.Random(seed))
        assert cut == "Ada Varn is a keeper. She lives in Port Elsin."
    assert snippet(text, ["Port Elsin"], 1.0, random.Random(0)) == text


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
    recipe = Recipe(window=64, batch_size=2, mix_reading=0.4, mix_closed_book=0.4, mix_documents=0.2)
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
