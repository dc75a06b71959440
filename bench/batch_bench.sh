#!/usr/bin/env bash
# Batched generation (#29): `basis eval --samples 4` on 40 held-out tasks (the first 8
# of each skill) and one training step's rollouts (8 groups of 4), each run once with
# the current release binary and once with an earlier one, on the same machine.
#
#   bash bench/batch_bench.sh REPO BEFORE [TASKS]
#
#   REPO    a clone of a repository whose tests the sandbox runs (BENCHMARKS.md:
#           more-itertools at 2fe1b2e)
#   BEFORE  a `basis` binary built from an earlier commit
#   TASKS   REPO's task file (default: mined with `basis tasks mine --repo REPO`)
#   BASIS   the binary measured as "now" (default: target/release/basis); build both
#           with the same profile
#
# Prints each run's wall time, peak memory, the rollouts' seconds and tokens, and
# whether both binaries gave the same eval answers (they must, for a fixed seed, where
# the numerics did not change between the two commits).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 2 ]] || { sed -n 2,17p "$0" >&2; exit 2; }
REPO="$(realpath "$1")"
BEFORE="$(realpath "$2")"
NOW="${BASIS:-$ROOT/target/release/basis}"
[[ -x "$NOW" ]] || cargo build --release --bin basis >&2
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [[ $# -ge 3 ]]; then
    TASKS="$(realpath "$3")"
else
    TASKS="$WORK/tasks.jsonl"
    "$NOW" tasks mine --repo "$REPO" --out "$TASKS" >&2
fi
python3 - "$TASKS" "$WORK/eval40.jsonl" <<'EOF'
import collections, json, sys
taken, out = collections.Counter(), open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["meta"].get("split") == "heldout" and taken[t["skill"]] < 8:
        taken[t["skill"]] += 1
        out.write(line)
print("eval tasks:", dict(taken), file=sys.stderr)
EOF

timed() { # LABEL CMD...: runs CMD, prints "LABEL <seconds> s, peak <MB> MB"
    local label="$1"
    shift
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" \
        || { tail -5 "$WORK/err" >&2; exit 1; }
    read -r secs kb < "$WORK/time"
    printf '%s\t%s s\tpeak %d MB\n' "$label" "$secs" $((kb / 1024))
}

for which in before now; do
    bin="$BEFORE"
    [[ $which == now ]] && bin="$NOW"
    timed "eval --samples 4, 40 tasks, $which" "$bin" eval --tasks "$WORK/eval40.jsonl" \
        --repo-root "$(dirname "$REPO")" --samples 4 --temperature 0.7 --seed 0 \
        --out "$WORK/eval-$which"
    timed "train, 1 step, 8 groups of 4, $which" "$bin" train --tasks "$TASKS" \
        --repo-root "$(dirname "$REPO")" --skills localize,edit,review --steps 1 \
        --tasks-per-step 8 --group-size 4 --draw-rounds 0 --seed 0 --run "$WORK/run-$which"
    python3 - "$WORK/run-$which/metrics.jsonl" "$which" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).readline())
secs = m.get("rollout_secs") or m["rollout_tokens"] / m["rollout_tokens_per_s"]
print(f"rollouts, {sys.argv[2]}\t{secs:.1f} s\t{m['rollout_tokens']} tokens, "
      f"{m['rollout_tokens'] / secs:.0f} tok/s")
EOF
done
if cmp -s "$WORK/eval-before/answers.jsonl" "$WORK/eval-now/answers.jsonl"; then
    echo "eval answers: the same for both binaries"
else
    echo "eval answers: DIFFERENT between the binaries"
fi
