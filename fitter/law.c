/* The QAT loss law, evaluated in log space with log-sum-exp:
 *   L = E + A/N^alpha + B/D^beta
 *     + theta  * 2^(-kappa*b)
 *     + phi    * 2^(-chi*b) / (N^psi * (1+S_qat)^omega)
 *     + lambda * 2^(-mu*b)  * (1+S_fp)^xi / (N^nu * (1+S_qat)^rho)
 * Each term's log is linear in the fit parameters, so value and gradient are one pass. */
#include "fit.h"

#include <math.h>
#include <string.h>

/* Parameter layout of the qat form (the first five are the chinchilla form's). */
enum { P_E, P_A, P_B, P_ALPHA, P_BETA, P_THETA, P_KAPPA, P_PHI, P_CHI, P_PSI, P_OMEGA,
       P_LAMBDA, P_MU, P_XI, P_NU, P_RHO };

double fit_tokens_per_param_byte(double tokens, double n_params, int bits)
{
    if (!(n_params > 0) || bits <= 0) return NAN;
    return tokens / (n_params * (double)bits / 8.0);
}

double fit_fraction_hat(double a, double s_total)
{
    if (!(s_total > 1) || !isfinite(s_total)) return NAN;
    return exp(-a / log(s_total));
}

int fit_theta_is_log(data_law_form form, int i)
{
    switch (form) {
    case DATA_LAW_CHINCHILLA:
        return i == P_E || i == P_A || i == P_B;
    case DATA_LAW_QAT:
        return i == P_E || i == P_A || i == P_B || i == P_THETA || i == P_PHI || i == P_LAMBDA;
    case DATA_LAW_FRACTION:
    case DATA_LAW_FORM_COUNT_:
        break;
    }
    return 0;
}

void fit_law_to_theta(const data_law *law, double *theta)
{
    int n = data_law_ncoef(law->form);
    for (int i = 0; i < n; i++)
        theta[i] = fit_theta_is_log(law->form, i) ? log(law->coef[i]) : law->coef[i];
}

void fit_theta_to_coef(data_law_form form, const double *theta, double *coef)
{
    int n = data_law_ncoef(form);
    for (int i = 0; i < n; i++) coef[i] = fit_theta_is_log(form, i) ? exp(theta[i]) : theta[i];
}

double fit_law_log_loss(data_law_form form, const double *th, const fit_point *x, double *grad)
{
    if (form != DATA_LAW_CHINCHILLA && form != DATA_LAW_QAT) return NAN;
    double d_total = x->d_fp + x->d_qat;
    if (!(x->n_params > 0) || !(d_total > 0) || x->d_fp < 0 || x->d_qat < 0) return NAN;
    double ln_n = log(x->n_params), ln_d = log(d_total);
    double t[6];
    int nt = 3;
    t[0] = th[P_E];
    t[1] = th[P_A] - th[P_ALPHA] * ln_n;
    t[2] = th[P_B] - th[P_BETA] * ln_d;
    int quantized = form == DATA_LAW_QAT && x->bits < 16;
    double b_ln2 = 0, ln1s_qat = 0, ln1s_fp = 0;
    if (quantized) {
        double bytes = x->n_params * (double)x->bits / 8.0;
        b_ln2 = (double)x->bits * M_LN2;
        /* log1p(S): finite at S = 0 (QAT from scratch, or no QAT at all). */
        ln1s_qat = log1p(x->d_qat / bytes);
        ln1s_fp = log1p(x->d_fp / bytes);
        t[3] = th[P_THETA] - th[P_KAPPA] * b_ln2;
        t[4] = th[P_PHI] - th[P_CHI] * b_ln2 - th[P_PSI] * ln_n - th[P_OMEGA] * ln1s_qat;
        t[5] = th[P_LAMBDA] - th[P_MU] * b_ln2 + th[P_XI] * ln1s_fp - th[P_NU] * ln_n -
               th[P_RHO] * ln1s_qat;
        nt = 6;
    }
    double m = t[0];
    for (int k = 1; k < nt; k++)
        if (t[k] > m) m = t[k];
    double sum = 0, w[6];
    for (int k = 0; k < nt; k++) sum += (w[k] = exp(t[k] - m));
    double log_l = m + log(sum);
    if (grad) {
        int np = data_law_ncoef(form);
        memset(grad, 0, sizeof(double) * (size_t)np);
        for (int k = 0; k < nt; k++) w[k] /= sum; /* softmax weights: d logL / d t_k */
        grad[P_E] = w[0];
        grad[P_A] = w[1];
        grad[P_ALPHA] = -w[1] * ln_n;
        grad[P_B] = w[2];
        grad[P_BETA] = -w[2] * ln_d;
        if (form == DATA_LAW_QAT && quantized) {
            grad[P_THETA] = w[3];
            grad[P_KAPPA] = -w[3] * b_ln2;
            grad[P_PHI] = w[4];
            grad[P_CHI] = -w[4] * b_ln2;
            grad[P_PSI] = -w[4] * ln_n;
            grad[P_OMEGA] = -w[4] * ln1s_qat;
            grad[P_LAMBDA] = w[5];
            grad[P_MU] = -w[5] * b_ln2;
            grad[P_XI] = w[5] * ln1s_fp;
            grad[P_NU] = -w[5] * ln_n;
            grad[P_RHO] = -w[5] * ln1s_qat;
        }
    }
    return log_l;
}

