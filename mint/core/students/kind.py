"""The student's kind (it reads text, or an image with text), written once into its folder and read back.

A student folder MINT writes holds `mint_student.json`: {"kind": "text" | "vision"} where the builtin
student is built (`mint.core.students.text`, `mint.core.students.vision`), and that with how to rebuild
the model ({"method", "base", "init", "adapter"}) in each trained folder (`mint.core.train`), whose kind
is the one its training was given (the application's `student_kind`). A model folder MINT did not
write (a hub id's snapshot) records none: whoever loads it gives the application's declared kind, and
a folder's record always wins over, and is checked against, what a caller declares.

    python -c "from mint.core.students.kind import student_kind; print(student_kind('results/student/base'))"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mint.core.io import MintError

STUDENT_FILE = "mint_student.json"
KINDS = ("text", "vision")  # the student reads text, or an image with text


def check_kind(kind: Any, where: str = "student kind") -> str:
    if kind not in KINDS:
        raise MintError(f"{where} {kind!r}: expected one of {KINDS}")
    return kind


def write_student_record(folder: str | Path, kind: str, **trained: Any) -> Path:
    """`mint_student.json` in `folder`: the student's `kind`, then `trained` (method, base, init, adapter)."""
    path = Path(folder) / STUDENT_FILE
    path.write_text(json.dumps({"kind": check_kind(kind), **trained}, indent=2) + "\n")
    return path


def read_student_record(name_or_path: str | Path) -> dict[str, Any] | None:
    """The record of a student folder; None for a folder without one or a hub id.

    A trained text student's record from before kinds were recorded for text has no "kind": it is
    a text student."""
    path = Path(name_or_path) / STUDENT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise MintError(f"{path}: not a readable student record ({err}); rebuild or retrain that student") from err
    if not isinstance(record, dict):
        raise MintError(f"{path}: expected a JSON mapping with key 'kind', got {type(record).__name__}")
    record.setdefault("kind", "text")
    check_kind(record["kind"], f"{path}: key 'kind'")
    return record


def student_kind(name_or_path: str | Path, declared: str | None = None) -> str:
    """The kind `name_or_path` records; for a folder or hub id without a record, `declared` (the
    application's `student_kind`). A record that disagrees with `declared` is an error naming both."""
    record = read_student_record(name_or_path)
    if declared is not None:
        check_kind(declared, "declared student kind")
    if record is None:
        if declared is None:
            raise MintError(f"student {str(name_or_path)!r} records no kind (no {STUDENT_FILE}: not a folder MINT "
                            f"wrote); give the kind the application declares (Application.student_kind, "
                            f"one of {KINDS})")
        return declared
    if declared is not None and record["kind"] != declared:
        raise MintError(f"student {str(name_or_path)!r} is a {record['kind']} student (its {STUDENT_FILE}), but "
                        f"the application declares a {declared} student (Application.student_kind); point "
                        "config key 'student.base' at a model of that kind, or rebuild the folder")
    return record["kind"]


def check_student_input(name_or_path: str | Path, declared: str | None, images: bool) -> str:
    """`student_kind`, checked against what a step gives the student: images (a vision student) or none."""
    kind = student_kind(name_or_path, declared)
    if (kind == "vision") != images:
        given = "images" if images else "no image"
        needs = ("a vision student sees the image at the cases column the application's student_image names "
                 "(--image-field)") if kind == "vision" else "a text student reads no image (drop --image-field)"
        raise MintError(f"student {str(name_or_path)!r} is a {kind} student, but the step gives it {given}: {needs}")
    return kind
