/* The planner: per bit width, the model size (given, searched or from memory), the token
 * split from the law-optimal fraction (or the closed form without a QAT law), the schedule,
 * the predicted losses with the physical checks, and a recommendation. docs/planner.md. */
#include "plan_internal.h"

#include <gsl/gsl_errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *plan_bits_label(double bits, char *buf, size_t n)
{
    if (fabs(bits - PLAN_TERNARY_BITS) < 1e-6) snprintf(buf, n, "1.58");
    else snprintf(buf, n, "%g", bits);
    return buf;
}

const char *plan_method_name(plan_method m) { return data_method_name(m); }

qp_status plan_method_parse(const char *name, plan_method *out, qp_error *err)
{
    return data_method_parse(name, out, err);
}

const char *plan_mode_name(plan_mode m)
{
    switch (m) {
    case PLAN_MODE_SEARCH: return "search";
    case PLAN_MODE_FILL_MEMORY: return "fill-memory";
    default: return "given-n";
    }
}

void plan_request_init(plan_request *r)
{
    memset(r, 0, sizeof *r);
    r->n_params = r->memory_bytes = r->flops = r->tokens = r->flops_per_token = r->batch_tokens = NAN;
    r->tokens_per_param = r->vocab = r->d_model = r->gpu_hours = r->peak_flops = r->mfu = NAN;
    r->embed_params = 0;
    r->embed_bits = 16;
    r->decay_frac = 0.2;
    r->unfrozen = 0.05;
    r->row_size = 4096;
    r->blockap_share = 0.5;
    r->blockap_epochs = 2;
    static const double defaults[] = {1, 2, 3, 4, 6, 8};
    r->n_bits = 6;
    memcpy(r->bits, defaults, sizeof defaults);
}

/* ---- warnings: one per key (a law and a quantity), the most severe kept --- */

