/* qatplan fit: fit a loss law to run records and write a law file; or, with --synth,
 * write synthetic run records drawn from a known law (the fitter's test oracle). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fit.h"

static void fit_help(FILE *f)
{
    fprintf(f,
            "usage: qatplan fit RUNS... -o LAW.json [options]\n"
            "       qatplan fit --synth OUT.jsonl [--form chinchilla|qat] [synthetic options]\n\n"
            "Fits a loss law to run records (JSONL or CSV files, several allowed) and writes a law file\n"
            "for 'qatplan plan --law'. Bad, diverged, failed and duplicate runs are excluded and counted.\n"
            "Method and formats: docs/fitter.md.\n\n"
            "  -o, --output FILE     law file to write (JSON, schema qatplan-law-v1); required\n"
            "  --form F              chinchilla (E, A, B, alpha, beta on full-precision runs), qat (the full\n"
            "                        law, 16 coefficients, all bit widths; default), fraction (the constant\n"
            "                        a of f_hat = exp(-a/ln S_total)) or penalty (the QAT penalty alone,\n"
            "                        11 coefficients, over a full-precision law: see below) or efficiency\n"
            "                        (eta_1..eta_8: --method's QAT tokens count eta x D_qat in --qat-law)\n"
            "  --bootstrap K         refit K resamples of the runs; the law carries 95%% intervals and the\n"
            "                        samples (default 0: none)\n"
            "  --huber-delta X       Huber threshold on log-loss residuals (default 1e-3)\n"
            "  --seed S              seed of the bootstrap and the Latin hypercube (default 1)\n"
            "  --starts N            starts: default the full 4,500-start grid (chinchilla, and the\n"
            "                        chinchilla stage of qat) and 128 Latin hypercube starts (qat)\n"
            "  --threads T           OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
            "  --method M            training method of the quantized runs to fit: qat (default), efqat,\n"
            "                        efficientqat, blockap or e2eqp; runs of other methods are excluded\n"
            "                        and counted (records without a method are qat)\n"
            "  --qat-law FILE|NAME   --form efficiency: the QAT law held fixed (a qat law, or a penalty law\n"
            "                        over --fp-law, default the built-in chinchilla)\n"
            "  --report FILE         also write the fit report (residuals by size and bit width) to FILE\n"
            "  -q, --quiet           do not print the report on stdout\n\n"
            "penalty fits (--form penalty):\n"
            "  --fp-law FILE|NAME    full-precision law the penalty is measured over (a chinchilla or qat\n"
            "                        law file, or the built-in 'chinchilla' or 'own'); without it each\n"
            "                        quantized run is compared with the full-precision runs of the same\n"
            "                        N and D (within 2%% and 5%%)\n"
            "  --points              the inputs are penalty observations (CSV: source,n_params,d_fp,d_qat,\n"
            "                        bits,penalty,weight[,note]; docs/formats.md), not run records\n"
            "  --fraction-anchor A   make f_hat = exp(-A/ln S_total) the law's optimal fraction (6.7297 is\n"
            "                        the paper's constant)\n"
            "  --anchor-weight W     weight of the fraction anchors (default 1)\n"
            "  --units U             nats_per_token or nats_per_byte: the loss unit, for any form (default:\n"
            "                        from the runs' vocabulary (256 = bytes); for a penalty, the --fp-law's)\n"
            "  --source TEXT         provenance source written into the law (default: the input files)\n"
            "  --reproducible        no creation time or code version in the law file, so the same\n"
            "                        inputs give the same bytes (scripts/build-reference-law.sh)\n\n"
            "synthetic runs (--synth OUT.jsonl writes runs instead of fitting):\n"
            "  --synth-law FILE      the true law (default: Epoch AI's chinchilla law for --form chinchilla,\n"
            "                        the documented synthetic qat law for --form qat)\n"
            "  --runs N              runs to draw (default 500 chinchilla, 757 qat)\n"
            "  --noise X             sigma of multiplicative log-normal noise on the loss (default 0.01)\n"
            "  --outliers X          fraction of runs corrupted by a factor exp(+-U(0.05, 0.3)) (default 0)\n\n"
            "exit status: 0 ok, 2 bad usage or input, 1 when the data cannot identify the form or the\n"
            "fit fails (the message says which and what to add).\n");
}

static char *join_sources(char **files, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(files[i]) + 2;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, files[i]);
    }
    return s;
}

static qp_status write_synth(const char *path, data_law_form form, const char *law_path,
                             const fit_synth_options *so, qp_error *err)
{
    data_law truth;
    qp_status st;
    if (law_path) {
        if ((st = data_law_read(law_path, &truth, err))) return st;
    } else if (form == DATA_LAW_QAT) {
        fit_synth_true_qat(&truth);
    } else {
        law_builtin_chinchilla(&truth);
    }
    data_run_list runs;
    data_run_list_init(&runs);
    st = fit_synth_runs(&truth, so, &runs, err);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = st ? NULL : open_memstream(&text, &len);
    if (!st && !mem) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < runs.n; i++) {
        char *line = data_run_to_json(&runs.runs[i]);
        if (!line) {
            st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
            break;
        }
        fprintf(mem, "%s\n", line);
        free(line);
    }
    if (mem) fclose(mem);
    if (!st) st = qp_write_file_atomic(path, text, len, err);
    if (!st) fprintf(stderr, "qatplan: wrote %zu synthetic runs to %s\n", runs.n, path);
    free(text);
    data_run_list_free(&runs);
    data_law_free(&truth);
    return st;
}

/* Before reading or fitting: the law and the report must be neither a run file nor each
 * other, and writable now (a bootstrap fit can take long). */
