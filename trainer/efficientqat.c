/* efficientqat.c: EfficientQAT's QAT phase as a whole (eq.h): what it refuses, how the QAT
 * budget splits into Block-AP calibration windows and E2E-QP steps, the order of the two
 * (each resumable), and the record's method fields. */
#include <math.h>
#include <string.h>

#include "eq.h"

static int uses_blockap(train_method m) { return m == TRAIN_METHOD_BLOCKAP || m == TRAIN_METHOD_EFFICIENTQAT; }
static int uses_e2e(train_method m) { return m == TRAIN_METHOD_E2EQP || m == TRAIN_METHOD_EFFICIENTQAT; }

/* The refusals of spec 3.5, each naming the option to change. */
static qp_status check_settings(const train_config *c, const train_sched *s, qp_error *err)
{
    const char *mn = train_method_name(c->method);
    if (c->quant.kind != TRAIN_Q_ASYM)
        return qp_fail(err, QP_ERR_INPUT, "--method %s quantizes with EfficientQAT's asymmetric quantizer: use "
                                          "--quantizer asym (or auto) and --bits 2..8", mn);
    if (c->quant.embed_bits > 0)
        return qp_fail(err, QP_ERR_INPUT, "--method %s keeps the embeddings and the head in full precision: "
                                          "use --embed-bits 0", mn);
    if (c->device == TRAIN_DEVICE_CUDA)
        return qp_fail(err, QP_ERR_UNSUPPORTED, "--method %s runs on --device cpu only so far; use "
                                                "--device cpu", mn);
    if (c->qparam_lr_mult != 1.0)
        return qp_fail(err, QP_ERR_INPUT, "--method %s has its own learning rates (--blockap-*-lr, --e2e-lr): "
                                          "drop --qparam-lr-mult", mn);
    if (!c->init_path && c->schedule == DATA_SCHED_FUSED)
        return qp_fail(err, QP_ERR_INPUT, "--method %s starts from a converged FP model: use --schedule "
                                          "classic, or --init CHECKPOINT", mn);
    if (!c->init_path && s->n_fp == 0)
        return qp_fail(err, QP_ERR_INPUT, "--method %s needs an FP model to start from: use --qat-fraction "
                                          "below 1, or --init CHECKPOINT", mn);
    if (s->n_qat == 0)
        return qp_fail(err, QP_ERR_INPUT, "--method %s needs a QAT phase: use --qat-fraction above 0 (or "
                                          "--init CHECKPOINT)", mn);
    if (c->method == TRAIN_METHOD_BLOCKAP && c->eq.e2e_tokens > 0)
        return qp_fail(err, QP_ERR_INPUT, "--e2e-tokens: --method blockap runs no E2E-QP; use --method "
                                          "efficientqat, or drop --e2e-tokens");
    if (c->method == TRAIN_METHOD_E2EQP && c->eq.blockap_tokens > 0)
        return qp_fail(err, QP_ERR_INPUT, "--blockap-tokens: --method e2eqp runs no Block-AP; use --method "
                                          "efficientqat, or drop --blockap-tokens");
    return QP_OK;
}

qp_status eq_check(const train_config *c, const train_sched *s, const train_data *d, eq_plan *p,
                   qp_error *err)
{
    memset(p, 0, sizeof *p);
    if (!train_method_is_eq(c->method)) return QP_OK;
    qp_status st = check_settings(c, s, err);
    if (st) return st;
    const train_eq_config *q = &c->eq;
    double T = c->shape.context, tps = (double)c->batch * T, d_qat = (double)s->n_qat * tps;
    double share = c->method == TRAIN_METHOD_BLOCKAP ? 1 : c->method == TRAIN_METHOD_E2EQP ? 0 : q->blockap_share;
    p->epochs = uses_blockap(c->method) ? q->blockap_epochs : 0;
    if (uses_blockap(c->method)) {
        /* the budget counts token passes: calibration tokens x epochs */
        double cal = q->blockap_tokens >= 0 ? q->blockap_tokens : (p->epochs > 0 ? share * d_qat / p->epochs : 0);
        p->n_cal = (long)floor(cal / T + 0.5);
        if (p->epochs > 0 && p->n_cal < 1)
            return qp_fail(err, QP_ERR_INPUT, "Block-AP gets %.0f calibration tokens, less than one window of "
                                              "--context %.0f: raise --blockap-tokens (or the QAT tokens, "
                                              "--blockap-share)", cal, T);
        /* the caches are beside the model: refuse what cannot fit before allocating it */
        const char *what;
        double lim = train_memory_limit(c, &what), need = 12.0 * (p->n_cal + 64.0) * T * c->shape.d_model;
        if (lim > 0 && need > lim)
            return qp_fail(err, QP_ERR_INPUT, "Block-AP's caches for %ld calibration windows need %.3g bytes, "
                                              "more than %s (%.3g); lower --blockap-tokens (or --blockap-share)",
                           p->n_cal, need, what, lim);
        long max_val = (long)((d->n_val - 1) / (uint64_t)T);
        p->n_val = q->blockap_val_tokens < 0 ? 64 : (long)floor(q->blockap_val_tokens / T + 0.5); /* EQ's 64 */
        if (p->n_val > max_val) p->n_val = max_val;
        if (p->n_val < 1) p->n_val = 1;
    }
    if (uses_e2e(c->method)) {
        double e2e = q->e2e_tokens >= 0 ? q->e2e_tokens : (1 - share) * d_qat;
        p->n_e2e = (long)floor(e2e / tps + 0.5);
        p->e2e_warm = (long)ceil(q->e2e_warmup_frac * (double)p->n_e2e);
    }
    p->blockap_tokens = (double)p->n_cal * T;
    p->e2e_tokens = (double)p->n_e2e * tps;
    return QP_OK;
}

