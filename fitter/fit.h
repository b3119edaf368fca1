/* fit.h: the loss law (value and gradient) and fitting it to run records.
 * Public symbols are prefixed fit_. The law's definition: docs/law.md. */
#ifndef FIT_H
#define FIT_H

#include "data.h"
#include "qp.h"

/* ======================================================================== */
/* The statistic and the closed-form optimal fraction                       */
/* ======================================================================== */

/* The paper's constant a of f_hat = exp(-a / ln S_total) (natural log). */
#define FIT_FRACTION_A_PAPER 6.7297

/* Tokens per parameter byte: S = D / (N * B / 8). N = all parameters. */
double fit_tokens_per_param_byte(double tokens, double n_params, int bits);
/* Closed-form optimal QAT fraction exp(-a / ln S). NAN when S <= 1 (meaningless there). */
double fit_fraction_hat(double a, double s_total);

/* ======================================================================== */
/* The loss law                                                               */
/* ======================================================================== */

/* One point of the law's domain. bits >= 16 means full precision: the QAT penalty
 * terms are zero and D = d_fp + d_qat is all full-precision training. */
typedef struct {
    double n_params; /* N, all parameters */
    double d_fp;     /* tokens */
    double d_qat;    /* tokens */
    int bits;
} fit_point;

/* Predicted loss (nats/token) of a chinchilla- or qat-form law. NAN for a fraction law
 * or a point outside the domain (non-positive N or D). */
double fit_law_loss(const data_law *law, const fit_point *x);

/* The law in the fitter's parametrization: theta holds the log of every positive
 * coefficient (E, A, B, theta, phi, lambda) and the exponents as they are, so the law is
 * log L = LSE(terms) with every term linear in theta. Lengths: data_law_ncoef(form). */
void fit_law_to_theta(const data_law *law, double *theta);
void fit_theta_to_coef(data_law_form form, const double *theta, double *coef);
/* 1 if parameter i of the form is fitted in log space. */
int fit_theta_is_log(data_law_form form, int i);
/* log L at x for theta; if grad != NULL, also d log L / d theta (length ncoef). */
double fit_law_log_loss(data_law_form form, const double *theta, const fit_point *x, double *grad);

/* The built-in laws, compiled in (see docs/law.md for provenance):
 * chinchilla form: Epoch AI's replication of Chinchilla (Besiroglu et al. 2024);
 * fraction form: a = 6.7297 (Dremov et al. 2025). */
void fit_builtin_chinchilla(data_law *out);
void fit_builtin_fraction(data_law *out);

#endif
