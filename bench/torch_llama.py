#!/usr/bin/env python3
"""The PyTorch peer of `basis check-device`'s throughput check, in plain PyTorch
(no transformers, no PEFT: the GPU machine has PyTorch and nothing else): a
Llama-family model of the default model's shape (SmolLM2-135M: vocabulary
49152, width 576, 30 layers, 9 heads sharing 3 key/value heads, MLP 1536, tied
embeddings) with random weights, and the same update step: forward, the mean
negative log-likelihood of every next token, backward, AdamW; LoRA (rank 8,
alpha 16, on q/k/v/o, base weights frozen) or every weight. Same pseudo-random
token ids as basis (i * 2654435761 mod vocabulary). Prints one JSON line per
measurement, like `basis check-device`.

  python3 bench/torch_llama.py --device cuda --batches 4x512,16x512 --steps 3 [--peak-tflops 67]
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

V, D, FF, L, H, KV = 49152, 576, 1536, 30, 9, 3
HD = D // H


class Lora(torch.nn.Module):
    def __init__(self, base, r=8, alpha=16):
        super().__init__()
        self.base = base
        self.a = torch.nn.Parameter(torch.empty(r, base.in_features).uniform_(-1 / math.sqrt(base.in_features), 1 / math.sqrt(base.in_features)))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1 = torch.nn.RMSNorm(D, eps=1e-5)
        self.n2 = torch.nn.RMSNorm(D, eps=1e-5)
        self.q = torch.nn.Linear(D, H * HD, bias=False)
        self.k = torch.nn.Linear(D, KV * HD, bias=False)
        self.v = torch.nn.Linear(D, KV * HD, bias=False)
        self.o = torch.nn.Linear(H * HD, D, bias=False)
        self.gate = torch.nn.Linear(D, FF, bias=False)
        self.up = torch.nn.Linear(D, FF, bias=False)
        self.down = torch.nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, H, HD).transpose(1, 2)
        k = self.k(h).view(b, t, KV, HD).transpose(1, 2)
        v = self.v(h).view(b, t, KV, HD).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, D))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, D)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm = torch.nn.RMSNorm(D, eps=1e-5)
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        t = ids.shape[1]
        inv = 1.0 / (10000.0 ** (torch.arange(0, HD // 2, device=ids.device) / (HD // 2)))
        ang = torch.arange(t, device=ids.device)[:, None] * inv[None]
        cos, sin = ang.cos(), ang.sin()
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x) @ self.emb.weight.t()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", default="4x512,16x512")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--peak-tflops", type=float)
    args = p.parse_args()
    dev = torch.device(args.device)
    params = None
    for mode in ("lora", "full"):
        for spec in args.batches.split(","):
            b, s = (int(x) for x in spec.split("x"))
            torch.manual_seed(0)
            model = Model()
            params = params or sum(p.numel() for p in model.parameters())
            if mode == "lora":
                for p_ in model.parameters():
                    p_.requires_grad_(False)
                for blk in model.blocks:
                    for name in ("q", "k", "v", "o"):
                        setattr(blk, name, Lora(getattr(blk, name)))
            model.to(dev).train()
            trainable = [p_ for p_ in model.parameters() if p_.requires_grad]
            opt = torch.optim.AdamW(trainable, lr=1e-5)
            ids = torch.tensor([((i * 2654435761) & 0xFFFFFFFF) % V for i in range(b * (s + 1))], device=dev).view(b, s + 1)
            x, y = ids[:, :s], ids[:, 1:]
            times = []
            for step in range(args.steps + 1):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if step > 0:
                    times.append(time.perf_counter() - t0)
            secs = sum(times) / len(times)
            tok_s = b * s / secs
            achieved = tok_s * (6 if mode == "full" else 4) * params
            print(json.dumps({
                "impl": "pytorch", "check": "throughput", "mode": mode, "batch": b, "seq": s,
                "steps": args.steps, "secs_per_step": secs, "tok_per_s": tok_s,
                "model_flops_per_s": achieved,
                "mfu": achieved / (args.peak_tflops * 1e12) if args.peak_tflops else None,
                "torch": torch.__version__, "trainable": sum(p_.numel() for p_ in trainable),
                "tf32": torch.backends.cuda.matmul.allow_tf32,
            }), flush=True)
            del model, opt


if __name__ == "__main__":
    main()
