#!/usr/bin/env bash
# The skills' benchmark (examples/bench_skills.rs): time to a shown suggestion per
# skill on the default model and the Python fixture repository, p50 and p95, for
# the first request and for the same request repeated (its prompt prefix cached),
# each split into prefill and decode; and the
# sandbox's overhead for one test run against the same tests run directly (Python
# unittest, and cargo test after an edit), warm. Prints the JSON report and
# writes it to bench/skills-results-latest.json.
#
# Usage: bench/skills_bench.sh [RUNS [REPO FILE SYMBOL]]      (RUNS default 5)
#   With REPO FILE SYMBOL the skills run on that checkout (e.g. flask,
#   src/flask/helpers.py, get_root_path) instead of the fixture, and the report
#   goes to bench/skills-results-repo-latest.json.
# Environment: SKIP_BUILD=1 uses the release binaries already in target/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${1:-5}"
OUT=bench/skills-results-latest.json
TARGET=()
if [[ $# -ge 4 ]]; then
    TARGET=("$(realpath "$2")" "$3" "$4")
    OUT=bench/skills-results-repo-latest.json
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building release binaries" >&2
    cargo build --release --quiet --bin basis --example bench_skills
fi
echo "== pulling the default model (if missing)" >&2
./target/release/basis model pull >&2
MODEL="$(./target/release/basis model list | awk -F'\t' '$1 == "smollm2-135m-instruct" {print $3}')"
echo "== $(nproc) cores, model $MODEL, $RUNS runs" >&2
./target/release/examples/bench_skills "$MODEL" "$RUNS" "${TARGET[@]}" | tee "$OUT"
