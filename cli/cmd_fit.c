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
            "                        law, 16 coefficients, all bit widths; default) or fraction (the constant\n"
            "                        a of f_hat = exp(-a/ln S_total))\n"
            "  --bootstrap K         refit K resamples of the runs; the law carries 95%% intervals and the\n"
            "                        samples (default 0: none)\n"
            "  --huber-delta X       Huber threshold on log-loss residuals (default 1e-3)\n"
            "  --seed S              seed of the bootstrap and the Latin hypercube (default 1)\n"
            "  --starts N            starts: default the full 4,500-start grid (chinchilla, and the\n"
            "                        chinchilla stage of qat) and 128 Latin hypercube starts (qat)\n"
            "  --threads T           OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
            "  --report FILE         also write the fit report (residuals by size and bit width) to FILE\n"
            "  -q, --quiet           do not print the report on stdout\n\n"
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

int cmd_fit(int argc, char **argv)
{
    enum { O_FORM = 256, O_BOOT, O_HUBER, O_SEED, O_STARTS, O_THREADS, O_REPORT, O_SYNTH,
           O_SYNTH_LAW, O_RUNS, O_NOISE, O_OUTLIERS };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},      {"form", required_argument, 0, O_FORM},
        {"bootstrap", required_argument, 0, O_BOOT}, {"huber-delta", required_argument, 0, O_HUBER},
        {"seed", required_argument, 0, O_SEED},     {"starts", required_argument, 0, O_STARTS},
        {"threads", required_argument, 0, O_THREADS}, {"report", required_argument, 0, O_REPORT},
        {"quiet", no_argument, 0, 'q'},             {"synth", required_argument, 0, O_SYNTH},
        {"synth-law", required_argument, 0, O_SYNTH_LAW}, {"runs", required_argument, 0, O_RUNS},
        {"noise", required_argument, 0, O_NOISE},   {"outliers", required_argument, 0, O_OUTLIERS},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    fit_options fo;
    fit_options_init(&fo);
    qp_error err = {0};
    qp_status st = QP_OK;
    const char *out_path = NULL, *report_path = NULL, *synth_path = NULL, *synth_law = NULL;
    int quiet = 0, form_given = 0;
    long v;
    double x, runs_n = NAN, noise = NAN, outliers = NAN;
    optind = 1;
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case O_FORM:
            st = data_law_form_parse(optarg, &fo.form, &err);
            form_given = 1;
            break;
        case O_BOOT:
            if (!(st = qp_parse_long(optarg, "--bootstrap", 0, 100000, &v, &err))) fo.bootstrap = (int)v;
            break;
        case O_HUBER: st = qp_parse_real(optarg, "--huber-delta", 1e-12, 10, &fo.huber_delta, &err); break;
        case O_SEED:
            if (!(st = qp_parse_long(optarg, "--seed", 0, 2147483647L, &v, &err))) fo.seed = (uint64_t)v;
            break;
        case O_STARTS:
            if (!(st = qp_parse_long(optarg, "--starts", 1, 1000000, &v, &err))) fo.n_starts = (int)v;
            break;
        case O_THREADS:
            if (!(st = qp_parse_long(optarg, "--threads", 1, 1024, &v, &err))) fo.threads = (int)v;
            break;
        case O_REPORT: report_path = optarg; break;
        case 'q': quiet = 1; break;
        case O_SYNTH: synth_path = optarg; break;
        case O_SYNTH_LAW: synth_law = optarg; break;
        case O_RUNS: st = qp_parse_whole_count(optarg, "--runs", 1e7, &runs_n, &err); break;
        case O_NOISE: st = qp_parse_real(optarg, "--noise", 0, 1, &noise, &err); break;
        case O_OUTLIERS: st = qp_parse_real(optarg, "--outliers", 0, 1, &outliers, &err); break;
        case 'h': fit_help(stdout); return 0;
        case ':':
            st = qp_fail(&err, QP_ERR_USAGE, "option %s needs a value: see 'qatplan fit --help'", argv[optind - 1]);
            break;
        default:
            st = qp_fail(&err, QP_ERR_USAGE, "unknown option %s: see 'qatplan fit --help'", argv[optind - 1]);
            break;
        }
    }
    (void)x;
    if (st) return cli_report(st, &err);

    if (synth_path) {
        if (!form_given) fo.form = DATA_LAW_QAT;
        if (fo.form == DATA_LAW_FRACTION)
            return cli_report(qp_fail(&err, QP_ERR_USAGE, "--synth draws runs from a chinchilla or qat "
                                      "law: use --form chinchilla or --form qat"), &err);
        if (optind < argc)
            return cli_report(qp_fail(&err, QP_ERR_USAGE, "--synth writes runs and reads none: drop '%s'",
                                      argv[optind]), &err);
        fit_synth_options so;
        fit_synth_options_init(&so, fo.form);
        so.seed = fo.seed;
        if (isfinite(runs_n)) so.n_runs = (int)runs_n;
        if (isfinite(noise)) so.noise = noise;
        if (isfinite(outliers)) so.outlier_frac = outliers;
        const qp_named_path sin[] = {{synth_law, "--synth-law"}}, sout[] = {{synth_path, "--synth"}};
        if ((st = qp_refuse_output_is_input(sout, 1, sin, 1, &err))) return cli_report(st, &err);
        return cli_report(write_synth(synth_path, fo.form, synth_law, &so, &err), &err);
    }
    if (synth_law || isfinite(runs_n) || isfinite(noise) || isfinite(outliers))
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "--synth-law, --runs, --noise and --outliers "
                                  "only go with --synth OUT.jsonl"), &err);
    if (optind >= argc)
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "no run files: give one or more JSONL or CSV "
                                  "files, e.g. 'qatplan fit runs.jsonl -o law.json'"), &err);
    if (!out_path)
        return cli_report(qp_fail(&err, QP_ERR_USAGE, "no output: add -o LAW.json (the law file to "
                                  "write)"), &err);

    if ((st = check_paths(argv + optind, argc - optind, out_path, report_path, &err))) return cli_report(st, &err);
    data_run_list runs;
    data_run_list_init(&runs);
    /* data_runs_read accepts files and http(s) URLs */
    for (int i = optind; i < argc && !st; i++) st = data_runs_read(argv[i], &runs, &err);
    char *src = st ? NULL : join_sources(argv + optind, argc - optind);
    if (!st && !src) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
    data_law law;
    data_law_init(&law, fo.form);
    fit_report rep;
    memset(&rep, 0, sizeof rep);
    if (!st) {
        snprintf(fo.source, sizeof fo.source, "%s", src);
        st = fit_runs(&runs, &fo, &law, &rep, &err);
    }
    if (!st) st = data_law_write(out_path, &law, &err);
    if (!st) {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        if (mem) {
            fit_report_print(mem, &rep, &law);
            fprintf(mem, "wrote %s\n", out_path);
            fclose(mem);
            if (!quiet) fputs(text, stdout);
            if (report_path) st = qp_write_file_atomic(report_path, text, len, &err);
        } else {
            st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        }
        free(text);
    } else if (rep.n_input > 0 && st == QP_ERR_UNIDENTIFIED) {
        fprintf(stderr, "qatplan: %d runs read: %d used, %d bad, %d diverged, %d failed, %d duplicate\n",
                rep.n_input, rep.n_used, rep.n_bad, rep.n_diverged, rep.n_failed, rep.n_duplicate);
    }
    free(src);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
    return cli_report(st, &err);
}
