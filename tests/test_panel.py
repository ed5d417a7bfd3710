"""Full-panel ranking by a student: the cached scores are those of each prompt + candidate scored alone,
every label is ranked once, and the ranking is deterministic.

    .venv/bin/python -m pytest -q tests/test_panel.py
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from mint.apps.rare_disease.prompts import PROMPT
from mint.core import panel, schemas
from mint.core.io import MintError, read_parquet
from mint.core.panel import MODALITY, _top_scores, _Trie, assign_chunks, candidate_tokens, rank_panel, score_panel
from mint.core.prompts import build_prompt, first_item, format_answer
from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer
from tests.factories import make_cases, make_labels, write_cohort

TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True}
NOTES = ["A boy.", "A 4-year-old girl. Findings: seizures, short stature, hypotonia and a cleft palate.",
         "Findings: scoliosis.", "Hypotonia."]
# Names of 1 to many tokens, one the beginning of another, one with a digit first and punctuation.
NAMES = ["Cohen syndrome", "Noonan syndrome 1", "Noonan syndrome", "X", "3-M syndrome (type 2), autosomal",
         "Cornelia de Lange syndrome 1", "Marfan", "Kabuki syndrome"]
HEADER = PROMPT.header


@pytest.fixture(scope="module")
def student():
    prompts = [build_prompt(PROMPT.resolved(None), 3, note, "note") for note in NOTES]
    answers = [format_answer(NAMES[i:i + 3], HEADER) for i in range(len(NAMES))]
    tokenizer = train_tokenizer([render_chat(p, True) for p in prompts] * 4 + answers * 4, 400)
    model = build_tiny_llama(tokenizer, TINY_MODEL, seed=0)
    with torch.no_grad():  # sharper logits than the initialisation's, so that labels score apart
        for p in model.parameters():
            p.mul_(5.0 if p.dim() > 1 else 1.0)
    return model, tokenizer, prompts


@torch.no_grad()
def score_without_cache(model, tokenizer, prompt, name, k):
    """The reference: prompt + answer start + name tokenized as one text, one forward pass, no cache."""
    start, rest = first_item(name, HEADER, k)
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) + start
    head = tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer(text + rest, add_special_tokens=False)["input_ids"]
    logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), dim=-1)
    return sum(float(logp[t - 1, full[t]]) for t in range(len(head), len(full)))


@pytest.mark.parametrize("k", [3, 1])
def test_cached_scores_equal_scoring_each_candidate_without_the_cache(student, k):
    model, tokenizer, prompts = student
    lengths = {len(t) for t in candidate_tokens(tokenizer, "x" + first_item("", HEADER, k)[0],
                                                [first_item(n, HEADER, k)[1] for n in NAMES], NAMES)}
    assert len(lengths) >= 4  # candidates of different token lengths share a batch
    cached = score_panel(model, tokenizer, prompts, NAMES, HEADER, k, batch_size=3)  # 3 does not divide 8
    reference = [[score_without_cache(model, tokenizer, p, n, k) for n in NAMES] for p in prompts]
    assert cached.shape == (len(prompts), len(NAMES))
    np.testing.assert_allclose(cached, np.array(reference), rtol=0, atol=1e-4)
    assert len({round(x, 3) for x in cached.ravel()}) > len(NAMES)  # real scores, not a constant


def test_scores_do_not_depend_on_the_batch_size(student):
    model, tokenizer, prompts = student
    one = score_panel(model, tokenizer, prompts, NAMES, HEADER, 3, batch_size=1)
    whole = score_panel(model, tokenizer, prompts, NAMES, HEADER, 3, batch_size=len(NAMES))
    np.testing.assert_allclose(whole, one, rtol=0, atol=1e-4)


@pytest.mark.parametrize("top,seeds", [(1, 0), (1, 2), (3, 1), (5, 0), (len(NAMES), 2)])
@pytest.mark.parametrize("dead", [0, 64])
def test_the_top_search_finds_the_whole_panels_best_labels_with_their_scores(student, top, seeds, dead, monkeypatch):
    """score_panel(top=N) skips the names that cannot be among the N best; those it scores, it scores exactly,
    whether dead nodes leave the cache at every depth (0) or not at all here (64)."""
    monkeypatch.setattr(panel, "DEAD_NODES", dead)
    model, tokenizer, prompts = student
    whole = score_panel(model, tokenizer, prompts, NAMES, HEADER, 3, batch_size=3)
    pruned = score_panel(model, tokenizer, prompts, NAMES, HEADER, 3, batch_size=3, top=top, seeds=seeds)
    for w, p in zip(whole, pruned):
        best = np.argsort(-w, kind="stable")[:top]
        assert np.argsort(-p, kind="stable")[:top].tolist() == best.tolist()
        scored = np.isfinite(p)
        np.testing.assert_allclose(p[scored], w[scored], rtol=0, atol=1e-4)
    if top < len(NAMES) and seeds < len(NAMES):
        assert not np.isfinite(pruned).all()  # some names were left out
    else:
        assert np.isfinite(pruned).all()


@pytest.mark.parametrize("top,seeds", [(2, 0), (2, 8), (3, 3)])
def test_the_top_search_on_a_larger_panel_drops_dead_nodes_from_the_cache(top, seeds, monkeypatch):
    """60 names in families that share all but their last word ("... syndrome 1" to "... syndrome 5"): the
    search goes deep, dropping dead nodes from the cache at every depth, and keeps the nodes below the
    current depth that the seeds ran and that other names of their family still need."""
    from bench.panel import disease_names

    monkeypatch.setattr(panel, "DEAD_NODES", 0)
    names = [f"{family} {i}" for family in disease_names(12) for i in range(1, 6)]
    prompts = [build_prompt(PROMPT.resolved(None), 3, note, "note") for note in NOTES[1:3]]
    answers = [format_answer(names[i:i + 3], HEADER) for i in range(0, len(names), 3)]
    tokenizer = train_tokenizer([render_chat(p, True) for p in prompts] * 4 + answers * 4, 400)
    model = build_tiny_llama(tokenizer, TINY_MODEL, seed=1)
    with torch.no_grad():  # sure of some tokens, as a trained student is: the search prunes at every depth
        for p in model.parameters():
            p.mul_(5.0 if p.dim() > 1 else 1.0)
    whole = score_panel(model, tokenizer, prompts, names, HEADER, 3, batch_size=16)
    dropped = []
    real_top = panel._top_scores

    def counting(*args):
        scores, ran = real_top(*args)
        dropped.append(ran - args[3].get_seq_length() + args[4])  # nodes run - nodes left in the cache
        return scores, ran

    monkeypatch.setattr(panel, "_top_scores", counting)
    pruned = score_panel(model, tokenizer, prompts, names, HEADER, 3, batch_size=16, top=top, seeds=seeds)
    for w, p in zip(whole, pruned):
        best = np.argsort(-w, kind="stable")[:top]
        assert np.argsort(-p, kind="stable")[:top].tolist() == best.tolist()
        np.testing.assert_allclose(p[best], w[best], rtol=0, atol=1e-4)
    assert min(dropped) > 0 and not np.isfinite(pruned).all()


def test_the_top_search_ranks_a_label_equal_to_the_last_kept_one(student):
    """A name whose score ties the N-th best is kept (the bound is >=), so ties keep panel order as in the
    whole panel: the same name listed twice ties itself exactly."""
    model, tokenizer, prompts = student
    names = [*NAMES, NAMES[1]]
    whole = score_panel(model, tokenizer, prompts, names, HEADER, 3, batch_size=3)
    for top in range(1, len(names)):
        pruned = score_panel(model, tokenizer, prompts, names, HEADER, 3, batch_size=3, top=top, seeds=0)
        for w, p in zip(whole, pruned):
            assert np.argsort(-p, kind="stable")[:top].tolist() == np.argsort(-w, kind="stable")[:top].tolist()
            assert p[1] == p[-1] or not np.isfinite(p[-1])


class _BigramModel(torch.nn.Module):
    """A stand-in student whose next-token logits depend on the last token only (a table), so that a name's
    score is known in closed form. Peaked rows make some names' continuations near-certain: their score is
    then close to their prefix's, where a search that prunes too much goes wrong."""

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, input_ids, cache=None, use_cache=True, **_):
        return SimpleNamespace(logits=self.table[input_ids], cache=cache or SimpleNamespace(layers=[]))


