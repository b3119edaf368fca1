/* bench_efqat.h: EfQAT's backward against full QAT (bench_train --efqat R,R,...; experiment E1
 * of seed-methods-spec 5.1). A 4-bit LSQ QAT model per shape with one EfQAT state (CWPL, rows
 * selected as at the switch) per unfrozen ratio R; the timed steps cycle through the ratios so
 * that every ratio sees the same load. A step is train_forward_backward's parts in order plus
 * train_update; "bwd" is model_backward + model_quant_backward (the STE; the frozen rows'
 * fixed-code step-size gradients ride on the passes that write each dY), the part EfQAT
 * shortens. After each repeat's steps the weight-gradient products alone (the four block
 * linears per layer and the head, dX skipped) are timed on the last step's activations, per
 * ratio through the trainer's row-subset path:
 * phi = dW(1) / bwd(1) predicts T_bwd(1) / T_bwd(R) = 1 / (1 - phi (1 - R)). Medians per repeat,
 * every repeat printed with the load average, the best (smallest) of each kept. Header-only:
 * each bench_*.c is one program. */
#ifndef BENCH_EFQAT_H
#define BENCH_EFQAT_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

enum { EFQ_MAXR = 16 };

/* The clock of the E1 timings: wall seconds (qp_now), or with --cpu-clock the process's CPU
 * seconds (both threads' work; waits for a core shared with other jobs are not counted, so
 * ratios measured on a loaded machine are steadier; the threads wait passively). */
static int efq_cpu_clock;
static inline double efq_now(void)
{
    if (!efq_cpu_clock) return qp_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int nr;
    double r[EFQ_MAXR];
    double bwd[EFQ_MAXR], step[EFQ_MAXR], dw[EFQ_MAXR]; /* best of the repeats' medians, ms */
} efq_result;

/* "1,0.5,..." into r[]; 0 and a message when a value is not in [0, 1] or there are too many. */
static inline int efq_parse_ratios(const char *s, double *r)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !(x >= 0 && x <= 1) || n == EFQ_MAXR || (*end && *end != ',')) {
            fprintf(stderr, "bench_train: --efqat takes up to %d unfrozen ratios in [0, 1], comma-separated "
                            "(e.g. 1,0.5,0.25,0.05,0); got '%s'\n", EFQ_MAXR, s);
            return 0;
        }
        r[n++] = x;
        p = *end ? end + 1 : end;
    }
    if (!n) fprintf(stderr, "bench_train: --efqat needs at least one ratio (e.g. 1,0.5,0.25,0.05,0)\n");
    return n;
}

/* The gradient norm as train_forward_backward computes it (train.c's is file-local): the same
 * reads of every gradient, so the step's work is the trainer's. */
static inline double efq_grad_norm(const model *m)
{
    double ss = 0.0;
    long n = (long)m->n_floats;
#pragma omp parallel for schedule(static) reduction(+ : ss)
    for (long j = 0; j < n; j++) ss += (double)m->grads_mem[j] * m->grads_mem[j];
    return sqrt(ss);
}

/* One training step; *bwd_s gets its backward's seconds. Returns the step's seconds. */
static inline double efq_step(model *m, const train_config *c, const uint16_t *inp, const uint16_t *tgt,
                              int64_t t, double *bwd_s)
{
    int B = m->B, T = m->T;
    double t0 = efq_now();
    model_quantize(m);
    model_forward(m, inp, tgt, B, T);
    model_zero_grad(m);
    double t1 = efq_now();
    model_backward(m, inp, tgt, B, T);
    model_quant_backward(m);
    *bwd_s = efq_now() - t1;
    train_update(m, c, 1e-4, t, efq_grad_norm(m));
    return efq_now() - t0;
}

/* The weight-gradient products of one backward alone (dX skipped), through the trainer's
 * row-subset path for m->efq's rows, on the activations left by the last step. Seconds. */
