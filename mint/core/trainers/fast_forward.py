"""The workflow's own forward passes for TRL's ORPO, DPO and SFT trainers, and the check that decides,
on the first batch, whether to use them.

ORPO and DPO run each pair's shared prefix (the prompt) once, and all three project onto the vocabulary
only where an answer token is predicted; the results are TRL's up to float rounding. The first batch is
also run TRL's way (eval mode) and compared: where they differ, or the model or batch is one the
workflow's forward pass does not take, training goes TRL's way, with a warning naming the reason, and
`fast_forward_outcome(trainer)` ("used", "fell back: <reason>") goes into the training metrics.

    .venv/bin/python -m pytest -q tests/test_fast_forward.py
"""

from __future__ import annotations

import contextlib
import functools
import types
import warnings

from mint.core.trainers.surface import TRLChanged, check_once, expect_output


def shared_prefix_rows(chosen_ids, chosen_lens, rejected_ids, rejected_lens, dtype):
    """One row per pair: the chosen sequence, then the rejected one's tokens after the prefix they share.

    `chosen_ids`/`rejected_ids`: (batch, length) right-padded prompt + answer ids, real lengths in
    `*_lens`. Returns (input_ids, position_ids, a 4D additive attention mask of `dtype`, and for each
    side the packed place of every sequence position: `places[i, j]` is where the hidden state of
    that side's position j of pair i is in the packed row). The rejected tokens after the shared
    prefix (length s) take positions s, s+1, ... and attend to the prefix and to each other, not to
    the chosen answer, so every position sees exactly what it sees in its own sequence.
    """
    import torch

    batch = chosen_ids.shape[0]
    shared, total = [], []
    for i in range(batch):
        c, r = int(chosen_lens[i]), int(rejected_lens[i])
        n = min(c, r)
        same = (chosen_ids[i, :n] == rejected_ids[i, :n]).long()
        s = int(same.cumprod(0).sum())  # length of the common prefix
        shared.append(s)
        total.append(c + r - s)
    width = max(total)
    device = chosen_ids.device
    ids = chosen_ids.new_zeros((batch, width))
    pos = torch.zeros((batch, width), dtype=torch.long, device=device)
    allow = torch.zeros((batch, width, width), dtype=torch.bool, device=device)
    length = max(chosen_ids.shape[1], rejected_ids.shape[1])
    chosen_at = torch.zeros((batch, length), dtype=torch.long, device=device)
    rejected_at = torch.zeros((batch, length), dtype=torch.long, device=device)
    for i in range(batch):
        c, r, s = int(chosen_lens[i]), int(rejected_lens[i]), shared[i]
        ids[i, :c] = chosen_ids[i, :c]
        ids[i, c:c + r - s] = rejected_ids[i, s:r]
        pos[i, :c] = torch.arange(c, device=device)
        pos[i, c:c + r - s] = torch.arange(s, r, device=device)
        allow[i, :c, :c] = torch.ones((c, c), dtype=torch.bool, device=device).tril()
        allow[i, c:c + r - s, :s] = True
        allow[i, c:c + r - s, c:c + r - s] = torch.ones((r - s, r - s), dtype=torch.bool, device=device).tril()
        allow[i, c + r - s:, 0] = True  # padding sees one key: no row without any
        chosen_at[i, :c] = torch.arange(c, device=device)
        rejected_at[i, :s] = torch.arange(s, device=device)
        rejected_at[i, s:r] = torch.arange(c, c + r - s, device=device)
    mask = torch.zeros((batch, 1, width, width), dtype=dtype, device=device)
    mask.masked_fill_(~allow[:, None], torch.finfo(dtype).min)
    return ids, pos, mask, chosen_at, rejected_at


def _packed_hidden(model, chosen_ids, chosen_lens, rejected_ids, rejected_lens):
    """The decoder's last hidden states of `shared_prefix_rows`, and each side's packed places."""
    dtype = next(model.parameters()).dtype
    ids, pos, mask, chosen_at, rejected_at = shared_prefix_rows(chosen_ids, chosen_lens, rejected_ids,
                                                                rejected_lens, dtype)
    hidden = model.get_decoder()(input_ids=ids, position_ids=pos, attention_mask=mask,
                                 use_cache=False).last_hidden_state
    return hidden, chosen_at, rejected_at


