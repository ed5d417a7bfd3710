"""Cases/s of the workflow's answering (batched by length) against one generate call per case.

Both ask the same builtin tiny text student (`mint.apps.rare_disease.student`, the default
`student_tiny.yaml` shape, pre-trained here for `--pretrain-steps` on a made-up knowledge corpus so
that it answers in the list format and stops) the same questions about made-up notes of 2 to 14
findings, greedily, with the workflow's `evaluation.max_new_tokens` (64):

- batched: `mint.core.predict.generate_answers` (prompts sorted by length, left-padded batches of
  `--batch-size`, the workflow's `evaluation.batch_size` default 128), whose prefill passes the
  batch's shared first tokens once (`mint.core.predict.prefill`), its rows in groups of 16 of like
  length (`mint.core.predict.prefill_in_groups`);
- batched, one prefill pass: the same, but the whole batch's prompts in one prefill pass, padded to
  its longest (the workflow's way before `prefill_in_groups`);
- the same at `--before-batch-size` (64): the workflow's default before `prefill_in_groups`, when a
  batch of 128 prefilled in one pass was no faster than 64;
- batched, concatenated cache: the same, but with transformers' `DynamicCache` (which copies the
  whole cache at every token) and each finished row dropped from the batch at once (the workflow's
  way before `mint.core.predict.buffered_cache` and `DROP_FINISHED_SHARE`);
- batched, whole prompts: the same, but each row's prompt passes through the model whole (the
  workflow's way before the shared prefix);
- batched with `generate`: the same batches, each through one `model.generate` call (the workflow's
  way before `mint.core.predict.greedy_tokens`, which lets a finished answer leave its batch);
- per case: tokenise one prompt, one `model.generate`, decode, as the paper's scripts do.

`--notes-from cases.parquet` asks about the first `--cases` notes of a split of a real cohort
(with `--student`, a trained student of that cohort) instead of made-up notes.

Prints the median cases/s of each over `--repeats` (alternating), the ratios, how many answers
are the same, and where the two batched ways spend their time: the prefill passes (the prompts)
against the decode passes, timed by pass in `--repeats` more runs of each. No decoding can make
the workflow's way faster than one call per case's time over that prefill time.

    python -m bench.predict --cases 128 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import torch

from mint.apps.rare_disease import schemas as knowledge_schemas
from mint.apps.rare_disease.knowledge import knowledge_files
from mint.apps.rare_disease.prompts import PROMPT
from mint.apps.rare_disease.student import build_builtin_student
from mint.core import predict as core_predict
from mint.core.io import write_parquet
from mint.core.models import load_student
from mint.core.predict import generate_answers
from mint.core.prompts import build_prompt

N_DISEASES, N_TERMS, K = 40, 60, 3


def fake_knowledge(folder: Path, rng: np.random.Generator) -> tuple[pl.DataFrame, list[str]]:
    """Knowledge tables of made-up diseases and findings (each disease annotated with 8); (panel, finding names)."""
    ids = [f"OMIM:{200000 + i}" for i in range(N_DISEASES)]
    names = [f"Syndrome {chr(65 + i % 26)}{i // 26 or ''} type {i % 4 + 1}" for i in range(N_DISEASES)]
    hpo = [f"HP:{i:07d}" for i in range(1, N_TERMS + 1)]
    terms = [f"finding {i} of the {['face', 'hand', 'heart', 'brain', 'skin'][i % 5]}" for i in range(N_TERMS)]
    rows = [(d, h, float(rng.choice([0.17, 0.545, 0.895, 1.0])))
            for d in ids for h in rng.choice(hpo, 8, replace=False)]
    files = knowledge_files(folder)
    write_parquet(pl.DataFrame({"disease_id": ids, "name": names, "synonyms": [[] for _ in ids]},
                               schema_overrides={"synonyms": pl.List(pl.String)}),
                  files["diseases"], knowledge_schemas.DISEASES)
    write_parquet(pl.DataFrame(rows, schema=["disease_id", "hpo_id", "frequency"], orient="row"),
                  files["annotations"], knowledge_schemas.ANNOTATIONS)
    write_parquet(pl.DataFrame({"hpo_id": hpo, "name": terms, "parents": [[] for _ in hpo],
                                "is_facial": [i % 5 == 0 for i in range(N_TERMS)]},
                               schema_overrides={"parents": pl.List(pl.String)}),
                  files["terms"], knowledge_schemas.TERMS)
    panel = pl.DataFrame({"label_id": ids[:30], "name": names[:30], "synonyms": [[] for _ in range(30)]},
                         schema_overrides={"synonyms": pl.List(pl.String)})
    return panel, terms


def build_student(folder: Path, steps: int, threads: int, seed: int = 0) -> Path:
    """The builtin student (default shape), pre-trained `steps` steps on a made-up corpus; its folder."""
    panel, _ = fake_knowledge(folder / "knowledge", np.random.default_rng(seed))
    cfg = {"corpus": {"n_docs": 1500},
           "train": {"steps": steps, "threads": threads, "log_every": max(1, steps // 5), "seed": seed}}
    build_builtin_student(knowledge_files(folder / "knowledge"), panel, cfg, folder / "student", k=K,
                          prompt=PROMPT.resolved(None))
    return folder / "student"


def questions(n: int, seed: int = 1) -> list[list[dict]]:
    """`n` rare-disease questions about made-up notes of 2 to 14 findings (lengths vary, as real notes do)."""
    rng = np.random.default_rng(seed)
    terms = [f"finding {i} of the {['face', 'hand', 'heart', 'brain', 'skin'][i % 5]}" for i in range(N_TERMS)]
    notes = [f"A {rng.integers(1, 40)}-year-old {rng.choice(['boy', 'girl', 'man', 'woman'])}. Findings: "
             + ", ".join(rng.choice(terms, rng.integers(2, 15), replace=False)) + "." for _ in range(n)]
    return [build_prompt(PROMPT.resolved(None), K, note, "note") for note in notes]


@torch.no_grad()
def answer_with_generate(model, tokenizer, prompts: list[list[dict]], batch_size: int,
                         max_new_tokens: int) -> list[str]:
    """The batches `generate_answers` makes, each through one `model.generate` call (finished rows stay in)."""
    model.eval()
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    answers = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for i, row in zip(idx, out[:, enc["input_ids"].shape[1]:]):
            answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return answers


def whole_prompts():
    """`generate_answers` as before the shared prefix: no row shares its first tokens."""
    return mock.patch.object(core_predict, "shared_prefix", lambda *_: 0)


def one_prefill_pass():
    """`generate_answers` as before `prefill_in_groups`: a batch's prompts pass the model together."""
    return mock.patch.object(core_predict, "PREFILL_ROWS", 1 << 30)


