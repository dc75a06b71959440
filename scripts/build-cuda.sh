#!/usr/bin/env bash
# Builds `basis` with the `cuda` feature on a machine without a GPU or a CUDA
# toolkit, for NVIDIA GPUs of one compute capability (default 90: H100/H200).
#
#   scripts/build-cuda.sh            -> target/cuda/release/basis, and for copying
#                                       to a GPU machine target/cuda/basis.xz and
#                                       target/cuda/libcudart.so.13
#
# What it does, and why:
# - The CUDA 13.0 compiler and headers come from NVIDIA's PyPI wheels (pinned:
#   PTX from an nvcc newer than the GPU machine's driver would not load), unpacked
#   once into ~/.cache/basis-cuda/13.0 (BASIS_CUDA_HOME to put it elsewhere).
# - cudarc links -lcuda -lnvrtc -lcurand -lcublas -lcublasLt at build time. The
#   wheels hold no driver library, so link-only stub libraries are made from
#   cudarc's own function lists (each `fn NAME(` in an extern block of
#   src/<lib>/sys/mod.rs becomes an empty C function), with the real libraries'
#   sonames: at run time the GPU machine's driver and PyTorch's CUDA wheels
#   provide the real ones. The stubs are never on a run-time library path.
# - candle-kernels compiles its PTX at build time for CUDA_COMPUTE_CAP (it would
#   ask nvidia-smi, which does not exist here).
# The build takes 16-25 minutes on 2 cores from a cold target folder.
#
# Settings (environment): CUDA_COMPUTE_CAP=90, BASIS_CUDA_HOME, PYTHON=python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "== $*" >&2; }

CAP="${CUDA_COMPUTE_CAP:-90}"
CU_ROOT="${BASIS_CUDA_HOME:-$HOME/.cache/basis-cuda/13.0}"
PYTHON="${PYTHON:-python3}"
WHEELS=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)
CU="$CU_ROOT/nvidia/cu13"

# ---- the toolkit
if [[ ! -x "$CU/bin/nvcc" ]]; then
    say "downloading the CUDA 13.0 toolkit wheels from PyPI into $CU_ROOT"
    mkdir -p "$CU_ROOT/wheels"
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        echo "error: $PYTHON has no pip (install python3-pip, or set PYTHON to a Python with pip)" >&2
        exit 1
    fi
    "$PYTHON" -m pip download --quiet --no-deps -d "$CU_ROOT/wheels" "${WHEELS[@]}"
    for w in "$CU_ROOT"/wheels/*.whl; do
        "$PYTHON" - "$w" "$CU_ROOT" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for m in z.infolist():
        if m.filename.startswith("nvidia/cu13/"):
            z.extract(m, dest)
EOF
    done
    chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2>/dev/null || true
    [[ -x "$CU/bin/nvcc" ]] || { echo "error: no nvcc in the wheels ($CU/bin)" >&2; exit 1; }
fi
ln -sf libcudart.so.13 "$CU/lib/libcudart.so"
"$CU/bin/nvcc" --version | tail -n 2 >&2

# ---- link-only stubs
CUDARC="$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -n 1 || true)"
if [[ -z "$CUDARC" ]]; then
    cargo fetch >&2
    CUDARC="$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-0.19.* | sort | tail -n 1)"
fi
STUBS="$CU/lib/stubs"
mkdir -p "$STUBS"
stub() { # cudarc module, library name, soname
    local src="$CUDARC/src/$1/sys/mod.rs" c="$STUBS/$2.c"
    [[ -f "$src" ]] || { echo "error: $src is missing" >&2; exit 1; }
    awk '/extern "C" \{/{inb=1} inb && /fn [A-Za-z_0-9]+\(/{match($0,/fn [A-Za-z_0-9]+\(/); print substr($0,RSTART+3,RLENGTH-4)} inb && /^[[:space:]]*\}/{inb=0}' "$src" \
        | sort -u | sed 's/.*/void &(void){}/' >"$c"
    gcc -shared -fPIC -nostdlib -Wl,-soname,"$3" -o "$STUBS/$2.so" "$c"
}
stub driver libcuda libcuda.so.1
stub cublas libcublas libcublas.so.13
stub cublaslt libcublasLt libcublasLt.so.13
stub curand libcurand libcurand.so.10
stub nvrtc libnvrtc libnvrtc.so.13
say "stubs in $STUBS (link time only)"

# ---- the build (RUSTFLAGS stays unset: .cargo/config.toml holds the CPU flags)
say "building basis --features cuda for compute capability $CAP into target/cuda"
CUDA_HOME="$CU" NVCC="$CU/bin/nvcc" PATH="$CU/bin:$PATH" CUDA_COMPUTE_CAP="$CAP" \
    CUDARC_CUDA_VERSION=13000 \
    cargo build --release --features cuda --target-dir target/cuda --bin basis >&2

BIN=target/cuda/release/basis
cp "$CU/lib/libcudart.so.13" target/cuda/
xz -T0 -6 -c "$BIN" >target/cuda/basis.xz
say "built $BIN ($(du -h "$BIN" | cut -f1)); for a GPU machine: target/cuda/basis.xz ($(du -h target/cuda/basis.xz | cut -f1)) and target/cuda/libcudart.so.13"
echo "$ROOT/$BIN"