def shared_prefix_forward(model, batch):
    """ORPO's forward pass on a batch of pairs, the prompt run once a pair and the LM head only where an
    answer token is predicted (decoder-only text models).

    Returns what `ORPOTrainer.concatenated_forward` returns, with MINT's `nll: completion`: (chosen
    and rejected mean log-probabilities of the answer tokens, the chosen and the rejected answer
    tokens' logits (tokens x vocabulary), the NLL of the chosen answers' tokens). TRL's way runs
    each pair's prompt twice (once with each answer) and projects every position, prompt and
    padding included, onto the vocabulary; the results are the same up to float rounding (tested
    against TRL's way in tests/test_fast_forward.py).
    """
    import torch
    from torch import nn

    hidden, chosen_at, rejected_at = _packed_hidden(
        model, batch["chosen_input_ids"], batch["chosen_attention_mask"].sum(-1),
        batch["rejected_input_ids"], batch["rejected_attention_mask"].sum(-1))
    head = model.get_output_embeddings()

    def answer(labels, places):
        labels = labels[:, 1:]  # the token at j + 1 is predicted from the hidden state at position j
        keep = labels != -100
        pair, j = keep.nonzero(as_tuple=True)
        logits = head(hidden[pair, places[pair, j]])
        targets = labels[pair, j]
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])[:, 0]
        sums = torch.zeros(labels.shape[0], device=logp.device).index_add(0, pair, logp)
        return sums / keep.sum(-1), logits, targets

    chosen_logps, chosen_logits, targets = answer(batch["chosen_labels"], chosen_at)
    rejected_logps, rejected_logits, _ = answer(batch["rejected_labels"], rejected_at)
    nll = nn.functional.cross_entropy(chosen_logits.float(), targets)
    return chosen_logps, rejected_logps, chosen_logits, rejected_logits, nll


def _fused_output(hidden, head, shifted):
    """TRL's `FusedCausalLMOutput` for `hidden` (one row per label of `shifted` that is not -100, in row-major
    order): every per-token field in `shifted`'s shape, zero where the label is -100, from TRL's chunked kernel."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    keep = shifted != -100
    per_token = ChunkedLogProbFunction.apply(
        hidden, head.weight, head.bias, shifted[keep], 1.0, 32768, None, 1.0,
        ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1"))
    # Read by position below: five per-token tensors, one value per scored token, every field asked for.
    n = hidden.shape[0]
    expect_output("ChunkedLogProbFunction.apply",
                  isinstance(per_token, tuple) and len(per_token) == 5
                  and all(x is not None and tuple(x.shape) == (n,) for x in per_token),
                  f"it returned {_shapes(per_token)} for {n} tokens; expected 5 tensors of shape ({n},): "
                  "(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)")
    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
        None if x is None else x.new_zeros(keep.shape).masked_scatter(keep, x) for x in per_token)
    return FusedCausalLMOutput(loss=-log_probs.sum() / keep.sum().clamp(min=1), log_probs=log_probs,
                               entropy=entropy, log_sum_sq_probs=log_sum_sq_probs, mean_logits=mean_logits,
                               is_top1=is_top1, label_mask=keep)


def shared_prefix_fused_forward(model, labels, input_ids, attention_mask, **_):
    """DPO's fused-LM-head forward pass (TRL's `add_fused_lm_head`) on a batch [chosen rows; rejected rows],
    each pair's shared prefix run once and the LM head only where a label is not -100.

    `input_ids`/`attention_mask` (2 x pairs, length), right-padded, as `DataCollatorForPreference` makes
    them; `labels` are the ids with prompt and padding set to -100. Returns TRL's `FusedCausalLMOutput`
    with every per-token field (log-probability, entropy, log sum p^2, mean logit, is-top-1) in TRL's
    shape (2 x pairs, length - 1), zero where the label is -100, computed by TRL's own chunked kernel.
    """
    import torch

    half = input_ids.shape[0] // 2
    lens = attention_mask.sum(-1)
    hidden, chosen_at, rejected_at = _packed_hidden(model, input_ids[:half], lens[:half], input_ids[half:],
                                                    lens[half:])
    places = torch.cat([chosen_at, rejected_at])
    shifted = labels[:, 1:]  # the token at j + 1 is predicted from the hidden state at position j
    row, j = (shifted != -100).nonzero(as_tuple=True)
    return _fused_output(hidden[row % half, places[row, j]], model.get_output_embeddings(), shifted)


def answer_only_fused_forward(model, labels, **inputs):
    """TRL's fused-LM-head forward pass with the LM head only where a label is not -100 (SFT: the answer).

    TRL's `add_fused_lm_head` projects only those positions on Triton devices (GPUs) and every position
    elsewhere (the CPU); this does the former everywhere. Same output as TRL's."""
    hidden = model.get_decoder()(**inputs).last_hidden_state[:, :-1]
    shifted = labels[:, 1:]
    return _fused_output(hidden[shifted != -100], model.get_output_embeddings(), shifted)




