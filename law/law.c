/* The QAT loss law, evaluated in log space with log-sum-exp:
 *   L = E + A/N^alpha + B/D^beta
 *     + theta  * 2^(-kappa*b)
 *     + phi    * 2^(-chi*b) / (N^psi * (1+S_qat)^omega)
 *     + lambda * 2^(-mu*b)  * (1+S_fp)^xi / (N^nu * (1+S_qat)^rho)
 * Each term's log is linear in the fit parameters, so value and gradient are one pass.
 * The penalty form is the last three terms alone. */
#include "law.h"

#include <stdio.h>

#include <math.h>
#include <string.h>

/* Parameter layout of the qat form (the first five are the chinchilla form's). */
enum { P_E, P_A, P_B, P_ALPHA, P_BETA, P_THETA, P_KAPPA, P_PHI, P_CHI, P_PSI, P_OMEGA,
       P_LAMBDA, P_MU, P_XI, P_NU, P_RHO };

double law_tokens_per_param_byte(double tokens, double n_params, double bits)
{
    if (!(n_params > 0) || bits <= 0) return NAN;
    return tokens / (n_params * bits / 8.0);
}

double law_fraction_hat(double a, double s_total)
{
    if (!(s_total > 1) || !isfinite(s_total)) return NAN;
    return exp(-a / log(s_total));
}

int law_theta_is_log(data_law_form form, int i)
{
    switch (form) {
    case DATA_LAW_CHINCHILLA:
        return i == P_E || i == P_A || i == P_B;
    case DATA_LAW_QAT:
        return i == P_E || i == P_A || i == P_B || i == P_THETA || i == P_PHI || i == P_LAMBDA;
    case DATA_LAW_PENALTY: /* the qat form's parameters from theta on */
        return law_theta_is_log(DATA_LAW_QAT, i + P_THETA);
    case DATA_LAW_FRACTION:
    case DATA_LAW_EFFICIENCY:
    case DATA_LAW_FORM_COUNT_:
        break;
    }
    return 0;
}

void law_to_theta(const data_law *law, double *theta)
{
    int n = data_law_ncoef(law->form);
    for (int i = 0; i < n; i++)
        theta[i] = law_theta_is_log(law->form, i) ? log(law->coef[i]) : law->coef[i];
}

void law_theta_to_coef(data_law_form form, const double *theta, double *coef)
{
    int n = data_law_ncoef(form);
    for (int i = 0; i < n; i++) coef[i] = law_theta_is_log(form, i) ? exp(theta[i]) : theta[i];
}

/* The penalty terms' logs (t[0..2]) for the penalty parameters th (theta..rho); with grad,
 * dt[k][j] = d t_k / d th_j. */
static void penalty_terms(const double *th, const law_point *x, double ln_n, double *t, double *aux)
{
    double bytes = x->n_params * (double)x->bits / 8.0;
    double b_ln2 = (double)x->bits * M_LN2;
    /* log1p(S): finite at S = 0 (QAT from scratch, or no QAT at all). */
    double ln1s_qat = log1p(x->d_qat / bytes), ln1s_fp = log1p(x->d_fp / bytes);
    const int Q = P_THETA;
    t[0] = th[P_THETA - Q] - th[P_KAPPA - Q] * b_ln2;
    t[1] = th[P_PHI - Q] - th[P_CHI - Q] * b_ln2 - th[P_PSI - Q] * ln_n - th[P_OMEGA - Q] * ln1s_qat;
    t[2] = th[P_LAMBDA - Q] - th[P_MU - Q] * b_ln2 + th[P_XI - Q] * ln1s_fp - th[P_NU - Q] * ln_n -
           th[P_RHO - Q] * ln1s_qat;
    aux[0] = b_ln2;
    aux[1] = ln1s_qat;
    aux[2] = ln1s_fp;
}

/* d t / d theta of the penalty terms, weighted by w (softmax weights), into g (offset to theta). */
static void penalty_grad(const double *w, double ln_n, const double *aux, double *g)
{
    const int Q = P_THETA;
    double b_ln2 = aux[0], ln1s_qat = aux[1], ln1s_fp = aux[2];
    g[P_THETA - Q] = w[0];
    g[P_KAPPA - Q] = -w[0] * b_ln2;
    g[P_PHI - Q] = w[1];
    g[P_CHI - Q] = -w[1] * b_ln2;
    g[P_PSI - Q] = -w[1] * ln_n;
    g[P_OMEGA - Q] = -w[1] * ln1s_qat;
    g[P_LAMBDA - Q] = w[2];
    g[P_MU - Q] = -w[2] * b_ln2;
    g[P_XI - Q] = w[2] * ln1s_fp;
    g[P_NU - Q] = -w[2] * ln_n;
    g[P_RHO - Q] = -w[2] * ln1s_qat;
}

