/* memory.c: what a run needs in memory, and the limit it is checked against, so that an
 * impossible batch x context is refused with a message before the first allocation instead
 * of meeting the OOM killer halfway through zeroing the buffers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

int train_e2e_lean(const train_config *c)
{
    /* --init from a checkpoint: no FP step, and E2E-QP is the whole QAT phase */
    return c->method == TRAIN_METHOD_E2EQP && c->init_path && !c->init_state && c->quant.kind != TRAIN_Q_NONE;
}

double train_e2e_codes_bytes(const model *lay)
{
    size_t n = 1; /* e2eqp.c allocates one more */
    for (int k = 0; k < 4; k++) n += lay->numel[model_linears[k].tensor];
    return (double)n;
}

/* Bytes of one allocation of n floats as model.c makes it: at least one, rounded up to 64 bytes
 * (in double: impossible sizes must be refused, not wrapped). */
static double alloc_bytes(double n) { return ceil((n > 1 ? n : 1) * 4.0 / 64.0) * 64.0; }

void train_memory_need(const train_config *c, train_memory *out)
{
    model lay; /* the layout only: nothing is allocated */
    model_layout(&lay, &c->shape, &c->quant, c->batch, c->shape.context);
    double T = c->shape.context, B = c->batch;
    double hd = (double)(c->shape.d_model / c->shape.n_head);
    /* parameters, gradients, Adam m and v, quantized weights (model_create's families; E2E-QP
     * from a checkpoint: the lean layout's, and its code bytes) */
    int lean = train_e2e_lean(c);
    model_arena a;
    model_arena_of(&lay, lean, &a);
    out->params = alloc_bytes((double)a.params) + alloc_bytes((double)a.grads) + 2.0 * alloc_bytes((double)a.moments) +
                  alloc_bytes((double)a.qw);
    if (lean) out->params += train_e2e_codes_bytes(&lay);
    double acts[MODEL_NACTS];
    model_act_counts(&c->shape, c->batch, c->shape.context, acts);
    double na = 0;
    for (int i = 0; i < MODEL_NACTS; i++) na += ceil(acts[i] / 16.0) * 16.0;
    /* activations, RoPE tables, one T x T attention scratch per thread (model_arena_bytes) */
    out->acts = alloc_bytes(na) + 2.0 * alloc_bytes(floor(T * hd / 2.0)) + alloc_bytes((double)c->threads * T * T);
    /* batch buffers; a state is written from the model's buffers, its header and texts
     * (at most 2 x 64 KiB) from one of its own */
    if (c->precision == TRAIN_PREC_BF16 && c->device == TRAIN_DEVICE_CPU) {
        /* the step's kept bf16 copies (gemm.c, train_gemm_keep): the linear layers' forward
         * inputs (ln1, atty, ln2, hact per layer, lnf) and the weights they multiply */
        double D = c->shape.d_model, F = c->shape.d_ff, L = c->shape.n_layer;
        out->acts += 2.0 * (L * B * T * (3 * D + F) + B * T * D + (double)lay.n_qw);
    }
    out->other = 2.0 * 2.0 * B * T + (c->state_path ? 2.0 * 65536.0 + 1024.0 : 0.0);
    if (c->method == TRAIN_METHOD_EFQAT) {
        /* EfQAT (efqat.c): a code byte per quantized weight; per row a mask byte, an order
         * entry, a step size and an importance; the row-subset product's scratch for the
         * largest linear (the head, usually) and a gather mask (a bit per row of the tallest);
         * per thread a row of a linear's output and its partial sums (float) for the side jobs */
        double D = c->shape.d_model, F = c->shape.d_ff, V = c->shape.vocab, L = c->shape.n_layer, N = B * T;
        double QKV = D + 2 * hd * (c->shape.n_kv_head > 0 ? c->shape.n_kv_head : c->shape.n_head);
        double rows = L * (QKV + D + 2 * F + D) + V, codes = (double)lay.n_qw, rmax = QKV > 2 * F ? QKV : 2 * F;
        double gather = (N + D) * V;
        double lin[4][2] = {{QKV, D}, {D, D}, {2 * F, D}, {D, F}};
        for (int k = 0; k < 4; k++)
            if ((N + lin[k][1]) * lin[k][0] > gather) gather = (N + lin[k][1]) * lin[k][0];
        out->params += codes + rows * 17.0;
        out->acts += 4.0 * gather + 8.0 * c->threads * rmax + 2.0 * ceil((V > rmax ? V : rmax) / 16.0) + 1.0;
        if (c->state_path) out->other += codes + rows * 5.0;
    }
    out->total = out->params + out->acts + out->other;
}

/* A cgroup (v2, else v1) memory limit in bytes, 0 when none is set. */
static double cgroup_limit(void)
{
    static const char *files[] = {"/sys/fs/cgroup/memory.max",
                                  "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f) continue;
        char buf[64] = "";
        int ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        if (!ok || !strncmp(buf, "max", 3)) continue;
        char *end;
        double v = strtod(buf, &end);
        /* v1 reports "no limit" as a huge page-rounded number */
        if (end != buf && v > 0 && v < 0x1p62) return v;
    }
    return 0;
}

double train_memory_limit(const train_config *c, const char **what)
{
    if (c->max_memory > 0) {
        if (what) *what = "--max-memory";
        return c->max_memory;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double phys = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    double cg = cgroup_limit();
    if (cg > 0 && (phys <= 0 || cg < phys)) {
        if (what) *what = "the cgroup's memory limit";
        return cg;
    }
    if (what) *what = "the physical memory";
    return phys; /* 0: unknown, no check */
}
