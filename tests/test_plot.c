/* qatplan plot: each plot rendered from a synthetic qat law and runs drawn from it, as PNG
 * and SVG; signatures, sizes and (in SVG) the series the plot must show; errors: no gnuplot,
 * a hanging gnuplot, a bad extension, nothing to plot. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot.h"
#include "testutil.h"

static char law_path[4096], frac_path[4096], runs_path[4096];

static void make_law(data_law *law)
{
    data_law_init(law, DATA_LAW_QAT);
    const double c[16] = {1.7, 400, 400, 0.34, 0.28, 0.3, 0.7, 3, 0.6, 0.05, 0.35, 2.0, 0.4, -0.25, 0.05, 0.05};
    memcpy(law->coef, c, sizeof c);
    snprintf(law->prov.source, sizeof law->prov.source, "test_plot synthetic law");
    snprintf(law->prov.method, sizeof law->prov.method, "chosen by hand");
}

/* Runs drawn from the law with a small deterministic multiplicative perturbation. */
static void setup_files(void)
{
    static int done;
    if (done) return;
    done = 1;
    snprintf(law_path, sizeof law_path, "%s", tu_path("law.json"));
    snprintf(frac_path, sizeof frac_path, "%s", tu_path("fraction.json"));
    snprintf(runs_path, sizeof runs_path, "%s", tu_path("runs.jsonl"));
    data_law law;
    make_law(&law);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(data_law_write(law_path, &law, &err), QP_OK);
    data_law fr;
    data_law_init(&fr, DATA_LAW_FRACTION);
    fr.coef[0] = 5.5;
    snprintf(fr.prov.source, sizeof fr.prov.source, "test");
    snprintf(fr.prov.method, sizeof fr.prov.method, "test");
    CU_ASSERT_EQUAL_FATAL(data_law_write(frac_path, &fr, &err), QP_OK);
    FILE *f = fopen(runs_path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const double ns[] = {1e6, 4e6, 1.6e7}, ds[] = {2e7, 8e7, 3.2e8}, fs[] = {0, 0.1, 0.2, 0.35, 0.5, 0.75, 1};
    const int bits[] = {2, 4, 16};
    int k = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 3; c++)
                for (int fi = 0; fi < 7; fi++)
                    for (int s = 0; s < 2; s++) {
                        int bb = bits[c];
                        double fr_ = fs[fi];
                        if ((bb >= 16 || fr_ == 0 || fr_ == 1) && s == 1) continue;
                        if (bb >= 16 && fi > 0) continue;
                        data_run r;
                        data_run_init(&r);
                        snprintf(r.run_id, sizeof r.run_id, "synthetic-%d", k++);
                        r.n_params = ns[a];
                        r.d_qat = bb >= 16 ? 0 : round(fr_ * ds[b]);
                        r.d_fp = ds[b] - r.d_qat;
                        r.bits = bb;
                        r.schedule = bb >= 16 || fr_ == 0 ? DATA_SCHED_FP_ONLY : fr_ == 1 ? DATA_SCHED_QAT_ONLY
                                                                             : s ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
                        law_point x = {r.n_params, r.d_fp, r.d_qat, r.bits};
                        r.loss = law_loss(&law, &x) * exp(0.01 * sin(3.7 * k)) * (s && bb == 4 ? 0.995 : 1.0);
                        r.seed = 1;
                        char *line = data_run_to_json(&r);
                        fprintf(f, "%s\n", line);
                        free(line);
                    }
    /* a torn line must only be skipped */
    fprintf(f, "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"torn\n");
    fclose(f);
    data_law_free(&law);
}

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void check_png(const char *p, int w, int h)
{
    unsigned char buf[32];
    FILE *f = fopen(p, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fread(buf, 1, 24, f), 24);
    fclose(f);
    CU_ASSERT_EQUAL(memcmp(buf, "\x89PNG\r\n\x1a\n", 8), 0);
    CU_ASSERT_EQUAL(memcmp(buf + 12, "IHDR", 4), 0);
    uint32_t pw = (uint32_t)buf[16] << 24 | buf[17] << 16 | buf[18] << 8 | buf[19];
    uint32_t ph = (uint32_t)buf[20] << 24 | buf[21] << 16 | buf[22] << 8 | buf[23];
    CU_ASSERT_EQUAL(pw, (uint32_t)w);
    CU_ASSERT_EQUAL(ph, (uint32_t)h);
    long n = file_size(p);
    CU_ASSERT(n > 15000 && n < 5000000); /* a real plot, not a blank canvas */
}

static char *check_svg(const char *p)
{
    char *t = NULL;
    CU_ASSERT_EQUAL_FATAL(qp_read_file(p, &t, NULL, NULL), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "<svg"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "</svg>"));
    CU_ASSERT(strlen(t) > 10000);
    return t;
}