void eq_quant_inplace(model *m, int l)
{
    float *qw[4] = {m->qw.wqkv, m->qw.wo, m->qw.w13, m->qw.w2};
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = m->desc[ln->tensor].rows, C = m->desc[ln->tensor].cols, o = (size_t)l * R * C;
        size_t ns = m->desc[ln->scale].rows;
        float *w = m->p.t[ln->tensor] + o, *wh = qw[k] + o;
        quant_forward(m->q.kind, m->q.bits, m->q.group_size, w, wh, R, C, m->p.t[ln->scale] + (size_t)l * ns,
                      m->p.t[ln->zero] + (size_t)l * ns);
        if (w != wh) memcpy(w, wh, R * C * sizeof *w); /* lean (model_make_lean): the same buffer */
    }
}

double eq_storage_bits(const model *m)
{
    double bits = 0, weights = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        double n = (double)m->numel[ln->tensor], ns = (double)m->numel[ln->scale];
        double nz = (double)m->numel[ln->zero];
        bits += n * m->q.bits + ns * 16 + nz * m->q.bits; /* codes, FP16 scales, b-bit zeros */
        weights += n;
    }
    return weights > 0 ? bits / weights : NAN;
}

/* Into E2E-QP: every block integer (W = w_hat: the codes are W's), fresh Adam moments. */
static void enter_e2e(eq_env *env)
{
    model *m = env->m;
    for (int l = 0; l < m->s.n_layer; l++) eq_quant_inplace(m, l);
    model_zero_moments(m);
    env->pr->eq_stage = EQ_STAGE_E2E;
    env->pr->e2e_step = 0;
}

qp_status eq_run(eq_env *env, qp_error *err)
{
    model *m = env->m;
    train_progress *pr = env->pr;
    train_method meth = env->c->method;
    qp_status st;
    if (pr->eq_stage == EQ_STAGE_NONE) {
        if (uses_blockap(meth)) {
            /* the teacher: the FP parameters at the switch, kept in the first-moment slots,
             * which Block-AP does not use (its moments are per block), so the state holds it */
            memcpy(m->m_mem, m->params_mem, m->n_floats * sizeof(float));
            memset(m->v_mem, 0, m->n_floats * sizeof(float));
            pr->eq_stage = EQ_STAGE_BLOCKAP;
            pr->blockap_blocks = 0;
        } else {
            enter_e2e(env);
        }
    }
    if (pr->eq_stage == EQ_STAGE_BLOCKAP) {
        if ((st = blockap_run(env, err))) return st;
        if (uses_e2e(meth)) enter_e2e(env);
        else pr->eq_stage = EQ_STAGE_DONE;
    }
    if (pr->eq_stage == EQ_STAGE_E2E) {
        if ((st = e2eqp_run(env, err))) return st;
        pr->eq_stage = EQ_STAGE_DONE;
    }
    m->qat = 1;
    return QP_OK;
}

void eq_fill_record(data_run *r, const eq_env *env)
{
    const train_config *c = env->c;
    const model *m = env->m;
    const eq_plan *p = &env->plan;
    const train_progress *pr = env->pr;
    snprintf(r->method, sizeof r->method, "%s", train_method_name(c->method));
    r->lr_qat = NAN; /* the method's own rates: --blockap-*-lr, --e2e-lr */
    if (uses_blockap(c->method)) {
        r->blockap_tokens = p->blockap_tokens;
        r->blockap_epochs = p->epochs;
        if (pr->blockap_blocks > 0) r->blockap_mse = pr->blockap_mse / (double)pr->blockap_blocks;
        r->flops_blockap = pr->flops_blockap;
        r->train_state_bytes_blockap = r->train_state_bytes + blockap_state_bytes(m, p, c->batch, c->shape.context);
        r->peak_rss_bytes_blockap = env->peak_rss_blockap;
    }
    if (uses_e2e(c->method)) {
        r->e2e_tokens = p->e2e_tokens;
        r->flops_e2eqp = pr->flops_e2eqp;
        /* as allocated (or, when E2E-QP ran in an earlier process, as it would be), with the
         * batch and state-writing buffers */
        train_memory need;
        train_memory_need(c, &need);
        r->train_state_bytes_e2eqp = (env->e2e_bytes > 0 ? env->e2e_bytes : e2eqp_state_bytes(m)) + need.other;
        if (train_e2e_lean(c)) r->train_state_bytes = r->train_state_bytes_e2eqp; /* the only phase */
    }
    if (isfinite(r->train_state_bytes_blockap) && r->train_state_bytes_blockap > r->train_state_bytes)
        r->train_state_bytes = r->train_state_bytes_blockap; /* the peak over the phases */
    if (isfinite(r->train_state_bytes_e2eqp) && r->train_state_bytes_e2eqp > r->train_state_bytes)
        r->train_state_bytes = r->train_state_bytes_e2eqp;
    /* token passes of the QAT phase: calibration tokens x epochs, plus E2E-QP's */
    r->d_qat = p->blockap_tokens * p->epochs + p->e2e_tokens;
    if (r->d_qat == 0) r->schedule = DATA_SCHED_FP_ONLY; /* no token passes: a PTQ model, as f = 0 records */
    r->flops_qat = pr->flops_blockap + pr->flops_e2eqp;
    double tp = uses_blockap(c->method) ? blockap_trainable(m) : 0, te = uses_e2e(c->method) ? e2eqp_trainable(m) : 0;
    r->trainable_params_qat = tp > te ? tp : te;
    r->storage_bits_per_weight = eq_storage_bits(m);
}
