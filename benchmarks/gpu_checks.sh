#!/usr/bin/env bash
# The CUDA checks in one run: bf16 + channels-last training, the CUDA tests, a training step
# against Hugging Face's (and timm's), and the GPU forward matrix. Written for the device
# tool's nvidia-h200 image (python3 with torch, transformers, timm and scikit-learn, but no
# pydantic). No GPU has been lent to the sessions that wrote it, so it has not run on one yet;
# on a machine without CUDA it stops at once with status 3.
#
# Once per session, here in the repository root, fetch the wheels the image lacks:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 typing-extensions==4.16.0
# then run `bash benchmarks/gpu_checks.sh` there with `.whl` carried (about 8 minutes).
# Everything printed also goes to $OUT/gpu-checks.log; the bf16 run's metrics and result
# come back beside it.
set -uo pipefail
py=${PYTHON:-python3}
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 2
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
"$py" - <<'EOF' || exit 3
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_checks: CUDA is not available (torch {torch.__version__}); nothing to check")
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
EOF

status=0
step() {
  echo "== $*" | tee -a "$out/gpu-checks.log"
  "$@" 2>&1 | tee -a "$out/gpu-checks.log"
  local s=${PIPESTATUS[0]}
  if [ "$s" != 0 ]; then
    echo "== failed with status $s: $*" | tee -a "$out/gpu-checks.log"
    status=1
  fi
}

# 1. A real run on CUDA with bf16 autocast and channels-last: the digits recipe as shipped
#    plus those two fields; its final error is in result.json.
run=/tmp/gpu-run-bf16
rm -rf "$run"
{ cat recipes/digits.yaml; echo "precision: bf16"; echo "channels_last: true"; } \
  >"$out/digits-bf16.yaml"
step "$py" -m regnet_space train specs/y002.yaml --recipe "$out/digits-bf16.yaml" \
  -o "$run" --device cuda --json
cp "$run/metrics.jsonl" "$run/result.json" "$out/" 2>/dev/null

# 2. The tests that use CUDA where it is present.
step "$py" -m pytest -q -p no:cacheprovider tests/study/test_train.py

# 3. One training step, ours against Hugging Face's (and timm's), bf16 and channels-last.
step "$py" benchmarks/bench_train.py --device cuda --channels-last --bf16 \
  --spec specs/y040.yaml --batch 64 --input-size 224 --rounds 7

# 4. The forward matrix on the GPU: HF eager fp32 against our inference form in
#    channels-last fp32, bf16, fp16 and compiled; float32 outputs checked against HF's.
step "$py" benchmarks/bench_forward.py --gpu-only --rounds 5 --check

exit "$status"
