"""Reference values for the GRPO arithmetic of trainer/src/grpo.rs, computed in
PyTorch with the formulas of TRL's GRPOTrainer (advantages centred per group and
scaled by the group's unbiased std + 1e-4; token-level clipped surrogate with
DAPO's asymmetric epsilons; k3 KL to a reference; the loss as the mean over all
completion tokens of the batch) on fixed, seeded inputs. Writes grpo.json beside
this script:

    python3 trainer/tests/reference/grpo_reference.py

The inputs are in the file too, so the Rust test needs nothing but the JSON.
"""

import json
import os

import torch

torch.manual_seed(20261130)
G = 4
EPS_LOW, EPS_HIGH, BETA = 0.2, 0.28, 0.04

cases = []
for scale in (True, False):
    groups = 3
    rewards = torch.tensor(
        [[1.0, 0.0, 0.0, 1.0], [0.0, 0.25, 1.0, 0.5], [1.0, 1.0, 0.0, 0.0]],
        dtype=torch.float64,
    )
    lengths = torch.randint(3, 9, (groups * G,)).tolist()
    T = max(lengths)
    mask = torch.zeros(groups * G, T, dtype=torch.float64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1.0
    old = -torch.rand(groups * G, T, dtype=torch.float64) * 3
    logp = (old + torch.randn(groups * G, T, dtype=torch.float64) * 0.3).requires_grad_(True)
    ref = old + torch.randn(groups * G, T, dtype=torch.float64) * 0.2

    mean = rewards.mean(dim=1, keepdim=True)
    adv = rewards - mean
    if scale:
        adv = adv / (rewards.std(dim=1, keepdim=True) + 1e-4)
    adv = adv.reshape(-1)

    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - EPS_LOW, 1 + EPS_HIGH)
    per_token = -torch.min(coef_1 * adv[:, None], coef_2 * adv[:, None])
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    per_token = per_token + BETA * kl
    loss = (per_token * mask).sum() / mask.sum()
    loss.backward()
    low = (coef_1 < 1 - EPS_LOW) & (adv[:, None] < 0)
    high = (coef_1 > 1 + EPS_HIGH) & (adv[:, None] > 0)
    clip_fraction = ((low | high).double() * mask).sum() / mask.sum()
    kl_mean = (kl * mask).sum() / mask.sum()

    def rows(t):
        return [t[i, :n].tolist() for i, n in enumerate(lengths)]

    cases.append({
        "scale_by_std": scale,
        "group_size": G,
        "eps_low": EPS_LOW, "eps_high": EPS_HIGH, "beta": BETA,
        "rewards": rewards.reshape(-1).tolist(),
        "old": rows(old.detach()),
        "logp": rows(logp.detach()),
        "ref": rows(ref),
        "advantages": adv.tolist(),
        "loss": loss.item(),
        "clip_fraction": clip_fraction.item(),
        "kl": kl_mean.item(),
        "grad_logp": rows(logp.grad),
    })

out = {
    "source": "trainer/tests/reference/grpo_reference.py (PyTorch %s, TRL's GRPO formulas)" % torch.__version__,
    "cases": cases,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpo.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
