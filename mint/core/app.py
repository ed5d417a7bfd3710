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
    """What an application declares; every field is read by the core or its rules, every hook is a field.

    - `name`: the value of `config.application`; `label_noun` (+ `labels_noun`): what a label is.
    - `rules`: its Snakemake rules file, which must write `results/cohort/{cases,candidates,excluded}.parquet`
      (+ `vocabulary.parquet` when `vocabulary` is true) and, unless the config names external rankings,
      `results/rankings/teacher.parquet`. It defines no function or name that the core's rules define.
    - `config_schema`: JSON-schema of its own config keys, merged into the core's.
    - `case_fields`: its own columns of `cases.parquet`.
    - `teacher`: the `Teacher` its rules train (modalities, the pair modality, its metrics file), or, when
      the application offers more than one, a function of the validated config that gives the one it selects.
      A config that names external rankings selects those instead (`selected_teacher`).
    - `modality_labels`: every modality its teachers rank, in the report's row order, with the name the
      report gives it.
    - `prompt`: system message, user template and answer header.
    - `student_kind` ('text' | 'vision'): declared once here; training writes it into each trained folder,
      a builtin student's folder records its own (`mint.core.students.kind`), and prediction reads it from
      the folder (this declaration only for a model that records none, a hub model). `student_text` /
      `student_image`: the cases columns the student reads, `student_input`: how the report names that
      input; `builtin_student`: the packaged settings (YAML) of its builtin student, whose `train.threads`
      its `build_student` rule reserves, or None.
    - `vocabulary`: whether its rules write `vocabulary.parquet` (the names answers are matched against;
      else the candidates); `normalise`: how names are made comparable when answers are matched to labels.
    - `rankers`: baselines whose rules write `results/rankings/<name>.parquet` (modality `<name>`), scored
      by the core; `extra_runs`: a regex of further answer files `results/predict/<run>.parquet` its rules
      write (scored by the core like the students'); `score_files(config)`: the score files of both that a
      validated config asks for (its own rows of the report), or None: none.
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
    - `synthetic_sources`: the values of the cases' `source` column that mark generated (not real) cases. A
      test case's label is *seen* when a training case of it comes from any other source; the report gives
      accuracy on the test cases of seen and of unseen labels apart, and per label by its real training cases.

    An application keeps its hooks, the fields that are functions of the config or of the report's context
    (`check_config`, `check_inputs`, `input_files`, `teacher`, `score_files`, `summary_sections`), in one module,
    `<package>/hooks.py`; `normalise` stays beside its prompt. examples/toy_app is the smallest whole application.
    """

    name: str
    label_noun: str
    labels_noun: str
    rules: Path
    config_schema: Mapping[str, Any]
    case_fields: Sequence[pa.Field]
    teacher: Teacher | Callable[[Mapping[str, Any]], Teacher]
    modality_labels: Mapping[str, str]
    prompt: Prompt
    student_kind: str = "text"
    student_text: str | None = None
    student_image: str | None = None
    student_input: str = "the input"
    builtin_student: Path | None = None
    vocabulary: bool = False
    normalise: Callable[[str], str] = _identity_normalise
    rankers: Sequence[str] = ()
    extra_runs: str | None = None
    score_files: Callable[[Mapping[str, Any]], Sequence[str]] | None = None
    rows: Mapping[str, str] = field(default_factory=dict)
    row_order: Sequence[str] = ("base", "sft", "dpo", "orpo")
    summary_sections: Callable[[Mapping[str, Any]], list[str]] | None = None
    check_config: Callable[[Mapping[str, Any], str], None] | None = None
    check_inputs: Callable[[Mapping[str, Any], str], None] | None = None
    input_files: Callable[[Mapping[str, Any]], Mapping[str, Sequence[Path]]] | None = None
    synthetic_sources: Sequence[str] = ("simulated",)

    def __post_init__(self) -> None:
        if self.student_kind not in STUDENT_KINDS:
            raise MintError(f"application {self.name!r}: student_kind must be one of {STUDENT_KINDS}")
        if self.student_kind == "text" and not self.student_text:
            raise MintError(f"application {self.name!r}: a text student needs student_text (a cases column)")
        if self.student_kind == "vision" and not self.student_image:
            raise MintError(f"application {self.name!r}: a vision student needs student_image (a cases column)")
        if isinstance(self.teacher, Teacher):
            self.check_teacher(self.teacher)
        elif not callable(self.teacher):
            raise MintError(f"application {self.name!r}: teacher must be a Teacher or a function of the config "
                            f"that gives one, not {type(self.teacher).__name__}")
        if isinstance(self.synthetic_sources, str):
            raise MintError(f"application {self.name!r}: synthetic_sources must be a sequence of source names, "
                            f"not the string {self.synthetic_sources!r}")

    def check_teacher(self, teacher: Teacher) -> Teacher:
        """`teacher`, once each of its modalities has a name in `modality_labels` (the report's rows)."""
        unnamed = [m for m in teacher.modalities if m not in self.modality_labels]
        if unnamed:
            raise MintError(f"application {self.name!r}: teacher modalities {unnamed} have no entry in "
                            f"modality_labels {list(self.modality_labels)} (their names and order in the report)")
        return teacher


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
    """The teacher a validated config selects: external rankings (config `teacher.rankings`), or the
    application's `teacher` (a fixed one, or the one its function of the config gives)."""
    rankings = config["teacher"]["rankings"]
    if rankings is not None:
        return Teacher(("external",), "external", None, f"rankings imported from {rankings}")
    teacher = app.teacher if isinstance(app.teacher, Teacher) else app.teacher(config)
    if not isinstance(teacher, Teacher):
        raise MintError(f"application {app.name!r}: its teacher function gave {teacher!r}, not a Teacher")
    return app.check_teacher(teacher)