double fit_law_loss(const data_law *law, const fit_point *x)
{
    if (law->form != DATA_LAW_CHINCHILLA && law->form != DATA_LAW_QAT) return NAN;
    double theta[DATA_LAW_MAX_COEF];
    fit_law_to_theta(law, theta);
    return exp(fit_law_log_loss(law->form, theta, x, NULL));
}

void fit_builtin_chinchilla(data_law *out)
{
    data_law_init(out, DATA_LAW_CHINCHILLA);
    /* Besiroglu et al. 2024 (arXiv 2404.10102), Epoch AI's refit of Chinchilla approach 3. */
    const double c[5] = {1.8172, 482.01, 2085.43, 0.3478, 0.3658};
    memcpy(out->coef, c, sizeof c);
    snprintf(out->prov.source, sizeof out->prov.source,
             "built-in: Epoch AI's replication of Chinchilla approach 3 (Besiroglu et al. 2024, "
             "arXiv 2404.10102), full-precision loss of models trained on MassiveText");
    snprintf(out->prov.method, sizeof out->prov.method,
             "published coefficients; Huber (delta 1e-3) on log loss, L-BFGS from 4,500 starts, 245 points");
    out->prov.n_min = 4.4e7;  /* the Chinchilla models' range (44M-16B parameters) */
    out->prov.n_max = 1.6e10;
    out->prov.d_min = 5e9;
    out->prov.d_max = 5e11;
}

extern const char fit_builtin_qat_json[]; /* generated: build/generated/builtin_qat_law.c */

qp_status fit_builtin_qat(data_law *out, qp_error *err)
{
    qp_status st = data_law_parse(fit_builtin_qat_json, "built-in QAT law", out, err);
    if (st) return st;
    if (out->form != DATA_LAW_QAT) {
        data_law_free(out);
        return qp_fail(err, QP_ERR_PARSE, "the built-in QAT law is of form %s, not qat: rebuild from "
                       "data/laws/own-qat.law.json", data_law_form_name(out->form));
    }
    return QP_OK;
}

void fit_builtin_fraction(data_law *out)
{
    data_law_init(out, DATA_LAW_FRACTION);
    out->coef[0] = FIT_FRACTION_A_PAPER;
    snprintf(out->prov.source, sizeof out->prov.source,
             "built-in: Dremov et al. 2025, Compute-Optimal Quantization-Aware Training (arXiv "
             "2509.22935), closed-form optimal QAT fraction, DCLM data");
    snprintf(out->prov.method, sizeof out->prov.method,
             "published constant; reported MAE 0.091 on the optimal fraction");
    out->prov.n_min = 8.6e7; /* the paper's models: 86M-2.2B parameters, 2.3B-1.4T tokens */
    out->prov.n_max = 2.2e9;
    out->prov.d_min = 2.3e9;
    out->prov.d_max = 1.4e12;
    out->prov.bits[0] = 1;
    out->prov.bits[1] = 2;
    out->prov.bits[2] = 4;
    out->prov.bits[3] = 6;
    out->prov.n_bits = 4;
}
