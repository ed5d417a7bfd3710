"""Training tokens/s of the workflow's ORPO, SFT and DPO against a plain TRL set-up like the paper's scripts.

Both train the same model (the builtin student's shape, `--student-config`, randomly initialised: the
speed does not depend on the weights) on the same rows, with the same objective, the same recipe
(`--recipes`, the benchmark's by default), the same batch size and the same number of steps (one
epoch over `--rows` rows):

- workflow: `mint.core.train.train_student`, as the `train` rule runs it (recipe as it is,
  `--threads` torch threads: the rule's `threads: 1`), output folder written;
- plain: the same TRL trainer class (with TRL's own forward pass) and recipe `args`, but every batch
  padded to `max_length` (the paper's scripts pad to a fixed length), random batches (no length
  grouping), the data tokenised anew, no precomputed reference log-probs, torch's default threads.

A third way, "workflow, TRL's forward", is the workflow with TRL's forward pass instead of its own
(`mint.core.trainers.fast_forward`: for ORPO and DPO each pair's prompt run once, `shared_prefix_forward` and
`shared_prefix_fused_forward`; for all three the LM head on the answers only): the workflow before
those changes, so the ratio of the two is what they give.

Tokens/s counts real tokens only (prompt and answer, no padding; both answers of a pair), the same
number for both, over the whole call (model load, tokenising, training), over TRL's
`train_runtime`, and per CPU second of the process (all its threads; less sensitive than wall time
to other jobs on the cores). Prints medians over `--repeats` (the two ways alternate), their ratio, and the
first and last logged losses of each, which should agree within noise.

    python -m bench.train_speed --rows 320 --repeats 3
    python -m bench.train_speed --data results/preferences/preferences.parquet   # a workflow run's pairs
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import torch
import yaml

from mint.apps.rare_disease.prompts import HEADER, PROMPT
from mint.apps.rare_disease.student import DEFAULT_TINY
from mint.core import schemas
from mint.core.config import deep_update, load_yaml
from mint.core.io import read_parquet, write_parquet
from mint.core.launch import use_cpu
from mint.core.models import load_student
from mint.core.prompts import assistant, build_prompt, format_answer
from mint.core.students.text import build_tiny_llama, render_chat, train_tokenizer
from mint.core.train import check_lengths, load_dataset, load_recipe, train_student
from mint.core.trainers import trainer_classes

K = 3
TERMS = [f"{a} {b}" for a in ("abnormal", "short", "broad", "small", "large", "delayed", "absent", "recurrent")
         for b in ("palpebral fissures", "thumb", "stature", "nasal bridge", "speech development", "seizures",
                   "ventricular septum", "hearing", "philtrum", "kidney", "muscle tone", "teeth")]
DISEASES = [f"{p} syndrome type {i}" for i in range(1, 9)
            for p in ("Aarskog", "Baller-Gerold", "Coffin-Siris", "DiGeorge", "Ehlers-Danlos", "Fraser", "Gorlin",
                      "Holt-Oram", "Kabuki", "Noonan")]


def synthetic_rows(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(preference pairs, SFT rows) shaped like the workflow's: the rare-disease question about a made-up
    note of 3 to 20 findings; answers are numbered lists of `K` disease names."""
    rng = np.random.default_rng(seed)
    prefs, sft = [], []
    for i in range(n):
        found = rng.choice(TERMS, rng.integers(3, 21), replace=False)
        note = (f"A {rng.integers(1, 40)}-year-old {rng.choice(['boy', 'girl', 'man', 'woman'])}. "
                f"Findings: {', '.join(found)}.")
        prompt = build_prompt(PROMPT.resolved(None), K, note, "note")
        names = rng.choice(DISEASES, 2 * K, replace=False)
        chosen, rejected = list(names[:K]), list(names[K:])
        prefs.append({"case_id": f"case{i}", "prompt": prompt, "chosen": assistant(format_answer(chosen, HEADER)),
                      "rejected": assistant(format_answer(rejected, HEADER)), "chosen_ids": chosen,
                      "rejected_ids": rejected, "truth_in_chosen": True, "teacher": "bench", "k": K, "q": K,
                      "seed": seed})
        sft.append({"case_id": f"case{i}", "prompt": prompt, "completion": prefs[-1]["chosen"], "target_ids": chosen,
                    "target": "teacher", "k": K, "seed": seed})
    return pl.DataFrame(prefs), pl.DataFrame(sft)


