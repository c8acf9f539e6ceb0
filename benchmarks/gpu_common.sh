# Sourced by the GPU scripts (gpu_check.sh, gpu_suite.sh) after OUT is set: the environment they
# share and `step`, which runs one command under a time limit, logs it to OUT/log.txt and lets the
# script carry on when it fails. Fashion-MNIST is read from carry/fashion-mnist/*.gz when there.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
[ -d "$ROOT/carry/fashion-mnist" ] && export SELFSUP_DATA="$ROOT/carry"
PY=${PYTHON:-python3}
LOG="$OUT/log.txt"

step() {  # step SECONDS COMMAND...: run with a time limit, log it; returns the command's status
  local limit=$1; shift
  echo "### $(date -u +%T) $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=$?
  [ $rc -eq 0 ] || echo "### exit $rc: $*" | tee -a "$LOG"
  return $rc
}

install_carried_wheels() {  # the wheels in carry/whl (lightly 1.6.0), without their dependencies
  if ls "$ROOT"/carry/whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$ROOT"/carry/whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
}
