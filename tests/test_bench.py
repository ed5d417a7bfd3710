"""bench/gpu_orpo_check.py runs and prints its figures: on CPU with --tiny, in full where a GPU is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def gpu_orpo_check(*args: str, tmp_path: Path) -> tuple[str, dict]:
    out = tmp_path / "check.json"
    res = subprocess.run([sys.executable, "-m", "bench.gpu_orpo_check", *args, "--json", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res.stdout, json.loads(out.read_text())


def test_gpu_orpo_check_runs_tiny_on_cpu(tmp_path):
    stdout, result = gpu_orpo_check("--tiny", "--peak-tflops", "1", tmp_path=tmp_path)
    for line in ("tokens/s:", "MFU:", "peak memory:", "versions:"):
        assert line in stdout
    # 2 timed steps x 2 rows x (prompt+chosen and prompt+rejected) x (BOS + 24 + 8 + EOS) tokens.
    assert result["tokens_per_step"] == 2 * 2 * 34 and result["padding_share"] == 0
    assert result["tokens_per_s"] > 0 and 0 < result["mfu"] < 1
    # LoRA with the paper recipe's adapters: the frozen weights need 4N a token, the adapters 6N_lora.
    assert result["lora"]["r"] == 256 and 0 < result["trained_parameters"] != result["parameters"]
    assert result["flops_per_token"] == 4 * result["parameters"] + 6 * result["trained_parameters"]
    assert result["mfu"] == pytest.approx(result["flops_per_token"] * result["tokens_per_s"] / 1e12, rel=1e-3)
    assert result["versions"]["trl"] == "1.16.0"


def test_gpu_orpo_check_trains_every_weight_with_full(tmp_path):
    _, result = gpu_orpo_check("--tiny", "--full", "--peak-tflops", "1", tmp_path=tmp_path)
    assert result["lora"] is None and result["trained_parameters"] == result["parameters"]
    assert result["flops_per_token"] == 6 * result["parameters"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_gpu_orpo_check_llama_3b_shape_with_lora(tmp_path):
    _, result = gpu_orpo_check("--steps", "3", "--warmup", "1", tmp_path=tmp_path)
    assert result["parameters"] == 3_212_749_824  # Llama-3.2-3B
    assert result["trained_parameters"] == 389_021_696  # LoRA r 256 on every linear layer
    assert result["dtype"] == "bfloat16" and result["peak_gpu_memory_gib"] > 0


def test_scale_bench_runs_and_finds_the_same_bytes(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench.scale", "--sizes", "40", "--repeats", "1", "--scratch",
                          str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    for step in ("rank", "preferences", "score", "agreement", "preferences_whole", "preferences ratio"):
        assert f" {step} " in res.stdout
    assert "same bytes streamed and whole (rankings, pairs, SFT, scores): True" in res.stdout
    assert not any(tmp_path.iterdir())  # scratch removed


def test_predict_bench_runs_and_compares_answers():
    res = subprocess.run([sys.executable, "-m", "bench.predict", "--cases", "4", "--batch-size", "2", "--repeats", "1",
                          "--max-new-tokens", "4", "--pretrain-steps", "2"], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert res.stdout.count("same answers: 4 of 4") == 6 and "one generate call a batch:" in res.stdout
    assert "concatenated cache:" in res.stdout and "one prefill pass:" in res.stdout
    assert "one prefill pass, batch 64:" in res.stdout
    assert "whole prompts:" in res.stdout and "of which prefill passes" in res.stdout


@pytest.mark.slow  # ~35 s on the shared 2 cores, most of it loading transformers and training a tokenizer
def test_panel_bench_runs_and_finds_the_same_scores():
    res = subprocess.run([sys.executable, "-m", "bench.panel", "--cases", "2", "--labels", "12", "--batch-size", "5",
                          "--repeats", "1", "--student-config", "tests/data/tiny/student.yaml"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    differences = [float(part.split()[0]) for part in res.stdout.split("largest score difference: ")[1:]]
    assert len(differences) == 2 and max(differences) < 1e-4  # the trie against a row per name, and no cache


def test_train_speed_bench_runs_both_ways_on_the_same_objective(tmp_path):
    """Tiny sizes: each method trains once each way; the first loss (same model, same first batch) agrees."""
    out = tmp_path / "train_speed.json"
    res = subprocess.run([sys.executable, "-m", "bench.train_speed", "--rows", "8", "--repeats", "1",
                          "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    result = json.loads(out.read_text())
    assert sorted(result) == ["dpo", "orpo", "sft"]
    for method, row in result.items():
        assert f"{method} ratio:" in res.stdout
        assert row["real_tokens"] > 0 and row["workflow"]["tokens_per_s"] > 0 and row["plain"]["tokens_per_s"] > 0
        assert row["workflow"]["first_loss"] == pytest.approx(row["plain"]["first_loss"], abs=1e-3), method
    # The workflow's own forward passes (ORPO, DPO: shared prefix; SFT: LM head on the answer) against TRL's,
    # in the same workflow: the same losses
    assert "training TRL's way" not in res.stderr  # the workflow did not fall back to TRL's forward pass
    for method in ("orpo", "sft", "dpo"):
        trl_way = result[method]["workflow, TRL's forward"]
        assert f"{method} own forward against TRL's" in res.stdout and result[method]["forward_ratio"] > 0
        for end in ("first_loss", "last_loss"):
            assert result[method]["workflow"][end] == pytest.approx(trl_way[end], abs=1e-4), (method, end)


def test_reruns_bench_plans_a_change_with_a_dry_run(tmp_path):
    """Dry run only, on an empty folder: the whole DAG is planned, and the table names the change."""
    res = subprocess.run([sys.executable, "-m", "bench.reruns", "--dir", str(tmp_path), "--dry-only",
                          "--change", "evaluation.bootstrap=200", "recipe:orpo.learning_rate=5.0e-4"],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "| `evaluation.bootstrap=200` | " in res.stdout and "make_report (1)" in res.stdout
    assert "train_student (3)" in res.stdout  # nothing was run: every method is planned
    # The recipe was edited in the run folder's copy of the config, and put back; the repository's is untouched.
    for config in (tmp_path / "config", REPO / "config"):
        assert "5.0e-4" not in (config / "rare_disease" / "recipes" / "tiny" / "orpo.yaml").read_text()


def test_compare_runs_pairs_each_run_with_the_first(tmp_path, capsys):
    """Two runs' score files of one method: each is renamed and paired against the first on shared cases."""
    import polars as pl

    from bench.compare_runs import by_seen, compare, load_named
    from mint.core import schemas
    from mint.core.evaluate import CASE_SCORE_SCHEMA
    from mint.core.io import MintError, write_parquet

    paths = []
    for name, ranks in (("a", [1, None, None, 2]), ("b", [1, 1, 1, None])):
        rows = {"case_id": ["c1", "c2", "c3", "c4"], "method": ["orpo"] * 4, "label_id": ["A"] * 4,
                "predicted_ids": [["A"]] * 4, "rank": ranks, "n_predicted": [1] * 4, "n_hallucinated": [0] * 4,
                "format_ok": [True] * 4, "seed": [1] * 4}
        path = tmp_path / f"{name}.parquet"
        write_parquet(pl.DataFrame(rows, schema=CASE_SCORE_SCHEMA), path, schemas.CASE_SCORES)
        paths.append(f"{name}={path}")
    lines = compare(load_named(paths), ks=(1, 10), n_boot=50)
    assert lines[2].startswith("| a | 4 | 25.0 [") and lines[3].startswith("| b | 4 | 75.0 [")
    assert lines[-2].startswith("| b | top1 | +50.0 |") and lines[-1].startswith("| b | top10 | +25.0 |")
    with pytest.raises(MintError, match="name=path"):
        load_named([str(tmp_path / "a.parquet")])
    # Seen / unseen: label A has a real training case, B only a simulated one (its case c4 is unseen).
    cases = pl.DataFrame({"case_id": ["t1", "t2", "c1", "c2", "c3", "c4"], "label_id": ["A", "B", "A", "A", "A", "B"],
                          "split": ["train", "train", "test", "test", "test", "test"],
                          "source": ["phenopacket", "simulated", "phenopacket", "phenopacket", "phenopacket",
                                     "phenopacket"]})
    scores = load_named(paths).with_columns(label_id=pl.Series(["A", "A", "A", "B"] * 2))
    seen_lines = by_seen(scores, cases, ks=(1, 10), n_boot=50)
    assert seen_lines[2] == "| a | 3 / 1 | 33.3 / 0.0 | 33.3 / 100.0 |"
    assert seen_lines[3] == "| b | 3 / 1 | 100.0 / 0.0 | 100.0 / 0.0 |"
    # The command line takes the generated cases' sources from the application.
    from bench.compare_runs import main

    cases.write_parquet(tmp_path / "cases.parquet")
    relabelled = [tmp_path / f"{name}-b.parquet" for name in ("a", "b")]
    for path, (name, part) in zip(relabelled, scores.partition_by("method", as_dict=True).items()):
        part.with_columns(method=pl.lit("orpo")).write_parquet(path)
    main([f"a={relabelled[0]}", f"b={relabelled[1]}", "--cases", str(tmp_path / "cases.parquet"), "--bootstrap", "50",
          "--application", "rare_disease"])
    assert "| b | 3 / 1 | 100.0 / 0.0 | 100.0 / 0.0 |" in capsys.readouterr().out


def test_same_results_bench_tells_same_from_different_bytes_and_counts_modes(tmp_path):
    from bench.same_results import compare, modes

    for run, metrics in (("a", b"top1,0.5\n"), ("b", b"top1,0.6\n")):
        (tmp_path / run / "results/report").mkdir(parents=True)
        (tmp_path / run / "results/report/summary.md").write_text("# same\n")
        (tmp_path / run / "results/report/metrics.csv").write_bytes(metrics)
    (tmp_path / "b/results/extra.parquet").write_bytes(b"")
    found = compare(tmp_path / "a", tmp_path / "b")
    assert found == {"same": ["report/summary.md"], "different": ["report/metrics.csv"], "only before": [],
                     "only after": ["extra.parquet"]}
    (tmp_path / "a/results/report/metrics.csv").chmod(0o644)
    (tmp_path / "a/results/report/summary.md").chmod(0o600)
    counted = modes(tmp_path / "a")
    assert counted[("644", "file")] == 1 and counted[("600", "file")] == 1
    assert sum(n for (_, kind), n in counted.items() if kind == "folder") == 2  # results/ and results/report/
