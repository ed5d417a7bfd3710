"""The tissue application's hooks, the functions of the config that `APPLICATION` names: the teacher a
config selects, its config rules that JSON schema cannot state, its start-up checks and the files its steps
read by a config path.

Which teacher ranks the tissues (config `teacher.model`):

- `trained` (the default): the image+nuclei CLIP-style teacher trained in the workflow
  (`mint.apps.tissue.teacher`), ranking with both modalities, `image_nuclei` (which makes the pairs)
  and `image` (the ablation).
- `clip`: a Hugging Face `CLIPModel` (`teacher.clip.model`, e.g. PLIP `vinid/plip`) by hub id or
  folder, zero-shot from `teacher.prompt_template`; it sees the image only, so its one modality is `image`.
- `external`: an external model's rankings (`teacher.rankings`), imported by the core as for any
  application (modality `external`).

No torch here: the rules file calls `check_clip_source` as the workflow starts.

    python -c "from mint.apps.tissue.hooks import check_clip_source; check_clip_source('vinid/plip')"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mint.apps.tissue.tissues import TISSUES
from mint.core.app import Teacher
from mint.core.config import check_panel_size
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
    check_panel_size(len(TISSUES), config, source, "the tissue panel")
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


def check_inputs(cfg: Mapping[str, Any], source: str) -> None:
    """At start-up: the folder or manifest the cohort source names exists (its content is checked by the
    cohort step, before it writes anything)."""
    cohort = cfg["cohort"]
    if cohort["source"] in ("pannuke", "manifest"):
        key = f"cohort.{cohort['source']}.path"
        path = cohort[cohort["source"]]["path"]
        if not path:
            raise MintError(f"{source}: config key '{key}' is required when cohort.source is {cohort['source']!r}")
        if not Path(path).exists():
            raise MintError(f"{source}: config key '{key}': not found: {path}")


def input_files(config: Mapping[str, Any]) -> dict[str, list[Path]]:
    """`Application.input_files`: the files this application's steps read by a path from a validated config,
    by the config key that names them (absent where the setting is off).

    - `cohort.pannuke.path` (build_cohort): each fold's images, masks and types `.npy` that `cohort.pannuke.folds`
      names (`readers.pannuke_files`);
    - `cohort.manifest.path` (build_cohort): the manifest file (a folder's one `manifest.*`), and
      `cohort.manifest.images` (build_cohort): every image and mask its rows name (`readers.manifest_files`).

    Models (`teacher.encoder`, `teacher.clip.model`) are not listed: `mint.core.models` gives them an identity.
    """
    from mint.apps.tissue.readers import manifest_files, pannuke_files

    cohort = config["cohort"]
    files: dict[str, list[Path]] = {}
    if cohort["source"] == "pannuke":
        files["cohort.pannuke.path"] = pannuke_files(cohort["pannuke"]["path"], cohort["pannuke"]["folds"])
    elif cohort["source"] == "manifest":
        manifest, listed = manifest_files(cohort["manifest"]["path"],
                                          allow_absolute=cohort.get("allow_absolute_paths", False))
        files["cohort.manifest.path"] = [manifest]
        files["cohort.manifest.images"] = listed
    return files
