#!/usr/bin/env bash
# Issue #28's experiment: does training make the default model better on held-out
# tasks of repositories it has not seen? Three public repositories, mined the way a
# user mines theirs, localize and review (the skills that run no sandbox), each
# through bench/train_experiment.sh: the base model, a warm start on 20 training
# answers a skill, joint RL from it, and the same RL budget on each skill alone.
# Results and how to read them: BENCHMARKS.md ("Learning on held-out tasks of
# three repositories").
#
# Usage: bench/heldout_experiment.sh REPOS OUT
#   REPOS  a folder with clones of flask (2ac8988), more-itertools (2fe1b2e) and
#          serde-rs/json as serde_json (827a315)
#   OUT    where the task files, runs, reports and tables go (resumable)
# Environment: BASIS (default: build target/release/basis), SINGLE (the skills
#   that get single-skill runs after every repository's joint run; default
#   "localize review", "none" for none), REPOSITORIES (default: all three).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPOS="$(realpath "$1")"
mkdir -p "$2"
OUT="$(realpath "$2")"
if [[ -z "${BASIS:-}" ]]; then
    cargo build --release --bin basis >&2
    BASIS="$ROOT/target/release/basis"
fi
export BASIS SKIP_BUILD=1
REPOSITORIES="${REPOSITORIES:-flask more-itertools serde_json}"
for r in $REPOSITORIES; do
    if [[ ! -f "$OUT/$r.jsonl" ]]; then
        "$BASIS" tasks mine --repo "$REPOS/$r" --out "$OUT/$r.jsonl" --skills localize,review \
            --max 150 --holdout 0.3 --validation 0.1 --seed 0 --max-commits 10000
    fi
    if [[ ! -f "$OUT/$r-sft.jsonl" ]]; then
        python3 "$ROOT/bench/sft_subset.py" "$OUT/$r.jsonl" "$OUT/$r-sft.jsonl" 20 0
    fi
done
# At least 30 held-out tasks a skill (the first 30 in file order), K=4; the RL
# rollouts at the evaluation's temperature; the checkpoint chosen on validation.
export SKILLS="localize review" LIMIT=30 K=4 STEPS=6 TASKS_PER_STEP=4 GROUP=8 \
    MAX_NEW_TOKENS=64 LR=2e-4 SFT_EPOCHS=1 SFT_LR=1e-3 EVAL_EVERY=6 EVAL_SAMPLES=1 SEED=0 \
    TEMPERATURE=0.7
# Every repository's joint run first, then the single-skill runs.
for pass in none "${SINGLE:-localize review}"; do
    for r in $REPOSITORIES; do
        SINGLE="$pass" SFT_TASKS="$OUT/$r-sft.jsonl" \
            bash "$ROOT/bench/train_experiment.sh" "$OUT/$r.jsonl" "$OUT" "$OUT/out-$r"
    done
done
