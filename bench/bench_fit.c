/* bench_fit: the fitter against scipy in the same run.
 * 1. Chinchilla form, Epoch AI's 4,500-start grid, 500 synthetic points (1% noise): qatplan
 *    (GSL BFGS2, 1 and 2 threads) vs bench/fit_scipy.py (scipy L-BFGS-B, same data written to
 *    a temp CSV, same objective, same starts). Prints both times, the ratio, both objectives.
 * 2. The full (qat) form on 757 synthetic runs with --bootstrap 100 and leave-one-size-out,
 *    as `qatplan fit --bootstrap 100` runs it, on 2 threads.
 * Usage: bench_fit [--skip-scipy] [--python /usr/bin/python3]. Run it niced on a quiet machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fit.h"

static double time_fit(const data_run_list *runs, data_law_form form, int threads, int bootstrap,
                       int loo, data_law *law, fit_report *rep)
{
    fit_options fo;
    fit_options_init(&fo);
    fo.form = form;
    fo.threads = threads;
    fo.bootstrap = bootstrap;
    fo.loo = loo;
    qp_error err = {0};
    double t0 = qp_now();
    qp_status st = fit_runs(runs, &fo, law, rep, &err);
    double t = qp_now() - t0;
    if (st) {
        fprintf(stderr, "bench_fit: fit failed: %s\n", err.msg);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    int skip_scipy = 0;
    const char *python = "/usr/bin/python3";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--skip-scipy")) skip_scipy = 1;
        else if (!strcmp(argv[i], "--python") && i + 1 < argc) python = argv[++i];
        else {
            fprintf(stderr, "usage: bench_fit [--skip-scipy] [--python PATH]\n");
            return 2;
        }
    }
    qp_blas_select_kernels(argc, argv);
    data_law truth;
    law_builtin_chinchilla(&truth);
    fit_synth_options so;
    fit_synth_options_init(&so, DATA_LAW_CHINCHILLA);
    data_run_list runs;
    data_run_list_init(&runs);
    qp_error err = {0};
    if (fit_synth_runs(&truth, &so, &runs, &err)) {
        fprintf(stderr, "bench_fit: %s\n", err.msg);
        return 1;
    }
    char csv[] = "/tmp/qatplan-bench-fit-XXXXXX";
    int fd = mkstemp(csv);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        perror("bench_fit: temp file");
        return 1;
    }
    fprintf(f, "N,D,loss\n");
    for (size_t i = 0; i < runs.n; i++)
        fprintf(f, "%.17g,%.17g,%.17g\n", runs.runs[i].n_params, runs.runs[i].d_fp + runs.runs[i].d_qat,
                runs.runs[i].loss);
    fclose(f);

    printf("bench_fit: chinchilla form, %zu synthetic points (1%% noise), %d starts (Epoch AI's grid)\n",
           runs.n, FIT_CHINCHILLA_GRID_STARTS);
    data_law law;
    fit_report rep;
    double t1 = time_fit(&runs, DATA_LAW_CHINCHILLA, 1, 0, 0, &law, &rep);
    double obj1 = rep.best_objective;
    int at1 = rep.starts_at_best;
    printf("  qatplan (GSL BFGS2), 1 thread : %8.3f s  best objective %.12g  (%d starts reached it)\n",
           t1, obj1, at1);
    printf("    E %.5g A %.5g B %.5g alpha %.5f beta %.5f\n", law.coef[0], law.coef[1], law.coef[2],
           law.coef[3], law.coef[4]);
    fit_report_free(&rep);
    data_law_free(&law);
    double t2 = time_fit(&runs, DATA_LAW_CHINCHILLA, 2, 0, 0, &law, &rep);
    printf("  qatplan (GSL BFGS2), 2 threads: %8.3f s  best objective %.12g\n", t2, rep.best_objective);
    fit_report_free(&rep);
    data_law_free(&law);
    if (!skip_scipy) {
        /* the script sits next to this file; CMake compiles it by absolute path */
        char dir[512], cmd[1024], line[512] = "";
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, "bench");
        snprintf(cmd, sizeof cmd, "%s %s/fit_scipy.py %s", python, dir, csv);
        FILE *p = popen(cmd, "r");
        double ts = -1, objs = -1;
        if (p) {
            while (fgets(line, sizeof line, p))
                if (sscanf(line, "scipy seconds %lf best_objective %lf", &ts, &objs) == 2) break;
            pclose(p);
        }
        if (ts < 0) {
            fprintf(stderr, "bench_fit: the scipy reference did not run (%s)\n", cmd);
        } else {
            printf("  scipy L-BFGS-B, 1 thread      : %8.3f s  best objective %.12g\n", ts, objs);
            printf("  speed-up: %.1fx (1 thread), %.1fx (2 threads); objective qatplan - scipy = %+.3g (%s)\n",
                   ts / t1, ts / t2, obj1 - objs, obj1 <= objs * (1 + 1e-9) ? "no worse" : "WORSE");
        }
    }
    unlink(csv);
    data_run_list_free(&runs);

    /* the full form with bootstrap */
    data_law qtruth;
    fit_synth_true_qat(&qtruth);
    fit_synth_options qo;
    fit_synth_options_init(&qo, DATA_LAW_QAT);
    data_run_list_init(&runs);
    if (fit_synth_runs(&qtruth, &qo, &runs, &err)) {
        fprintf(stderr, "bench_fit: %s\n", err.msg);
        return 1;
    }
    double tq = time_fit(&runs, DATA_LAW_QAT, 2, 100, 1, &law, &rep);
    printf("bench_fit: qat form, %zu synthetic runs, %d starts, --bootstrap 100 (%d refits ok), "
           "leave-one-size-out, 2 threads: %.2f s (target < 60 s)\n",
           runs.n, rep.starts, rep.bootstrap_done, tq);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
    return 0;
}