static qp_status check_paths(char **files, int n, const char *out, const char *report, qp_error *err)
{
    qp_named_path *in = calloc((size_t)n, sizeof *in);
    if (!in) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) in[i] = (qp_named_path){files[i], "run file"};
    const qp_named_path outs[] = {{out, "-o"}, {report, "--report"}};
    qp_status st = qp_refuse_output_is_input(outs, 2, in, (size_t)n, err);
    free(in);
    if (!st) st = qp_check_writable(out, "-o", 0, err);
    if (!st && report) st = qp_check_writable(report, "--report", 0, err);
    return st;
}

typedef struct {
    const char *fp_law, *source;
    int points, reproducible;
    double anchor_a, anchor_w;
    data_loss_units units;
    const char *method; /* training method of the quantized runs ("" = qat) */
} penalty_args;

/* A penalty fit is of one training method too (fit_runs does this for the other forms):
 * quantized runs of another method leave the list, with a note naming how many. */
static void keep_method(data_run_list *runs, const char *method, const char *file)
{
    const char *want = method && method[0] ? method : "qat";
    size_t k = 0;
    int dropped = 0;
    for (size_t i = 0; i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        if (!data_run_is_fp(r) && strcmp(data_run_method(r), want)) dropped++;
        else runs->runs[k++] = *r;
    }
    runs->n = k;
    if (dropped)
        fprintf(stderr, "qatplan: %s: %d quantized runs of another training method than %s: excluded (select "
                        "them with --method)\n", file, dropped, want);
}

static qp_status read_points(char **files, int n, const penalty_args *pa, const data_law *fp,
                             fit_penalty_point **pts, size_t *np, qp_error *err)
{
    qp_status st = QP_OK;
    *pts = NULL;
    *np = 0;
    for (int i = 0; i < n && !st; i++) {
        fit_penalty_point *p = NULL;
        size_t k = 0;
        if (pa->points) {
            st = fit_penalty_points_read(files[i], &p, &k, err);
        } else {
            data_run_list runs;
            data_run_list_init(&runs);
            int unmatched = 0, nonpos = 0;
            st = data_runs_read(files[i], &runs, err);
            if (!st) keep_method(&runs, pa->method, files[i]);
            if (!st) st = fit_penalty_points_from_runs(&runs, fp, &p, &k, &unmatched, &nonpos, err);
            if (!st && (unmatched || nonpos))
                fprintf(stderr, "qatplan: %s: %d quantized runs without a full-precision match, %d with a "
                                "penalty <= 0 (within noise): skipped\n", files[i], unmatched, nonpos);
            data_run_list_free(&runs);
        }
        fit_penalty_point *all = st ? NULL : realloc(*pts, sizeof **pts * (*np + k + 1));
        if (!st && !all) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
        if (!st) {
            memcpy(all + *np, p, sizeof *p * k);
            *pts = all;
            *np += k;
        }
        free(p);
    }
    return st;
}

