"""Cases/s of the full-panel ranking (`mint.core.panel`, the prompt's cache kept) against scoring each
candidate without the prompt cache.

Both score every label of a panel of `--labels` made-up disease names (2 to 8 words, as OMIM names
run) for the same rare-disease questions (made-up notes of 2 to 14 findings, `bench.predict.questions`),
with the same model (`--names-from` ranks a real panel's names instead):

- cached: `mint.core.panel.score_panel`: the prompt once per case, then the names' token trie (a
  prefix that several names share run once) against its key/value cache, `--batch-size` trie nodes
  a forward pass;
- without the cache: each candidate as the whole prompt + answer start + name, `--batch-size`
  candidates a batch (right-padded, the logits kept only where the candidates' tokens are), so every
  candidate pays for the prompt again.

The model has the builtin student's shape from `--student-config` (default the benchmark's,
config/rare_disease/students/benchmark.yaml: 4 layers, hidden 128, vocabulary up to 4,000), freshly initialised,
with a tokenizer trained on the bench's prompts and names: the cost of a forward pass does not
depend on the weights. Prints the median cases/s of each over `--repeats` (alternating), by wall
clock and by the process's CPU time (what a busy machine distorts less), their ratios, and the
largest difference between the two scores of a (case, label).

A third way, `--top N`: `score_panel(top=N)`, the exact N best labels of each case without running the
trie nodes that cannot lead to them (`mint.core.panel._top_scores`); the bench checks that its N best
labels and their scores are the whole panel's. How much it skips depends on how sure the student is,
so measure it on a trained student (`--model`, a trained student folder) and real cases
(`--cases-from`, a cohort's cases.parquet: its `--split` cases' notes, the benchmark's prompt):

    python -m bench.panel --cases 8 --labels 800 --repeats 3 --threads 1
    python -m bench.panel --model runs/benchmark/results/train/seed1/orpo --skip-uncached --skip-rows \
        --cases-from runs/benchmark/results/cohort/cases.parquet \
        --names-from runs/benchmark/results/cohort/candidates.parquet --top 10 --cases 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bench.predict import questions
from mint.apps.rare_disease.prompts import PROMPT
from mint.apps.rare_disease.student import DEFAULT_TINY
from mint.core.config import deep_update, load_yaml
from mint.core.panel import candidate_tokens, score_panel
from mint.core.prompts import build_prompt, first_item, format_answer
from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer

K = 3
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "do", "pa", "zi", "bo", "fe", "gu", "hy", "jo"]


def disease_names(n: int, seed: int = 2) -> list[str]:
    """`n` distinct made-up disease names of 2 to 8 words (a made-up eponym, kind words, a type number)."""
    rng = np.random.default_rng(seed)
    kinds = ["syndrome", "dysplasia", "intellectual developmental disorder", "autosomal dominant",
             "autosomal recessive", "deficiency", "type", "with", "and", "congenital", "muscular dystrophy"]
    names: dict[str, None] = {}
    while len(names) < n:
        eponym = "".join(rng.choice(SYLLABLES, rng.integers(2, 5))).capitalize()
        words = [eponym, *rng.choice(kinds, rng.integers(1, 5), replace=False)]
        names[" ".join(words[:8]) + (f" {rng.integers(1, 30)}" if rng.random() < 0.6 else "")] = None
    return list(names)


def build_model(student_config: Path, prompts: list, names: list[str], seed: int = 0):
    """(model, tokenizer): the student config's model shape (merged over the builtin student's settings), its
    tokenizer trained on the bench's texts."""
    cfg = deep_update(DEFAULT_TINY, load_yaml(student_config))  # as build_builtin_student merges it
    answers = [format_answer(names[i:i + K], PROMPT.header) for i in range(0, len(names), K)]
    # Made-up words besides, so that the vocabulary fills up to the config's size, as the real corpus fills it.
    rng = np.random.default_rng(seed)
    filler = [" ".join("".join(rng.choice(SYLLABLES, rng.integers(1, 5))) for _ in range(12))
              for _ in range(int(cfg["vocab_size"]))]
    texts = [render_chat(p, True) for p in prompts] + answers + filler
    tokenizer = train_tokenizer(texts, int(cfg["vocab_size"]))
    return build_tiny_llama(tokenizer, cfg["model"], seed=seed).eval(), tokenizer


