/* blockap.c: EfficientQAT's Block-AP (spec 2.2, 3.3; EQ:quantize/block_ap.py): each block in
 * turn trains its weights, norm gains, step sizes and zero points to match the FP block's
 * output (MSE) on calibration windows whose inputs come from the already-quantized blocks,
 * then is quantized in place. The FP teacher is kept in the model's first-moment slots
 * (efficientqat.c) so that a resume at a block boundary can rebuild the caches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "eq.h"
#include "formulas.h"

/* The block's trained tensors: group W (weights and the two norm gains), group Q (s, z). */
static const int blk_w[6] = {P_LN1, P_WQKV, P_WO, P_LN2, P_W13, P_W2};
static const int blk_q[8] = {P_S_QKV, P_S_O, P_S_13, P_S_2, P_Z_QKV, P_Z_O, P_Z_13, P_Z_2};

static size_t slice(const model *m, int i) { return m->desc[i].rows * m->desc[i].cols; }

static double block_floats(const model *m)
{
    double n = 0;
    for (int k = 0; k < 6; k++) n += (double)slice(m, blk_w[k]);
    for (int k = 0; k < 8; k++) n += (double)slice(m, blk_q[k]);
    return n;
}

double blockap_trainable(const model *m) { return block_floats(m); }

double blockap_state_bytes(const model *m, const eq_plan *p, int B, int T)
{
    (void)B;
    double D = m->s.d_model;
    /* three caches each for the calibration and validation windows, one block's moments */
    return 4.0 * (3.0 * (double)(p->n_cal + p->n_val) * T * D + 2.0 * block_floats(m));
}

/* The run's caches: inputs (FP and quantized prefix) and targets, calibration and validation. */
typedef struct {
    long n[2];            /* windows: 0 calibration, 1 validation */
    float *fp[2], *q[2], *t[2];
    float *mom, *vel;     /* one block's Adam moments (block_floats each) */
    float *y;             /* one batch's block output, then its gradient */
    uint16_t *tok;        /* windows' tokens: calibration then validation */
} bap;

static void bap_free(bap *b)
{
    for (int k = 0; k < 2; k++) {
        free(b->fp[k]);
        free(b->q[k]);
        free(b->t[k]);
    }
    free(b->mom);
    free(b->vel);
    free(b->tok);
    free(b->y);
}

/* Calibration windows from a seed-derived stream (independent of the batches' RNG, so that a
 * resume draws them again), validation windows from the start of the validation tokens. */
static qp_status bap_alloc(bap *b, const eq_env *env, qp_error *err)
{
    const model *m = env->m;
    size_t T = (size_t)env->c->shape.context, D = (size_t)m->s.d_model;
    b->n[0] = env->plan.n_cal;
    b->n[1] = env->plan.n_val;
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        size_t nf = (size_t)b->n[k] * T * D + 1;
        ok &= (b->fp[k] = malloc(nf * sizeof(float))) && (b->q[k] = malloc(nf * sizeof(float))) &&
              (b->t[k] = malloc(nf * sizeof(float)));
    }
    size_t nb = (size_t)block_floats(m);
    ok &= (b->mom = calloc(nb, sizeof(float))) && (b->vel = calloc(nb, sizeof(float))) &&
          (b->tok = malloc(((size_t)(b->n[0] + b->n[1]) * T + 1) * sizeof(uint16_t))) &&
          (b->y = malloc((size_t)m->B * T * D * sizeof(float)));
    if (!ok)
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for Block-AP's caches (%ld calibration and %ld "
                                          "validation windows); lower --blockap-tokens", b->n[0], b->n[1]);
    uint64_t rng = env->c->seed ^ 0x9E3779B97F4A7C15ull, span = env->d->n_train - T;
    for (long w = 0; w < b->n[0]; w++) {
        uint64_t off = train_rng_next(&rng) % span;
        memcpy(b->tok + (size_t)w * T, env->d->train + off, T * sizeof(uint16_t));
    }
    memcpy(b->tok + (size_t)b->n[0] * T, env->d->val, (size_t)b->n[1] * T * sizeof(uint16_t));
    return QP_OK;
}

