/* A model: full-precision loss plus QAT penalty, from a qat-form law alone or from a
 * full-precision law and a penalty law; and the physical checks every prediction passes. */
#include "law.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *law_units_label(data_loss_units u)
{
    switch (u) {
    case DATA_UNITS_NATS_PER_TOKEN: return "nats/token";
    case DATA_UNITS_NATS_PER_BYTE: return "nats/byte";
    default: return "nats (units unknown)";
    }
}

qp_status law_model_init(law_model *m, const data_law *fp, const data_law *penalty, qp_error *err)
{
    memset(m, 0, sizeof *m);
    if (!fp || (fp->form != DATA_LAW_CHINCHILLA && fp->form != DATA_LAW_QAT))
        return qp_fail(err, QP_ERR_INPUT, "a full-precision loss needs a chinchilla or qat law, not %s",
                       fp ? data_law_form_name(fp->form) : "none");
    if (penalty && penalty->form != DATA_LAW_PENALTY && penalty->form != DATA_LAW_QAT)
        return qp_fail(err, QP_ERR_INPUT, "a QAT penalty needs a penalty or qat law, not %s",
                       data_law_form_name(penalty->form));
    if (penalty && fp->units && penalty->units && fp->units != penalty->units)
        return qp_fail(err, QP_ERR_INPUT,
                       "the full-precision law is in %s but the QAT law in %s: losses of different units cannot "
                       "be added; give laws of one unit (e.g. --law own alone, or a chinchilla law fitted to the "
                       "same data)",
                       law_units_label(fp->units), law_units_label(penalty->units));
    m->fp = fp;
    m->penalty = penalty;
    m->units = fp->units ? fp->units : penalty ? penalty->units : DATA_UNITS_UNKNOWN;
    m->vocab = fp->vocab;
    return QP_OK;
}

double law_model_loss_fp(const law_model *m, double n_params, double d_total)
{
    law_point x = {n_params, d_total, 0, LAW_FP_BITS};
    return law_loss(m->fp, &x);
}

double law_model_penalty(const law_model *m, const law_point *x)
{
    if (x->bits >= LAW_FP_BITS || !m->penalty) return 0;
    return law_penalty(m->penalty, x);
}

double law_model_loss(const law_model *m, const law_point *x)
{
    return law_model_loss_fp(m, x->n_params, x->d_fp + x->d_qat) + law_model_penalty(m, x);
}

double law_model_floor(const law_model *m) { return m->fp->coef[0]; /* E in both fp forms */ }

law_check law_check_point(const law_model *m, const law_point *x, char *why, size_t len)
{
    double d = x->d_fp + x->d_qat;
    double fp = law_model_loss_fp(m, x->n_params, d), pen = law_model_penalty(m, x), e = law_model_floor(m);
    double loss = fp + pen;
    const char *u = law_units_label(m->units);
    if (!isfinite(fp) || !isfinite(pen)) {
        snprintf(why, len, "the law is not finite here (full-precision loss %g, penalty %g)", fp, pen);
        return LAW_CHECK_NOT_FINITE;
    }
    if (pen < 0) {
        snprintf(why, len, "QAT loss %.4f is below the full-precision loss %.4f of the same N and D (penalty %.3g %s)",
                 loss, fp, pen, u);
        return LAW_CHECK_BELOW_FP;
    }
    if (fp < e) {
        snprintf(why, len, "full-precision loss %.4f is below the law's irreducible loss E = %.4f %s", fp, e, u);
        return LAW_CHECK_BELOW_FLOOR;
    }
    if (x->bits < LAW_FP_BITS - 1 && m->penalty) {
        law_point y = *x;
        y.bits = x->bits + 1;
        double more = law_model_penalty(m, &y);
        if (more > pen * (1 + 1e-9) + 1e-12) {
            snprintf(why, len, "the penalty grows with more bits: %.4g at %g bits, %.4g at %g bits %s", pen, x->bits,
                     more, y.bits, u);
            return LAW_CHECK_MORE_BITS_WORSE;
        }
    }
    if (m->vocab > 1 && loss > log((double)m->vocab)) {
        snprintf(why, len, "loss %.4f %s is above ln(vocabulary %d) = %.4f, worse than guessing uniformly", loss, u,
                 m->vocab, log((double)m->vocab));
        return LAW_CHECK_ABOVE_UNIFORM;
    }
    return LAW_CHECK_OK;
}

void law_check_grid(const law_model *m, double n_lo, double n_hi, double tpp_lo, double tpp_hi, const int *bits,
                    int n_bits, law_check_summary *out)
{
    memset(out, 0, sizeof *out);
    enum { NN = 13, NT = 9, NF = 11 };
    for (int i = 0; i < NN; i++) {
        double n = n_lo * pow(n_hi / n_lo, (double)i / (NN - 1));
        for (int j = 0; j < NT; j++) {
            double d = n * tpp_lo * pow(tpp_hi / tpp_lo, (double)j / (NT - 1));
            for (int b = 0; b < n_bits; b++)
                for (int k = 0; k < NF; k++) {
                    double f = (double)k / (NF - 1);
                    law_point x = {n, (1 - f) * d, f * d, bits[b]};
                    char why[256];
                    out->n_points++;
                    if (law_check_point(m, &x, why, sizeof why) == LAW_CHECK_OK) continue;
                    if (out->n_failed++ == 0)
                        snprintf(out->first, sizeof out->first, "N=%.3g, D=%.3g, %d bits, f=%.1f: %s", n, d, bits[b], f,
                                 why);
                }
        }
    }
}