@pytest.mark.parametrize("seed", range(4))
def test_the_top_search_is_exact_where_names_go_on_almost_surely(seed, monkeypatch):
    monkeypatch.setattr(panel, "DEAD_NODES", 0)  # and the cache's bookkeeping holds when dead nodes leave it
    rng = np.random.default_rng(seed)
    vocab = 12
    table = torch.tensor(rng.normal(0, 1, (vocab, vocab)) * rng.choice([1, 12], (vocab, 1)), dtype=torch.float32)
    first = torch.log_softmax(torch.tensor(rng.normal(0, 3, vocab), dtype=torch.float32), -1)
    tails = list({tuple(rng.integers(0, vocab, rng.integers(1, 7))) for _ in range(400)})
    logp = torch.log_softmax(table.double(), -1)
    exact = np.array([float(first[t[0]]) + sum(float(logp[a, b]) for a, b in zip(t, t[1:])) for t in tails])
    trie = _Trie(tails)
    for top in (1, 3, 10, 30):
        for seeds in (0, 5):
            scores, nodes = _top_scores(_BigramModel(table), trie, first, None, 0, top, 7, seeds)
            best = np.sort(exact)[::-1][:top]
            np.testing.assert_allclose(np.sort(scores)[::-1][:top], best, rtol=0, atol=1e-4)
            assert set(np.flatnonzero(exact >= best[-1] + 1e-4)) <= set(np.flatnonzero(np.isfinite(scores)))
            assert nodes < len(trie.token)  # it pruned


