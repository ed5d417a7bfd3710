"""Ask a student for the labels of each test case, from the student's own input: batched greedy decoding.

Prompts are sorted by length so each left-padded batch wastes little; answers are parsed into
the numbered list of names (`mint.core.prompts.parse_answer`). Under `accelerate launch` with several
processes the batches are dealt out to the processes (each holds a whole model), the answers
gathered, and process 0 writes the Parquet; the batches are the same as in one process, so the
answers are too.

    python -m mint.core.predict results/train/seed42/orpo results/cohort/cases.parquet results/predict/orpo.parquet \
        --prompt '{"system": "...", "user": "{note} ({k})", "header": "A:"}' --text-field note --k 3
    accelerate launch --config_file config/accelerate/ddp.yaml --num_processes 4 -m mint.core.predict ...
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm import tqdm

from mint.core import schemas
from mint.core.cohort import add_split_argument, cases_in, load_cases
from mint.core.io import MintError, apply_output_mode, provenance, write_parquet
from mint.core.launch import use_cpu
from mint.core.prompts import CasePrompts, build_prompt, parse_answer
from mint.core.steps import step_from_env
from mint.core.students.kind import KINDS, check_student_input
from mint.core.workflow import rank_log


def process_state():
    """This process's place among those `accelerate launch` started (one process: a trivial state).

    On the CPU when there is no GPU or the accelerate config says so (`use_cpu`, as training
    does); several CPU processes then join one gloo group.
    """
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


@torch.no_grad()
def generate_answers(
    model, processing, prompts: Sequence[list[dict]], batch_size: int, max_new_tokens: int, state=None,
    images: Sequence[str] | None = None,
) -> list[str]:
    """Greedy answers to chat prompts, in the order given.

    `processing`: the tokenizer of a text student, or the processor of a vision student, which
    then sees `images[i]` (a path) with prompt i. `state` (an accelerate `PartialState`): generate
    only this process's share of the batches, then gather every answer in every process.
    """
    model.eval()
    tokenizer = getattr(processing, "tokenizer", processing)
    tokenizer.padding_side = "left"
    texts = [processing.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    # Each prompt is tokenised once, here; a text student's batches are padded from these ids.
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    n_proc, rank = (state.num_processes, state.process_index) if state is not None else (1, 0)
    # Dealt round-robin: batches are sorted by length, so each process gets short and long ones.
    mine = batches[rank::n_proc]
    done: list[tuple[int, str]] = []
    for idx in tqdm(mine, desc="generate", unit="batch", disable=rank != 0):
        if images is None:
            enc = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
        else:
            from mint.core.images import open_image
            from mint.core.students.vision import encode_prompts

            pictures = [[open_image(images[i], "RGB")] for i in idx]
            enc = encode_prompts(processing, [prompts[i] for i in idx], pictures)
        enc = enc.to(model.device)
        if images is None:
            rows = greedy_tokens(model, enc["input_ids"], enc["attention_mask"], max_new_tokens,
                                 tokenizer.eos_token_id)
        else:
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            rows = out[:, enc["input_ids"].shape[1] :].tolist()
        for i, row in zip(idx, rows):
            done.append((i, tokenizer.decode(row, skip_special_tokens=True).strip()))
    if n_proc > 1:
        from accelerate.utils import gather_object

        done = gather_object(done)
    answers: list[str] = [""] * len(texts)
    for i, answer in done:
        answers[i] = answer
    return answers


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many first tokens all rows of a left-padded batch share, leaving each row at least one of its own."""
    lengths = attention_mask.sum(1).tolist()
    rows = [row[len(row) - n :] for row, n in zip(input_ids.tolist(), lengths)]
    shared = 0
    for tokens in zip(*rows):
        if shared >= min(lengths) - 1 or len(set(tokens)) > 1:
            break
        shared += 1
    return shared


def prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache) -> tuple[torch.Tensor, ...]:
    """Fill `cache` with a left-padded batch; (last logits, the cache's mask, the last positions).

    The tokens every row begins with (a chat template's system turn, a note's opening words) pass
    through the model once, not once a row: their keys and values are repeated to the batch, and
    the rest of each row follows them, left-padded (the mask then has its holes in the middle).
    """
    n_rows, shared = input_ids.shape[0], shared_prefix(input_ids, attention_mask)
    if n_rows > 1 and shared > 0:
        lengths = attention_mask.sum(1)
        width = int(lengths.max()) - shared
        first = input_ids[lengths.argmax(), -int(lengths.max()) :][None, :shared]
        model(input_ids=first, position_ids=torch.arange(shared, device=first.device)[None], cache=cache,
              use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(n_rows)
        # Each row's own tokens are its last (length - shared); the columns before them are padding.
        own = torch.arange(width, device=lengths.device) >= (width - (lengths - shared))[:, None]
        input_ids, rest = input_ids[:, -width:], own.to(attention_mask.dtype)
        attention_mask = torch.cat([attention_mask.new_ones(n_rows, shared), rest], dim=1)
        positions = (shared + rest.long().cumsum(-1) - 1).clamp(min=0)
    else:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1).logits
    return logits, attention_mask, positions[:, -1:]


# Rows a prefill pass takes: a batch's rows pass in groups of this many, by length, so that a pass
# computes little padding; the decode steps then take the whole batch.
PREFILL_ROWS = 16


def prefill_in_groups(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache,
                      rows: int) -> tuple[torch.Tensor, ...]:
    """`prefill` of a left-padded batch in groups of `rows` rows of like length; what `prefill` returns.

    Each group passes `prefill` into a cache of its own, as wide as its longest row; the groups'
    keys and values are then laid into `cache` right-aligned, the columns a group lacks masked and
    zero (not padding tokens passed through the model). Sorted by length, a batch's groups compute
    less padding than one pass of the whole batch. Only for a cache of `BufferedLayer`s
    (`buffered_cache`); any other cache, or a batch of up to `rows` rows, takes one `prefill` pass.
    """
    layers = getattr(cache, "layers", [])
    if input_ids.shape[0] <= rows or not layers or not all(isinstance(x, _buffered_layer_class()) for x in layers):
        return prefill(model, input_ids, attention_mask, cache)
    lengths = attention_mask.sum(1)
    rows_of = torch.argsort(lengths, stable=True).split(rows)
    groups, caches = [], []
    for idx in rows_of:
        width = int(lengths[idx].max())
        caches.append(buffered_cache(model, width))
        groups.append(prefill(model, input_ids[idx, -width:], attention_mask[idx, -width:], caches[-1]))
    width = max(mask.shape[1] for _, mask, _ in groups)

    def joined(parts, dim: int | None = None):
        """The groups' rows in the batch's order; with `dim`, right-aligned to `width` on it, zeros before."""
        shape = [input_ids.shape[0], *parts[0].shape[1:]]
        if dim is not None:
            shape[dim] = width
        out = parts[0].new_zeros(shape)
        for idx, part in zip(rows_of, parts):
            columns = () if dim is None else (*[slice(None)] * (dim - 1), slice(width - part.shape[dim], None))
            out[(idx, *columns)] = part
        return out

    for i, layer in enumerate(layers):
        layer.update(joined([c.layers[i].keys for c in caches], 2), joined([c.layers[i].values for c in caches], 2))
    logits, masks, positions = zip(*groups)
    return joined(logits), joined(masks, 1), joined(positions)


@functools.cache
def _buffered_layer_class():
    """A `DynamicLayer` whose keys and values are views of buffers written in place (defined on first use:
    transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        """Keys and values of up to `capacity` tokens, written into buffers instead of concatenated at each
        step (`DynamicLayer` copies the whole cache every token); grows if a batch needs more."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity, self.length = capacity, 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.device, self.is_initialized = key_states.device, True
                shape = (*key_states.shape[:2], self.capacity, key_states.shape[-1])
                self._keys, self._values = key_states.new_empty(shape), value_states.new_empty(shape)
            end = self.length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                room = end + self.capacity - self._keys.shape[-2]
                self._keys, self._values = (torch.cat([b, b.new_empty((*b.shape[:2], room, b.shape[-1]))], dim=-2)
                                            for b in (self._keys, self._values))
            self._keys[:, :, self.length : end] = key_states
            self._values[:, :, self.length : end] = value_states
            self.length = end
            return self._views()

        def reset(self) -> None:
            super().reset()
            self.length = 0

        def _views(self):
            self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]
            return self.keys, self.values

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.length:
                self._keys = self._keys.repeat_interleave(repeats, dim=0)
                self._values = self._values.repeat_interleave(repeats, dim=0)
                self._views()

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self.length:  # index_select: 2.5x faster than indexing (`self._keys[indices]`) here
                self._keys, self._values = self._keys.index_select(0, indices), self._values.index_select(0, indices)
                self._views()

    return BufferedLayer


