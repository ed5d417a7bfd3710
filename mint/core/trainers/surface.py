"""Every TRL name the workflow's trainers rely on, in one list, with what each is expected to be.

TRL moves and renames its internals between releases, and several of the failures that follow would be
silent: were `DPOTrainer._compute_loss` renamed, `VisionORPOTrainer`'s override would never be called
and the run would train DPO's loss under the name ORPO. `SURFACE` names each such thing (an import, a
method's parameters, a dataclass's fields, the names a method's code refers to) and the trainer that
needs it; `check_trl_surface` is run when one of the workflow's trainers is made (once per process and
trainer) and by tests/test_trl_surface.py, and fails with "TRL <version> changed <name>: <what>".
Outputs that TRL returns as plain tuples are checked where they are read (`expect_output`).

    python -c "from mint.core.trainers import check_trl_surface; check_trl_surface()"
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable
from typing import Any

# Who relies on a name: the registry (imports), the workflow's ORPO, DPO and SFT trainers (their own forward
# passes), the fused LM head those of DPO and SFT share, and the vision ORPO trainer.
USERS = ("registry", "orpo", "dpo", "sft", "fused", "vision_orpo")


class TRLChanged(RuntimeError):
    """The installed TRL differs from what the workflow's trainers were written against (trl==1.16.0)."""


@dataclasses.dataclass(frozen=True)
class Name:
    """One TRL name: `module`.`attr` (attr may be dotted: a class's method), what it must be, and who needs it.

    `expect`: "exists"; "params" (the callable's parameter names, exactly and in order: callers pass them by
    position); "fields" (a dataclass with at least these fields); "refers" (its code names at least these:
    attributes and globals it uses or sets, strings such as a keyword it passes or a batch key it reads);
    "equals" (a constant with this value). `why`: what goes wrong without it.
    """

    module: str
    attr: str
    expect: str
    value: tuple = ()
    why: str = ""
    users: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.attr


ORPO, CPO = "trl.experimental.orpo", "trl.experimental.cpo"
DPO_MODULE, UTILS, KERNELS = "trl.trainer.dpo_trainer", "trl.trainer.utils", "trl.kernels"

