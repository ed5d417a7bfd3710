"""The workflow's batched answering gives each case the answer one generate call per case gives it."""

import pytest
import torch

from mint.apps.rare_disease.prompts import PROMPT
from mint.apps.rare_disease.student import build_tiny_llama, render_chat, train_tokenizer
from mint.core.predict import generate_answers
from mint.core.prompts import build_prompt

TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": True}
NOTES = ["A boy.", "A 4-year-old girl. Findings: seizures, short stature, hypotonia and a cleft palate.",
         "Findings: scoliosis.", "A 30-year-old man with low-set ears, micrognathia, long philtrum, "
         "thin upper lip vermilion, downslanted palpebral fissures and intellectual disability.", "Hypotonia."]


@pytest.fixture(scope="module")
def student():
    prompts = [build_prompt(PROMPT.resolved(None), 3, note, "note") for note in NOTES]
    tokenizer = train_tokenizer([render_chat(p, True) for p in prompts] * 4, 400)
    model = build_tiny_llama(tokenizer, TINY_MODEL, seed=0)
    with torch.no_grad():  # sharper logits than the initialisation's: no near-ties for padding noise to flip
        for p in model.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    return model, tokenizer, prompts


def test_batched_answers_equal_one_call_per_case(student):
    model, tokenizer, prompts = student
    torch.manual_seed(0)
    batched = generate_answers(model, tokenizer, prompts, batch_size=3, max_new_tokens=12)
    one_by_one = [generate_answers(model, tokenizer, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert batched == one_by_one
    assert len(set(batched)) > 1 and all(batched)  # real, different answers, not all empty
