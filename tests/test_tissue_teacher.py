"""The tissue teacher: the CLIP-style model trained in the workflow, and ranking with a CLIP checkpoint."""

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from mint.apps.tissue import teacher as tt
from mint.apps.tissue.cohort import CASE_FIELDS, NUCLEI, build_cohort
from mint.apps.tissue.patches import FEATURE_NAMES
from mint.apps.tissue.tissues import TISSUE_IDS, TISSUES
from mint.core import schemas
from mint.core.cohort import load_cases, load_labels
from mint.core.io import MintError, load_checkpoint, load_json, read_parquet, write_parquet
from tests.factories import write_tiny_clip

# 15 patches per tissue at 32 px (285 cases, 152 to train on) and 30 epochs: about 4 s on one core, to about
# 0.6 test top-1 with image and nuclei against 0.25 with the image alone (seeds 0 and 1).
SETTINGS = {**tt.DEFAULTS, "image_size": 32, "epochs": 30, "threads": 1}


def _cohort(folder, per_tissue=15, size=32, seed=0):
    paths = {"cases_path": folder / "cases.parquet", "candidates_path": folder / "candidates.parquet",
             "excluded_path": folder / "excluded.parquet", "nuclei_path": folder / "nuclei.parquet"}
    build_cohort(**paths, images_dir=folder / "images", seed=seed,
                 cohort={"source": "simulated", "simulated": {"per_tissue": per_tissue, "size": size},
                         "split": {"validation": 0.15, "test": 0.3}})
    return paths