SURFACE: tuple[Name, ...] = (
    # --- what the registry imports (trainer_classes): a method's config and trainer class
    *(Name(module, cls, "exists", why="the registry imports it", users=("registry",)) for module, cls in (
        ("trl", "SFTConfig"), ("trl", "SFTTrainer"), ("trl", "DPOConfig"), ("trl", "DPOTrainer"),
        ("trl", "KTOConfig"), ("trl", "KTOTrainer"), (ORPO, "ORPOConfig"), (ORPO, "ORPOTrainer"),
        (CPO, "CPOConfig"), (CPO, "CPOTrainer"))),
    # Config fields the workflow sets or reads itself (a recipe's own `args` are checked when it loads).
    Name("trl", "SFTConfig", "fields", ("max_length",), "train_student checks each row's length against it",
         ("registry",)),
    Name("trl", "DPOConfig", "fields", ("max_length", "precompute_ref_log_probs", "beta"),
         "train_student turns on precompute_ref_log_probs; VisionORPOTrainer reads beta as ORPO's lambda",
         ("registry", "vision_orpo")),
    Name(ORPO, "ORPOConfig", "fields", ("max_length", "beta"), "train_student checks each row's length",
         ("registry",)),
    Name(CPO, "CPOConfig", "fields", ("max_length", "loss_type"), "SimPO is CPO with loss_type 'simpo'",
         ("registry",)),
    Name("trl", "KTOConfig", "fields", ("max_length",), "train_student checks each row's length against it",
         ("registry",)),
    # --- ORPO: the workflow's forward pass replaces concatenated_forward, whose 5-tuple TRL reads by position
    Name(ORPO, "ORPOTrainer.concatenated_forward", "params", ("self", "model", "batch"),
         "CompletionOnlyORPOTrainer overrides it with the shared-prefix forward pass and the answer-only NLL",
         ("orpo",)),
    Name(ORPO, "ORPOTrainer.get_batch_loss_metrics", "refers", ("concatenated_forward",),
         "the loss must come from concatenated_forward, or the override (and `nll: completion`) does nothing",
         ("orpo",)),
    Name(ORPO, "ORPOTrainer.__init__", "refers", ("aux_loss_enabled", "is_encoder_decoder"),
         "CompletionOnlyORPOTrainer reads both to decide whether its forward pass applies", ("orpo",)),
    # --- DPO: the fused LM head's calls go to the shared-prefix forward pass while TRL computes a loss
    Name("trl", "DPOTrainer._compute_loss", "params", ("self", "model", "inputs", "return_outputs"),
         "SharedPrefixDPOTrainer wraps it; VisionORPOTrainer replaces it with ORPO's loss",
         ("dpo", "vision_orpo")),
    Name("trl", "DPOTrainer.compute_loss", "refers", ("_compute_loss",),
         "were _compute_loss no longer called, VisionORPOTrainer would train DPO's loss under the name ORPO",
         ("dpo", "vision_orpo")),
    Name("trl", "DPOTrainer._compute_loss", "refers",
         ("fused_lm_head", "completion_mask", "ref_chosen_logps", "ref_rejected_logps"),
         "the shared-prefix forward pass answers the policy's fused-LM-head call; VisionORPOTrainer reads the "
         "same batch keys", ("dpo", "vision_orpo")),
    Name("trl", "DPOTrainer.compute_ref_log_probs", "params", ("self", "model", "inputs"),
         "SharedPrefixDPOTrainer wraps it (the reference log-probabilities)", ("dpo",)),
    Name("trl", "DPOTrainer.compute_ref_log_probs", "refers", ("fused_lm_head",),
         "the shared-prefix forward pass answers the reference pass's fused-LM-head call", ("dpo",)),
    Name("trl", "DPOTrainer._precompute_ref_logps", "refers", ("compute_ref_log_probs",),
         "the precomputed reference log-probabilities must come through compute_ref_log_probs", ("dpo",)),
    Name("trl", "DPOTrainer.__init__", "refers", ("add_fused_lm_head", "aux_loss_enabled"),
         "the policy's forward must be TRL's fused LM head for the workflow's forward pass to stand in",
         ("dpo",)),
    # --- SFT: the answer-only LM head stands in for the fused LM head
    Name("trl", "SFTTrainer.compute_loss", "params",
         ("self", "model", "inputs", "return_outputs", "num_items_in_batch"),
         "AnswerOnlySFTTrainer wraps it and passes its arguments by position", ("sft",)),
    Name("trl", "SFTTrainer.compute_loss", "refers", ("fused_lm_head",),
         "the answer-only forward pass answers the fused-LM-head call", ("sft",)),
    Name("trl", "SFTTrainer.__init__", "refers", ("add_fused_lm_head", "aux_loss_enabled"),
         "the model's forward must be TRL's fused LM head for the workflow's forward pass to stand in", ("sft",)),
    # --- the fused LM head's output, which the workflow's DPO and SFT forward passes build with TRL's kernel
    Name(KERNELS, "ChunkedLogProbFunction.forward", "params",
         ("ctx", "hidden", "weight", "bias", "targets", "temperature", "chunk_size", "final_logit_softcapping",
          "logit_scale", "outputs"), "the workflow calls the kernel with these arguments by position", ("fused",)),
    Name("trl.kernels.chunked_logprob", "OPTIONAL_OUTPUTS", "equals",
         ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1"),
         "the kernel returns log_probs, then these, in this order: the workflow unpacks them by position",
         ("fused",)),
    Name(UTILS, "FusedCausalLMOutput", "fields",
         ("loss", "log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask"),
         "the workflow's forward passes return one, field by field", ("fused",)),
    # --- VisionORPOTrainer: ORPO's loss on DPOTrainer's data path (which carries images)
    Name(DPO_MODULE, "create_model_from_path", "exists",
         why="VisionORPOTrainer skips DPOTrainer's reference-model load by replacing it", users=("vision_orpo",)),
    Name("trl", "DPOTrainer.__init__", "refers",
         ("create_model_from_path", "beta", "router_aux_loss_coef", "aux_loss_enabled", "_metrics",
          "_total_train_tokens", "_tp_size"),
         "VisionORPOTrainer's __init__ and loss use what DPOTrainer sets up", ("vision_orpo",)),
    *(Name("trl", f"DPOTrainer.{attr}", "exists", why="VisionORPOTrainer names itself ORPO in the model card",
           users=("vision_orpo",)) for attr in ("_tag_names", "_name", "_paper")),
)

