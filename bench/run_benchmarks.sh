#!/usr/bin/env bash
# Basis against its peers, in one run, on the same GGUF and the same thread count:
#   inference  basis generate   vs llama.cpp (llama-cpp-python): prefill and decode tok/s,
#                               on a 128-token prompt and on skill-sized ones (1.5k, 4k
#                               tokens), with attention's and the matmuls' share of peak
#   training   bench_update     vs PyTorch (transformers, PEFT): the trainer's update
#                               step, full fine-tuning and LoRA, tok/s
#   peak       fma_peak         the machine's f32 FMA GFLOP/s, beside prefill's
#                               achieved GFLOP/s (2 x parameters x tokens/s)
# Prints a markdown table (basis | peer | basis/peer) and writes it to
# bench/results-latest.md. Progress goes to stderr.
#
# Usage: bench/run_benchmarks.sh [MODEL.gguf]
#   MODEL.gguf     default: `basis model pull` and the stored smollm2-135m-instruct
# Environment:
#   BENCH_QUICK=1  training at seq 64 for 2 steps instead of seq 256 for 3 (smoke run)
#   SKIP_BUILD=1   use the release binaries already in target/ instead of building
#   BENCH_BASELINE a commit to measure beside the current tree (default: f0ff989,
#                  the foundation's measured build); its `basis` is built once into
#                  ~/.cache/basis-bench/baselines/<commit> and its runs alternate with
#                  the current binary's, so a regression shows as a ratio below 1.
#                  BENCH_BASELINE=none skips it.
#   BENCH_PYTHON   a Python that has llama-cpp-python, torch, transformers, accelerate, peft, gguf, numpy
#   BENCH_VENV     where to create that Python otherwise
#                  (default ~/.cache/basis-bench-venv; reused when present)
#   BENCH_AVX2=0   on an AVX-512 CPU, skip the AVX2 path's rows (basis with
#                  BASIS_KERNELS=avx2 against llama.cpp built without AVX-512, whose
#                  venv is BENCH_VENV_AVX2, default ~/.cache/basis-bench-venv-avx2)
#   BENCH_TRAINING=0  skip the training rows (inference only: about 6 minutes)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "== $*" >&2; }

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    QUICK=1 SEQ=64 STEPS=2
else
    QUICK=0 SEQ=256 STEPS=3
fi
THREADS="$(nproc)"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# ---- binaries
BASIS="$ROOT/target/release/basis"
BENCH_TRAIN="$ROOT/target/release/examples/bench_update"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building release binaries"
    cargo build --release --bin basis >&2
    cargo build --release -p basis-trainer --example bench_update >&2
    cargo build --release -p basis-model --example fma_peak >&2
fi
for bin in "$BASIS" "$BENCH_TRAIN"; do
    [[ -x "$bin" ]] || { echo "missing $bin (run without SKIP_BUILD=1)" >&2; exit 1; }
done

# ---- the baseline: `basis` built from an earlier commit, in a worktree of its own
BASELINE_REV="${BENCH_BASELINE:-f0ff989}"
BASELINE_BIN=""
if [[ "$BASELINE_REV" != none ]]; then
    sha="$(git rev-parse --verify --short=12 "$BASELINE_REV^{commit}")" \
        || { echo "BENCH_BASELINE=$BASELINE_REV is not a commit here" >&2; exit 1; }
    dir="$HOME/.cache/basis-bench/baselines/$sha"
    BASELINE_BIN="$dir/target/release/basis"
    if [[ ! -x "$BASELINE_BIN" ]]; then
        say "building the baseline $BASELINE_REV ($sha) into $dir (once)"
        mkdir -p "$dir"
        [[ -d "$dir/src" ]] || git worktree add --detach "$dir/src" "$sha" >&2
        (cd "$dir/src" && cargo build --release --bin basis --target-dir "$dir/target") >&2
    fi
fi