def concatenated_cache():
    """`generate_answers` as before the buffered cache: `DynamicCache`, finished rows dropped at once."""
    from transformers import DynamicCache

    return mock.patch.multiple(core_predict, DROP_FINISHED_SHARE=0.0,
                               buffered_cache=lambda model, capacity: DynamicCache(config=model.config))


def time_passes(model, run) -> dict[str, float]:
    """Seconds of `run()` inside prefill passes (more than one input token a row), decode passes, and in all."""
    spent = {"prefill": 0.0, "decode": 0.0}
    forward = model.forward

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = forward(*args, **kwargs)
        spent["prefill" if kwargs["input_ids"].shape[1] > 1 else "decode"] += time.perf_counter() - t
        return out

    model.forward = timed
    try:
        t = time.perf_counter()
        run()
        spent["all"] = time.perf_counter() - t
    finally:
        model.forward = forward
    return spent


def real_questions(path: Path, n: int, split: str) -> list[list[dict]]:
    """Questions about the first `n` notes (by case id) of `split` in a cohort's cases.parquet."""
    cases = pl.read_parquet(path).filter(pl.col("split") == split).sort("case_id").head(n)
    return [build_prompt(PROMPT.resolved(None), K, note, "note") for note in cases["note"].to_list()]


@torch.no_grad()
def answer_one_by_one(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """The plain way: one tokenised prompt, one `generate` call, one decode per case."""
    model.eval()
    answers = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answers.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128, help="the workflow's evaluation.batch_size default")
    p.add_argument("--max-new-tokens", type=int, default=64, help="the workflow's evaluation.max_new_tokens default")
    p.add_argument("--before-batch-size", type=int, default=64,
                   help="the batch size of the one-prefill-pass way's second run (the default before)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pretrain-steps", type=int, default=150)
    p.add_argument("--student", type=Path, help="a student folder to use instead of building one")
    p.add_argument("--notes-from", type=Path, help="a cohort's cases.parquet: ask about its real notes")
    p.add_argument("--split", default="validation", help="with --notes-from: the split whose notes to use")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="mint-predict-") as tmp:
        t0 = time.perf_counter()
        folder = a.student or build_student(Path(tmp), a.pretrain_steps, a.threads)
        print(f"student: {folder} ({time.perf_counter() - t0:.0f} s to build)", flush=True)
        model, tokenizer = load_student(str(folder))
        prompts = real_questions(a.notes_from, a.cases, a.split) if a.notes_from else questions(a.cases)
        def answer():
            return generate_answers(model, tokenizer, prompts, a.batch_size, a.max_new_tokens)

        def answer_whole():
            with whole_prompts():
                return answer()

        def answer_one_pass(batch_size=a.batch_size):
            with one_prefill_pass():
                return generate_answers(model, tokenizer, prompts, batch_size, a.max_new_tokens)

        def answer_concatenated():
            with concatenated_cache():
                return answer()

        ways = {"batched (generate_answers)": answer,
                "batched, one prefill pass": answer_one_pass,
                f"batched, one prefill pass, batch {a.before_batch_size}":
                    lambda: answer_one_pass(a.before_batch_size),
                "batched, concatenated cache": answer_concatenated,
                "batched, whole prompts": answer_whole,
                "batched, one generate call a batch": lambda: answer_with_generate(model, tokenizer, prompts,
                                                                                   a.batch_size, a.max_new_tokens),
                "one generate call per case": lambda: answer_one_by_one(model, tokenizer, prompts, a.max_new_tokens)}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        answers: dict[str, list[str]] = {}
        for _ in range(a.repeats):
            for name, way in ways.items():
                t = time.perf_counter()
                answers[name] = way()
                seconds[name].append(time.perf_counter() - t)
        timed = {"batched (generate_answers)": answer, "batched, whole prompts": answer_whole}
        passes = {name: [time_passes(model, run) for _ in range(a.repeats)] for name, run in timed.items()}
    n = len(prompts)
    rate = {name: n / statistics.median(s) for name, s in seconds.items()}
    names = list(ways)
    plain = names[-1]
    words = statistics.mean(len(x.split()) for x in answers[names[0]])
    print(f"cases: {n}{' real notes of ' + str(a.notes_from) if a.notes_from else ''}, batch size {a.batch_size}, "
          f"max_new_tokens {a.max_new_tokens}, threads {a.threads}, repeats {a.repeats}; answers {words:.1f} words "
          "on average")
    for name in names:
        print(f"{name + ':':46s} {rate[name]:8.2f} cases/s  (runs: {', '.join(f'{x:.1f}' for x in seconds[name])} s)")
    for name in names[:-1]:
        same = sum(x == y for x, y in zip(answers[name], answers[plain]))
        print(f"ratio {name} / one call per case: {rate[name] / rate[plain]:.1f}x; same answers: {same} of {n}")
    for name in names[1:-1]:
        print(f"ratio batched (generate_answers) / {name}: {rate[names[0]] / rate[name]:.2f}x")
    spent_by = {name: {part: statistics.median(p[part] for p in runs) for part in ("all", "prefill", "decode")}
                for name, runs in passes.items()}
    for name, spent in spent_by.items():
        print(f"{name}, {a.repeats} more runs timed by pass (medians): {spent['all']:.2f} s, of which prefill "
              f"passes {spent['prefill']:.2f} s ({spent['prefill'] / spent['all']:.0%}), decode passes "
              f"{spent['decode']:.2f} s")
    shared, whole = (spent["prefill"] for spent in spent_by.values())
    print(f"prefill: shared first tokens once / whole prompts: {whole / shared:.2f}x; one call per case / the "
          f"workflow's prefill: {n / rate[plain] / shared:.1f}x (the most any decoding could reach with this prefill)")


if __name__ == "__main__":
    main()