static inline double efq_dw_products(model *m)
{
    int L = m->s.n_layer, D = m->s.d_model, F = m->s.d_ff, V = m->s.vocab, QKV = m->qkv_rows;
    int N = m->B * m->T;
    model_acts *a = &m->a;
    double t0 = efq_now();
    for (int l = L - 1; l >= 0; l--) {
        const float *in[4] = {a->ln1 + (size_t)l * N * D, a->atty + (size_t)l * N * D, a->ln2 + (size_t)l * N * D,
                              a->hact + (size_t)l * N * F};
        const float *dout[4] = {a->dqkv, a->dx, a->dh13, a->dx};
        int R[4] = {QKV, D, 2 * F, D}, C[4] = {D, D, D, F};
        for (int k = 3; k >= 0; k--) {
            int i = model_linears[k].tensor;
            size_t off = (size_t)l * R[k] * C[k];
            efqat_linear_backward(m, k, l, NULL, m->g.t[i] + off, dout[k], in[k], m->p.t[i] + off, N, C[k], R[k]);
        }
    }
    efqat_linear_backward(m, 4, 0, NULL, m->g.wte, a->probs, a->lnf, m->p.wte, N, D, V);
    return efq_now() - t0;
}

static inline int efq_cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double efq_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, efq_cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One repeat: 1 warm-up and `steps` timed steps per ratio (cycling), then the dW products per
 * ratio (3 times each, cycling); medians into res (kept when smaller), each ratio printed. */
static inline void efq_repeat(model *m, efqat_state **st, efq_result *res, int steps, int rep, double (*load)(void))
{
    train_config c;
    train_config_default(&c);
    int B = m->B, T = m->T, nr = res->nr;
    uint16_t *inp = malloc((size_t)B * T * 2), *tgt = malloc((size_t)B * T * 2);
    double *tb = malloc((size_t)nr * 64 * sizeof *tb), *ts = malloc((size_t)nr * 64 * sizeof *ts);
    double *td = malloc((size_t)nr * 3 * sizeof *td);
    if (!inp || !tgt || !tb || !ts || !td) {
        fprintf(stderr, "bench_train: out of memory\n");
        exit(1);
    }
    uint64_t rng = 7 + (uint64_t)rep;
    for (int i = 0; i < nr * (steps + 1); i++) {
        int k = i % nr, j = i / nr - 1;
        m->efq = st[k];
        for (int n = 0; n < B * T; n++) {
            inp[n] = (uint16_t)(train_rng_next(&rng) % 256);
            tgt[n] = (uint16_t)(train_rng_next(&rng) % 256);
        }
        double b, s = efq_step(m, &c, inp, tgt, i + 1, &b);
        if (j >= 0) tb[k * 64 + j] = b, ts[k * 64 + j] = s;
    }
    for (int i = 0; i < 3 * nr; i++) {
        m->efq = st[i % nr];
        td[(i % nr) * 3 + i / nr] = efq_dw_products(m);
    }
    model_zero_grad(m);
    for (int k = 0; k < nr; k++) {
        double b = efq_median(tb + k * 64, steps) * 1e3, s = efq_median(ts + k * 64, steps) * 1e3;
        double d = efq_median(td + k * 3, 3) * 1e3;
        printf("  %d,%d,%d  repeat %d  R %-5g bwd %8.1f ms  step %8.1f ms  dW %7.1f ms  load %.2f\n",
               m->s.n_layer, m->s.d_model, m->s.n_head, rep + 1, res->r[k], b, s, d, load());
        if (b < res->bwd[k]) res->bwd[k] = b;
        if (s < res->step[k]) res->step[k] = s;
        if (d < res->dw[k]) res->dw[k] = d;
    }
    fflush(stdout);
    free(inp), free(tgt), free(tb), free(ts), free(td);
}

