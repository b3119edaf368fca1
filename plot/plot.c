/* Plots with gnuplot: loss against QAT fraction, the optimal fraction against S_total, and
 * fit residuals. Each plot writes its data files, script and image to a temp dir, runs
 * gnuplot with a timeout, and writes the finished image with qp_write_file_atomic, so a
 * failed or killed gnuplot never leaves a half-written image under the requested name. */
#include "plot.h"
#include "plan.h" /* plan_optimal_fraction */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
#define N_COLORS (int)(sizeof colors / sizeof colors[0])

void plot_opts_init(plot_opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 960;
    o->height = 640;
    o->timeout_s = 60;
}

/* ---- the temp dir, the script and running gnuplot ------------------------ */

typedef struct {
    const plot_opts *o;
    int svg;
    char gnuplot[4096];
    char dir[4096];
    char *script;
    size_t script_len;
    FILE *gp;      /* the script, in memory */
    int n_series;  /* plot clauses written so far */
    int n_files;
} plot_ctx;

static int find_in_path(const char *prog, char *out, size_t n)
{
    if (strchr(prog, '/')) {
        snprintf(out, n, "%s", prog);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(out, n, "%.*s/%s", (int)len, len ? path : ".", prog);
        if (access(out, X_OK) == 0) return 1;
        if (!colon) break;
        path = colon + 1;
    }
    return 0;
}

/* A gnuplot single-quoted string: no escapes inside, a quote is doubled. */
static void gp_path(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* Titles too are single-quoted: inside double quotes gnuplot runs `backquoted` text as a
 * shell command, and a title may come from the user (--title) or from run files. Enhanced
 * text markup still applies; newlines are dropped. */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\n' || *s == '\r') continue;
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

static qp_status ctx_open(plot_ctx *c, const plot_opts *o, qp_error *err)
{
    memset(c, 0, sizeof *c);
    c->o = o;
    if (!o->output || !o->output[0]) return qp_fail(err, QP_ERR_USAGE, "no output file: give -o PLOT.png or PLOT.svg");
    const char *dot = strrchr(o->output, '.');
    if (dot && !strcasecmp(dot, ".svg")) c->svg = 1;
    else if (!dot || strcasecmp(dot, ".png"))
        return qp_fail(err, QP_ERR_USAGE, "%s: the output's extension picks the format: use .png or .svg", o->output);
    if (!(o->width >= 100 && o->width <= 10000 && o->height >= 100 && o->height <= 10000))
        return qp_fail(err, QP_ERR_INPUT, "plot size %dx%d: use 100..10000 pixels each way", o->width, o->height);
    const char *prog = o->gnuplot ? o->gnuplot : getenv("QP_GNUPLOT");
    if (!prog || !prog[0]) prog = "gnuplot";
    if (!find_in_path(prog, c->gnuplot, sizeof c->gnuplot))
        return qp_fail(err, QP_ERR_UNSUPPORTED,
                       "gnuplot ('%s') was not found: install it (Debian: apt-get install gnuplot-nox) or set QP_GNUPLOT "
                       "to its path",
                       prog);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/qatplan-plot.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(c->dir)) return qp_fail(err, QP_ERR_IO, "%s: cannot create a temp dir: %s", c->dir, strerror(errno));
    c->gp = open_memstream(&c->script, &c->script_len);
    if (!c->gp) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    return QP_OK;
}

static void ctx_close(plot_ctx *c)
{
    if (c->gp) fclose(c->gp);
    c->gp = NULL;
    free(c->script);
    c->script = NULL;
    if (c->dir[0]) {
        DIR *d = opendir(c->dir);
        if (d) {
            struct dirent *e;
            char p[4400];
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                    snprintf(p, sizeof p, "%s/%s", c->dir, e->d_name);
                    unlink(p);
                }
            closedir(d);
        }
        rmdir(c->dir);
    }
}

/* A new data file in the temp dir; its path goes to `path`. */
static FILE *ctx_data(plot_ctx *c, char *path, size_t n)
{
    snprintf(path, n, "%s/d%03d.dat", c->dir, c->n_files++);
    return fopen(path, "w");
}

