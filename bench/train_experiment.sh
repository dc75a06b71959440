#!/usr/bin/env bash
# Does joint reinforcement learning over the five skills beat the base model,
# and single-skill training, on held-out tasks? One command, one table.
#
#   base        the model as it is
#   warm start  supervised fine-tuning on the training tasks' reference answers
#               (`basis train --sft --steps 0`): every RL run below starts here,
#               because the base model earns no reward at all on some skills
#   joint       GRPO over every skill of the task file (`basis train`), STEPS
#               steps of TASKS_PER_STEP tasks, GROUP samples each
#   single:X    the same budget on skill X's tasks alone, one run per skill
#
# Each is evaluated on the held-out split with K samples a task at temperature
# 0.7 (`basis eval`; a single-skill run on its own skill only). Prints a
# markdown table of Avg@K per skill (and, for review, how often each run's samples
# said YES, NO or nothing) and writes it to OUT/table.md.
#
# Usage: bench/train_experiment.sh TASKS REPO_ROOT OUT
#   TASKS      a task file with train and heldout splits (e.g. examples/shopkit/tasks.jsonl)
#   REPO_ROOT  what the tasks' relative repository paths are relative to
#   OUT        a folder for the runs and reports (resumable: finished parts are kept)
# Settings (environment): STEPS=8 TASKS_PER_STEP=5 GROUP=4 K=4 MAX_NEW_TOKENS=160
#   LR=2e-4 SFT_EPOCHS=3 (0: no warm start, RL from the base model) SFT_LR=$LR SEED=0
#   MODEL=(the default model)
#   SINGLE="localize review" (the skills that get a single-skill run; default: all;
#   the table says n/a for the others)
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
SFT_LR="${SFT_LR:-$LR}"
say() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

BASIS="${BASIS:-$ROOT/target/release/basis}"
if [[ "${SKIP_BUILD:-0}" != 1 && "$BASIS" == "$ROOT/target/release/basis" ]]; then
    cargo build --release --bin basis >&2
fi
MODEL_ARGS=()
if [[ -n "${MODEL:-}" ]]; then MODEL_ARGS=(--model "$MODEL"); fi
"$BASIS" model pull >&2

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
say "skills with train and held-out tasks: $SKILLS"

evaluate() { # NAME SKILLS [ADAPTER]
    local name="$1" skills="$2" adapter="${3:-}"
    [[ -f "$OUT/eval-$name/report.json" ]] && return
    say "evaluating $name on $skills"
    local extra=()
    if [[ -n "$adapter" ]]; then extra=(--adapter "$adapter"); fi
    "$BASIS" eval --tasks "$TASKS" --repo-root "$REPO_ROOT" --split heldout --skills "${skills// /,}" \
        --samples "$K" --temperature 0.7 --seed "$SEED" --out "$OUT/eval-$name" \
        "${MODEL_ARGS[@]}" "${extra[@]}" >/dev/null
}

train() { # NAME SKILLS
    local name="$1" skills="$2"
    [[ -f "$OUT/run-$name/adapter/adapter_model.safetensors" ]] && return
    rm -rf "$OUT/run-$name"
    say "training $name on $skills"
    local start=$SECONDS
    "$BASIS" train --tasks "$TASKS" --repo-root "$REPO_ROOT" --skills "${skills// /,}" \
        --init-adapter "$OUT/run-sft/adapter" --steps "$STEPS" --tasks-per-step "$TASKS_PER_STEP" \
        --group-size "$GROUP" --max-new-tokens "$MAX_NEW_TOKENS" --lr "$LR" --seed "$SEED" \
        --run "$OUT/run-$name" "${MODEL_ARGS[@]}" 2>"$OUT/run-$name.log"
    echo $((SECONDS - start)) >"$OUT/run-$name/seconds"
}

evaluate base "$SKILLS"
if [[ ! -f "$OUT/run-sft/adapter/adapter_model.safetensors" ]]; then
    rm -rf "$OUT/run-sft"
    say "warm start"
    "$BASIS" train --tasks "$TASKS" --repo-root "$REPO_ROOT" --skills "${SKILLS// /,}" --sft \
        --sft-epochs "$SFT_EPOCHS" --sft-lr "$SFT_LR" --steps 0 --lr "$LR" --seed "$SEED" --run "$OUT/run-sft" \
        "${MODEL_ARGS[@]}" 2>"$OUT/run-sft.log"
fi
if [[ "$SFT_EPOCHS" == 0 && ! -f "$OUT/eval-sft/report.json" ]]; then
    # No warm start: its adapter is the base model, and so is its evaluation.
    cp -r "$OUT/eval-base" "$OUT/eval-sft"
