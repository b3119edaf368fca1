/* fit_internal.h: the fitter's objective and optimiser, shared by the fitter's files.
 * Not a public header: the module's API is fit.h. */
#ifndef FIT_INTERNAL_H
#define FIT_INTERNAL_H

#include <stddef.h>

#include "fit.h"

/* Features of the fit points. The optimiser works on u, the law's theta with every
 * term's intercept taken at the data's mean features (covariates are centred), which
 * decouples each intercept from its exponents; fit_u_to_theta undoes it. The chinchilla
 * form is fitted uncentred (means 0) so the 4,500-start grid is Epoch AI's own. */
typedef struct {
    data_law_form form;
    int np;                /* parameters */
    size_t n;              /* points */
    double *y;             /* log observed loss */
    double *w;             /* weight per point: 1, or the bootstrap multiplicity (0 = unused) */
    double *zn, *zd;       /* ln N - m_n, ln D_total - m_d */
    double *zb, *zq, *zf;  /* quantized points: b ln 2 - m_b, log1p(S_qat) - m_q, log1p(S_fp) - m_f */
    unsigned char *quant;  /* 1 for a quantized point (not data_bits_is_fp) in the qat form */
    double m_n, m_d, m_b, m_q, m_f;
    /* covariates are also scaled to unit spread when centred: u_j = theta_j * sc[j] for an
     * exponent j (sc = the spread of its covariate), sc = 1 for intercepts */
    double sc[DATA_LAW_MAX_COEF];
    /* chinchilla fast path: distinct zn and zd values and each point's index into them */
    int *in, *id;
    int nu_n, nu_d;
    double *un, *ud;
    double delta;
    double lo[DATA_LAW_MAX_COEF], hi[DATA_LAW_MAX_COEF]; /* bounds in u: theta's bounds on the
                                                              exponents times sc; E (uncentred)
                                                              is the one bounded intercept */
    double bound_w;        /* weight of the quadratic bound penalty */
    double *block;         /* the one allocation behind the arrays above */
} fit_problem;

/* Build the problem from points (x, loss) with weights (NULL = all 1). */
qp_status fit_problem_init(fit_problem *P, data_law_form form, const law_point *x,
                           const double *loss, size_t n, double delta, int center, qp_error *err);
void fit_problem_free(fit_problem *P);
/* The bounds keeping a law physical (docs/fitter.md); E <= e_max (the lowest observed loss). */
void fit_problem_set_bounds(fit_problem *P, double lowest_loss);

/* Objective (summed Huber + bound penalty) and gradient (may be NULL) at u. Scratch: at
 * least fit_scratch_size(P) doubles, or NULL to allocate. */
size_t fit_scratch_size(const fit_problem *P);
double fit_objective(const fit_problem *P, const double *u, double *grad, double *scratch);
/* The summed Huber alone (no bound penalty). */
double fit_huber_only(const fit_problem *P, const double *u, double *scratch);

void fit_u_to_theta(const fit_problem *P, const double *u, double *theta);
void fit_theta_to_u(const fit_problem *P, const double *theta, double *u);

/* Minimise from u (in/out) with GSL's BFGS2; tight = 1 for far stricter stopping. Returns 0 on success (converged or no
 * further progress possible at a finite point), -1 when the start failed. */
int fit_minimize(const fit_problem *P, double *u, int max_iter, int tight, double *fval, int *iters);

/* Run every start (rows of starts, n_starts x np) in parallel; write each start's final
 * objective (INFINITY when failed) and point (row of ends, may be NULL). Returns the index
 * of the best start or -1. */
int fit_multistart(const fit_problem *P, const double *starts, int n_starts, int max_iter,
                   int threads, double *fvals, double *ends);

/* The full 4,500-start grid of Epoch AI (alpha, beta 0..2 step 0.5; e -1..1 step 0.5;
 * a, b 0..25 step 5) in theta order (e, a, b, alpha, beta). Writes min(n, 4500) rows,
 * evenly strided when n < 4500; returns the count. */
int fit_chinchilla_grid(double *starts, int n);

/* One Latin-hypercube column: n values scale * (lo + (hi - lo) * (stratum + U) / n), one per
 * stratum in a random order, into out[k * stride]; perm needs room for n ints. */
void fit_lhs_column(int n, double lo, double hi, double scale, uint64_t *rng, int *perm, double *out,
                    size_t stride);
/* The law takes the ks >= 2 bootstrap samples (rows of its coefficients; freed with the
 * law) and gets each coefficient's interval at `level`, percentiles linear between order
 * statistics. On failure the samples are freed. */
qp_status fit_law_take_samples(data_law *law, double *samples, int ks, double level, qp_error *err);

/* fit_kernel.c: the chinchilla objective (summed Huber, no bound penalty) and gradient
 * over all points in one vectorised loop; u's exponents of every point must lie in
 * [-700, 700]. Its exp and log, exposed for tests. */
double fit_kernel_chinchilla(size_t n, const double *zn, const double *zd, const double *y,
                             const double *w, const double *u, double delta, double *g);
/* Any form, log-sum-exp, safe for every finite u. */
double fit_kernel_lse(const fit_problem *P, const double *u, double *g);
double fit_kernel_exp(double x);
double fit_kernel_log(double x);

/* qp_rng_next (splitmix64) and the normal deviates drawn from it. */
uint64_t fit_rng_next(uint64_t *state);
double fit_rng_uniform(uint64_t *state);  /* [0, 1) */
double fit_rng_normal(uint64_t *state);

#endif
