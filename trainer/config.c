/* config.c: shapes, quantizer choices, defaults and the warmup-stable-decay schedule. */
#include <math.h>
#include <string.h>

#include "model.h"

qp_status train_shape_finish(train_shape *s, qp_error *err)
{
    if (s->n_layer < 1 || s->n_layer > 256)
        return qp_fail(err, QP_ERR_INPUT, "--layers %d: use 1..256", s->n_layer);
    if (s->d_model < 2 || s->d_model > 65536)
        return qp_fail(err, QP_ERR_INPUT, "--width %d: use 2..65536", s->d_model);
    if (s->n_head < 1 || s->d_model % s->n_head)
        return qp_fail(err, QP_ERR_INPUT, "--heads %d must divide --width %d", s->n_head, s->d_model);
    if ((s->d_model / s->n_head) % 2)
        return qp_fail(err, QP_ERR_INPUT,
                       "head size %d (width/heads) must be even for rotary positions; change --heads",
                       s->d_model / s->n_head);
    if (s->n_kv_head == 0) s->n_kv_head = s->n_head;
    if (s->n_kv_head < 1 || s->n_head % s->n_kv_head)
        return qp_fail(err, QP_ERR_INPUT, "--kv-heads %d must divide --heads %d", s->n_kv_head,
                       s->n_head);
    if (s->d_ff == 0) {
        /* Llama's 2/3 * 4d, rounded up to a multiple of 8 */
        int f = (8 * s->d_model + 2) / 3;
        s->d_ff = (f + 7) / 8 * 8;
    }
    if (s->d_ff < 1) return qp_fail(err, QP_ERR_INPUT, "--ffn %d must be positive", s->d_ff);
    if (s->context < 2 || s->context > 65536)
        return qp_fail(err, QP_ERR_INPUT, "--context %d: use 2..65536 tokens", s->context);
    if (s->vocab == 0) s->vocab = 256;
    if (s->vocab < 2 || s->vocab > 65536)
        return qp_fail(err, QP_ERR_INPUT, "vocabulary %d: must be 2..65536", s->vocab);
    return QP_OK;
}

static const char *fnames[TRAIN_EFQAT_COUNT_] = {"cwpl", "cwpn", "lwpn"};

const char *train_method_name(train_method m) { return data_method_name(m); }

qp_status train_method_parse(const char *name, train_method *out, qp_error *err)
{
    if (!data_method_parse(name, out, NULL)) return QP_OK;
    return qp_fail(err, QP_ERR_INPUT, "--method %s: use " DATA_METHOD_LIST, name);
}

int train_method_is_eq(train_method m)
{
    return m == TRAIN_METHOD_BLOCKAP || m == TRAIN_METHOD_E2EQP || m == TRAIN_METHOD_EFFICIENTQAT;
}

const char *train_efqat_mode_name(train_efqat_mode m)
{
    return (m >= 0 && m < TRAIN_EFQAT_COUNT_) ? fnames[m] : "?";
}

qp_status train_efqat_mode_parse(const char *name, train_efqat_mode *out, qp_error *err)
{
    for (int i = 0; i < TRAIN_EFQAT_COUNT_; i++)
        if (!strcmp(name, fnames[i])) {
            *out = (train_efqat_mode)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_INPUT, "--efqat-mode %s: use cwpl, cwpn or lwpn", name);
}

static const char *qnames[TRAIN_Q_COUNT_] = {"none", "binary", "ternary", "seq", "lsq", "asym"};

const char *train_quantizer_name(train_quantizer q)
{
    return (q >= 0 && q < TRAIN_Q_COUNT_) ? qnames[q] : "?";
}

qp_status train_quantizer_parse(const char *name, int bits, train_quantizer *out, qp_error *err)
{
    if (data_bits_is_fp(bits)) {
        *out = TRAIN_Q_NONE;
        if (!strcmp(name, "auto") || !strcmp(name, "none")) return QP_OK;
        return qp_fail(err, QP_ERR_INPUT, "--quantizer %s with --bits %d: a full-precision run has "
                                          "no quantizer; drop --quantizer or choose --bits 1..8",
                       name, bits);
    }
    if (!strcmp(name, "auto")) {
        *out = bits == 1 ? TRAIN_Q_BINARY : bits == 2 ? TRAIN_Q_SEQ : TRAIN_Q_LSQ;
        return QP_OK;
    }
    for (int i = 1; i < TRAIN_Q_COUNT_; i++)
        if (!strcmp(name, qnames[i])) {
            *out = (train_quantizer)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_INPUT,
                   "unknown --quantizer '%s': use auto, binary, ternary, seq, lsq or asym", name);
}

