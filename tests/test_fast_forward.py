"""The workflow's own forward passes against TRL's: ORPO's and DPO's with each pair's prompt run once
(`mint.core.trainers.fast_forward.shared_prefix_forward`, `shared_prefix_fused_forward`), SFT's with the LM head on
the answer only (`answer_only_fused_forward`).

    .venv/bin/python -m pytest -q tests/test_fast_forward.py
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from datasets import Dataset

from mint.core.students.vision import build_chat_tokenizer
from mint.core.trainers import fast_forward, shared_prefix_rows, trainer_classes
from tests.test_vision_student import CORPUS, SHAPES, answer, ask, config_args, tiny_text_model


def rows(n: int) -> list[dict]:
    """Pairs whose prompts differ in length (so the batch pads), whose answers begin alike ("1. "), and whose
    rejected answers (1 to 3 names) can be longer than the chosen ones (2): the halves pad to different widths."""
    return [{"prompt": ask(" ".join(["Which shapes?"] * (1 + i % 4))),
             "chosen": answer(SHAPES[i % 3: i % 3 + 2]), "rejected": answer(SHAPES[3:][: 1 + i % 3])}
            for i in range(n)]


def tiny_trainer(folder, method: str, data: list[dict], **args):
    """`method`'s workflow trainer on a tiny Llama over `data` (6 rows), and its first batch of all 6."""
    tokenizer = build_chat_tokenizer(CORPUS, 400, 256)
    config_cls, trainer_cls = trainer_classes(method)
    args = config_args(output_dir=str(folder), max_length=256, per_device_train_batch_size=6, **args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = trainer_cls(model=tiny_text_model(tokenizer), args=config_cls(**args),
                        train_dataset=Dataset.from_list(data), processing_class=tokenizer)
    return t, t._prepare_inputs(t.data_collator([t.train_dataset[i] for i in range(6)]))


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    return tiny_trainer(tmp_path_factory.mktemp("orpo"), "orpo", rows(6), beta=0.1)



def make_fast_forward_disagree(monkeypatch) -> None:
    """The workflow's forward pass made to differ from TRL's (its logits shifted: not what the LM head makes of
    the last hidden state), so that the first-batch check falls back."""
    original = fast_forward.shared_prefix_forward

    def off(model, batch):
        out = list(original(model, batch))
        out[0] = out[0] + 0.1
        return tuple(out)

    monkeypatch.setattr(fast_forward, "shared_prefix_forward", off)

def test_each_packed_position_sees_what_it_sees_in_its_own_sequence():
    chosen = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 9, 0, 0]])
    rejected = torch.tensor([[5, 6, 3, 0, 0], [5, 6, 9, 4, 4]])
    ids, pos, mask, chosen_at, rejected_at = shared_prefix_rows(
        chosen, torch.tensor([4, 3]), rejected, torch.tensor([3, 5]), torch.float32)
    # pair 0: prefix [5, 6], then chosen [7, 8], then rejected [3]; pair 1: chosen is rejected's prefix
    assert ids.tolist() == [[5, 6, 7, 8, 3], [5, 6, 9, 4, 4]]
    assert pos.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 3, 4]]
    seen = (mask[:, 0] == 0).int().tolist()
    assert seen[0][4] == [1, 1, 0, 0, 1]  # rejected's token: the prefix and itself, not the chosen answer
    assert seen[1] == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert rejected_at[0, :3].tolist() == [0, 1, 4] and rejected_at[1, :5].tolist() == [0, 1, 2, 3, 4]
    assert chosen_at[0, :4].tolist() == [0, 1, 2, 3]


def test_shared_prefix_forward_equals_trls_forward_and_gradients(trainer):
    """Same mean log-probabilities, NLL, loss and gradients as TRL's concatenated forward pass."""
    t, batch = trainer
    model = t.model
    fast = fast_forward.shared_prefix_forward(model, batch)
    slow = t._trl_forward(model, batch)
    assert (batch["chosen_input_ids"][:, :4] == batch["rejected_input_ids"][:, :4]).all()  # prompts are shared
    for name, a, b in (("chosen logps", fast[0], slow[0]), ("rejected logps", fast[1], slow[1]),
                       ("nll", fast[4], slow[4])):
        assert torch.allclose(a, b, atol=1e-5), name
    grads = []
    for shared in (True, False):
        t.fast_forward = shared
        model.zero_grad()
        t.compute_loss(model, batch).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    t.fast_forward = None
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_the_first_batch_decides_and_a_difference_falls_back(trainer, monkeypatch):
    t, batch = trainer
    t.fast_forward = None
    t.compute_loss(t.model, batch)
    assert t.fast_forward is True
    t.fast_forward = None

    make_fast_forward_disagree(monkeypatch)
    with pytest.warns(UserWarning, match="differs from TRL's"):
        t.compute_loss(copy.deepcopy(t.model), batch)
    assert t.fast_forward is False
    t.fast_forward = None


