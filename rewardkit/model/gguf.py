"""GGUF checkpoints as backbones: ``--model FILE.gguf``.

transformers reads a GGUF file through the ``gguf`` package and dequantizes it (config, weights and
the tokenizer with its chat template), but a model loaded that way refuses ``save_pretrained``, so
every later step (training, LoRA, export, the card) would need its own special case. Instead the file
is converted once into a plain transformers directory (fp32 safetensors, config, tokenizer) and
everything downstream loads that directory like any other. The directory is cached under
``$REWARDKIT_CACHE/gguf/`` keyed by the file's path, size and modification time (a temporary folder
when the cache is off), so a second run starts without dequantizing again.

A model trained from it records the GGUF path as its base (``config._name_or_path``), so a LoRA
adapter can rebuild its base from the file wherever the cache lives.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from rewardkit.errors import UsageError

CONVERTED_MARK = "rewardkit-gguf-source.txt"  # written last: a directory without it is incomplete


def is_gguf(path: str | os.PathLike[str] | None) -> bool:
    return bool(path) and str(path).lower().endswith(".gguf")


def _key(path: Path) -> str:
    import transformers

    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|transformers {transformers.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _convert(path: Path, out: Path, flag: str) -> None:
    """Dequantize ``path`` into a plain directory ``out`` (config, fp32 safetensors, tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rewardkit.model.hf_logging import quiet_loading

    try:
        import gguf  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise UsageError(f"{flag}: reading a GGUF file needs the gguf package (pip install gguf)") from None
    folder, name = str(path.parent), path.name
    try:
        with quiet_loading():  # no per-tensor conversion bars
            config = AutoConfig.from_pretrained(folder, gguf_file=name)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config)
    except Exception as e:  # noqa: BLE001 - transformers raises many types for unreadable or unsupported files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{flag}: cannot read GGUF file {path}: {reason}") from None
    # a GGUF-loaded model refuses save_pretrained: copy its weights into a plain one of the same config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / CONVERTED_MARK).write_text(str(path.resolve()) + "\n")


def gguf_directory(path: str, flag: str = "--model") -> str:
    """A plain transformers directory holding the GGUF file ``path``, dequantized (converted once, cached).

    UsageError naming ``flag`` for a missing file or one transformers cannot read."""
    from rewardkit.data.file_cache import cache_dir

    src = Path(path).expanduser()
    if not src.is_file():
        raise UsageError(f"{flag}: no such file: {path}")
    root = cache_dir()
    if root is None:  # cache off: a folder for this process only
        tmp = Path(tempfile.mkdtemp(prefix="rewardkit-gguf-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _convert(src, tmp, flag)
        return str(tmp)
    target = root / "gguf" / _key(src)
    if (target / CONVERTED_MARK).is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        _convert(src, tmp, flag)
        try:
            os.replace(tmp, target) if not target.exists() else None
        except OSError:  # another process finished the same conversion first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not (target / CONVERTED_MARK).is_file():  # an incomplete leftover: replace it
        shutil.rmtree(target, ignore_errors=True)
        return gguf_directory(path, flag)
    return str(target)


def loadable(name: str, flag: str = "--model") -> str:
    """``name`` as transformers' ``from_pretrained`` takes it: a GGUF file becomes its converted directory."""
    return gguf_directory(name, flag) if is_gguf(name) else name


def source_of(directory: str | os.PathLike[str]) -> str | None:
    """The GGUF file a converted directory came from, or None for any other directory."""
    mark = Path(directory) / CONVERTED_MARK
    return mark.read_text().strip() if mark.is_file() else None