/* The header common to all plots; output goes to `tmp_out`. */
static void ctx_header(plot_ctx *c, const char *tmp_out, const char *title, int user_title)
{
    FILE *f = c->gp;
    if (c->svg)
        fprintf(f, "set terminal svg size %d,%d dynamic enhanced font 'Sans,12' background rgb 'white'\n", c->o->width,
                c->o->height);
    else
        fprintf(f, "set terminal pngcairo size %d,%d enhanced font 'Sans,11' background rgb 'white'\n", c->o->width,
                c->o->height);
    fprintf(f, "set output ");
    gp_path(f, tmp_out);
    fprintf(f, "\nset encoding utf8\nset grid lc rgb '#dddddd'\nset key below maxcols 3 box font ',9' spacing 1.1\n");
    fprintf(f, "set title ");
    gp_str(f, title);
    fprintf(f, "%s\n", user_title ? " noenhanced" : "");
}

/* One plot clause: `'FILE' using ... with ...`, joined by commas. */
static void ctx_series(plot_ctx *c, const char *path, const char *using_with, const char *title)
{
    FILE *f = c->gp;
    fputs(c->n_series++ ? ", \\\n     " : "plot ", f);
    gp_path(f, path);
    fprintf(f, " %s title ", using_with);
    gp_str(f, title);
}

/* Write the script, run gnuplot on it with the timeout, check the image, write it to the output. */
static qp_status ctx_render(plot_ctx *c, const char *tmp_out, qp_error *err)
{
    if (c->n_series == 0) return qp_fail(err, QP_ERR_INPUT, "nothing to plot: no runs or law values fall in this plot");
    fputc('\n', c->gp);
    fclose(c->gp);
    c->gp = NULL;
    char sp[4200], lp[4200];
    snprintf(sp, sizeof sp, "%s/plot.gp", c->dir);
    snprintf(lp, sizeof lp, "%s/gnuplot.log", c->dir);
    FILE *f = fopen(sp, "w");
    if (!f || fwrite(c->script, 1, c->script_len, f) != c->script_len) {
        if (f) fclose(f);
        return qp_fail(err, QP_ERR_IO, "%s: cannot write the gnuplot script", sp);
    }
    fclose(f);
    char *argv[] = {c->gnuplot, sp, NULL};
    qp_spawn_opts so = {lp, 0, -1, 0, NULL};
    pid_t pid = qp_spawn(argv, &so, err);
    if (pid < 0) return QP_ERR_IO; /* err says why */
    double limit = c->o->timeout_s > 0 ? c->o->timeout_s : 60;
    int ws = 0, timed_out = 0;
    qp_status st = qp_wait_limit(pid, limit, &ws, &timed_out, err);
    if (st) return st;
    char tail[512];
    qp_log_tail(lp, tail, sizeof tail);
    if (timed_out) return qp_fail(err, QP_ERR_IO, "gnuplot took longer than %g s and was stopped", limit);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        return qp_fail(err, QP_ERR_IO, "gnuplot failed (%s %d): %s", WIFEXITED(ws) ? "exit status" : "signal",
                       WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws), tail[0] ? tail : "no message");
    struct stat sb;
    if (stat(tmp_out, &sb) != 0 || sb.st_size == 0)
        return qp_fail(err, QP_ERR_IO, "gnuplot wrote no image%s%s", tail[0] ? ": " : "", tail);
    /* the common writer: atomic for files, through symlinks, in place for /dev/null */
    char *img = NULL;
    size_t len = 0;
    st = qp_read_file(tmp_out, &img, &len, err);
    if (!st) st = qp_write_file_atomic(c->o->output, img, len, err);
    free(img);
    return st;
}

typedef qp_status (*plot_body)(plot_ctx *c, void *arg, qp_error *err);

static qp_status render(const plot_opts *o, const char *title, plot_body body, void *arg, qp_error *err)
{
    plot_ctx c;
    qp_status st = ctx_open(&c, o, err);
    if (st) {
        ctx_close(&c);
        return st;
    }
    /* gnuplot writes the image into the temp dir; it is copied to the output when complete */
    char tmp_out[4200];
    snprintf(tmp_out, sizeof tmp_out, "%s/image%s", c.dir, c.svg ? ".svg" : ".png");
    ctx_header(&c, tmp_out, o->title ? o->title : title, o->title != NULL);
    st = body(&c, arg, err);
    if (!st) st = ctx_render(&c, tmp_out, err);
    ctx_close(&c);
    return st;
}

/* ---- helpers over runs --------------------------------------------------- */