/* The report in mem (an open_memstream over *text, *len): "wrote OUT" appended, printed unless
 * quiet, written to report_path when given. Closes mem. */
static qp_status finish_report(FILE *mem, char **text, size_t *len, const char *out_path, int quiet,
                               const char *report_path, qp_error *err)
{
    fprintf(mem, "wrote %s\n", out_path);
    fclose(mem);
    if (!quiet) fputs(*text, stdout);
    return report_path ? qp_write_file_atomic(report_path, *text, *len, err) : QP_OK;
}

/* Whether the law passes the physical checks over the range it was fitted on. */
static void print_checks(FILE *f, const data_law *law, const data_law *fp)
{
    law_model m;
    data_law chin;
    law_builtin_chinchilla(&chin);
    const data_law *pen = law->form == DATA_LAW_CHINCHILLA ? NULL : law;
    const data_law *base = law->form == DATA_LAW_PENALTY ? (fp ? fp : &chin) : law;
    const data_law_provenance *p = &law->prov;
    if (law->form == DATA_LAW_FRACTION || !isfinite(p->n_min) || !isfinite(p->d_min) ||
        law_model_init(&m, base, pen, NULL)) {
        fprintf(f, "physical checks: not run (no fitted range, or a fraction law)\n");
        return;
    }
    int bits[16], nb = 0;
    for (int i = 0; i < p->n_bits && nb < 16; i++)
        if (p->bits[i] < LAW_FP_BITS) bits[nb++] = p->bits[i];
    if (nb == 0) bits[nb++] = LAW_FP_BITS; /* a full-precision law: check its floor and vocabulary */
    law_check_summary cs;
    double tpp_lo = p->d_min / p->n_max, tpp_hi = p->d_max / p->n_min;
    law_check_grid(&m, p->n_min, p->n_max, tpp_lo, tpp_hi, bits, nb, &cs);
    if (cs.n_failed == 0)
        fprintf(f, "physical checks over the fitted range: all %ld points pass (QAT loss >= full-precision "
                   "loss >= E, penalty not growing with bits, loss <= ln(vocab))\n", cs.n_points);
    else
        fprintf(f, "physical checks over the fitted range: %ld of %ld points FAIL; first: %s\n", cs.n_failed,
                cs.n_points, cs.first);
}

