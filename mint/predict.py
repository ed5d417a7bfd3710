"""Ask a student for the diseases of each test note (note only, no photo): batched greedy decoding.

Prompts are sorted by length so each left-padded batch wastes little; answers are parsed into
the numbered list of names (`mint.prompts.parse_answer`).

    python -m mint.predict config/config.yaml results/train/orpo results/cohort results/predict/orpo.parquet
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm import tqdm

from mint import schemas
from mint.cohort import load_cohort
from mint.config import load_config, section
from mint.io import provenance, write_parquet
from mint.prompts import build_prompt, parse_answer


@torch.no_grad()
def generate_answers(
    model, tokenizer, prompts: Sequence[list[dict]], batch_size: int, max_new_tokens: int
) -> list[str]:
    """Greedy answers to chat prompts, in the order given."""
    model.eval()
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    answers: list[str] = [""] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch"):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for i, row in zip(idx, out[:, enc["input_ids"].shape[1] :]):
            answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return answers


def predict(
    config: Mapping[str, Any], model_dir: str, cohort_dir: str | Path, method: str, out_path: str | Path,
    split: str = "test",
) -> None:
    from mint.train import load_trained

    ev = config["evaluation"]
    torch.manual_seed(config["seed"])
    torch.set_num_threads(ev["threads"])
    cases, _ = load_cohort(cohort_dir)
    cases = cases.filter(pl.col("split") == split).sort("case_id")
    model, tokenizer = load_trained(model_dir)
    k = config["preferences"]["k"]
    prompts = [build_prompt(note, k, config["prompt"]) for note in cases["note"].to_list()]
    answers = generate_answers(model, tokenizer, prompts, ev["batch_size"], ev["max_new_tokens"])
    df = pl.DataFrame(
        {
            "case_id": cases["case_id"],
            "method": [method] * cases.height,
            "response": answers,
            "predicted_names": [parse_answer(a)[0] for a in answers],
        },
        schema_overrides={"predicted_names": pl.List(pl.String)},
    )
    write_parquet(df, out_path, schemas.PREDICTIONS,
                  provenance(section(config, "evaluation", "prompt", "preferences"), seed=config["seed"],
                             model=str(model_dir)))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate the student's answers for the test notes.")
    p.add_argument("config")
    p.add_argument("model_dir")
    p.add_argument("cohort_dir")
    p.add_argument("out")
    p.add_argument("--method", default="student")
    a = p.parse_args(argv)
    predict(load_config(a.config), a.model_dir, a.cohort_dir, a.method, a.out)


if __name__ == "__main__":
    main()
