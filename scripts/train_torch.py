#!/usr/bin/python3
"""A PyTorch trainer that speaks qatplan's trainer contract (docs/sweep.md, "The trainer contract").

  qatplan sweep GRID -o RUNS --train-cmd "/usr/bin/python3 scripts/train_torch.py"

Takes the options `qatplan sweep` passes (those of `qatplan train`), trains the model of
scripts/torch_reference.py (byte-level Llama-style, the C trainer's quantizers) FP then QAT
(classic or fused schedule), evaluates the validation loss in nats/token and appends one
qatplan-run-v1 record line to --runs-out. Options it does not implement are ignored with a
warning on stderr; unknown ones are refused (exit 2). Exit status as `qatplan train`:
0 recorded, 3 diverged (record written), 2 bad input (nothing written), 1 other failures and
a run stopped by SIGTERM/SIGINT (state saved when --state is given, no record).
Dev script: Debian's python3-torch 1.13, no other packages; small CPU shapes.
"""
import json
import math
import os
import resource
import signal
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Model  # noqa: E402  (same forward and quantizers as the reference)

# option -> (kind, default); kind: s string, i int, f float, b flag
OPTS = {
    "--data": ("s", None), "--train-tokens": ("s", None), "--val-tokens": ("s", None),
    "--train-text": ("s", None), "--val-text": ("s", None), "--dataset": ("s", None),
    "--layers": ("i", 2), "--width": ("i", 64), "--heads": ("i", 2), "--kv-heads": ("i", 0),
    "--ffn": ("i", 0), "--context": ("i", 128), "--tokens": ("f", 1e6), "--qat-fraction": ("f", 0.2),
    "--batch": ("i", 16), "--bits": ("i", 4), "--quantizer": ("s", "auto"), "--schedule": ("s", "classic"),
    "--lr": ("f", 3e-3), "--qat-lr": ("f", None), "--qparam-lr-mult": ("f", 1.0), "--warmup-frac": ("f", 0.05), "--decay-frac": ("f", None),
    "--decay-shape": ("s", "linear"), "--min-lr-frac": ("f", 0.0), "--weight-decay": ("f", 0.1),
    "--grad-clip": ("f", 1.0), "--reset-optimizer": ("b", False), "--diverge-loss": ("f", None),
    "--seed": ("i", 1), "--threads": ("i", 2), "--eval-tokens": ("i", 65536), "--run-id": ("s", None),
    "--runs-out": ("s", None), "--state": ("s", None), "--resume": ("b", False),
    "--resume-if-exists": ("b", False), "--quiet": ("b", False), "--progress": ("b", False),
    "--params": ("f", None),
}
# accepted, not implemented: a warning, the run goes on
IGNORED = {"--checkpoint": "s", "--export-int": "s", "--save-every": "s", "--max-steps": "s",
           "--max-memory": "s", "--device": "s", "--precision": "s", "--group-size": "s", "--embed-bits": "s"}
# refused: the run would silently be another run
REFUSED = {"--init": "--init (start from a checkpoint) is not implemented here; use qatplan train"}
STOP = []


def die(code, msg):
    sys.stderr.write("train_torch: " + msg + "\n")
    sys.exit(code)


def parse(argv):
    o = {k[2:].replace("-", "_"): v[1] for k, v in OPTS.items()}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in IGNORED:
            if i + 1 >= len(argv):
                die(2, "%s needs a value" % a)
            if not (a == "--embed-bits" and argv[i + 1] == "0") and not (a == "--device" and argv[i + 1] in ("cpu", "auto")):
                sys.stderr.write("train_torch: warning: %s %s is not implemented here, ignored\n" % (a, argv[i + 1]))
            i += 2
            continue
        if a in REFUSED:
            die(2, REFUSED[a])
        if a not in OPTS:
            die(2, "unknown option '%s' (see docs/sweep.md, \"The trainer contract\")" % a)
        kind, key = OPTS[a][0], a[2:].replace("-", "_")
        if kind == "b":
            o[key] = True
            i += 1
            continue
        if i + 1 >= len(argv):
            die(2, "%s needs a value" % a)
        v = argv[i + 1]
        try:
            o[key] = int(v) if kind == "i" else float(v) if kind == "f" else v
        except ValueError:
            die(2, "%s %s: not a number" % (a, v))
        i += 2
    return o