@pytest.mark.parametrize("long_name", [-2.0, -2.99, -3.0])
def test_the_top_search_keeps_a_name_that_reaches_the_last_place_on_its_final_tokens(long_name):
    """Names A = (0, 1), L = (4, 5, 1), B = (2, 3), each token after the first certain: A scores -1, B -3,
    L its first token's log-probability. After the first step A and B are scored, and the 2nd best known,
    -3, bounds the search; L's prefix (4, 5) is then at L's own score, so L is kept however close it comes
    to -3 (a tie included: L is listed before B, so it ranks first among equals)."""
    table = torch.zeros(6, 6)
    table[[0, 2, 4, 5], [1, 3, 5, 1]] = 50.0  # log p = 0 in float32
    first = torch.full((6,), -40.0)
    first[[0, 2, 4]] = torch.tensor([-1.0, -3.0, long_name])
    scores, _ = _top_scores(_BigramModel(table), _Trie([(0, 1), (4, 5, 1), (2, 3)]), first, None, 0, 2, 4, 0)
    assert np.argsort(-scores, kind="stable")[:2].tolist() == [0, 1]
    assert scores[1] == float(first[4])


def test_the_trie_runs_a_shared_prefix_once_and_keeps_each_path_in_one_chunk():
    tails = [[5, 1, 2], [5, 1, 2, 3], [5, 1, 4], [7], [7, 8, 9, 10, 11, 12], [6, 1]]
    chunks, chunk_of = assign_chunks(tails, capacity=4)
    assert chunk_of[3] == -1  # one token: scored from the prompt's own logits, no node
    for j, tail in enumerate(tails):
        if chunk_of[j] >= 0:  # every prefix a candidate scores from lies in its chunk, after its own parent
            nodes = chunks[chunk_of[j]]
            places = [nodes[tuple(tail[:d])] for d in range(1, len(tail))]
            assert places == sorted(places)
    assert sorted(len(c) for c in chunks) == [4, 5]  # (5), (5,1), (5,1,2), (6) | the 5-node path of [7, 8, ...]
    assert sum(map(len, chunks)) < sum(len(t) - 1 for t in tails)  # (5) and (5, 1) run once for three names


def test_a_tokenizer_that_merges_across_the_cut_is_refused(student):
    _, tokenizer, _ = student
    with pytest.raises(MintError, match="candidate 'syndrome'"):
        candidate_tokens(tokenizer, "1. Noon", ["an syndrome"], ["syndrome"])  # " Noonan" is one token


@pytest.fixture()
def ranked(student, tmp_path, monkeypatch):
    """Rankings written by `rank_panel` from a saved tiny student, twice."""
    model, tokenizer, _ = student
    model.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    ids = [f"L{i}" for i in range(len(NAMES))]
    cases = make_cases(ids[:5], ["test", "test", "train", "test", "test"], note=[*NOTES, "Seizures."])
    files = write_cohort(tmp_path, cases, make_labels(ids, NAMES))
    outs = []
    for n in range(2):
        out = tmp_path / f"panel{n}.parquet"
        rank_panel(str(tmp_path / "student"), files["cases"], files["candidates"], out,
                   prompt=PROMPT.resolved(None), text_field="note", k=3, batch_size=3, chunk=3, kind="text")
        outs.append(out)
    return outs, cases, ids


