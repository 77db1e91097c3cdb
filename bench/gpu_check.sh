#!/usr/bin/env bash
# GPU check in one script: bench/gpu_check.sh OUTDIR
#
# On a machine with a CUDA GPU, CuPy and lkr's build requirements already installed (no
# network needed), from the root of a checkout:
#   1. builds and installs lkr from the checkout into a throw-away virtual environment that
#      sees the system's packages (pip install --no-build-isolation --no-deps, no index);
#   2. runs the GPU tests with LKR_REQUIRE_GPU=1 (tests/engines/test_gpu.py, the deep-CNN
#      kernel's CUDA path in tests/kernels/test_deep_kernel.py, then every test marked `gpu`
#      elsewhere), so that a missing device or CuPy fails instead of skipping;
#   3. runs `python -m bench --suite gpu` (with the deep CNN-GP kernel on CuPy against
#      the C++ path) and bench/gpu_theory.py (theory fits, Gram and spectra on CuPy arrays
#      against NumPy);
# and writes every log, the JUnit XML and the bench JSON to OUTDIR. Each step has its own
# timeout and the whole run stays within GPU_CHECK_BUDGET seconds (default 470, i.e. under
# 8 minutes); a step that fails or times out does not stop the later ones. The summary
# (OUTDIR/summary.txt) lists every step's exit status and time. Exit status: 0 when the
# install and the three GPU test steps passed, 1 otherwise, 2 on bad usage.
#
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET (seconds), GPU_CHECK_QUICK=1
# (bench --quick sizes).
set -uo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: bench/gpu_check.sh OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

python=${PYTHON:-python3}
budget=${GPU_CHECK_BUDGET:-470}
quick=()
if [[ "${GPU_CHECK_QUICK:-0}" != "0" ]]; then
  quick=(--quick)
fi
start=$SECONDS
summary="$out/summary.txt"
: > "$summary"
declare -A status=()

# step NAME LIMIT_S LOG -- COMMAND...: run with a timeout capped by what is left of the
# budget; record its exit status (124: timed out) and time.
step() {
  local name=$1 limit=$2 log=$3
  shift 4
  local left=$((budget - (SECONDS - start)))
  if ((left < 10)); then
    echo "$name: skipped, budget spent" | tee -a "$summary"
    status[$name]=skipped
    return 0
  fi
  ((limit > left)) && limit=$left
  echo "== $name (timeout ${limit}s): $*" | tee -a "$summary"
  local t0=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 || rc=$?
  local dt=$((SECONDS - t0))
  local what=ok
  if ((rc == 124 || rc == 137)); then
    what="TIMED OUT"
  elif ((rc != 0)); then
    what="FAILED"
  fi
  echo "   $name: $what (exit $rc, ${dt}s, log $(basename "$log"))" | tee -a "$summary"
  tail -n 3 "$log" | sed 's/^/   | /' | tee -a "$summary"
  status[$name]=$rc
  return 0
}

{
  echo "lkr GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), checkout $root"
  git -C "$root" rev-parse HEAD 2>/dev/null || echo "(not a git checkout)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  else
    echo "nvidia-smi not found"
  fi
  "$python" -c 'import sys, numpy; print("python", sys.version.split()[0], "numpy", numpy.__version__)' 2>&1
  "$python" -c 'import cupy; print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())' 2>&1 || true
} >"$out/environment.txt"
tee -a "$summary" <"$out/environment.txt"

# 1. install (the venv sees the system's numpy, scipy, cupy, scikit-build-core, pybind11)
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
# no pip of its own (ensurepip is slow): the system pip installs into the venv
"$python" -m venv --system-site-packages --without-pip "$venv"
vpy="$venv/bin/python"
step install 240 "$out/install.log" -- \
  env PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$vpy" -m pip install --no-build-isolation --no-deps -v .

# 2. GPU tests, run against the installed package (the checkout has no top-level lkr/)
step gpu-tests 150 "$out/test_gpu.log" -- \
  env LKR_REQUIRE_GPU=1 "$vpy" -m pytest -p no:cacheprovider -q -rs \
  --junitxml="$out/test_gpu.xml" tests/engines/test_gpu.py
step gpu-deep-tests 90 "$out/test_gpu_deep.log" -- \
  env LKR_REQUIRE_GPU=1 "$vpy" -m pytest -p no:cacheprovider -q -rs -m gpu \
  --junitxml="$out/test_gpu_deep.xml" tests/kernels/test_deep_kernel.py
step gpu-marked-tests 90 "$out/test_gpu_marked.log" -- \
  env LKR_REQUIRE_GPU=1 "$vpy" -m pytest -p no:cacheprovider -q -rs -m gpu \
  --ignore=tests/engines/test_gpu.py --ignore=tests/kernels/test_deep_kernel.py \
  --junitxml="$out/test_gpu_marked.xml" tests

# 3. benchmarks
step bench-gpu 150 "$out/bench_gpu.log" -- \
  "$vpy" -m bench --suite gpu "${quick[@]}" --out "$out/bench_gpu.json"
step bench-theory-cupy 60 "$out/bench_theory_cupy.log" -- \
  "$vpy" -m bench.gpu_theory "${quick[@]}" --out "$out/bench_theory_cupy.json"

echo "== done in $((SECONDS - start))s; results in $out" | tee -a "$summary"
rc=0
for name in install gpu-tests gpu-deep-tests gpu-marked-tests; do
  st=${status[$name]:-missing}
  # pytest's 5 (no test collected) is not a failure for the marker selection
  if [[ "$st" != "0" && ! ("$name" == gpu-marked-tests && "$st" == "5") ]]; then
    echo "FAILED: $name ($st)" | tee -a "$summary"
    rc=1
  fi
done
exit "$rc"