def read_tokens(path):
    try:
        buf = open(path, "rb").read()
    except OSError as e:
        die(2, "%s: %s" % (path, e.strerror))
    if len(buf) < 128 or int.from_bytes(buf[:4], "little") != 0x4B4F5451:
        die(2, "%s: not a qatplan token file (make one with 'qatplan data prepare')" % path)
    hsize, vocab, n = (int.from_bytes(buf[8:12], "little"), int.from_bytes(buf[12:16], "little"),
                       int.from_bytes(buf[16:24], "little"))
    if vocab > 256:
        die(2, "%s: vocabulary %d; this trainer is byte-level (256)" % (path, vocab))
    ds = buf[40:104].split(b"\0")[0].decode("utf-8", "replace")
    return np.frombuffer(buf[hsize:hsize + 2 * n], dtype="<u2").astype(np.int64), ds


def load_data(o):
    def one(tok, text, what):
        if text:
            return np.frombuffer(open(text, "rb").read(), dtype=np.uint8).astype(np.int64), os.path.basename(text)
        if tok:
            return read_tokens(tok)
        die(2, "no %s data: give --data PREFIX (or --%s-tokens / --%s-text)" % (what, what, what))
    tr, ds = one(o["train_tokens"] or (o["data"] and o["data"] + ".train.tok"), o["train_text"], "train")
    va, _ = one(o["val_tokens"] or (o["data"] and o["data"] + ".val.tok"), o["val_text"], "val")
    if len(tr) < o["context"] + 2 or len(va) < o["context"] + 1:
        die(2, "too few tokens for --context %d" % o["context"])
    return torch.from_numpy(tr), torch.from_numpy(va), o["dataset"] or ds


def quantizer(o):
    q = o["quantizer"]
    b = o["bits"]
    if b >= 16:
        return "none"
    if q == "auto":
        q = "binary" if b == 1 else "seq" if b == 2 else "lsq"
    if q not in ("binary", "seq", "ternary", "lsq"):
        die(2, "--quantizer %s is not implemented here (binary, seq, ternary, lsq are)" % q)
    return q


