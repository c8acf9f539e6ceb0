#!/usr/bin/env bash
# One session's GPU work for the captured step (train.cuda_graph), in two calls of under 10 minutes.
#
#   benchmarks/gpu_check.sh OUT check      # call 1 (about 8 minutes on an H100-class GPU)
#   benchmarks/gpu_check.sh OUT tta EPOCHS # call 2: time to accuracy, EPOCHS chosen from call 1
#   DRY=1 benchmarks/gpu_check.sh OUT check  # the same steps on the CPU at toy sizes (no GPU lent)
#
# check: tests/test_cuda.py; throughput.py for BYOL ResNet-18 at 32 px / batch 512 eager, compiled
#        and captured, each against its own compute-only ceiling; compare_lightly.py for 10 epochs
#        with the captured step (lightly 1.6.0 from carry/whl); the photo store against
#        device-resident data (benchmarks/photo_folder.py) when it is there.
# tta:   BYOL on Fashion-MNIST (byol-fashion-mnist, the protocol of BENCHMARKS.md) with the captured
#        step for EPOCHS epochs, kNN at the end; EPOCHS = what 5 minutes of training hold at the
#        end-to-end rate measured by call 1 (images/s x 300 / 60,000).
#
# Prepare carry/ (ignored by git) before the first call and name it in the run's carry list:
#   carry/fashion-mnist/*.gz  from the dataset-fashion-mnist Debian package
#   carry/whl/lightly-1.6.0-*.whl  (pip download --no-deps lightly==1.6.0), plus its pure-Python
#   dependencies that the device lacks.
# Every step's output goes to OUT/log.txt, results to OUT/*.json(l); a failing step is logged and
# the next one runs. Figures go to BENCHMARKS.md with this command and the commit.
set -u -o pipefail
OUT=${1:?usage: gpu_check.sh OUT check|tta [EPOCHS]}
PART=${2:?usage: gpu_check.sh OUT check|tta [EPOCHS]}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$ROOT/carry/fashion-mnist" ] && export SELFSUP_DATA="$ROOT/carry"
PY=${PYTHON:-python3}
LOG="$OUT/log.txt"
cd "$ROOT"

step() {  # step SECONDS COMMAND...: run with a time limit, log it, carry on when it fails
  local limit=$1; shift
  echo "### $(date -u +%T) $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=$?
  [ $rc -eq 0 ] || echo "### exit $rc: $*" | tee -a "$LOG"
}

if [ "${DRY:-0}" = 1 ]; then  # toy sizes on the CPU: every command runs, no figure means anything
  RECIPE=byol-digits; STEPS=3; WARM=1; DEV="--device cpu"; export SELFSUP_TEST_DEVICE=cpu
  TESTS=(tests/test_cuda.py -k "(captured and byol) or lars")
else
  RECIPE=byol-fashion-mnist; STEPS=200; WARM=10; DEV=""
  TESTS=(tests/test_cuda.py)
fi

case "$PART" in
  check)
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true; } | tee -a "$LOG"
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$LOG"
    git -C "$ROOT" rev-parse HEAD 2>/dev/null | tee -a "$LOG"
    step 180 $PY -m pytest -q -p no:cacheprovider "${TESTS[@]}"
    T=benchmarks.throughput
    for mode in "" "--set train.compile=true" "--set train.cuda_graph=true"; do
      # shellcheck disable=SC2086
      step 150 $PY -m $T $RECIPE --steps $STEPS --warmup $WARM $DEV $mode --json | grep '^{' >>"$OUT/throughput.jsonl"
    done
    if ls "$ROOT"/carry/whl/*.whl >/dev/null 2>&1; then
      $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$ROOT"/carry/whl/*.whl
      export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
    if [ "${DRY:-0}" = 1 ]; then
      echo "### dry run: compare_lightly needs CUDA and lightly; skipped" | tee -a "$LOG"
    else
      step 330 $PY -m benchmarks.compare_lightly --epochs 10 --workers 16 --set train.cuda_graph=true \
        | tee "$OUT/compare_lightly.json"
    fi
    if [ -f "$ROOT/benchmarks/photo_folder.py" ]; then
      N=$([ "${DRY:-0}" = 1 ] && echo 200 || echo 20000)
      step 120 $PY -m benchmarks.photo_folder --n "$N" --quiet | tee "$OUT/photo_folder.txt"
    fi
    ;;
  tta)
    EPOCHS=${3:?usage: gpu_check.sh OUT tta EPOCHS}
    [ "${DRY:-0}" = 1 ] && SETS=(--set data.subset=512) || SETS=()
    step 560 $PY -m selfsup train $RECIPE --epochs "$EPOCHS" --set train.cuda_graph=true "${SETS[@]}" \
      --set train.knn_every=0 $DEV --out /tmp/tta-run
    cp /tmp/tta-run/summary.json "$OUT/tta_summary.json" 2>/dev/null
    grep '"event": "epoch"' /tmp/tta-run/metrics.jsonl >"$OUT/tta_epochs.jsonl" 2>/dev/null
    ;;
  *) echo "unknown part $PART (check, tta)"; exit 2 ;;
esac
