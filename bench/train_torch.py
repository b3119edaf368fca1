#!/usr/bin/python3
"""PyTorch (Debian python3-torch 1.13) training-step timing of the same architecture as
qatplan's trainer: Llama-style byte model (RMSNorm, rotate-half RoPE, SwiGLU, tied
embeddings, no biases), fp32, AdamW, gradient clipping. Called by bench/bench_train.c, which
sets OPENBLAS_CORETYPE=SkylakeX, OMP_WAIT_POLICY=PASSIVE and the thread count.

Prints one line: "torch ms_per_step MEDIAN tokens_per_s X" (median over --steps timed steps
after --warmup steps).

--precision bf16: autocast to bf16 (bf16 matrix products, fp32 master weights; on the CPU
through PyTorch's bundled oneDNN), for bench_train's bf16 columns.

GPU reference for bench/bench_train_cuda.c: --device cuda, with --precision fp32 (TF32 off,
as qatplan's fp32 mode) or bf16, and --compile for torch.compile. Steps are timed with
torch.cuda.synchronize().
"""
import argparse
import contextlib
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.g = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.g


class Block(nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.h, self.hd = h, d // h
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.w13 = nn.Linear(d, 2 * ff, bias=False)
        self.w2 = nn.Linear(ff, d, bias=False)
        self.ff = ff

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        q, k, v = self.qkv(self.n1(x)).split(D, dim=-1)
        q = q.view(B, T, self.h, self.hd).transpose(1, 2)
        k = k.view(B, T, self.h, self.hd).transpose(1, 2)
        v = v.view(B, T, self.h, self.hd).transpose(1, 2)
        half = self.hd // 2

        def rope(t):
            t1, t2 = t[..., :half], t[..., half:]
            return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], dim=-1)

        q, k = rope(q), rope(k)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        g, u = self.w13(self.n2(x)).split(self.ff, dim=-1)
        return x + self.w2(F.silu(g) * u)


class Model(nn.Module):
    def __init__(self, L, d, h, ff, V, T):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.blocks = nn.ModuleList([Block(d, h, ff) for _ in range(L)])
        self.nf = RMSNorm(d)
        hd = d // h
        j = torch.arange(hd // 2, dtype=torch.float32)
        ang = torch.arange(T, dtype=torch.float32)[:, None] * (10000.0 ** (-2 * j / hd))[None]
        self.register_buffer("cos", torch.cos(ang))
        self.register_buffer("sin", torch.sin(ang))
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, idx, tgt):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.nf(x) @ self.emb.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--ffn", type=int, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if a.device == "cuda":
        # fp32 means fp32: no TF32 in the products, as qatplan's fp32 mode
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    m = Model(a.layers, a.width, a.heads, a.ffn, 256, a.context).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    step_model = torch.compile(m) if a.compile else m
    bf16 = a.precision == "bf16"

    def sync():
        if a.device == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(a.warmup + a.steps):
        idx = torch.randint(0, 256, (a.batch, a.context), device=dev)
        tgt = torch.randint(0, 256, (a.batch, a.context), device=dev)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(a.device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = step_model(idx, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    print("torch ms_per_step %.2f tokens_per_s %.1f" % (med * 1e3, a.batch * a.context / med))


if __name__ == "__main__":
    main()
