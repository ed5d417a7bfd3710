"""Load a student LLM (model + tokenizer) by Hugging Face id or local folder: the one place that does.

Real runs load an instruct model (`student.base: meta-llama/Llama-3.2-3B-Instruct`); an
application's builtin student is a local folder in the same layout.

    python -c "from mint.core.models import load_student; print(load_student('results/student/base')[0])"
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mint.core.io import MintError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_student_base(base: str, source: str = "config") -> None:
    """At start-up: `student.base` is 'builtin', a model folder, or a hub id that can be loaded here.

    Offline (HF_HUB_OFFLINE=1, as the Makefile sets), a hub id must be in the Hugging Face cache.
    """
    if base == "builtin":
        return
    key = f"{source}: config key 'student.base'"
    path = Path(base)
    if path.exists():
        if not (path / "config.json").is_file():
            raise MintError(f"{key}: {base!r} is not a Hugging Face model folder (no config.json in it)")
        return
    if not HUB_ID.match(base) or base.startswith((".", "/")):
        raise MintError(f"{key}: {base!r}: no such folder, and not a hub id (expected 'builtin', a model folder "
                        "or 'org/name')")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(base, "config.json"), str):
            raise MintError(f"{key}: {base!r}: no folder of that name, and the hub id is not in the Hugging Face "
                            f"cache while HF_HUB_OFFLINE is set. Download it elsewhere (`hf download {base} "
                            "--local-dir DIR`) and point 'student.base' at DIR")


def load_student(name_or_path: str, dtype: str = "float32"):
    """(model, tokenizer) from a local folder or a Hugging Face hub id (cache / HF_HOME).

    The tokenizer's pad token falls back to its EOS token; padding side is left to the caller.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, str(dtype), None)
    if not isinstance(torch_dtype, (torch.dtype, str)):
        raise MintError(f"student dtype {dtype!r}: expected float32, bfloat16, float16 or auto")
    path = Path(name_or_path)
    local = path.is_dir()
    if not local and not HUB_ID.match(str(name_or_path)):
        raise MintError(f"student {name_or_path!r}: no such folder, and not a hub id (expected 'org/name')")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch_dtype, local_files_only=local)
    except OSError as err:
        if local:
            raise MintError(f"student folder {name_or_path!r} is not a Hugging Face model folder: {err}") from err
        raise MintError(
            f"student {name_or_path!r}: no local folder of that name, and the hub id could not be found "
            "in the Hugging Face cache; this machine has no hub access. Download it elsewhere "
            f"(`hf download {name_or_path} --local-dir DIR`) and point config `student.base` at DIR."
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
