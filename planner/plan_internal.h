/* plan_internal.h: what the planner's files share. Not a public header: the module's API
 * is plan.h. */
#ifndef PLAN_INTERNAL_H
#define PLAN_INTERNAL_H

#include "plan.h"

/* Loss of the model at fraction f of D tokens; with k > 0 (methods), the QAT phase gets k
 * law tokens per FP-equivalent token: D_fp = (1 - f) D, D_qat = k f D. */
typedef struct {
    const law_model *m;
    double n, d, bits;
    double k; /* 0 = 1: today's token split */
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
/* The optimum of a plan_frac_ctx on a 1001-point grid refined by Brent's method. */
qp_status plan_optimum_ctx(plan_frac_ctx *c, double *f_opt, double *loss_opt, qp_error *err);
/* The largest N whose storage under the method fits the memory limit; NAN if none. */
double plan_largest_n_in_storage(const plan_request *req, plan_method m, double bits);

/* plan.c's helpers that plan_methods.c shares */
void plan_warn_keyed(plan_result *r, const char *key, double severity, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void plan_check_range(plan_result *res, const data_law *law, const char *what, double n, double d, double bits,
                      double s);
void plan_set_schedule(const plan_request *req, plan_row *r);
qp_status plan_row_size(const plan_request *req, plan_mode mode, const law_model *m, plan_row *r, qp_error *err);
/* One row of a method other than qat (plan_methods.c). */
qp_status plan_row_method(const plan_request *req, const plan_laws *laws, const law_model *qat, int has_qat,
                          plan_result *out, plan_row *r, qp_error *err);

#endif
