#!/usr/bin/python3
"""PyTorch reference of qatplan's trainer model (dev script; Debian python3-torch 1.13).

Same architecture as trainer/model.c: byte-level Llama-style decoder, RMSNorm (eps 1e-5),
rotate-half RoPE (theta 10000), grouped KV heads, SwiGLU, tied embeddings, no biases, and
the same fake quantizers with the same straight-through gradients (binary / SEQ / LSQ /
asymmetric per group; embeddings LSQ per row when embed_bits > 0).

Usage:
  torch_reference.py --check FILE.safetensors [FILE ...]
      Each FILE holds the parameters, the C gradients ("grad.*"), "tokens" (int32 [B, T+1]),
      "loss" (the C loss) and "qat" (0/1), as written by tests/test_train_torch.c.
      Recomputes loss and gradients in float64 (quantizers in float32, as in C) and exits 1
      unless |loss_c - loss_t| <= 1e-6 * loss_t and, for every tensor,
      ||g_c - g_t|| <= 1e-5 * ||g_t|| + 1e-8 (measured: 5e-8 and 8e-7 at worst).
  torch_reference.py --check-bf16 FILE.safetensors [FILE ...]
      The same files written by qatplan with bf16 products (--precision bf16), against PyTorch
      in float32 under CPU bf16 autocast (its matrix products take bf16 inputs and give bf16
      outputs; qatplan's give fp32): loss within 1e-3 relative, each gradient within 4e-2.
  torch_reference.py --eval CKPT.safetensors --text FILE [--tokens N] [--quantized]
      Validation loss (nats/token) of a checkpoint on the first N+1 bytes of FILE, with the
      latent full-precision weights or (--quantized) the quantized ones; with the same N as
      `qatplan train --eval-tokens` it reproduces the run record's loss.

The safetensors files are parsed here (no safetensors package in Debian 12).
"""
import argparse
import json
import math
import sys

import numpy as np
import torch

# The reference's compute type: float64, or float32 under bf16 autocast (--check-bf16).
FT = torch.float64

