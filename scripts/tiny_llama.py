"""The random 2-layer Llama (hidden 64) with a word-level tokenizer that the synthetic tasks train on."""

from __future__ import annotations

from pathlib import Path


def word_level_llama(d: Path, words: list[str], seed: int, max_positions: int = 128) -> Path:
    """Save a seeded random LlamaForCausalLM and its whitespace word-level tokenizer over ``words`` to ``d``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<s>", "</s>", "<unk>", "<pad>"] + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>")
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=3)).save_pretrained(d)
    tok.save_pretrained(d)
    return d
