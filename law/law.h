/* law.h: qatplan's loss laws: the forms and their evaluation (value and gradient), the
 * statistic S, the closed-form optimal fraction, the built-in laws, composing a
 * full-precision law with a QAT penalty, and the physical checks every prediction must
 * pass. Public symbols are prefixed law_. The file format lives in data/ (data_law);
 * the definitions: docs/law.md. */
#ifndef LAW_H
#define LAW_H

#include "data.h"
#include "qp.h"

/* ======================================================================== */
/* The statistic and the closed-form optimal fraction                       */
/* ======================================================================== */

/* The paper's constant a of f_hat = exp(-a / ln S_total) (natural log). */
#define LAW_FRACTION_A_PAPER 6.7297

/* Tokens per parameter byte: S = D / (N * B / 8). N = all parameters. */
double law_tokens_per_param_byte(double tokens, double n_params, double bits);
/* Closed-form optimal QAT fraction exp(-a / ln S). NAN when S <= 1 (meaningless there). */
double law_fraction_hat(double a, double s_total);

/* ======================================================================== */
/* The forms                                                                */
/* ======================================================================== */

/* One point of the law's domain. bits >= LAW_FP_BITS means full precision: the QAT penalty
 * terms are zero and D = d_fp + d_qat is all full-precision training. */
#define LAW_FP_BITS DATA_FP_BITS
typedef struct {
    double n_params; /* N, all parameters, embeddings included */
    double d_fp;     /* tokens */
    double d_qat;    /* tokens */
    double bits;     /* weight bit width; log2(3) for ternary; >= LAW_FP_BITS: full precision */
} law_point;

/* Predicted loss of a chinchilla- or qat-form law, in the law's units. NAN for other forms
 * or a point outside the domain (non-positive N or D). */
double law_loss(const data_law *law, const law_point *x);
/* The QAT penalty of a penalty- or qat-form law (0 at full precision): the loss the
 * quantized model adds over the full-precision model of the same N and D. NAN otherwise. */
double law_penalty(const data_law *law, const law_point *x);

/* An efficiency law's eta at `bits` (a method's QAT tokens count as eta * D_qat tokens of
 * the qat law): coef[bits - 1] for whole widths 1..8; NAN where the law has none (not
 * fitted there, a fractional or ternary width, another form). */
double law_efficiency_eta(const data_law *law, double bits);

/* The law in the fitter's parametrization: theta holds the log of every positive
 * coefficient (E, A, B, theta, phi, lambda) and the exponents as they are, so the law is
 * log L = LSE(terms) with every term linear in theta. Lengths: data_law_ncoef(form). */
void law_to_theta(const data_law *law, double *theta);
void law_theta_to_coef(data_law_form form, const double *theta, double *coef);
/* 1 if parameter i of the form is fitted in log space. */
int law_theta_is_log(data_law_form form, int i);
/* log L (chinchilla, qat) or log penalty (penalty form) at x for theta; if grad != NULL,
 * also its derivative by theta (length ncoef). NAN outside the domain; a penalty form at
 * full precision is -INFINITY (no penalty). */
double law_log_loss(data_law_form form, const double *theta, const law_point *x, double *grad);

/* ======================================================================== */
/* Built-in laws (provenance: docs/law.md)                                  */
/* ======================================================================== */

/* chinchilla form: Epoch AI's replication of Chinchilla (Besiroglu et al. 2024), nats/token. */
void law_builtin_chinchilla(data_law *out);
/* fraction form: a = 6.7297 (Dremov et al. 2025). */
void law_builtin_fraction(data_law *out);
/* penalty form: the reference QAT penalty calibrated to published LLM-scale measurements
 * (data/laws/reference.law.json, compiled in; docs/reference-law.md). Composes with the
 * built-in chinchilla law. Free with data_law_free. */
qp_status law_builtin_reference(data_law *out, qp_error *err);
/* qat form: the law qatplan fitted to its own sweep of byte-level models of 7.5K-117K
 * parameters (data/laws/own.law.json, compiled in; docs/own-law.md), nats per byte. */
qp_status law_builtin_own(data_law *out, qp_error *err);
/* A built-in law by name: "reference" (penalty), "own" (qat), "chinchilla", "fraction". */
qp_status law_builtin_by_name(const char *name, data_law *out, qp_error *err);
/* 1 if `name` names a built-in law. */
int law_builtin_is_name(const char *name);
/* A built-in law by name, or else a law file (or http(s) URL): what every --law takes. */
qp_status law_read(const char *file_or_name, data_law *out, qp_error *err);

/* ======================================================================== */
/* A model: the full-precision loss and the QAT loss, from one or two laws   */
/* ======================================================================== */

/* Either a qat-form law (its own chinchilla part is the full-precision reference), or a
 * full-precision law plus a penalty law; a chinchilla law given beside a qat law replaces
 * its full-precision part on purpose. The laws are borrowed, not owned. */
typedef struct {
    const data_law *fp;      /* chinchilla or qat form: full-precision loss */
    const data_law *penalty; /* penalty or qat form: the QAT penalty; NULL = none */
    data_loss_units units;
    int vocab;               /* 0 = unknown */
} law_model;

/* Refuses laws of different loss units (when both are known) and forms in the wrong role. */
qp_status law_model_init(law_model *m, const data_law *fp, const data_law *penalty, qp_error *err);
/* Full-precision loss at (N, D) tokens. */
double law_model_loss_fp(const law_model *m, double n_params, double d_total);
/* Loss of the model quantized at x->bits after the split (D_fp, D_qat): loss_fp + penalty. */
double law_model_loss(const law_model *m, const law_point *x);
double law_model_penalty(const law_model *m, const law_point *x);
/* The irreducible loss E of the full-precision law. */
double law_model_floor(const law_model *m);
/* "nats/token", "nats/byte" or "nats (units unknown)". */
const char *law_units_label(data_loss_units u);

/* ======================================================================== */
/* Physical checks                                                          */
/* ======================================================================== */

typedef enum {
    LAW_CHECK_OK = 0,
    LAW_CHECK_NOT_FINITE,      /* a loss or penalty is NaN or infinite */
    LAW_CHECK_BELOW_FP,        /* QAT loss below the full-precision loss (negative penalty) */
    LAW_CHECK_BELOW_FLOOR,     /* full-precision loss below the law's E */
    LAW_CHECK_MORE_BITS_WORSE, /* the penalty grows with one more bit */
    LAW_CHECK_ABOVE_UNIFORM,   /* loss above ln(vocabulary): worse than guessing uniformly */
} law_check;

/* Checks one prediction. On failure writes one line saying which check and why. */
law_check law_check_point(const law_model *m, const law_point *x, char *why, size_t len);

/* Walks a grid over N in [n_lo, n_hi], tokens per parameter in [tpp_lo, tpp_hi], the
 * given bit widths and QAT fractions 0..1; counts the points that fail a check and keeps
 * the first failure's line. For 'qatplan fit' (over the fitted range) and the tests. */
typedef struct {
    long n_points, n_failed;
    char first[320];
} law_check_summary;
void law_check_grid(const law_model *m, double n_lo, double n_hi, double tpp_lo, double tpp_hi,
                    const int *bits, int n_bits, law_check_summary *out);

#endif
