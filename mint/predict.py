"""Ask a student for the diseases of each test note (note only, no photo): batched greedy decoding.

Prompts are sorted by length so each left-padded batch wastes little; answers are parsed into
the numbered list of names (`mint.prompts.parse_answer`). Under `accelerate launch` with several
processes the batches are dealt out to the processes (each holds a whole model), the answers
gathered, and process 0 writes the Parquet; the batches are the same as in one process, so the
answers are too.

    python -m mint.predict results/train/orpo results/cohort results/predict/orpo.parquet --config config/config.yaml
    accelerate launch --config_file config/accelerate/ddp.yaml --num_processes 4 -m mint.predict ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm import tqdm

from mint import schemas
from mint.cohort import load_cohort
from mint.config import load_config, section, validate_config
from mint.io import MintError, provenance, write_parquet
from mint.launch import use_cpu
from mint.prompts import build_prompt, parse_answer
from mint.workflow import rank_log


def process_state():
    """This process's place among those `accelerate launch` started (one process: a trivial state).

    On the CPU when there is no GPU or the accelerate config says so (`use_cpu`, as training
    does); several CPU processes then join one gloo group.
    """
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


@torch.no_grad()
def generate_answers(
    model, tokenizer, prompts: Sequence[list[dict]], batch_size: int, max_new_tokens: int, state=None,
) -> list[str]:
    """Greedy answers to chat prompts, in the order given.

    `state` (an accelerate `PartialState`): generate only this process's share of the batches,
    then gather every answer in every process.
    """
    model.eval()
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    n_proc, rank = (state.num_processes, state.process_index) if state is not None else (1, 0)
    # Dealt round-robin: batches are sorted by length, so each process gets short and long ones.
    mine = batches[rank::n_proc]
    done: list[tuple[int, str]] = []
    for idx in tqdm(mine, desc="generate", unit="batch", disable=rank != 0):
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc.to(model.device), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        for i, row in zip(idx, out[:, enc["input_ids"].shape[1] :]):
            done.append((i, tokenizer.decode(row, skip_special_tokens=True).strip()))
    if n_proc > 1:
        from accelerate.utils import gather_object

        done = gather_object(done)
    answers: list[str] = [""] * len(texts)
    for i, answer in done:
        answers[i] = answer
    return answers


def answer_prompts(config: Mapping[str, Any], model_dir: str, prompts: Sequence[list[dict]], state=None) -> list[str]:
    """The answers of the model in `model_dir` (seeded, with `evaluation`'s threads and batch size).

    With `state` (several processes), each generates its share and every process gets all answers.
    """
    from mint.train import load_trained

    ev = config["evaluation"]
    torch.manual_seed(config["seed"])
    torch.set_num_threads(ev["threads"])
    model, tokenizer = load_trained(model_dir)
    if state is not None:
        model.to(state.device)
    return generate_answers(model, tokenizer, prompts, ev["batch_size"], ev["max_new_tokens"], state)


def write_predictions(
    case_ids: Sequence[str], method: str, answers: Sequence[str], out_path: str | Path, prov: Mapping[str, Any]
) -> None:
    """PREDICTIONS rows: the raw answers and the names parsed from them."""
    df = pl.DataFrame(
        {
            "case_id": list(case_ids),
            "method": [method] * len(case_ids),
            "response": list(answers),
            "predicted_names": [parse_answer(a)[0] for a in answers],
        },
        schema_overrides={"predicted_names": pl.List(pl.String)},
    )
    write_parquet(df, out_path, schemas.PREDICTIONS, prov)


def predict(
    config: Mapping[str, Any], model_dir: str, cohort_dir: str | Path, method: str, out_path: str | Path,
    split: str = "test",
) -> None:
    """Answer the `split` cases' notes with the model in `model_dir`; one Parquet (PREDICTIONS) to `out_path`.

    Several processes (accelerate launch) share the work; only process 0 writes.
    """
    state = process_state()
    cases, _ = load_cohort(cohort_dir)
    cases = cases.filter(pl.col("split") == split).sort("case_id")
    k = config["preferences"]["k"]
    prompts = [build_prompt(note, k, config["prompt"]) for note in cases["note"].to_list()]
    answers = answer_prompts(config, model_dir, prompts, state)
    if not state.is_main_process:
        return
    write_predictions(cases["case_id"].to_list(), method, answers, out_path,
                      provenance(section(config, "evaluation", "prompt", "preferences"), seed=config["seed"],
                                 model=str(model_dir)))


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Generate the student's answers for the test notes.")
    p.add_argument("model_dir", help="a trained student folder (mint.train), a model folder or a hub id")
    p.add_argument("cohort_dir", help="folder with cases.parquet and panel.parquet")
    p.add_argument("out", help="predictions Parquet")
    settings = p.add_mutually_exclusive_group(required=True)
    settings.add_argument("--config", help="workflow config YAML (validated, defaults filled in)")
    settings.add_argument("--settings", help="the config as a JSON mapping (what the workflow passes: seed, "
                                             "evaluation, prompt, preferences); defaults fill the rest")
    p.add_argument("--method", default="student", help="the value of the 'method' column")
    p.add_argument("--log", default=None, help="log file (process k > 0 writes <stem>.rank<k>.log beside it)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = make_parser().parse_args(argv)
    with rank_log(a.log):
        if a.config:
            config = load_config(a.config)
        else:
            try:
                config = validate_config(json.loads(a.settings), source="--settings")
            except json.JSONDecodeError as err:
                raise MintError(f"--settings: not a JSON mapping: {err}") from err
        predict(config, a.model_dir, a.cohort_dir, a.method, a.out)


if __name__ == "__main__":
    main()