qp_status train_qspec_check(const train_qspec *q, const train_shape *s, qp_error *err)
{
    if (!data_bits_valid(q->bits))
        return qp_fail(err, QP_ERR_INPUT, "--bits %d: use 1..8 for QAT, or 16/32 for full precision",
                       q->bits);
    switch (q->kind) {
    case TRAIN_Q_NONE:
        if (!data_bits_is_fp(q->bits)) return qp_fail(err, QP_ERR_INPUT, "--bits %d needs a quantizer", q->bits);
        if (q->embed_bits)
            return qp_fail(err, QP_ERR_INPUT, "--embed-bits %d with --bits %d: a full-precision run "
                                              "keeps the embeddings in FP; drop --embed-bits",
                           q->embed_bits, q->bits);
        break;
    case TRAIN_Q_BINARY:
        if (q->bits != 1) return qp_fail(err, QP_ERR_INPUT, "--quantizer binary needs --bits 1");
        break;
    case TRAIN_Q_TERNARY:
    case TRAIN_Q_SEQ:
        if (q->bits != 2)
            return qp_fail(err, QP_ERR_INPUT, "--quantizer %s needs --bits 2 (use lsq for 3..8)",
                           train_quantizer_name(q->kind));
        break;
    case TRAIN_Q_LSQ:
        if (q->bits < 3)
            return qp_fail(err, QP_ERR_INPUT, "--quantizer lsq needs --bits 3..8 (use binary or seq "
                                              "below 3)");
        break;
    case TRAIN_Q_ASYM:
        if (q->bits < 2)
            return qp_fail(err, QP_ERR_INPUT, "--quantizer asym needs --bits 2..8");
        if (q->group_size > 0 && (s->d_model % q->group_size || s->d_ff % q->group_size))
            return qp_fail(err, QP_ERR_INPUT,
                           "--group-size %d must divide --width %d and --ffn %d (or use 0 = per row)",
                           q->group_size, s->d_model, s->d_ff);
        break;
    default:
        return qp_fail(err, QP_ERR_INPUT, "unknown quantizer");
    }
    if (q->group_size < 0) return qp_fail(err, QP_ERR_INPUT, "--group-size must be >= 0");
    if (q->group_size > 0 && q->kind != TRAIN_Q_ASYM)
        return qp_fail(err, QP_ERR_INPUT, "--group-size applies to --quantizer asym only");
    if (q->embed_bits != 0 && (q->embed_bits < 4 || q->embed_bits > 8))
        return qp_fail(err, QP_ERR_INPUT, "--embed-bits %d: use 0 (full precision) or 4..8",
                       q->embed_bits);
    return QP_OK;
}

void train_config_default(train_config *c)
{
    memset(c, 0, sizeof *c);
    c->shape = (train_shape){2, 64, 2, 0, 0, 128, 256};
    c->quant = (train_qspec){TRAIN_Q_LSQ, 4, 0, 0};
    c->schedule = DATA_SCHED_CLASSIC;
    c->tokens = 1e6;
    c->qat_fraction = 0.2;
    c->batch = 16;
    c->lr = 3e-3;
    c->qparam_lr_mult = 1.0;
    c->unfrozen = -1.0; /* not given: 0.05 for efqat (job check) */
    c->min_lr_frac = 0.0;
    c->warmup_frac = 0.05;
    c->decay_frac = -1.0;
    c->weight_decay = 0.1;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->adam_eps = 1e-8;
    c->grad_clip = 1.0;
    c->seed = 1;
    c->threads = 2;
    c->eval_tokens = 65536;
    c->save_every_seconds = TRAIN_SAVE_EVERY_DEFAULT;
    c->progress = 1;
    c->eq = (train_eq_config){-1, -1, 0.5, 2, 1e-5, 1e-4, 20, -1, 2e-5, 0.03, 0.3}; /* val -1: 64 windows */
}

