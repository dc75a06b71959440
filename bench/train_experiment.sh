#!/usr/bin/env bash
# Does joint reinforcement learning over the skills beat the base model, and
# single-skill training, on held-out tasks? One command, one table.
#
#   base        the model as it is
#   warm start  supervised fine-tuning on the training tasks' reference answers
#               (`basis train --sft --steps 0`): every RL run below starts here,
#               because the base model earns no reward at all on some skills
#   joint       GRPO over every skill of the task file (`basis train`), STEPS
#               steps of TASKS_PER_STEP tasks, GROUP samples each; its
#               checkpoint is the best one on the validation split
#               (`--eval-every`), the warm start's own weights included
#   single:X    the same budget on skill X's tasks alone, one run per skill
#
# Each is evaluated on the held-out split with K samples a task at temperature
# 0.7 (`basis eval`; a single-skill run on its own skill only), paired task by
# task with the base model's answers (`--baseline-answers`: the base is sampled
# once). Prints a markdown table per reward (binary, as the paper scores, and
# graded): each run's score and its difference from the base with the 95%
# interval of a bootstrap over tasks; review's balanced accuracy; what the
# runs' metrics say (groups without reward variance, draws, validation curve).
# Writes it to OUT/table.md.
#
# Usage: bench/train_experiment.sh TASKS REPO_ROOT OUT
#   TASKS      a task file with train, validation and heldout splits
#              (`basis tasks mine`; e.g. examples/shopkit/tasks.jsonl)
#   REPO_ROOT  what the tasks' relative repository paths are relative to
#   OUT        a folder for the runs and reports (resumable: finished parts are kept)
# Settings (environment): STEPS=8 TASKS_PER_STEP=5 GROUP=4 K=4 MAX_NEW_TOKENS=160
#   LR=2e-4 SFT_EPOCHS=3 (0: no warm start, RL from the base model) SFT_LR=$LR SEED=0
#   SFT_TASKS=$TASKS (the task file whose training answers the warm start fits)
#   LIMIT= (at most this many held-out tasks a skill, in file order; default: all)
#   TEMPERATURE= (the rollouts' sampling temperature; default: `basis train`'s)
#   EVAL_EVERY=4 (0: no validation; the run's last weights are evaluated)
#   EVAL_SAMPLES=1 (the validation's K: greedy)
#   SKILLS= (default: every skill with training and held-out tasks)
#   SINGLE="localize review" (the skills that get a single-skill run; default: all;
#   "none": no single-skill runs; the table says n/a for the others)
#   MODEL=(the default model)
#   BASIS=a basis binary to use as it is (default: build target/release/basis)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TASKS="$(realpath "$1")"
REPO_ROOT="$(realpath "$2")"
OUT="$3"
mkdir -p "$OUT"
OUT="$(realpath "$OUT")"
STEPS="${STEPS:-8}" TASKS_PER_STEP="${TASKS_PER_STEP:-5}" GROUP="${GROUP:-4}" K="${K:-4}"
MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-160}" LR="${LR:-2e-4}" SFT_EPOCHS="${SFT_EPOCHS:-3}" SEED="${SEED:-0}"
SFT_LR="${SFT_LR:-$LR}" SFT_TASKS="$(realpath "${SFT_TASKS:-$TASKS}")" EVAL_EVERY="${EVAL_EVERY:-4}" EVAL_SAMPLES="${EVAL_SAMPLES:-1}"
say() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

BASIS="${BASIS:-$ROOT/target/release/basis}"
if [[ "${SKIP_BUILD:-0}" != 1 && "$BASIS" == "$ROOT/target/release/basis" ]]; then
    cargo build --release --bin basis >&2
fi
MODEL_ARGS=()
if [[ -n "${MODEL:-}" ]]; then MODEL_ARGS=(--model "$MODEL"); fi
"$BASIS" model pull >&2

if [[ -z "${SKILLS:-}" ]]; then
    SKILLS=$(python3 - "$TASKS" <<'EOF'
import json, sys
order = ["localize", "edit", "testgen", "reproduce", "review"]
train, held = set(), set()
for line in open(sys.argv[1]):
    if line.strip():
        t = json.loads(line)
        (held if t.get("meta", {}).get("split") == "heldout" else train).add(t["skill"])
print(" ".join(s for s in order if s in train and s in held))
EOF
    )
fi
SKILLS="${SKILLS//,/ }"
say "skills: $SKILLS"
LIMIT_ARGS=()
if [[ -n "${LIMIT:-}" ]]; then LIMIT_ARGS=(--limit "$LIMIT"); fi

