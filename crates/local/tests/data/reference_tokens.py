"""Reference token ids for tests/local_model.rs, from Hugging Face's own
`tokenizers` library configured as SmolLM2's tokenizer.json is (byte-level
BPE; pre-tokenizer: each digit isolated, then GPT-2's byte-level split),
with the vocabulary and merges read from the GGUF by the `gguf` package.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install gguf tokenizers
    /tmp/ref/bin/python reference_tokens.py MODEL.gguf prompts.json > reference_tokens.jsonl
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

reader = GGUFReader(sys.argv[1])
tokens = reader.fields["tokenizer.ggml.tokens"].contents()
merges = reader.fields["tokenizer.ggml.merges"].contents()
types = reader.fields["tokenizer.ggml.token_type"].contents()
bpe = models.BPE(
    vocab={t: i for i, t in enumerate(tokens)},
    merges=[tuple(m.split(" ", 1)) for m in merges],
)
tok = Tokenizer(bpe)
tok.pre_tokenizer = pre_tokenizers.Sequence(
    [
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ]
)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens(
    [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3]
)
for text in json.load(open(sys.argv[2])):
    ids = tok.encode(text, add_special_tokens=False).ids
    print(json.dumps({"text": text, "ids": ids}, ensure_ascii=False))
