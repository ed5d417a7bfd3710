"""Which teacher ranks the tissues (config `teacher.model`), what its rankings hold, and its checks.

- `trained` (the default): the image+nuclei CLIP-style teacher trained in the workflow
  (`mint.apps.tissue.teacher`), ranking with both modalities, `image_nuclei` (which makes the pairs)
  and `image` (the ablation).
- `clip`: a Hugging Face `CLIPModel` (`teacher.clip.model`, e.g. PLIP `vinid/plip`) by hub id or
  folder, zero-shot from `teacher.prompt_template`; it sees the image only, so its one modality is `image`.
- `external`: an external model's rankings (`teacher.rankings`), imported by the core as for any
  application (modality `external`).

No torch here: the rules file calls `check_clip_source` as the workflow starts.

    python -c "from mint.apps.tissue.teachers import check_clip_source; check_clip_source('vinid/plip')"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mint.apps.tissue.tissues import check_config as check_panel
from mint.core.app import Teacher
from mint.core.io import MintError
from mint.core.models import HUB_ID, ModelRef, resolve_model

TEACHER_METRICS = "results/teacher/metrics.json"


def select_teacher(config: Mapping[str, Any]) -> Teacher:
    """The Teacher a validated tissue config selects (`external` is handled by the core's `selected_teacher`)."""
    teacher = config["teacher"]
    if teacher["model"] == "clip":
        return Teacher(("image",), "image", None,
                       f"CLIP model {teacher['clip']['model']}, zero-shot from the image alone with the prompt "
                       f"{teacher['prompt_template']!r}")
    return Teacher(("image_nuclei", "image"), "image_nuclei", TEACHER_METRICS,
                   "the CLIP-style image+nuclei model trained here, zero-shot from the prompt "
                   f"{teacher['prompt_template']!r}; its image-only ranking is the ablation")


def check_config(config: Mapping[str, Any], source: str) -> None:
    """k + q fit the 19 tissues; `teacher.model: external` and `teacher.rankings` go together."""
    check_panel(config, source)
    model, rankings = config["teacher"]["model"], config["teacher"]["rankings"]
    if model == "external" and rankings is None:
        raise MintError(f"{source}: config key 'teacher.model' is 'external' but 'teacher.rankings' names no file; "
                        "give the Parquet of (case_id, label_id, score)")
    if model != "external" and rankings is not None:
        raise MintError(f"{source}: config key 'teacher.rankings' names {rankings!r} but 'teacher.model' is "
                        f"{model!r}; set teacher.model: external to use those rankings")


def check_clip_source(model: str, revision: str | None = None, source: str = "config") -> ModelRef:
    """Refuse, as the workflow starts, a CLIP source that cannot load: no folder with a config.json, or a hub id
    that is not in the local Hugging Face cache (at `teacher.clip.revision`); its `ModelRef` otherwise."""
    key = f"{source}: config key 'teacher.clip.model'"
    expected = "expected 'org/name' or a folder with a CLIPModel and its processor"
    if model == "builtin":  # the student's 'builtin' has no CLIP counterpart; resolve_model would accept it
        raise MintError(f"{key}: 'builtin' names no CLIP model ({expected})")
    if not Path(model).exists() and not HUB_ID.match(model):
        raise MintError(f"{key}: {model!r} is no folder and not a hub id ({expected})")
    return resolve_model(model, revision, key="teacher.clip.model", source=source)