# Seconds of a step of the experiment, for the table.
timed() { # NAME COMMAND...
    local name="$1" start=$SECONDS
    shift
    "$@"
    echo $((SECONDS - start)) >"$OUT/$name.seconds"
}

evaluate() { # NAME SKILLS [ADAPTER]
    local name="$1" skills="$2" adapter="${3:-}"
    [[ -f "$OUT/eval-$name/report.json" ]] && return
    say "evaluating $name on $skills"
    local extra=()
    if [[ -n "$adapter" ]]; then
        extra=(--adapter "$adapter" --baseline-answers "$OUT/eval-base/answers.jsonl")
    fi
    timed "eval-$name" "$BASIS" eval --tasks "$TASKS" --repo-root "$REPO_ROOT" --split heldout \
        --skills "${skills// /,}" --samples "$K" --temperature 0.7 --seed "$SEED" \
        --out "$OUT/eval-$name" "${LIMIT_ARGS[@]}" "${MODEL_ARGS[@]}" "${extra[@]}" \
        >/dev/null 2>"$OUT/eval-$name.log"
}

# The weights a run is judged by: the best on validation, else its last.
weights() { # NAME
    if [[ -d "$OUT/run-$1/best/adapter" ]]; then echo "$OUT/run-$1/best/adapter"; else echo "$OUT/run-$1/adapter"; fi
}

train() { # NAME SKILLS
    local name="$1" skills="$2"
    [[ -f "$OUT/run-$name/adapter/adapter_model.safetensors" ]] && return
    rm -rf "$OUT/run-$name"
    say "training $name on $skills"
    local init=()
    if [[ "$SFT_EPOCHS" != 0 ]]; then init=(--init-adapter "$OUT/run-sft/adapter"); fi
    local extra=()
    if [[ -n "${TEMPERATURE:-}" ]]; then extra+=(--temperature "$TEMPERATURE"); fi
    if [[ "$EVAL_EVERY" != 0 ]]; then extra+=(--eval-every "$EVAL_EVERY" --eval-samples "$EVAL_SAMPLES"); fi
    timed "run-$name" "$BASIS" train --tasks "$TASKS" --repo-root "$REPO_ROOT" --skills "${skills// /,}" \
        "${init[@]}" --steps "$STEPS" --tasks-per-step "$TASKS_PER_STEP" \
        --group-size "$GROUP" --max-new-tokens "$MAX_NEW_TOKENS" --lr "$LR" --seed "$SEED" \
        "${extra[@]}" --run "$OUT/run-$name" "${MODEL_ARGS[@]}" 2>"$OUT/run-$name.log"
}

evaluate base "$SKILLS"
if [[ "$SFT_EPOCHS" != 0 ]]; then
    if [[ ! -f "$OUT/run-sft/adapter/adapter_model.safetensors" ]]; then
        rm -rf "$OUT/run-sft"
        say "warm start"
        timed run-sft "$BASIS" train --tasks "$SFT_TASKS" --repo-root "$REPO_ROOT" --skills "${SKILLS// /,}" --sft \
            --sft-epochs "$SFT_EPOCHS" --sft-lr "$SFT_LR" --steps 0 --lr "$LR" --seed "$SEED" --run "$OUT/run-sft" \
            "${MODEL_ARGS[@]}" 2>"$OUT/run-sft.log"
    fi
    evaluate sft "$SKILLS" "$OUT/run-sft/adapter"
fi
train joint "$SKILLS"
evaluate joint "$SKILLS" "$(weights joint)"
SINGLE="${SINGLE:-$SKILLS}"
[[ "$SINGLE" == none ]] && SINGLE=""
for s in $SINGLE; do
    train "single-$s" "$s"
    evaluate "single-$s" "$s" "$(weights "single-$s")"
done

python3 "$ROOT/bench/experiment_table.py" "$OUT" "$SKILLS" "$TASKS" \
    "K=$K, temperature 0.7; every RL run: $STEPS steps x $TASKS_PER_STEP tasks x $GROUP samples${TEMPERATURE:+ at temperature $TEMPERATURE}, lr $LR, from $([[ "$SFT_EPOCHS" == 0 ]] && echo 'the base model (no warm start)' || echo "the warm start ($SFT_EPOCHS epochs, lr $SFT_LR)"), checkpoint $([[ "$EVAL_EVERY" == 0 ]] && echo 'the last' || echo "the best on validation (every $EVAL_EVERY steps, K=$EVAL_SAMPLES)")" |
    tee "$OUT/table.md"
