"""Which precision `auto` picks, and runs that never inherit another run's precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import pairs_records, write_jsonl

from rewardkit import TrainConfig, train
from rewardkit.model import precision as P
from rewardkit.errors import UsageError


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    """Set the CPU's capability flags; no forcing variable."""
    monkeypatch.delenv(P.FORCE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def set_flags(avx512_bf16: bool, amx: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    return set_flags


def test_auto_is_fp32_without_avx512_bf16_or_amx(cpu_flags) -> None:
    # Cascade Lake: mkldnn says "bf16 supported" (it can emulate), the CPU has no native bf16
    cpu_flags(avx512_bf16=False)
    p = P.resolve_precision("auto")
    assert (p.name, p.mixed_precision, p.emulated) == ("fp32", "no", False)
    assert "no native bf16" in p.describe() and p.describe().startswith("precision: fp32")


def test_auto_is_bf16_with_native_units(cpu_flags) -> None:
    for flags in ({"avx512_bf16": True}, {"avx512_bf16": False, "amx": True}):
        cpu_flags(**flags)
        p = P.resolve_precision("auto")
        assert (p.name, p.mixed_precision) == ("bf16", "bf16")
    assert "AMX" in p.reason


def test_auto_reads_the_flags_and_never_times_anything(cpu_flags, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same machine resolves the same precision every time: no matmul is timed (a timing on a shared
    machine once flipped the same command between bf16 and fp32)."""
    cpu_flags(avx512_bf16=True)

    def no_matmul(*_a, **_k):  # a probe would multiply matrices
        raise AssertionError("auto precision must not run a timing probe")

    monkeypatch.setattr(torch, "matmul", no_matmul)
    monkeypatch.setattr(torch.Tensor, "__matmul__", no_matmul)
    answers = {P.resolve_precision("auto").reason for _ in range(5)}
    assert answers == {"this CPU has AVX512_BF16"}
    assert not hasattr(P, "cpu_bf16_probe")


def test_bf16_asked_for_without_native_support_runs_emulated_with_a_warning(cpu_flags) -> None:
    cpu_flags(avx512_bf16=False)
    p = P.resolve_precision("bf16")
    assert p.name == "bf16" and p.emulated and "emulated" in p.reason
    assert P.resolve_precision("fp32").name == "fp32"
    with pytest.raises(UsageError, match="--precision"):
        P.resolve_precision("fp16")


def test_cuda_follows_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P.FORCE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert P.resolve_precision("auto", "cuda").name == "fp32"
    with pytest.raises(UsageError, match="no bf16 support"):
        P.resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert P.resolve_precision("auto", "cuda").name == "bf16"


def test_the_forcing_variable_wins(monkeypatch: pytest.MonkeyPatch, cpu_flags) -> None:
    cpu_flags(avx512_bf16=False)
    monkeypatch.setenv(P.FORCE_ENV, "1")
    assert P.resolve_precision("auto").name == "bf16" and P.resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setenv(P.FORCE_ENV, "0")
    assert P.resolve_precision("auto").name == "fp32" and P.resolve_dtype("auto") == torch.float32


def test_inference_dtype_auto_follows_the_same_rule(cpu_flags) -> None:
    cpu_flags(avx512_bf16=False)
    assert P.resolve_dtype("auto") == torch.float32
    assert P.resolve_dtype("bf16") == torch.bfloat16 and P.resolve_dtype(None) is None
    cpu_flags(avx512_bf16=True)
    assert P.resolve_dtype("auto") == torch.bfloat16
    with pytest.raises(UsageError, match="dtype"):
        P.resolve_dtype("int8")


def _cfg(model_dir: Path, data: Path, out: Path, precision: str) -> TrainConfig:
    return TrainConfig(model=str(model_dir), train_data=str(data), output_dir=str(out), max_length=48,
                       batch_size=4, epochs=1, eval_split=0.25, precision=precision, logging_steps=1)


@pytest.mark.parametrize("native", ["1", "0"])
def test_training_path_with_the_capability_check_forced(native: str, bert_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's training path under `auto`, with the bf16 check forced each way, twice in one process."""
    monkeypatch.setenv(P.FORCE_ENV, native)
    expected = "bf16" if native == "1" else "fp32"
    data = write_jsonl(tmp_path / "d.jsonl", pairs_records(16))
    messages: list[str] = []
    result = train(_cfg(bert_dir, data, tmp_path / "auto", "auto"), log=messages.append)
    assert result.eval_metrics["pairs"] == 4
    said = [m for m in messages if m.startswith("speed:")]  # every speed setting in one line, once
    assert len(said) == 1 and said[0].startswith(f"speed: {expected}")
    assert not [m for m in messages if m.startswith("precision:")]
    summary = json.loads((tmp_path / "auto" / "eval.json").read_text())
    assert summary["precision"] == expected and P.FORCE_ENV in summary["precision_reason"]
    saved = yaml.safe_load((tmp_path / "auto" / "train_config.yaml").read_text())
    assert saved["precision"] == expected
    # then the other precision in the same process
    other = "fp32" if expected == "bf16" else "bf16"
    train(_cfg(bert_dir, data, tmp_path / "other", other), log=lambda _m: None)
    assert json.loads((tmp_path / "other" / "eval.json").read_text())["precision"] == other


def test_two_runs_with_different_precisions_in_one_process(bert_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook or a sweep: bf16, fp32, bf16 again; then the caller's own Accelerator still works."""
    monkeypatch.setenv(P.FORCE_ENV, "0")  # bf16 asked for on a CPU "without" it: emulated, with a warning
    data = write_jsonl(tmp_path / "d.jsonl", pairs_records(16))
    messages: list[str] = []
    for i, precision in enumerate(["bf16", "fp32", "bf16"]):
        train(_cfg(bert_dir, data, tmp_path / f"run{i}", precision), log=messages.append)
        assert json.loads((tmp_path / f"run{i}" / "eval.json").read_text())["precision"] == precision
    warnings = [m for m in messages if m.startswith("warning:") and "emulated" in m]
    assert len(warnings) == 2
    from accelerate import Accelerator

    assert Accelerator(mixed_precision="no").mixed_precision == "no"


def test_scoring_bf16_without_native_support_warns(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardkit import RewardModel

    monkeypatch.setenv(P.FORCE_ENV, "0")
    with pytest.warns(UserWarning, match="emulated"):
        rm = RewardModel.from_pretrained(bert_dir, device="cpu", dtype="bf16")
    assert isinstance(rm.score("a question", "an answer"), float)
    monkeypatch.setenv(P.FORCE_ENV, "1")
    assert RewardModel.from_pretrained(bert_dir, device="cpu", dtype="auto").dtype == torch.bfloat16


@pytest.mark.parametrize("native", ["1", "0"])
def test_the_same_command_twice_writes_identical_metrics(native: str, bert_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` on bf16 hardware and on fp32 hardware alike: two runs of one command resolve the same precision
    and write bit-identical metrics.jsonl."""
    monkeypatch.setenv(P.FORCE_ENV, native)
    data = write_jsonl(tmp_path / "d.jsonl", pairs_records(16))
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        train(_cfg(bert_dir, data, out, "auto"), log=lambda _m: None)
    assert (runs[0] / "metrics.jsonl").read_bytes() == (runs[1] / "metrics.jsonl").read_bytes()
    assert {json.loads((r / "eval.json").read_text())["precision"] for r in runs} == {"bf16" if native == "1" else "fp32"}