void plan_warn_keyed(plan_result *r, const char *key, double severity, const char *fmt, ...)
{
    char text[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const char *k = key ? key : text;
    for (int i = 0; i < r->n_warnings; i++)
        if (!strncmp(r->warn_key[i], k, sizeof r->warn_key[i] - 1)) {
            if (severity > r->severity[i]) { /* keep the most severe instance of this quantity */
                snprintf(r->warnings[i], sizeof r->warnings[i], "%s", text);
                r->severity[i] = severity;
            }
            return;
        }
    if (r->n_warnings >= PLAN_MAX_WARNINGS) {
        r->n_warnings_dropped++;
        return;
    }
    snprintf(r->warnings[r->n_warnings], sizeof r->warnings[0], "%s", text);
    snprintf(r->warn_key[r->n_warnings], sizeof r->warn_key[0], "%s", k);
    r->severity[r->n_warnings++] = severity;
}

#define warn(r, ...) plan_warn_keyed((r), NULL, 1, __VA_ARGS__)

/* Most severe first (stable, so equal severities keep their order). */
static void sort_warnings(plan_result *r)
{
    for (int i = 1; i < r->n_warnings; i++)
        for (int j = i; j > 0 && r->severity[j] > r->severity[j - 1]; j--) {
            char t[384], k[48];
            double s = r->severity[j];
            memcpy(t, r->warnings[j], sizeof t);
            memcpy(k, r->warn_key[j], sizeof k);
            memcpy(r->warnings[j], r->warnings[j - 1], sizeof t);
            memcpy(r->warn_key[j], r->warn_key[j - 1], sizeof k);
            r->severity[j] = r->severity[j - 1];
            memcpy(r->warnings[j - 1], t, sizeof t);
            memcpy(r->warn_key[j - 1], k, sizeof k);
            r->severity[j - 1] = s;
        }
}

static int law_has_bits(const data_law *law, double bits)
{
    for (int i = 0; i < law->prov.n_bits; i++)
        if (fabs(law->prov.bits[i] - bits) < 1e-9) return 1;
    return law->prov.n_bits == 0;
}

/* How far x lies outside [lo, hi], as a factor (1 inside). */
static double beyond(double x, double lo, double hi) { return x < lo ? lo / x : x > hi ? x / hi : 1; }

static void check_bits(plan_result *res, const data_law *law, const char *what, double bits)
{
    const data_law_provenance *p = &law->prov;
    int lo = 0, hi = 0; /* the fitted widths around this one */
    for (int i = 0; i < p->n_bits; i++) {
        if (p->bits[i] < bits && p->bits[i] > lo) lo = p->bits[i];
        if (p->bits[i] > bits && p->bits[i] < LAW_FP_BITS && (!hi || p->bits[i] < hi)) hi = p->bits[i];
    }
    char key[48], lbl[16];
    snprintf(key, sizeof key, "%s:bits:%g", what, bits);
    if (lo && hi)
        plan_warn_keyed(res, key, 1.0, "%s bits lies between the widths %d and %d the %s law was fitted on: interpolating",
                   plan_bits_label(bits, lbl, sizeof lbl), lo, hi, what);
    else if (p->n_bits) { /* severity: how many bits beyond the nearest fitted width */
        double nearest = bits < p->bits[0] ? p->bits[0] : p->bits[p->n_bits - 1];
        plan_warn_keyed(res, key, 1.5 + fabs(bits - nearest),
                   "%s bits is outside the bit widths the %s law was fitted on (%d-%d): extrapolating",
                   plan_bits_label(bits, lbl, sizeof lbl), what, p->bits[0], p->bits[p->n_bits - 1]);
    }
}

void plan_check_range(plan_result *res, const data_law *law, const char *what, double n, double d, double bits,
                        double s)
{
    const data_law_provenance *p = &law->prov;
    char a[32], b[32], c[32], key[48];
    double k;
    if (isfinite(p->n_min) && (k = beyond(n, p->n_min, p->n_max)) > 1.001) {
        snprintf(key, sizeof key, "%s:N", what);
        plan_warn_keyed(res, key, k, "N = %s is %.3gx outside the %s law's fitted range %s-%s parameters: extrapolating",
                   qp_format_count(n, a, sizeof a), k, what, qp_format_count(p->n_min, b, sizeof b),
                   qp_format_count(p->n_max, c, sizeof c));
    }
    if (isfinite(p->d_min) && (k = beyond(d, p->d_min, p->d_max)) > 1.001) {
        snprintf(key, sizeof key, "%s:D", what);
        plan_warn_keyed(res, key, k, "D = %s tokens is %.3gx outside the %s law's fitted range %s-%s tokens: extrapolating",
                   qp_format_count(d, a, sizeof a), k, what, qp_format_count(p->d_min, b, sizeof b),
                   qp_format_count(p->d_max, c, sizeof c));
    }
    if (law->form != DATA_LAW_CHINCHILLA && bits < LAW_FP_BITS && !law_has_bits(law, bits)) check_bits(res, law, what, bits);
    if (isfinite(p->s_min) && isfinite(s) && (k = beyond(s, p->s_min, p->s_max)) > 1.001) {
        snprintf(key, sizeof key, "%s:S", what);
        plan_warn_keyed(res, key, k, "S_total = %.3g (%g bits) is %.3gx outside the %s law's fitted range %.3g-%.3g: "
                                "extrapolating", s, bits, k, what, p->s_min, p->s_max);
    }
}

void plan_set_schedule(const plan_request *req, plan_row *r)
{
    /* The paper saw fusion help at 4 and 6 bits and fail at 1 bit and some 2-bit settings. */
    r->schedule = data_schedule_resolve((int)r->bits, r->d_fp, r->d_qat,
                                        r->bits >= 3 ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC);
    r->qat_start_token = r->d_fp;
    r->fp_decay_start_token = NAN;
    switch (r->schedule) {
    case DATA_SCHED_FUSED:
        r->decay_start_token = r->d_fp; /* the decay runs during QAT */
        break;
    case DATA_SCHED_CLASSIC:
        r->fp_decay_start_token = r->d_fp * (1 - req->decay_frac);
        r->decay_start_token = r->d_fp + r->d_qat * (1 - req->decay_frac);
        break;
    default:
        r->decay_start_token = r->d_total * (1 - req->decay_frac);
        break;
    }
    /* whole tokens; with a batch size, on batch boundaries */
    double bt = req->batch_tokens, unit = isfinite(bt) ? bt : 1;
    r->decay_start_token = floor(r->decay_start_token / unit) * unit;
    if (isfinite(r->fp_decay_start_token)) r->fp_decay_start_token = floor(r->fp_decay_start_token / unit) * unit;
    r->qat_start_step = isfinite(bt) ? floor(r->qat_start_token / bt) : NAN;
    r->decay_start_step = isfinite(bt) ? floor(r->decay_start_token / bt) : NAN;
    r->fp_decay_start_step = isfinite(bt) && isfinite(r->fp_decay_start_token) ? floor(r->fp_decay_start_token / bt) : NAN;
}

/* Whole tokens; with a batch size, whole batches (the QAT switch on a batch boundary). */
static void round_split(const plan_request *req, plan_row *r, double fraction)
{
    double bt = req->batch_tokens;
    if (isfinite(bt)) {
        double batches = floor(r->d_total / bt);
        r->d_total = batches * bt;
        r->d_qat = round(fraction * batches) * bt;
    } else {
        r->d_total = floor(r->d_total);
        r->d_qat = round(fraction * r->d_total);
    }
    r->d_fp = r->d_total - r->d_qat;
    r->fraction = r->d_total > 0 ? r->d_qat / r->d_total : NAN;
}

/* The row under a QAT law: optimum, losses, the 10% rule, intervals, physical checks. */
static qp_status plan_row_law(const law_model *m, plan_result *out, plan_row *r, double *sample_loss, qp_error *err)
{
    qp_status st;
    if ((st = plan_optimal_fraction(m, r->n_params, r->d_total, r->bits, &r->f_opt, &r->loss_opt, err))) return st;
    plan_frac_ctx c = {m, r->n_params, r->d_total, r->bits, 0};
    law_point opt = {r->n_params, (1 - r->f_opt) * r->d_total, r->f_opt * r->d_total, r->bits};
    r->penalty = law_model_penalty(m, &opt);
    if (isfinite(r->f_hat)) r->loss_f_hat = plan_loss_at_fraction(r->f_hat, &c);
    r->loss_10pct = plan_loss_at_fraction(0.1, &c);
    if ((st = plan_tokens_to_reach(m, r->n_params, r->d_total, r->bits, 0.1, r->loss_opt, &r->extra_tokens_10pct, err)))
        return st;
    r->extra_tokens_10pct -= r->d_total;
    if (r->extra_tokens_10pct < 0) r->extra_tokens_10pct = 0;
    if (isfinite(r->extra_tokens_10pct)) r->extra_tokens_10pct = ceil(r->extra_tokens_10pct);
    if (m->penalty->n_samples >= 2) {
        double level = m->penalty->has_interval && m->penalty->ci_level > 0 ? m->penalty->ci_level : 0.95;
        if ((st = plan_bootstrap_row(m, r, level, sample_loss, err))) return st;
    }
    /* any physically impossible number at the optimum, at f_hat or at 10% disqualifies the row */
    const double fs[3] = {r->f_opt, r->f_hat, 0.1};
    char lbl[16];
    for (int k = 0; k < 3 && r->valid; k++) {
        if (!isfinite(fs[k])) continue;
        law_point x = {r->n_params, (1 - fs[k]) * r->d_total, fs[k] * r->d_total, r->bits};
        if (law_check_point(m, &x, r->invalid_reason, sizeof r->invalid_reason) != LAW_CHECK_OK) {
            r->valid = 0;
            plan_warn_keyed(out, NULL, INFINITY, "%s bits is not recommended: %s", plan_bits_label(r->bits, lbl, sizeof lbl),
                       r->invalid_reason);
        }
    }
    return QP_OK;
}

static void row_init(plan_row *r, plan_method method, double bits)
{
    memset(r, 0, sizeof *r);
    r->method = method;
    r->bits = bits;
    r->eta = 1;
    r->rankable = 1;
    r->valid = 1;
    r->fits_memory = -1;
    r->f_opt = r->loss_opt = r->loss_f_hat = r->loss_10pct = r->extra_tokens_10pct = r->penalty = NAN;
    r->f_opt_lo = r->f_opt_hi = r->loss_opt_lo = r->loss_opt_hi = r->penalty_lo = r->penalty_hi = NAN;
    r->loss_fp = NAN;
}

/* N for the row: given, the largest that fits the memory, or searched under the law. */
qp_status plan_row_size(const plan_request *req, plan_mode mode, const law_model *m, plan_row *r, qp_error *err)
{
    /* with methods, memory means each method's storage (spec 6.2) */
    int st_model = req->n_methods > 0;
    double n_max = !isfinite(req->memory_bytes) ? NAN
                   : st_model ? plan_largest_n_in_storage(req, r->method, r->bits)
                              : plan_largest_n_in_memory(req, r->bits);
    if (mode != PLAN_MODE_GIVEN_N && isfinite(req->memory_bytes) && !isfinite(n_max))
        return qp_fail(err, QP_ERR_INPUT, "not even a 1-parameter model fits %.4g bytes at %g bits with the "
                                          "embeddings given: raise --memory", req->memory_bytes, r->bits);
    if (mode == PLAN_MODE_GIVEN_N) {
        r->n_params = isfinite(req->n_params) ? req->n_params : sqrt(req->flops / (6 * req->tokens_per_param));
    } else if (mode == PLAN_MODE_FILL_MEMORY) {
        r->n_params = n_max;
    } else {
        double lo = fmax(1e6, 1.01 * plan_embed_params(req, 1e6)), hi = 1e14;
        if (isfinite(n_max)) hi = fmin(hi, n_max);
        if (!(hi > lo)) {
            r->n_params = isfinite(n_max) ? n_max : lo;
        } else {
            qp_status st = plan_search_n(req, m, r->bits, lo, hi, &r->n_params, err);
            if (st) return st;
            r->at_memory_limit = isfinite(n_max) && r->n_params >= 0.98 * n_max;
        }
    }
    if (mode != PLAN_MODE_GIVEN_N || !isfinite(req->n_params)) r->n_params = floor(r->n_params); /* whole parameters */
    r->embed_params = plan_embed_params(req, r->n_params);
    r->weight_bytes = r->n_params * r->bits / 8.0;
    r->memory_bytes = plan_memory_bytes(req, r->n_params, r->bits);
    r->storage_bits_per_weight = plan_storage_bits(req, r->method, r->bits);
    r->storage_bytes = plan_storage_bytes(req, r->method, r->n_params, r->bits);
    r->qat_flops_per_token = plan_qat_flops_per_token(req, r->method, r->n_params);
    double held = st_model ? r->storage_bytes : r->memory_bytes;
    if (isfinite(req->memory_bytes)) r->fits_memory = held <= req->memory_bytes * (1 + 1e-9);
    r->d_total = plan_tokens_for(req, r->n_params);
    if (!isfinite(r->d_total) || !(r->d_total >= 1))
        return qp_fail(err, QP_ERR_INPUT, "the budget gives %g tokens for N = %g: it must give at least one token",
                       r->d_total, r->n_params);
    return QP_OK;
}

/* The lowest predicted loss among valid rows that fit memory; a tie when another such row
 * is below the recommended one in at least 2.5% of the law's bootstrap samples (paired:
 * the same sample law for both rows), or within 1e-4 nats without samples. */
static void recommend(plan_result *out, double *const *sample_loss, int n_samples)
{
    if (!out->ranked) {
        int candidates = 0, last = -1;
        for (int i = 0; i < out->n_rows; i++)
            if (out->rows[i].fits_memory != 0 && isfinite(out->rows[i].fraction)) {
                candidates++;
                last = i;
            }
        if (candidates == 1) out->recommended = last; /* one bit width asked for: plan it */
        return;
    }
    double best = INFINITY;
    for (int i = 0; i < out->n_rows; i++) {
        const plan_row *r = &out->rows[i];
        if (r->fits_memory == 0 || !r->valid || !isfinite(r->loss_opt)) continue;
        if (r->loss_opt < best) {
            best = r->loss_opt;
            out->recommended = i;
        }
    }
    if (out->recommended < 0) {
        if (isfinite(out->req.memory_bytes)) warn(out, "no bit width fits the memory limit and passes the physical checks");
        return;
    }
    double closest = INFINITY;
    for (int i = 0; i < out->n_rows; i++) {
        const plan_row *r = &out->rows[i];
        if (i == out->recommended || r->fits_memory == 0 || !r->valid || !isfinite(r->loss_opt)) continue;
        int below = 0, n = 0;
        for (int s = 0; s < n_samples && sample_loss[i] && sample_loss[out->recommended]; s++) {
            double a = sample_loss[out->recommended][s], b = sample_loss[i][s];
            if (!isfinite(a) || !isfinite(b)) continue;
            n++;
            below += b < a;
        }
        int tie = n >= 20 ? below >= 0.025 * n : r->loss_opt - best < 1e-4;
        if (tie && r->loss_opt - best < closest) {
            closest = r->loss_opt - best;
            out->tie = 1;
            out->tie_bits = r->bits;
        }
    }
}

static qp_status check_request(const plan_request *req, plan_mode *mode, qp_error *err)
{
    int budgets = isfinite(req->flops) + isfinite(req->tokens) + isfinite(req->tokens_per_param);
    if (req->n_bits < 1) return qp_fail(err, QP_ERR_USAGE, "no bit widths to plan for: --bits needs at least one");
    if (!(req->unfrozen >= 0 && req->unfrozen <= 1))
        return qp_fail(err, QP_ERR_USAGE, "--unfrozen %g is outside [0, 1]: give EfQAT's fraction of rows trained, e.g. 0.05",
                       req->unfrozen);
    if (!(req->blockap_share >= 0 && req->blockap_share <= 1))
        return qp_fail(err, QP_ERR_USAGE, "--blockap-share %g is outside [0, 1]: give the share of the QAT FLOPs spent on "
                                          "Block-AP, e.g. 0.5", req->blockap_share);
    if (!(req->row_size >= 1) || !(req->blockap_epochs >= 0))
        return qp_fail(err, QP_ERR_USAGE, "--row-size must be >= 1 and --blockap-epochs >= 0");
    int other = 0;
    for (int i = 0; i < req->n_methods; i++) other |= req->methods[i] != PLAN_METHOD_QAT;
    if (other && isfinite(req->flops_per_token))
        return qp_fail(err, QP_ERR_USAGE, "--flops-per-token sets one cost per token, but --method prices each method's "
                                          "QAT tokens itself: drop --flops-per-token");
    if (!(req->decay_frac > 0 && req->decay_frac < 1)) return qp_fail(err, QP_ERR_INPUT, "--decay-frac must be in (0, 1)");
    if ((isfinite(req->tokens) || isfinite(req->tokens_per_param)) && isfinite(req->flops_per_token))
        return qp_fail(err, QP_ERR_USAGE, "--flops-per-token converts a FLOP budget to tokens; with --tokens or "
                                          "--tokens-per-param it would be ignored: drop one");
    if (isfinite(req->n_params)) {
        *mode = PLAN_MODE_GIVEN_N;
        if (budgets != 1)
            return qp_fail(err, QP_ERR_USAGE, "give exactly one budget: --budget FLOPs (or GPU-hours), --tokens, or "
                                              "--tokens-per-param");
        return QP_OK;
    }
    if (isfinite(req->flops) && isfinite(req->tokens_per_param) && !isfinite(req->tokens) && !req->fill_memory) {
        *mode = PLAN_MODE_GIVEN_N; /* N = sqrt(C / (6 R)) */
        return QP_OK;
    }
    if (budgets != 1)
        return qp_fail(err, QP_ERR_USAGE, "give one budget: --budget FLOPs (or GPU-hours), --tokens or "
                                          "--tokens-per-param (only --budget goes with --tokens-per-param)");
    if (isfinite(req->flops) && !req->fill_memory) {
        *mode = PLAN_MODE_SEARCH;
        if (other)
            return qp_fail(err, QP_ERR_USAGE, "ranking methods other than qat does not search the model size: give "
                                              "--params (or --memory with --fill-memory)");
        if (isfinite(req->flops_per_token))
            return qp_fail(err, QP_ERR_USAGE, "searching the model size needs FLOPs per token that follow N (6*N): "
                                              "drop --flops-per-token, or give --params");
        return QP_OK;
    }
    if (!isfinite(req->memory_bytes))
        return qp_fail(err, QP_ERR_USAGE, "give the model size (--params 2.2B), a FLOP budget to search it (--budget "
                                          "1e22), or a memory limit to fill (--memory 1.5GiB)");
    *mode = PLAN_MODE_FILL_MEMORY;
    return QP_OK;
}

static qp_status plan_row_all(const plan_request *req, const plan_laws *laws, const law_model *m, int has_model,
                              plan_result *out, plan_row *r, double *sample_loss, qp_error *err)
{
    qp_status st = plan_row_size(req, out->mode, m, r, err);
    if (st) return st;
    r->rankable = out->ranked;
    r->d_total = isfinite(req->batch_tokens) ? floor(r->d_total / req->batch_tokens) * req->batch_tokens : floor(r->d_total);
    if (!(r->d_total >= 1))
        return qp_fail(err, QP_ERR_INPUT, "the budget gives less than one %s at %g bits: raise it",
                       isfinite(req->batch_tokens) ? "batch" : "token", r->bits);
    double a = laws->has_fraction ? laws->fraction.coef[0] : LAW_FRACTION_A_PAPER;
    r->s_total = law_tokens_per_param_byte(r->d_total, r->n_params, r->bits);
    r->f_hat = law_fraction_hat(a, r->s_total);
    if (!isfinite(r->f_hat))
        warn(out, "S_total = %.3g <= 1 at %g bits: the closed-form fraction is meaningless there (fewer tokens than "
                  "weight bytes); give a larger budget", r->s_total, r->bits);
    if (has_model) {
        r->loss_fp = law_model_loss_fp(m, r->n_params, r->d_total);
        plan_check_range(out, m->fp, "full-precision", r->n_params, r->d_total, LAW_FP_BITS, NAN);
    }
    if (laws->has_fraction) plan_check_range(out, &laws->fraction, "fraction", r->n_params, r->d_total, r->bits, r->s_total);
    double fraction = r->f_hat;
    if (out->ranked) {
        plan_check_range(out, m->penalty, "QAT", r->n_params, r->d_total, r->bits, r->s_total);
        if ((st = plan_row_law(m, out, r, sample_loss, err))) return st;
        fraction = r->f_opt;
    }
    if (isfinite(fraction)) {
        round_split(req, r, fraction);
        plan_set_schedule(req, r);
        /* c_m = 6N: the compute fraction is the token fraction */
        r->compute_fraction = r->d_qat * r->qat_flops_per_token /
                              (6 * r->n_params * r->d_fp + r->qat_flops_per_token * r->d_qat);
    } else {
        r->compute_fraction = NAN;
        r->fraction = r->d_qat = r->d_fp = NAN;
        r->schedule = r->bits >= 3 ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
        r->qat_start_token = r->decay_start_token = r->fp_decay_start_token = NAN;
        r->qat_start_step = r->decay_start_step = r->fp_decay_start_step = NAN;
    }
    return QP_OK;
}

qp_status plan_run(const plan_request *req, const plan_laws *laws, plan_result *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    out->req = *req;
    out->recommended = -1;
    gsl_set_error_handler_off();
    qp_status st = check_request(req, &out->mode, err);
    if (st) return st;
    law_model m;
    int has_model = laws->has_fp || laws->has_qat;
    if (has_model && (st = plan_laws_model(laws, &m, err))) return st;
    out->units = has_model ? m.units : DATA_UNITS_UNKNOWN;
    out->ranked = has_model && m.penalty != NULL;
    if (out->mode == PLAN_MODE_SEARCH && !out->ranked)
        return qp_fail(err, QP_ERR_USAGE, "searching the model size needs a QAT law: drop --no-qat-law, or give --params");
    int ns = out->ranked ? m.penalty->n_samples : 0;
    double *samples = ns ? malloc(sizeof(double) * (size_t)ns * (size_t)req->n_bits) : NULL;
    double *sample_loss[PLAN_MAX_ROWS] = {0};
    for (int i = 0; i < req->n_bits && samples; i++) sample_loss[i] = samples + (size_t)i * (size_t)ns;
    int n_m = req->n_methods > 0 ? req->n_methods : 1, qat_done = 0;
    for (int j = 0; j < n_m && !st; j++) {
        plan_method pm = req->n_methods > 0 ? req->methods[j] : PLAN_METHOD_QAT;
        for (int i = 0; i < req->n_bits && !st; i++) {
            plan_row *r = &out->rows[out->n_rows];
            row_init(r, pm, req->bits[i]);
            /* the qat rows own the bootstrap samples (one method appears once) */
            if (pm == PLAN_METHOD_QAT)
                st = plan_row_all(req, laws, &m, has_model, out, r, qat_done ? NULL : sample_loss[i], err);
            else st = plan_row_method(req, laws, &m, out->ranked, out, r, err);
            if (pm == PLAN_METHOD_QAT && j > 0 && samples) { /* its samples follow the row */
                sample_loss[out->n_rows] = sample_loss[i];
                sample_loss[i] = NULL;
            }
            out->n_rows++;
        }
        qat_done |= pm == PLAN_METHOD_QAT;
    }
    if (req->n_methods > 0) out->ranked = 0; /* ranked: some row has a predicted loss */
    for (int i = 0; i < out->n_rows; i++) out->ranked |= out->rows[i].rankable && isfinite(out->rows[i].loss_opt);
    if (!st) recommend(out, sample_loss, samples ? ns : 0);
    if (req->n_methods > 0 && !out->ranked) out->recommended = -1; /* methods are only ranked by a law */
    free(samples);
    sort_warnings(out);
    return st;
}

qp_status plan_eval(const plan_laws *laws, const law_point *x, plan_eval_result *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    out->x = *x;
    double d = x->d_fp + x->d_qat;
    if (!(x->n_params > 0) || !(d > 0) || x->d_fp < 0 || x->d_qat < 0 || !isfinite(d) || x->bits < 1)
        return qp_fail(err, QP_ERR_INPUT, "a law is evaluated at N > 0 and D_fp + D_qat > 0 tokens, bits >= 1");
    law_model m;
    qp_status st = plan_laws_model(laws, &m, err);
    if (st) return st;
    int quantized = x->bits < LAW_FP_BITS;
    if (quantized && !m.penalty)
        return qp_fail(err, QP_ERR_USAGE, "no QAT law to evaluate %g bits with: give a qat or penalty law with --law", x->bits);
    out->units = m.units;
    out->loss_fp = law_model_loss_fp(&m, x->n_params, d);
    out->penalty = law_model_penalty(&m, x);
    out->loss = out->loss_fp + out->penalty;
    out->valid = law_check_point(&m, x, out->invalid_reason, sizeof out->invalid_reason) == LAW_CHECK_OK;
    /* the plan's range warnings, through a scratch plan */
    plan_result *tmp = calloc(1, sizeof *tmp);
    if (!tmp) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    double s = law_tokens_per_param_byte(d, x->n_params, x->bits);
    plan_check_range(tmp, m.fp, "full-precision", x->n_params, d, LAW_FP_BITS, NAN);
    if (quantized) plan_check_range(tmp, m.penalty, "QAT", x->n_params, d, x->bits, s);
    if (!out->valid) plan_warn_keyed(tmp, NULL, INFINITY, "physically impossible: %s", out->invalid_reason);
    sort_warnings(tmp);
    memcpy(out->warnings, tmp->warnings, sizeof out->warnings);
    out->n_warnings = tmp->n_warnings;
    free(tmp);
    return QP_OK;
}
