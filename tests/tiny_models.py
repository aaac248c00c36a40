"""Tiny models built from a config (2 layers, hidden 32) and a character tokenizer.

Milliseconds per step and no downloads: what the tests and the benchmarks' quick modes use.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CHARS = string.printable


def make_tokenizer(folder: Path, *, with_pad: bool) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[EOS]"] + (["[PAD]"] if with_pad else [])
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(CHARS)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", eos_token="[EOS]",
        pad_token="[PAD]" if with_pad else None,
    )
    tok.save_pretrained(folder)


def make_tiny_causal_lm(folder: Path, seed: int = 0, *, hidden_size: int = 32,
                        intermediate_size: int = 64, num_layers: int = 2) -> Path:
    """A 2-layer Llama whose tokenizer has no pad token (the loader must handle that).

    Wider or deeper on request, e.g. hidden 512 x 4 layers (12.7M parameters, 51 MB) where a
    test needs a model whose memory stands out from the Python process's own.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    make_tokenizer(folder, with_pad=False)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(CHARS) + 8, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=1, bos_token_id=1, pad_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def make_tiny_encoder(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT encoder for sequence classification."""
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    make_tokenizer(folder, with_pad=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(CHARS) + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, pad_token_id=2,
    )
    BertModel(config).save_pretrained(folder)
    return folder