static double lse(const double *t, int n, double *w)
{
    double m = t[0];
    for (int k = 1; k < n; k++)
        if (t[k] > m) m = t[k];
    double sum = 0;
    for (int k = 0; k < n; k++) sum += (w[k] = exp(t[k] - m));
    for (int k = 0; k < n; k++) w[k] /= sum; /* softmax weights: d LSE / d t_k */
    return m + log(sum);
}

double law_log_loss(data_law_form form, const double *th, const law_point *x, double *grad)
{
    if (form != DATA_LAW_CHINCHILLA && form != DATA_LAW_QAT && form != DATA_LAW_PENALTY) return NAN;
    double d_total = x->d_fp + x->d_qat;
    if (!(x->n_params > 0) || !(d_total > 0) || x->d_fp < 0 || x->d_qat < 0 || x->bits < 1) return NAN;
    double ln_n = log(x->n_params), ln_d = log(d_total);
    int quantized = form != DATA_LAW_CHINCHILLA && x->bits < LAW_FP_BITS;
    int np = data_law_ncoef(form);
    if (grad) memset(grad, 0, sizeof(double) * (size_t)np);
    double t[6], w[6], aux[3];
    if (form == DATA_LAW_PENALTY) {
        if (!quantized) return -INFINITY;
        penalty_terms(th, x, ln_n, t, aux);
        double v = lse(t, 3, w);
        if (grad) penalty_grad(w, ln_n, aux, grad);
        return v;
    }
    t[0] = th[P_E];
    t[1] = th[P_A] - th[P_ALPHA] * ln_n;
    t[2] = th[P_B] - th[P_BETA] * ln_d;
    if (quantized) penalty_terms(th + P_THETA, x, ln_n, t + 3, aux);
    int nt = quantized ? 6 : 3;
    double v = lse(t, nt, w);
    if (grad) {
        grad[P_E] = w[0];
        grad[P_A] = w[1];
        grad[P_ALPHA] = -w[1] * ln_n;
        grad[P_B] = w[2];
        grad[P_BETA] = -w[2] * ln_d;
        if (quantized) penalty_grad(w + 3, ln_n, aux, grad + P_THETA);
    }
    return v;
}

/* Sum of c_k * exp(rest_k) over the terms of the law at x, in linear space, so a law file
 * with a negative coefficient evaluates to what it says (and the physical checks can catch
 * it) instead of to NaN. first, n: the terms to sum (chinchilla part 0-2, penalty 3-5). */
static double signed_sum(const data_law *law, const law_point *x, int first, int n)
{
    int off = law->form == DATA_LAW_PENALTY ? P_THETA : 0; /* a penalty law's coef[0] is theta */
    double theta[DATA_LAW_MAX_COEF] = {0}, c[DATA_LAW_MAX_COEF] = {0};
    for (int i = 0; i < data_law_ncoef(law->form); i++) {
        c[i + off] = law->coef[i];
        theta[i + off] = law_theta_is_log(law->form, i) ? 0 : law->coef[i]; /* intercepts set to log 1 */
    }
    const int icpt[6] = {P_E, P_A, P_B, P_THETA, P_PHI, P_LAMBDA};
    double t[6], aux[3];
    double d_total = x->d_fp + x->d_qat, ln_n = log(x->n_params);
    t[0] = 0;
    t[1] = -theta[P_ALPHA] * ln_n;
    t[2] = -theta[P_BETA] * log(d_total);
    if (first + n > 3) penalty_terms(theta + P_THETA, x, ln_n, t + 3, aux);
    double sum = 0;
    for (int k = first; k < first + n; k++) sum += c[icpt[k]] * exp(t[k]);
    return sum;
}

static int in_domain(const law_point *x)
{
    double d = x->d_fp + x->d_qat;
    return x->n_params > 0 && d > 0 && x->d_fp >= 0 && x->d_qat >= 0 && x->bits >= 1;
}

double law_loss(const data_law *law, const law_point *x)
{
    if (law->form != DATA_LAW_CHINCHILLA && law->form != DATA_LAW_QAT) return NAN;
    if (!in_domain(x)) return NAN;
    double l = signed_sum(law, x, 0, 3);
    return law->form == DATA_LAW_QAT && x->bits < LAW_FP_BITS ? l + signed_sum(law, x, 3, 3) : l;
}

double law_penalty(const data_law *law, const law_point *x)
{
    if (law->form != DATA_LAW_PENALTY && law->form != DATA_LAW_QAT) return NAN;
    if (!in_domain(x)) return NAN;
    return x->bits >= LAW_FP_BITS ? 0 : signed_sum(law, x, 3, 3);
}

double law_efficiency_eta(const data_law *law, double bits)
{
    if (law->form != DATA_LAW_EFFICIENCY || !(bits >= 1 && bits <= 8) || fabs(bits - round(bits)) > 1e-9) return NAN;
    double eta = law->coef[(int)round(bits) - 1];
    return eta > 0 && isfinite(eta) ? eta : NAN; /* 0: not fitted at this width */
}