static int usable(const data_run *r)
{
    return r->status == DATA_RUN_OK && isfinite(r->loss) && r->loss > 0 && r->n_params > 0 && data_run_tokens(r) > 0;
}

static int add_bits(int *bits, int n, int max, int b)
{
    for (int i = 0; i < n; i++)
        if (bits[i] == b) return n;
    if (n == max) return n;
    bits[n++] = b;
    for (int i = n - 1; i > 0 && bits[i] < bits[i - 1]; i--) {
        int t = bits[i];
        bits[i] = bits[i - 1];
        bits[i - 1] = t;
    }
    return n;
}

static const char *color_of(const int *bits, int nb, int b)
{
    for (int i = 0; i < nb; i++)
        if (bits[i] == b) return colors[i % N_COLORS];
    return "#000000";
}

/* One estimator, the fitter's (data_best_fraction); l is the mean log loss. */

/* A QAT law for plotting: a qat law alone, or a penalty law over Epoch's chinchilla law. */
static qp_status plot_model(const data_law *qat, data_law *chin, law_model *m, qp_error *err)
{
    law_builtin_chinchilla(chin);
    if (!qat) return QP_OK;
    if (qat->form != DATA_LAW_QAT && qat->form != DATA_LAW_PENALTY)
        return qp_fail(err, QP_ERR_INPUT, "a %s law cannot give the optimal fraction: give a qat or penalty law",
                       data_law_form_name(qat->form));
    return law_model_init(m, qat->form == DATA_LAW_QAT ? qat : chin, qat, err);
}

/* ---- (a) loss against QAT fraction ------------------------------------- */

typedef struct {
    const data_law *qat;
    law_model m;     /* the qat law, or a penalty law over the built-in chinchilla law */
    data_law chin;
    const data_run_list *runs;
    double n, d;
    int bits[PLAN_MAX_BITS];
    int nb;
} lf_arg;

static int in_group(const data_run *r, double n, double d) { return data_group_same(r->n_params, data_run_tokens(r), n, d); }

static qp_status lf_body(plot_ctx *c, void *p, qp_error *err)
{
    lf_arg *a = p;
    FILE *g = c->gp;
    char path[4200], title[256];
    fprintf(g, "set xlabel \"QAT fraction f = D_{qat} / D_{total}\"\n");
    fprintf(g, "set ylabel \"validation loss of the quantized model (nats/token)\"\n");
    fprintf(g, "set xrange [-0.02:1.02]\n");
    /* full-precision runs of the group: a horizontal line at their mean loss */
    double fp_sum = 0;
    int fp_n = 0;
    for (size_t i = 0; a->runs && i < a->runs->n; i++) {
        const data_run *r = &a->runs->runs[i];
        if (usable(r) && data_run_is_fp(r) && in_group(r, a->n, a->d)) fp_sum += r->loss, fp_n++;
    }
    if (fp_n) {
        FILE *f = ctx_data(c, path, sizeof path);
        if (!f) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
        fprintf(f, "0 %.10g\n1 %.10g\n", fp_sum / fp_n, fp_sum / fp_n);
        fclose(f);
        snprintf(title, sizeof title, "observed, full precision (%d run%s)", fp_n, fp_n > 1 ? "s" : "");
        ctx_series(c, path, "using 1:2 with lines dt 2 lw 2 lc rgb '#555555'", title);
    }
    for (int bi = 0; bi < a->nb; bi++) {
        int b = a->bits[bi];
        const char *col = colors[bi % N_COLORS];
        char uw[128];
        if (a->qat) {
            FILE *f = ctx_data(c, path, sizeof path);
            if (!f) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
            int np = 0;
            for (int k = 0; k <= 200; k++) {
                double fr = k / 200.0;
                law_point x = {a->n, (1 - fr) * a->d, fr * a->d, b};
                double l = law_model_loss(&a->m, &x);
                if (isfinite(l)) fprintf(f, "%.6f %.10g\n", fr, l), np++;
            }
            fclose(f);
            if (np) {
                snprintf(uw, sizeof uw, "using 1:2 with lines lw 2 lc rgb '%s'", col);
                snprintf(title, sizeof title, "law, %d bit%s", b, b > 1 ? "s" : "");
                ctx_series(c, path, uw, title);
            }
            double fo, lo;
            qp_error e2 = {0};
            if (plan_optimal_fraction(&a->m, a->n, a->d, b, &fo, &lo, &e2) == QP_OK && isfinite(lo)) {
                f = ctx_data(c, path, sizeof path);
                if (!f) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
                fprintf(f, "%.6f %.10g\n", fo, lo);
                fclose(f);
                snprintf(uw, sizeof uw, "using 1:2 with points pt 3 ps 2.5 lw 2 lc rgb '%s'", col);
                snprintf(title, sizeof title, "law optimum, %d bits: f = %.2f", b, fo);
                ctx_series(c, path, uw, title);
            }
        }
        /* observed: classic (circles), fused (squares), fp-only / qat-only (triangles) */
        static const struct { data_schedule s; int pt; const char *name; } kinds[] = {
            {DATA_SCHED_CLASSIC, 7, "classic"}, {DATA_SCHED_FUSED, 5, "fused"},
            {DATA_SCHED_FP_ONLY, 9, "f = 0 (FP, then quantized)"}, {DATA_SCHED_QAT_ONLY, 11, "f = 1 (QAT only)"}};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            int np = 0;
            FILE *f = NULL;
            for (size_t i = 0; a->runs && i < a->runs->n; i++) {
                const data_run *r = &a->runs->runs[i];
                if (!usable(r) || r->bits != b || r->schedule != kinds[k].s || !in_group(r, a->n, a->d)) continue;
                if (!f && !(f = ctx_data(c, path, sizeof path))) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
                fprintf(f, "%.6f %.10g\n", data_run_fraction(r), r->loss);
                np++;
            }
            if (!f) continue;
            fclose(f);
            snprintf(uw, sizeof uw, "using 1:2 with points pt %d ps 1.6 lc rgb '%s'", kinds[k].pt, col);
            snprintf(title, sizeof title, "observed, %d bits, %s", b, kinds[k].name);
            ctx_series(c, path, uw, title);
        }
    }
    return QP_OK;
}

