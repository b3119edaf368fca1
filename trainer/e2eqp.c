/* e2eqp.c: EfficientQAT's E2E-QP (spec 2.3, 3.4; EQ:main_e2e_qp.py): the integer codes and
 * zero points fixed, only the block linears' step sizes trained end to end on the language-
 * model loss. AdamW (weight decay 0) at --e2e-lr, linear warmup then cosine to 0, gradient-norm
 * clip. The codes are W's (W = w_hat is kept after every step), so the state needs no codes.
 * The model runs in its lean layout (model_make_lean): W is the forward's weights, and only the
 * step sizes have gradients and moments (plus one layer's dW scratch and the norms' gradients). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eq.h"
#include "formulas.h"

/* Block-linear weights: one code byte each. */
static size_t n_codes(const model *m)
{
    size_t n = 0;
    for (int k = 0; k < 4; k++) n += m->numel[model_linears[k].tensor];
    return n;
}

double e2eqp_state_bytes(const model *m)
{
    return model_arena_bytes(m, 1, m->scratch_threads) + (double)(n_codes(m) + 1);
}

double e2eqp_trainable(const model *m)
{
    double n = 0;
    for (int k = 0; k < 4; k++) n += (double)m->numel[model_linears[k].scale];
    return n;
}

/* The codes of W (= w_hat) under the current s and z. */
static void codes_from_w(const model *m, uint8_t *codes)
{
    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        size_t g = m->q.group_size > 0 && (size_t)m->q.group_size < C ? (size_t)m->q.group_size : C;
        for (int l = 0; l < m->s.n_layer; l++) {
            const float *w = m->p.t[ln->tensor] + (size_t)l * R * C;
            const float *s = m->p.t[ln->scale] + (size_t)l * ns, *z = m->p.t[ln->zero] + (size_t)l * ns;
            for (size_t r = 0; r < R; r++)
                for (size_t c = 0; c < C; c++) {
                    size_t si = r * (C / g) + c / g;
                    codes[at++] = (uint8_t)quant_code(m->q.kind, m->q.bits, w[r * C + c], s[si], z[si]);
                }
        }
    }
}

/* W = w_hat from the codes (in the lean layout W is also the forward's weights). */
static void dequant_all(model *m, const uint8_t *codes)
{
    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        for (int l = 0; l < m->s.n_layer; l++, at += R * C)
            quant_forward_codes(m->q.kind, m->q.bits, m->q.group_size, codes + at, m->p.t[ln->scale] + (size_t)l * ns,
                                m->p.t[ln->zero] + (size_t)l * ns,
                                m->p.t[ln->tensor] + (size_t)l * R * C, R, C);
    }
}

/* Layer l's step-size gradients from its block linears' dW (in the lean layout's one-layer
 * scratch, model_make_lean), while they are there. */
static void layer_ds(model *m, const uint8_t *codes, int l)
{
    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        float gs = quant_gscale(m->q.kind, m->q.bits, (double)R * C);
        quant_backward_codes(m->q.kind, m->q.bits, m->q.group_size, m->g.t[ln->tensor], codes + at + (size_t)l * R * C,
                             m->p.t[ln->zero] + (size_t)l * ns, m->g.t[ln->scale] + (size_t)l * ns, R, C, gs);
        at += m->numel[ln->tensor];
    }
}

/* model_backward without what E2E-QP does not train: no weight gradient of the tied
 * embedding/head (its dX product only) and no embedding rows; the first block's input is data.
 * Each layer's dW goes to the one-layer scratch and is reduced to ds at once (spec 3.4). */
static void e2e_backward(model *m, const uint8_t *codes, const uint16_t *tgt, int B, int T)
{
    int L = m->s.n_layer, D = m->s.d_model, V = m->s.vocab, N = B * T;
    model_acts *a = &m->a;
    size_t layer_w = 0;
    for (int k = 0; k < 4; k++) layer_w += m->numel[model_linears[k].tensor] / (size_t)L;
    layer_softmax_xent_backward(a->probs, tgt, N, V);
    layer_matmul_backward_rows(a->dln, NULL, a->probs, a->lnf, m->p.wte, N, D, V, NULL, 0, NULL);
    memset(a->dx, 0, (size_t)N * D * sizeof(float));
    layer_rmsnorm_backward(a->dx, m->g.lnf, a->dln, a->resid + (size_t)L * N * D, m->p.lnf, a->lnf_rstd, N, D);
    for (int l = L - 1; l >= 0; l--) {
        memset(m->dw_layer, 0, layer_w * sizeof(float)); /* the dW products accumulate */
        model_block_backward(m, l, a->resid + (size_t)l * N * D, a->dx, B, T, l > 0);
        layer_ds(m, codes, l);
    }
}

/* Forward, backward with the step sizes' gradients from the weight gradients (the block
 * linears' dW GEMMs are still issued: grouped scales need them). Returns the loss; *gn the
 * step sizes' norm. The forward reads W (= w_hat). */
