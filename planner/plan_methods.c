/* Rows of training methods other than full QAT (seed-methods spec 6): the budget is FLOPs,
 * C = 6N D_fp + c_m D_qat; the optimiser works on the compute fraction x = c_m D_qat / C;
 * the loss comes from the method's own law or from the qat law at eta D_qat tokens, and
 * without either the row shows its costs and is not ranked. docs/planner.md, "Methods". */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* The row's loss model: the method's own law (eta 1, its own tokens), or the qat model with
 * the method's eta; NULL (and a warning saying what is missing) when neither. */
static const law_model *method_model(const plan_laws *laws, const law_model *qat, int has_qat, plan_result *out,
                                     plan_row *r, law_model *own)
{
    plan_method pm = r->method;
    const char *mn = plan_method_name(pm);
    char key[48], lbl[16];
    if (laws->has_method_law[pm]) {
        const data_law *ml = &laws->method_law[pm];
        const data_law *fp = ml->form == DATA_LAW_QAT && !laws->fp_given ? ml : has_qat ? qat->fp : &laws->fp;
        if (law_model_init(own, fp, ml, NULL) == QP_OK) {
            r->eta = 1;
            return own;
        }
    }
    snprintf(key, sizeof key, "%s:none", mn);
    if (laws->has_eta[pm] && !has_qat) {
        plan_warn_keyed(out, key, 2, "%s's efficiency factor scales the qat law's QAT tokens, and this plan has no "
                                     "QAT law: drop --no-qat-law to rank %s", mn, mn);
    } else if (laws->has_eta[pm]) {
        r->eta = law_efficiency_eta(&laws->eta[pm], r->bits);
        if (isfinite(r->eta)) return qat;
        snprintf(key, sizeof key, "%s:%g", mn, r->bits);
        plan_warn_keyed(out, key, 2, "the efficiency law for %s (%s) has no eta at %s bits: its rows at that width are "
                                     "not ranked; fit runs of %s at %s bits", mn, laws->eta_name[pm],
                        plan_bits_label(r->bits, lbl, sizeof lbl), mn, lbl);
    } else {
        plan_warn_keyed(out, key, 2, "no law or efficiency factor for %s: fit one with `qatplan fit --form efficiency "
                                     "--method %s RUNS` (or a law with `qatplan fit --method %s`) and give it with "
                                     "--law; its rows show costs and a closed-form split only", mn, mn, mn);
    }
    r->eta = NAN;
    return NULL;
}

/* Whole tokens (or batches) of both phases at compute fraction x. */
static void method_split(const plan_request *req, plan_row *r, double c_total, double x)
{
    double n6 = 6 * r->n_params, c = r->qat_flops_per_token, bt = req->batch_tokens;
    double unit = isfinite(bt) ? bt : 1;
    r->d_fp = floor((1 - x) * c_total / n6 / unit) * unit;
    r->d_qat = round(x * c_total / c / unit) * unit;
    r->d_total = r->d_fp + r->d_qat;
    r->fraction = r->d_total > 0 ? r->d_qat / r->d_total : NAN;
    r->compute_fraction = c * r->d_qat / (n6 * r->d_fp + c * r->d_qat);
    plan_set_schedule(req, r);
}

/* Every prediction at the optimum and at x = 0.1 passes the law's checks (at the effective
 * tokens D_fp + eta k D_qat), and no quantized model beats the full-precision model of the
 * same N trained on the same tokens (an eta above 1 could claim that). */
static void method_checks(const law_model *m, plan_result *out, plan_row *r, double d_equiv, double k)
{
    const double xs[2] = {r->compute_fraction, 0.1};
    char lbl[16];
    for (int i = 0; i < 2 && r->valid; i++) {
        law_point x = {r->n_params, (1 - xs[i]) * d_equiv, xs[i] * d_equiv * k, r->bits};
        if (law_check_point(m, &x, r->invalid_reason, sizeof r->invalid_reason) != LAW_CHECK_OK) r->valid = 0;
    }
    if (r->valid && r->loss_opt < r->loss_fp) {
        r->valid = 0;
        snprintf(r->invalid_reason, sizeof r->invalid_reason,
                 "%s loss %.4f is below the full-precision loss %.4f of the same N and tokens", plan_method_name(r->method),
                 r->loss_opt, r->loss_fp);
    }
    if (!r->valid)
        plan_warn_keyed(out, NULL, INFINITY, "%s at %s bits is not recommended: %s", plan_method_name(r->method),
                        plan_bits_label(r->bits, lbl, sizeof lbl), r->invalid_reason);
}

