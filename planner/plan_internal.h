/* plan_internal.h: what the planner's files share. Not a public header: the module's API
 * is plan.h. */
#ifndef PLAN_INTERNAL_H
#define PLAN_INTERNAL_H

#include "plan.h"

/* Loss of the model at fraction f of D tokens. */
typedef struct {
    const law_model *m;
    double n, d, bits;
} plan_frac_ctx;
double plan_loss_at_fraction(double f, void *ctx);

/* The optimum on a grid of `grid` points refined by Brent's method (err may be NULL). */
qp_status plan_optimum_on_grid(const law_model *m, double n, double d, double bits, int grid, double *f_opt,
                               double *loss_opt, qp_error *err);

/* Per-sample optimum over the QAT law's bootstrap samples at the row's N, D and bits:
 * intervals of f_opt, loss and penalty into the row; the per-sample losses into
 * sample_loss (n_samples values, NAN where a sample failed) when not NULL. */
qp_status plan_bootstrap_row(const law_model *m, plan_row *row, double level, double *sample_loss, qp_error *err);

/* Search mode: the N in [n_lo, n_hi] of lowest law-optimal loss at D = C / (6N) (or
 * C / flops_per_token), by a log-spaced grid and golden-section refinement. */
qp_status plan_search_n(const plan_request *req, const law_model *m, double bits, double n_lo, double n_hi,
                        double *n_best, qp_error *err);
/* The largest N whose weights fit the memory limit at `bits` (bisection on the memory
 * model); NAN when not even a tiny model fits. */
double plan_largest_n_in_memory(const plan_request *req, double bits);
/* Tokens of a budget for an N-parameter model. */
double plan_tokens_for(const plan_request *req, double n_params);

#endif
