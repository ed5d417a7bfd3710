"""ORPO's shared-prefix forward pass (`mint.core.trl_compat.shared_prefix_forward`) against TRL's own.

    .venv/bin/python -m pytest -q tests/test_orpo_prefix.py
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from datasets import Dataset

from mint.core import trl_compat
from mint.core.trl_compat import shared_prefix_rows, trainer_classes
from mint.core.vision import build_chat_tokenizer
from tests.test_vision_student import CORPUS, SHAPES, answer, ask, config_args, tiny_text_model


def rows(n: int) -> list[dict]:
    """Pairs whose prompts differ in length (so the batch pads), whose answers begin alike ("1. "), and whose
    rejected answers (1 to 3 names) can be longer than the chosen ones (2): the halves pad to different widths."""
    return [{"prompt": ask(" ".join(["Which shapes?"] * (1 + i % 4))),
             "chosen": answer(SHAPES[i % 3: i % 3 + 2]), "rejected": answer(SHAPES[3:][: 1 + i % 3])}
            for i in range(n)]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    tokenizer = build_chat_tokenizer(CORPUS, 400, 256)
    config_cls, trainer_cls = trainer_classes("orpo")
    args = config_args(output_dir=str(tmp_path_factory.mktemp("orpo")), beta=0.1, max_length=256,
                       per_device_train_batch_size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = trainer_cls(model=tiny_text_model(tokenizer), args=config_cls(**args),
                        train_dataset=Dataset.from_list(rows(6)), processing_class=tokenizer)
    batch = t._prepare_inputs(t.data_collator([t.train_dataset[i] for i in range(6)]))
    return t, batch


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
    fast = trl_compat.shared_prefix_forward(model, batch)
    slow = t._trl_forward(model, batch)
    assert (batch["chosen_input_ids"][:, :4] == batch["rejected_input_ids"][:, :4]).all()  # prompts are shared
    for name, a, b in (("chosen logps", fast[0], slow[0]), ("rejected logps", fast[1], slow[1]),
                       ("nll", fast[4], slow[4])):
        assert torch.allclose(a, b, atol=1e-5), name
    grads = []
    for shared in (True, False):
        t.shared_prefix = shared
        model.zero_grad()
        t.compute_loss(model, batch).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    t.shared_prefix = None
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_the_first_batch_decides_and_a_difference_falls_back(trainer, monkeypatch):
    t, batch = trainer
    t.shared_prefix = None
    t.compute_loss(t.model, batch)
    assert t.shared_prefix is True
    t.shared_prefix = None

    original = trl_compat.shared_prefix_forward

    def off(model, batch):  # a model whose logits are not what the LM head makes of its last hidden state
        out = list(original(model, batch))
        out[0] = out[0] + 0.1
        return tuple(out)

    monkeypatch.setattr(trl_compat, "shared_prefix_forward", off)
    with pytest.warns(UserWarning, match="differs from TRL's"):
        t.compute_loss(copy.deepcopy(t.model), batch)
    assert t.shared_prefix is False
    t.shared_prefix = None
