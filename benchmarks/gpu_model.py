"""A Qwen2-0.5B-shaped reward model and a byte-level BPE tokenizer, built locally (no hub).

The GPU benchmarks (`benchmarks/gpu_suite.sh`) need a decoder of a size people train reward models
at, on a machine that cannot download one. The shape is Qwen2-0.5B's (hidden 896, 24 layers, 14
heads, 2 KV heads, intermediate 4,864, vocabulary 151,936; 358M non-embedding parameters) with
random weights; the tokenizer is a byte-level BPE trained on the preference file itself, so token
counts per pair resemble a real one's. Speed does not depend on the weights' values.

    python benchmarks/gpu_model.py --out /tmp/qwen05b                 # the 0.5B shape
    python benchmarks/gpu_model.py --out /tmp/qwen-tiny --size tiny   # 2 layers, hidden 64 (smoke runs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

SIZES = {  # hidden, layers, heads, kv heads, intermediate, model vocabulary (None: the tokenizer's)
    "qwen2-0.5b": (896, 24, 14, 2, 4864, 151936),
    "tiny": (64, 2, 4, 2, 128, None),
}
EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int) -> "object":
    """Byte-level BPE over the texts, EOS ``<|endoftext|>`` (a pad token is added by rewardkit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS)


def build(out: Path, size: str, data: str, vocab_size: int) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    comps = common.load_pairs(data, None)
    texts = [str(t) for c in comps for t in (c.prompt, *c.responses)]
    tok = train_tokenizer(texts, vocab_size)
    hidden, layers, heads, kv, inter, vocab = SIZES[size]
    cfg = Qwen2Config(vocab_size=vocab or len(tok) + 1, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=inter,
                      max_position_embeddings=32768, num_labels=1, tie_word_embeddings=False,
                      bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    Qwen2ForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    probe = texts[0][:200]
    if AutoTokenizer.from_pretrained(out).encode(probe) != tok.encode(probe):
        raise SystemExit(f"{out}: the saved tokenizer does not reload as trained")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--size", choices=sorted(SIZES), default="qwen2-0.5b")
    ap.add_argument("--data", default=None, help="text to train the tokenizer on (default: the shared hh-rlhf file)")
    ap.add_argument("--vocab-size", type=int, default=32000, help="BPE vocabulary to learn (default 32,000)")
    args = ap.parse_args()
    out = build(Path(args.out), args.size, args.data or common.default_data(), args.vocab_size)
    print(f"wrote {out} ({args.size}; {common.non_embedding_params(str(out)) / 1e6:.1f}M non-embedding parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