def _random_text_embeddings(cases_path, candidates_path, out, dim=32):
    """TEXT_EMBEDDINGS with one random unit vector per distinct text, in place of MiniLM (which takes ~20 s)."""
    cases, labels = load_cases(cases_path), load_labels(candidates_path)
    texts = cases["caption"].to_list() + tt.prompt_texts(labels["name"].to_list(), tt.DEFAULT_PROMPT)
    unique = sorted(set(texts))
    vectors = np.random.default_rng(0).standard_normal((len(unique), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    emb = vectors[[unique.index(t) for t in texts]]
    df = pl.DataFrame({"kind": ["caption"] * cases.height + ["prompt"] * labels.height,
                       "id": cases["case_id"].to_list() + labels["label_id"].to_list(), "text": texts,
                       "embedding": list(emb)})
    write_parquet(df, out, tt.TEXT_EMBEDDINGS)
    return out


def _train_and_rank(paths, emb, out, settings=SETTINGS, seed=0):
    metrics = tt.train_teacher(paths["cases_path"], paths["candidates_path"], paths["nuclei_path"], emb,
                               out / "model.pt", out / "metrics.json", settings=settings, seed=seed)
    tt.rank_tissues(paths["cases_path"], paths["candidates_path"], paths["nuclei_path"], out / "model.pt",
                    out / "rankings.parquet", threads=1)
    return metrics, read_parquet(out / "rankings.parquet", schemas.RANKINGS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tissue_teacher")
    paths = _cohort(root / "cohort")
    emb = _random_text_embeddings(paths["cases_path"], paths["candidates_path"], root / "text.parquet")
    metrics, rankings = _train_and_rank(paths, emb, root / "run1")
    return {"root": root, "paths": paths, "emb": emb, "metrics": metrics, "rankings": rankings}


def _top1(rankings, cases, modality, split="test"):
    truth = cases.filter(pl.col("split") == split).select("case_id", "label_id")
    best = rankings.filter((pl.col("modality") == modality) & (pl.col("rank") == 1))
    hits = truth.join(best, on="case_id", suffix="_ranked")
    return float((hits["label_id"] == hits["label_id_ranked"]).mean())


def test_rankings_cover_every_case_and_tissue_in_both_modalities(trained):
    cases = load_cases(trained["paths"]["cases_path"])
    rankings = trained["rankings"]
    assert set(rankings["modality"]) == set(tt.MODALITIES)
    for modality in tt.MODALITIES:
        rows = rankings.filter(pl.col("modality") == modality)
        assert rows.height == cases.height * len(TISSUE_IDS)
        assert set(rows["case_id"]) == set(cases["case_id"])
        per_case = rows.group_by("case_id").agg(pl.col("rank").sort(), pl.col("label_id").n_unique())
        assert per_case["rank"].to_list() == [list(range(1, 20))] * cases.height
        assert set(per_case["label_id"]) == {19}
        # rank 1 is the highest cosine similarity, and cosines lie in [-1, 1]
        first = rows.sort("case_id", "rank").group_by("case_id", maintain_order=True).agg(pl.col("score"))
        assert all(s == sorted(s, reverse=True) for s in first["score"].to_list())
        assert rows["score"].abs().max() <= 1 + 1e-5


def test_nucleus_features_beat_the_image_alone(trained):
    cases = load_cases(trained["paths"]["cases_path"])
    fused = _top1(trained["rankings"], cases, "image_nuclei")
    image = _top1(trained["rankings"], cases, "image")
    print(f"test top-1: image_nuclei {fused:.3f}, image {image:.3f}")
    assert fused > image + 0.15
    assert fused > 3 / len(TISSUE_IDS)  # well above chance (1/19)
    # metrics.json reports what the rankings give
    metrics = load_json(trained["root"] / "run1" / "metrics.json")
    assert metrics["test_image_nuclei_top1"] == pytest.approx(fused)
    assert metrics["test_image_top1"] == pytest.approx(image)
    assert {f"{s}_{m}_top{k}" for s in ("validation", "test") for m in tt.MODALITIES for k in (1, 5)} <= set(metrics)


@pytest.mark.slow
def test_default_sizes_clearly_favour_image_and_nuclei(tmp_path):
    """The simulated default (40 patches per tissue at 64 px) with the default teacher: about 0.74 test top-1 with
    image and nuclei against 0.28 with the image alone (seeds 0 and 1; about 20 s of one core)."""
    paths = _cohort(tmp_path / "cohort", per_tissue=40, size=64)
    emb = _random_text_embeddings(paths["cases_path"], paths["candidates_path"], tmp_path / "text.parquet")
    metrics, rankings = _train_and_rank(paths, emb, tmp_path / "run", {**tt.DEFAULTS, "threads": 1})
    cases = load_cases(paths["cases_path"])
    fused, image = _top1(rankings, cases, "image_nuclei"), _top1(rankings, cases, "image")
    print(f"default sizes, test top-1: image_nuclei {fused:.3f}, image {image:.3f}")
    assert fused > image + 0.25
    assert metrics["test_image_nuclei_top5"] > metrics["test_image_top5"]


def test_same_seed_same_rankings_other_seed_other_rankings(trained):
    short = {**SETTINGS, "epochs": 3}
    runs = [_train_and_rank(trained["paths"], trained["emb"], trained["root"] / f"short{i}", short, seed)[1]
            for i, seed in enumerate((0, 0, 1))]
    assert runs[0].equals(runs[1])
    assert (runs[0]["rank"] != runs[2]["rank"]).any()


def test_image_modality_ignores_the_nucleus_features():
    torch.manual_seed(0)
    model = tt.PatchTextModel(n_features=6, text_dim=8, hidden=16, joint=8).eval()
    images, nuclei = torch.randn(3, 3, 32, 32), torch.randn(3, 6)
    with torch.no_grad():
        alone = model.encode_patches(images, nuclei, tt.presence(3, "image"))
        other_nuclei = model.encode_patches(images, torch.randn(3, 6), tt.presence(3, "image"))
        fused = model.encode_patches(images, nuclei, tt.presence(3, "image_nuclei"))
        fused_other = model.encode_patches(images, torch.randn(3, 6), tt.presence(3, "image_nuclei"))
    assert torch.allclose(alone, other_nuclei)
    assert not torch.allclose(fused, fused_other)


def test_soft_targets_reduce_to_clip_loss_when_captions_differ():
    logits = torch.randn(5, 5)
    eye = torch.eye(5)
    clip = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    assert tt._soft_cross_entropy(logits, eye) == pytest.approx(clip.item(), rel=1e-6)
    # two patches with one caption: each row's target is split between them
    same = eye.clone()
    same[0, 1] = same[1, 0] = 1
    expected = -(torch.log_softmax(logits, 1)[0, :2].mean() + torch.log_softmax(logits, 1)[1, :2].mean()
                 + torch.log_softmax(logits, 1).diagonal()[2:].sum()) / 5
    assert tt._soft_cross_entropy(logits, same) == pytest.approx(expected.item(), rel=1e-6)


def test_training_changes_every_trainable_tensor(trained):
    ckpt = load_checkpoint(trained["root"] / "run1" / "model.pt")
    torch.manual_seed(0)
    fresh = tt.PatchTextModel(ckpt["n_features"], ckpt["prompts"].shape[1], ckpt["hidden"], ckpt["joint"])
    trained_state = ckpt["state_dict"]
    unchanged = [name for name, p in fresh.named_parameters() if torch.equal(p.detach(), trained_state[name])]
    assert unchanged == []


def test_cross_fit_ranks_training_cases_with_models_that_did_not_see_them(trained, tmp_path):
    settings = {**SETTINGS, "epochs": 4, "cross_fit": 2}
    tt.train_teacher(trained["paths"]["cases_path"], trained["paths"]["candidates_path"],
                     trained["paths"]["nuclei_path"], trained["emb"], tmp_path / "model.pt", tmp_path / "m.json",
                     settings=settings, seed=0)
    ckpt = load_checkpoint(tmp_path / "model.pt")
    cases = load_cases(trained["paths"]["cases_path"])
    train_ids = set(cases.filter(pl.col("split") == "train")["case_id"])
    folds = [set(f["case_ids"]) for f in ckpt["folds"]]
    assert len(folds) == 2 and folds[0] | folds[1] == train_ids and not folds[0] & folds[1]
    p = trained["paths"]
    tt.rank_tissues(p["cases_path"], p["candidates_path"], p["nuclei_path"], tmp_path / "model.pt",
                    tmp_path / "with_folds.parquet", threads=1)
    ckpt["folds"] = []
    torch.save(ckpt, tmp_path / "no_folds.pt")
    tt.rank_tissues(p["cases_path"], p["candidates_path"], p["nuclei_path"], tmp_path / "no_folds.pt",
                    tmp_path / "without.parquet", threads=1)
    a, b = pl.read_parquet(tmp_path / "with_folds.parquet"), pl.read_parquet(tmp_path / "without.parquet")
    joined = a.join(b, on=["case_id", "modality", "label_id"], suffix="_main")
    changed = joined.filter(pl.col("score") != pl.col("score_main"))["case_id"].unique()
    assert set(changed) == train_ids  # the fold models score the training cases, the main model the others


# ---------------------------------------------------------------- inputs and errors


@pytest.mark.parametrize("change, message", [
    (lambda df: df.slice(1), "no nucleus features for case.*'{first}'"),
    (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.col("features").list.head(5))
                                .otherwise(pl.col("features")).alias("features")),
     "case '{fourth}' has 5 nucleus features, case '{first}' has " + str(len(FEATURE_NAMES))),
    (lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit([float("nan")] * len(FEATURE_NAMES)))
                                .otherwise(pl.col("features")).alias("features")),
     "case '{fourth}' has a NaN"),
])
def test_bad_nucleus_features_name_the_case(trained, tmp_path, change, message):
    p = trained["paths"]
    nuclei = change(pl.read_parquet(p["nuclei_path"]))
    write_parquet(nuclei, tmp_path / "nuclei.parquet", NUCLEI)
    ids = load_cases(p["cases_path"])["case_id"]
    with pytest.raises(MintError, match="nuclei.parquet: " + message.format(first=ids[0], fourth=ids[3])):
        tt.train_teacher(p["cases_path"], p["candidates_path"], tmp_path / "nuclei.parquet", trained["emb"],
                         tmp_path / "model.pt", tmp_path / "metrics.json", settings=SETTINGS, seed=0)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.json").exists()