/* The FP embedding of every window into fp and q (equal before the first block). */
static void bap_embed(bap *b, const model *m, int T)
{
    size_t D = (size_t)m->s.d_model;
    const uint16_t *tok = b->tok;
    for (int k = 0; k < 2; k++) {
        size_t n = (size_t)b->n[k] * T;
        for (size_t i = 0; i < n; i++) memcpy(b->fp[k] + i * D, m->p.wte + (size_t)tok[i] * D, D * sizeof(float));
        memcpy(b->q[k], b->fp[k], n * D * sizeof(float));
        tok += n;
    }
}

/* y = block l on every window of x, in batches of the model's B (the same batches every time:
 * a resume rebuilds the caches bit for bit). */
static void run_block(model *m, int l, const float *x, float *y, long n, int T)
{
    size_t stride = (size_t)T * m->s.d_model;
    for (long w = 0; w < n; w += m->B) {
        int b = (int)(n - w < m->B ? n - w : m->B);
        model_block_forward(m, l, x + (size_t)w * stride, y + (size_t)w * stride, b, T);
    }
}

/* The teacher's block l: the model with its parameter pointers on the FP copy. */
static void run_teacher(model *m, int l, const float *x, float *y, long n, int T)
{
    float *saved[MODEL_NT];
    memcpy(saved, m->p.t, sizeof saved);
    for (int i = 0; i < MODEL_NT; i++) m->p.t[i] = m->m_mem + m->off[i];
    run_block(m, l, x, y, n, T);
    memcpy(m->p.t, saved, sizeof saved);
}

static void swap(float **a, float **b)
{
    float *t = *a;
    *a = *b;
    *b = t;
}

/* Caches at the start of block k: FP inputs through the teacher's blocks 0..k-1, quantized
 * inputs through the (integer) student blocks 0..k-1. */
static void bap_rebuild(bap *b, model *m, int k, int T)
{
    bap_embed(b, m, T);
    m->qat = 0; /* the finished blocks' W are their w_hat */
    for (int l = 0; l < k; l++)
        for (int c = 0; c < 2; c++) {
            run_teacher(m, l, b->fp[c], b->t[c], b->n[c], T);
            swap(&b->fp[c], &b->t[c]);
            run_block(m, l, b->q[c], b->t[c], b->n[c], T);
            swap(&b->q[c], &b->t[c]);
        }
}

/* The fake-quantized weights of layer l (the forward reads them while m->qat). */
static void quantize_layer(model *m, int l)
{
    float *qw[4] = {m->qw.wqkv, m->qw.wo, m->qw.w13, m->qw.w2};
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        quant_forward(m->q.kind, m->q.bits, m->q.group_size, m->p.t[ln->tensor] + (size_t)l * R * C,
                      qw[k] + (size_t)l * R * C, R, C, m->p.t[ln->scale] + (size_t)l * ns,
                      m->p.t[ln->zero] + (size_t)l * ns);
    }
}

/* STE for layer l: gradients w.r.t. w_hat become those of W, s and z. */
static void ste_layer(model *m, int l)
{
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        size_t o = (size_t)l * R * C, os = (size_t)l * ns;
        quant_backward(m->q.kind, m->q.bits, m->q.group_size, m->p.t[ln->tensor] + o, m->g.t[ln->tensor] + o, R,
                       C, m->p.t[ln->scale] + os, m->p.t[ln->zero] + os, m->g.t[ln->scale] + os,
                       m->g.t[ln->zero] + os);
    }
}

/* Every trained tensor of block l: visit(slice of p, of g, length, group) in a fixed order. */
static void zero_block_grads(model *m, int l)
{
    for (int k = 0; k < 14; k++) {
        int i = k < 6 ? blk_w[k] : blk_q[k - 6];
        size_t n = slice(m, i);
        memset(m->g.t[i] + (size_t)l * n, 0, n * sizeof(float));
    }
}