static int cmd_fit_penalty(char **files, int n, const char *out_path, const char *report_path, int quiet,
                           const fit_options *fo, const penalty_args *pa)
{
    qp_error err = {0};
    qp_status st = check_paths(files, n, out_path, report_path, &err);
    data_law fp, law;
    int has_fp = 0;
    data_law_init(&law, DATA_LAW_PENALTY);
    if (!st && pa->fp_law && !(st = law_read(pa->fp_law, &fp, &err))) has_fp = 1;
    if (!st && has_fp && fp.form != DATA_LAW_CHINCHILLA && fp.form != DATA_LAW_QAT)
        st = qp_fail(&err, QP_ERR_USAGE, "--fp-law must be a chinchilla or qat law, not %s", data_law_form_name(fp.form));
    fit_penalty_point *pts = NULL;
    size_t np = 0;
    if (!st) st = read_points(files, n, pa, has_fp ? &fp : NULL, &pts, &np, &err);
    fit_penalty_options po;
    fit_penalty_options_init(&po);
    po.anchor_a = pa->anchor_a;
    po.anchor_weight = pa->anchor_w;
    po.bootstrap = fo->bootstrap;
    po.seed = fo->seed;
    po.reproducible = pa->reproducible;
    if (fo->n_starts > 0) po.n_starts = fo->n_starts;
    char *src = join_sources(files, n);
    snprintf(po.source, sizeof po.source, "%s", pa->source ? pa->source : src ? src : "penalty observations");
    free(src);
    fit_penalty_report rep;
    if (!st) st = fit_penalty(pts, np, &po, &law, &rep, &err);
    if (!st) {
        law.units = pa->units ? pa->units : has_fp ? fp.units : DATA_UNITS_UNKNOWN;
        if (!pa->points)
            snprintf(law.prov.run_method, sizeof law.prov.run_method, "%s", fo->method[0] ? fo->method : "qat");
        if (has_fp && law.units == fp.units) { /* the penalty adds to this law's losses */
            law.vocab = fp.vocab;
            snprintf(law.tokenizer, sizeof law.tokenizer, "%s", fp.tokenizer);
        }
        st = data_law_write(out_path, &law, &err);
    }
    if (!st) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        else {
            fprintf(mem, "penalty fit: %zu observations, %d fraction anchors; %d of %d starts reached the best "
                         "cost %.6g\nRMSE(log penalty) %.4f; law-optimal fraction within %.3f of f_hat at every anchor\n",
                    np, rep.n_anchors, rep.starts_at_best, rep.starts, rep.cost, rep.rmse_log, rep.anchor_max);
            for (size_t i = 0; i < np; i++)
                fprintf(mem, "  %-24s N %-9.4g D_fp %-9.4g D_qat %-9.4g %2g bits: observed %.4f, law %.4f (%+.1f%%)\n",
                        pts[i].source, pts[i].x.n_params, pts[i].x.d_fp, pts[i].x.d_qat, pts[i].x.bits,
                        pts[i].penalty, law_penalty(&law, &pts[i].x),
                        100 * (law_penalty(&law, &pts[i].x) / pts[i].penalty - 1));
            print_checks(mem, &law, has_fp ? &fp : NULL);
            st = finish_report(mem, &text, &len, out_path, quiet, report_path, &err);
        }
        free(text);
    }
    free(pts);
    if (has_fp) data_law_free(&fp);
    data_law_free(&law);
    return cli_report(st, &err);
}

/* Fit the law to the runs of `files` (files or http(s) URLs), write it and the report. */
static int fit_files(char **files, int n, const char *out_path, const char *report_path, int quiet, fit_options *fo,
                     data_loss_units units)
{
    qp_error err = {0};
    qp_status st;
    if ((st = check_paths(files, n, out_path, report_path, &err))) return cli_report(st, &err);
    data_run_list runs;
    data_run_list_init(&runs);
    /* data_runs_read accepts files and http(s) URLs */
    for (int i = 0; i < n && !st; i++) st = data_runs_read(files[i], &runs, &err);
    char *src = st ? NULL : join_sources(files, n);
    if (!st && !src) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
    data_law law;
    data_law_init(&law, fo->form);
    fit_report rep;
    memset(&rep, 0, sizeof rep);
    if (!st) {
        snprintf(fo->source, sizeof fo->source, "%s", src);
        st = fit_runs(&runs, fo, &law, &rep, &err);
    }
    if (!st && units) law.units = units;
    if (!st) st = data_law_write(out_path, &law, &err);
    if (!st) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (mem) {
            fit_report_print(mem, &rep, &law);
            print_checks(mem, &law, NULL);
            st = finish_report(mem, &text, &len, out_path, quiet, report_path, &err);
        } else {
            st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        }
        free(text);
    } else if (rep.n_input > 0 && st == QP_ERR_UNIDENTIFIED) {
        fprintf(stderr, "qatplan: %d runs read: %d used, %d bad, %d diverged, %d failed, %d duplicate\n",
                rep.n_input, rep.n_used, rep.n_bad, rep.n_diverged, rep.n_failed, rep.n_duplicate);
        if (rep.excluded_runs[0]) fprintf(stderr, "qatplan: excluded runs: %s\n", rep.excluded_runs);
    }
    free(src);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
    return cli_report(st, &err);
}