def _shapes(out) -> str:
    """A TRL output's structure, for an error message: the shape of each tensor in it."""
    if not isinstance(out, tuple | list):
        return type(out).__name__
    return "(" + ", ".join(str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__ for x in out) + ")"


def _decoder_refusal(model) -> str | None:
    """Why `model` cannot take the workflow's own forward passes at all, or None: they need a decoder-only
    model with `get_decoder`, whose attention takes a custom 4D mask (not flash attention)."""
    if not hasattr(model, "get_decoder"):
        return f"the model ({type(model).__name__}, e.g. wrapped for distributed training) has no get_decoder"
    if getattr(model.config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    attention = str(getattr(model.config, "_attn_implementation", ""))
    if "flash" in attention:
        return f"its attention ({attention}) takes no custom mask"
    return None


def _first_batch_refusal(method: str, model, fast, slow, names: tuple[str, ...]) -> str | None:
    """Why the workflow's forward pass (`fast()`) is not to be used, or None where it gives what TRL's way
    (`slow()`) gives on the first batch, in eval mode: both return tensors in the order of `names`. A
    model it does not take, a failure or a difference above 1e-4 (float32; 5e-2 otherwise) warns and
    answers the reason: the caller then trains TRL's way."""
    import torch

    refusal = _decoder_refusal(model)
    if refusal:
        warnings.warn(f"{method}: the workflow's forward pass does not apply ({refusal}); training TRL's way",
                      stacklevel=3)
        return refusal
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fast_out, slow_out = fast(), slow()
    except Exception as e:  # noqa: BLE001 - any failure means: train TRL's way
        if isinstance(e, TRLChanged):
            raise
        warnings.warn(f"{method}: the workflow's forward pass failed ({e}); training TRL's way", stacklevel=3)
        return f"the workflow's forward pass failed ({type(e).__name__}: {e})"
    finally:
        model.train(was_training)
    tol = 1e-4 if fast_out[0].dtype == torch.float32 else 5e-2
    gaps = {name: (a.float() - b.float()).abs().max().item() for name, a, b in zip(names, fast_out, slow_out)}
    if max(gaps.values()) > tol:
        worst = ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items())
        warnings.warn(f"{method}: the workflow's forward pass differs from TRL's on the first batch (largest "
                      f"differences: {worst}); training TRL's way", stacklevel=3)
        return f"the workflow's forward pass differs from TRL's on the first batch ({worst}; tolerance {tol:.0e})"
    return None


class _FastForward:
    """What each of the workflow's trainers with a forward pass of its own records about it (class defaults;
    an instance sets its own): whether it is used, why not, and how many loss calls went each way."""

    fast_forward: bool | None = None  # None: decided on the first batch; False: TRL's way
    fast_forward_reason: str | None = None  # why TRL's way (also: why a batch was refused before the decision)
    fast_forward_offered = True  # False: a trainer (vision) whose batches the workflow's forward pass never takes
    fast_forward_calls = 0  # forward passes that could take the workflow's way
    fast_forward_refused = 0  # of those, the ones that went TRL's way for their batch (before or after the decision)

    def _fall_back(self, method: str, reason: str) -> None:
        """Train TRL's way from now on, with a warning naming the reason."""
        warnings.warn(f"{method}: the workflow's forward pass does not apply ({reason}); training TRL's way",
                      stacklevel=3)
        self.fast_forward, self.fast_forward_reason = False, reason


def fast_forward_outcome(trainer) -> str | None:
    """Whether `trainer` trained with the workflow's forward pass: "used", "fell back: <reason>" (TRL's way
    throughout), "partly fell back: <calls and reason>", or None for a trainer without one (TRL's own
    trainers, vision students, whose image batches it never takes). Goes into the training metrics."""
    if not isinstance(trainer, _FastForward) or not trainer.fast_forward_offered:
        return None
    if trainer.fast_forward is True and not trainer.fast_forward_refused:
        return "used"
    if trainer.fast_forward is True:
        return (f"partly fell back: TRL's way for {trainer.fast_forward_refused} of {trainer.fast_forward_calls} "
                f"forward passes ({trainer.fast_forward_reason})")
    if trainer.fast_forward is False:
        return f"fell back: {trainer.fast_forward_reason or 'turned off (fast_forward = False)'}"
    if trainer.fast_forward_reason:
        return f"fell back: no batch the workflow's forward pass takes ({trainer.fast_forward_reason})"
    return "not run: no batch reached the loss"


