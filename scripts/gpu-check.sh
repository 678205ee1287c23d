#!/usr/bin/env bash
# The prepared GPU check (issue 22): one command, ≤ 8 minutes on one GPU. It runs
#   1. bench attacks --quick (ours vs torchattacks 3.5.1: PGD-40, FGSM, C&W, AutoAttack),
#   2. one epoch of PGD adversarial training, judged (`adversarial defend --epochs 1`),
#   3. a quick experiment (free-at),
# with --device cuda; 2 and 3 again with --device cpu for the CPU→GPU speed-up; writes
# their JSON plus timings.json into $OUT (the device tool's output folder) or gpu-check/.
#
# The GPU machine has torch and nothing else, and cannot download: run
#   scripts/gpu-check.sh prepare
# here first. It fills gpu-bundle/ with the one dependency these three commands import that
# the GPU image lacks (torchattacks, pure Python; the image has numpy, scipy, numba, rich,
# typer — its own versions are kept: ours could need packages it lacks, e.g. a newer
# typer needs pydantic) and the Fashion-MNIST IDX files;
# carry gpu-bundle to the machine (the device tool's `carry`), then run
#   scripts/gpu-check.sh            (GPU_CHECK_DEVICE=cpu runs the same here, as a dry run)
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=gpu-bundle
PY=${PYTHON:-python3}

if [[ "${1:-}" == "prepare" ]]; then
    mkdir -p "$BUNDLE/wheels" "$BUNDLE/fashion-mnist"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$BUNDLE/wheels" \
        'torchattacks==3.5.1'
    cp /usr/share/datasets/fashion-mnist/*.gz "$BUNDLE/fashion-mnist/"
    du -sh "$BUNDLE"
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
OUT_DIR=${OUT:-gpu-check}
mkdir -p "$OUT_DIR"
if [[ -d "$BUNDLE/wheels" ]]; then
    "$PY" -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" --no-deps \
        "$BUNDLE"/wheels/*.whl 2>/dev/null || true
fi
FASHION=/usr/share/datasets/fashion-mnist
if [[ ! -d "$FASHION" && -d "$BUNDLE/fashion-mnist" ]]; then  # where nets.data looks
    mkdir -p "$FASHION" 2>/dev/null && cp "$BUNDLE"/fashion-mnist/*.gz "$FASHION/" \
        || export CRYPTOROBUST_DATA="$PWD/$BUNDLE/fashion-mnist"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY' > "$OUT_DIR/device.json"
import json, platform, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "python": platform.python_version()}))
PY

timed() {  # timed NAME DEVICE CMD...: run, record wall seconds in timings.jsonl
    local name=$1 dev=$2; shift 2
    local t0; t0=$(date +%s.%N)
    if timeout 300 "$@" > "$OUT_DIR/$name-$dev.log" 2>&1; then rc=0; else rc=$?; fi
    local t1; t1=$(date +%s.%N)
    "$PY" -c "import json,sys; print(json.dumps({'check': sys.argv[1], 'device': sys.argv[2],
        'rc': int(sys.argv[3]), 'seconds': float(sys.argv[5]) - float(sys.argv[4])}))" \
        "$name" "$dev" "$rc" "$t0" "$t1" >> "$OUT_DIR/timings.jsonl"
}

# ours vs torchattacks: both on the GPU, the ratio comes from one run
timed bench-attacks "$DEVICE" "$PY" -m bench attacks --quick --data fashion-mnist \
    --model cnn --epochs 1 --aa-eps 0.05 --device "$DEVICE" --json "$OUT_DIR/attacks-$DEVICE.json"
DEVICES=("$DEVICE")
if [[ "$DEVICE" != cpu ]]; then DEVICES+=(cpu); fi  # the same on the CPU: the speed-up
for dev in "${DEVICES[@]}"; do
    timed pgd-at-epoch "$dev" "$PY" -m adversarial defend --method pgd-at --model cnn \
        --data fashion-mnist --epochs 1 --eps 0.1 --eval-n 200 --device "$dev" \
        --json "$OUT_DIR/pgd-at-$dev.json"
    timed free-at-quick "$dev" "$PY" -m experiments run free-at --quick --device "$dev" \
        --out "$OUT_DIR/free-at-$dev"
done
cat "$OUT_DIR/timings.jsonl"