static float step_grads(model *m, const uint8_t *codes, const uint16_t *inp, const uint16_t *tgt, double *gn)
{
    int B = m->B, T = m->T;
    m->qat = 1;
    m->qat_embed = 0;
    float loss = model_forward(m, inp, tgt, B, T);
    model_zero_grad(m);
    e2e_backward(m, codes, tgt, B, T);
    double ss = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        const float *g = m->g.t[ln->scale];
        for (size_t j = 0; j < m->numel[ln->scale]; j++) ss += (double)g[j] * g[j];
    }
    *gn = sqrt(ss);
    return loss;
}

/* Clip, then AdamW (weight decay 0, betas 0.9/0.999, eps 1e-8 as EQ's optimizer) on the
 * step sizes, in the model's moment slots. */
static void step_update(model *m, double lr, double gn, double clip, long t)
{
    float k = clip > 0 && gn > clip ? (float)(clip / gn) : 1.0f;
    float c1 = (float)(1.0 - pow(0.9, (double)t)), c2 = (float)(1.0 - pow(0.999, (double)t));
    for (int q = 0; q < 4; q++) {
        int i = model_linears[q].scale;
        float *p = m->p.t[i], *g = m->g.t[i], *mm = model_moment(m, m->m_mem, i), *vv = model_moment(m, m->v_mem, i);
        for (size_t j = 0; j < m->numel[i]; j++) {
            qf_adamw(&p[j], &mm[j], &vv[j], g[j] * k, (float)lr, 0.0f, 0.9f, 0.999f, 1e-8f, c1, c2);
            if (!(p[j] > 1e-8f)) p[j] = 1e-8f; /* a step size must stay positive */
        }
    }
}

/* HF's cosine with warmup (EQ's Trainer): linear warmup, then cosine from the peak to 0. */
static double e2e_lr(const eq_env *env, long step)
{
    double pk = env->c->eq.e2e_lr;
    long n = env->plan.n_e2e, w = env->plan.e2e_warm;
    if (step < w) return pk * (double)(step + 1) / (double)w;
    double p = n > w ? (double)(step - w) / (double)(n - w) : 0;
    return pk * 0.5 * (1.0 + cos(M_PI * p));
}

qp_status e2eqp_run(eq_env *env, qp_error *err)
{
    model *m = env->m;
    train_progress *pr = env->pr;
    const train_data *d = env->d;
    int B = m->B, T = m->T;
    /* no latent weights, their gradients or moments from here on (spec 3.4: the point of E2E-QP) */
    qp_status st = model_make_lean(m, err);
    if (st) return st;
    uint8_t *codes = malloc(n_codes(m) + 1);
    if (!codes) return qp_fail(err, QP_ERR_NOMEM, "out of memory for E2E-QP's codes");
    codes_from_w(m, codes);
    dequant_all(m, codes); /* the forward's weights exactly as every later step's */
    env->e2e_bytes = m->alloc_bytes + (double)(n_codes(m) + 1);
    double lim = env->c->diverge_loss > 0 ? env->c->diverge_loss : 3.0 * log((double)m->s.vocab) + 5.0;
    long n = env->plan.n_e2e, every = n / 20 > 0 ? n / 20 : 1;
    while (pr->e2e_step < n) {
        if (env->stop(env->ctx)) {
            qp_error e2 = {0};
            qp_status s2 = env->save(env->ctx, &e2);
            st = s2 ? qp_fail(err, s2, "%s", e2.msg)
                    : qp_fail(err, QP_ERR_INTERRUPTED, "E2E-QP stopped at step %lld of %ld", (long long)pr->e2e_step, n);
            break;
        }
        uint64_t span = d->n_train - (uint64_t)T; /* the step loop's sampling, on its RNG */
        for (int b = 0; b < B; b++) {
            uint64_t off = train_rng_next(&pr->rng) % span;
            memcpy(env->inp + (size_t)b * T, d->train + off, T * sizeof *env->inp);
            memcpy(env->tgt + (size_t)b * T, d->train + off + 1, T * sizeof *env->tgt);
        }
        uint64_t f0 = model_gemm_flops();
        double gn, lr = e2e_lr(env, pr->e2e_step);
        float loss = step_grads(m, codes, env->inp, env->tgt, &gn);
        if (!isfinite(loss) || !isfinite(gn) || loss > lim) {
            st = qp_fail(err, QP_ERR_DIVERGED, "E2E-QP training loss %g (limit %g; gradient norm %g) at step %lld "
                                               "of %ld; lower --e2e-lr", (double)loss, lim, gn, (long long)pr->e2e_step, n);
            break;
        }
        step_update(m, lr, gn, env->c->eq.e2e_grad_clip, (long)pr->e2e_step + 1);
        dequant_all(m, codes); /* W = w_hat: the codes stay W's */
        pr->flops_e2eqp += (double)(model_gemm_flops() - f0);
        pr->train_loss = isnan(pr->train_loss) ? loss : 0.9 * pr->train_loss + 0.1 * loss;
        pr->e2e_step++;
        (*env->steps_here)++;
        if (env->c->progress == 1 && (pr->e2e_step % every == 0 || pr->e2e_step == n))
            fprintf(stderr, "E2E-QP step %lld/%ld loss %.4f lr %.2e\n", (long long)pr->e2e_step, n, pr->train_loss, lr);
        env->maybe_save(env->ctx);
    }
    free(codes);
    return st;
}
