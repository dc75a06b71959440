#!/usr/bin/env bash
# How fast tasks are mined and models evaluated, in one run:
#   mining      `basis tasks mine` on the example repository (all skills), and on
#               the repositories given (history on one, tests on the other): tasks/min
#   eval        `basis eval` of the default model on the example's held-out tasks
#               at K=4: tasks/min and samples/min
#   verifiers   the same recorded answers (four distinct ones for each edit task,
#               each a sandbox run of the task's tests) scored with --jobs 1 and
#               with --jobs <cores>: the speed-up of scoring in parallel
# Prints a markdown table (also bench/tasks-results-latest.md).
#
# Usage: bench/tasks_bench.sh [HISTORY_REPO] [TESTS_REPO]
#   HISTORY_REPO  a git repository to mine fix commits from (e.g. a clone of
#                 https://github.com/pallets/flask); localize and review tasks
#   TESTS_REPO    a repository whose tests run with the standard library alone (e.g.
#                 https://github.com/more-itertools/more-itertools); edit, testgen
#                 and reproduce tasks
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "== $*" >&2; }
HISTORY_REPO="${1:-}"
TESTS_REPO="${2:-}"
CORES="$(nproc)"

say "building the release binary"
cargo build --release --bin basis >&2
BASIS="$ROOT/target/release/basis"
"$BASIS" model pull >&2
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
bash examples/shopkit/build.sh "$WORK/repo" >&2

ROWS=()
row() { ROWS+=("| $1 | $2 |"); }
seconds() { python3 -c "import sys; print(f'{float(sys.argv[1]):.1f}')" "$1"; }
timed() {
    # Runs "$@", leaves the wall time in seconds in $T.
    local start end
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    T=$(python3 -c "print($end - $start)")
}
per_min() { python3 -c "import sys; n, t = int(sys.argv[1]), float(sys.argv[2]); print(f'{n / t * 60:.1f}')" "$1" "$2"; }
count() { grep -c . "$1"; }
# A repository's name for the table: its folder, or the folder above a folder
# called `repo` (as a mirror's layout has it).
repo_name() { local b; b="$(basename "$1")"; [[ "$b" == repo || "$b" == *.git ]] && b="$(basename "$(dirname "$1")")"; echo "$b"; }

# ---- mining
say "mining the example repository"
timed "$BASIS" tasks mine --repo "$WORK/repo" --out "$WORK/shopkit.jsonl" --max 8 >/dev/null 2>&1
n=$(count "$WORK/shopkit.jsonl")
row "mining the example (all skills, --max 8): tasks, seconds, tasks/min" "$n, $(seconds "$T"), $(per_min "$n" "$T")"
if [[ -n "$HISTORY_REPO" ]]; then
    say "mining fix commits of $HISTORY_REPO"
    files=$(git -C "$HISTORY_REPO" ls-tree -r --name-only HEAD | wc -l)
    timed "$BASIS" tasks mine --repo "$HISTORY_REPO" --out "$WORK/history.jsonl" --skills localize,review --max 30 >/dev/null 2>&1
    n=$(count "$WORK/history.jsonl")
    row "mining history of $(repo_name "$HISTORY_REPO") ($files files, last 1000 commits): tasks, seconds, tasks/min" "$n, $(seconds "$T"), $(per_min "$n" "$T")"
fi
if [[ -n "$TESTS_REPO" ]]; then
    say "mining mutants of $TESTS_REPO"
    timed "$BASIS" tasks mine --repo "$TESTS_REPO" --out "$WORK/tests.jsonl" --skills edit,testgen,reproduce --max 4 >/dev/null 2>&1
    n=$(count "$WORK/tests.jsonl")
    row "mining mutants of $(repo_name "$TESTS_REPO") (--max 4): tasks, seconds, tasks/min" "$n, $(seconds "$T"), $(per_min "$n" "$T")"
fi

# ---- eval at K=4
say "evaluating the default model at K=4 on the held-out tasks"
TASKS="$ROOT/examples/shopkit/tasks.jsonl"
held=$(grep -c '"split":"heldout"' "$TASKS")
timed "$BASIS" eval --tasks "$TASKS" --repo-root "$WORK" --split heldout --samples 4 --out "$WORK/eval" >/dev/null 2>&1
row "eval, K=4, default model, $held held-out tasks: seconds, tasks/min, samples/min" "$(seconds "$T"), $(per_min "$held" "$T"), $(per_min $((held * 4)) "$T")"

# ---- verifiers: the same answers scored one at a time and in parallel
python3 - "$TASKS" "$WORK/answers.jsonl" <<'EOF'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        if t["skill"] != "edit":
            continue
        comment = "//" if t["input"]["file"].endswith(".rs") else "#"
        code = t["reference"]["replacement"]
        indent = code[: len(code) - len(code.lstrip())]
        for i in range(4):
            out.write(json.dumps({"id": t["id"], "completion": f"{code}{indent}{comment} variant {i}\n```"}) + "\n")
EOF
edits=$(grep -c '"skill":"edit"' "$TASKS")
say "scoring recorded edit answers one at a time"
timed "$BASIS" eval --tasks "$TASKS" --repo-root "$WORK" --skills edit --answers "$WORK/answers.jsonl" --jobs 1 --out "$WORK/verify-1" >/dev/null 2>&1
SERIAL=$T
row "scoring $((edits * 4)) distinct edit answers (sandbox test runs), --jobs 1: seconds" "$(seconds "$SERIAL")"
say "scoring them $CORES at a time"
timed "$BASIS" eval --tasks "$TASKS" --repo-root "$WORK" --skills edit --answers "$WORK/answers.jsonl" --jobs "$CORES" --out "$WORK/verify-n" >/dev/null 2>&1
PARALLEL=$T
row "the same, --jobs $CORES: seconds" "$(seconds "$PARALLEL")"
row "verifiers in parallel against one at a time: speed-up" "$(python3 -c "print(f'{$SERIAL / $PARALLEL:.2f}x')")"

# ---- report
{
    echo "# Tasks and evaluation ($(date -u '+%Y-%m-%d %H:%M UTC'), $CORES cores, tree $(git describe --always --dirty))"
    echo
    echo "| measure | result |"
    echo "|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$ROOT/bench/tasks-results-latest.md"