static int no_leftovers(void)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tu_tmpdir());
    return system(cmd) != 0;
}

static void test_loss_fraction(void)
{
    setup_files();
    char cmd[16384], *out = NULL, *err = NULL;
    char png[4096], svg[4096];
    snprintf(png, sizeof png, "%s", tu_path("loss-fraction.png"));
    snprintf(svg, sizeof svg, "%s", tu_path("loss-fraction.svg"));
    snprintf(cmd, sizeof cmd, "plot loss-fraction --runs %s --law %s -o %s", runs_path, law_path, png);
    int rc = tu_run_qatplan(cmd, &out, &err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "1 unreadable line"));
    free(out);
    free(err);
    check_png(png, 960, 640);
    /* an image is an ordinary output: the umask's mode, not mkstemp's 0600 */
    struct stat sb;
    mode_t mask = umask(0);
    umask(mask);
    CU_ASSERT_EQUAL(stat(png, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0666 & ~mask);
    snprintf(cmd, sizeof cmd, "plot loss-fraction --runs %s --law %s --params 4M --tokens 80M -o %s", runs_path, law_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    char *t = check_svg(svg);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "N = 4.00M parameters"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "law, 2 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "law, 4 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "observed, 4 bits, fused"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "observed, 2 bits, classic"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "law optimum, 2 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "observed, full precision"));
    free(t);
    /* the law alone needs the group; runs alone plot points only */
    snprintf(cmd, sizeof cmd, "plot loss-fraction --law %s -o %s", law_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 2);
    snprintf(cmd, sizeof cmd, "plot loss-fraction --law %s --params 4M --tokens 80M --bits 1,2,4,6 -o %s", law_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    t = check_svg(svg);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "law, 6 bits"));
    CU_ASSERT_PTR_NULL(strstr(t, "observed"));
    free(t);
    snprintf(cmd, sizeof cmd, "plot loss-fraction --runs %s -o %s", runs_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    t = check_svg(svg);
    CU_ASSERT_PTR_NULL(strstr(t, "law, 2 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "observed, 2 bits"));
    free(t);
    CU_ASSERT(no_leftovers());
}

static void test_optimal_fraction(void)
{
    setup_files();
    char cmd[16384], png[4096], svg[4096];
    snprintf(png, sizeof png, "%s", tu_path("optimal-fraction.png"));
    snprintf(svg, sizeof svg, "%s", tu_path("optimal-fraction.svg"));
    snprintf(cmd, sizeof cmd, "plot optimal-fraction --runs %s --law %s --law %s --size 800x500 -o %s", runs_path, law_path,
             frac_path, png);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    check_png(png, 800, 500);
    snprintf(cmd, sizeof cmd, "plot optimal-fraction --runs %s --law %s --law %s -o %s", runs_path, law_path, frac_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    char *t = check_svg(svg);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "a = 6.73"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "fitted fraction law: a = 5.5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "qat law optimum, 2 bits"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "best observed, 4 bits, fused (9 groups)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "best observed, 2 bits, classic (9 groups)"));
    free(t);
    /* the closed form alone (no runs, no law) still plots */
    snprintf(cmd, sizeof cmd, "plot optimal-fraction -o %s", svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
}

static void test_residuals(void)
{
    setup_files();
    char cmd[16384], png[4096], svg[4096];
    snprintf(png, sizeof png, "%s", tu_path("residuals.png"));
    snprintf(svg, sizeof svg, "%s", tu_path("residuals.svg"));
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", runs_path, law_path, png);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    check_png(png, 960, 640);
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", runs_path, law_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    char *t = check_svg(svg);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "2 bits ("));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "4 bits ("));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "full precision (9 runs"));
    free(t);
    /* needs a law */
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s -o %s", runs_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 2);
    /* a run-record file that is not there is named, not taken for an empty one */
    char *err = NULL;
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", tu_path("missing.jsonl"), law_path, svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 1); /* as for every unreadable input file */
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "missing.jsonl: cannot open: No such file"));
    free(err);
}

static void test_errors(void)
{
    setup_files();
    char cmd[16384], *err = NULL, out_png[4096];
    snprintf(out_png, sizeof out_png, "%s", tu_path("never.png"));
    /* gnuplot missing: the message names the package */
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", runs_path, law_path, out_png);
    setenv("QP_GNUPLOT", "/nonexistent/gnuplot", 1);
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "gnuplot-nox"));
    free(err);
    /* a gnuplot that hangs is stopped, and leaves nothing behind */
    char hang[4096];
    snprintf(hang, sizeof hang, "%s", tu_path("hang-gnuplot.sh"));
    tu_write(hang, "#!/bin/sh\nexec sleep 30\n");
    snprintf(cmd, sizeof cmd, "chmod +x %s", hang);
    CU_ASSERT_EQUAL(system(cmd), 0);
    setenv("QP_GNUPLOT", hang, 1);
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s --timeout 0.5 -o %s", runs_path, law_path, out_png);
    double t0 = qp_now();
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 0);
    CU_ASSERT(qp_now() - t0 < 10);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "longer than 0.5 s"));
    free(err);
    /* a gnuplot that fails */
    tu_write(hang, "#!/bin/sh\necho 'line 3: unknown terminal' >&2\nexit 1\n");
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "unknown terminal"));
    free(err);
    unsetenv("QP_GNUPLOT");
    CU_ASSERT_EQUAL(access(out_png, F_OK), -1);
    CU_ASSERT(no_leftovers());
    /* bad extension, unknown kind, wrong law form */
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", runs_path, law_path, tu_path("x.jpg"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, ".png or .svg"));
    free(err);
    CU_ASSERT_EQUAL(tu_run_qatplan("plot pie -o x.png", NULL, NULL), 2);
    snprintf(cmd, sizeof cmd, "plot loss-fraction --runs %s --law %s -o %s", runs_path, frac_path, out_png);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 2);
    CU_ASSERT_EQUAL(access(out_png, F_OK), -1);
}