def sft_from_preferences(prefs: pl.DataFrame) -> pl.DataFrame:
    """SFT rows from pairs: the chosen answer as the completion (one row per case)."""
    first = prefs.unique("case_id", keep="first", maintain_order=True)
    return pl.DataFrame({"case_id": first["case_id"], "prompt": first["prompt"], "completion": first["chosen"],
                         "target_ids": first["chosen_ids"], "target": ["teacher"] * first.height,
                         "k": first["k"], "seed": first["seed"]})


def build_model(folder: Path, student_config: Path | None, texts: list[str], seed: int = 0) -> Path:
    """A randomly initialised builtin student of `student_config`'s shape, its tokenizer trained on `texts`."""
    cfg = deep_update(DEFAULT_TINY, load_yaml(student_config) if student_config else {})
    tokenizer = train_tokenizer(texts, int(cfg["vocab_size"]))
    tokenizer.model_max_length = int(cfg["model"]["max_position_embeddings"])
    model = build_tiny_llama(tokenizer, cfg["model"], seed=seed)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def real_tokens(method: str, data: Path, tokenizer) -> int:
    """Tokens of every training row (prompt and answer; both answers of a pair), no padding."""
    dataset, _ = load_dataset(method, data)
    answers = ["completion"] if method == "sft" else ["chosen", "rejected"]
    return sum(len(tokenizer(tokenizer.apply_chat_template(row["prompt"] + row[col], tokenize=False),
                             add_special_tokens=False)["input_ids"])
               for row in dataset for col in answers)


class PadToMaxLength:
    """The plain way's batches: the trainer's own collator, then every sequence tensor padded on the right to
    `max_length` (ids with the pad token, masks with 0, labels with -100), as the paper's scripts pad."""

    def __init__(self, collator, max_length: int, pad_token_id: int):
        self.collator, self.max_length, self.pad_token_id = collator, max_length, pad_token_id

    def __call__(self, examples):
        batch = self.collator(examples)
        for key, value in batch.items():
            if not isinstance(value, torch.Tensor) or value.dim() != 2 or value.shape[1] >= self.max_length:
                continue
            fill = -100 if key.endswith("labels") else 0 if key.endswith("mask") else self.pad_token_id
            batch[key] = torch.nn.functional.pad(value, (0, self.max_length - value.shape[1]), value=fill)
        return batch


FAST_FORWARD = ("orpo", "sft", "dpo")  # the methods with a forward pass of the workflow's own


def trl_forward(trainer_cls: type) -> type:
    """The trainer class with TRL's own forward pass instead of the workflow's (`mint.core.trainers.fast_forward`)."""
    if not hasattr(trainer_cls, "fast_forward"):
        return trainer_cls
    return type(trainer_cls.__name__, (trainer_cls,), {"fast_forward": False})


