"""The TRL names the workflow's trainers rely on (mint/core/trainers/surface.py) are there, a moved one is
named (tests of the test: each removes or changes one), outputs TRL returns as plain tuples are checked
where they are read by position, and a fall-back to TRL's own forward pass is loud: a WARNING in the
training log, `fast_forward` in the metrics, a line of the report.

    .venv/bin/python -m pytest -q tests/test_trl_surface.py
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mint.core.trainers import fast_forward, surface, trainer_classes, vision_trainer_classes
from mint.core.trainers.surface import SURFACE, USERS, TRLChanged, check_trl_surface, surface_problems, trl_version
from tests.test_fast_forward import make_fast_forward_disagree, rows, tiny_trainer
from tests.test_launch import tiny  # noqa: F401 - the fixture: a tiny student, 8 pairs and an ORPO recipe


@pytest.fixture
def fresh_checks():
    """The construction-time check runs once per process; forget that around a test that breaks TRL."""
    surface.check_once.cache_clear()
    yield
    surface.check_once.cache_clear()


def test_the_installed_trl_has_every_name_the_trainers_rely_on():
    assert surface_problems() == []
    check_trl_surface()


def test_each_name_says_who_needs_it_and_why():
    for entry in SURFACE:
        assert entry.users and set(entry.users) <= set(USERS), entry
        assert entry.why and entry.expect in ("exists", "params", "fields", "refers", "equals"), entry
    # Every trainer of the workflow's own has names to check at its construction.
    assert all(any(u in e.users for e in SURFACE) for u in USERS)


def test_a_removed_private_method_is_named(monkeypatch, fresh_checks):
    """Without DPOTrainer._compute_loss, VisionORPOTrainer's override would never run: DPO's loss under ORPO's name."""
    from trl import DPOTrainer

    monkeypatch.delattr(DPOTrainer, "_compute_loss")
    with pytest.raises(TRLChanged, match=rf"TRL {trl_version()} changed DPOTrainer\._compute_loss: it is gone"):
        check_trl_surface("vision_orpo")
    assert not surface_problems("sft", "orpo")  # the other trainers do not rely on it
    # Checked where the trainers are made, before TRL's __init__ runs.
    _, vision_orpo = vision_trainer_classes("orpo")
    with pytest.raises(TRLChanged, match=r"DPOTrainer\._compute_loss"):
        vision_orpo(model=None, args=None)
    with pytest.raises(TRLChanged, match=r"DPOTrainer\._compute_loss"):
        trainer_classes("dpo")[1](model=None, args=None)


def test_a_method_that_no_longer_calls_the_override_is_named(monkeypatch):
    from trl import DPOTrainer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return self._loss_of_a_newer_trl(model, inputs)

    monkeypatch.setattr(DPOTrainer, "compute_loss", compute_loss)
    with pytest.raises(TRLChanged, match=r"changed DPOTrainer\.compute_loss: its code no longer refers to "
                                         r"\['_compute_loss'\]"):
        check_trl_surface("vision_orpo")


def test_changed_parameters_and_fields_are_named(monkeypatch):
    from trl import SFTTrainer
    from trl.trainer import utils

    monkeypatch.setattr(SFTTrainer, "compute_loss", lambda self, model, inputs, num_items_in_batch=None: None)
    with pytest.raises(TRLChanged, match=r"changed SFTTrainer\.compute_loss: its parameters are"):
        check_trl_surface("sft")
    monkeypatch.setattr(utils, "FusedCausalLMOutput", dict)
    assert any("changed FusedCausalLMOutput: it is no longer a dataclass" in p for p in surface_problems("fused"))


# --------------------------------------------------------------------------- outputs read by position


@pytest.fixture(scope="module")
def orpo(tmp_path_factory):
    return tiny_trainer(tmp_path_factory.mktemp("orpo"), "orpo", rows(6), beta=0.1)