def buffered_cache(model, capacity: int):
    """A key/value cache for `model` whose layers hold `capacity` tokens without copying the cache at each step
    (a `DynamicCache` of `BufferedLayer`s); a plain `DynamicCache` if a layer is of another kind (sliding)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        layer = _buffered_layer_class()
        cache.layers = [layer(capacity) for _ in cache.layers]
    return cache


# A finished row stays in the batch (its tokens ignored) until this share of the rows has finished:
# dropping rows copies the whole cache, so it is done a few times a batch, not at every row's end.
DROP_FINISHED_SHARE = 0.125


@torch.no_grad()
def greedy_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                  eos_token_id: int) -> list[list[int]]:
    """Greedy new tokens of each row of a left-padded batch (a text model), up to and with its end token.

    What `model.generate(do_sample=False)` gives, but the prompts pass the model in groups of like
    length (`prefill_in_groups`), each group's shared first tokens once (`prefill`), the key/value
    cache is written in place (`buffered_cache`), and finished rows leave the batch, and the cache,
    once they are `DROP_FINISHED_SHARE` of it, so the long answers of a batch do not carry the
    finished ones.
    """
    cache = buffered_cache(model, input_ids.shape[1] + max_new_tokens)
    logits, mask, position = prefill_in_groups(model, input_ids, attention_mask, cache, PREFILL_ROWS)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    alive = torch.ones_like(rows, dtype=torch.bool)
    tokens: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    for step in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1)
        for r, token, live in zip(rows.tolist(), nxt.tolist(), alive.tolist()):
            if live:
                tokens[r].append(token)
        alive = alive & (nxt != eos_token_id)
        n_alive = int(alive.sum())
        if step == max_new_tokens - 1 or n_alive == 0:
            break
        if n_alive < len(rows) and len(rows) - n_alive >= DROP_FINISHED_SHARE * len(rows):
            keep = alive.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, nxt, mask, position, alive = rows[keep], nxt[keep], mask[keep], position[keep], alive[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        position = position + 1
        logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, cache=cache,
                       use_cache=True).logits
    return tokens


def context_length(model, processing) -> int | None:
    """Tokens the student reads at most: its config's `max_position_embeddings` (a vision student's text
    model's), else its tokenizer's `model_max_length` where one is set; None where neither says."""
    config = getattr(model, "config", None)
    for part in (config, getattr(config, "text_config", None)):
        n = getattr(part, "max_position_embeddings", None)
        if isinstance(n, int) and n > 0:
            return n
    n = getattr(getattr(processing, "tokenizer", processing), "model_max_length", None)
    return n if isinstance(n, int) and 0 < n < 1 << 31 else None  # transformers' "unset" is 1e30


def fit_prompts(prompts: Sequence[list[dict]] | CasePrompts, model, processing, room: int) -> list[list[dict]]:
    """`prompts` as the student gets them: `CasePrompts` cut so that each prompt and `room` tokens more (the
    answer) fit the student's context (`context_length`); a plain list as given. Without this a note of a
    million characters makes a prompt the model cannot hold (attention grows as its square)."""
    if not isinstance(prompts, CasePrompts):
        return list(prompts)
    context = context_length(model, processing)
    return prompts.fit(processing, None if context is None else context - room)


def answer_prompts(
    model_dir: str, prompts: Sequence[list[dict]] | CasePrompts, *, batch_size: int, max_new_tokens: int,
    threads: int, seed: int, state=None, images: Sequence[str] | None = None, kind: str | None = None,
) -> list[str]:
    """The answers of the model in `model_dir` (seeded; `threads` CPU threads, `batch_size` prompts a batch).

    The student's kind is the one its folder records, else `kind` (the application's declared kind,
    for a model MINT did not write): a vision student gets `images` (one path per prompt), a text
    student none. With `state` (several processes), each generates its share and every process gets all answers.
    """
    from mint.core.students.load import load_trained

    kind = check_student_input(model_dir, kind, images is not None)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    model, processing = load_trained(model_dir, kind=kind)
    if state is not None:
        model.to(state.device)
    # CasePrompts are cut to the student's context less the answer's room; their `truncated` names the cases cut.
    prompts = fit_prompts(prompts, model, processing, max_new_tokens)
    return generate_answers(model, processing, prompts, batch_size, max_new_tokens, state, images)


def write_predictions(
    case_ids: Sequence[str], method: str, answers: Sequence[str], header: str, out_path: str | Path,
    prov: Mapping[str, Any],
) -> None:
    """PREDICTIONS rows: the raw answers and the names parsed from them."""
    df = pl.DataFrame(
        {
            "case_id": list(case_ids),
            "method": [method] * len(case_ids),
            "response": list(answers),
            "predicted_names": [parse_answer(a, header)[0] for a in answers],
        },
        schema_overrides={"predicted_names": pl.List(pl.String)},
    )
    write_parquet(df, out_path, schemas.PREDICTIONS, prov)


def predict(
    model_dir: str, cases_path: str | Path, out_path: str | Path, *, method: str, prompt: Mapping[str, str],
    text_field: str | None, k: int, batch_size: int = 128, max_new_tokens: int = 64, threads: int = 1,
    seed: int = 0, split: str = "test", image_field: str | None = None, kind: str | None = None,
) -> None:
    """Answer the `split` cases with the model in `model_dir`; one Parquet (PREDICTIONS) to `out_path`.

    The student reads the case's `text_field` column and/or the image at its `image_field` path,
    nothing else. `kind`: the application's declared student kind, for a model whose folder records
    none (`mint.core.students.kind`). Several processes (accelerate launch) share the work; only process 0 writes.
    """
    state = process_state()
    cases = cases_in(load_cases(cases_path), split)
    for field in (text_field, image_field):
        if field is not None and field not in cases.columns:
            raise MintError(f"{cases_path}: no column {field!r}, the student's input")
    texts = cases[text_field].to_list() if text_field else [None] * cases.height
    prompts = CasePrompts(texts, lambda _, text: build_prompt(prompt, k, text, text_field), cases["case_id"].to_list())
    answers = answer_prompts(model_dir, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             threads=threads, seed=seed, state=state,
                             images=cases[image_field].to_list() if image_field else None, kind=kind)
    if not state.is_main_process:
        return
    settings = {"prompt": dict(prompt), "text_field": text_field, "k": k, "batch_size": batch_size,
                "max_new_tokens": max_new_tokens}
    # How many prompts were cut to the student's context (their text's first tokens kept): the report's to state.
    write_predictions(cases["case_id"].to_list(), method, answers, prompt["header"], out_path,
                      provenance(settings, seed=seed, model=str(model_dir), truncated_prompts=len(prompts.truncated)))


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Generate the student's answers for the test cases.")
    p.add_argument("model_dir", help="a trained student folder (mint.core.train), a model folder or a hub id")
    p.add_argument("cases", help="the cohort's cases.parquet")
    p.add_argument("out", help="predictions Parquet")
    add_prompt_arguments(p)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="student", help="the value of the 'method' column")
    add_split_argument(p)
    p.add_argument("--log", default=None, help="log file (process k > 0 writes <stem>.rank<k>.log beside it)")
    return p


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """What the student is asked, from what: the options `predict` and `mint.core.panel` share."""
    p.add_argument("--prompt", required=True, help="JSON mapping with system, user (template) and header")
    p.add_argument("--text-field", default=None, help="the cases column the student reads (text students)")
    p.add_argument("--image-field", default=None, help="the cases column of the image path a vision student sees")
    p.add_argument("--k", type=int, required=True, help="labels the student is asked to name")
    p.add_argument("--kind", default=None, choices=KINDS,
                   help="the student kind the application declares, for a model that records none (a hub model)")


def parse_prompt(text: str) -> dict[str, Any]:
    """The --prompt option's JSON mapping."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MintError(f"--prompt: not a JSON mapping: {err}") from err


def main(argv: Sequence[str] | None = None) -> None:
    a = make_parser().parse_args(argv)
    apply_output_mode()  # a workflow step's output mode (MINT_SHARED_GROUP); run by hand, owner-only
    with rank_log(a.log):
        step_from_env()  # inside a workflow step: check its inputs' provenance (mint.core.steps)
        prompt = parse_prompt(a.prompt)
        predict(a.model_dir, a.cases, a.out, method=a.method, prompt=prompt, text_field=a.text_field, k=a.k,
                batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, threads=a.threads, seed=a.seed,
                split=a.split, image_field=a.image_field, kind=a.kind)


if __name__ == "__main__":
    main()
