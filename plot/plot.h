/* plot.h: the gnuplot plots of the law and the runs: loss against QAT fraction, the optimal
 * fraction against S_total, and fit residuals. gnuplot renders PNG (pngcairo) or SVG, chosen
 * by the output's extension; data files and the script go to a temp dir, gnuplot runs with a
 * timeout and its output is renamed into place. Public symbols are prefixed plot_. */
#ifndef PLOT_H
#define PLOT_H
#include "data.h"
#include "law.h"
#include "qp.h"

typedef struct {
    const char *output;  /* FILE.png or FILE.svg */
    int width, height;   /* pixels; default 960 x 640 */
    double timeout_s;    /* gnuplot is killed after this long; default 60 */
    const char *gnuplot; /* program; default $QP_GNUPLOT or "gnuplot" from PATH */
    const char *title;   /* NULL: a title naming the plot and its data */
} plot_opts;

void plot_opts_init(plot_opts *o);

/* (a) Loss against QAT fraction per bit width for one (N, D_total) group: observed runs
 * (points; classic, fused, fp-only and qat-only marked apart; full-precision runs as a
 * line) and the qat law's curve with its optimum. n_params/d_total NAN: the group with the
 * most quantized runs (ties: the largest N * D_total). qat may be NULL (points only) and
 * runs may be NULL (law only; then n_params and d_total are needed). bits/n_bits: widths to
 * draw (n_bits 0: those of the group's runs, or 1, 2, 4, 6 with a law alone). Runs match
 * the group within 2% in N and 5% in D_total (trainers round tokens to whole steps). */
qp_status plot_loss_fraction(const data_law *qat, const data_run_list *runs, double n_params,
                             double d_total, const int *bits, int n_bits,
                             const plot_opts *o, qp_error *err);

/* (b) Optimal QAT fraction against S_total (log axis): the paper's closed form exp(-a/ln S)
 * with a = 6.7297, the fraction law's a when `fraction` is given, the qat law's numerical
 * optimum per bit width at N = n_params (NAN: the geometric mean of the runs' N, else 1e8),
 * and the empirical best fraction of every (N, D_total, bits, schedule) group of runs with
 * at least three fractions (the observed argmin refined by a parabola through it and its
 * two neighbours when it is interior). Any of qat, fraction, runs may be NULL. */
qp_status plot_optimal_fraction(const data_law *qat, const data_law *fraction,
                                const data_run_list *runs, double n_params, const int *bits,
                                int n_bits, const plot_opts *o, qp_error *err);

/* (c) Fit residuals ln(observed) - ln(predicted) against N (log axis), one colour per bit
 * width, for the status-ok runs the law covers (a chinchilla law: full-precision runs only). */
qp_status plot_residuals(const data_law *law, const data_run_list *runs,
                         const plot_opts *o, qp_error *err);

#endif