# ---- model
if [[ $# -ge 1 ]]; then
    MODEL="$(realpath "$1")"
else
    say "pulling the default model"
    "$BASIS" model pull >&2
    MODEL="$("$BASIS" model list | awk -F'\t' '$1 == "smollm2-135m-instruct" { print $3 }')"
fi
[[ -f "$MODEL" ]] || { echo "no model file at '$MODEL'" >&2; exit 1; }

# ---- the peers' Python
# make_venv DIR PACKAGE...: a venv at DIR with the packages, built from source where
# they must be (CMAKE_ARGS from the environment), with no wheel cache: llama.cpp is
# built twice with different flags.
make_venv() {
    local dir="$1"
    shift
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --upgrade pip >&2
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$dir/bin/python" -m pip install --no-cache-dir "$@" >&2
}
if [[ -n "${BENCH_PYTHON:-}" ]]; then
    PY="$BENCH_PYTHON"
else
    VENV="${BENCH_VENV:-$HOME/.cache/basis-bench-venv}"
    PY="$VENV/bin/python"
    if ! { [[ -x "$PY" ]] && "$PY" -c 'import llama_cpp, torch, transformers, accelerate, peft, gguf, numpy' 2>/dev/null; }; then
        say "creating $VENV (llama-cpp-python compiles from source: ~12 min on 2 cores)"
        make_venv "$VENV" llama-cpp-python==0.3.36 torch transformers accelerate peft gguf numpy
    fi
fi
"$PY" -c 'import llama_cpp, torch, transformers, accelerate, peft, gguf, numpy' \
    || { echo "$PY lacks llama-cpp-python, torch, transformers, accelerate, peft, gguf or numpy" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results.jsonl"
# A measurement that fails is recorded as failed (the table says so) and the run
# goes on; the script then exits non-zero.
FAILED=0
peers() { "$PY" "$ROOT/bench/peers.py" "$@" >&2 || FAILED=1; }

say "model $MODEL, $THREADS threads, $([[ $QUICK == 1 ]] && echo quick || echo full) run"

# ---- the machine's arithmetic peak (f32 FMA on every thread), for prefill's GFLOP/s
say "FMA peak on $THREADS threads"
"$ROOT/target/release/examples/fma_peak" "$THREADS" | tee -a "$RESULTS" >&2 || FAILED=1

# ---- inference: prefill (128-token prompt) and decode (128 greedy tokens), then
#      prefill and decode after 1.5k- and 4k-token prompts
say "inference: basis"
BASELINE_ARGS=()
if [[ -n "$BASELINE_BIN" ]]; then
    BASELINE_ARGS=(--baseline "$BASELINE_BIN" --baseline-rev "$BASELINE_REV")
fi
peers infer-basis "$MODEL" --basis "$BASIS" --ids-out "$WORK/basis-ids.json" --out "$RESULTS" \
    "${BASELINE_ARGS[@]}"
say "inference: llama.cpp"
peers infer-llama "$MODEL" --threads "$THREADS" --basis-ids "$WORK/basis-ids.json" --out "$RESULTS"

# ---- the AVX2 path, where the CPU has AVX-512: basis with BASIS_KERNELS=avx2 against
#      llama.cpp built without AVX-512 (a venv of its own), as on an AVX2-only laptop
if grep -q -w avx512f /proc/cpuinfo 2>/dev/null && [[ "${BENCH_AVX2:-1}" == 1 ]]; then
    VENV2="${BENCH_VENV_AVX2:-$HOME/.cache/basis-bench-venv-avx2}"
    PY2="$VENV2/bin/python"
    if ! { [[ -x "$PY2" ]] && "$PY2" -c 'import llama_cpp, numpy' 2>/dev/null; }; then
        say "creating $VENV2 (llama-cpp-python without AVX-512, from source: ~12 min on 2 cores)"
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_BF16=OFF" \
            make_venv "$VENV2" llama-cpp-python==0.3.36 numpy
    fi
    say "inference, AVX2 path: basis (BASIS_KERNELS=avx2)"
    BASIS_KERNELS=avx2 peers infer-basis "$MODEL" --basis "$BASIS" --label basis-avx2 --out "$RESULTS"
    say "inference, AVX2 path: llama.cpp without AVX-512"
    "$PY2" "$ROOT/bench/peers.py" infer-llama "$MODEL" --threads "$THREADS" \
        --label llama.cpp-avx2 --out "$RESULTS" >&2 || FAILED=1
fi

# ---- training: the update step, full and LoRA, batch x seq = 1 x SEQ and 4 x SEQ
MODES=(full lora)
if [[ "${BENCH_TRAINING:-1}" == 0 ]]; then MODES=(); fi
for MODE in "${MODES[@]}"; do
    for BATCH in 1 4; do
        say "training $MODE ${BATCH}x${SEQ}: basis"
        peers train-basis "$MODEL" "$BATCH" "$SEQ" "$STEPS" --mode "$MODE" --bench-train "$BENCH_TRAIN" --out "$RESULTS"
        say "training $MODE ${BATCH}x${SEQ}: PyTorch"
        peers train-torch "$MODEL" "$BATCH" "$SEQ" "$STEPS" --mode "$MODE" --threads "$THREADS" --out "$RESULTS"
    done
done

# ---- report
QUICK_FLAG=()
if [[ $QUICK == 1 ]]; then QUICK_FLAG=(--quick); fi
built() { date -u -r "$1" '+%Y-%m-%d %H:%M UTC'; }
REV="$(git describe --always --dirty 2>/dev/null || echo unknown)"
CPU="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
# The SIMD flags the kernels choose between (see model/src/isa.rs).
FLAGS="$(grep -m1 -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512_vnni' /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' || true)"
CPU="${CPU:-unknown}, flags: ${FLAGS:-unknown}"
"$PY" "$ROOT/bench/peers.py" report "$RESULTS" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --cpu "$CPU" \
    --threads "$THREADS" \
    --model-name "$MODEL" \
    --model-path "$MODEL" \
    --sha256 "$(sha256sum "$MODEL" | cut -d' ' -f1)" \
    --basis-version "$("$BASIS" --version), tree $REV, basis built $(built "$BASIS"), bench_update built $(built "$BENCH_TRAIN")" \
    "${QUICK_FLAG[@]}" \
    --md-out "$ROOT/bench/results-latest.md"
if [[ $FAILED == 1 ]]; then
    echo "some measurements failed; see the notes under the table" >&2
    exit 1
fi
