"""Load a student: a base model (text or vision LLM) by folder or hub id, or a trained student folder.

Training (`mint.core.train`), prediction (`mint.core.predict`) and full-panel ranking
(`mint.core.panel`) load their model here. The kind is read from the folder where MINT wrote one
(`mint.core.students.kind`); a caller gives the application's declared kind for a model without one.

    python -c "from mint.core.students.load import load_trained; print(load_trained('results/train/seed42/orpo')[0])"
"""

from __future__ import annotations

from pathlib import Path

from mint.core.models import load_student
from mint.core.students.kind import read_student_record, student_kind
from mint.core.students.vision import load_vision_student


def load_base(name_or_path: str, dtype: str = "float32", kind: str | None = None):
    """(model, tokenizer or processor) of a base student: a text LLM, or a vision LLM with its processor.

    The kind is the one the folder records (checked against `kind`), else `kind`."""
    if student_kind(name_or_path, kind) == "vision":
        return load_vision_student(name_or_path, dtype=dtype)
    return load_student(name_or_path, dtype=dtype)


def load_trained(model_dir: str | Path, dtype: str = "float32", kind: str | None = None):
    """(model, tokenizer or processor) of a trained student folder: base, then each stage's weights merged.

    A folder that is no trained student (a builtin base, a model folder, a hub id) loads as a base
    student. The kind is the one the folder records (checked against `kind`), else `kind`."""
    import torch

    record = read_student_record(model_dir)
    kind = student_kind(model_dir, kind)
    if record is None or "base" not in record:
        return load_base(str(model_dir), dtype, kind)
    if record["init"]:
        model, processing = load_trained(record["init"], dtype, kind)
    else:
        model, processing = load_base(record["base"], dtype, kind)
    if record["adapter"]:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    else:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        auto = AutoModelForImageTextToText if kind == "vision" else AutoModelForCausalLM
        model = auto.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
    return model, processing