DT = {"F32": np.float32, "I32": np.int32, "I8": np.int8, "U8": np.uint8, "F64": np.float64,
      "I64": np.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = int.from_bytes(buf[:8], "little")
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, v in header.items():
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[base + a:base + b], dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return meta, out


def grad_scaled(s, k):
    """Value s, gradient scaled by k (LSQ's step-size gradient scale)."""
    return s * k + (s - s * k).detach()


def fake_quant(kind, bits, group, w, s, z):
    """w [R, C] float32, s [R] or [R, C/G], z like s (asym). Returns w_hat [R, C]."""
    R, C = w.shape
    numel = R * C
    if kind == "asym":
        G = group if 0 < group < C else C
        wg = w.reshape(R, C // G, G)
        sg = s.reshape(R, C // G, 1)
        zg = z.reshape(R, C // G, 1)
        mx = float(2 ** bits - 1)
        zr = zg + (torch.round(torch.clamp(zg, 0.0, mx)) - zg).detach()
        qs = wg / sg
        pre = qs + (torch.round(qs) - qs).detach() + zr
        code = torch.clamp(pre, 0.0, mx)
        return ((code - zr) * sg).reshape(R, C)
    s = s.reshape(R, 1)
    if kind == "binary":
        sc = grad_scaled(s, 1.0 / math.sqrt(numel))
        mask = (torch.abs(w / s) <= 1.0).to(w.dtype).detach()
        sign = torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w)).detach()
        return sc * sign + (w * mask - (w * mask).detach())
    if kind in ("seq", "ternary"):
        L, sh = (1.5, 0.0) if kind == "ternary" else (2.0, 0.5)
        sc = grad_scaled(s, 1.0 / math.sqrt(numel))
        u = torch.clamp(w / sc, -0.99, 0.99)
        qv = (torch.round(u * L - sh) + sh) / L
        return sc * (u + (qv - u).detach())
    if kind == "lsq":
        qn, qp = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        sc = grad_scaled(s, 1.0 / math.sqrt(numel * qp))
        q = torch.clamp(w / sc, qn, qp)
        return sc * (q + (torch.round(q) - q).detach())
    raise ValueError("unknown quantizer " + kind)


class Model:
    def __init__(self, meta, tensors):
        self.L = int(meta["n_layer"])
        self.D = int(meta["d_model"])
        self.H = int(meta["n_head"])
        self.Hkv = int(meta["n_kv_head"])
        self.F = int(meta["d_ff"])
        self.V = int(meta["vocab"])
        self.kind = meta["quantizer"]
        self.bits = int(meta["bits"])
        self.group = int(meta["group_size"])
        self.embed_bits = int(meta["embed_bits"])
        self.hd = self.D // self.H
        self.p = {k: v.clone().requires_grad_(True) for k, v in tensors.items()
                  if not k.startswith("grad.") and v.dtype == torch.float32 and k not in ("loss",)}

    def weight(self, name, qat):
        w = self.p[name]
        if not qat or self.kind == "none":
            return w
        s = self.p[name + ".scale"]
        z = self.p.get(name + ".zero")
        return fake_quant(self.kind, self.bits, self.group, w, s, z)

    def forward(self, tokens, qat):
        B, T1 = tokens.shape
        T = T1 - 1
        inp, tgt = tokens[:, :-1].long(), tokens[:, 1:].long()
        D, H, Hkv, hd, F = self.D, self.H, self.Hkv, self.hd, self.F
        E = self.p["embed"]
        if qat and self.embed_bits > 0:
            E = fake_quant("lsq", self.embed_bits, 0, E, self.p["embed.scale"], None)
        E = E.to(FT)
        half = hd // 2
        j = torch.arange(half, dtype=FT)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * (10000.0 ** (-2.0 * j.double() / hd))[None, :]
        cos, sin = torch.cos(ang).float().to(FT), torch.sin(ang).float().to(FT)

        def rope(x):  # [B, T, h, hd]
            x1, x2 = x[..., :half], x[..., half:]
            c, s = cos[None, :, None, :], sin[None, :, None, :]
            return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

        def rms(x, g):
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g.to(FT)

        x = E[inp]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        for l in range(self.L):
            pre = "layers.%d." % l
            h = rms(x, self.p[pre + "attn_norm"])
            qkv = h @ self.weight(pre + "wqkv", qat).to(FT).t()
            q = rope(qkv[..., :D].reshape(B, T, H, hd))
            k = rope(qkv[..., D:D + Hkv * hd].reshape(B, T, Hkv, hd))
            v = qkv[..., D + Hkv * hd:].reshape(B, T, Hkv, hd)
            k = k.repeat_interleave(H // Hkv, dim=2)
            v = v.repeat_interleave(H // Hkv, dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, D)
            x = x + y @ self.weight(pre + "wo", qat).to(FT).t()
            h2 = rms(x, self.p[pre + "mlp_norm"])
            a = h2 @ self.weight(pre + "w13", qat).to(FT).t()
            g, u = a[..., :F], a[..., F:]
            x = x + (torch.nn.functional.silu(g) * u) @ self.weight(pre + "w2", qat).to(FT).t()
        logits = rms(x, self.p["final_norm"]) @ E.t()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, self.V), tgt.reshape(-1))


# Tolerances: (loss relative, gradient relative) for fp32 against float64, and for qatplan's bf16
# products against PyTorch's CPU bf16 autocast (docs/trainer.md, "Precision").
TOL = {False: (1e-6, 1e-5), True: (1e-3, 4e-2)}  # bf16 measured: 9e-5, 1.5e-2


def check(path, bf16=False):
    global FT
    FT = torch.float32 if bf16 else torch.float64
    meta, t = load_safetensors(path)
    model = Model(meta, t)
    qat = bool(int(t["qat"].reshape(-1)[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model.forward(t["tokens"], qat)
    loss = loss.float()
    loss.backward()
    loss_c = float(t["loss"].reshape(-1)[0])
    ok = True
    tl, tg = TOL[bf16]
    rel = abs(loss_c - loss.item()) / loss.item()
    print("loss: C %.7f torch%s %.7f relative difference %.2e (tolerance %g)" %
          (loss_c, " bf16 autocast" if bf16 else "", loss.item(), rel, tl))
    if not rel <= tl:
        ok = False
    worst = 0.0
    for name, p in model.p.items():
        gc = t.get("grad." + name)
        if gc is None:
            continue
        gt = p.grad if p.grad is not None else torch.zeros_like(p)
        err = torch.linalg.norm((gc.double() - gt.double()).reshape(-1)).item()
        ref = torch.linalg.norm(gt.double().reshape(-1)).item()
        r = err / (ref + 1e-30)
        worst = max(worst, r if ref > 1e-8 else 0.0)
        if not err <= tg * ref + 1e-8:
            print("gradient %s: relative error %.2e (|g| = %.3e)" % (name, r, ref))
            ok = False
    print("gradients: worst relative error %.2e over %d tensors (tolerance %g)" %
          (worst, sum(1 for k in model.p if "grad." + k in t), tg))
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


def evaluate(ckpt, text, n, quantized):
    meta, t = load_safetensors(ckpt)
    model = Model(meta, t)
    T = int(meta["context"])
    data = np.frombuffer(open(text, "rb").read()[:n + 1], dtype=np.uint8).astype(np.int32)
    nseq = (len(data) - 1) // T
    toks = torch.stack([torch.from_numpy(data[i * T:i * T + T + 1]) for i in range(nseq)])
    with torch.no_grad():
        loss = model.forward(toks, quantized)
    print("val loss %.6f nats/token over %d tokens (%s weights)" %
          (loss.item(), nseq * T, "quantized" if quantized else "full-precision"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", nargs="+")
    ap.add_argument("--check-bf16", nargs="+")
    ap.add_argument("--eval")
    ap.add_argument("--text")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--quantized", action="store_true", help="evaluate with the quantizers applied")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check or a.check_bf16:
        rc = 0
        for path in a.check or a.check_bf16:
            print("%s:" % path)
            rc |= check(path, bool(a.check_bf16))
        return rc
    if a.eval and a.text:
        return evaluate(a.eval, a.text, a.tokens, a.quantized)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