def plain_train(recipe_path: Path, student: Path, data: Path, out: Path, threads: int) -> tuple[float, float, list]:
    """The plain TRL set-up; (seconds in all, TRL's train_runtime, log history)."""
    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    recipe = load_recipe(recipe_path)
    model, tokenizer = load_student(str(student))
    config_cls, trainer_cls = trainer_classes(recipe["method"], completion_only_nll=recipe["nll"] == "completion")
    trainer_cls = trl_forward(trainer_cls)  # the paper's scripts: TRL's forward pass
    args = {**recipe["args"], "train_sampling_strategy": "random", "precompute_ref_log_probs": False}
    fields = set(config_cls.__dataclass_fields__)
    targs = config_cls(output_dir=str(out), report_to=[], use_cpu=use_cpu(),  # as train_student: a GPU if there is one
                       **{k: v for k, v in args.items() if k in fields})
    dataset, case_ids = load_dataset(recipe["method"], data)
    check_lengths(dataset, case_ids, tokenizer, targs.max_length, recipe_path)
    trainer = trainer_cls(model=model, args=targs, train_dataset=dataset, processing_class=tokenizer)
    trainer.data_collator = PadToMaxLength(trainer.data_collator, targs.max_length, tokenizer.pad_token_id)
    result = trainer.train()
    return time.perf_counter() - t0, result.metrics["train_runtime"], trainer.state.log_history


def workflow_train(recipe_path: Path, student: Path, data: Path, out: Path, threads: int) -> tuple[float, float, list]:
    """The workflow's `train_student`; (seconds in all, TRL's train_runtime, log history)."""
    t0 = time.perf_counter()
    recipe = load_recipe(recipe_path)
    init = student if recipe["init"] == "sft" else None  # DPO starts from the same weights as the plain way
    metrics = train_student(recipe_path, str(student), data, out, init_dir=init, threads=threads)
    seconds = time.perf_counter() - t0
    history = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    return seconds, metrics["train_runtime"], history


def workflow_trl_forward_train(recipe_path: Path, student: Path, data: Path, out: Path,
                               threads: int) -> tuple[float, float, list]:
    """The workflow as above, but with TRL's forward pass (each pair's prompt run twice, the LM head at every
    position) instead of its own: the workflow before that change."""
    import mint.core.train as train_module

    def trl_forward_classes(method, **kwargs):
        config_cls, trainer_cls = trainer_classes(method, **kwargs)
        return config_cls, trl_forward(trainer_cls)

    with mock.patch.object(train_module, "trainer_classes", trl_forward_classes):
        return workflow_train(recipe_path, student, data, out, threads)


