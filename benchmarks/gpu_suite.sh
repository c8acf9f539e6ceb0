#!/usr/bin/env bash
# The GPU benchmarks of BENCHMARKS.md, in parts that each fit a 10-minute slot on one GPU machine.
#
#   benchmarks/gpu_suite.sh OUT PART [METHOD ...]
#
# PART: throughput  throughput.py for BYOL ResNet-18 at 32 px / batch 512, eager
#       throughput-more  the same with host placement, without channels_last and with
#                   torch.compile, and ResNet-50 with the ImageNet stem at 64 px / batch 256
#       lightly     compare_lightly.py --epochs 15 (needs lightly 1.6.0: a wheel in carry/whl)
#       table       fashion_protocol.py for METHOD ... (default all 12) at $EPOCHS epochs (default 15);
#                   STOP_AFTER=N stops each run after N epochs, and the same call made again while the
#                   machine is still warm (its /tmp kept) continues it
# Fashion-MNIST is read from carry/fashion-mnist/*.gz when there (SELFSUP_DATA=carry), else from the
# usual places. Every step's output goes to OUT/log.txt; results to OUT/*.jsonl. A failing step is
# logged and the next one runs.
set -u -o pipefail
OUT=${1:?usage: gpu_suite.sh OUT PART [METHOD ...]}
PART=${2:?usage: gpu_suite.sh OUT PART [METHOD ...]}
shift 2
# shellcheck source=benchmarks/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"

case "$PART" in
  throughput)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$LOG"
    T="$ROOT/benchmarks/throughput.py"
    step 150 $PY "$T" byol-fashion-mnist --steps 200 --json | grep '^{' >>"$OUT/throughput.jsonl"
    ;;
  throughput-more)
    T="$ROOT/benchmarks/throughput.py"
    step 150 $PY "$T" byol-fashion-mnist --steps 200 --set data.placement=host --json | grep '^{' >>"$OUT/throughput.jsonl"
    # BatchNorm was 27% of the kernel time in channels_last (the H100 profile of BENCHMARKS.md)
    step 150 $PY "$T" byol-fashion-mnist --steps 200 --set train.channels_last=false --json | grep '^{' >>"$OUT/throughput.jsonl"
    step 150 $PY "$T" byol-fashion-mnist --steps 60 --batch-size 256 --set model.backbone=resnet50 \
      --set model.stem=imagenet --set augment.size=64 --json | grep '^{' >>"$OUT/throughput.jsonl"
    step 240 $PY "$T" byol-fashion-mnist --steps 200 --set train.compile=true --json | grep '^{' >>"$OUT/throughput.jsonl"
    ;;
  lightly)
    install_carried_wheels
    step 420 $PY "$ROOT/benchmarks/compare_lightly.py" --epochs 15 --workers 16 | tee "$OUT/compare_lightly.json"
    ;;
  table)
    # TABLE_DEADLINE: seconds this part may take (a method is not started when it would overrun)
    step $(( ${TABLE_DEADLINE:-560} + 30 )) $PY "$ROOT/benchmarks/fashion_protocol.py" "$@" --epochs "${EPOCHS:-15}" --stop-after "${STOP_AFTER:-0}" --out /tmp/fmnist-protocol \
      --deadline "${TABLE_DEADLINE:-560}"
    cp /tmp/fmnist-protocol/results.jsonl "$OUT/protocol.jsonl" 2>/dev/null
    ;;
  *) echo "unknown part $PART (throughput, throughput-more, lightly, table)"; exit 2 ;;
esac
