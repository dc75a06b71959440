#!/usr/bin/env bash
# The whole learning loop on the bundled example repository, on the CPU:
#
#   1. build the example repository (a small Python shop with its git history)
#   2. mine tasks with known answers from it          (basis tasks mine)
#   3. evaluate the served model on the held-out tasks (basis eval)
#   4. train: a warm start on the reference answers, then joint RL over the five
#      skills                                          (basis train --sft)
#   5. publish through the gate                        (basis model publish)
#   6. evaluate again, and print the before/after table
#
# It trains its own copy of the default model, registered as `shopkit-demo`, so
# the version it publishes never changes what your editor serves. Everything it
# writes goes under OUT (default ./shopkit-loop); run it again with a new OUT.
#
# Usage: examples/shopkit/loop.sh [OUT]
# Settings (environment): STEPS=6 GROUP=4 TASKS_PER_STEP=5 K=2 BASIS=<a basis binary>
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$(realpath -m "${1:-shopkit-loop}")"
STEPS="${STEPS:-6}" GROUP="${GROUP:-4}" TASKS_PER_STEP="${TASKS_PER_STEP:-5}" K="${K:-2}"
MODEL=shopkit-demo
say() { echo "== $(date -u +%H:%M:%S) $*" >&2; }
if [[ -e "$OUT/run" ]]; then
    echo "$OUT already holds a loop; give another folder" >&2
    exit 1
fi
mkdir -p "$OUT"
START=$SECONDS

if [[ -z "${BASIS:-}" ]]; then
    say "building basis (release)"
    cargo build --release --bin basis --manifest-path "$ROOT/Cargo.toml" >&2
    BASIS="$ROOT/target/release/basis"
fi
"$BASIS" model pull >&2
GGUF="$("$BASIS" model list | awk -F'\t' '$1 == "smollm2-135m-instruct" {print $3}')"
if ! "$BASIS" model list | awk -F'\t' -v m="$MODEL" '$1 == m {found=1} END {exit !found}'; then
    "$BASIS" model pull "$GGUF" --name "$MODEL" >&2
fi
"$BASIS" model use "$MODEL@base" >&2

say "1. the example repository"
bash "$HERE/build.sh" "$OUT/repo" >&2
say "2. mining tasks"
"$BASIS" tasks mine --repo "$OUT/repo" --out "$OUT/tasks.jsonl" --max 8 --seed 0 >&2
say "3. evaluating $MODEL base on the held-out tasks"
"$BASIS" eval --tasks "$OUT/tasks.jsonl" --split heldout --samples "$K" --temperature 0.7 \
    --model "$MODEL" --out "$OUT/eval-before" >/dev/null
say "4. training: warm start, then $STEPS steps of joint RL"
"$BASIS" train --tasks "$OUT/tasks.jsonl" --model "$MODEL" --sft --steps "$STEPS" \
    --group-size "$GROUP" --tasks-per-step "$TASKS_PER_STEP" --max-new-tokens 160 --lr 2e-4 \
    --run "$OUT/run" >&2
"$BASIS" train plot "$OUT/run" >/dev/null
say "5. publishing through the gate"
if "$BASIS" model publish "$OUT/run" --gate-samples "$K" >&2; then
    PUBLISHED=yes
else
    PUBLISHED=no
fi
say "6. evaluating the result"
"$BASIS" eval --tasks "$OUT/tasks.jsonl" --split heldout --samples "$K" --temperature 0.7 \
    --model "$MODEL@base" --adapter "$OUT/run/adapter" --out "$OUT/eval-after" >/dev/null

python3 - "$OUT" "$PUBLISHED" $((SECONDS - START)) <<'EOF' | tee "$OUT/summary.md"
import json, os, sys
out, published, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
load = lambda n: json.load(open(os.path.join(out, n, "report.json")))
b, a = load("eval-before"), load("eval-after")
print(f"Held-out tasks of the example repository, Avg@{b['samples']} at temperature {b['temperature']}:\n")
print("| skill | tasks | before | after |")
print("|---|---|---|---|")
for s in ["localize", "edit", "testgen", "reproduce", "review"]:
    if s in b["per_skill"]:
        print(f"| {s} | {b['per_skill'][s]['tasks']} | {b['per_skill'][s]['avg_at_k']:.3f} | "
              f"{a['per_skill'].get(s, {}).get('avg_at_k', float('nan')):.3f} |")
print(f"| **mean** | | {b['mean']:.3f} | {a['mean']:.3f} |\n")
print(f"Published: {published} (the gate's table is in {out}/run/publish.md); "
      f"reward curves in {out}/run/rewards.svg; the whole loop took {secs // 60} min {secs % 60} s.")
EOF
