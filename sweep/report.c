/* The sweep report: where the sweep stands, how well the latest law fits, and predicted
 * against observed loss per run, by bit width and by model size. */
#include "sweep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "law.h"

typedef struct {
    double key;
    size_t n;
    double sum, sum2;
} group;

static void group_add(group *gs, int *ng, int max, double key, double r)
{
    int i;
    for (i = 0; i < *ng; i++)
        if (fabs(gs[i].key - key) <= 1e-6 * fabs(key)) break;
    if (i == *ng) {
        if (*ng == max) return;
        gs[(*ng)++] = (group){key, 0, 0, 0};
    }
    gs[i].n++;
    gs[i].sum += r;
    gs[i].sum2 += r * r;
}

static int cmp_group(const void *a, const void *b)
{
    double x = ((const group *)a)->key, y = ((const group *)b)->key;
    return (x > y) - (x < y);
}

qp_status sweep_write_report(const char *path, const sweep_grid *g, const sweep_results *res,
                             const data_law *law, const char *fit_msg, qp_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    size_t ok = 0, div = 0, missing = 0;
    for (size_t i = 0; i < g->n; i++) {
        const data_run *r = sweep_results_find(res, g->points[i].run_id);
        if (!r) missing++;
        else if (r->status == DATA_RUN_DIVERGED) div++;
        else ok++;
    }
    fprintf(f, "qatplan sweep report (qatplan %s)\n\n", qp_version());
    fprintf(f, "grid: %zu runs: %zu ok, %zu diverged, %zu not recorded yet\n", g->n, ok, div, missing);
    fprintf(f, "results file: %zu records", res->runs.n);
    if (res->n_bad_lines) fprintf(f, ", %zu unreadable lines ignored (first: %s)", res->n_bad_lines, res->first_bad_msg);
    fprintf(f, "\n\n");
    if (!law) {
        fprintf(f, "law: none yet: %s\n", fit_msg && fit_msg[0] ? fit_msg : "no fit has run");
    } else {
        const data_law_provenance *p = &law->prov;
        fprintf(f, "law: form %s, fitted on %d runs (%d excluded)\n", data_law_form_name(law->form), p->n_runs, p->n_excluded);
        char q[4][32];
        double qv[4] = {p->rmse_log, p->mae_log, p->r2, p->loo_rmse_log};
        for (int i = 0; i < 4; i++) {
            if (isfinite(qv[i])) snprintf(q[i], sizeof q[i], "%.4g", qv[i]);
            else snprintf(q[i], sizeof q[i], "n/a");
        }
        fprintf(f, "  fit quality: RMSE(log L) %s  MAE(log L) %s  R^2 %s  leave-one-size-out RMSE %s\n", q[0], q[1], q[2], q[3]);
        if (p->starts > 0) fprintf(f, "  starts: %d, %d reached the best objective %.6g\n", p->starts, p->starts_at_best, p->huber_objective);
        fprintf(f, "  coefficients:");
        for (int i = 0; i < data_law_ncoef(law->form); i++)
            fprintf(f, " %s=%.5g", data_law_coef_name(law->form, i), law->coef[i]);
        fprintf(f, "\n");
    }
    int can_predict = law && law->form != DATA_LAW_FRACTION;
    if (can_predict) {
        group by_bits[64], by_n[256];
        int nb = 0, nn = 0;
        double s2 = 0;
        size_t n = 0;
        fprintf(f, "\npredicted against observed (status ok; loss in nats/token; residual = ln observed - ln predicted)\n");
        fprintf(f, "%-56s %10s %10s %4s %6s %-8s %9s %9s %9s\n", "run_id", "N", "D_total", "bits", "f", "schedule",
                "observed", "predicted", "residual");
        for (size_t i = 0; i < res->runs.n; i++) {
            const data_run *r = &res->runs.runs[i];
            if (r->status != DATA_RUN_OK) continue;
            if (law->form == DATA_LAW_CHINCHILLA && !data_run_is_fp(r)) continue;
            law_point x = {r->n_params, r->d_fp, r->d_qat, r->bits};
            double pred = law_loss(law, &x);
            double d = data_run_tokens(r), fr = d > 0 ? data_run_fraction(r) : NAN;
            double resid = log(r->loss) - log(pred);
            fprintf(f, "%-56s %10.4g %10.4g %4d %6.3f %-8s %9.4f %9.4f %+9.4f\n", r->run_id, r->n_params, d, r->bits,
                    fr, data_schedule_name(r->schedule), r->loss, pred, resid);
            if (!isfinite(resid)) continue;
            s2 += resid * resid;
            n++;
            group_add(by_bits, &nb, 64, r->bits, resid);
            group_add(by_n, &nn, 256, r->n_params, resid);
        }
        if (n) {
            fprintf(f, "\nover these %zu runs: RMSE of the residual %.4g\n", n, sqrt(s2 / (double)n));
            qsort(by_bits, (size_t)nb, sizeof *by_bits, cmp_group);
            qsort(by_n, (size_t)nn, sizeof *by_n, cmp_group);
            fprintf(f, "by bit width:   %6s %6s %10s %10s\n", "bits", "runs", "mean", "RMSE");
            for (int i = 0; i < nb; i++)
                fprintf(f, "                %6.0f %6zu %+10.4f %10.4f\n", by_bits[i].key, by_bits[i].n,
                        by_bits[i].sum / (double)by_bits[i].n, sqrt(by_bits[i].sum2 / (double)by_bits[i].n));
            fprintf(f, "by model size:  %10s %6s %10s %10s\n", "N", "runs", "mean", "RMSE");
            for (int i = 0; i < nn; i++)
                fprintf(f, "                %10.4g %6zu %+10.4f %10.4f\n", by_n[i].key, by_n[i].n,
                        by_n[i].sum / (double)by_n[i].n, sqrt(by_n[i].sum2 / (double)by_n[i].n));
        }
    }
    if (missing) {
        fprintf(f, "\nnot recorded yet:\n");
        size_t shown = 0;
        for (size_t i = 0; i < g->n && shown < 50; i++)
            if (!sweep_results_find(res, g->points[i].run_id)) {
                fprintf(f, "  [%d] %s\n", g->points[i].index, g->points[i].run_id);
                shown++;
            }
        if (missing > shown) fprintf(f, "  ... and %zu more\n", missing - shown);
    }
    fclose(f);
    qp_status st = qp_write_file_atomic(path, text, len, err);
    free(text);
    return st;
}
