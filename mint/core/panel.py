"""Full-panel ranking by a student: every candidate label scored by how likely the student names it first.

Free generation gives a student's k answers; this ranks the whole panel, so a student gets a real
top-10 and MRR, comparable with the teacher's and the rankers', and cannot name a label outside the
panel. A label's score is the student's log-likelihood that its answer to the case's prompt (the
prompt `mint.core.predict` asks, the generation prompt, then the answer's start `HEADER\\n1.`) goes
on with that label's name: `log p(" <name>\\n" | prompt + "HEADER\\n1.")` when the answer names k > 1
labels (the line break says the name ends there), `log p(" <name>" | ...)` when k = 1.

The prompt is run once per case and its key/value cache kept; the candidates' tokens then go
through the model in batches of `batch_size` against copies of that cache, so a case costs one
prompt plus the candidates' few tokens each, instead of a prompt per candidate. A vision student's
image is part of the prompt, so it is encoded once per case too.

    python -m mint.core.panel results/train/seed42/orpo results/cohort/cases.parquet \
        results/cohort/candidates.parquet results/panel/seed42/orpo.parquet \
        --prompt '{"system": "...", "user": "{note} ({k})", "header": "A:"}' --text-field note --k 3
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mint.core.cohort import add_split_argument, cases_in, load_cases, load_labels
from mint.core.io import MintError, apply_output_mode, provenance
from mint.core.predict import add_prompt_arguments, fit_prompts, parse_prompt
from mint.core.prompts import CasePrompts, build_prompt, first_item
from mint.core.rankings import RankingsWriter
from mint.core.students.kind import check_student_input
from mint.core.workflow import rank_log

MODALITY = "student"  # the modality of a student's rankings (RANKINGS.modality)
DEAD_NODES = 64  # the top search drops dead nodes from a case's cache when more are dead than this and than live


def candidate_tokens(tokenizer, text: str, continuations: Sequence[str], names: Sequence[str]) -> list[list[int]]:
    """The token ids each continuation adds to `text`, as `text + continuation` tokenizes as one string.

    Refused, naming the label, when that tokenization does not begin with `text`'s own tokens (a
    tokenizer that merges across the cut): the prompt's cache would then not be the candidate's.
    """
    head = tokenizer(text, add_special_tokens=False)["input_ids"]
    fulls = tokenizer([text + c for c in continuations], add_special_tokens=False)["input_ids"]
    tails = []
    for name, full in zip(names, fulls):
        if full[:len(head)] != head or len(full) == len(head):
            raise MintError(f"candidate {name!r}: the prompt followed by the name does not tokenize as the prompt's "
                            "tokens then the name's; this tokenizer cannot score the panel against a prompt cache")
        tails.append(full[len(head):])
    return tails


def _forward(model, cache=None, **inputs):
    """(logits, key/value cache) of a forward pass that goes on from `cache` (transformers 5.24 calls the
    argument and the output's field `cache`; `past_key_values` before)."""
    out = model(**inputs, cache=cache, use_cache=True)
    return out.logits, out.cache


def _additive_mask(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """The attention mask transformers adds to the scores: 0 where `allowed`, the dtype's minimum elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)


def assign_chunks(
    tails: Sequence[Sequence[int]], capacity: int,
) -> tuple[list[dict[tuple[int, ...], int]], list[int]]:
    """The candidates' token prefixes that must go through the model, cut into chunks of about `capacity`.

    A candidate of tokens t scores `log p(t[0])` from the prompt's own logits, then `log p(t[d])` from
    the output at its prefix `t[:d]` (d = 1 .. len(t) - 1): those prefixes are the nodes of a token
    trie, and candidates that begin alike share them ("Noonan syndrome" and "Noonan syndrome 1"). The
    candidates are taken in token order, so neighbours share prefixes; each chunk maps its prefixes to
    their places, every node after its own ancestors. A chunk is closed when the next candidate's new
    prefixes would take it past `capacity` (then its whole path starts the next chunk: a candidate is
    never split across chunks, so one longer than `capacity` gets a chunk of its own size).
    Returns (the chunks, the chunk of each candidate: -1 for a one-token candidate, which needs no node).
    """
    chunks: list[dict[tuple[int, ...], int]] = []
    chunk_of = [-1] * len(tails)
    current: dict[tuple[int, ...], int] = {}
    for j in sorted(range(len(tails)), key=lambda j: list(tails[j])):
        path = [tuple(tails[j][:d]) for d in range(1, len(tails[j]))]
        if not path:
            continue
        new = [q for q in path if q not in current]
        if current and len(current) + len(new) > capacity:
            chunks.append(current)
            current, new = {}, path
        for q in new:
            current[q] = len(current)
        chunk_of[j] = len(chunks)
    if current:
        chunks.append(current)
    return chunks, chunk_of


class _Chunk:
    """One forward pass of trie nodes after a prompt of `prompt_len` tokens: ids, positions, the tree mask,
    and which (node, next token) pairs add to which candidate's score."""

    def __init__(self, nodes: dict[tuple[int, ...], int], members: list[int], tails, device, dtype):
        n = len(nodes)
        prefixes = list(nodes)
        self.ids = torch.tensor([[q[-1] for q in prefixes]], device=device)
        self.depth = torch.tensor([[len(q) - 1 for q in prefixes]], device=device)
        seen = torch.zeros((n, n), dtype=torch.bool)
        for q, i in nodes.items():
            seen[i, [nodes[q[:e]] for e in range(1, len(q) + 1)]] = True  # itself and its ancestors
        self.tree = _additive_mask(seen, dtype).to(device)
        rows, nexts, owners = [], [], []
        for j in members:
            t = tails[j]
            for d in range(1, len(t)):
                rows.append(nodes[tuple(t[:d])])
                nexts.append(t[d])
                owners.append(j)
        self.rows = torch.tensor(rows, device=device)
        self.nexts = torch.tensor(nexts, device=device)
        self.owners = torch.tensor(owners, device=device)

    def scores(self, model, prompt_cache, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the candidates these scores belong to, the sum of their nodes' next-token log-probabilities)."""
        n = self.ids.shape[1]
        mask = torch.cat([torch.zeros((n, prompt_len), dtype=self.tree.dtype, device=self.tree.device), self.tree], 1)
        cache = copy.deepcopy(prompt_cache)  # the forward pass appends to it
        logits = _forward(model, cache, input_ids=self.ids, position_ids=prompt_len + self.depth,
                          attention_mask=mask[None, None])[0][0].float()
        # log p(token) = its logit - logsumexp of the row: no vocabulary-wide log_softmax written out.
        logp = logits[self.rows, self.nexts] - torch.logsumexp(logits, dim=-1)[self.rows]
        return self.owners, logp


class _Trie:
    """The candidates' token prefixes as a trie, for the pruned search of `score_panel(top=N)`.

    Prefix p (any `t[:d]`, d >= 1, of a candidate's tokens t) has its last token, its depth d - 1,
    its parent (-1 at d = 1), its ancestors (`paths[p]`: itself included, root first, padded with -1),
    and its children; a prefix with children is a node that must go through the model before they
    can be scored.
    """

    def __init__(self, tails: Sequence[Sequence[int]]):
        index: dict[tuple[int, ...], int] = {}
        for t in tails:
            for d in range(1, len(t) + 1):
                index.setdefault(tuple(t[:d]), len(index))
        prefixes = list(index)
        self.token = np.array([q[-1] for q in prefixes])
        self.depth = np.array([len(q) - 1 for q in prefixes])
        self.parent = np.array([index[q[:-1]] if len(q) > 1 else -1 for q in prefixes])
        self.paths = np.full((len(prefixes), max(map(len, prefixes))), -1)
        for p, q in enumerate(prefixes):
            self.paths[p, :len(q)] = [index[q[:e]] for e in range(1, len(q) + 1)]
        self.children: list[list[int]] = [[] for _ in prefixes]
        for p in range(len(prefixes)):
            if self.parent[p] >= 0:
                self.children[self.parent[p]].append(p)
        self.end = np.array([index[tuple(t)] for t in tails])  # each candidate's whole prefix
        self.labels_at: dict[int, list[int]] = {}
        for j, p in enumerate(self.end):
            self.labels_at.setdefault(int(p), []).append(j)
        self.roots = np.flatnonzero(self.parent < 0)


def _top_scores(model, trie: _Trie, first_logp: torch.Tensor, prompt_cache, prompt_len: int, top: int,
                batch_size: int, seeds: int) -> tuple[np.ndarray, int]:
    """One case's exact scores of every candidate that can be among its `top` best; -inf for the others.

    A name's score is a sum of log-probabilities, each <= 0, so a prefix's score bounds every name
    that goes on from it. The `seeds` names whose first token is likeliest are scored first; the
    `top`-th best score known so far, tau, only rises as more names are scored. The trie is then
    walked depth by depth, and a prefix goes through the model only when its score is >= tau: a
    name below tau anywhere on its path scores below `top` names already known, so it cannot be
    among the `top` best (ties included: a prefix equal to tau is kept). Every node goes through the
    model once, its key/value appended to the case's cache; each attends to the prompt and to its
    own ancestors (the tree mask over the cache so far). Nodes that no later node descends from are
    dropped from the cache between depths, so that attention stays as wide as the live paths.
    Returns (scores, nodes run).
    """
    device, dtype = first_logp.device, model.dtype
    n_prefixes = len(trie.token)
    known = torch.full((n_prefixes,), float("-inf"), dtype=torch.float64)
    known[trie.roots] = first_logp[trie.token[trie.roots]].double().cpu()
    slot = np.full(n_prefixes, -1)  # where a prefix's key/value lies in the cache after the prompt
    label_scores = np.full(len(trie.end), float("-inf"))
    done = np.zeros(len(trie.end), dtype=bool)
    cache, filled, ran = prompt_cache, 0, 0

    def finish(prefixes) -> None:
        for p in prefixes:
            for j in trie.labels_at.get(int(p), ()):
                label_scores[j], done[j] = float(known[p]), True

    def tau() -> float:
        scored = label_scores[done]
        return float(np.partition(scored, -top)[-top]) if scored.size >= top else float("-inf")

    def run(nodes: list[int]) -> None:
        """Nodes whose ancestors are in the cache or before them in `nodes`: through the model, children scored."""
        nonlocal cache, filled, ran
        for s in range(0, len(nodes), batch_size):
            batch = nodes[s:s + batch_size]
            n = len(batch)
            slot[batch] = filled + np.arange(n)
            allowed = torch.zeros((n, prompt_len + filled + n), dtype=torch.bool)
            allowed[:, :prompt_len] = True
            paths = trie.paths[batch]
            rows, depths = np.nonzero(paths >= 0)
            seen = slot[paths[rows, depths]]
            if (seen < 0).any():
                raise RuntimeError("top search: a node's ancestor is not in the cache")  # a bug, not the input's
            allowed[rows, prompt_len + seen] = True
            mask = _additive_mask(allowed, dtype)
            logits, cache = _forward(model, cache, input_ids=torch.from_numpy(trie.token[batch][None]).to(device),
                                     position_ids=torch.from_numpy(prompt_len + trie.depth[batch][None]).to(device),
                                     attention_mask=mask[None, None].to(device))
            filled += n
            ran += n
            logits = logits[0].float()
            edge_rows = np.array([i for i, p in enumerate(batch) for _ in trie.children[p]])
            kids = np.array([c for p in batch for c in trie.children[p]])
            logp = (logits[edge_rows, trie.token[kids]] - torch.logsumexp(logits, dim=-1)[edge_rows]).double().cpu()
            parents = np.asarray(batch)[edge_rows]
            for d in np.unique(trie.depth[parents]):  # a parent in this batch is scored before its children
                at = np.flatnonzero(trie.depth[parents] == d)
                known[kids[at]] = known[parents[at]] + logp[at]
            finish(kids)

    finish(trie.roots)
    # Seeds: the names of the likeliest first tokens, whole (their paths' nodes, parents first).
    seed_names = np.argsort(-known[trie.paths[trie.end, 0]].numpy(), kind="stable")[:seeds]
    seed_paths = trie.paths[trie.end[seed_names]]
    seed_nodes = sorted({int(a) for a in seed_paths[seed_paths >= 0]} - set(trie.end[seed_names].tolist()),
                        key=lambda p: trie.depth[p])
    run(seed_nodes)
    frontier = [p for p in trie.roots if trie.children[p]]
    while frontier:
        bound = tau()
        todo = [p for p in frontier if known[p] >= bound]
        if todo and filled > DEAD_NODES:
            _drop_dead_nodes(cache, trie, slot, todo, prompt_len)
            filled = int((slot >= 0).sum())
        run([p for p in todo if slot[p] == -1])
        frontier = [c for p in todo for c in trie.children[p] if trie.children[c]]
    return label_scores, ran


def _drop_dead_nodes(cache, trie: _Trie, slot: np.ndarray, todo: list[int], prompt_len: int) -> None:
    """Keep in `cache` the prompt and the live nodes only, when more are dead than `DEAD_NODES` and than live;
    `slot` follows (-2: run, and gone from the cache). Live: the run nodes on a path to a node of `todo` or
    below one (a seed's)."""
    cached = np.flatnonzero(slot >= 0)
    live = cached[np.isin(cached, trie.paths[todo].ravel()) | np.isin(trie.paths[cached], todo).any(axis=1)]
    live = live[np.argsort(slot[live])]
    filled = len(cached)
    if filled - len(live) > max(DEAD_NODES, len(live)):
        keep = np.concatenate([np.arange(prompt_len), prompt_len + slot[live]])
        for layer in cache.layers:  # self-attention layers only (Mllama's cross-attention ones hold the image)
            if getattr(layer, "keys", None) is not None and layer.keys.shape[-2] == prompt_len + filled:
                at = torch.from_numpy(keep).to(layer.keys.device)
                layer.keys, layer.values = layer.keys[..., at, :], layer.values[..., at, :]
        slot[slot >= 0] = -2
        slot[live] = np.arange(len(live))


@torch.no_grad()
def score_panel(
    model, processing, prompts: Sequence[list[dict]], names: Sequence[str], header: str, k: int, *,
    batch_size: int, images: Sequence[str] | None = None, progress: bool = False, top: int | None = None,
    seeds: int = 32,
) -> np.ndarray:
    """(cases x labels) log-likelihoods of the answer to prompt i naming label j first (see the module).

    `processing`: a text student's tokenizer, or a vision student's processor, which then sees
    `images[i]` (a path) with prompt i. The score is the sum of the name's token log-probabilities,
    not divided by its length: it is then the probability of the event "the first item is this
    name" (the line break after it closes the name), which a per-token average is not; a longer
    name costs only what the student thinks it costs. Ties keep panel order (`RankingsWriter`).

    The candidates' tokens go through the model as a token trie (`assign_chunks`): a prefix that
    several names share is run once, `batch_size` trie nodes a forward pass, each attending to the
    prompt's cache and to its own ancestors only (a tree-shaped attention mask, positions by depth).

    `top=N`: only each case's N best labels are sure to be scored (exactly; `_top_scores`): a
    label that cannot be among them may be left at -inf, and its trie nodes are not run.
    """
    model.eval()
    if "flash" in str(getattr(model.config, "_attn_implementation", "")):
        raise MintError("full-panel ranking needs an attention that takes a custom mask (sdpa or eager), "
                        f"not {model.config._attn_implementation}")
    tokenizer = getattr(processing, "tokenizer", processing)
    if not prompts:
        return np.zeros((0, len(names)))
    start = first_item("", header, k)[0]
    continuations = [first_item(name, header, k)[1] for name in names]
    if images is None:
        texts = [processing.apply_chat_template(p, add_generation_prompt=True, tokenize=False) + start
                 for p in prompts]
    else:
        from mint.core.students.vision import render_prompts

        texts = render_prompts(processing, prompts, [[None]] * len(prompts), start)
    # The tokens a name adds do not depend on the case: every prompt ends in the same answer start.
    tails = candidate_tokens(tokenizer, texts[0], continuations, names)
    device = model.device
    if top is None:
        chunks, chunk_of = assign_chunks(tails, batch_size)
        members: list[list[int]] = [[] for _ in chunks]
        for j, c in enumerate(chunk_of):
            if c >= 0:
                members[c].append(j)
        passes = [_Chunk(nodes, m, tails, device, model.dtype) for nodes, m in zip(chunks, members)]
    else:
        trie = _Trie(tails)
    firsts = torch.tensor([t[0] for t in tails], device=device)
    scores = np.empty((len(prompts), len(names)))
    for i in tqdm(range(len(prompts)), desc="rank panel", unit="case", disable=not progress):
        if images is None:
            enc = tokenizer(texts[i], return_tensors="pt", add_special_tokens=False)
        else:
            from mint.core.images import open_image
            from mint.core.students.vision import encode_prompts

            enc = encode_prompts(processing, [prompts[i]], [[open_image(images[i], "RGB")]], start)
        logits, prompt_cache = _forward(model, **enc.to(device))
        prompt_len = prompt_cache.get_seq_length()
        if top is not None:
            first_logp = torch.log_softmax(logits[0, -1].float(), dim=-1)
            scores[i] = _top_scores(model, trie, first_logp, prompt_cache, prompt_len, top, batch_size, seeds)[0]
            continue
        row = torch.log_softmax(logits[0, -1].float(), dim=-1)[firsts]
        for chunk in passes:
            owners, logp = chunk.scores(model, prompt_cache, prompt_len)
            row.index_add_(0, owners, logp)
        scores[i] = row.cpu().double().numpy()
    return scores


def rank_panel(
    model_dir: str, cases_path: str | Path, candidates_path: str | Path, out_path: str | Path, *,
    prompt: Mapping[str, str], text_field: str | None, k: int, batch_size: int = 256, threads: int = 1,
    split: str = "test", image_field: str | None = None, chunk: int = 256, top: int | None = None,
    kind: str | None = None,
) -> None:
    """RANKINGS (modality `student`) of every candidate label for each `split` case, by the student in `model_dir`.

    The student reads what it reads in `mint.core.predict` (the case's `text_field` and/or the image at
    its `image_field` path) and is asked the same question; `batch_size` candidates go through the model
    at once. The rankings are written `chunk` cases at a time. `top=N`: only each case's N best labels,
    scored exactly and written (ranks 1..N); the others are not run through the model (`score_panel`).
    `kind`: the application's declared student kind, for a model whose folder records none.
    """
    from mint.core.students.load import load_trained

    torch.set_num_threads(threads)
    cases = cases_in(load_cases(cases_path), split)
    for field in (text_field, image_field):
        if field is not None and field not in cases.columns:
            raise MintError(f"{cases_path}: no column {field!r}, the student's input")
    labels = load_labels(candidates_path)
    if labels.height == 0:
        raise MintError(f"{candidates_path}: no candidate labels to rank")
    model, processing = load_trained(model_dir, kind=check_student_input(model_dir, kind, image_field is not None))
    if torch.cuda.is_available():
        model.to("cuda")
    texts = cases[text_field].to_list() if text_field else [None] * cases.height
    paths = cases[image_field].to_list() if image_field else None
    settings = {"prompt": dict(prompt), "text_field": text_field, "image_field": image_field, "k": k,
                "batch_size": batch_size, "score": "sum of the name's token log-probabilities",
                "labels": "all" if top is None else f"each case's {top} best"}
    ids = cases["case_id"].to_list()
    # A prompt is cut to the student's context less the room of the longest answer scored (start and name).
    answers = ["".join(first_item(name, prompt["header"], k)) for name in labels["name"].to_list()]
    room = max(map(len, getattr(processing, "tokenizer", processing)(answers, add_special_tokens=False)["input_ids"]))
    prov, truncated = provenance(settings, model=str(model_dir)), 0
    with RankingsWriter(out_path, labels["label_id"].to_list(), prov) as out:
        for s in tqdm(range(0, len(ids), chunk), desc="rank panel", unit="chunk"):
            part = CasePrompts(texts[s:s + chunk], lambda _, text: build_prompt(prompt, k, text, text_field),
                               ids[s:s + chunk])
            prompts = fit_prompts(part, model, processing, room)
            truncated += len(part.truncated)
            scores = score_panel(model, processing, prompts, labels["name"].to_list(), prompt["header"], k,
                                 batch_size=batch_size, images=paths[s:s + chunk] if paths else None, top=top)
            out.add(ids[s:s + chunk], scores, MODALITY, top=top)
        prov["truncated_prompts"] = truncated  # the sidecar, written as the block ends: the report's to state


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Rank every candidate label for each test case by the student's "
                                            "likelihood of naming it first.")
    p.add_argument("model_dir", help="a trained student folder (mint.core.train), a model folder or a hub id")
    p.add_argument("cases", help="the cohort's cases.parquet")
    p.add_argument("candidates", help="the cohort's candidates.parquet (the panel)")
    p.add_argument("out", help="rankings Parquet (RANKINGS, modality 'student')")
    add_prompt_arguments(p)
    p.add_argument("--batch-size", type=int, default=256, help="candidates per forward pass")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument("--top", type=int, default=None,
                   help="rank only each case's N best labels (exactly; faster); default: the whole panel")
    add_split_argument(p)
    p.add_argument("--log", default=None, help="log file")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = make_parser().parse_args(argv)
    apply_output_mode()  # a workflow step's output mode (MINT_SHARED_GROUP); run by hand, owner-only
    with rank_log(a.log):
        prompt = parse_prompt(a.prompt)
        rank_panel(a.model_dir, a.cases, a.candidates, a.out, prompt=prompt, text_field=a.text_field, k=a.k,
                   batch_size=a.batch_size, threads=a.threads, split=a.split,
                   image_field=a.image_field, top=a.top, kind=a.kind)


if __name__ == "__main__":
    main()
