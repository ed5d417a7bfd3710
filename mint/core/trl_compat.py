"""The one module that imports TRL: trainers move between TRL releases (ORPO now lives in
`trl.experimental.orpo`), so every other module asks here for a method's config and trainer.

    python -c "from mint.core.trl_compat import trainer_classes; print(trainer_classes('orpo'))"
"""

from __future__ import annotations

import contextlib
import functools
import types
import warnings


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


def _plain_decoder(model) -> bool:
    """Whether `model` can take the workflow's own forward passes at all: a decoder-only model with
    `get_decoder`, whose attention takes a custom 4D mask (not flash attention)."""
    return (hasattr(model, "get_decoder") and not getattr(model.config, "is_encoder_decoder", False)
            and "flash" not in str(getattr(model.config, "_attn_implementation", "")))


def _check_first_batch(method: str, model, fast, slow, names: tuple[str, ...]) -> bool:
    """Whether the workflow's forward pass (`fast()`) gives what TRL's way (`slow()`) gives on the first batch, in
    eval mode: both return tensors in the order of `names`. A failure or a difference above 1e-4 (float32;
    5e-2 otherwise) warns and answers False: the caller then trains TRL's way."""
    import torch

    if not _plain_decoder(model):
        return False
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fast_out, slow_out = fast(), slow()
    except Exception as e:  # noqa: BLE001 - any failure means: train TRL's way
        warnings.warn(f"{method}: the workflow's forward pass failed ({e}); training TRL's way", stacklevel=3)
        return False
    finally:
        model.train(was_training)
    tol = 1e-4 if fast_out[0].dtype == torch.float32 else 5e-2
    gaps = {name: (a.float() - b.float()).abs().max().item() for name, a, b in zip(names, fast_out, slow_out)}
    if max(gaps.values()) > tol:
        worst = ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items())
        warnings.warn(f"{method}: the workflow's forward pass differs from TRL's on the first batch (largest "
                      f"differences: {worst}); training TRL's way", stacklevel=3)
        return False
    return True


@functools.cache  # one class per TRL class: isinstance holds across calls
def _completion_only_orpo(orpo_trainer: type) -> type:
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

    class CompletionOnlyORPOTrainer(orpo_trainer):
        fast_forward: bool | None = None  # None: decided on the first batch; False: TRL's way

        def _trl_forward(self, model, batch):
            out = list(super().concatenated_forward(model, batch))
            chosen_logits = out[2]  # (batch, seq - 1, vocab): already shifted for a decoder-only model
            labels = batch["chosen_labels"][:, 1:].to(chosen_logits.device)  # prompt and padding are -100
            labels = labels[:, : chosen_logits.shape[1]]
            logits = chosen_logits[:, : labels.shape[1]]
            out[4] = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), torch.as_tensor(labels).reshape(-1), ignore_index=-100
            )
            return tuple(out)

        def _check_shared_prefix(self, model, batch) -> bool:
            if self.aux_loss_enabled:  # an encoder-decoder model never gets here (concatenated_forward)
                return False

            def fast():
                out = shared_prefix_forward(model, batch)
                return out[0], out[1], out[4]

            def slow():
                out = self._trl_forward(model, batch)
                return out[0], out[1], out[4]

            return _check_first_batch("ORPO", model, fast, slow, ("chosen", "rejected", "NLL"))

        def concatenated_forward(self, model, batch):
            if self.is_encoder_decoder:
                return super().concatenated_forward(model, batch)
            if self.fast_forward is None:
                self.fast_forward = self._check_shared_prefix(model, batch)
            if self.fast_forward:
                return shared_prefix_forward(model, batch)
            return self._trl_forward(model, batch)

    return CompletionOnlyORPOTrainer


@contextlib.contextmanager
def _fused_head_replaced(trainer, method: str, fast, usable):
    """While TRL's trainer computes a loss (or reference log-probabilities), its calls
    `model(..., labels=..., fused_lm_head=True)` go to `fast(model, labels, **inputs)` where
    `usable(inputs)`, else to TRL's fused LM head (`add_fused_lm_head`), which is put back afterwards.

    `trainer.fast_forward`: None until the first usable batch, which is also run TRL's way (eval mode)
    and compared (`_check_first_batch`); then True, or False (a difference or a failure) for TRL's way.
    """
    if trainer.fast_forward is False or trainer.aux_loss_enabled:
        yield
        return
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    target = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped  # TRL's choice
    trl_forward = target.forward

    def forward(module, *args, fused_lm_head=False, labels=None, **inputs):
        if fused_lm_head and not args and labels is not None and usable(inputs):
            if trainer.fast_forward is None:
                trainer.fast_forward = _check_first_batch(
                    method, module, lambda: (fast(module, labels, **inputs).log_probs,),
                    lambda: (trl_forward(labels=labels, fused_lm_head=True, **inputs).log_probs,),
                    ("log-probabilities",))
            if trainer.fast_forward:
                return fast(module, labels, **inputs)
        return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, **inputs)

    target.forward = types.MethodType(forward, target)
    try:
        yield
    finally:
        target.forward = trl_forward