def test_the_top_ranking_writes_each_cases_best_labels_of_the_whole_ranking(ranked, tmp_path):
    (whole, _), cases, ids = ranked
    out = tmp_path / "top.parquet"
    rank_panel(str(whole.parent / "student"), whole.parent / "cases.parquet", whole.parent / "candidates.parquet", out,
               prompt=PROMPT.resolved(None), text_field="note", k=3, batch_size=3, chunk=3, top=3, kind="text")
    top = read_parquet(out, schemas.RANKINGS).sort("case_id", "rank")
    expected = read_parquet(whole, schemas.RANKINGS).filter(pl.col("rank") <= 3).sort("case_id", "rank")
    assert top.select("case_id", "label_id", "rank").equals(expected.select("case_id", "label_id", "rank"))
    np.testing.assert_allclose(top["score"].to_numpy(), expected["score"].to_numpy(), rtol=0, atol=1e-5)


def test_the_ranking_covers_every_panel_label_once_and_is_deterministic(ranked):
    (first, second), cases, ids = ranked
    rankings = read_parquet(first, schemas.RANKINGS)
    test_ids = sorted(cases.filter(pl.col("split") == "test")["case_id"].to_list())
    assert rankings["case_id"].unique(maintain_order=True).to_list() == test_ids  # chunks of 3 of 4 cases
    assert set(rankings["modality"]) == {MODALITY}
    for _, group in rankings.group_by("case_id"):
        assert sorted(group["label_id"]) == sorted(ids)
        assert sorted(group["rank"]) == list(range(1, len(ids) + 1))
        best_first = group.sort("rank")["score"].to_list()
        assert best_first == sorted(best_first, reverse=True)
    assert first.read_bytes() == second.read_bytes()


@torch.no_grad()
def test_a_vision_student_scores_against_the_cached_image_prompt_as_without_the_cache(tmp_path):
    """The image is part of the prompt: encoded once per case, its cache reused by every candidate."""
    from PIL import Image

    from mint.core.students.vision import build_tiny_llava, encode_prompts

    shapes = ["Circle", "Square", "Triangle", "Star shape", "X"]
    system, question = "You name shapes.", "Which shapes? Name 2."
    corpus = [f"{system} {question}"] + [format_answer([a, b], HEADER) for a in shapes for b in shapes]
    model, processor = build_tiny_llava(corpus, image_size=32, patch=16, vocab_size=300, seed=0)
    model.eval()
    paths = []
    for seed in range(2):
        pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        paths.append(tmp_path / f"{seed}.png")
        Image.fromarray(pixels).save(paths[-1])
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": question}]] * 2
    cached = score_panel(model, processor, prompts, shapes, HEADER, 2, batch_size=2, images=[str(p) for p in paths])
    reference = np.empty_like(cached)
    for i, path in enumerate(paths):
        picture = [[Image.open(path).convert("RGB")]]
        for j, name in enumerate(shapes):
            start, rest = first_item(name, HEADER, 2)
            head = encode_prompts(processor, prompts[:1], picture, start)["input_ids"].shape[1]
            enc = encode_prompts(processor, prompts[:1], picture, start + rest)
            logp = torch.log_softmax(model(**enc).logits[0].float(), dim=-1)
            ids = enc["input_ids"][0]
            reference[i, j] = sum(float(logp[t - 1, ids[t]]) for t in range(head, len(ids)))
    np.testing.assert_allclose(cached, reference, rtol=0, atol=1e-4)
    assert not np.allclose(cached[0], cached[1], atol=1e-3)  # the image changes the scores
    best = score_panel(model, processor, prompts, shapes, HEADER, 2, batch_size=2, images=[str(p) for p in paths],
                       top=2, seeds=0)
    for r, b in zip(reference, best):
        top = np.argsort(-r, kind="stable")[:2]
        assert np.argsort(-b, kind="stable")[:2].tolist() == top.tolist()
        np.testing.assert_allclose(b[top], r[top], rtol=0, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_cut_answer_is_the_answer_the_student_learns(k):
    """Answer start + the name's part is how `format_answer` (the SFT and preference targets) begins."""
    start, rest = first_item("Noonan syndrome 1", HEADER, k)
    answer = format_answer(["Noonan syndrome 1", "Cohen syndrome", "X"][:k], HEADER)
    assert answer.startswith(start + rest) and start.endswith("1.") and rest.startswith(" Noonan")
    assert (start + rest == answer) == (k == 1)


def test_full_panel_rows_follow_the_students_in_the_report():
    from mint.core.app import load_application
    from mint.core.report import PANEL_SUFFIX, display_name, row_labels

    rows = row_labels(load_application("rare_disease"))
    order = list(rows)
    assert order.index(f"orpo{PANEL_SUFFIX}") > order.index("orpo")
    assert display_name(f"orpo{PANEL_SUFFIX}", rows) == "MINT (ORPO) (full panel)"
    assert display_name(f"simpo{PANEL_SUFFIX}", rows) == "simpo (full panel)"
