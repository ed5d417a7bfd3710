"""The workflow's batched answering gives each case the answer one generate call per case gives it."""

import pytest
import torch

from mint.apps.rare_disease.prompts import PROMPT
from mint.core.predict import generate_answers
from mint.core.prompts import build_prompt
from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer

TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True}
NOTES = ["A boy.", "A 4-year-old girl. Findings: seizures, short stature, hypotonia and a cleft palate.",
         "Findings: scoliosis.", "A 30-year-old man with low-set ears, micrognathia, long philtrum, "
         "thin upper lip vermilion, downslanted palpebral fissures and intellectual disability.", "Hypotonia."]


@pytest.fixture(scope="module")
def student():
    prompts = [build_prompt(PROMPT.resolved(None), 3, note, "note") for note in NOTES]
    tokenizer = train_tokenizer([render_chat(p, True) for p in prompts] * 4, 400)
    model = build_tiny_llama(tokenizer, TINY_MODEL, seed=0)
    with torch.no_grad():  # sharper logits than the initialisation's: no near-ties for padding noise to flip
        for p in model.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    return model, tokenizer, prompts


def test_batched_answers_equal_one_call_per_case(student):
    model, tokenizer, prompts = student
    torch.manual_seed(0)
    batched = generate_answers(model, tokenizer, prompts, batch_size=3, max_new_tokens=12)
    one_by_one = [generate_answers(model, tokenizer, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert batched == one_by_one
    assert len(set(batched)) > 1 and all(batched)  # real, different answers, not all empty


@pytest.mark.parametrize("prefill_rows", [2, 16])
@pytest.mark.parametrize("drop_share", [0.0, 1.0])
def test_the_decode_loop_gives_what_generate_gives(student, monkeypatch, drop_share, prefill_rows):
    """`greedy_tokens` against HF's `generate`, one case at a time: finished rows leaving the batch at once
    (`DROP_FINISHED_SHARE` 0) or staying in it, their tokens ignored, until all have ended (1); the
    prompts prefilled in groups of 2 rows or in one pass (`PREFILL_ROWS` 16)."""
    from mint.core import predict
    from mint.core.predict import greedy_tokens

    monkeypatch.setattr(predict, "DROP_FINISHED_SHARE", drop_share)
    monkeypatch.setattr(predict, "PREFILL_ROWS", prefill_rows)
    model, tokenizer, prompts = student
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    # The untrained model seldom ends: call the third token of the first answer the end token, so that
    # rows end at different steps and leave the batch.
    end = greedy_tokens(model, enc["input_ids"], enc["attention_mask"], 12, tokenizer.eos_token_id)[0][2]
    rows = greedy_tokens(model, enc["input_ids"], enc["attention_mask"], 12, end)
    assert len(rows[0]) <= 3 and len({len(r) for r in rows}) > 1
    for text, row in zip(texts, rows):
        one = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**one, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=end)[0, one["input_ids"].shape[1]:].tolist()
        assert row == out


def test_prefill_passes_the_shared_first_tokens_once(student):
    """The shared-prefix prefill gives each row the last logits of its own forward pass, from fewer tokens."""
    from transformers import DynamicCache

    from mint.core.predict import prefill, shared_prefix

    model, tokenizer, prompts = student
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    texts.append(texts[2] + " and more")  # a row that begins with the whole of another
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    shared = shared_prefix(enc["input_ids"], enc["attention_mask"])
    assert 10 < shared < int(enc["attention_mask"].sum(1).min())
    fed = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: fed.append(kwargs["input_ids"].numel()),
                                           with_kwargs=True)
    try:
        with torch.no_grad():
            logits, mask, position = prefill(model, enc["input_ids"], enc["attention_mask"], DynamicCache())
    finally:
        hook.remove()
    assert sum(fed) < enc["input_ids"].numel() - (len(texts) - 2) * shared
    lengths = enc["attention_mask"].sum(1)
    assert mask.sum(1).tolist() == lengths.tolist() and (position[:, 0] == lengths - 1).all()
    for text, row in zip(texts, logits):
        one = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            alone = model(**one, logits_to_keep=1).logits[0]
        torch.testing.assert_close(row, alone, rtol=1e-4, atol=1e-4)
    single = enc["input_ids"][:1], enc["attention_mask"][:1]
    assert shared_prefix(*single) == int(single[1].sum()) - 1  # one row: all but its last token


