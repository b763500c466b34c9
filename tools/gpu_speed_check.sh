#!/usr/bin/env bash
# One short GPU check for issue 4 (fast paths + speed benchmark), for a lent H100/H200 with torch already
# installed and no network. CI never has a GPU; this is run by hand. Budget: under ~8 minutes.
#
#   bash tools/gpu_speed_check.sh            # logs to $OUT (or ./gpu_speed_out when OUT is unset)
#
# 1. environment: nvidia-smi, torch/CUDA versions, the Python packages the tests import
#    (missing ones are installed offline from $WHEELS, default .whl/, when that folder exists; never online)
# 2. python -m pytest -q tests/test_fast.py tests/test_adapt.py --device cuda      (<= 240 s)
# 3. python -m meta_core bench-speed --device cuda --variants --json ...           (<= 300 s)
# Each step's output goes to its own log in $OUT; summary.txt has every exit status. A failing step does
# not stop the next one.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_speed_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
summary="$OUT/summary.txt"
: > "$summary"
started=$(date +%s)

note() { echo "$*" | tee -a "$summary"; }

echo "== environment" | tee "$OUT/env.log"
{ nvidia-smi || true; } >> "$OUT/env.log" 2>&1
"$PY" - >> "$OUT/env.log" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available(),
      "device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  note "FAIL: torch with CUDA is not available on this machine (see $OUT/env.log)"
  exit 1
fi
missing=$("$PY" - <<'EOF'
import importlib.util
names = {"safetensors": "safetensors", "numpy": "numpy", "PIL": "pillow", "pytest": "pytest"}
print(" ".join(pkg for mod, pkg in names.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$missing" ]; then
  if [ -d "$WHEELS" ]; then
    note "installing offline from $WHEELS: $missing"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" $missing >> "$OUT/env.log" 2>&1 \
      || note "FAIL: offline install of $missing (see $OUT/env.log)"
  else
    note "FAIL: missing Python packages: $missing (carry wheels in $WHEELS/ to install them offline)"
    exit 1
  fi
fi
cat "$OUT/env.log"

echo "== tests on CUDA"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_fast.py tests/test_adapt.py --device cuda \
  > "$OUT/pytest_cuda.log" 2>&1
rc=$?
tail -n 25 "$OUT/pytest_cuda.log"
note "pytest tests/test_fast.py tests/test_adapt.py --device cuda: exit $rc"

echo "== speed benchmark on CUDA"
timeout 300 "$PY" -m meta_core bench-speed --device cuda --variants --json "$OUT/bench_speed_cuda.json" \
  > "$OUT/bench_speed_cuda.txt" 2> "$OUT/bench_speed_cuda.progress.log"
rc=$?
cat "$OUT/bench_speed_cuda.txt"
[ $rc -ne 0 ] && tail -n 30 "$OUT/bench_speed_cuda.progress.log"
note "bench-speed --device cuda: exit $rc"
note "total $(( $(date +%s) - started )) s"
