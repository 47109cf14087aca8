"""Helpers for the `rewardkit serve` tests: tiny models with spread-out rewards, real server processes.

The conftest models keep transformers' default initialisation (std 0.02), under which every text
gets nearly the same reward (spread ~1e-5): a 1e-4 equality check would pass even for a wrong
layout. These models use a wider initialisation so rewards differ by O(0.1-1) between texts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch

REPO = Path(__file__).resolve().parents[1]


def spread_bert(root: Path) -> Path:
    """A 2-layer BERT (MiniLM's WordPiece tokenizer) whose rewards vary visibly between texts."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rewardkit.model.artifacts import save_model
    from rewardkit.model.backbone import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1, initializer_range=0.2)
    torch.manual_seed(0)
    save_model(BertForSequenceClassification(cfg), tok, root, {"max_length": 64})
    return root


def spread_llama(root: Path, chat_template: str | None = None) -> Path:
    """A 2-layer Llama with the conftest BPE tokenizer (BOS <s>, EOS </s>), max length 96."""
    from conftest import _bpe_tokenizer
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rewardkit.model.artifacts import save_model
    from rewardkit.model.backbone import setup_pad_token

    tok = _bpe_tokenizer(chat_template)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256, num_labels=1,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(cfg)
    setup_pad_token(model, tok)
    save_model(model, tok, root, {"max_length": 96})
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m rewardkit serve MODEL_DIR ...` as a child process on a free loopback port."""

    def __init__(self, model_dir: Path, *args: str, key: str | None = None, log: Path | None = None,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = key
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        full_env.pop("REWARDKIT_API_KEY", None)
        if key:
            full_env["REWARDKIT_API_KEY"] = key
        self.log = log or Path(f"/tmp/rewardkit-serve-{self.port}.log")
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "rewardkit", "serve", str(model_dir), "--port",
                                      str(self.port), *args], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=str(REPO))
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.output()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def post(self, route: str, body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + route, json=body, headers=self.headers, timeout=60.0, **kwargs)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def spread_causal_llama(root: Path) -> Path:
    """A 2-layer causal Llama (the conftest BPE tokenizer) with a wide initialisation: a base for SFT and
    generative reward models whose log-odds differ visibly between texts."""
    from conftest import _bpe_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _bpe_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    return root
