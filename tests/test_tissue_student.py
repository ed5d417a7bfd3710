"""The builtin tissue student's first stage: the vision tower learns to tell tissues apart before captions.

    .venv/bin/python -m pytest -q tests/test_tissue_student.py
"""

from __future__ import annotations

import copy

import torch

from mint.apps.tissue.student import pretrain_vision_tower
from mint.core.students.vision import build_tiny_llava

SETTINGS = {"steps": 60, "batch_size": 16, "learning_rate": 3e-3, "seed": 0}


def two_kinds(n: int = 32) -> tuple[torch.Tensor, list[str]]:
    """Pixel values of two made-up 'tissues': noise around a reddish or a bluish mean; half of each."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(n, 3, 64, 64, generator=generator)
    shift = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1)
    pixels[: n // 2] += shift
    pixels[n // 2:] -= shift
    return pixels, ["red"] * (n // 2) + ["blue"] * (n - n // 2)


def tower():
    torch.set_num_threads(1)
    model, _ = build_tiny_llava(["a red cell", "a blue cell"], image_size=64, patch=16, vocab_size=300, seed=0)
    return model.model.vision_tower


def test_the_tower_learns_to_tell_the_kinds_apart():
    pixels, labels = two_kinds()
    model = tower()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    curve = pretrain_vision_tower(model, pixels, labels, SETTINGS)
    assert [c["step"] for c in curve] == [50, 60]
    assert curve[-1]["loss"] < 0.3 < 0.69  # log 2: a head that cannot tell them apart
    # Every weight LLaVA reads was trained; the final layer norm is not read (class token only).
    unchanged = {n for n, p in model.named_parameters() if torch.equal(p, before[n])}
    assert unchanged == {"post_layernorm.weight", "post_layernorm.bias"}
    with torch.no_grad():
        features = model(pixel_values=pixels).last_hidden_state[:, 1:].mean(1)
    red, blue = features[:16].mean(0), features[16:].mean(0)
    assert (red - blue).norm() > features[:16].std(0).norm()  # the kinds sit apart in the features


def test_same_seed_same_weights_another_seed_others():
    pixels, labels = two_kinds()
    first, second, third = tower(), tower(), tower()
    settings = {**SETTINGS, "steps": 5}
    pretrain_vision_tower(first, pixels, labels, settings)
    pretrain_vision_tower(second, pixels, labels, copy.deepcopy(settings))
    pretrain_vision_tower(third, pixels, labels, {**settings, "seed": 1})
    a, b, c = (dict(m.named_parameters()) for m in (first, second, third))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_pretraining_rows_are_training_patches_captions_and_tissue_names():
    import polars as pl

    from mint.apps.tissue.student import ASK_TISSUE, DESCRIBE, caption_rows

    cases = pl.DataFrame({"case_id": ["b", "a", "c"], "split": ["train", "train", "test"],
                          "label_id": ["head_neck", "colon", "colon"],
                          "image_path": ["b.png", "a.png", "c.png"],
                          "caption": ["H&E patch of head & neck tissue.", "H&E patch of colon tissue.", "x"]})
    rows = caption_rows(cases)
    assert [(r["images"], r["prompt"][0]["content"], r["completion"][0]["content"]) for r in rows] == [
        (["a.png"], DESCRIBE, "H&E patch of colon tissue."), (["a.png"], ASK_TISSUE, "Colon."),
        (["b.png"], DESCRIBE, "H&E patch of head & neck tissue."), (["b.png"], ASK_TISSUE, "Head & Neck.")]
    assert len(caption_rows(cases, ask_tissue=False)) == 2
