"""The one small interface between the core and an application, and the registry that selects it.

An application (rare disease from a note, tissue type from an image, a user's own) is a module
that defines `APPLICATION = Application(...)`. The core reads nothing else of it, and never
imports it by name: `config.application` is either a builtin name (looked up in `BUILTIN`, a
table of module paths) or the dotted path of the user's own module.

    python -c "from mint.core.app import load_application; print(load_application('rare_disease'))"
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from mint.core.io import MintError

# Builtin applications: name -> module. Strings, so that the core imports none of them.
BUILTIN = {"rare_disease": "mint.apps.rare_disease", "tissue": "mint.apps.tissue"}

STUDENT_KINDS = ("text", "vision")


@dataclass(frozen=True)
class Prompt:
    """The question a student is asked and the header its numbered answer starts with.

    `user` is a template with `{text}` (the case's input text; absent for image-only students)
    and `{k}` (how many labels to name).
    """

    system: str
    user: str
    header: str

    def resolved(self, overrides: Mapping[str, str | None] | None) -> dict[str, str]:
        """This prompt with the config's `prompt.system` / `prompt.user` over it, as a plain dict."""
        overrides = overrides or {}
        return {"system": overrides.get("system") or self.system, "user": overrides.get("user") or self.user,
                "header": self.header}


def _identity_normalise(name: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", name.lower()).split())


@dataclass(frozen=True)
class Teacher:
    """The teacher a config selects: what its rankings hold and how the report names it.

    `modalities`: the modalities of its rankings (each a teacher row of the report); `pair_modality`:
    the one whose ranking makes the preference pairs; `metrics`: its JSON metrics file, or None;
    `description`: one line the report gives (which model ranked, from what), or None.
    """

    modalities: tuple[str, ...]
    pair_modality: str
    metrics: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if self.pair_modality not in self.modalities:
            raise MintError(f"teacher: pair_modality {self.pair_modality!r} is not one of its modalities "
                            f"{list(self.modalities)}")


@dataclass(frozen=True)
class Application:
    """What an application declares; every field is read by the core or its rules.

    - `name`: the value of `config.application`; `label_noun` (+ `labels_noun`): what a label is.
    - `rules`: its Snakemake rules file, which must write `results/cohort/{cases,candidates,excluded}.parquet`
      (+ `vocabulary.parquet` when `vocabulary` is true) and, unless the config names external rankings,
      `results/rankings/teacher.parquet`; `teacher_metrics`: a JSON file of its teacher, or None.
    - `config_schema`: JSON-schema of its own config keys, merged into the core's.
    - `case_fields`: its own columns of `cases.parquet`.
    - `synthetic_sources`: the values of the cases' `source` column that mark generated (not real) cases. A
      test case's label is *seen* when a training case of it comes from any other source; the report gives
      accuracy on the test cases of seen and of unseen labels apart, and per label by its real training cases.
    - `teacher_modalities`: the modalities its teacher ranks (each scored in the report), with
      `modality_labels`; `pair_modality`: the one whose ranking makes the preference pairs.
    - `select_teacher(config)`: when the application offers more than one teacher, the `Teacher` a
      validated config selects; None: its one teacher (`teacher_modalities`, `pair_modality`,
      `teacher_metrics`). Either way, a config that names external rankings selects those (`selected_teacher`).
    - `student_kind` ('text' | 'vision'): declared once here; training writes it into each trained folder,
      a builtin student's folder records its own (`mint.core.students.kind`), and prediction reads it from
      the folder (this declaration only for a model that records none, a hub model). `student_text` /
      `student_image`: the cases columns the student reads, `student_input`: how the report names that
      input; `builtin_student`: the packaged settings (YAML) of its builtin student, whose `train.threads`
      its `build_student` rule reserves, or None.
    - `prompt`: system message, user template and answer header; `normalise`: how names are made
      comparable when answers are matched to labels.
    - `rankers`: baselines whose rules write `results/rankings/<name>.parquet` (modality `<name>`), scored
      by the core; `extra_runs`: a regex of further answer files `results/predict/<run>.parquet` its rules
      write (scored by the core like the students'); its rules file lists the score files of both in
      `application_scores()`.
    - `rows`: report labels of methods the core does not name itself (its baselines); `row_order`:
      the order of the rows after the teacher's (the core's student methods among them);
      `summary_sections(context)`: extra Markdown lines for the report; `check_config(config, source)`:
      rules across its keys that JSON schema cannot state; `check_inputs(config, source)`: start-up checks
      of the files its keys name (run once the config is valid, before any step; paths relative to the
      working directory).
    - `input_files(config)`: the files its steps read by a path from a validated config rather than as a
      Snakemake input, grouped by the config key that names them, e.g. {'cohort.manifest.path': [manifest],
      'cohort.manifest.images': [each image and mask its rows name]}; a folder stands for every file below
      it, and keys of settings that are off are absent. Each group's `mint.core.fingerprint.fingerprint_files`
      is a param of the rule that reads it, so that editing a file reruns that step. None: no such files.
    """

    name: str
    label_noun: str
    labels_noun: str
    rules: Path
    config_schema: Mapping[str, Any]
    case_fields: Sequence[pa.Field]
    teacher_modalities: Sequence[str]
    pair_modality: str
    modality_labels: Mapping[str, str]
    prompt: Prompt
    student_kind: str = "text"
    student_text: str | None = None
    student_image: str | None = None
    student_input: str = "the input"
    builtin_student: Path | None = None
    vocabulary: bool = False
    teacher_metrics: str | None = None
    normalise: Callable[[str], str] = _identity_normalise
    rankers: Sequence[str] = ()
    extra_runs: str | None = None
    rows: Mapping[str, str] = field(default_factory=dict)
    row_order: Sequence[str] = ("base", "sft", "dpo", "orpo")
    summary_sections: Callable[[Mapping[str, Any]], list[str]] | None = None
    check_config: Callable[[Mapping[str, Any], str], None] | None = None
    check_inputs: Callable[[Mapping[str, Any], str], None] | None = None
    input_files: Callable[[Mapping[str, Any]], Mapping[str, Sequence[Path]]] | None = None
    select_teacher: Callable[[Mapping[str, Any]], Teacher] | None = None
    synthetic_sources: Sequence[str] = ("simulated",)

    def __post_init__(self) -> None:
        if self.student_kind not in STUDENT_KINDS:
            raise MintError(f"application {self.name!r}: student_kind must be one of {STUDENT_KINDS}")
        if self.student_kind == "text" and not self.student_text:
            raise MintError(f"application {self.name!r}: a text student needs student_text (a cases column)")
        if self.student_kind == "vision" and not self.student_image:
            raise MintError(f"application {self.name!r}: a vision student needs student_image (a cases column)")
        if self.pair_modality not in self.teacher_modalities:
            raise MintError(f"application {self.name!r}: pair_modality {self.pair_modality!r} is not one of "
                            f"teacher_modalities {list(self.teacher_modalities)}")
        if isinstance(self.synthetic_sources, str):
            raise MintError(f"application {self.name!r}: synthetic_sources must be a sequence of source names, "
                            f"not the string {self.synthetic_sources!r}")


def load_application(name: str) -> Application:
    """The application `name` selects: a builtin name, or a module path `pkg.module` defining APPLICATION."""
    module_name = BUILTIN.get(name, name)
    if "." not in module_name:
        raise MintError(f"config key 'application': unknown application {name!r}; builtin: {sorted(BUILTIN)}, "
                        "or the dotted path of a module that defines APPLICATION")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MintError(f"config key 'application': cannot import {module_name!r}: {err}") from err
    app = getattr(module, "APPLICATION", None)
    if not isinstance(app, Application):
        raise MintError(f"config key 'application': module {module_name!r} defines no APPLICATION = Application(...)")
    return app


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside a package (found with importlib.resources, wherever it is installed)."""
    return Path(str(resources.files(package).joinpath(name)))


def selected_teacher(app: Application, config: Mapping[str, Any]) -> Teacher:
    """The teacher a validated config selects: external rankings (config `teacher.rankings`), the
    application's choice (`select_teacher`), or its one teacher."""
    rankings = config["teacher"]["rankings"]
    if rankings is not None:
        return Teacher(("external",), "external", None, f"rankings imported from {rankings}")
    if app.select_teacher is not None:
        return app.select_teacher(config)
    return Teacher(tuple(app.teacher_modalities), app.pair_modality, app.teacher_metrics)