def test_the_buffered_cache_holds_what_the_dynamic_cache_holds(student):
    """Written in place (and grown past its capacity), the cache gives the logits `DynamicCache` gives,
    through the prefill, dropping rows and decode steps."""
    from transformers import DynamicCache

    from mint.core.predict import buffered_cache, prefill

    model, tokenizer, prompts = student
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    buffered, dynamic = buffered_cache(model, capacity=4), DynamicCache(config=model.config)
    assert type(buffered.layers[0]).__name__ == "BufferedLayer"
    with torch.no_grad():
        out = [prefill(model, enc["input_ids"], enc["attention_mask"], cache) for cache in (buffered, dynamic)]
        torch.testing.assert_close(out[0][0], out[1][0])
        keep = torch.tensor([0, 2, 3])
        for cache in (buffered, dynamic):
            cache.batch_select_indices(keep)
        _, mask, position = out[0]
        mask, position, nxt = mask[keep], position[keep], out[0][0][keep, -1].argmax(-1)
        for _ in range(3):
            mask, position = torch.cat([mask, mask.new_ones(len(keep), 1)], dim=1), position + 1
            logits = [model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, cache=cache,
                            use_cache=True).logits for cache in (buffered, dynamic)]
            torch.testing.assert_close(logits[0], logits[1])
            nxt = logits[0][:, -1].argmax(-1)
    assert buffered.get_seq_length() == dynamic.get_seq_length() == enc["input_ids"].shape[1] + 3
    buffered.reset()  # emptied: the next batch starts from nothing
    assert buffered.get_seq_length() == 0 and buffered.layers[0].length == 0


def test_prefill_in_groups_gives_what_one_pass_gives(student):
    """Rows prefilled two at a time, by length, and laid into one cache: each row's logits, mask and
    position, and the decode steps after them, as from one pass of the whole batch, with less padding fed."""
    from mint.core.predict import buffered_cache, prefill, prefill_in_groups

    model, tokenizer, prompts = student
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    lengths = enc["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(texts)  # groups of unlike widths
    fed = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: fed.append(kwargs["input_ids"].numel()),
                                           with_kwargs=True)
    caches = buffered_cache(model, 40), buffered_cache(model, 40)
    try:
        with torch.no_grad():
            grouped = prefill_in_groups(model, enc["input_ids"], enc["attention_mask"], caches[0], rows=2)
            fed_grouped = sum(fed)
            whole = prefill(model, enc["input_ids"], enc["attention_mask"], caches[1])
    finally:
        hook.remove()
    assert fed_grouped < sum(fed) - fed_grouped  # the groups fed less padding than the one pass
    logits, mask, position = grouped
    torch.testing.assert_close(logits, whole[0], rtol=1e-4, atol=1e-4)
    assert mask.shape[1] == whole[1].shape[1] == caches[0].get_seq_length() == caches[1].get_seq_length()
    assert mask.sum(1).tolist() == lengths.tolist() and position.tolist() == whole[2].tolist()
    masks, positions, nxt = [mask, whole[1]], [position, whole[2]], logits[:, -1].argmax(-1)
    with torch.no_grad():
        for _ in range(3):
            masks = [torch.cat([m, m.new_ones(len(texts), 1)], dim=1) for m in masks]
            positions = [x + 1 for x in positions]
            out = [model(input_ids=nxt[:, None], attention_mask=m, position_ids=x, cache=c, use_cache=True).logits
                   for m, x, c in zip(masks, positions, caches)]
            torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-4)
            nxt = out[1][:, -1].argmax(-1)