/* --method: the training methods a run record can name (data.h's list) */
static qp_status parse_method(const char *v, char *out, size_t n, qp_error *err)
{
    data_method m;
    if (data_method_parse(v, &m, NULL))
        return qp_fail(err, QP_ERR_USAGE, "--method %s: use " DATA_METHOD_LIST, v);
    snprintf(out, n, "%s", data_method_name(m));
    return QP_OK;
}

/* --form efficiency: eta per bit width of --method's runs against --qat-law (with --fp-law
 * under a penalty law) held fixed. */
static int cmd_fit_efficiency(char **files, int n, const char *out_path, const char *report_path, int quiet,
                              fit_options *fo, const char *qat_law, const char *fp_law)
{
    qp_error err = {0};
    qp_status st = check_paths(files, n, out_path, report_path, &err);
    if (!st && !qat_law)
        st = qp_fail(&err, QP_ERR_USAGE, "--form efficiency measures a method against a QAT law: give --qat-law FILE|NAME "
                                         "(e.g. own, or the law fitted to your qat runs)");
    data_law q, fp, law;
    int has_q = 0, has_fp = 0;
    data_law_init(&law, DATA_LAW_EFFICIENCY);
    if (!st && !(st = law_read(qat_law, &q, &err))) has_q = 1;
    if (!st && fp_law && !(st = law_read(fp_law, &fp, &err))) has_fp = 1;
    if (!st && q.form != DATA_LAW_QAT && q.form != DATA_LAW_PENALTY)
        st = qp_fail(&err, QP_ERR_USAGE, "--qat-law must be a qat or penalty law, not %s", data_law_form_name(q.form));
    if (!st && has_fp && fp.form != DATA_LAW_CHINCHILLA && fp.form != DATA_LAW_QAT)
        st = qp_fail(&err, QP_ERR_USAGE, "--fp-law must be a chinchilla or qat law, not %s", data_law_form_name(fp.form));
    data_law chin;
    law_builtin_chinchilla(&chin);
    law_model m;
    if (!st) st = law_model_init(&m, has_fp ? &fp : q.form == DATA_LAW_QAT ? &q : &chin, &q, &err);
    data_run_list runs;
    data_run_list_init(&runs);
    for (int i = 0; i < n && !st; i++) st = data_runs_read(files[i], &runs, &err);
    char *src = st ? NULL : join_sources(files, n);
    if (src) snprintf(fo->source, sizeof fo->source, "%s; qat law held fixed: %s", src, qat_law);
    fit_efficiency_report rep;
    if (!st) st = fit_efficiency(&runs, &m, fo, &law, &rep, &err);
    if (!st) st = data_law_write(out_path, &law, &err);
    if (!st) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (!mem) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        else {
            fit_efficiency_report_print(mem, &rep, &law);
            st = finish_report(mem, &text, &len, out_path, quiet, report_path, &err);
        }
        free(text);
    }
    free(src);
    if (has_q) data_law_free(&q);
    if (has_fp) data_law_free(&fp);
    data_law_free(&law);
    data_run_list_free(&runs);
    return cli_report(st, &err);
}

/* What the command line asked for. */
typedef struct {
    fit_options fo;
    penalty_args pa;
    const char *out_path, *report_path, *synth_path, *synth_law, *qat_law;
    int quiet, form_given, help;
    double runs_n, noise, outliers; /* --synth's; NAN = not given */
} fit_cli;