def _pairs(inputs: dict) -> bool:
    """A DPO batch `shared_prefix_fused_forward` takes: [chosen; rejected] right-padded text rows."""
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    return (ids is not None and mask is not None and mask.dim() == 2 and ids.shape[0] % 2 == 0
            and set(inputs) <= {"input_ids", "attention_mask", "use_cache"}
            and bool((mask.cumprod(-1) == mask).all()))


def _text_rows(inputs: dict) -> bool:
    """A batch `answer_only_fused_forward` takes: text rows (no images)."""
    return "input_ids" in inputs and set(inputs) <= {"input_ids", "attention_mask", "position_ids", "use_cache"}


@functools.cache  # one class per TRL class: isinstance holds across calls
def _shared_prefix_dpo(dpo_trainer: type) -> type:
    """TRL's DPOTrainer with each pair's prompt run once and the LM head on the answers only, both in the
    training step and in the reference log-probabilities computed before training.

    TRL's DPO calls the policy as `model(input_ids=[chosen; rejected], labels=..., fused_lm_head=True)`;
    while it computes a loss or reference log-probabilities, that call goes to
    `shared_prefix_fused_forward`, which returns the same per-token fields. The loss, its options and its
    metrics stay TRL's. As for ORPO, the first batch is also run TRL's way (eval mode) and compared, and a
    difference, a failure, a flash-attention or an encoder-decoder model, or a call with other inputs
    (images) goes TRL's way.
    """

    class SharedPrefixDPOTrainer(dpo_trainer):
        fast_forward: bool | None = None  # None: decided on the first batch; False: TRL's way

        def compute_ref_log_probs(self, model, inputs):
            with _fused_head_replaced(self, "DPO", shared_prefix_fused_forward, _pairs):
                return super().compute_ref_log_probs(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            with _fused_head_replaced(self, "DPO", shared_prefix_fused_forward, _pairs):
                return super()._compute_loss(model, inputs, return_outputs)

    return SharedPrefixDPOTrainer


@functools.cache  # one class per TRL class: isinstance holds across calls
def _answer_only_sft(sft_trainer: type) -> type:
    """TRL's SFTTrainer with the LM head only where a label is not -100 (the answer), on every device
    (`answer_only_fused_forward`); the first batch is compared with TRL's way, as for DPO."""

    class AnswerOnlySFTTrainer(sft_trainer):
        fast_forward: bool | None = None  # None: decided on the first batch; False: TRL's way

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with _fused_head_replaced(self, "SFT", answer_only_fused_forward, _text_rows):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return AnswerOnlySFTTrainer


def trainer_classes(method: str, completion_only_nll: bool = True) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) of a training method; pinned: trl==1.16.0."""
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, _answer_only_sft(SFTTrainer)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, _shared_prefix_dpo(DPOTrainer)
    if method == "orpo":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TRL warns that experimental APIs may change: we pin the version
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        return ORPOConfig, (_completion_only_orpo(ORPOTrainer) if completion_only_nll else ORPOTrainer)
    if method in ("cpo", "simpo"):  # SimPO is CPO's trainer with loss_type "simpo" (set in its recipe)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from trl.experimental.cpo import CPOConfig, CPOTrainer
        return CPOConfig, CPOTrainer
    if method == "kto":  # unpairs the (chosen, rejected) pairs itself: chosen = desirable, rejected = not
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")


# Methods trained on the teacher's preference pairs (all but SFT); each has a recipe <method>.yaml.
PREFERENCE_METHODS = ("dpo", "orpo", "cpo", "simpo", "kto")
METHODS = ("sft", *PREFERENCE_METHODS)


# --------------------------------------------------------------------------- vision students

# Methods that train a vision LLM on rows with images (TRL's `images` column).
VISION_METHODS = ("sft", "dpo", "orpo")


def _cross_attention_spans(image_positions: list[int], length: int) -> list[tuple[int, int]]:
    """[start, end) of the tokens that attend to each image, as transformers' Mllama processor sets them
    (`get_cross_attention_token_mask`): from the image's token to the next image token, and consecutive
    image tokens, as well as the last image, to the end of the sequence."""
    if not image_positions:
        return []
    spans = [[a, b] for a, b in zip(image_positions[:-1], image_positions[1:])] + [[image_positions[-1], length]]
    end = length
    for span in reversed(spans):
        if span[0] == span[1] - 1:
            span[1] = end
        end = span[1]
    return [(a, b) for a, b in spans]


class CrossAttentionMaskToFullLength:
    """Wraps a TRL vision collator so that a `cross_attention_mask` covers the whole sequence.

    Models that attend to the image through cross-attention (Mllama: Llama-3.2-Vision) take a mask
    of shape (batch, tokens, images, tiles). TRL 1.16's vision collators build it for the prompt
    alone, then append the completion and shift rows left, so the mask is too short and misaligned
    ("The size of tensor a (38) must match the size of tensor b (29)"). It is rebuilt here from the
    final token ids; batches without one pass unchanged.
    """

    def __init__(self, collator, image_token_id: int):
        self.collator = collator
        self.image_token_id = image_token_id

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("cross_attention_mask")
        if mask is None:
            return batch
        input_ids = batch["input_ids"]
        tiles = mask.amax(dim=1)  # (batch, images, tiles): the tiles each image has
        full = mask.new_zeros((input_ids.shape[0], input_ids.shape[1], *tiles.shape[1:]))
        for row, ids in enumerate(input_ids.tolist()):
            positions = [i for i, token in enumerate(ids) if token == self.image_token_id]
            for image, (start, end) in enumerate(_cross_attention_spans(positions, len(ids))):
                full[row, start:end, image] = tiles[row, image]
        batch["cross_attention_mask"] = full
        return batch


class _FullCrossAttentionMask:
    """Trainer mixin: the vision collator's cross-attention mask (if the model has one) spans the sequence."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        image_token_id = getattr(self.processing_class, "image_token_id", None)
        if image_token_id is not None and not isinstance(self.data_collator, CrossAttentionMaskToFullLength):
            self.data_collator = CrossAttentionMaskToFullLength(self.data_collator, image_token_id)


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, without cancellation (the branch at -ln 2 is TRL ORPOTrainer's)."""
    import torch

    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def _vision_orpo(completion_only_nll: bool) -> type:
    """ORPO (Hong et al. 2024) on DPOTrainer's data path, which takes images: no reference model.

    TRL 1.16's ORPOTrainer has no image path (it tokenizes text only), and DPOTrainer's loss types
    have no ORPO entry; DPOTrainer's collators do carry the images (repeated for the chosen and the
    rejected half), so only the loss is replaced. Per pair, with P the per-token AVERAGE
    probability of a completion given the prompt (and image):

        log_odds = (log P_chosen - log P_rejected) - (log(1 - P_chosen) - log(1 - P_rejected))
        loss = NLL(chosen) - beta * mean(logsigmoid(log_odds))

    NLL is the token mean over the chosen rows: over the answer only (MINT's `nll: completion`),
    or, as ORPOTrainer, over prompt and answer (`nll: full`), where image placeholders and padding
    are left out (with text-only rows this is exactly ORPOTrainer's NLL).
    """
    import torch
    import torch.nn.functional as F
    import trl.trainer.dpo_trainer as dpo_module
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    class VisionORPOTrainer(_FullCrossAttentionMask, DPOTrainer):
        nll_completion_only = completion_only_nll
        _tag_names = ["trl", "orpo"]
        _name = "ORPO"
        _paper = {"title": "ORPO: Monolithic Preference Optimization without Reference Model", "id": "2403.07691"}

        def __init__(self, model, ref_model=None, *args, **kwargs):
            if ref_model is not None:
                raise ValueError("ORPO has no reference model: leave ref_model unset")
            had_ref_adapter = is_peft_model(model) and "ref" in model.peft_config
            # DPOTrainer.__init__ loads the policy when given a name, then (full fine-tuning, no
            # ref_model) a reference copy from the policy's `_name_or_path`: a model built in memory
            # has none to load from, and ORPO needs none. Only that second load is skipped.
            load = dpo_module.create_model_from_path
            policy_load = iter([isinstance(model, str)])

            def load_policy_only(*load_args, **load_kwargs):
                return load(*load_args, **load_kwargs) if next(policy_load, False) else None

            dpo_module.create_model_from_path = load_policy_only
            try:
                super().__init__(model, None, *args, **kwargs)
            finally:
                dpo_module.create_model_from_path = load
            # A PEFT model handed in already wrapped gets a frozen "ref" copy of its adapter from DPOTrainer.
            if is_peft_model(self.model) and "ref" in self.model.peft_config and not had_ref_adapter:
                self.model.delete_adapter("ref")

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            model_kwargs = {k: v for k, v in inputs.items()
                            if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            model_kwargs["use_cache"] = False
            if self.aux_loss_enabled:
                model_kwargs["output_router_logits"] = True
            input_ids, completion_mask = inputs["input_ids"], inputs["completion_mask"]
            if self.nll_completion_only:
                labels = input_ids.masked_fill(completion_mask == 0, -100)
            else:
                labels = input_ids.masked_fill(inputs["attention_mask"] == 0, -100)
                image_token = getattr(self.accelerator.unwrap_model(model).config, "image_token_id", None)
                if image_token is not None:
                    labels = labels.masked_fill(input_ids == image_token, -100)
            # The fused head scores the labelled positions only (0 elsewhere): (2 * batch, seq - 1).
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
            seq_len = completion_mask.size(1) - 1
            # Prompt-learning PEFT prepends virtual tokens to the outputs; keep the positions of the real tokens
            per_token_logps = outputs.log_probs[:, -seq_len:].float()
            in_completion = completion_mask[:, 1:].bool()
            avg_logps = (per_token_logps * in_completion).sum(1) / in_completion.sum(1).clamp(min=1)
            chosen_logps, rejected_logps = avg_logps.chunk(2, dim=0)  # the batch is [chosen..., rejected...]
            log_odds = (chosen_logps - rejected_logps) - (_log1mexp(chosen_logps) - _log1mexp(rejected_logps))
            ratio = F.logsigmoid(log_odds)
            chosen_token_logps = per_token_logps.chunk(2, dim=0)[0]
            chosen_labelled = (labels[:, 1:] != -100).chunk(2, dim=0)[0]
            nll = -chosen_token_logps[chosen_labelled].mean()
            loss = nll - self.beta * ratio.mean()
            if self.aux_loss_enabled:
                loss = loss + self.router_aux_loss_coef * outputs.aux_loss

            gather = self.accelerator.gather_for_metrics
            chosen_rewards = self.beta * chosen_logps.detach()
            rejected_rewards = self.beta * rejected_logps.detach()
            metrics = {
                "rewards/chosen": gather(chosen_rewards).mean(),
                "rewards/rejected": gather(rejected_rewards).mean(),
                "rewards/accuracies": gather((chosen_rewards > rejected_rewards).float()).mean(),
                "rewards/margins": gather(chosen_rewards - rejected_rewards).mean(),
                "logps/chosen": gather(chosen_logps.detach()).mean(),
                "logps/rejected": gather(rejected_logps.detach()).mean(),
                "nll_loss": gather(nll.detach()).mean(),
                "log_odds_ratio": gather(ratio.detach()).mean(),
                "log_odds_chosen": gather(log_odds.detach()).mean(),
            }
            for key, value in metrics.items():
                self._metrics[mode][key].append(value.item())
            if mode == "train":
                self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            if return_outputs:  # for `compute_metrics`: the fused head builds no logits, so run the model again
                with torch.no_grad():
                    outputs = model(**model_kwargs)
                return loss, outputs
            return loss

    return VisionORPOTrainer


_VISION_TRAINERS: dict[tuple[str, bool], type] = {}


def vision_trainer_classes(method: str, completion_only_nll: bool = True) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) of a training method for a vision LLM and rows with images; pinned: trl==1.16.0.

    Pass the model's processor as `processing_class`; rows carry `images` (a list of PIL images)
    and conversational `prompt` with `completion` (SFT) or `chosen`/`rejected` (DPO, ORPO).
    SFT and DPO are TRL's trainers, ORPO is `VisionORPOTrainer` with DPOConfig (`beta` is ORPO's
    lambda; `completion_only_nll` as in `trainer_classes`); each rebuilds a cross-attention mask
    to the full sequence (`CrossAttentionMaskToFullLength`).
    """
    if method not in VISION_METHODS:
        raise ValueError(f"training method {method!r} has no image path in TRL 1.16; expected one of {VISION_METHODS}")
    key = (method, completion_only_nll if method == "orpo" else True)
    if key not in _VISION_TRAINERS:  # one class per variant, so isinstance checks work
        if method == "orpo":
            _VISION_TRAINERS[key] = _vision_orpo(completion_only_nll)
        else:
            base = trainer_classes(method)[1]
            _VISION_TRAINERS[key] = type(f"Vision{base.__name__}", (_FullCrossAttentionMask, base), {})
    if method == "orpo":
        from trl import DPOConfig

        return DPOConfig, _VISION_TRAINERS[key]
    return trainer_classes(method)[0], _VISION_TRAINERS[key]