# --------------------------------------------------------------------------- DPO


@pytest.fixture(scope="module")
def dpo(tmp_path_factory):
    """A DPO trainer whose reference log-probabilities were precomputed (the workflow's default)."""
    return tiny_trainer(tmp_path_factory.mktemp("dpo"), "dpo", rows(6), beta=0.1, precompute_ref_log_probs=True)


def test_dpo_fused_forward_equals_trls_fused_head(dpo):
    """Every per-token field TRL's DPO reads, the same as TRL's fused LM head on the two rows of each pair."""
    t, batch = dpo
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = ids.masked_fill(batch["completion_mask"] == 0, -100)
    assert (ids[:6, :4] == ids[6:, :4]).all() and (mask[:6].sum(-1) != mask[6:].sum(-1)).any()
    fast = fast_forward.shared_prefix_fused_forward(t.model, labels, input_ids=ids, attention_mask=mask)
    slow = t.model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, use_cache=False)
    assert fast.log_probs.shape == slow.log_probs.shape
    assert (fast.log_probs != 0).sum() == (labels[:, 1:] != -100).sum()
    for name in ("log_probs", "entropy", "mean_logits", "loss"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), atol=1e-5), name
    assert torch.equal(fast.is_top1, slow.is_top1)


def test_dpo_takes_the_shared_path_with_the_same_reference_loss_and_gradients(dpo):
    t, batch = dpo
    assert t.fast_forward is True  # decided on the first batch of the reference pass, before training
    model = t.model
    trl_head = model.forward.__func__  # TRL's fused LM head
    refs, grads, losses = [], [], []
    for shared in (True, False):
        t.fast_forward = shared
        refs.append(torch.stack(t.compute_ref_log_probs(model, batch)))
        model.zero_grad()
        loss = t.compute_loss(model, batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    t.fast_forward = True
    assert torch.allclose(refs[0], refs[1], atol=1e-4)
    assert torch.allclose(refs[0][0], batch["ref_chosen_logps"], atol=1e-4)
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    assert model.forward.__func__ is trl_head  # TRL's head is back after each call


def test_dpo_a_difference_falls_back_to_trls_way(dpo, monkeypatch):
    t, batch = dpo
    original = fast_forward.shared_prefix_fused_forward

    def off(*args, **kwargs):
        out = original(*args, **kwargs)
        out.log_probs = out.log_probs + 0.1 * out.label_mask
        return out

    monkeypatch.setattr(fast_forward, "shared_prefix_fused_forward", off)
    t.fast_forward = None
    with pytest.warns(UserWarning, match="DPO: the workflow's forward pass differs from TRL's"):
        t.compute_loss(t.model, batch)
    assert t.fast_forward is False
    t.fast_forward = True


# --------------------------------------------------------------------------- SFT


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    data = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows(6)]
    return tiny_trainer(tmp_path_factory.mktemp("sft"), "sft", data)


def test_sft_answer_only_head_equals_trls_and_gradients(sft):
    t, batch = sft
    labels = batch["labels"]
    assert (labels == -100).sum() > (labels != -100).sum()  # the prompts are most of each row, and not learnt
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    fast = fast_forward.answer_only_fused_forward(t.model, labels, **inputs)
    slow = t.model(**batch, fused_lm_head=True, use_cache=False)
    for name in ("log_probs", "entropy", "loss"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), atol=1e-5), name
    assert torch.equal(fast.is_top1, slow.is_top1)
    losses, grads = [], []
    for way in (None, False):  # None: decided on this batch (and True)
        t.fast_forward = way
        t.model.zero_grad()
        loss = t.compute_loss(t.model, dict(batch))
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in t.model.parameters()])
        assert t.fast_forward is (True if way is None else False)
    t.fast_forward = None
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["sft", "dpo", "orpo"])
def test_a_method_has_one_trainer_class(method):
    """The workflow's trainer class is made once per TRL class, so isinstance holds across calls."""
    assert trainer_classes(method)[1] is trainer_classes(method)[1]