static qp_status fit_parse_args(int argc, char **argv, fit_cli *a, qp_error *err)
{
    enum { O_FORM = 256, O_BOOT, O_HUBER, O_SEED, O_STARTS, O_THREADS, O_REPORT, O_SYNTH,
           O_SYNTH_LAW, O_RUNS, O_NOISE, O_OUTLIERS, O_FP_LAW, O_POINTS, O_ANCHOR, O_ANCHOR_W, O_UNITS,
           O_SOURCE, O_REPRO, O_METHOD, O_QAT_LAW };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},      {"form", required_argument, 0, O_FORM},
        {"bootstrap", required_argument, 0, O_BOOT}, {"huber-delta", required_argument, 0, O_HUBER},
        {"seed", required_argument, 0, O_SEED},     {"starts", required_argument, 0, O_STARTS},
        {"threads", required_argument, 0, O_THREADS}, {"report", required_argument, 0, O_REPORT},
        {"quiet", no_argument, 0, 'q'},             {"synth", required_argument, 0, O_SYNTH},
        {"synth-law", required_argument, 0, O_SYNTH_LAW}, {"runs", required_argument, 0, O_RUNS},
        {"noise", required_argument, 0, O_NOISE},   {"outliers", required_argument, 0, O_OUTLIERS},
        {"fp-law", required_argument, 0, O_FP_LAW}, {"points", no_argument, 0, O_POINTS},
        {"fraction-anchor", required_argument, 0, O_ANCHOR}, {"anchor-weight", required_argument, 0, O_ANCHOR_W},
        {"units", required_argument, 0, O_UNITS},   {"source", required_argument, 0, O_SOURCE},
        {"reproducible", no_argument, 0, O_REPRO}, {"method", required_argument, 0, O_METHOD},
        {"qat-law", required_argument, 0, O_QAT_LAW},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    fit_options *fo = &a->fo;
    penalty_args *pa = &a->pa;
    qp_status st = QP_OK;
    long v;
    optind = 1;
    opterr = 0;
    int c;
    while (!st && !a->help && (c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': a->out_path = optarg; break;
        case O_FORM:
            st = data_law_form_parse(optarg, &fo->form, err);
            a->form_given = 1;
            break;
        case O_BOOT:
            if (!(st = qp_parse_long(optarg, "--bootstrap", 0, 100000, &v, err))) fo->bootstrap = (int)v;
            break;
        case O_HUBER: st = qp_parse_real(optarg, "--huber-delta", 1e-12, 10, &fo->huber_delta, err); break;
        case O_SEED:
            if (!(st = qp_parse_long(optarg, "--seed", 0, 2147483647L, &v, err))) fo->seed = (uint64_t)v;
            break;
        case O_STARTS:
            if (!(st = qp_parse_long(optarg, "--starts", 1, 1000000, &v, err))) fo->n_starts = (int)v;
            break;
        case O_THREADS:
            if (!(st = qp_parse_long(optarg, "--threads", 1, 1024, &v, err))) fo->threads = (int)v;
            break;
        case O_REPORT: a->report_path = optarg; break;
        case 'q': a->quiet = 1; break;
        case O_SYNTH: a->synth_path = optarg; break;
        case O_SYNTH_LAW: a->synth_law = optarg; break;
        case O_RUNS: st = qp_parse_whole_count(optarg, "--runs", 1e7, &a->runs_n, err); break;
        case O_NOISE: st = qp_parse_real(optarg, "--noise", 0, 1, &a->noise, err); break;
        case O_OUTLIERS: st = qp_parse_real(optarg, "--outliers", 0, 1, &a->outliers, err); break;
        case O_FP_LAW: pa->fp_law = optarg; break;
        case O_POINTS: pa->points = 1; break;
        case O_ANCHOR: st = qp_parse_real(optarg, "--fraction-anchor", 0.01, 100, &pa->anchor_a, err); break;
        case O_ANCHOR_W: st = qp_parse_real(optarg, "--anchor-weight", 1e-6, 1e6, &pa->anchor_w, err); break;
        case O_UNITS: st = data_loss_units_parse(optarg, &pa->units, err); break;
        case O_SOURCE: pa->source = optarg; break;
        case O_REPRO: pa->reproducible = 1; break;
        case O_METHOD: st = parse_method(optarg, fo->method, sizeof fo->method, err); break;
        case O_QAT_LAW: a->qat_law = optarg; break;
        case 'h': a->help = 1; break;
        case ':':
            st = qp_fail(err, QP_ERR_USAGE, "option %s needs a value: see 'qatplan fit --help'", argv[optind - 1]);
            break;
        default:
            st = qp_fail(err, QP_ERR_USAGE, "unknown option %s: see 'qatplan fit --help'", argv[optind - 1]);
            break;
        }
    }
    return st;
}

