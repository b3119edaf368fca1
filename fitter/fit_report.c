/* The fit report, for humans: what was used, how the optimiser did, how well the law fits. */
#include <math.h>

#include "fit_internal.h"

void fit_report_print(FILE *f, const fit_report *r, const data_law *law)
{
    char b1[32];
    fprintf(f, "fit: %s form, %d of %d runs used", data_law_form_name(r->form), r->n_used, r->n_input);
    fprintf(f, "; excluded: %d bad (non-finite or non-positive N, D or loss), %d diverged, %d failed, "
               "%d duplicate", r->n_bad, r->n_diverged, r->n_failed, r->n_duplicate);
    if (r->n_other_form)
        fprintf(f, "; %d not used by this form (%s)", r->n_other_form,
                r->form == DATA_LAW_CHINCHILLA ? "quantized runs" : "full-precision runs");
    if (r->n_other_method)
        fprintf(f, "; %d of another training method (%s; select them with --method)", r->n_other_method,
                r->other_methods);
    fprintf(f, "\n");
    if (r->excluded_runs[0]) fprintf(f, "excluded runs: %s\n", r->excluded_runs);
    if (r->form == DATA_LAW_FRACTION) {
        fprintf(f, "a = %.4f", law->coef[0]);
        if (law->has_interval)
            fprintf(f, "  [%.4f, %.4f] (%.0f%% bootstrap, %d samples)", law->ci_lo[0], law->ci_hi[0],
                    100 * law->ci_level, law->n_samples);
        fprintf(f, "\nbest fraction per group (parabola through the argmin) vs the fit:\n");
        fprintf(f, "  %9s %9s %4s %9s %5s %8s %7s %7s\n", "N", "D_total", "bits", "S_total",
                "fracs", "argmin", "best", "f_hat");
        for (int j = 0; j < r->n_groups; j++) {
            const fit_fraction_group *g = &r->groups[j];
            char b2[32];
            fprintf(f, "  %9s %9s %4d %9.1f %5d %8.3f %7.3f %7.3f\n",
                    qp_format_count(g->n_params, b1, sizeof b1), qp_format_count(g->d_total, b2, sizeof b2),
                    g->bits, g->s_total, g->n_fractions, g->f_argmin, g->f_best, g->f_fit);
        }
        fprintf(f, "fraction error of f_hat: RMSE %.4f, MAE %.4f", r->frac_rmse, r->frac_mae);
        if (isfinite(r->loo_rmse_log)) fprintf(f, ", leave-one-size-out RMSE %.4f", r->loo_rmse_log);
        fprintf(f, "\n");
        fprintf(f, "time: %.2f s\n", r->seconds);
        return;
    }
    fprintf(f, "starts: %d, converged %d, reached the best objective %d; best summed Huber %.6g\n",
            r->starts, r->starts_ok, r->starts_at_best, r->best_objective);
    if (r->bounds_active)
        fprintf(f, "at a bound (docs/fitter.md): %s -- the data push the law toward an unphysical region\n",
                r->bound_note);
    fprintf(f, "coefficients:\n");
    for (int i = 0; i < data_law_ncoef(law->form); i++) {
        fprintf(f, "  %-8s %12.6g", data_law_coef_name(law->form, i), law->coef[i]);
        if (law->has_interval) fprintf(f, "   [%.6g, %.6g]", law->ci_lo[i], law->ci_hi[i]);
        fprintf(f, "\n");
    }
    if (law->has_interval)
        fprintf(f, "bootstrap: %d refits (%d failed), %.0f%% percentile intervals\n", r->bootstrap_done,
                r->bootstrap_failed, 100 * law->ci_level);
    fprintf(f, "quality (log loss): RMSE %.5f, MAE %.5f, R^2 %.5f", r->rmse_log, r->mae_log, r->r2);
    if (isfinite(r->loo_rmse_log)) fprintf(f, ", leave-one-size-out RMSE %.5f", r->loo_rmse_log);
    else fprintf(f, ", leave-one-size-out: needs >= 3 model sizes");
    fprintf(f, "\nresiduals log(observed) - log(predicted) by model size (8 log-spaced bins when > 12 sizes):\n");
    fprintf(f, "  %21s %5s %10s %10s\n", "N", "runs", "mean", "RMSE");
    for (int j = 0; j < r->n_sizes; j++) {
        const fit_resid_group *g = &r->by_size[j];
        char lab[64], b2[32];
        if (g->key_lo < g->key_hi)
            snprintf(lab, sizeof lab, "%s..%s", qp_format_count(g->key_lo, b1, sizeof b1),
                     qp_format_count(g->key_hi, b2, sizeof b2));
        else snprintf(lab, sizeof lab, "%s", qp_format_count(g->key, b1, sizeof b1));
        fprintf(f, "  %21s %5d %+10.5f %10.5f\n", lab, g->n, g->mean, g->rmse);
    }
    fprintf(f, "by bit width (16/32 = full precision):\n");
    fprintf(f, "  %10s %5s %10s %10s\n", "bits", "runs", "mean", "RMSE");
    for (int j = 0; j < r->n_bitw; j++)
        fprintf(f, "  %10.0f %5d %+10.5f %10.5f\n", r->by_bits[j].key, r->by_bits[j].n,
                r->by_bits[j].mean, r->by_bits[j].rmse);
    fprintf(f, "time: %.2f s\n", r->seconds);
}
