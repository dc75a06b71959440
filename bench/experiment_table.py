#!/usr/bin/env python3
"""The table of bench/train_experiment.sh: each run's held-out score against the
base model's, paired task by task, from the runs' `basis eval` reports (their
`comparison`, whose intervals `basis eval` computes), and what the training
runs' metrics.jsonl say.

Usage: experiment_table.py OUT "SKILLS" TASKS SETTINGS
"""
import json
import os
import sys

out, skills, tasks, settings = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
ARMS = [("sft", "warm start"), ("joint", "joint RL")]


def load(name):
    p = os.path.join(out, f"eval-{name}", "report.json")
    return json.load(open(p)) if os.path.exists(p) else None


def seconds(name):
    p = os.path.join(out, f"{name}.seconds")
    return int(open(p).read()) if os.path.exists(p) else None


base = load("base")
arms = [(name, label, load(name)) for name, label in ARMS]
single = {s: load(f"single-{s}") for s in skills}


def interval(d):
    ci = d.get("ci95")
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "[n/a]"


def cell(report, key, skill=None):
    """`score (difference [95%])` of `report` against the base, for a skill
    (`key` is `per_skill` or `graded_per_skill`) or the mean."""
    if report is None:
        return "n/a"
    c = report.get("comparison") or {}
    d = c.get(key, {}).get(skill) if skill else c.get(key)
    if not d:
        return "n/a"
    flag = " **↑**" if d["ci95"] and d["ci95"][0] > 0 else " **↓**" if d["ci95"] and d["ci95"][1] < 0 else ""
    return f"{d['after']:.3f} ({d['difference']:+.3f} {interval(d)}){flag}"


def base_cell(key, skill=None):
    if skill:
        s = base["per_skill"].get(skill)
        if not s:
            return "n/a"
        v, ci = (s["avg_at_k"], s["ci95"]) if key == "per_skill" else (s["graded"], s["graded_ci95"])
    else:
        v, ci = (base["mean"], base["mean_ci95"]) if key == "mean" else (base["graded_mean"], base["graded_mean_ci95"])
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def gate_cell(name):
    p = os.path.join(out, f"eval-{name}", "gate.json")
    if not os.path.exists(p):
        return "n/a"
    g = json.load(open(p))
    ci = g["mean_ci95"]
    d = g["mean_after"] - g["mean_before"]
    said = "publish" if g["passed"] else "refuse"
    return (f"{g['mean_after']:.3f} against {g['mean_before']:.3f} ({d:+.3f} "
            f"{'[n/a]' if not ci else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'}): would {said}")


print(f"Held-out tasks of `{os.path.basename(tasks)}`; {settings}.")
print("A cell is the run's score (its difference from the base, paired by task, and the")
print("difference's 95% interval); ↑ / ↓: the interval lies above / below 0.\n")
for title, key, mean_key in [("binary (the paper's)", "per_skill", "mean"),
                              ("graded", "graded_per_skill", "graded_mean")]:
    print(f"**{title}**\n")
    print("| skill | held-out tasks | base [95%] | " + " | ".join(l for _, l in ARMS) + " | single-skill RL |")
    print("|---|---|---|" + "---|" * (len(ARMS) + 1))
    for s in skills:
        n = base["per_skill"].get(s, {}).get("tasks", 0)
        row = [cell(r, key, s) for _, _, r in arms] + [cell(single[s], key, s)]
        print(f"| {s} | {n} | {base_cell(key, s)} | " + " | ".join(row) + " |")
    row = [cell(r, mean_key) for _, _, r in arms]
    print(f"| **mean** | | {base_cell(mean_key)} | " + " | ".join(row) + " | |")
    if key == "per_skill":
        # The publish gate's mean: review by balanced accuracy (`basis eval`'s gate.json).
        row = [gate_cell(name) for name, _, _ in arms]
        print(f"| **mean as the gate judges it** (review by balanced accuracy) | | | " + " | ".join(row) + " | |")
    print()

if "review" in skills:
    print("**review, balanced accuracy** (a constant verdict scores 0.5); samples said"
          " YES / NO / neither on tasks whose answer is YES | NO\n")
    print("| run | balanced accuracy | difference from the base [95%] | on YES tasks | on NO tasks |")
    print("|---|---|---|---|---|")
    for name, label, r in [("base", "base", base)] + arms + [("single-review", "single-skill RL", single.get("review"))]:
        if r is None or "review" not in r["per_skill"]:
            continue
        v = r["per_skill"]["review"]["verdicts"]
        said = lambda x: f"{x['yes']} / {x['no']} / {x['neither']}"
        d = (r.get("comparison") or {}).get("review_balanced_accuracy")
        diff = f"{d['difference']:+.3f} {interval(d)}" if d else ""
        ba = v["balanced_accuracy"]
        print(f"| {label} | {'n/a' if ba is None else f'{ba:.3f}'} | {diff} | {said(v['on_yes'])} | {said(v['on_no'])} |")
    print()

if "localize" in skills:
    print("**localize against retrieval alone**: the files the model named (exact set, the skill's"
          " reward), its ranking (the files it named first, then retrieval's) and retrieval's"
          " ranking, exact at |reference|; `basis localize` answers with retrieval's ranking"
          " unless an evaluation measured the model's better\n")
    print("| run | named by the model | the model's ranking | retrieval's ranking | ranking difference [95%] |")
    print("|---|---|---|---|---|")
    for name, label, r in [("base", "base", base)] + arms + [("single-localize", "single-skill RL", single.get("localize"))]:
        s = (r or {}).get("per_skill", {}).get("localize")
        if not s or not s.get("rankings"):
            continue
        rk, d = s["rankings"], s.get("model_minus_retrieval")
        diff = f"{d['difference']:+.3f} {interval(d)}" if d else ""
        print(f"| {label} | {s['avg_at_k']:.3f} | {rk['model_exact_at_ref']:.3f} | "
              f"{rk['retrieval_exact_at_ref']:.3f} | {diff} |")
    print()

print("**the runs** (a group is a task's samples; one whose rewards are all equal carries no advantage)\n")
print("| run | seconds | groups | without variance | extra draws | training reward by step | validation by step (best kept) |")
print("|---|---|---|---|---|---|---|")
for name in ["sft", "joint"] + [f"single-{s}" for s in skills]:
    p = os.path.join(out, f"run-{name}", "metrics.jsonl")
    if not os.path.exists(p):
        continue
    lines = [json.loads(l) for l in open(p) if l.strip()]
    steps = [l for l in lines if "step" in l and l.get("kind") is None and "groups" in l]
    val = [l for l in lines if l.get("kind") == "validation"]
    groups = sum(l["groups"] for l in steps)
    flat = sum(l["skipped_groups"] for l in steps)
    draws = sum(l.get("extra_draws", 0) for l in steps)
    rewards = ", ".join(f"{l['reward']:.2f}" for l in steps)
    best = json.load(open(os.path.join(out, f"run-{name}", "best", "best.json"))) if os.path.exists(
        os.path.join(out, f"run-{name}", "best", "best.json")) else None
    vals = ", ".join(f"{v['step']}: {v['score']:.3f}" for v in val)
    if best:
        vals += f" (step {best['step']})"
    print(f"| {name} | {seconds('run-' + name) or ''} | {groups} | {flat} | {draws} | {rewards} | {vals} |")
evals = {n: seconds(f"eval-{n}") for n in ["base", "sft", "joint"] + [f"single-{s}" for s in skills]}
print("\nEvaluation seconds: " + ", ".join(f"{n} {v}" for n, v in evals.items() if v is not None))
