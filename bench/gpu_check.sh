#!/usr/bin/env bash
# The GPU check, in one run of a few minutes on a GPU machine that has a driver
# and PyTorch but no Rust and no network:
#   1. `basis check-device --device cuda`: the model's logits on the GPU against
#      the CPU, three GRPO steps of the trainer's real update on the GPU, and the
#      update step's throughput (LoRA and full fine-tuning) with MFU;
#   2. the same update step in plain PyTorch on the same GPU (bench/torch_llama.py);
#   3. a table of both, with the ratio.
#
# Build first, on any machine (no GPU needed): scripts/build-cuda.sh, which
# leaves target/cuda/basis.xz and target/cuda/libcudart.so.13 to copy along.
#
# Usage: bench/gpu_check.sh [OUT_DIR]      (default: a temporary folder)
# Settings: PEAK_TFLOPS=67 (H200 FP32; MFU is against it), BATCHES=4x512,16x512, STEPS=3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-$(mktemp -d)}"
mkdir -p "$OUT"
PEAK="${PEAK_TFLOPS:-67}" BATCHES="${BATCHES:-4x512,16x512}" STEPS="${STEPS:-3}"
say() { echo "== $*" >&2; }

[[ -f target/cuda/basis.xz ]] || { echo "target/cuda/basis.xz is missing: run scripts/build-cuda.sh and copy it here" >&2; exit 1; }
BIN="$OUT/basis"
python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" target/cuda/basis.xz "$BIN"
chmod +x "$BIN"
NV_LIB="$(python3 -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'lib'))" 2>/dev/null || true)"
export LD_LIBRARY_PATH="${NV_LIB:+$NV_LIB:}$ROOT/target/cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$BIN" | grep 'not found'; then
    echo "libraries missing (see above); LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

say "basis check-device on the GPU"
"$BIN" check-device --device cuda --peak-tflops "$PEAK" --batches "$BATCHES" --steps "$STEPS" | tee "$OUT/basis.jsonl"
say "PyTorch on the same GPU"
python3 bench/torch_llama.py --device cuda --peak-tflops "$PEAK" --batches "$BATCHES" --steps "$STEPS" | tee "$OUT/torch.jsonl"

python3 - "$OUT/basis.jsonl" "$OUT/torch.jsonl" "$PEAK" <<'EOF' | tee "$OUT/table.md"
import json, sys
basis = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for r in basis:
    if r["check"] in ("logits", "grpo"):
        print(f"- {r['check']}: {'ok' if r['ok'] else 'FAILED'} {json.dumps({k: v for k, v in r.items() if k not in ('check', 'ok')})}")
print()
print(f"| update step | basis tok/s | PyTorch tok/s | ratio | basis MFU | PyTorch MFU |")
print("|---|---|---|---|---|---|")
for r in (r for r in basis if r["check"] == "throughput"):
    t = next((x for x in torch if (x["mode"], x["batch"], x["seq"]) == (r["mode"], r["batch"], r["seq"])), None)
    mfu = lambda x: f"{100 * x['mfu']:.1f}%" if x and x.get("mfu") is not None else "n/a"
    ratio = f"{r['tok_per_s'] / t['tok_per_s']:.2f}" if t else "n/a"
    print(f"| {r['mode']} {r['batch']}x{r['seq']} | {r['tok_per_s']:.0f} | {t['tok_per_s']:.0f} | {ratio} | {mfu(r)} | {mfu(t)} |" if t else
          f"| {r['mode']} {r['batch']}x{r['seq']} | {r['tok_per_s']:.0f} | n/a | n/a | {mfu(r)} | n/a |")
print(f"\nMFU against {sys.argv[3]} TFLOP/s; model FLOPs 6N a token for full fine-tuning, 4N for LoRA (no weight gradients).")
EOF