def build(o, kind, gen):
    D, H, L = o["width"], o["heads"], o["layers"]
    Hkv = o["kv_heads"] or H
    F = o["ffn"] or ((8 * D + 2) // 3 + 7) // 8 * 8  # the C trainer's default: 8/3 d rounded up to 8
    o["kv_heads"], o["ffn"] = Hkv, F
    if D % H or (D // H) % 2 or H % Hkv:
        die(2, "--heads %d must divide --width %d with an even head size, --kv-heads %d divide --heads" % (H, D, Hkv))
    hd = D // H
    so = 0.02 / math.sqrt(2 * L)
    t = {"embed": torch.randn(256, D, generator=gen) * 0.02, "final_norm": torch.ones(D)}
    for l in range(L):
        p = "layers.%d." % l
        t[p + "attn_norm"], t[p + "mlp_norm"] = torch.ones(D), torch.ones(D)
        t[p + "wqkv"] = torch.randn(D + 2 * Hkv * hd, D, generator=gen) * 0.02
        t[p + "wo"] = torch.randn(D, D, generator=gen) * so
        t[p + "w13"] = torch.randn(2 * F, D, generator=gen) * 0.02
        t[p + "w2"] = torch.randn(D, F, generator=gen) * so
    meta = {"n_layer": L, "d_model": D, "n_head": H, "n_kv_head": Hkv, "d_ff": F, "vocab": 256,
            "quantizer": kind, "bits": o["bits"], "group_size": 0, "embed_bits": 0}
    m = Model(meta, t)
    m.mats = [k for k in t if k.split(".")[-1] in ("wqkv", "wo", "w13", "w2")]
    return m


def quant_init(m):
    """Step sizes from the current weights, per row (the C trainer's rules at the switch)."""
    qp = 2 ** (m.bits - 1) - 1
    for k in m.mats:
        w = m.p[k].detach().abs()
        s = w.mean(1) if m.kind == "binary" else w.amax(1) / (qp if m.kind == "lsq" else 1)
        m.p[k + ".scale"] = s.clamp_min(1e-8).requires_grad_(True)


def lr_at(step, n, peak, warm, decay, minf, sqrt_shape):
    if step < warm:
        return peak * (step + 1) / warm
    if decay > 0 and step >= n - decay:
        p = (step - (n - decay)) / decay
        return peak * (minf + (1 - minf) * (1 - (math.sqrt(p) if sqrt_shape else p)))
    return peak


def evaluate(m, val, T, n, qat):
    nseq = max(1, min(n, len(val) - 1) // T)
    idx = torch.arange(T + 1)[None, :] + T * torch.arange(nseq)[:, None]
    with torch.no_grad():
        return m.forward(val[idx.clamp_max(len(val) - 1)], qat).item()


def make_opt(m, o):
    """AdamW; decay on the matrices only; the step sizes (once they exist) in a group of their own."""
    scales = [k + ".scale" for k in m.mats if k + ".scale" in m.p]
    groups = [{"params": [m.p[k] for k in m.mats], "weight_decay": o["weight_decay"]},
              {"params": [v for k, v in m.p.items() if k not in m.mats and k not in scales], "weight_decay": 0.0}]
    if scales:
        groups.append({"params": [m.p[k] for k in scales], "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=o["lr"], betas=(0.9, 0.95), eps=1e-8)


def save_state(o, st):
    tmp = o["state"] + ".tmp"
    torch.save(st, tmp)
    os.replace(tmp, o["state"])


def append_record(path, rec):
    line = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
    if not path:
        sys.stdout.write(line.decode())
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_size > 0:  # a torn last line must not swallow ours
            with open(path, "rb") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        if os.write(fd, line) != len(line):
            die(1, "%s: short write" % path)
    finally:
        os.close(fd)


def phases(o, n):
    """(n_fp, n_qat, schedule name) for bits, fraction and schedule."""
    if o["bits"] >= 16:
        return n, 0, "fp-only"
    nq = int(round(o["qat_fraction"] * n))
    if nq == 0:
        return n, 0, "fp-only"
    if nq == n:
        return 0, n, "qat-only"
    return n - nq, nq, o["schedule"]


def run(o):
    if o["schedule"] not in ("classic", "fused"):
        die(2, "--schedule %s: use classic or fused" % o["schedule"])
    if o["bits"] not in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32):
        die(2, "--bits %d: use 1..8, 16 or 32" % o["bits"])
    torch.set_num_threads(max(1, o["threads"]))
    kind = quantizer(o)
    train, val, dataset = load_data(o)
    gen = torch.Generator().manual_seed(o["seed"])
    m = build(o, kind, gen)
    own = n_params(o)[0]
    if o["params"] is not None and abs(own - o["params"]) > 0.05 * o["params"]:
        # a grid's external model (docs/sweep.md) sized for N: say so, record the model's own count
        sys.stderr.write("train_torch: warning: --params %.0f asked, the model built from the other options has "
                         "%d parameters; the record says %d\n" % (o["params"], own, own))
    T, B = o["context"], o["batch"]
    n = max(1, int(round(o["tokens"] / (B * T))))
    n_fp, n_qat, sched = phases(o, n)
    fused = sched == "fused"
    dfrac = o["decay_frac"] if o["decay_frac"] is not None else (1.0 if fused else 0.2)
    div = o["diverge_loss"] if o["diverge_loss"] is not None else 3 * math.log(256) + 5
    opt = make_opt(m, o)
    step, loss_switch, t0 = 0, float("nan"), time.time()
    o["_ptq"], o["_t_switch"] = float("nan"), None  # loss_ptq; this process's time at the switch
    qlr = o["qat_lr"] if o["qat_lr"] else o["lr"]
    if o["state"] and (o["resume"] or (o["resume_if_exists"] and os.path.exists(o["state"]))):
        try:
            st = torch.load(o["state"])
        except Exception as e:  # noqa: BLE001 (any unreadable state)
            die(2, "%s: not a train_torch.py state (%s); delete it to start over" % (o["state"], e))
        if st.get("argv") != o["_key"]:
            die(2, "%s: saved with other settings; delete it to start over" % o["state"])
        step, loss_switch = st["step"], st["loss_switch"]
        o["_ptq"] = st.get("loss_ptq", float("nan"))
        for k, v in st["p"].items():
            m.p[k] = v.requires_grad_(True)
        opt = make_opt(m, o)
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
    if n_fp == 0 and n_qat and m.mats[0] + ".scale" not in m.p:  # qat-only: step sizes from the init
        quant_init(m)
        opt = make_opt(m, o)
        o["_ptq"], o["_t_switch"] = evaluate(m, val, T, o["eval_tokens"], True), time.time()
    while step < n:
        if STOP:
            if o["state"]:
                save_state(o, {"argv": o["_key"], "step": step, "loss_switch": loss_switch, "loss_ptq": o["_ptq"],
                               "p": {k: v.detach() for k, v in m.p.items()}, "opt": opt.state_dict(),
                               "gen": gen.get_state()})
            die(1, "stopped by a signal at step %d of %d%s" % (step, n, ", state saved" if o["state"] else ""))
        qat = step >= n_fp and n_qat > 0
        if qat and step == n_fp and n_fp > 0:
            loss_switch = evaluate(m, val, T, o["eval_tokens"], False)
            quant_init(m)
            if o["reset_optimizer"]:
                opt = make_opt(m, o)
            else:  # keep the weights' Adam moments, add the new step sizes
                opt.add_param_group({"params": [m.p[k + ".scale"] for k in m.mats], "weight_decay": 0.0})
            # the quantized loss before any QAT step (loss_ptq)
            o["_ptq"], o["_t_switch"] = evaluate(m, val, T, o["eval_tokens"], True), time.time()
        if fused:
            lr = lr_at(step, n, o["lr"], max(1, int(o["warmup_frac"] * n)), int(round(dfrac * n_qat)),
                       o["min_lr_frac"], o["decay_shape"] == "1-sqrt")
            if qat:  # the cooldown starts at --qat-lr
                lr = lr_at(step - n_fp, n_qat, qlr, 0, int(round(dfrac * n_qat)), o["min_lr_frac"],
                           o["decay_shape"] == "1-sqrt")
        else:
            ph, s0 = (n_qat, n_fp) if qat else (n_fp, 0)
            lr = lr_at(step - s0, ph, qlr if qat else o["lr"], max(1, int(o["warmup_frac"] * ph)),
                       int(round(dfrac * ph)), o["min_lr_frac"], o["decay_shape"] == "1-sqrt")
        scales = {id(m.p[k + ".scale"]) for k in m.mats if k + ".scale" in m.p}
        for g in opt.param_groups:  # step sizes: the phase's rate times --qparam-lr-mult
            g["lr"] = lr * (o["qparam_lr_mult"] if g["params"] and id(g["params"][0]) in scales else 1.0)
        off = torch.randint(0, len(train) - T - 1, (B,), generator=gen)
        loss = m.forward(train[off[:, None] + torch.arange(T + 1)[None, :]], qat)
        if not math.isfinite(loss.item()) or loss.item() > div:
            return finish(o, m, sched, n_fp, n_qat, B * T, dataset, float("nan"), loss_switch, t0,
                          "training loss %.4g at step %d (%s, lr %.3g)" % (loss.item(), step, "qat" if qat else "fp", lr), dfrac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(m.p.values()), o["grad_clip"])
        opt.step()
        with torch.no_grad():
            for k in m.mats:
                if k + ".scale" in m.p:
                    m.p[k + ".scale"].clamp_(min=1e-8)
        step += 1
        if not o["quiet"] and (step % max(1, n // 20) == 0 or step == n):
            sys.stderr.write("step %d/%d %s loss %.4f lr %.3g\n" % (step, n, "qat" if qat else "fp", loss.item(), lr))
    if sched == "fp-only" and kind != "none":
        quant_init(m)  # PTQ with the init rules for the final loss
    final = evaluate(m, val, T, o["eval_tokens"], kind != "none")
    return finish(o, m, sched, n_fp, n_qat, B * T, dataset, final, loss_switch, t0, "", dfrac)


def n_params(o):
    """(all parameters with the tied embedding, without it), as the C trainer counts them."""
    D, F, H, Hkv, L = o["width"], o["ffn"], o["heads"], o["kv_heads"], o["layers"]
    hd = D // H
    nonembed = L * (D * (D + 2 * hd * Hkv) + D * D + 3 * D * F + 2 * D) + D
    return nonembed + 256 * D, nonembed


def finish(o, m, sched, n_fp, n_qat, tps, dataset, loss, loss_switch, t0, reason, dfrac):
    D, F, H, Hkv, L = o["width"], o["ffn"], o["heads"], o["kv_heads"], o["layers"]
    nonembed = n_params(o)[1]
    rec = {"schema": "qatplan-run-v1", "run_id": o["run_id"] or "torch-%d-%d" % (os.getpid(), int(time.time())),
           "model": {"n_layer": L, "d_model": D, "n_head": H, "n_kv_head": Hkv, "d_ff": F,
                     "context": o["context"], "vocab": 256},
           "n_params": nonembed + 256 * D, "n_params_nonembed": nonembed, "d_fp": n_fp * tps, "d_qat": n_qat * tps,
           "bits": o["bits"], "quantizer": m.kind, "embed_bits": 0, "group_size": 0,
           "schedule": sched, "loss": loss if math.isfinite(loss) else None, "seed": str(o["seed"]),
           "dataset": dataset, "status": "diverged" if reason else "ok", "wall_seconds": round(time.time() - t0, 3),
           "code_version": "train_torch.py/torch-" + torch.__version__, "lr_peak": o["lr"], "batch_tokens": tps,
           "decay_frac": dfrac, "decay_shape": o["decay_shape"], "device": "cpu", "precision": "fp32",
           "gemm": "pytorch-%s cpu" % torch.__version__}  # qatplan's "gemm": the products' library
    n_train = sum(v.numel() for v in m.p.values())
    rec["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rec["train_state_bytes"] = 16 * n_train  # parameters, gradients, Adam m and v (fp32)
    if m.kind != "none":
        rec["method"] = "qat"
    if n_qat > 0:
        rec["lr_qat"] = o["qat_lr"] if o["qat_lr"] else o["lr"]
        rec["trainable_params_qat"] = n_train
        if math.isfinite(o["_ptq"]):
            rec["loss_ptq"] = o["_ptq"]
        if o["_t_switch"] is not None:
            rec["wall_seconds_qat"] = round(time.time() - o["_t_switch"], 3)
    if sched in ("classic", "fused"):
        rec["optimizer_reset"] = o["reset_optimizer"]
    if math.isfinite(loss_switch):
        rec["loss_fp_switch"] = loss_switch
    if math.isfinite(loss):
        rec["val_bpb"] = loss / math.log(2)
    if reason:
        rec["reason"] = reason
        del rec["loss"]
    append_record(o["runs_out"], rec)
    if o["state"] and os.path.exists(o["state"]):
        os.unlink(o["state"])
    if not o["quiet"]:
        sys.stderr.write("%s: %s\n" % (rec["run_id"], ("diverged: " + reason) if reason else "val loss %.4f nats/token" % loss))
    return 3 if reason else 0


def main():
    signal.signal(signal.SIGTERM, lambda *_: STOP.append(1))
    signal.signal(signal.SIGINT, lambda *_: STOP.append(1))
    o = parse(sys.argv[1:])
    # the settings a state must match on --resume (not where to write or how many threads)
    o["_key"] = sorted((k, str(v)) for k, v in o.items()
                       if k not in ("runs_out", "state", "resume", "resume_if_exists", "threads", "quiet", "progress"))
    if o["runs_out"] and os.path.isdir(o["runs_out"]):
        die(1, "--runs-out %s is a directory" % o["runs_out"])
    return run(o)


if __name__ == "__main__":
    sys.exit(main())