static void method_ranges(const plan_laws *laws, plan_result *out, const plan_row *r)
{
    char what[48];
    double s = law_tokens_per_param_byte(r->d_total, r->n_params, r->bits);
    if (laws->has_method_law[r->method]) {
        snprintf(what, sizeof what, "%s QAT", plan_method_name(r->method));
        plan_check_range(out, &laws->method_law[r->method], what, r->n_params, r->d_total, r->bits, s);
    } else if (laws->has_eta[r->method] && isfinite(r->eta)) {
        snprintf(what, sizeof what, "%s efficiency", plan_method_name(r->method));
        plan_check_range(out, &laws->eta[r->method], what, r->n_params, r->d_total, r->bits, s);
    }
}

qp_status plan_row_method(const plan_request *req, const plan_laws *laws, const law_model *qat, int has_qat,
                          plan_result *out, plan_row *r, qp_error *err)
{
    const data_law *ml = laws->has_method_law[r->method] ? &laws->method_law[r->method] : NULL;
    if (ml && out->units && ml->units && ml->units != out->units)
        return qp_fail(err, QP_ERR_INPUT, "the %s law %s is in %s but the plan's laws in %s: losses of different units "
                                          "cannot be ranked together; give laws of one unit",
                       plan_method_name(r->method), laws->method_law_name[r->method], law_units_label(ml->units),
                       law_units_label(out->units));
    qp_status st = plan_row_size(req, out->mode, qat, r, err);
    if (st) return st;
    double bt = req->batch_tokens, d = isfinite(bt) ? floor(r->d_total / bt) * bt : floor(r->d_total);
    if (!(d >= 1))
        return qp_fail(err, QP_ERR_INPUT, "the budget gives less than one %s at %g bits: raise it",
                       isfinite(bt) ? "batch" : "token", r->bits);
    if (isfinite(req->tokens) || isfinite(req->tokens_per_param))
        plan_warn_keyed(out, "methods:tokens", 0.5, "a token budget is priced at 6N FLOPs per token (full-precision "
                                                    "training) for methods other than qat");
    double c_total = 6 * r->n_params * d, k = 6 * r->n_params / r->qat_flops_per_token;
    r->s_total = law_tokens_per_param_byte(d, r->n_params, r->bits);
    r->f_hat = NAN; /* the closed form is full QAT's */
    law_model own;
    const law_model *m = method_model(laws, qat, has_qat, out, r, &own);
    r->rankable = m != NULL;
    double x;
    if (m && k * r->eta > 1) {
        char key[48], lbl[16];
        snprintf(key, sizeof key, "%s:cheap", plan_method_name(r->method));
        plan_warn_keyed(out, key, 1.2, "%s at %s bits: eta x 6N/c_m = %.3g > 1, so the law values its QAT tokens above "
                                       "full-precision ones and moves the split towards QAT; an eta fitted at small QAT "
                                       "fractions is extrapolated there", plan_method_name(r->method),
                        plan_bits_label(r->bits, lbl, sizeof lbl), k * r->eta);
    }
    if (m) {
        plan_frac_ctx c = {m, r->n_params, d, r->bits, k * r->eta};
        if ((st = plan_optimum_ctx(&c, &x, &r->loss_opt, err))) return st;
        r->loss_10pct = plan_loss_at_fraction(0.1, &c);
    } else {
        /* no law: the qat closed form's fraction, taken as a compute fraction, to show tokens */
        double a = laws->has_fraction ? laws->fraction.coef[0] : LAW_FRACTION_A_PAPER;
        x = law_fraction_hat(a, r->s_total);
        r->valid = 1;
    }
    if (!isfinite(x)) {
        r->fraction = r->d_qat = r->d_fp = r->compute_fraction = NAN;
        r->qat_start_token = r->decay_start_token = r->fp_decay_start_token = NAN;
        r->qat_start_step = r->decay_start_step = r->fp_decay_start_step = NAN;
        r->d_total = d;
        return QP_OK;
    }
    method_split(req, r, c_total, x);
    if (m) {
        r->loss_fp = law_model_loss_fp(m, r->n_params, r->d_total); /* the same N and tokens */
        r->penalty = r->loss_opt - r->loss_fp;
        r->f_opt = r->fraction;
        method_checks(m, out, r, d, k * r->eta);
        method_ranges(laws, out, r);
    }
    return QP_OK;
}
