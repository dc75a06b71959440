#!/usr/bin/env python3
"""A smaller warm start for bench/train_experiment.sh (its SFT_TASKS): N training
tasks a skill from a task file, chosen by a seeded shuffle, written as a task file.

On 2 cores the warm start fits about one answer every 5 to 9 seconds with the
skills' 1-2k-token prompts, so a repository's ~150 training answers take 20 minutes
an epoch; the #28 experiment fitted 20 a skill (BENCHMARKS.md).

Usage: sft_subset.py TASKS OUT [N=20] [SEED=0] [SKILLS=localize,review]
"""
import json
import random
import sys

tasks_file, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
skills = (sys.argv[5] if len(sys.argv) > 5 else "localize,review").split(",")

tasks = [json.loads(line) for line in open(tasks_file) if line.strip()]
chosen = []
for skill in skills:
    train = [t for t in tasks if t["skill"] == skill and t.get("meta", {}).get("split") == "train"]
    random.Random(seed).shuffle(train)
    chosen += train[:n]
with open(out, "w") as f:
    for t in chosen:
        f.write(json.dumps(t) + "\n")
print(f"{out}: {len(chosen)} training tasks ({', '.join(skills)}, at most {n} each)", file=sys.stderr)