qp_status train_config_check(const train_config *c, qp_error *err)
{
    if (c->batch < 1) return qp_fail(err, QP_ERR_INPUT, "--batch %d: use at least 1 sequence", c->batch);
    if (!(c->lr > 0 && c->lr < 1)) return qp_fail(err, QP_ERR_INPUT, "--lr %g: use a value in (0, 1)", c->lr);
    if (!(c->qat_lr >= 0 && c->qat_lr < 1))
        return qp_fail(err, QP_ERR_INPUT, "--qat-lr %g: use a value in (0, 1)", c->qat_lr);
    if (!(c->qparam_lr_mult > 0 && c->qparam_lr_mult <= 1000))
        return qp_fail(err, QP_ERR_INPUT, "--qparam-lr-mult %g: use a value in (0, 1000]", c->qparam_lr_mult);
    if (c->threads < 1) return qp_fail(err, QP_ERR_INPUT, "--threads %d: use at least 1", c->threads);
    double tps = (double)c->batch * c->shape.context;
    if (tps > TRAIN_MAX_STEP_TOKENS)
        return qp_fail(err, QP_ERR_INPUT, "--batch %d x --context %d = %.0f tokens per step: at most "
                                          "%.0f (2^31 - 1); use a smaller --batch or --context",
                       c->batch, c->shape.context, tps, TRAIN_MAX_STEP_TOKENS);
    if (!(c->tokens > 0 && c->tokens <= TRAIN_MAX_TOKENS))
        return qp_fail(err, QP_ERR_INPUT, "--tokens %g: use 1 to %g tokens", c->tokens, TRAIN_MAX_TOKENS);
    if (!(c->eval_tokens > 0 && c->eval_tokens <= TRAIN_MAX_TOKENS))
        return qp_fail(err, QP_ERR_INPUT, "--eval-tokens %g: use 1 to %g tokens (more than the "
                                          "validation file holds means all of it)",
                       c->eval_tokens, TRAIN_MAX_TOKENS);
    if (c->save_every_steps < 0 || !(c->save_every_seconds >= 0 && c->save_every_seconds <= 1e9))
        return qp_fail(err, QP_ERR_INPUT, "--save-every: use a step count, a time such as 10m, or 0 "
                                          "for no periodic saves");
    if (!(c->max_memory >= 0 && c->max_memory < 1e18))
        return qp_fail(err, QP_ERR_INPUT, "--max-memory %g: use a size such as 16GiB", c->max_memory);
    if (c->resume && !c->state_path)
        return qp_fail(err, QP_ERR_USAGE, "--resume needs --state FILE");
    return QP_OK;
}

static long lround_pos(double x) { return x <= 0 ? 0 : (long)floor(x + 0.5); }