/* AdamW (weight decay 0, PyTorch's betas 0.9/0.999 and eps 1e-8, as EQ) on block l. */
static void adam_block(model *m, int l, bap *b, double lr_w, double lr_q, long t)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = (float)(1.0 - pow(0.9, (double)t)), c2 = (float)(1.0 - pow(0.999, (double)t));
    size_t at = 0;
    for (int k = 0; k < 14; k++) {
        int i = k < 6 ? blk_w[k] : blk_q[k - 6];
        size_t n = slice(m, i);
        float *p = m->p.t[i] + (size_t)l * n, *g = m->g.t[i] + (size_t)l * n, lr = (float)(k < 6 ? lr_w : lr_q);
        for (size_t j = 0; j < n; j++) qf_adamw(&p[j], &b->mom[at + j], &b->vel[at + j], g[j], lr, 0.0f, b1, b2, eps, c1, c2);
        at += n;
    }
    size_t ns[4];
    for (int k = 0; k < 4; k++) ns[k] = slice(m, blk_q[k]);
    for (int k = 0; k < 4; k++) /* step sizes stay positive, as in the step loop */
        for (size_t j = 0; j < ns[k]; j++) {
            float *s = m->p.t[blk_q[k]] + (size_t)l * ns[k] + j;
            if (!(*s > 1e-8f)) *s = 1e-8f;
        }
}

/* Mean squared error of block l (quantized, m->qat) against t over n windows of x. */
static double val_mse(model *m, int l, const bap *b, int T)
{
    size_t stride = (size_t)T * m->s.d_model;
    double sum = 0;
    long n = b->n[1];
    for (long w = 0; w < n; w += m->B) {
        int bs = (int)(n - w < m->B ? n - w : m->B);
        model_block_forward(m, l, b->q[1] + (size_t)w * stride, b->y, bs, T);
        const float *t = b->t[1] + (size_t)w * stride;
        for (size_t j = 0; j < (size_t)bs * stride; j++) sum += ((double)b->y[j] - t[j]) * ((double)b->y[j] - t[j]);
    }
    return n > 0 ? sum / ((double)n * (double)stride) : NAN;
}

/* One training iteration on calibration windows [w0, w0 + bs): the batch's MSE. */
static double train_iter(model *m, int l, bap *b, long w0, int bs, int T, double lr_w, double lr_q, long t)
{
    size_t stride = (size_t)T * m->s.d_model, n = (size_t)bs * stride;
    const float *x = b->q[0] + (size_t)w0 * stride, *tg = b->t[0] + (size_t)w0 * stride;
    m->qat = 1;
    quantize_layer(m, l);
    model_block_forward(m, l, x, b->y, bs, T);
    double sum = 0;
    float k = (float)(2.0 / (double)n);
    for (size_t j = 0; j < n; j++) {
        float d = b->y[j] - tg[j];
        sum += (double)d * d;
        b->y[j] = k * d; /* d(mean square) / dy */
    }
    zero_block_grads(m, l);
    model_block_backward(m, l, x, b->y, bs, T, 0);
    ste_layer(m, l);
    adam_block(m, l, b, lr_w, lr_q, t);
    return sum / (double)n;
}

/* Block l back to its state at the block's start: the teacher's weights and gains, min-max
 * step sizes and zero points. */
static void restore_block(model *m, int l)
{
    for (int k = 0; k < 6; k++) {
        size_t n = slice(m, blk_w[k]);
        memcpy(m->p.t[blk_w[k]] + (size_t)l * n, m->m_mem + m->off[blk_w[k]] + (size_t)l * n, n * sizeof(float));
    }
}

static void init_block_qparams(model *m, int l)
{
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, ns = m->desc[ln->scale].rows;
        quant_init(m->q.kind, m->q.bits, m->q.group_size, m->p.t[ln->tensor] + (size_t)l * R * C, R, C,
                   m->p.t[ln->scale] + (size_t)l * ns, m->p.t[ln->zero] + (size_t)l * ns);
    }
}

/* Train block l (spec 3.3), quantize it in place and move the caches to the next block.
 * QP_ERR_INTERRUPTED (block l restored to its start) when asked to stop. */