def test_missing_prompt_embedding_names_the_label(trained, tmp_path):
    emb = pl.read_parquet(trained["emb"]).filter(pl.col("id") != "liver")
    write_parquet(emb, tmp_path / "text.parquet", tt.TEXT_EMBEDDINGS)
    p = trained["paths"]
    with pytest.raises(MintError, match=r"no prompt embedding for label\(s\) \['liver'\]"):
        tt.train_teacher(p["cases_path"], p["candidates_path"], p["nuclei_path"], tmp_path / "text.parquet",
                         tmp_path / "model.pt", tmp_path / "metrics.json", settings=SETTINGS, seed=0)


def test_settings_must_name_every_key(trained, tmp_path):
    p = trained["paths"]
    settings = {k: v for k, v in SETTINGS.items() if k != "joint"}
    with pytest.raises(MintError, match=r"missing key\(s\) \['joint'\]"):
        tt.train_teacher(p["cases_path"], p["candidates_path"], p["nuclei_path"], trained["emb"],
                         tmp_path / "model.pt", tmp_path / "metrics.json", settings=settings, seed=0)


def test_ranking_refuses_other_candidates(trained, tmp_path):
    p = trained["paths"]
    labels = load_labels(p["candidates_path"]).slice(0, 18)
    write_parquet(labels, tmp_path / "candidates.parquet", schemas.LABELS)
    with pytest.raises(MintError, match="trained on other candidates"):
        tt.rank_tissues(p["cases_path"], tmp_path / "candidates.parquet", p["nuclei_path"],
                        trained["root"] / "run1" / "model.pt", tmp_path / "r.parquet", threads=1)
    assert not (tmp_path / "r.parquet").exists()


