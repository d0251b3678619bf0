#!/bin/bash
# The GPU checks of icc-bench, as one prepared run for a lent device machine (issue 13: batched
# training >= 10x on the GPU, the projected GPU-hours of the paper's populations, the GPU path end
# to end). Each step has a time limit, 510 s in all, so the call ends inside its 600 s; everything
# it prints is also written under $OUT.
#
# The device image has torch but not pydantic. Before the call, here, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
#   (2.7 MB; the versions of this project's venv, checked to download on 2026-11-30)
# then: run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=600).
# Read $OUT/*.log; put the ratios in BENCHMARKS.md's notes with the device and torch version.
set -o pipefail
OUT=${OUT:-/tmp/icc_device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! python3 -c "import pydantic" 2>/dev/null; then
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site
    else
        echo "pydantic is missing on this machine and no .whl folder was carried: see the top of bench/device_check.sh"; exit 2
    fi
fi
export PYTHONPATH="$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/device.log"

step() {  # step NAME SECONDS COMMAND...: one check, its log in $OUT/NAME.log, never longer than SECONDS
    local name=$1 limit=$2; shift 2
    echo "== $name: $*" | tee -a "$OUT/summary.log"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$OUT/summary.log"
}

# 1. The tests that look at CUDA (the augmentation kernel, the auto grouping, device errors).
step tests 60 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_data.py tests/test_train_batched.py -k "cuda or auto"
# 2. Batched against one at a time on the GPU: 16 configurations of quick and of mini, 3 epochs.
step population_training 120 python3 bench/population_training.py --device cuda --members 16
# 3. The paper's three populations: seconds per step alone and per group of 16, projected hours.
step paper_gpu_hours 210 python3 bench/paper_gpu_hours.py --device cuda --members 16 --steps 5
# 4. The GPU path end to end: quick trained (auto groups) and measured on CUDA, intraclass and 1/sigma'.
step evaluate_quick 120 python3 -m icc_bench.cli evaluate quick --device cuda --runs-dir /tmp/icc_runs --measures 'c*,inv_sigma_prime' --out "$OUT/quick_cuda"
cat "$OUT/summary.log"