def fell_back(outcome: str | None) -> bool:
    """Whether a `fast_forward_outcome` says some training went TRL's way instead of the workflow's."""
    return bool(outcome) and "fell back" in outcome


def _check_orpo_output(out) -> None:
    """TRL's ORPO `concatenated_forward` output, read by position (here and in TRL's loss): (chosen and
    rejected mean log-probabilities (batch,), chosen and rejected logits (batch, length, vocab), NLL ()
    [, aux loss])."""
    ok = (isinstance(out, tuple) and len(out) in (5, 6) and all(hasattr(x, "dim") for x in out[:5])
          and [x.dim() for x in out[:5]] == [1, 1, 3, 3, 0]
          and out[0].shape[0] == out[1].shape[0] == out[2].shape[0] == out[3].shape[0])
    expect_output("ORPOTrainer.concatenated_forward", ok,
                  f"it returned {_shapes(out)}; expected (chosen_logps (batch,), rejected_logps (batch,), "
                  "chosen_logits (batch, length, vocab), rejected_logits (batch, length, vocab), nll_loss () "
                  "[, aux_loss])")


@functools.cache  # one class per TRL class: isinstance holds across calls
def completion_only_orpo(orpo_trainer: type) -> type:
    """ORPO whose NLL term covers the answer only, with each pair's prompt run once.

    TRL's ORPOTrainer computes the NLL of a decoder-only model "over the full prompt and
    response", which here means learning to write the clinical notes: for the builtin tiny
    student that is most of its capacity, and it is not what MINT asks (the prompt is the
    question, the teacher's list the answer). The odds-ratio term is unchanged.

    The forward pass is `shared_prefix_forward` (the prompt once a pair, the LM head on the
    answers only). Its first batch is also run TRL's way, in eval mode, and compared; where they
    differ (a model whose logits are not its LM head of its last hidden state, an attention that
    takes no custom mask) or the model is wrapped for distributed training, TRL's way is used.
    """
    import torch
    from torch import nn

    class CompletionOnlyORPOTrainer(_FastForward, orpo_trainer):
        def __init__(self, *args, **kwargs):
            check_once("orpo")
            super().__init__(*args, **kwargs)

        def _trl_forward(self, model, batch):
            out = super().concatenated_forward(model, batch)
            _check_orpo_output(out)
            out = list(out)
            chosen_logits = out[2]  # (batch, seq - 1, vocab): already shifted for a decoder-only model
            labels = batch["chosen_labels"][:, 1:].to(chosen_logits.device)  # prompt and padding are -100
            labels = labels[:, : chosen_logits.shape[1]]
            logits = chosen_logits[:, : labels.shape[1]]
            out[4] = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), torch.as_tensor(labels).reshape(-1), ignore_index=-100
            )
            return tuple(out)

        def _check_shared_prefix(self, model, batch) -> str | None:
            if self.aux_loss_enabled:  # an encoder-decoder model never gets here (concatenated_forward)
                self._fall_back("ORPO", "the model has a router auxiliary loss (MoE), which it does not compute")
                return self.fast_forward_reason

            def fast():
                out = shared_prefix_forward(model, batch)
                return out[0], out[1], out[4]

            def slow():
                out = self._trl_forward(model, batch)
                return out[0], out[1], out[4]

            return _first_batch_refusal("ORPO", model, fast, slow, ("chosen", "rejected", "NLL"))

        def concatenated_forward(self, model, batch):
            if self.is_encoder_decoder:
                if self.fast_forward is None:
                    self._fall_back("ORPO", "an encoder-decoder model")
                return super().concatenated_forward(model, batch)
            if self.fast_forward is None:
                self.fast_forward_reason = self._check_shared_prefix(model, batch)
                self.fast_forward = self.fast_forward_reason is None
            self.fast_forward_calls += 1
            if self.fast_forward:
                return shared_prefix_forward(model, batch)
            self.fast_forward_refused += 1
            return self._trl_forward(model, batch)

    return CompletionOnlyORPOTrainer