/* --title reaches gnuplot quoted so that nothing in it runs: backquotes (gnuplot's own
 * command substitution in double-quoted strings), $(...), quotes and macros stay text. The
 * image written through a symlink leaves the link a link. */
static void test_title_not_executed(void)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIPPED: test_title_not_executed: gnuplot is not installed (apt-get install gnuplot-nox)\n");
        return;
    }
    setup_files();
    char a[4096], b[4096], title[16384], quoted[32768], cmd[65536];
    snprintf(a, sizeof a, "%s", tu_path("pwned-backquote"));
    snprintf(b, sizeof b, "%s", tu_path("pwned-dollar"));
    unlink(a);
    unlink(b);
    snprintf(title, sizeof title, "T `touch %s` $(touch %s) it's \"q\" \\ @x `touch %s`", a, b, a);
    /* one shell word: single quotes, a ' written as '\'' */
    char *q = quoted;
    *q++ = '\'';
    for (const char *p = title; *p; p++) {
        if (*p == '\'') {
            memcpy(q, "'\\''", 4);
            q += 4;
        } else *q++ = *p;
    }
    *q++ = '\'';
    *q = 0;
    char target[4096], link_[4096];
    snprintf(target, sizeof target, "%s", tu_path("title-target.svg"));
    snprintf(link_, sizeof link_, "%s", tu_path("title-link.svg"));
    unlink(link_);
    tu_write(target, "old");
    CU_ASSERT_EQUAL(symlink(target, link_), 0);
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s --title %s", runs_path, law_path, link_, quoted);
    char *err = NULL;
    int rc = tu_run_qatplan(cmd, NULL, &err);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc != 0) fprintf(stderr, "%s", err ? err : "");
    free(err);
    CU_ASSERT_EQUAL(access(a, F_OK), -1);
    CU_ASSERT_EQUAL(access(b, F_OK), -1);
    struct stat sb;
    CU_ASSERT(lstat(link_, &sb) == 0 && S_ISLNK(sb.st_mode));
    char *t = check_svg(target);
    /* the title is drawn as typed */
    CU_ASSERT_PTR_NOT_NULL(t && strstr(t, "`touch "));
    CU_ASSERT_PTR_NOT_NULL(t && strstr(t, "$(touch "));
    free(t);
}

static void test_best_fraction(void)
{
    /* the fitter's estimator: a parabola in sqrt f with its vertex at 0.3, on a coarse grid */
    double f[] = {0, 0.2, 0.4, 0.6, 1}, l[5];
    for (int i = 0; i < 5; i++) l[i] = 2 + (sqrt(f[i]) - sqrt(0.3)) * (sqrt(f[i]) - sqrt(0.3));
    CU_ASSERT_DOUBLE_EQUAL(data_best_fraction(f, l, 5, NULL), 0.3, 1e-12);
    /* minimum at an end: the end */
    for (int i = 0; i < 5; i++) l[i] = 2 - f[i];
    CU_ASSERT_DOUBLE_EQUAL(data_best_fraction(f, l, 5, NULL), 1, 0);
    for (int i = 0; i < 5; i++) l[i] = 2 + f[i];
    CU_ASSERT_DOUBLE_EQUAL(data_best_fraction(f, l, 5, NULL), 0, 1e-12);
    CU_ASSERT(isnan(data_best_fraction(f, l, 0, NULL)));
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_best_fraction);
    TU_ADD(s, test_loss_fraction);
    TU_ADD(s, test_optimal_fraction);
    TU_ADD(s, test_residuals);
    TU_ADD(s, test_errors);
    TU_ADD(s, test_title_not_executed);
}

int main(void) { return tu_main("plot", add); }
