"""Reference values for the GRPO arithmetic of trainer/src/grpo.rs, computed in
PyTorch with the formulas of TRL's GRPOTrainer (advantages centred per group and
scaled by the group's unbiased std + 1e-4; token-level clipped surrogate with
DAPO's asymmetric epsilons; k3 KL to a reference; the loss as the mean over all
completion tokens of the batch) on fixed, seeded inputs. Writes grpo.json beside
this script:

    python3 trainer/tests/reference/grpo_reference.py

The last case starts from logits instead of log-probs: the policy's log-probs are
TRL's `selective_log_softmax(logits / temperature)` of the sampled tokens, and
the gradient is the loss's with respect to the logits.

The inputs are in the file too, so the Rust test needs nothing but the JSON.
"""

import json
import os

import torch

torch.manual_seed(20261130)
G = 4
EPS_LOW, EPS_HIGH, BETA = 0.2, 0.28, 0.04


def grpo(rewards, scale, old, logp, ref, mask):
    """TRL's GRPO loss on log-probs (rows, T); returns the loss and its parts."""
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
    low = (coef_1 < 1 - EPS_LOW) & (adv[:, None] < 0)
    high = (coef_1 > 1 + EPS_HIGH) & (adv[:, None] > 0)
    clip_fraction = ((low | high).double() * mask).sum() / mask.sum()
    kl_mean = (kl * mask).sum() / mask.sum()
    ratio_mean = (coef_1 * mask).sum() / mask.sum()
    return adv, loss, clip_fraction, kl_mean, ratio_mean


def case(scale, rewards, lengths, old, logp, ref, mask):
    def rows(t):
        return [t[i, :n].tolist() for i, n in enumerate(lengths)]

    adv, loss, clip_fraction, kl_mean, ratio_mean = grpo(rewards, scale, old, logp, ref, mask)
    return loss, {
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
        "ratio": ratio_mean.item(),
    }, rows


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
    loss, c, rows = case(scale, rewards, lengths, old, logp, ref, mask)
    loss.backward()
    c["grad_logp"] = rows(logp.grad)
    cases.append(c)

# From logits: (rows, T, V) at a sampling temperature, the sampled tokens' log-probs
# as TRL's selective_log_softmax takes them; behaviour and reference log-probs
# from nearby logits.
TEMPERATURE, V = 0.7, 11
groups = 2
rewards = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
lengths = torch.randint(2, 7, (groups * G,)).tolist()
T = max(lengths)
mask = torch.zeros(groups * G, T, dtype=torch.float64)
for i, n in enumerate(lengths):
    mask[i, :n] = 1.0
logits = (torch.randn(groups * G, T, V, dtype=torch.float64) * 2).requires_grad_(True)
targets = torch.randint(0, V, (groups * G, T))


def selective_log_softmax(l):
    return torch.log_softmax(l / TEMPERATURE, dim=-1).gather(-1, targets[..., None]).squeeze(-1)


logp = selective_log_softmax(logits)
old = selective_log_softmax(logits.detach() + torch.randn(groups * G, T, V, dtype=torch.float64) * 0.3)
ref = selective_log_softmax(logits.detach() + torch.randn(groups * G, T, V, dtype=torch.float64) * 0.2)
loss, c, rows = case(True, rewards, lengths, old, logp, ref, mask)
loss.backward()
c["temperature"] = TEMPERATURE
c["logits"] = [logits[i, :n].tolist() for i, n in enumerate(lengths)]
c["targets"] = rows(targets)
c["grad_logits"] = [logits.grad[i, :n].tolist() for i, n in enumerate(lengths)]
cases.append(c)

out = {
    "source": "trainer/tests/reference/grpo_reference.py (PyTorch %s, TRL's GRPO formulas)" % torch.__version__,
    "cases": cases,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpo.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