static qp_status train_block(eq_env *env, bap *b, int l, double *mse, qp_error *err)
{
    model *m = env->m;
    const train_eq_config *q = &env->c->eq;
    int T = env->c->shape.context, B = m->B;
    m->qat = 0; /* targets: block l is still the teacher's */
    for (int c = 0; c < 2; c++) run_block(m, l, b->fp[c], b->t[c], b->n[c], T);
    init_block_qparams(m, l);
    size_t nb = (size_t)block_floats(m);
    memset(b->mom, 0, nb * sizeof(float));
    memset(b->vel, 0, nb * sizeof(float));
    m->qat = 1;
    quantize_layer(m, l);
    double before = val_mse(m, l, b, T), train = NAN;
    long per = (b->n[0] + B - 1) / B, iters = (long)env->plan.epochs * per;
    for (long it = 0; it < iters; it++) {
        if (env->stop(env->ctx)) {
            restore_block(m, l);
            init_block_qparams(m, l);
            return qp_fail(err, QP_ERR_INTERRUPTED, "Block-AP stopped in block %d of %d", l + 1, m->s.n_layer);
        }
        double cosf = 0.5 * (1.0 + cos(M_PI * (double)it / (double)iters)), f = q->blockap_min_lr_factor;
        double lw = q->blockap_weight_lr / f + (q->blockap_weight_lr - q->blockap_weight_lr / f) * cosf;
        double lq = q->blockap_qparam_lr / f + (q->blockap_qparam_lr - q->blockap_qparam_lr / f) * cosf;
        long w0 = (it % per) * B;
        int bs = (int)(b->n[0] - w0 < B ? b->n[0] - w0 : B);
        double e = train_iter(m, l, b, w0, bs, T, lw, lq, it + 1);
        if (!isfinite(e))
            return qp_fail(err, QP_ERR_DIVERGED, "Block-AP block %d: the training MSE is %g at iteration %ld; "
                                                 "lower --blockap-weight-lr or --blockap-qparam-lr", l + 1, e, it);
        train = it % per == 0 ? e : train + e; /* the last epoch's mean */
        if (it % per == per - 1) train /= (double)per;
        (*env->steps_here)++;
    }
    quantize_layer(m, l);
    *mse = val_mse(m, l, b, T);
    if (env->c->progress)
        fprintf(stderr, "Block-AP block %d/%d: validation MSE %.4g (min-max init %.4g), training MSE %.4g\n",
                l + 1, m->s.n_layer, *mse, before, train);
    eq_quant_inplace(m, l);
    m->qat = 0;
    for (int c = 0; c < 2; c++) {
        swap(&b->fp[c], &b->t[c]); /* the targets are the next FP inputs */
        run_block(m, l, b->q[c], b->t[c], b->n[c], T);
        swap(&b->q[c], &b->t[c]);
    }
    return QP_OK;
}

qp_status blockap_run(eq_env *env, qp_error *err)
{
    model *m = env->m;
    train_progress *pr = env->pr;
    bap b;
    memset(&b, 0, sizeof b);
    qp_status st = bap_alloc(&b, env, err);
    int L = m->s.n_layer;
    if (!st) bap_rebuild(&b, m, (int)pr->blockap_blocks, env->c->shape.context);
    while (!st && pr->blockap_blocks < L) {
        double mse = NAN;
        uint64_t f0 = model_gemm_flops();
        st = train_block(env, &b, (int)pr->blockap_blocks, &mse, err);
        if (st == QP_ERR_INTERRUPTED) {
            qp_error e2 = {0};
            qp_status s2 = env->save(env->ctx, &e2);
            if (s2) st = qp_fail(err, s2, "%s", e2.msg);
            break;
        }
        if (st) break;
        pr->flops_blockap += (double)(model_gemm_flops() - f0); /* whole blocks only: a resume redoes a block */
        pr->blockap_mse += mse;
        pr->blockap_blocks++;
        env->maybe_save(env->ctx);
    }
    struct rusage ru;
    if (!st && getrusage(RUSAGE_SELF, &ru) == 0) env->peak_rss_blockap = (double)ru.ru_maxrss * 1024.0;
    bap_free(&b);
    return st;
}
