"""Leftovers and resumed runs: what a killed write leaves is removed by the next one; a resumed training run's
`train_loss` covers the whole run; a finished run leaves no empty checkpoint folder."""

from __future__ import annotations

import pytest

from mint.core.io import atomic_dir, atomic_path, remove_stale_temporaries
from mint.core.train import remove_empty_parents, whole_run_loss


def test_a_killed_folder_write_is_cleaned_up_by_the_next(tmp_path):
    """A kill during the cohort step leaves `.images.XXXXXXXX.tmp`; the rerun's write of `images` removes it."""
    stale = tmp_path / ".images.abc123_x.tmp"
    stale.mkdir()
    (stale / "p1.png").write_bytes(b"half a photo")
    stale_file = tmp_path / ".cases.parquet.k2j4h5g6.tmp"
    stale_file.write_bytes(b"half a table")
    other = tmp_path / ".images2.abc123_x.tmp"  # another output's temporary: not this write's business
    other.mkdir()
    with atomic_dir(tmp_path / "images") as tmp:
        (tmp / "p1.png").write_bytes(b"a photo")
    with atomic_path(tmp_path / "cases.parquet") as tmp:
        tmp.write_bytes(b"a table")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".images2.abc123_x.tmp", "cases.parquet", "images"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "images") as tmp:
        (tmp / "p1.png").write_bytes(b"a photo")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "cases.parquet"):
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_only_this_outputs_temporaries_are_removed(tmp_path):
    for name in (".cases.parquet.abcdefgh.tmp", ".cases.parquet.provenance.json.abcdefgh.tmp", "cases.parquet.bak",
                 ".cases.parquet.short.tmp"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path / "cases.parquet")
    assert [p.name for p in removed] == [".cases.parquet.abcdefgh.tmp"]


def test_whole_run_loss_weights_each_logged_interval_by_its_steps():
    # Steps 1-10 mean 2.0, 11-20 mean 1.0 (logged before a kill), 21-25 mean 0.5 (after the resume).
    history = [{"loss": 2.0, "step": 10}, {"eval_loss": 9.0, "step": 10}, {"loss": 1.0, "step": 20},
               {"loss": 0.5, "step": 25}, {"train_loss": 0.5, "step": 25}]
    assert whole_run_loss(history) == pytest.approx((2.0 * 10 + 1.0 * 10 + 0.5 * 5) / 25)
    assert whole_run_loss([{"train_runtime": 1.0, "step": 3}]) is None


def test_a_finished_run_leaves_no_empty_checkpoint_folder(tmp_path):
    ckpt = tmp_path / "results/checkpoints/seed7/sft"
    ckpt.mkdir(parents=True)
    (tmp_path / "results/checkpoints/seed7/orpo").mkdir()  # still training
    ckpt.rmdir()
    remove_empty_parents(ckpt, levels=2)
    assert (tmp_path / "results/checkpoints/seed7").is_dir()  # orpo's folder is still there
    (tmp_path / "results/checkpoints/seed7/orpo").rmdir()
    remove_empty_parents(tmp_path / "results/checkpoints/seed7/orpo", levels=2)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == []


def test_a_label_with_no_training_case_is_warned_about(tmp_path, caplog):
    import logging

    from mint.core.preferences import build_preferences
    from tests.factories import make_cases, make_labels, write_cohort, write_rankings

    paths = write_cohort(tmp_path, make_cases(["d1", "d2"], ["train", "test"]), make_labels(["d1", "d2", "d3", "d4"]))
    rankings = write_rankings(tmp_path / "r.parquet", {"c1": [0.4, 0.3, 0.2, 0.1], "c2": [0.1, 0.2, 0.3, 0.4]},
                              ["d1", "d2", "d3", "d4"], "m")
    prompt = {"system": "s", "user": "{note} {k}", "header": "A:"}
    with caplog.at_level(logging.WARNING, logger="mint.core.preferences"):
        build_preferences(paths["cases"], paths["candidates"], rankings, tmp_path / "p.parquet", tmp_path / "s.parquet",
                          modality="m", prompt=prompt, text_field="note", k=2, q=2)
    assert "3 of 4 candidate labels have no training case (e.g. ['d2', 'd3', 'd4'])" in caplog.text
