/* fit.h: fitting loss laws (law/law.h) to run records and to calibration points.
 * Public symbols are prefixed fit_. Method: docs/fitter.md. */
#ifndef FIT_H
#define FIT_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "law.h"
#include "qp.h"

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
    char method[16];     /* training method of the quantized runs fitted; "" = "qat". Quantized
                            runs of other methods are excluded (n_other_method); full-precision
                            runs belong to every method */
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
    char excluded_runs[640]; /* the bad, diverged and failed runs by id and reason ("and N more") */
    int n_other_form;    /* valid runs the form does not use (QAT runs in a chinchilla fit) */
    int n_other_method;  /* quantized runs of another training method than fit_options.method */
    char other_methods[128]; /* their methods, comma-separated ("efqat, e2eqp") */
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
double fit_huber_objective(const data_law *law, const law_point *x, const double *loss, size_t n,
                           double delta);

/* ======================================================================== */
/* Fitting a penalty law (form penalty) to penalty observations             */
/* (docs/fitter.md, "Penalty fits"; the reference law: docs/reference-law.md)*/
/* ======================================================================== */

/* One observed QAT penalty: loss of the quantized model minus the full-precision loss of
 * the same N and D (nats, in the units of the full-precision law it composes with). */
typedef struct {
    law_point x;
    double penalty;
    double weight;      /* relative weight in the least-squares fit (1 = default) */
    char source[48];    /* where it came from, for messages */
} fit_penalty_point;

typedef struct {
    double anchor_a;     /* NAN = no fraction anchors; else make f_hat(a) the law's optimum */
    double anchor_weight;/* weight of an anchor residual (default 1) */
    int n_starts;        /* Latin hypercube starts (default 48) */
    int bootstrap;       /* resamples of the observations (default 0) */
    double ci_level;     /* default 0.95 */
    uint64_t seed;       /* default 1 */
    int reproducible;    /* 1: no creation time or code version in the provenance, so the
                            same inputs give the same file byte for byte */
    char source[512];    /* provenance source */
} fit_penalty_options;

void fit_penalty_options_init(fit_penalty_options *o);

typedef struct {
    double cost;         /* 0.5 * sum of squared weighted residuals at the best start */
    double rmse_log;     /* of the observations alone */
    double anchor_max;   /* largest |law-optimal fraction - f_hat| over the anchors */
    int starts, starts_at_best, n_anchors;
} fit_penalty_report;

/* Fit the penalty form. At least 11 observations. `out` is initialised here. */
qp_status fit_penalty(const fit_penalty_point *pts, size_t n, const fit_penalty_options *o, data_law *out,
                      fit_penalty_report *rep, qp_error *err);

/* Penalty observations from run records: each status-ok quantized run minus the
 * full-precision loss of the same N and D, taken from `fp_law` when given (chinchilla or
 * qat law) or else from the mean of the matching full-precision runs (N within 2%, D_total
 * within 5%). Runs without a match, and non-positive penalties (within noise), are
 * skipped and counted. *pts is malloc'ed. */
qp_status fit_penalty_points_from_runs(const data_run_list *runs, const data_law *fp_law,
                                       fit_penalty_point **pts, size_t *n, int *n_unmatched,
                                       int *n_nonpositive, qp_error *err);
/* Penalty observations from a CSV file with the header
 * source,n_params,d_fp,d_qat,bits,penalty,weight[,note] (docs/formats.md). */
qp_status fit_penalty_points_read(const char *path, fit_penalty_point **pts, size_t *n, qp_error *err);

/* ======================================================================== */
/* The efficiency form: a method's token-efficiency factor per bit width      */
/* (docs/fitter.md, "Efficiency fits")                                      */
/* ======================================================================== */

/* Residuals of one bit width, or of one S_qat decade. */
typedef struct {
    double key;          /* bits, or the decade's lower edge of S_qat */
    int n;
    double eta, eta_lo, eta_hi; /* per bit width (NAN in the S_qat groups and without a bootstrap) */
    int at_bound;        /* eta ended on a bound of [FIT_ETA_MIN, FIT_ETA_MAX] */
    double mean_resid, rmse_log; /* log(predicted / observed) */
} fit_eta_group;

#define FIT_ETA_MIN 1e-3
#define FIT_ETA_MAX 1e3

typedef struct {
    int n_input, n_used;
    int n_not_ok;        /* diverged, failed or non-finite */
    int n_fp;            /* full-precision runs (no QAT phase: they carry no eta) */
    int n_other_method;  /* quantized runs of another method */
    int n_no_qat;        /* runs of the method with D_qat = 0, or a width outside whole 1..8 */
    fit_eta_group by_bits[8];
    int n_bitw;
    fit_eta_group by_sqat[24];
    int n_sqat;
    double rmse_log;
    int bootstrap_done;
} fit_efficiency_report;

/* Fits eta_b for every whole bit width b in 1..8 that `opt->method`'s quantized runs cover:
 * the eta in [FIT_ETA_MIN, FIT_ETA_MAX] minimising the summed Huber (opt->huber_delta) of
 * log L_qat(N, D_fp, eta D_qat, b) - log loss over those runs, with `qat` held fixed (a
 * log-spaced grid, then Brent's method, gsl_min). opt->bootstrap resamples of the runs
 * within each width give the intervals. opt->method must name a method other than qat.
 * `out` is initialised here (form efficiency; eta 0 where not fitted). */
qp_status fit_efficiency(const data_run_list *runs, const law_model *qat, const fit_options *opt, data_law *out,
                         fit_efficiency_report *rep, qp_error *err);
void fit_efficiency_report_print(FILE *f, const fit_efficiency_report *rep, const data_law *law);

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