def test_prompt_template_needs_the_name():
    assert tt.prompt_texts(["Head & Neck"], tt.DEFAULT_PROMPT) == ["an H&E patch of Head & Neck tissue"]
    with pytest.raises(MintError, match=r"'an H&E patch' has no '\{name\}'"):
        tt.prompt_texts(["Liver"], "an H&E patch")


@pytest.mark.slow
def test_minilm_embeds_captions_and_prompts(trained, tmp_path):
    p = trained["paths"]
    out = tmp_path / "text.parquet"
    tt.write_text_embeddings(p["cases_path"], p["candidates_path"], out, encoder=tt.DEFAULT_ENCODER,
                             prompt_template=tt.DEFAULT_PROMPT, threads=1)
    df = read_parquet(out, tt.TEXT_EMBEDDINGS)
    cases = load_cases(p["cases_path"])
    assert df.filter(pl.col("kind") == "caption")["id"].to_list() == cases["case_id"].to_list()
    assert df.filter(pl.col("kind") == "prompt")["id"].to_list() == list(TISSUE_IDS)
    emb = np.asarray(df["embedding"].to_list())
    assert emb.shape[1] == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # a caption naming the tissue lies nearer that tissue's prompt than another's
    colon = df.filter(pl.col("text").str.contains("colon tissue") & (pl.col("kind") == "caption"))["embedding"][0]
    prompts = {r["id"]: np.asarray(r["embedding"]) for r in df.filter(pl.col("kind") == "prompt").iter_rows(named=True)}
    assert np.dot(colon, prompts["colon"]) > np.dot(colon, prompts["testis"])


# ---------------------------------------------------------------- CLIP checkpoints (PLIP)


def test_clip_checkpoint_ranks_every_tissue_deterministically(trained, tmp_path):
    model = write_tiny_clip(tmp_path / "clip")
    cases = load_cases(trained["paths"]["cases_path"]).head(5)
    names = [t.name for t in TISSUES]
    scores = tt.rank_with_clip(model, cases["image_path"].to_list(), names, tt.DEFAULT_PROMPT, batch_size=2)
    assert scores.shape == (5, 19) and np.isfinite(scores).all()
    again = tt.rank_with_clip(str(model), cases["image_path"].to_list(), names, tt.DEFAULT_PROMPT, batch_size=2)
    np.testing.assert_array_equal(scores, again)
    # another batch size changes the sums' order, not the scores
    np.testing.assert_allclose(scores, tt.rank_with_clip(model, cases["image_path"].to_list(), names), atol=1e-6)
    # each prompt gets its own text embedding (pooled at its end-of-text token), and each image its own
    assert np.unique(scores[0].round(6)).size == 19
    assert not np.allclose(scores[0], scores[1])