/* Shape s at every ratio: the model, one EfQAT state per ratio, `repeats` repeats. 0: done. */
static inline int efq_measure(const train_shape *s, efq_result *res, int steps, int repeats, double (*load)(void))
{
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, 0};
    model m;
    qp_error err;
    efqat_state *st[EFQ_MAXR] = {0};
    if (model_create(&m, s, &q, 16, s->context, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    model_init(&m, 1);
    model_quant_init(&m); /* as the trainer's switch: step sizes, then the selection */
    m.qat = 1;
    for (int k = 0; k < res->nr; k++) {
        m.efq = NULL;
        if (efqat_create(&m, res->r[k], TRAIN_EFQAT_CWPL, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            for (int j = 0; j < k; j++) m.efq = st[j], efqat_free(&m);
            model_free(&m);
            return 1;
        }
        efqat_select(&m);
        st[k] = m.efq;
        res->bwd[k] = res->step[k] = res->dw[k] = INFINITY;
    }
    for (int rep = 0; rep < repeats; rep++) efq_repeat(&m, st, res, steps, rep, load);
    for (int k = 0; k < res->nr; k++) m.efq = st[k], efqat_free(&m);
    model_free(&m);
    return 0;
}

/* The table of one shape: ratios against its R = 1 row (the first ratio 1 in the list). */
static inline void efq_print(const train_shape *s, const efq_result *res)
{
    int one = -1;
    for (int k = 0; k < res->nr; k++)
        if (res->r[k] == 1.0 && one < 0) one = k;
    printf("\n%d,%d,%d (%.2fM params), 4-bit LSQ, EfQAT CWPL, best of repeats:\n", s->n_layer, s->d_model, s->n_head,
           data_shape_params(s) / 1e6);
    if (one < 0) {
        printf("  (no R = 1 in the list: no ratios)\n");
        return;
    }
    double phi = res->dw[one] / res->bwd[one];
    printf("  phi = dW(1) / bwd(1) = %.1f / %.1f ms = %.3f\n", res->dw[one], res->bwd[one], phi);
    printf("  %-5s %8s %8s %8s %8s %9s %8s %8s %8s %8s %8s\n", "R", "bwd ms", "step ms", "bwd x", "pred x",
           "meas/pred", "step x", "dW ms", "dW/R.dW1", "parts x", "extra ms");
    for (int k = 0; k < res->nr; k++) {
        double r = res->r[k], mx = res->bwd[one] / res->bwd[k], px = 1.0 / (1.0 - phi * (1.0 - r));
        double parts = res->bwd[one] / (res->bwd[one] - res->dw[one] + res->dw[k]);
        double ov = r > 0 ? res->dw[k] / (r * res->dw[one]) : NAN;
        double extra = res->bwd[k] - (res->bwd[one] - res->dw[one] + res->dw[k]);
        printf("  %-5g %8.1f %8.1f %7.3fx %7.3fx %9.3f %7.3fx %8.1f %8.2f %7.3fx %8.1f\n", r, res->bwd[k],
               res->step[k], mx, px, mx / px, res->step[one] / res->step[k], res->dw[k], ov, parts, extra);
    }
}

static inline void efq_legend(void)
{
    printf("\nbwd = model_backward + model_quant_backward, step = a whole training step (medians, best repeat);\n"
           "bwd x = T_bwd(1) / T_bwd(R) measured; pred x = 1 / (1 - phi (1 - R)) with phi = the weight-gradient\n"
           "products' share of the R = 1 backward, measured in this run; step x = T_step(1) / T_step(R);\n"
           "dW ms = the weight-gradient products alone at R (the row subset with its own gather and scatter-add;\n"
           "in the backward the gather rides on the pass that writes dY); dW/R.dW1 = their cost over the ideal\n"
           "R share (1 = no overhead); parts x = T_bwd(1) / (T_bwd(1) - dW(1) + dW(R)), the speedup the measured\n"
           "dW(R) alone explains; extra ms = T_bwd(R) - (T_bwd(1) - dW(1) + dW(R)), backward time the dW products\n"
           "do not explain (the frozen rows' step-size sums, riding on the same passes, and the STE skipped for\n"
           "frozen rows, negative). The machine may be shared: compare ratios from one run, and the load\n"
           "averages above.\n");
}

#endif
