"""GPU check: a few ORPO LoRA steps of a Llama-3.2-3B-shaped student in bf16, with throughput and MFU.

Builds the model from a `LlamaConfig` (`--shape 3b`, the default: hidden 3072, 28 layers, 24 query /
8 key-value heads, MLP 8192, vocabulary 128,256, tied embeddings, RoPE theta 500,000: Llama-3.2-3B's
shape, without its RoPE scaling; `--shape 1b`: Llama-3.2-1B's) with random weights, and a word-level
tokenizer built here (every word one token, so each sequence has exactly the length asked for).
Nothing is downloaded. The model gets the LoRA adapters of the paper's ORPO recipe
(`config/rare_disease/recipes/paper/orpo.yaml`: r 256, alpha 128, dropout 0.05, every linear layer) through
peft, as `mint.core.train` gives them; `--full` trains every weight instead. Synthetic preference
rows (prompt, chosen, rejected) go through MINT's own ORPO trainer
(`mint.core.trainers.trainer_classes("orpo")`), `--warmup` steps untimed, then `--steps` timed.

Printed: training tokens/s (ORPO runs prompt+chosen and prompt+rejected: both count), model
FLOPs utilisation MFU = F * tokens/s / peak, with F the FLOPs a token needs, N the base model's
parameters (the tied embedding counted once) and N_lora the adapters': with LoRA
F = 4N + 6N_lora (forward 2N; backward 2N for the gradients of the activations through the frozen
weights, none for those weights; the adapters' forward, backward and weight gradients), fully
fine-tuned F = 6N. Attention-score FLOPs (+3% at 514 tokens) are left out. Also printed: peak
GPU memory and the versions. Peak dense bf16 FLOP/s comes from the GPU's
name (H100 SXM and H200 989e12, H100 PCIe 756e12, A100 312e12) or `--peak-tflops`.

On a machine with one NVIDIA GPU, from the repository root:

    # where trl (or accelerate/datasets) is missing, install the wheels brought along, e.g.
    #   pip download --no-deps trl==1.16.0 accelerate==1.15.0 -d wheels   (on a machine with PyPI)
    #   pip install --no-deps wheels/*.whl                                  (on the GPU machine)
    python -m bench.gpu_orpo_check                    # 2 warm-up + 10 timed steps, batch 8 x 514 tokens
    python -m bench.gpu_orpo_check --json gpu_orpo.json --peak-tflops 989

On CPU, a tiny model checks that the script runs (tests/test_bench.py):

    python -m bench.gpu_orpo_check --tiny

Needs torch, transformers, tokenizers, datasets, trl and peft (PyYAML comes with transformers);
polars and the rest of the mint package are not imported.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import tempfile
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import torch

# Peak dense bf16 tensor-core FLOP/s (vendor data sheets, without sparsity), matched in order
# against torch.cuda.get_device_name(): "NVIDIA H100 80GB HBM3" is the SXM part.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))

LLAMA_3_2_1B = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 8192,
}
LLAMA_3_2_3B = {**LLAMA_3_2_1B, "hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 24,
                "num_key_value_heads": 8, "intermediate_size": 8192}
SHAPES = {"1b": ("Llama-3.2-1B shape", LLAMA_3_2_1B), "3b": ("Llama-3.2-3B shape", LLAMA_3_2_3B)}
PAPER_RECIPE = "config/rare_disease/recipes/paper/orpo.yaml"
TINY = {**LLAMA_3_2_1B, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 600, "max_position_embeddings": 256}
SPECIAL = ("<bos>", "<eos>", "<pad>", "<unk>")


def build_tokenizer(n_words: int):
    """Word-level tokenizer over the words w0 .. w{n-1}: one token per word, whitespace-separated."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    vocab.update({f"w{i}": len(SPECIAL) + i for i in range(n_words)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def synthetic_rows(n: int, prompt_len: int, answer_len: int, n_words: int, seed: int) -> list[dict[str, str]]:
    """Preference rows of random words: prompt `prompt_len` tokens, chosen and rejected `answer_len` each."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(k))

    return [{"prompt": words(prompt_len), "chosen": " " + words(answer_len), "rejected": " " + words(answer_len)}
            for _ in range(n)]


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, flops in PEAK_BF16:
        if key in device_name:
            return flops
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["cuda"] = torch.version.cuda
    out["cudnn"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback

    from mint.core.trainers import trainer_classes

    gpu = torch.cuda.is_available() and not args.tiny
    if not gpu and not args.tiny:
        raise SystemExit("no CUDA GPU found: run on a GPU machine, or pass --tiny for the CPU check")
    name, shape = ("tiny", TINY) if args.tiny else SHAPES[args.shape]
    n_words = min(shape["vocab_size"] - len(SPECIAL), 4000)
    tokenizer = build_tokenizer(n_words)
    dtype = torch.bfloat16 if gpu else torch.float32
    config = LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(args.seed)
    with torch.device("cuda" if gpu else "cpu"):  # initialise on the GPU: seconds instead of a minute
        model = LlamaForCausalLM(config).to(dtype)
    n_params = sum(p.numel() for p in model.parameters())  # the tied embedding once
    lora = None
    if not args.full:
        import yaml
        from peft import LoraConfig, get_peft_model

        with open(args.recipe) as f:
            lora = yaml.safe_load(f)["lora"]
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
    n_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_lora = n_trained if lora else 0

    total_steps = args.warmup + args.steps
    rows = synthetic_rows(args.batch * total_steps, args.prompt_len, args.answer_len, n_words, args.seed)
    seq_len = 1 + args.prompt_len + args.answer_len + 1  # BOS, prompt, answer, EOS

    config_cls, trainer_cls = trainer_classes("orpo")
    counts = {"tokens": 0, "padded": 0}

    class CountingTrainer(trainer_cls):
        """MINT's ORPO trainer, counting the tokens of each forward (chosen and rejected sequences)."""

        def concatenated_forward(self, model, batch):
            counts["tokens"] += int(batch["chosen_attention_mask"].sum() + batch["rejected_attention_mask"].sum())
            counts["padded"] += int(batch["chosen_attention_mask"].numel() + batch["rejected_attention_mask"].numel())
            return super().concatenated_forward(model, batch)

    marks: list[tuple[float, int]] = []  # (time, tokens so far) after each optimizer step

    class StepClock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):
            if gpu:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), counts["tokens"]))

    with tempfile.TemporaryDirectory() as out:
        targs = config_cls(
            output_dir=out, report_to=[], max_steps=total_steps, per_device_train_batch_size=args.batch,
            learning_rate=1e-5, beta=0.1, max_length=seq_len, bf16=gpu, use_cpu=not gpu,
            gradient_checkpointing=args.gradient_checkpointing, logging_steps=total_steps, save_strategy="no",
            disable_tqdm=True, seed=args.seed, dataloader_num_workers=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = CountingTrainer(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                                      processing_class=tokenizer, callbacks=[StepClock()])
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0

    # Timed from the end of the last warm-up step to the end of the last step.
    t_start, tok_start = marks[args.warmup - 1] if args.warmup else (t0, 0)
    t_end, tok_end = marks[-1]
    seconds = t_end - t_start
    tokens = tok_end - tok_start
    tokens_per_s = tokens / seconds
    device = torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()
    peak = peak_flops(device, args.peak_tflops)
    flops_per_token = 4 * n_params + 6 * n_lora if lora else 6 * n_params
    result = {
        "device": device,
        "model": name,
        "parameters": n_params,
        "lora": lora,
        "trained_parameters": n_trained,
        "flops_per_token": flops_per_token,
        "dtype": str(dtype).removeprefix("torch."),
        "batch": args.batch,
        "sequence_tokens": seq_len,
        "tokens_per_step": tokens // args.steps,
        "padding_share": round(1 - counts["tokens"] / counts["padded"], 4),
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "seconds_per_step": round(seconds / args.steps, 4),
        "tokens_per_s": round(tokens_per_s, 1),
        "model_tflops_per_s": float(f"{flops_per_token * tokens_per_s / 1e12:.4g}"),
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": float(f"{flops_per_token * tokens_per_s / peak:.4g}") if peak else None,
        "gradient_checkpointing": args.gradient_checkpointing,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
        "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if gpu else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),  # Linux: KiB
        "final_loss": next((r["train_loss"] for r in trainer.state.log_history if "train_loss" in r), None),
        "wall_s": round(wall, 1),
        "versions": versions(),
    }
    return result


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny model on CPU in float32: checks that the script runs")
    p.add_argument("--shape", choices=sorted(SHAPES), default="3b", help="the Llama 3.2 shape (default 3b)")
    p.add_argument("--full", action="store_true", help="train every weight instead of LoRA adapters")
    p.add_argument("--recipe", default=PAPER_RECIPE, help="the recipe whose 'lora' settings the adapters take")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 10; --tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --tiny 1)")
    p.add_argument("--batch", type=int, default=None, help="preference rows per step (default 8; --tiny 2)")
    p.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default 448; --tiny 24)")
    p.add_argument("--answer-len", type=int, default=None,
                   help="tokens of chosen and of rejected each (default 64; --tiny 8)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations (then the real work is 2N a token more; MFU does not count it)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of this GPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = make_parser().parse_args(argv)
    defaults = {"steps": 2, "warmup": 1, "batch": 2, "prompt_len": 24, "answer_len": 8} if args.tiny else \
        {"steps": 10, "warmup": 2, "batch": 8, "prompt_len": 448, "answer_len": 64}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    result = run(args)
    mfu = f"{100 * result['mfu']:.3g}%" if result["mfu"] is not None else "n/a (unknown GPU: pass --peak-tflops)"
    mem = (f"{result['peak_gpu_memory_gib']} GiB allocated, {result['peak_gpu_reserved_gib']} GiB reserved"
           if result["peak_gpu_memory_gib"] is not None else f"no GPU (peak RSS {result['peak_rss_gib']} GiB)")
    trained = (f"LoRA r {result['lora']['r']}, {result['trained_parameters'] / 1e6:.1f}M adapter parameters"
               if result["lora"] else "every weight")
    print(f"device: {result['device']}; model: {result['model']}, {result['parameters'] / 1e9:.3f}B parameters, "
          f"{result['dtype']}; trained: {trained}")
    print(f"ORPO: {result['timed_steps']} timed steps after {result['warmup_steps']} warm-up, batch {result['batch']}"
          f" x 2 sequences x {result['sequence_tokens']} tokens, {result['seconds_per_step']} s/step")
    print(f"tokens/s: {result['tokens_per_s']:.1f}")
    print(f"model TFLOP/s ({'4N + 6N_lora' if result['lora'] else '6N'} per token): {result['model_tflops_per_s']}")
    print(f"MFU: {mfu}")
    print(f"peak memory: {mem}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