# Tuples TRL returns, read by position where they are used (checked there, with `expect_output`).
OUTPUTS = (
    "ORPOTrainer.concatenated_forward: (chosen_logps, rejected_logps, chosen_logits, rejected_logits, nll_loss"
    "[, aux_loss])",
    "ChunkedLogProbFunction.apply: (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)",
)


def trl_version() -> str:
    try:
        from importlib.metadata import version

        return version("trl")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "(unknown version)"


def changed(name: str, what: str) -> TRLChanged:
    """The error for a TRL name that is not what the workflow expects."""
    return TRLChanged(f"TRL {trl_version()} changed {name}: {what} (mint.core.trainers was written against "
                      f"trl==1.16.0; see mint/core/trainers/surface.py)")


def expect_output(name: str, ok: bool, what: str) -> None:
    """At the place a TRL output is read by position: raise `changed(name, what)` unless `ok`."""
    if not ok:
        raise changed(name, what)


def _resolve(module: str, attr: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRL warns that experimental APIs may change: we pin the version
        obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _cell(cell) -> Any:
    """A closure cell's value (None while empty)."""
    try:
        return cell.cell_contents
    except ValueError:
        return None


def _code_names(func: Callable) -> set[str]:
    """The names a function's code refers to: attributes, globals, keyword names and string constants,
    nested functions and comprehensions included, and those of the functions it wraps (a decorator's or a
    test's wrapper that calls the original from its closure)."""
    found: set[str] = set()
    funcs, seen, todo = [func], set(), []
    while funcs:
        f = inspect.unwrap(funcs.pop())
        if id(f) in seen:
            continue
        seen.add(id(f))
        todo.append(f.__code__)
        funcs += [x for x in map(_cell, f.__closure__ or ()) if inspect.isfunction(x)]
    while todo:
        code = todo.pop()
        found.update(code.co_names)
        consts = list(code.co_consts)
        while consts:
            c = consts.pop()
            if isinstance(c, str):
                found.add(c)
            elif isinstance(c, tuple | frozenset):
                consts.extend(c)
            elif inspect.iscode(c):
                todo.append(c)
    return found


def problem(entry: Name) -> str | None:
    """What is wrong with one name in the installed TRL, or None."""
    try:
        obj = _resolve(entry.module, entry.attr)
    except (ImportError, AttributeError) as err:
        return f"it is gone from {entry.module} ({err}); {entry.why}"
    if entry.expect == "params":
        try:
            params = tuple(inspect.signature(obj).parameters)
        except (TypeError, ValueError) as err:
            return f"its signature cannot be read ({err}); {entry.why}"
        if params != entry.value:
            return f"its parameters are {params}, expected {entry.value}; {entry.why}"
    elif entry.expect == "fields":
        if not dataclasses.is_dataclass(obj):
            return f"it is no longer a dataclass; {entry.why}"
        missing = sorted(set(entry.value) - {f.name for f in dataclasses.fields(obj)})
        if missing:
            return f"it has no field(s) {missing}; {entry.why}"
    elif entry.expect == "refers":
        try:
            names = _code_names(obj)
        except AttributeError:
            return f"it is no longer a Python function; {entry.why}"
        missing = sorted(set(entry.value) - names)
        if missing:
            return f"its code no longer refers to {missing}; {entry.why}"
    elif entry.expect == "equals":
        if tuple(obj) != entry.value:
            return f"it is {obj!r}, expected {entry.value!r}; {entry.why}"
    elif entry.expect != "exists":
        raise ValueError(f"surface entry {entry.name}: unknown expectation {entry.expect!r}")
    return None


def surface_problems(*users: str) -> list[str]:
    """"TRL <version> changed <name>: <what>" for each name of `users` (all names: none given) that moved."""
    unknown = set(users) - set(USERS)
    if unknown:
        raise ValueError(f"unknown TRL surface users {sorted(unknown)}; expected some of {USERS}")
    entries = [e for e in SURFACE if not users or set(e.users) & set(users)]
    return [str(changed(e.name, what)) for e in entries if (what := problem(e)) is not None]


def check_trl_surface(*users: str) -> None:
    """Raise `TRLChanged` naming every name of `users` (all: none given) that the installed TRL moved."""
    problems = surface_problems(*users)
    if problems:
        raise TRLChanged("\n".join(problems))


@functools.cache
def check_once(*users: str) -> None:
    """`check_trl_surface` once per process and set of users: what a trainer's construction runs."""
    check_trl_surface(*users)

