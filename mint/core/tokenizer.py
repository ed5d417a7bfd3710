"""A byte-level BPE tokenizer with Llama 3's chat format, trained here: the builtin students' tokenizers.

Applications that build a tiny student offline (a text one, a vision one) train their tokenizer
with `train_chat_tokenizer`, giving their own special tokens and chat template.

    .venv/bin/python -m pytest -q tests/test_student.py -k tokenizer
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

BOS = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (BOS, START_HEADER, END_HEADER, EOT, PAD)

# Llama 3's pre-tokenizer split: newline runs stay one piece whatever follows them, so a prompt
# ending in '\n\n' tokenizes the same alone and followed by the answer (TRL needs that).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_chat_tokenizer(
    texts: Iterable[str], vocab_size: int, *, special_tokens: Sequence[str], chat_template: str,
    max_length: int = 512, extra_special_tokens: Mapping[str, str] | None = None,
):
    """Byte-level BPE of at most `vocab_size` tokens (special tokens included) with `chat_template`.

    `special_tokens` (BOS, the header marks, EOT and PAD first) are whole tokens, never learnt from
    `texts`. A small corpus gives fewer merges than `vocab_size` allows: the vocabulary is smaller.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Special tokens are whole tokens, not text to learn merges from.
    special = re.compile("|".join(re.escape(s) for s in special_tokens))
    tok.train_from_iterator((special.sub("\n", t) for t in texts), trainer=trainer)
    # Like Llama 3: plain `tokenizer(text)` starts with BOS; chat templates write their own BOS
    # and are tokenized without special tokens by transformers and TRL.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        **({"extra_special_tokens": dict(extra_special_tokens)} if extra_special_tokens else {}),
        chat_template=chat_template,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