@contextlib.contextmanager
def _fused_head_replaced(trainer, method: str, fast, refusal):
    """While TRL's trainer computes a loss (or reference log-probabilities), its calls
    `model(..., labels=..., fused_lm_head=True)` go to `fast(model, labels, **inputs)` where
    `refusal(inputs)` is None, else to TRL's fused LM head (`add_fused_lm_head`), which is put back afterwards.

    `trainer.fast_forward`: None until the first batch it takes, which is also run TRL's way (eval mode)
    and compared (`_first_batch_refusal`); then True, or False (a difference or a failure) for TRL's way.
    """
    if trainer.aux_loss_enabled and trainer.fast_forward is None:
        trainer._fall_back(method, "the model has a router auxiliary loss (MoE), which it does not compute")
    if trainer.fast_forward is False or trainer.aux_loss_enabled:
        yield
        return
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    target = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped  # TRL's choice
    trl_forward = target.forward

    def forward(module, *args, fused_lm_head=False, labels=None, **inputs):
        if fused_lm_head and not args and labels is not None:
            trainer.fast_forward_calls += 1
            refused = refusal(inputs)
            if refused is None and trainer.fast_forward is None:
                trainer.fast_forward_reason = _first_batch_refusal(
                    method, module, lambda: (fast(module, labels, **inputs).log_probs,),
                    lambda: (trl_forward(labels=labels, fused_lm_head=True, **inputs).log_probs,),
                    ("log-probabilities",))
                trainer.fast_forward = trainer.fast_forward_reason is None
            if refused is None and trainer.fast_forward:
                return fast(module, labels, **inputs)
            trainer.fast_forward_refused += 1
            if refused is not None and trainer.fast_forward is not False:
                trainer.fast_forward_reason = refused  # the batch's reason (the decision's, once decided False)
        return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **inputs)

    target.forward = types.MethodType(forward, target)
    try:
        yield
    finally:
        target.forward = trl_forward


def _pairs_refusal(inputs: dict) -> str | None:
    """Why a DPO batch is not one `shared_prefix_fused_forward` takes ([chosen; rejected] right-padded text
    rows), or None."""
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if ids is None or mask is None or mask.dim() != 2:
        return "a batch without 2D input_ids and attention_mask"
    if ids.shape[0] % 2:
        return f"a batch of {ids.shape[0]} rows, not [chosen; rejected] pairs"
    extra = sorted(set(inputs) - {"input_ids", "attention_mask", "use_cache"})
    if extra:
        return f"a batch with inputs besides the token ids ({', '.join(extra)})"
    if not bool((mask.cumprod(-1) == mask).all()):
        return "a batch with left padding"
    return None


def _text_rows_refusal(inputs: dict) -> str | None:
    """Why a batch is not one `answer_only_fused_forward` takes (text rows), or None."""
    if "input_ids" not in inputs:
        return "a batch without input_ids"
    extra = sorted(set(inputs) - {"input_ids", "attention_mask", "position_ids", "use_cache"})
    if extra:
        return f"a batch with inputs besides the token ids ({', '.join(extra)})"
    return None


@functools.cache  # one class per TRL class: isinstance holds across calls
def shared_prefix_dpo(dpo_trainer: type) -> type:
    """TRL's DPOTrainer with each pair's prompt run once and the LM head on the answers only, both in the
    training step and in the reference log-probabilities computed before training.

    TRL's DPO calls the policy as `model(input_ids=[chosen; rejected], labels=..., fused_lm_head=True)`;
    while it computes a loss or reference log-probabilities, that call goes to
    `shared_prefix_fused_forward`, which returns the same per-token fields. The loss, its options and its
    metrics stay TRL's. As for ORPO, the first batch is also run TRL's way (eval mode) and compared, and a
    difference, a failure, a flash-attention or an encoder-decoder model, or a call with other inputs
    (images) goes TRL's way.
    """

    class SharedPrefixDPOTrainer(_FastForward, dpo_trainer):
        def __init__(self, *args, **kwargs):
            check_once("dpo", "fused")
            super().__init__(*args, **kwargs)

        def compute_ref_log_probs(self, model, inputs):
            with _fused_head_replaced(self, "DPO", shared_prefix_fused_forward, _pairs_refusal):
                return super().compute_ref_log_probs(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            with _fused_head_replaced(self, "DPO", shared_prefix_fused_forward, _pairs_refusal):
                return super()._compute_loss(model, inputs, return_outputs)

    return SharedPrefixDPOTrainer


@functools.cache  # one class per TRL class: isinstance holds across calls
def answer_only_sft(sft_trainer: type) -> type:
    """TRL's SFTTrainer with the LM head only where a label is not -100 (the answer), on every device
    (`answer_only_fused_forward`); the first batch is compared with TRL's way, as for DPO."""

    class AnswerOnlySFTTrainer(_FastForward, sft_trainer):
        def __init__(self, *args, **kwargs):
            check_once("sft", "fused")
            super().__init__(*args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with _fused_head_replaced(self, "SFT", answer_only_fused_forward, _text_rows_refusal):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return AnswerOnlySFTTrainer