def test_a_reordered_orpo_output_fails_instead_of_training_on_the_wrong_slot(orpo, monkeypatch):
    """TRL's concatenated_forward returns a plain tuple that both TRL's loss and the workflow read by position."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOTrainer as parent

    t, batch = orpo
    original = parent.concatenated_forward

    def reordered(self, model, batch):
        out = original(self, model, batch)
        return (out[4], *out[:4])  # a newer TRL with the loss first

    monkeypatch.setattr(parent, "concatenated_forward", reordered)
    with pytest.raises(TRLChanged, match=r"changed ORPOTrainer\.concatenated_forward: it returned \(\(\), "):
        t._trl_forward(t.model, batch)
    t.fast_forward = None  # the first-batch check reads it too, and does not mistake it for a reason to fall back
    with pytest.raises(TRLChanged, match=r"ORPOTrainer\.concatenated_forward"):
        t.compute_loss(t.model, batch)
    t.fast_forward = None


def test_a_kernel_with_other_outputs_fails(monkeypatch):
    from trl.kernels import ChunkedLogProbFunction

    head = torch.nn.Linear(4, 7, bias=False)
    shifted = torch.tensor([[-100, 3, 5]])
    hidden = torch.randn(2, 4)
    assert fast_forward._fused_output(hidden, head, shifted).log_probs.shape == (1, 3)
    monkeypatch.setattr(ChunkedLogProbFunction, "apply", lambda *args: (torch.zeros(2), torch.zeros(2)))
    with pytest.raises(TRLChanged, match=r"changed ChunkedLogProbFunction\.apply: it returned \(\(2,\), \(2,\)\)"):
        fast_forward._fused_output(hidden, head, shifted)


# --------------------------------------------------------------------------- a fall-back is loud


def test_the_outcome_says_used_or_why_it_fell_back(orpo):
    t, batch = orpo
    t.fast_forward = None
    t.compute_loss(t.model, batch)
    assert fast_forward.fast_forward_outcome(t) == "used"


    class Wrapped(torch.nn.Module):  # as DistributedDataParallel wraps a model: no get_decoder
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    t.fast_forward = None
    with pytest.warns(UserWarning, match=r"ORPO: the workflow's forward pass does not apply \(the model \(Wrapped, "
                                         r"e\.g\. wrapped for distributed training\) has no get_decoder\); training "
                                         r"TRL's way"):
        assert len(t.concatenated_forward(Wrapped(t.model), batch)) == 5  # TRL's way
    outcome = fast_forward.fast_forward_outcome(t)
    assert outcome == "fell back: the model (Wrapped, e.g. wrapped for distributed training) has no get_decoder"
    assert fast_forward.fell_back(outcome)
    t.fast_forward, t.fast_forward_reason = None, None


def test_a_batch_the_fast_path_refuses_is_counted():
    """SFT's forward pass takes text rows only; a batch with other inputs goes TRL's way and is reported."""
    refused = fast_forward._text_rows_refusal({"input_ids": 1, "pixel_values": 2})
    assert refused == "a batch with inputs besides the token ids (pixel_values)"
    assert fast_forward._pairs_refusal({"input_ids": torch.zeros(3, 2), "attention_mask": torch.ones(3, 2)}) == \
        "a batch of 3 rows, not [chosen; rejected] pairs"
    trainer = fast_forward._FastForward()
    trainer.fast_forward_reason = refused  # every batch refused: never decided
    assert fast_forward.fast_forward_outcome(trainer) == f"fell back: no batch the workflow's forward pass takes " \
                                                         f"({refused})"
    trainer.fast_forward, trainer.fast_forward_calls, trainer.fast_forward_refused = True, 10, 2
    assert fast_forward.fast_forward_outcome(trainer).startswith("partly fell back: TRL's way for 2 of 10")
    assert fast_forward.fast_forward_outcome(object()) is None  # TRL's own trainers (CPO, KTO) have none
    assert trainer_classes("dpo")[1].fast_forward_offered
    assert not vision_trainer_classes("dpo")[1].fast_forward_offered  # image batches: TRL's way, by design


def test_a_fall_back_is_in_the_training_log_the_metrics_and_the_report(tiny, tmp_path, monkeypatch):  # noqa: F811
    from mint.core.report import fast_forward_lines
    from mint.core.train import train_student
    from mint.core.workflow import step_log

    d, _ = tiny
    make_fast_forward_disagree(monkeypatch)
    log = tmp_path / "train.log"
    with step_log(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = train_student(d / "orpo.yaml", str(d / "base"), d / "preferences.parquet", tmp_path / "out",
                                checkpoint_dir=tmp_path / "ckpt", seed=5)
    assert metrics["fast_forward"].startswith("fell back: the workflow's forward pass differs from TRL's on the "
                                              "first batch (chosen 1.0e-01")
    assert json.loads((tmp_path / "out/metrics.json").read_text())["fast_forward"] == metrics["fast_forward"]
    warning = [line for line in log.read_text().splitlines() if " WARNING: " in line and "forward pass" in line]
    assert len(warning) == 1 and "mint.core.train WARNING: orpo: trained with TRL's own forward pass" in warning[0]
    assert metrics["fast_forward"] in warning[0]
    rows_ = {"orpo": "MINT (ORPO)"}
    line = fast_forward_lines([metrics, {**metrics, "method": "sft", "fast_forward": "used"}], rows_)
    assert line == ["", "Trained with TRL's own forward pass, not the workflow's (slower; the same loss up to float "
                        f"rounding): MINT (ORPO) seed 5: {metrics['fast_forward']}."]
    # Nothing fell back (or no student has a forward pass of the workflow's own): the summary is as it was.
    assert fast_forward_lines([{**metrics, "fast_forward": "used"}, {**metrics, "fast_forward": None}], rows_) == []
