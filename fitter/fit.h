/* fit.h: the loss law (value and gradient) and fitting it to run records.
 * Public symbols are prefixed fit_. The law's definition: docs/law.md. */
#ifndef FIT_H
#define FIT_H

#include <stdint.h>
#include <stdio.h>

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
/* qat form: the law qatplan fitted to its own sweep (data/laws/own-qat.law.json, compiled in;
 * docs/own-law.md), with its provenance and bootstrap samples. Free with data_law_free. */
qp_status fit_builtin_qat(data_law *out, qp_error *err);

/* ======================================================================== */
/* Fitting a law to run records (docs/fitter.md)                            */
/* ======================================================================== */

#define FIT_CHINCHILLA_GRID_STARTS 4500 /* Epoch AI's grid: alpha, beta, e, a, b */
#define FIT_QAT_DEFAULT_STARTS 128      /* Latin hypercube starts of the qat form */

typedef struct {
    data_law_form form;  /* default DATA_LAW_QAT */
    double huber_delta;  /* Huber threshold on log-loss residuals; default 1e-3 */
    int bootstrap;       /* K resamples of the runs (0 = none, the default) */
    double ci_level;     /* bootstrap interval level; default 0.95 */
    uint64_t seed;       /* bootstrap and Latin hypercube seed; default 1 */
    int n_starts;        /* 0 = the form's default: the full 4,500-start grid (chinchilla,
                            also stage 1 of qat) and 128 Latin hypercube starts (qat);
                            > 0 = that many (an evenly strided subset of the grid) */
    int threads;         /* OpenMP threads; 0 = OpenMP's default (OMP_NUM_THREADS) */
    double best_rtol;    /* a start "reached the best" when its objective is within
                            best_rtol * |best| of it; default 1e-4 */
    int max_iter;        /* BFGS iterations per start; default 3000 */
    int loo;             /* compute leave-one-model-size-out error (default 1) */
    char source[512];    /* provenance source, e.g. the input file names; "" = "run records" */
} fit_options;

void fit_options_init(fit_options *o);

/* Residuals of one model size (or size bin) or one bit width. Residual = log(observed) - log(predicted). */
typedef struct {
    double key;          /* N (parameters) or bits */
    double key_lo, key_hi; /* range of N in the group (sizes are binned when > 12 distinct) */
    int n;
    double mean, rmse;   /* of the log-loss residuals */
} fit_resid_group;

/* A (N, D_total, bits) group of the fraction form. */
typedef struct {
    double n_params, d_total, s_total;
    int bits, n_fractions;
    double f_argmin;     /* fraction of the group's lowest loss */
    double f_best;       /* estimated best fraction (parabola through the argmin, docs/fitter.md) */
    double f_fit;        /* fitted f_hat(a, S_total) */
} fit_fraction_group;

typedef struct {
    data_law_form form;
    int n_input, n_used;
    /* exclusions, each run counted once under its first reason */
    int n_bad;           /* non-finite or non-positive N, D or loss, bits outside 1..8/16/32 */
    int n_diverged, n_failed, n_duplicate;
    int n_other_form;    /* valid runs the form does not use (QAT runs in a chinchilla fit) */
    int starts, starts_ok, starts_at_best;
    double best_objective; /* summed Huber of the point estimate (bound penalty excluded) */
    int bounds_active;   /* coefficients that ended on a bound (listed in bound_note) */
    char bound_note[256];
    double rmse_log, mae_log, r2, loo_rmse_log;
    fit_resid_group *by_size, *by_bits;
    int n_sizes, n_bitw;
    int bootstrap_done, bootstrap_failed;
    fit_fraction_group *groups; /* fraction form */
    int n_groups;
    double frac_rmse, frac_mae; /* fraction form: error of f_hat against the groups' f_best */
    double seconds;
} fit_report;

void fit_report_free(fit_report *rep); /* safe on NULL */
/* Human-readable report: data, exclusions, starts, quality, residuals by size and bits. */
void fit_report_print(FILE *f, const fit_report *rep, const data_law *law);

/* Fit `opt->form` to the runs. Bad, diverged, failed and duplicate runs are excluded and
 * counted. QP_ERR_UNIDENTIFIED when the data cannot identify the form (message says what
 * is missing); QP_ERR_NUMERIC when no start converged. `out` is initialised here (free it
 * with data_law_free); `rep` may be NULL. Never returns a law with a non-finite value. */
qp_status fit_runs(const data_run_list *runs, const fit_options *opt, data_law *out,
                   fit_report *rep, qp_error *err);

/* Summed Huber objective of a chinchilla or qat law on the given points (log residuals),
 * as the fitter minimises it, without the bound penalty. For benchmarks and tests. */
double fit_huber_objective(const data_law *law, const fit_point *x, const double *loss, size_t n,
                           double delta);

/* ======================================================================== */
/* Synthetic runs (docs/fitter.md, "Synthetic runs")                        */
/* ======================================================================== */

typedef struct {
    int n_runs;          /* chinchilla: points drawn; qat: runs kept from the grid (0 = all) */
    double noise;        /* sigma of the multiplicative log-normal noise: loss * exp(sigma*z);
                            default 0.01 (chinchilla) and 0.002 (qat, see docs/fitter.md) */
    double outlier_frac; /* fraction of runs corrupted as outliers */
    double outlier_lo, outlier_hi; /* outliers: loss * exp(U(lo, hi)); defaults 0.05, 0.3 */
    double outlier_down; /* probability that an outlier is exp(-U) instead (default 0) */
    uint64_t seed;
    /* chinchilla: N log-uniform in [n_lo, n_hi], tokens per parameter log-uniform in
     * [tpp_lo, tpp_hi]. qat: n_sizes sizes log-spaced in [n_lo, n_hi], n_tpp token ratios
     * log-spaced in [tpp_lo, tpp_hi], the bit widths in bits[], fractions 0, 0.1, ..., 1;
     * plus one full-precision (bits 16) run per (size, tokens). */
    double n_lo, n_hi, tpp_lo, tpp_hi;
    int n_sizes, n_tpp;
    int bits[8], n_bits;
} fit_synth_options;

/* Defaults for the form: chinchilla 500 points, N 1e3..1e11, 0.2..1e5 tokens/parameter;
 * qat 757 runs from 6 sizes (3e7..1e9) x 4 token ratios (10..300) x bits 1,2,4,6 x 11
 * fractions + FP runs; no outliers, seed 1. */
void fit_synth_options_init(fit_synth_options *o, data_law_form form);
/* Draw runs from `truth` (chinchilla or qat form). Appends to out; run ids synth-<k>. */
qp_status fit_synth_runs(const data_law *truth, const fit_synth_options *o, data_run_list *out,
                         qp_error *err);
/* The documented "true" qat law the synthetic tests and benchmarks draw from: Epoch's
 * chinchilla part plus penalty terms chosen so that the law-optimal QAT fraction grows with
 * S_total roughly like the paper's f_hat (docs/fitter.md). */
void fit_synth_true_qat(data_law *out);

#endif
