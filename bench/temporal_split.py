#!/usr/bin/env python3
"""Join two mined task files into one with a split by time, for an experiment.

`basis tasks mine` splits by whole files and commits, so that no held-out task
shares a file or a commit with a training task. On a repository where nearly
every commit touches the same file (more-itertools' `more.py`) that split holds
out almost nothing. This one splits by time instead: the tasks mined from the
newest commits are held out, the tasks mined from a checkout of an older commit
are trained on, and a training task made from a commit that also made a
held-out task is dropped. Files are shared across the split; commits are not.

    basis tasks mine --repo REPO --out new.jsonl --holdout 0 --max-commits 400 ...
    git -C REPO worktree add ../repo-old "$(git -C REPO rev-list --first-parent HEAD | sed -n 200p)"
    basis tasks mine --repo ../repo-old --out old.jsonl --holdout 0 ...
    python3 bench/temporal_split.py new.jsonl old.jsonl --heldout-per-skill 20 --out tasks.jsonl

Held-out review tasks are taken half YES, half NO, so that answering one
verdict every time scores 0.5. The choice among the newest tasks is seeded.

`basis tasks mine` now falls back to a split by time by itself where the split
by files leaves a side short (commits apart, the newest held out; the tasks
mined from the tests, all at one commit, apart by function). This script stays
for the experiment in BENCHMARKS.md, whose training tasks come from a checkout
of an older commit.
"""
import argparse
import collections
import json
import random
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pick_heldout(tasks, per_skill, rng):
    by_skill = collections.defaultdict(list)
    for t in tasks:
        by_skill[t["skill"]].append(t)
    held = []
    for skill in sorted(by_skill):
        ts = by_skill[skill]
        if skill == "review":
            by_verdict = collections.defaultdict(list)
            for t in ts:
                by_verdict[t["reference"]["verdict"]].append(t)
            half = per_skill // 2
            for verdict in ("YES", "NO"):
                rng.shuffle(by_verdict[verdict])
                if len(by_verdict[verdict]) < half:
                    sys.exit(f"only {len(by_verdict[verdict])} new review tasks say {verdict}; "
                             f"--heldout-per-skill {per_skill} needs {half}")
                held += by_verdict[verdict][:half]
        else:
            rng.shuffle(ts)
            held += ts[:per_skill]
    return held


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("new", help="tasks mined from the newest commits (the held-out side)")
    ap.add_argument("old", help="tasks mined from a checkout of an older commit (the training side)")
    ap.add_argument("--heldout-per-skill", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    new, old = load(args.new), load(args.old)
    held = pick_heldout(new, args.heldout_per_skill, random.Random(args.seed))
    new_commits = {t["meta"]["commit"] for t in new}
    train = [t for t in old if t["meta"]["commit"] not in new_commits]
    for t in held:
        t["meta"]["split"] = "heldout"
    for t in train:
        t["meta"]["split"] = "train"
    with open(args.out, "w") as f:
        for t in held + train:
            f.write(json.dumps(t) + "\n")
    counts = collections.Counter((t["skill"], t["meta"]["split"]) for t in held + train)
    for (skill, split), n in sorted(counts.items()):
        print(f"{skill}\t{split}\t{n}")
    print(f"dropped {len(old) - len(train)} training task(s) made from a held-out commit")


if __name__ == "__main__":
    main()
