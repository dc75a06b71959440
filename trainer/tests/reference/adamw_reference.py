"""Reference values for the trainer's optimizer step (trainer/src/policy.rs,
`Policy::step`), computed with PyTorch's own pieces: gradients clipped by
`torch.nn.utils.clip_grad_norm_` (max norm 1), `torch.optim.AdamW` (weight
decay 0.01, betas (0.9, 0.999), eps 1e-8) and a `LambdaLR` schedule of linear
warmup (2 steps) and cosine decay to zero (over 6 steps), for 6 steps on four
tensors shaped like the rank-1 LoRA adapters of a 2-layer, 32-wide model's
q_proj. Parameters and gradients are fixed formulas, so the JSON holds all the
Rust test needs:

    python3 trainer/tests/reference/adamw_reference.py
"""

import json
import math
import os

import torch

NAMES = [
    ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", (1, 32)),
    ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", (32, 1)),
    ("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", (1, 32)),
    ("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", (32, 1)),
]
STEPS, WARMUP, LR = 6, 2, 0.05


def initial(k, n):
    return [0.1 * math.sin(0.37 * i + k) for i in range(n)]


def grad(k, step, n):
    # Large on the first steps (clipped), small later (not clipped).
    scale = 3.0 if step < 2 else 0.05
    return [scale * math.cos(0.7 * i + 1.3 * k + step) for i in range(n)]


params = [
    torch.nn.Parameter(torch.tensor(initial(k, math.prod(shape)), dtype=torch.float32).view(shape))
    for k, (_, shape) in enumerate(NAMES)
]
opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def schedule(step):
    if step < WARMUP:
        return (step + 1) / WARMUP
    done = min(step - WARMUP, STEPS - WARMUP) / (STEPS - WARMUP)
    return 0.5 * (1 + math.cos(math.pi * done))


sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
steps = []
for step in range(STEPS):
    for k, p in enumerate(params):
        p.grad = torch.tensor(grad(k, step, p.numel()), dtype=torch.float32).view(p.shape)
    grads = [p.grad.flatten().tolist() for p in params]
    norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
    lr = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    steps.append({
        "grads": grads,
        "grad_norm": norm,
        "lr": lr,
        "params": [p.detach().flatten().tolist() for p in params],
    })

out = {
    "torch": torch.__version__,
    "config": {"lr": LR, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
               "max_grad_norm": 1.0, "warmup_steps": WARMUP, "total_steps": STEPS},
    "names": [n for n, _ in NAMES],
    "shapes": [list(s) for _, s in NAMES],
    "initial": [initial(k, math.prod(s)) for k, (_, s) in enumerate(NAMES)],
    "steps": steps,
}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "adamw.json"), "w") as f:
    json.dump(out, f)