qp_status plot_loss_fraction(const data_law *qat, const data_run_list *runs, double n_params,
                             double d_total, const int *bits, int n_bits,
                             const plot_opts *o, qp_error *err)
{
    lf_arg a = {0};
    a.qat = qat;
    qp_status mst = plot_model(qat, &a.chin, &a.m, err);
    if (mst) return mst;
    a.runs = runs;
    a.n = n_params;
    a.d = d_total;
    if (qat && qat->form != DATA_LAW_QAT)
        return qp_fail(err, QP_ERR_INPUT, "the loss-fraction plot needs a qat-form law, not %s (fit one with "
                                          "'qatplan fit --form qat')", data_law_form_name(qat->form));
    if (!qat && (!runs || runs->n == 0)) return qp_fail(err, QP_ERR_USAGE, "nothing to plot: give run records, a qat law, or both");
    if (!isfinite(a.n) || !isfinite(a.d)) {
        if (!runs) return qp_fail(err, QP_ERR_USAGE, "with a law alone, give the model size and token budget to plot");
        /* the (N, D) group with the most quantized runs */
        size_t best = 0;
        for (size_t i = 0; i < runs->n; i++) {
            const data_run *r = &runs->runs[i];
            if (!usable(r) || data_run_is_fp(r)) continue;
            if (isfinite(a.n) && !data_group_same(r->n_params, 1, a.n, 1)) continue;
            if (isfinite(a.d) && !data_group_same(1, data_run_tokens(r), 1, a.d)) continue;
            size_t cnt = 0;
            for (size_t j = 0; j < runs->n; j++)
                if (usable(&runs->runs[j]) && !data_run_is_fp(&runs->runs[j]) && in_group(&runs->runs[j], r->n_params, data_run_tokens(r))) cnt++;
            /* ties: the largest N * D, where training says most */
            if (cnt > best || (cnt == best && r->n_params * data_run_tokens(r) > a.n * a.d * 1.0001)) {
                best = cnt;
                a.n = r->n_params;
                a.d = data_run_tokens(r);
            }
        }
        if (!best) return qp_fail(err, QP_ERR_INPUT, "no quantized run with status ok matches: check --params/--tokens or the run files");
    }
    if (!(a.n > 0) || !(a.d > 0)) return qp_fail(err, QP_ERR_INPUT, "the model size and token budget must be positive");
    for (int i = 0; i < n_bits; i++) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, bits[i]);
    if (!a.nb && runs)
        for (size_t i = 0; i < runs->n; i++) {
            const data_run *r = &runs->runs[i];
            if (usable(r) && !data_run_is_fp(r) && in_group(r, a.n, a.d)) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, r->bits);
        }
    if (!a.nb) {
        int def[] = {1, 2, 4, 6};
        for (int i = 0; i < 4; i++) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, def[i]);
    }
    char title[512], nb[32], db[32];
    snprintf(title, sizeof title, "Loss against QAT fraction: N = %s parameters, D_{total} = %s tokens",
             qp_format_count(a.n, nb, sizeof nb), qp_format_count(a.d, db, sizeof db));
    return render(o, title, lf_body, &a, err);
}