fi
evaluate sft "$SKILLS" "$OUT/run-sft/adapter"
train joint "$SKILLS"
evaluate joint "$SKILLS" "$OUT/run-joint/adapter"
for s in ${SINGLE:-$SKILLS}; do
    train "single-$s" "$s"
    evaluate "single-$s" "$s" "$OUT/run-single-$s/adapter"
done

python3 - "$OUT" "$SKILLS" "$K" "$STEPS" "$TASKS_PER_STEP" "$GROUP" "$TASKS" "$SFT_EPOCHS" <<'EOF' | tee "$OUT/table.md"
import json, os, sys
out, skills, k, steps, per_step, group, tasks, sft_epochs = sys.argv[1], sys.argv[2].split(), *sys.argv[3:]
def report(name):
    with open(os.path.join(out, f"eval-{name}", "report.json")) as f:
        return json.load(f)["per_skill"]
base, sft, joint = report("base"), report("sft"), report("joint")
single = {s: report(f"single-{s}").get(s)
          if os.path.exists(os.path.join(out, f"eval-single-{s}", "report.json")) else None
          for s in skills}
def cell(d, s):
    return f"{d[s]['avg_at_k']:.3f}" if d and s in d else "n/a"
print(f"Held-out tasks of `{os.path.basename(tasks)}`, Avg@{k} (temperature 0.7); every RL run: "
      f"{steps} steps x {per_step} tasks x {group} samples from "
      f"{'the base model (no warm start)' if sft_epochs == '0' else 'the warm start'}.\n")
print(f"| skill | held-out tasks | base | warm start | joint RL | single-skill RL |")
print("|---|---|---|---|---|---|")
for s in skills:
    n = base[s]["tasks"] if s in base else 0
    one = single[s]
    print(f"| {s} | {n} | {cell(base, s)} | {cell(sft, s)} | {cell(joint, s)} | "
          f"{one['avg_at_k']:.3f} |" if one else f"| {s} | {n} | {cell(base, s)} | {cell(sft, s)} | {cell(joint, s)} | n/a |")
mean = lambda d: sum(d[s]["avg_at_k"] for s in skills if s in d) / max(1, sum(s in d for s in skills))
ran = [s for s in skills if single[s]]
singles = [single[s]["avg_at_k"] for s in ran]
partial = len(ran) < len(skills)
print(f"| **mean** | | {mean(base):.3f} | {mean(sft):.3f} | {mean(joint):.3f} | "
      f"{sum(singles) / max(1, len(singles)):.3f}{' (' + ', '.join(ran) + ')' if partial else ''} |")
if partial and ran:
    sub = lambda d: sum(d[s]["avg_at_k"] for s in ran if s in d) / len(ran)
    print(f"| **mean of {', '.join(ran)}** | | {sub(base):.3f} | {sub(sft):.3f} | {sub(joint):.3f} | "
          f"{sum(singles) / len(singles):.3f} |")
worse = [s for s in skills if s in joint and s in base and joint[s]["avg_at_k"] < base[s]["avg_at_k"]]
behind = [s for s in skills if single[s] and s in joint and joint[s]["avg_at_k"] < single[s]["avg_at_k"]]
print()
print(f"- joint RL below the base model on: {', '.join(worse) or 'no skill'}")
print(f"- joint RL below single-skill RL on: {', '.join(behind) or 'no skill'}")
secs = {}
for name in ["joint"] + [f"single-{s}" for s in skills]:
    p = os.path.join(out, f"run-{name}", "seconds")
    if os.path.exists(p):
        secs[name] = int(open(p).read())
print(f"- training wall time (s): " + ", ".join(f"{n} {v}" for n, v in secs.items()))
if "review" in skills:
    # What the review samples said against what was right (`basis eval`'s
    # verdicts): a model that says YES to everything scores 0.5 on a balanced
    # split without telling anything apart; balanced accuracy shows it.
    print("- review samples, said YES / NO / no verdict, on tasks whose answer is YES | NO (balanced accuracy):")
    for name in ["base", "sft", "joint", "single-review"]:
        p = os.path.join(out, f"eval-{name}", "report.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            v = json.load(f)["per_skill"].get("review", {}).get("verdicts")
        if not v:
            continue
        row = lambda s: f"{s['yes']} / {s['no']} / {s['neither']}"
        b = v["balanced_accuracy"]
        print(f"  - {name}: {row(v['on_yes'])} | {row(v['on_no'])} ({'n/a' if b is None else f'{b:.3f}'})")
EOF
