#!/usr/bin/env bash
# `make gpu-check` on the device machine (one NVIDIA H200, no network): docs/gpu.md, "Running it on the device".
#
#   here, once:      bash scripts/gpu_device_run.sh prepare
#                    (the wheels of what the device's image lacks, into .whl/, which git ignores)
#   on the device:   the device tool's run with
#                      command:   bash scripts/gpu_device_run.sh device
#                      carry:     [".whl"]
#                      timeout_s: 330
#                    then copy the files it sends back (gpu.md, gpu.json, gpu-check.log) into docs/.
#
# hcsfs itself needs no wheel: every call sends the working tree, and the check runs from it, the very
# code under test. pyfuse3 and trio stay behind on purpose: the engine needs no FUSE. imagecodecs (26 MiB)
# only decodes compressed TIFF plates, which the check does not read: WITH_IMAGECODECS=1 adds it.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.whl
# hcsfs's dependencies that the device's image lacks (.library/device/KINDS.md lists what it has; numpy,
# scipy, scikit-image, tifffile, pillow, pyyaml, click, pytest, hypothesis, pytest-timeout, onnx,
# onnxruntime, pandas and pyarrow are there): roifile (ROI sets) and platformdirs (logconfig, the CLI).
NAMES="roifile platformdirs"
[ "${WITH_IMAGECODECS:-0}" = 1 ] && NAMES="$NAMES imagecodecs"

prepare() {
    local python=python3 pins=() name version
    [ -x .venv/bin/python ] && python=.venv/bin/python
    for name in $NAMES; do  # the versions tested here, when this checkout has its venv
        version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
        pins+=("$name${version:+==$version}")
    done
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qxF "/$WHEELS/" "$exclude" 2>/dev/null || echo "/$WHEELS/" >>"$exclude"
    rm -rf "$WHEELS"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "${pins[@]}"
    local count
    count=$(ls "$WHEELS"/*.whl | sed 's|.*/||; s|-.*||' | sort | uniq -d | wc -l)
    [ "$count" = 0 ] || { echo "two versions of one package in $WHEELS: the install would stop" >&2; exit 1; }
    # the device has no git: the report names the commit from this note
    echo "$(git rev-parse HEAD) ($(git status --porcelain | wc -l) files changed, prepared $(date -u +%F))" \
        >"$WHEELS/commit.txt"
    ls -l "$WHEELS"
    echo "wheels: $(du -cb "$WHEELS"/*.whl | tail -1 | cut -f1) bytes; the working tree that travels with" \
        "them: $(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes" \
        "(64 MiB at most in all)"
}

device() {
    local out=${OUT:-bench-out/gpu-device}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    nvidia-smi -L || true
    python3 -c "import sys, torch, jax, cupy; print(sys.version.split()[0], 'torch', torch.__version__, \
torch.cuda.is_available(), 'jax', jax.__version__, jax.devices(), 'cupy', cupy.__version__)" || true
    # GPU_CHECK_EXTRA: more options, e.g. "--skip-tests" for a rerun that only needs the measurements
    local args="--out $out --budget-s ${GPU_CHECK_BUDGET_S:-225} ${GPU_CHECK_EXTRA:-}"
    set +e -o pipefail
    if command -v make >/dev/null; then
        timeout "${GPU_CHECK_TIMEOUT_S:-300}" make gpu-check GPU_CHECK_ARGS="$args" 2>&1 | tee "$out/gpu-check.log"
    else
        # shellcheck disable=SC2086
        timeout "${GPU_CHECK_TIMEOUT_S:-300}" python3 -m benchmarks.gpu_check $args 2>&1 | tee "$out/gpu-check.log"
    fi
    local rc=$?
    echo "gpu-check exit status: $rc (report: $out/gpu.md, $out/gpu.json)"
    return "$rc"
}

case "${1:-}" in
    prepare) prepare ;;
    device) device ;;
    *) echo "usage: $0 prepare|device" >&2; exit 2 ;;
esac