/* ---- (b) optimal fraction against S_total ------------------------------ */

typedef struct {
    const data_law *qat, *fraction;
    law_model m;
    data_law chin;
    const data_run_list *runs;
    double n;
    int bits[PLAN_MAX_BITS];
    int nb;
} of_arg;



typedef struct {
    double n, d;
    int bits;
} ofgroup;

static qp_status of_body(plot_ctx *c, void *p, qp_error *err)
{
    of_arg *a = p;
    FILE *g = c->gp;
    char path[4200], title[256], uw[160];
    /* S range: the paper's 10..1e5, widened to cover the runs */
    double s_lo = 10, s_hi = 1e5;
    for (size_t i = 0; a->runs && i < a->runs->n; i++) {
        const data_run *r = &a->runs->runs[i];
        if (!usable(r) || data_run_is_fp(r)) continue;
        double s = law_tokens_per_param_byte(data_run_tokens(r), r->n_params, r->bits);
        if (s > 1.5 && s / 2 < s_lo) s_lo = fmax(1.5, s / 2);
        if (s * 2 > s_hi) s_hi = s * 2;
    }
    fprintf(g, "set logscale x\nset format x \"10^{%%L}\"\n");
    fprintf(g, "set xlabel \"S_{total} = D_{total} / (N B / 8)   (tokens per parameter byte)\"\n");
    fprintf(g, "set ylabel \"optimal QAT fraction\"\nset yrange [-0.02:1.02]\nset xrange [%g:%g]\n", s_lo, s_hi);
    /* closed forms */
    double as[2] = {LAW_FRACTION_A_PAPER, a->fraction ? a->fraction->coef[0] : NAN};
    for (int k = 0; k < 2; k++) {
        if (!isfinite(as[k]) || (k == 1 && fabs(as[1] - as[0]) < 1e-9)) continue;
        FILE *f = ctx_data(c, path, sizeof path);
        if (!f) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
        for (int i = 0; i <= 200; i++) {
            double s = exp(log(s_lo) + (log(s_hi) - log(s_lo)) * i / 200.0);
            double fh = law_fraction_hat(as[k], s);
            if (isfinite(fh)) fprintf(f, "%.6g %.6g\n", s, fh);
        }
        fclose(f);
        snprintf(title, sizeof title, k == 0 ? "paper: exp(-a / ln S), a = %.4g" : "fitted fraction law: a = %.4g", as[k]);
        ctx_series(c, path, k == 0 ? "using 1:2 with lines lw 3 dt 1 lc rgb 'black'" : "using 1:2 with lines lw 3 dt 2 lc rgb '#555555'", title);
    }
    /* the qat law's numerical optimum per bit width at N */
    for (int bi = 0; a->qat && bi < a->nb; bi++) {
        int b = a->bits[bi];
        FILE *f = ctx_data(c, path, sizeof path);
        if (!f) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
        int np = 0;
        for (int i = 0; i <= 60; i++) {
            double s = exp(log(s_lo) + (log(s_hi) - log(s_lo)) * i / 60.0);
            double d = s * a->n * b / 8.0, fo, lo;
            qp_error e2 = {0};
            if (plan_optimal_fraction(&a->m, a->n, d, b, &fo, &lo, &e2) == QP_OK && isfinite(fo))
                fprintf(f, "%.6g %.6g\n", s, fo), np++;
        }
        fclose(f);
        if (!np) continue;
        char nb[32];
        snprintf(uw, sizeof uw, "using 1:2 with lines lw 2 lc rgb '%s'", colors[bi % N_COLORS]);
        snprintf(title, sizeof title, "qat law optimum, %d bits (N = %s)", b, qp_format_count(a->n, nb, sizeof nb));
        ctx_series(c, path, uw, title);
    }
    /* empirical best fractions of the run groups */
    if (a->runs) {
        static const struct { data_schedule s; int pt; const char *name; } sch[] = {{DATA_SCHED_CLASSIC, 7, "classic"},
                                                                                    {DATA_SCHED_FUSED, 5, "fused"}};
        for (int bi = 0; bi < a->nb; bi++)
            for (int k = 0; k < 2; k++) {
                FILE *f = NULL;
                int np = 0;
                const data_run_list *rl = a->runs;
                /* one group per (N, D) of this bit width, each once */
                for (size_t i = 0; i < rl->n; i++) {
                    const data_run *r = &rl->runs[i];
                    if (!usable(r) || r->bits != a->bits[bi]) continue;
                    int seen = 0;
                    for (size_t j = 0; j < i && !seen; j++)
                        seen = usable(&rl->runs[j]) && rl->runs[j].bits == r->bits && in_group(&rl->runs[j], r->n_params, data_run_tokens(r));
                    if (seen) continue;
                    /* the group's fractions (schedule k, plus the shared f = 0 and f = 1 ends), losses averaged over seeds */
                    double fr[64], ls[64];
                    int cnt[64], nf = 0;
                    for (size_t j = i; j < rl->n; j++) {
                        const data_run *q = &rl->runs[j];
                        if (!usable(q) || q->bits != r->bits || !in_group(q, r->n_params, data_run_tokens(r))) continue;
                        if (q->schedule != sch[k].s && q->schedule != DATA_SCHED_FP_ONLY && q->schedule != DATA_SCHED_QAT_ONLY) continue;
                        double x = data_run_fraction(q);
                        int m;
                        for (m = 0; m < nf; m++)
                            if (fabs(fr[m] - x) < 1e-3) break;
                        if (m == nf) {
                            if (nf == 64) continue;
                            fr[nf] = x, ls[nf] = 0, cnt[nf] = 0, nf++;
                        }
                        ls[m] += log(q->loss); /* mean log loss, as the fitter */
                        cnt[m]++;
                    }
                    int has_sched = 0;
                    for (size_t j = i; j < rl->n && !has_sched; j++)
                        has_sched = usable(&rl->runs[j]) && rl->runs[j].schedule == sch[k].s && rl->runs[j].bits == r->bits &&
                                    in_group(&rl->runs[j], r->n_params, data_run_tokens(r));
                    if (nf < 3 || !has_sched) continue;
                    for (int m = 0; m < nf; m++) ls[m] /= cnt[m];
                    for (int x = 1; x < nf; x++) /* sort by fraction */
                        for (int y = x; y > 0 && fr[y] < fr[y - 1]; y--) {
                            double t = fr[y]; fr[y] = fr[y - 1]; fr[y - 1] = t;
                            t = ls[y]; ls[y] = ls[y - 1]; ls[y - 1] = t;
                        }
                    double best = data_best_fraction(fr, ls, nf, NULL);
                    double s = law_tokens_per_param_byte(data_run_tokens(r), r->n_params, r->bits);
                    if (!f && !(f = ctx_data(c, path, sizeof path))) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
                    fprintf(f, "%.6g %.6g\n", s, best);
                    np++;
                }
                if (!f) continue;
                fclose(f);
                snprintf(uw, sizeof uw, "using 1:2 with points pt %d ps 1.8 lc rgb '%s'", sch[k].pt, colors[bi % N_COLORS]);
                snprintf(title, sizeof title, "best observed, %d bits, %s (%d group%s)", a->bits[bi], sch[k].name, np, np > 1 ? "s" : "");
                ctx_series(c, path, uw, title);
            }
    }
    return QP_OK;
}