@torch.no_grad()
def score_without_cache(model, tokenizer, prompts: list, names: list[str], batch_size: int) -> np.ndarray:
    """The plain way: for each case, every (prompt + answer start + name) run through the model whole."""
    start = first_item("", PROMPT.header, K)[0]
    continuations = [first_item(n, PROMPT.header, K)[1] for n in names]
    scores = np.empty((len(prompts), len(names)))
    for i, prompt in enumerate(prompts):
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) + start
        head = tokenizer(text, add_special_tokens=False)["input_ids"]
        tails = candidate_tokens(tokenizer, text, continuations, names)
        for s in range(0, len(names), batch_size):
            batch = tails[s:s + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([head + t + [tokenizer.pad_token_id] * (width - len(t)) for t in batch])
            # Right-padded to one length, every candidate starts at len(head): keep the logits from there on.
            logits = model(input_ids=ids, logits_to_keep=width + 1).logits[:, :-1]
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, len(head):, None])[..., 0]
            inside = torch.arange(width)[None, :] < torch.tensor([len(t) for t in batch])[:, None]
            scores[i, s:s + len(batch)] = (logp * inside).sum(dim=1).double().numpy()
    return scores


@torch.no_grad()
def score_rows_with_cache(model, tokenizer, prompts: list, names: list[str], batch_size: int) -> np.ndarray:
    """The way before the trie: the prompt's cache copied for each batch of candidates, one row per candidate
    (right-padded), so a prefix that several names share goes through the model once per name."""
    start = first_item("", PROMPT.header, K)[0]
    continuations = [first_item(n, PROMPT.header, K)[1] for n in names]
    scores = np.empty((len(prompts), len(names)))
    for i, prompt in enumerate(prompts):
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) + start
        tails = candidate_tokens(tokenizer, text, continuations, names)
        out = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        order = sorted(range(len(tails)), key=lambda j: len(tails[j]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(tails[j]) for j in idx)
            ids = torch.tensor([tails[j] + [tokenizer.pad_token_id] * (width - len(tails[j])) for j in idx])
            cache = copy.deepcopy(out.cache)
            cache.batch_repeat_interleave(len(idx))
            logits = model(input_ids=ids, cache=cache, use_cache=True).logits[:, :-1].float()
            logp = logits.gather(-1, ids[:, 1:, None])[..., 0] - torch.logsumexp(logits, dim=-1)
            inside = torch.arange(width - 1)[None, :] < torch.tensor([len(tails[j]) - 1 for j in idx])[:, None]
            scores[i, idx] = (first[ids[:, 0]] + (logp * inside).sum(dim=1)).double().numpy()
    return scores


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--labels", type=int, default=800, help="panel size (the phenopacket benchmark's: 800)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="trie nodes (score_panel) or candidates (the other ways) a forward pass "
                        "(evaluation.panel_batch_size)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--student-config", type=Path, default=Path("config/rare_disease/students/benchmark.yaml"))
    p.add_argument("--skip-uncached", action="store_true", help="time the cached ways only")
    p.add_argument("--skip-rows", action="store_true", help="leave out the way 'prompt cache, a row per name'")
    p.add_argument("--model", type=Path, help="a trained student folder (instead of a fresh model of "
                                               "--student-config's shape)")
    p.add_argument("--cases-from", type=Path, help="a cohort's cases.parquet: rank its first --cases notes of "
                                                    "--split (instead of made-up notes)")
    p.add_argument("--split", default="test")
    p.add_argument("--top", type=int, help="also time score_panel(top=N), the exact N best labels only")
    p.add_argument("--seeds", type=int, default=32, help="names the top search scores first (score_panel's seeds)")
    p.add_argument("--names-from", type=Path,
                   help="a candidates.parquet whose names to rank instead of made-up ones (e.g. a benchmark run's "
                        "results/cohort/candidates.parquet); --labels then takes its first N")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cases_from:
        notes = pl.read_parquet(a.cases_from).filter(pl.col("split") == a.split)["note"].to_list()[:a.cases]
        prompts = [build_prompt(PROMPT.resolved(None), K, note, "note") for note in notes]
    else:
        prompts = questions(a.cases)
    names = (pl.read_parquet(a.names_from)["name"].to_list()[:a.labels] if a.names_from
             else disease_names(a.labels))
    if a.model:
        from mint.core.students.load import load_trained

        model, tokenizer = load_trained(str(a.model), kind="text")
        model.eval()
    else:
        model, tokenizer = build_model(a.student_config, prompts, names)
    texts = [tokenizer.apply_chat_template(q, add_generation_prompt=True, tokenize=False) for q in prompts]
    n_prompt = statistics.median(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    start, continuations = first_item("", PROMPT.header, K)[0], [first_item(n, PROMPT.header, K)[1] for n in names]
    tails = candidate_tokens(tokenizer, texts[0] + start, continuations, names)
    n_nodes = len({tuple(t[:d]) for t in tails for d in range(1, len(t))})
    ways = {"trie + prompt cache (score_panel)":
            lambda: score_panel(model, tokenizer, prompts, names, PROMPT.header, K, batch_size=a.batch_size)}
    if a.top:
        ways[f"top-{a.top} search (score_panel top={a.top})"] = \
            lambda: score_panel(model, tokenizer, prompts, names, PROMPT.header, K, batch_size=a.batch_size, top=a.top,
                                seeds=a.seeds)
    if not a.skip_rows:
        ways["prompt cache, a row per name"] = \
            lambda: score_rows_with_cache(model, tokenizer, prompts, names, a.batch_size)
    if not a.skip_uncached:
        ways["without the prompt cache"] = lambda: score_without_cache(model, tokenizer, prompts, names, a.batch_size)
    wall = {w: [] for w in ways}
    cpu = {w: [] for w in ways}
    scores = {}
    for _ in range(a.repeats):
        for w, run in ways.items():
            t, c = time.perf_counter(), time.process_time()
            scores[w] = run()
            wall[w].append(time.perf_counter() - t)
            cpu[w].append(time.process_time() - c)
    shape = a.model or f"{a.student_config} shape"
    print(f"model: {shape}, {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"vocabulary {len(tokenizer)}; cases {a.cases} (prompt median {n_prompt:.0f} tokens), labels {a.labels} "
          f"(name {statistics.mean(map(len, tails)):.1f} tokens on average, {sum(len(t) - 1 for t in tails)} tokens "
          f"after the first, {n_nodes} trie nodes), batch size {a.batch_size}, threads {a.threads}, "
          f"repeats {a.repeats}")
    rates = {w: (a.cases / statistics.median(wall[w]), a.cases / statistics.median(cpu[w])) for w in ways}
    for w in ways:
        print(f"{w + ':':36s}{rates[w][0]:8.2f} cases/s wall, {rates[w][1]:8.2f} per CPU second  "
              f"(runs: {', '.join(f'{x:.1f}' for x in wall[w])} s wall, {', '.join(f'{x:.1f}' for x in cpu[w])} s CPU)")
    first, *others = ways
    for w in others:
        if w.startswith("top-"):
            continue
        print(f"ratio to {w}: {rates[first][0] / rates[w][0]:.1f}x wall, {rates[first][1] / rates[w][1]:.1f}x CPU; "
              f"largest score difference: {np.abs(scores[first] - scores[w]).max():.1e}")
    if a.top:
        w = next(w for w in ways if w.startswith("top-"))
        whole, pruned = scores[first], scores[w]
        best = np.argsort(-whole, axis=1, kind="stable")[:, :a.top]
        same = (best == np.argsort(-pruned, axis=1, kind="stable")[:, :a.top]).all(axis=1)
        gap = np.abs(np.take_along_axis(whole, best, 1) - np.take_along_axis(pruned, best, 1)).max()
        print(f"top-{a.top} search against the whole panel: {rates[w][0] / rates[first][0]:.1f}x wall, "
              f"{rates[w][1] / rates[first][1]:.1f}x CPU; the same {a.top} best labels in order in {same.sum()} of "
              f"{len(same)} cases, their scores within {gap:.1e}; labels scored "
              f"{np.isfinite(pruned).mean():.1%} (median a case {np.median(np.isfinite(pruned).sum(1)):.0f} "
              f"of {len(names)})")


if __name__ == "__main__":
    main()
