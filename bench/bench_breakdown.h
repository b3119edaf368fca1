/* bench_breakdown.h: where a bf16 training step's time goes (bench_train --breakdown). The
 * linear layers' products are timed inside train_gemm (gemm.h's stats: the kernel, and the
 * conversions to bf16 apart); attention, norms, RoPE, SwiGLU, the loss and the optimizer are
 * timed by calling the same layer functions again on the step's own activations with the
 * model's shapes; "other" is the step's median minus all of these (residual adds, the
 * embedding rows, zeroing, the gradient norm). Header-only: each bench_*.c is one program. */
#ifndef BENCH_BREAKDOWN_H
#define BENCH_BREAKDOWN_H

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "model.h"

enum { BD_GEMM, BD_CONV, BD_ATT, BD_NORM, BD_ELEM, BD_LOSS, BD_OPT, BD_N };

/* Median-free mean over `steps` of each part's time per step, in ms. */
static inline void breakdown_parts(model *m, const train_config *c, const uint16_t *tgt, int B, int T,
                                   double *ms)
{
    int L = m->s.n_layer, D = m->s.d_model, F = m->s.d_ff, V = m->s.vocab, H = m->s.n_head;
    int Hkv = m->s.n_kv_head, hd = D / H, QKV = m->qkv_rows, N = B * T;
    model_acts *a = &m->a;
    float *tmp = malloc((size_t)N * (QKV > 2 * F ? QKV : 2 * F) * sizeof *tmp);
    float *rs = malloc((size_t)N * sizeof *rs), *sc = malloc((size_t)omp_get_max_threads() * T * T * 4);
    if (!tmp || !rs || !sc) {
        free(tmp), free(rs), free(sc);
        return;
    }
    double t0 = qp_now();
    for (int l = 0; l < L; l++) {
        float *qkv = a->qkv + (size_t)l * N * QKV, *att = a->att + (size_t)l * B * H * T * T;
        layer_attention_forward(a->atty + (size_t)l * N * D, att, qkv, B, T, H, Hkv, hd);
        memset(tmp, 0, (size_t)N * QKV * 4);
        layer_attention_backward(tmp, a->datty, att, qkv, B, T, H, Hkv, hd, sc);
    }
    ms[BD_ATT] = (qp_now() - t0) * 1e3;
    t0 = qp_now();
    for (int l = 0; l < 2 * L + 1; l++) {
        layer_rmsnorm_forward(tmp, rs, a->resid, m->p.lnf, N, D);
        layer_rmsnorm_backward(a->dln, m->g.lnf, tmp, a->resid, m->p.lnf, rs, N, D);
    }
    ms[BD_NORM] = (qp_now() - t0) * 1e3;
    t0 = qp_now();
    for (int l = 0; l < L; l++) {
        float *h13 = a->h13 + (size_t)l * N * 2 * F;
        layer_swiglu_forward(a->hact + (size_t)l * N * F, h13, N, F);
        layer_swiglu_backward(tmp, a->dhact, h13, N, F);
        layer_rope(a->qkv + (size_t)l * N * QKV, m->rope_cos, m->rope_sin, B, T, H, Hkv, hd, 1);
        layer_rope(a->qkv + (size_t)l * N * QKV, m->rope_cos, m->rope_sin, B, T, H, Hkv, hd, 0);
    }
    ms[BD_ELEM] = (qp_now() - t0) * 1e3;
    t0 = qp_now();
    layer_softmax_xent_forward(a->probs, a->losses, tgt, N, V);
    layer_softmax_xent_backward(a->probs, tgt, N, V);
    ms[BD_LOSS] = (qp_now() - t0) * 1e3;
    t0 = qp_now();
    train_update(m, c, 1e-3, 100, 1.0);
    ms[BD_OPT] = (qp_now() - t0) * 1e3;
    free(tmp), free(rs), free(sc);
}

static inline void bench_breakdown(const train_shape *s, int B, int steps)
{
    train_qspec q = {TRAIN_Q_NONE, 32, 0, 0};
    train_config c;
    train_config_default(&c);
    model m;
    qp_error err;
    int T = s->context;
    if (model_create(&m, s, &q, B, T, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return;
    }
    model_init(&m, 1);
    uint16_t *inp = malloc((size_t)B * T * 2), *tgt = malloc((size_t)B * T * 2);
    uint64_t st = 9;
    double total = 0, part[BD_N] = {0}, one[BD_N];
    train_gemm_set_bf16(1);
    for (int i = 0; i < steps + 2; i++) {
        for (int j = 0; j < B * T; j++) {
            inp[j] = (uint16_t)(train_rng_next(&st) % 256);
            tgt[j] = (uint16_t)(train_rng_next(&st) % 256);
        }
        train_gemm_stats g;
        train_gemm_stats_take(&g);
        train_gemm_stats_enable(i >= 2);
        double t0 = qp_now(), gn;
        train_forward_backward(&m, inp, tgt, B, T, &gn);
        train_update(&m, &c, 1e-3, i + 1, gn);
        double dt = qp_now() - t0;
        train_gemm_stats_enable(0);
        train_gemm_stats_take(&g);
        if (i < 2) continue;
        total += dt * 1e3;
        part[BD_GEMM] += (g.gemm_s - g.conv_s) * 1e3;
        part[BD_CONV] += g.conv_s * 1e3;
        memset(one, 0, sizeof one);
        breakdown_parts(&m, &c, tgt, B, T, one);
        for (int k = BD_ATT; k < BD_N; k++) part[k] += one[k];
    }
    train_gemm_set_bf16(0);
    const char *names[BD_N] = {"GEMM (linear layers, bf16)", "conversions to bf16", "attention (bf16 products)",
                               "RMSNorm fwd+bwd", "RoPE + SwiGLU fwd+bwd", "softmax + loss", "AdamW update"};
    double sum = 0;
    printf("  bf16 step breakdown %d,%d,%d: %.1f ms/step\n", s->n_layer, s->d_model, s->n_head, total / steps);
    for (int k = 0; k < BD_N; k++) {
        printf("    %-28s %8.1f ms %5.1f%%\n", names[k], part[k] / steps, 100 * part[k] / total);
        sum += part[k];
    }
    printf("    %-28s %8.1f ms %5.1f%%\n", "other", (total - sum) / steps, 100 * (total - sum) / total);
    free(inp), free(tgt);
    model_free(&m);
}

#endif