qp_status plot_optimal_fraction(const data_law *qat, const data_law *fraction,
                                const data_run_list *runs, double n_params, const int *bits,
                                int n_bits, const plot_opts *o, qp_error *err)
{
    if (fraction && fraction->form != DATA_LAW_FRACTION)
        return qp_fail(err, QP_ERR_INPUT, "expected a fraction-form law, got %s", data_law_form_name(fraction->form));
    of_arg a = {0};
    a.qat = qat;
    qp_status mst = plot_model(qat, &a.chin, &a.m, err);
    if (mst) return mst;
    a.fraction = fraction;
    a.runs = runs;
    a.n = n_params;
    for (int i = 0; i < n_bits; i++) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, bits[i]);
    double lsum = 0;
    int ln = 0;
    for (size_t i = 0; runs && i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        if (!usable(r) || data_run_is_fp(r)) continue;
        lsum += log(r->n_params);
        ln++;
        if (!n_bits) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, r->bits);
    }
    if (!isfinite(a.n)) a.n = ln ? exp(lsum / ln) : 1e8;
    if (!(a.n > 0)) return qp_fail(err, QP_ERR_INPUT, "the model size must be positive");
    if (!a.nb) {
        int def[] = {1, 2, 4, 6};
        for (int i = 0; i < 4; i++) a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, def[i]);
    }
    return render(o, "Optimal QAT fraction against tokens per parameter byte", of_body, &a, err);
}

