#!/usr/bin/env bash
# Issue 14's checks on a lent GPU, in one run that fits the device window (about 9 minutes
# after start-up). Run from the repository root on the device machine, whose image has JAX,
# Diffrax, Equinox, Optax, SciPy and Matplotlib but neither Jaxley nor NEURON:
#
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                    --implementation cp --platform manylinux2014_x86_64 -d .whl jaxley==0.14.0 tridiax
#   the device:  run(command="bash scripts/device_check.sh", carry=[".whl"], timeout_s=600)
#
# NEURON's spike times come from scripts/benchmark/neuron_reference.json (recorded here).
# Writes under $OUT (or /tmp/device_check): gpu_vs_cpu.json, tests.txt, gpu.{json,md}, big.{json,md}.
# Each step has its own time limit, so a slow step cannot take the others' time.
# SIZES, BIG and TEST_LIMIT shrink it for a dry run on a CPU.
set -uo pipefail
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HH_JAX_CACHE=$OUT/xla_cache
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tail -1

# 1. The same traces on the device as on the CPU (float64, 64 varied neurons, V every 0.025 ms).
timeout 120 python3 - "$OUT" <<'PY' 2>&1 | tail -3
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np
import hh_jax as hh
rng = np.random.default_rng(1)
gNa, gK = rng.uniform(80, 160, 64), rng.uniform(25, 45, 64)  # numpy: placed where each solve runs
def solve():
    membrane, step = hh.presets.neuron(gNa=gNa, gK=gK), hh.Step(start=1.0, stop=41.0, amplitude=9.0)
    tr = hh.simulate(membrane, step, t1=50.0, ts=jnp.linspace(0.0, 50.0, 2001), save="V")
    return np.asarray(tr.V), np.asarray(hh.simulate_spikes(membrane, step, t1=50.0, max_spikes=16).times)
device = solve()
with jax.default_device(jax.devices("cpu")[0]):
    cpu = solve()
result = dict(device=str(jax.devices()[0]), max_abs_dV_mV=float(np.max(np.abs(device[0] - cpu[0]))),
              max_abs_dspike_ms=float(np.nanmax(np.abs(device[1] - cpu[1]))),
              same_spike_pattern=bool(np.array_equal(np.isnan(device[1]), np.isnan(cpu[1]))))
json.dump(result, open(f"{sys.argv[1]}/gpu_vs_cpu.json", "w"), indent=1)
print("device against CPU:", result)
PY

# 2. The core tests on the device (NEURON's and eFEL's skip where those are absent).
timeout "${TEST_LIMIT:-150}" python3 -m pytest -q -x -p no:cacheprovider -o addopts="" \
    tests/test_solve.py tests/test_solve_batches.py tests/test_unrolled_tsit5.py tests/test_gradients.py \
    > "$OUT/tests.txt" 2>&1
echo "tests: $(tail -1 "$OUT/tests.txt")"

# 3. The benchmark: N = 10^6 (and 10^5), float32, three outputs, identical and varied neurons.
timeout 270 python3 scripts/benchmark.py --gpu --sizes ${SIZES:-100000 1000000} --dtypes float32 \
    --tools hh_jax jaxley:crank_nicolson --populations identical varied --repeats 5 --out "$OUT" \
    > "$OUT/gpu.log" 2>&1
echo "benchmark: $(tail -1 "$OUT/gpu.log")"

# 4. 10^7 neurons x 50 ms in chunks, spikes only, hh_jax alone (Jaxley holds V whole).
mkdir -p "$OUT/big"
timeout 120 python3 scripts/benchmark.py --gpu --sizes ${BIG:-10000000} --dtypes float32 --tools hh_jax \
    --outputs spikes --populations varied --repeats 2 --chunk-size 2000000 --out "$OUT/big" > "$OUT/big.log" 2>&1
echo "10^7: $(tail -1 "$OUT/big.log")"
[ -f "$OUT/gpu.md" ] && cut -d'|' -f2,4-8,11,12,16,17 "$OUT/gpu.md" | tail -n +4