def test_clip_rankings_file(trained, tmp_path):
    model = write_tiny_clip(tmp_path / "clip")
    p = trained["paths"]
    cases = load_cases(p["cases_path"]).head(4)
    write_parquet(cases, tmp_path / "cases.parquet", schemas.cases_schema(CASE_FIELDS))
    tt.rank_tissues_with_clip(tmp_path / "cases.parquet", p["candidates_path"], tmp_path / "r.parquet",
                              model=str(model), prompt_template=tt.DEFAULT_PROMPT, batch_size=3, threads=1)
    r = read_parquet(tmp_path / "r.parquet", schemas.RANKINGS)
    assert r.height == 4 * 19 and set(r["modality"]) == {"image"}
    assert r.group_by("case_id").agg(pl.col("rank").sort())["rank"].to_list() == [list(range(1, 20))] * 4


def test_unknown_clip_model_is_named(tmp_path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    with pytest.raises(MintError, match="CLIP model 'nobody/no-such-clip'.*hub id"):
        tt.rank_with_clip("nobody/no-such-clip", [image], ["Liver"])
    with pytest.raises(MintError, match="CLIP model .*empty.*folder"):
        (tmp_path / "empty").mkdir()
        tt.rank_with_clip(tmp_path / "empty", [image], ["Liver"])


# ---------------------------------------------------------------- the teacher choice (config teacher.model)


def _tissue_config(**teacher):
    from mint.core.config import validate_config

    return validate_config({"application": "tissue", "teacher": teacher}, source="test.yaml")


@pytest.mark.parametrize("model, modalities, pair, metrics", [
    ("trained", ("image_nuclei", "image"), "image_nuclei", "results/teacher/metrics.json"),
    ("clip", ("image",), "image", None),
])
def test_the_teacher_model_selects_modalities_and_metrics(model, modalities, pair, metrics):
    from mint.core.app import load_application, selected_teacher

    teacher = selected_teacher(load_application("tissue"), _tissue_config(model=model))
    assert (teacher.modalities, teacher.pair_modality, teacher.metrics) == (modalities, pair, metrics)
    assert (model == "clip") == ("CLIP model vinid/plip" in teacher.description)


def test_external_rankings_are_the_core_teacher(tmp_path):
    from mint.core.app import load_application, selected_teacher

    teacher = selected_teacher(load_application("tissue"), _tissue_config(model="external", rankings="r.parquet"))
    assert (teacher.modalities, teacher.pair_modality, teacher.metrics) == (("external",), "external", None)


def test_external_model_and_rankings_go_together():
    with pytest.raises(MintError, match=r"test.yaml: config key 'teacher.model' is 'external' but 'teacher.rankings'"):
        _tissue_config(model="external")
    with pytest.raises(MintError, match=r"config key 'teacher.rankings' names 'r.parquet' but 'teacher.model' is "
                                        r"'trained'; set teacher.model: external"):
        _tissue_config(rankings="r.parquet")
    with pytest.raises(MintError, match=r"config key 'teacher.model'.*'plip' is not one of"):
        _tissue_config(model="plip")


def test_a_clip_source_that_cannot_load_is_refused_at_start_up(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from mint.apps.tissue.hooks import check_clip_source

    (tmp_path / "config.json").write_text("{}")
    assert check_clip_source(str(tmp_path)).identity.startswith("folder:")  # the rest is checked when it loads
    (tmp_path / "empty").mkdir()
    with pytest.raises(MintError, match=r"'teacher.clip.model': '.*empty' is not a Hugging Face model folder"):
        check_clip_source(str(tmp_path / "empty"))
    with pytest.raises(MintError, match=r"'teacher.clip.model': '\./no/such/clip/' is no folder and not a hub id"):
        check_clip_source("./no/such/clip/")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for offline in (True, False):  # online too: start-up never downloads a model
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
        with pytest.raises(MintError, match=r"'teacher.clip.model': 'nobody/no-such-clip': no folder of that name, "
                                            r"and the hub id is not in the Hugging Face cache.*"
                                            r"`hf download nobody/no-such-clip`"):
            check_clip_source("nobody/no-such-clip")