/* ---- (c) residuals ------------------------------------------------------ */

typedef struct {
    const data_law *law;
    const data_run_list *runs;
    int bits[PLAN_MAX_BITS];
    int nb;
} rs_arg;

static qp_status rs_body(plot_ctx *c, void *p, qp_error *err)
{
    rs_arg *a = p;
    FILE *g = c->gp;
    char path[4200], title[128], uw[128];
    fprintf(g, "set logscale x\nset xlabel \"N (all parameters; bit widths drawn side by side)\"\nset key height 1.5\n");
    fprintf(g, "set ylabel \"residual: ln(observed loss) - ln(predicted loss)\"\n");
    fprintf(g, "set xzeroaxis lt -1 lw 1\n");
    /* every `set` must come before the plot clauses: find the N range first */
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < a->runs->n; i++) {
        const data_run *r = &a->runs->runs[i];
        if (!usable(r)) continue;
        lo = fmin(lo, r->n_params);
        hi = fmax(hi, r->n_params);
    }
    if (isfinite(lo)) fprintf(g, "set xrange [%g:%g]\n", lo / 1.5, hi * 1.5);
    for (int bi = 0; bi < a->nb; bi++) {
        FILE *f = NULL;
        int np = 0;
        double s2 = 0;
        for (size_t i = 0; i < a->runs->n; i++) {
            const data_run *r = &a->runs->runs[i];
            if (!usable(r) || r->bits != a->bits[bi]) continue;
            law_point x = {r->n_params, r->d_fp, r->d_qat, r->bits};
            double pred = law_loss(a->law, &x);
            if (!(pred > 0) || !isfinite(pred)) continue;
            double res = log(r->loss) - log(pred);
            if (!f && !(f = ctx_data(c, path, sizeof path))) return qp_fail(err, QP_ERR_IO, "cannot write plot data in %s", c->dir);
            /* bit widths side by side at each N, so one colour does not hide another */
            double shift = exp(0.035 * (bi - (a->nb - 1) / 2.0));
            fprintf(f, "%.8g %.8g\n", r->n_params * shift, res);
            s2 += res * res;
            np++;
        }
        if (!f) continue;
        fclose(f);
        int b = a->bits[bi];
        snprintf(uw, sizeof uw, "using 1:2 with points pt 7 ps 1.3 lc rgb '%s'", color_of(a->bits, a->nb, b));
        if (b >= 16) snprintf(title, sizeof title, "full precision (%d runs, RMSE %.3g)", np, sqrt(s2 / np));
        else snprintf(title, sizeof title, "%d bits (%d runs, RMSE %.3g)", b, np, sqrt(s2 / np));
        ctx_series(c, path, uw, title);
    }
    return QP_OK;
}

qp_status plot_residuals(const data_law *law, const data_run_list *runs, const plot_opts *o, qp_error *err)
{
    if (!law || (law->form != DATA_LAW_QAT && law->form != DATA_LAW_CHINCHILLA))
        return qp_fail(err, QP_ERR_USAGE, "the residual plot needs a qat or chinchilla law (--law FILE)");
    if (!runs || runs->n == 0) return qp_fail(err, QP_ERR_USAGE, "the residual plot needs run records (--runs FILE)");
    rs_arg a = {0};
    a.law = law;
    a.runs = runs;
    for (size_t i = 0; i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        if (!usable(r) || (law->form == DATA_LAW_CHINCHILLA && !data_run_is_fp(r))) continue;
        a.nb = add_bits(a.bits, a.nb, PLAN_MAX_BITS, r->bits);
    }
    char title[256];
    snprintf(title, sizeof title, "Fit residuals of the %s law, by model size and bit width", data_law_form_name(law->form));
    return render(o, title, rs_body, &a, err);
}