qp_status train_sched_make(const train_config *c, train_sched *s, qp_error *err)
{
    memset(s, 0, sizeof *s);
    double tps = (double)c->batch * c->shape.context;
    /* before the conversion to a step count: 1e30 tokens must not become a garbage long */
    if (!(c->tokens <= TRAIN_MAX_TOKENS))
        return qp_fail(err, QP_ERR_INPUT, "--tokens %g: at most %g tokens", c->tokens, TRAIN_MAX_TOKENS);
    if (!(c->tokens >= tps))
        return qp_fail(err, QP_ERR_INPUT,
                       "--tokens %.0f is less than one step (batch %d x context %d = %.0f tokens)",
                       c->tokens, c->batch, c->shape.context, tps);
    if (!(c->qat_fraction >= 0 && c->qat_fraction <= 1))
        return qp_fail(err, QP_ERR_INPUT, "--qat-fraction %g: use 0..1", c->qat_fraction);
    s->total = lround_pos(c->tokens / tps);
    if (s->total < 1) s->total = 1;
    int fp_run = c->quant.kind == TRAIN_Q_NONE;
    /* --init CHECKPOINT: the FP phase was the checkpoint's; these tokens are all QAT. --init
     * STATE (a branch) runs this point's own schedule from the state's step on. */
    double f = c->init_path && !c->init_state ? 1.0 : c->qat_fraction;
    s->n_qat = fp_run ? 0 : lround_pos(f * (double)s->total);
    if (s->n_qat > s->total) s->n_qat = s->total;
    s->n_fp = s->total - s->n_qat;
    s->lr = c->lr;
    s->lr_qat = c->qat_lr > 0 ? c->qat_lr : c->lr;
    s->min_lr_frac = c->min_lr_frac;
    s->decay_sqrt = c->decay_sqrt;
    s->schedule = data_schedule_resolve(c->quant.bits, (double)s->n_fp, (double)s->n_qat, c->schedule);
    /* fused: the QAT phase is the cooldown, so by default the decay spans all of it */
    double df = c->decay_frac >= 0 ? c->decay_frac : (s->schedule == DATA_SCHED_FUSED ? 1.0 : 0.2);
    if (df > 1) return qp_fail(err, QP_ERR_INPUT, "--decay-frac %g: use 0..1", df);
    if (!(c->warmup_frac >= 0 && c->warmup_frac + (s->schedule == DATA_SCHED_FUSED ? 0 : df) <= 1))
        return qp_fail(err, QP_ERR_INPUT,
                       "--warmup-frac %g + --decay-frac %g exceed the phase; lower one of them",
                       c->warmup_frac, df);
    if (!(c->warmup_tokens >= 0 && c->warmup_tokens <= TRAIN_MAX_TOKENS))
        return qp_fail(err, QP_ERR_INPUT, "--warmup-tokens %g: use 1 to %g tokens", c->warmup_tokens, TRAIN_MAX_TOKENS);
    /* --warmup-tokens: the FP warmup does not depend on the run's length, so that runs of any
     * D_fp follow one learning-rate path up to their decay (trunk-and-branch sweeps) */
    long wt = c->warmup_tokens > 0 ? lround_pos(c->warmup_tokens / tps) : -1;
    s->decay_frac = df;
    switch (s->schedule) {
    case DATA_SCHED_FUSED:
        s->fp_warm = wt >= 0 ? wt : lround_pos(c->warmup_frac * (double)s->total);
        if (s->fp_warm > s->n_fp) s->fp_warm = s->n_fp;
        s->fp_decay = 0;
        s->qat_warm = 0;
        s->qat_decay = lround_pos(df * (double)s->n_qat);
        break;
    case DATA_SCHED_QAT_ONLY:
        s->qat_warm = lround_pos(c->warmup_frac * (double)s->n_qat);
        s->qat_decay = lround_pos(df * (double)s->n_qat);
        break;
    default: /* classic and FP only: each phase its own warmup and decay */
        s->fp_warm = wt >= 0 ? (wt < s->n_fp ? wt : s->n_fp) : lround_pos(c->warmup_frac * (double)s->n_fp);
        s->fp_decay = lround_pos(df * (double)s->n_fp);
        s->qat_warm = lround_pos(c->warmup_frac * (double)s->n_qat);
        s->qat_decay = lround_pos(df * (double)s->n_qat);
        break;
    }
    return QP_OK;
}

/* Warmup-stable-decay inside one phase of n steps with peak `pk`: linear warmup over w steps
 * (ending at the peak), stable, then decay over the last d steps starting at the peak down to
 * pk x min_lr_frac. */
static double wsd(const train_sched *s, double pk, long i, long n, long w, long d)
{
    double lo = pk * s->min_lr_frac;
    if (i < w) return pk * (double)(i + 1) / (double)w;
    if (d > 0 && i >= n - d) {
        double p = (double)(i - (n - d)) / (double)d; /* 0 at the first decay step */
        double k = s->decay_sqrt ? 1.0 - sqrt(p) : 1.0 - p;
        return lo + (pk - lo) * k;
    }
    return pk;
}

double train_lr_at(const train_sched *s, long step)
{
    if (step < 0) step = 0;
    if (step >= s->total) step = s->total - 1;
    if (step < s->n_fp) return wsd(s, s->lr, step, s->n_fp, s->fp_warm, s->fp_decay);
    return wsd(s, s->lr_qat, step - s->n_fp, s->n_qat, s->qat_warm, s->qat_decay);
}

long train_sched_branch_step(const train_sched *s)
{
    switch (s->schedule) {
    case DATA_SCHED_FUSED: return s->n_fp;
    case DATA_SCHED_QAT_ONLY: return 0;
    default: return s->n_fp - s->fp_decay;
    }
}

long train_sched_first_difference(const train_sched *a, const train_sched *b, long k)
{
    /* exact comparison: the point is bit-identical training */
    for (long i = 0; i < k; i++)
        if (train_lr_at(a, i) != train_lr_at(b, i)) return i;
    return -1;
}