/* --synth: runs drawn from a law, written to a file; nothing read. */
static int fit_synth_cmd(fit_cli *a, int nfiles, char **files, qp_error *err)
{
    fit_options *fo = &a->fo;
    if (!a->form_given) fo->form = DATA_LAW_QAT;
    if (fo->form == DATA_LAW_FRACTION || fo->form == DATA_LAW_EFFICIENCY)
        return cli_report(qp_fail(err, QP_ERR_USAGE, "--synth draws runs from a chinchilla or qat "
                                  "law: use --form chinchilla or --form qat"), err);
    if (nfiles > 0)
        return cli_report(qp_fail(err, QP_ERR_USAGE, "--synth writes runs and reads none: drop '%s'", files[0]), err);
    fit_synth_options so;
    fit_synth_options_init(&so, fo->form);
    so.seed = fo->seed;
    if (isfinite(a->runs_n)) so.n_runs = (int)a->runs_n;
    if (isfinite(a->noise)) so.noise = a->noise;
    if (isfinite(a->outliers)) so.outlier_frac = a->outliers;
    const qp_named_path sin[] = {{a->synth_law, "--synth-law"}}, sout[] = {{a->synth_path, "--synth"}};
    qp_status st = qp_refuse_output_is_input(sout, 1, sin, 1, err);
    if (st) return cli_report(st, err);
    return cli_report(write_synth(a->synth_path, fo->form, a->synth_law, &so, err), err);
}

int cmd_fit(int argc, char **argv)
{
    fit_cli a = {.pa = {NULL, NULL, 0, 0, NAN, 1.0, DATA_UNITS_UNKNOWN, NULL}, .runs_n = NAN, .noise = NAN, .outliers = NAN};
    fit_options_init(&a.fo);
    qp_error err = {0};
    qp_status st = fit_parse_args(argc, argv, &a, &err);
    if (a.help && !st) {
        fit_help(stdout);
        return 0;
    }
    if (st) return cli_report(st, &err);
    char **files = argv + optind;
    int nfiles = argc - optind;
    fit_options *fo = &a.fo;
    penalty_args *pa = &a.pa;
    if (a.synth_path) return fit_synth_cmd(&a, nfiles, files, &err);
    if (a.synth_law || isfinite(a.runs_n) || isfinite(a.noise) || isfinite(a.outliers))
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "--synth-law, --runs, --noise and --outliers "
                                  "only go with --synth OUT.jsonl"), &err);
    if (nfiles <= 0)
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "no run files: give one or more JSONL or CSV "
                                  "files, e.g. 'qatplan fit runs.jsonl -o law.json'"), &err);
    if (!a.out_path)
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "no output: add -o LAW.json (the law file to "
                                  "write)"), &err);
    int penalty_opts = pa->fp_law || pa->points || isfinite(pa->anchor_a) || pa->anchor_w != 1.0 || pa->source || pa->reproducible;
    pa->method = fo->method;
    if (fo->form == DATA_LAW_EFFICIENCY) {
        if (pa->points || isfinite(pa->anchor_a) || pa->anchor_w != 1.0 || pa->source || pa->reproducible)
            return cli_report(qp_fail(&err, QP_ERR_USAGE, "--points, --fraction-anchor, --anchor-weight, --source and "
                                      "--reproducible go with --form penalty"), &err);
        return cmd_fit_efficiency(files, nfiles, a.out_path, a.report_path, a.quiet, fo, a.qat_law, pa->fp_law);
    }
    if (a.qat_law) return cli_report(qp_fail(&err, QP_ERR_USAGE, "--qat-law goes with --form efficiency"), &err);
    if (fo->form == DATA_LAW_PENALTY)
        return cmd_fit_penalty(files, nfiles, a.out_path, a.report_path, a.quiet, fo, pa);
    if (penalty_opts)
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "--fp-law, --points, --fraction-anchor, --anchor-weight, "
                                  "--source and --reproducible go with --form penalty"), &err);
    return fit_files(files, nfiles, a.out_path, a.report_path, a.quiet, fo, pa->units);
}