def bench_recipe(recipes: Path, method: str, folder: Path) -> Path:
    """The method's recipe, one epoch, logging every step (the same for both ways)."""
    recipe = load_yaml(recipes / f"{method}.yaml")
    recipe["args"].update(num_train_epochs=1, logging_steps=1, save_strategy="no")
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def losses(history: list) -> list[float]:
    return [row["loss"] for row in history if "loss" in row]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=320, help="synthetic cases; with --data its first N pairs (0: all)")
    p.add_argument("--data", type=Path, help="a workflow preferences Parquet to train on instead")
    p.add_argument("--methods", nargs="+", default=["orpo", "sft", "dpo"])
    p.add_argument("--recipes", type=Path, default=Path("config/rare_disease/recipes/benchmark"))
    p.add_argument("--student-config", type=Path, default=Path("config/rare_disease/students/benchmark.yaml"))
    p.add_argument("--student", type=Path, help="a base student folder to train (e.g. a benchmark run's "
                                                 "results/student) instead of a fresh one of --student-config")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="the workflow's torch threads (the train rule's threads)")
    p.add_argument("--plain-threads", type=int, default=torch.get_num_threads(), help="default: torch's default")
    p.add_argument("--skip-plain", action="store_true",
                   help="time the workflow against TRL's forward only (no plain TRL set-up)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    a = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="mint-train-speed-") as tmp:
        tmp = Path(tmp)
        if a.data:
            prefs = read_parquet(a.data, schemas.PREFERENCES)
            prefs = prefs.head(a.rows) if a.rows else prefs
            sft = sft_from_preferences(prefs)
        else:
            prefs, sft = synthetic_rows(a.rows)
        write_parquet(prefs, tmp / "preferences.parquet", schemas.PREFERENCES)
        write_parquet(sft, tmp / "sft.parquet", schemas.SFT)
        texts = [render_chat(r["prompt"] + r["chosen"]) + render_chat(r["rejected"]) for r in prefs.to_dicts()]
        student = a.student or build_model(tmp / "student", a.student_config, texts)
        _, tokenizer = load_student(str(student))
        print(f"rows: {prefs.height} pairs, {sft.height} SFT rows; recipes {a.recipes}; student "
              f"{a.student or a.student_config}, vocabulary {len(tokenizer)}; threads: workflow {a.threads}, "
              f"plain {a.plain_threads}; repeats {a.repeats}",
              flush=True)
        for method in a.methods:
            data = tmp / ("sft.parquet" if method == "sft" else "preferences.parquet")
            recipe = bench_recipe(a.recipes, method, tmp)
            tokens = real_tokens(method, data, tokenizer)
            ways = [("workflow", workflow_train, a.threads)]
            if not (a.skip_plain and method in FAST_FORWARD):
                ways.append(("plain", plain_train, a.plain_threads))
            if method in FAST_FORWARD:
                ways.append(("workflow, TRL's forward", workflow_trl_forward_train, a.threads))
            runs = {way: [] for way, _, _ in ways}
            for r in range(a.repeats):
                for way, fn, threads in ways:
                    out = tmp / f"{method}-{way}-{r}"
                    cpu = time.process_time()
                    runs[way].append((*fn(recipe, student, data, out, threads), time.process_time() - cpu))
                    print(f"  {method} {way} run {r + 1}: {runs[way][-1][0]:.1f} s "
                          f"(train_runtime {runs[way][-1][1]:.1f} s)", flush=True)
            row = {"real_tokens": tokens, "steps": len(losses(runs["workflow"][0][2]))}
            for way, rs in runs.items():
                total, train = statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs)
                cpu = statistics.median(x[3] for x in rs)
                curve = losses(rs[0][2])
                row[way] = {"seconds": total, "train_runtime": train, "tokens_per_s": tokens / total,
                            "train_tokens_per_s": tokens / train, "first_loss": curve[0], "last_loss": curve[-1],
                            "cpu_s": cpu, "tokens_per_cpu_s": tokens / cpu, "runs_s": [round(x[0], 2) for x in rs]}
            if "plain" in row:
                row["ratio"] = row["workflow"]["tokens_per_s"] / row["plain"]["tokens_per_s"]
                row["train_ratio"] = row["workflow"]["train_tokens_per_s"] / row["plain"]["train_tokens_per_s"]
                row["cpu_ratio"] = row["workflow"]["tokens_per_cpu_s"] / row["plain"]["tokens_per_cpu_s"]
            trl_way = "workflow, TRL's forward"
            if trl_way in row:
                row["forward_ratio"] = row["workflow"]["tokens_per_s"] / row[trl_way]["tokens_per_s"]
                row["forward_cpu_ratio"] = row["workflow"]["tokens_per_cpu_s"] / row[trl_way]["tokens_per_cpu_s"]
            results[method] = row
            print(f"{method}: {tokens} real tokens, {row['steps']} steps")
            for way in runs:
                w = row[way]
                print(f"  {way:24s} {w['tokens_per_s']:9.1f} tokens/s (whole call, runs {w['runs_s']} s), "
                      f"{w['train_tokens_per_s']:9.1f} tokens/s in train(), "
                      f"{w['tokens_per_cpu_s']:9.1f} tokens per CPU second; loss first {w['first_loss']:.4f} "
                      f"last {w['last_loss']:.4f}")
            if "ratio" in row:
                print(f"  {method} ratio: {row['ratio']:.2f}x (train() only: {row['train_ratio']:.2f}x; "
                      f"per CPU second: {row['cpu_ratio']:.2f}x)", flush=True)
            if "forward_ratio" in row:
                print(f"  {method} own forward against TRL's: {row['forward_ratio']:.2f}x "
                      f"(per CPU second: {row['forward_cpu_ratio']:.2f}x)", flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
