/* qatplan plot: render the law and the runs with gnuplot. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "plan.h" /* PLAN_MAX_BITS */
#include "plot.h"
#include "sweep.h"

static void plot_help(FILE *f)
{
    fprintf(f,
            "usage: qatplan plot KIND -o PLOT.png|PLOT.svg [options]\n\n"
            "Renders with gnuplot (Debian package gnuplot-nox); the output's extension picks PNG or SVG.\n"
            "KIND:\n"
            "  loss-fraction     loss against QAT fraction per bit width for one (N, D_total) group:\n"
            "                    observed runs and the qat law's curve and optimum\n"
            "  optimal-fraction  optimal QAT fraction against S_total: the paper's exp(-a/ln S), a fitted\n"
            "                    fraction law, the qat law's optimum per bit width, best observed fractions\n"
            "  residuals         ln(observed) - ln(predicted) against N, by bit width\n\n"
            "  -o, --output FILE   image to write (.png or .svg); required\n"
            "  --runs FILE         run records, JSONL or CSV (repeatable); unreadable JSONL lines are skipped\n"
            "  --law FILE          law file (repeatable): qat, fraction or chinchilla form\n"
            "  --params N          loss-fraction: the group's N (all parameters, e.g. 1.2M; default: the group\n"
            "                      with the most runs); optimal-fraction: N of the law's curves (default: the\n"
            "                      geometric mean of the runs' N)\n"
            "  --tokens D          loss-fraction: the group's D_total in tokens (e.g. 40M)\n"
            "  --bits LIST         bit widths to draw, e.g. 2,4 (default: those in the runs)\n"
            "  --size WxH          image size in pixels (default 960x640)\n"
            "  --title TEXT        title (default: names the plot and its data)\n"
            "  --timeout SECONDS   stop gnuplot after this long (default 60)\n"
            "  -h, --help          this help\n");
}

/* JSONL is read leniently, as a sweep reads its own results (a torn last line of a sweep
 * still running is skipped with a warning); unlike a sweep, a missing file is an error. */
static qp_status read_runs(const char *path, data_run_list *all, qp_error *err)
{
    size_t n = strlen(path);
    if (n > 4 && !strcasecmp(path + n - 4, ".csv")) return data_runs_read(path, all, err);
    char *local = NULL;
    qp_status st = data_open_input(path, NULL, &local, err); /* http(s): downloaded to the cache */
    if (st) return st;
    if (access(local, R_OK) != 0) {
        st = qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        free(local);
        return st;
    }
    sweep_results res;
    st = sweep_results_read(local, &res, err);
    free(local);
    if (st) return st;
    if (res.n_bad_lines)
        fprintf(stderr, "qatplan: warning: %zu unreadable line(s) in %s skipped; first: %s\n", res.n_bad_lines, path,
                res.first_bad_msg);
    for (size_t i = 0; !st && i < res.runs.n; i++) st = data_run_list_push(all, &res.runs.runs[i], err);
    sweep_results_free(&res);
    return st;
}

/* The plot is a known one and every law given is one it draws: a law the plot cannot use is a
 * mistake worth saying, not ignoring. */
static qp_status plot_laws_used(const char *kind, const int *have, qp_error *err)
{
    if (strcmp(kind, "loss-fraction") && strcmp(kind, "optimal-fraction") && strcmp(kind, "residuals"))
        return qp_fail(err, QP_ERR_USAGE, "unknown plot '%s': use loss-fraction, optimal-fraction or residuals", kind);
    int uses[DATA_LAW_FORM_COUNT_] = {0};
    uses[DATA_LAW_QAT] = 1;
    uses[DATA_LAW_PENALTY] = strcmp(kind, "residuals") != 0; /* drawn over Epoch's Chinchilla law */
    if (!strcmp(kind, "optimal-fraction")) uses[DATA_LAW_FRACTION] = 1;
    if (!strcmp(kind, "residuals")) uses[DATA_LAW_CHINCHILLA] = 1;
    for (int i = 0; i < DATA_LAW_FORM_COUNT_; i++)
        if (have[i] && !uses[i])
            return qp_fail(err, QP_ERR_USAGE, "the %s plot does not use a %s law: give a qat or penalty law (qatplan fit)",
                           kind, data_law_form_name((data_law_form)i));
    return QP_OK;
}

int cmd_plot(int argc, char **argv)
{
    enum { O_RUNS = 256, O_LAW, O_PARAMS, O_TOKENS, O_BITS, O_SIZE, O_TITLE, O_TIMEOUT };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"runs", required_argument, 0, O_RUNS},
        {"law", required_argument, 0, O_LAW},  {"params", required_argument, 0, O_PARAMS},
        {"tokens", required_argument, 0, O_TOKENS}, {"bits", required_argument, 0, O_BITS},
        {"size", required_argument, 0, O_SIZE}, {"title", required_argument, 0, O_TITLE},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    plot_opts po;
    plot_opts_init(&po);
    data_run_list runs;
    data_run_list_init(&runs);
    data_law laws[DATA_LAW_FORM_COUNT_];
    int have[DATA_LAW_FORM_COUNT_] = {0};
    int nruns_files = 0, bits[PLAN_MAX_BITS], nb = 0, used = 0;
    char sep = 0;
    double n_params = NAN, tokens = NAN;
    qp_error err = {0};
    qp_status st = QP_OK;
    qp_named_path *in = calloc((size_t)argc, sizeof *in); /* --runs and --law, in order */
    size_t n_in = 0;
    if (!in) return cli_report(qp_fail(&err, QP_ERR_NOMEM, "out of memory"), &err);
    optind = 1;
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': po.output = optarg; break;
        case O_RUNS: in[n_in++] = (qp_named_path){optarg, "--runs"}; nruns_files++; break;
        case O_LAW: in[n_in++] = (qp_named_path){optarg, "--law"}; break;
        case O_PARAMS: st = qp_parse_count(optarg, "--params", &n_params, &err); break;
        case O_TOKENS: st = qp_parse_count(optarg, "--tokens", &tokens, &err); break;
        case O_BITS: {
            long b[PLAN_MAX_BITS];
            st = qp_parse_long_list(optarg, "--bits", 1, 32, b, PLAN_MAX_BITS, &nb, &err);
            for (int i = 0; !st && i < nb; i++) bits[i] = (int)b[i];
            break;
        }
        case O_SIZE:
            if (sscanf(optarg, "%d%c%d%n", &po.width, &sep, &po.height, &used) != 3 || sep != 'x' || optarg[used])
                st = qp_fail(&err, QP_ERR_USAGE, "--size %s: give WIDTHxHEIGHT in pixels, e.g. 960x640", optarg);
            break;
        case O_TITLE: po.title = optarg; break;
        case O_TIMEOUT: st = qp_parse_real(optarg, "--timeout (seconds)", 0.1, 3600, &po.timeout_s, &err); break;
        case 'h':
            plot_help(stdout);
            free(in);
            data_run_list_free(&runs);
            for (int i = 0; i < DATA_LAW_FORM_COUNT_; i++)
                if (have[i]) data_law_free(&laws[i]);
            return 0;
        case ':': st = qp_fail(&err, QP_ERR_USAGE, "option '%s' needs a value: see 'qatplan plot --help'", argv[optind - 1]); break;
        default: st = qp_fail(&err, QP_ERR_USAGE, "unknown option '%s': see 'qatplan plot --help'", argv[optind - 1]); break;
        }
    }
    /* the image must be no input (checked before anything is read), then the inputs in order */
    const qp_named_path out[] = {{po.output, "-o"}};
    if (!st) st = qp_refuse_output_is_input(out, 1, in, n_in, &err);
    if (!st && po.output) st = qp_check_writable(po.output, "-o", 0, &err);
    for (size_t i = 0; !st && i < n_in; i++) {
        if (!strcmp(in[i].what, "--runs")) {
            st = read_runs(in[i].path, &runs, &err);
            continue;
        }
        data_law l;
        if ((st = law_read(in[i].path, &l, &err))) break; /* a built-in law by name, or a law file */
        if (have[l.form]) data_law_free(&laws[l.form]);
        laws[l.form] = l;
        have[l.form] = 1;
    }
    free(in);
    const char *kind = NULL;
    if (!st && optind >= argc)
        st = qp_fail(&err, QP_ERR_USAGE, "which plot? give loss-fraction, optimal-fraction or residuals (see 'qatplan plot --help')");
    if (!st && optind + 1 < argc) st = qp_fail(&err, QP_ERR_USAGE, "unexpected argument '%s'", argv[optind + 1]);
    if (!st) kind = argv[optind];
    if (!st && !po.output) st = qp_fail(&err, QP_ERR_USAGE, "no output: give -o PLOT.png or PLOT.svg");
    const data_run_list *rl = nruns_files ? &runs : NULL;
    /* the QAT law: a qat law, or a penalty law (drawn over Epoch's Chinchilla law) */
    const data_law *qat_law = have[DATA_LAW_QAT] ? &laws[DATA_LAW_QAT] : have[DATA_LAW_PENALTY] ? &laws[DATA_LAW_PENALTY] : NULL;
    if (!st) st = plot_laws_used(kind, have, &err);
    if (!st) {
        if (!strcmp(kind, "loss-fraction"))
            st = plot_loss_fraction(qat_law, rl, n_params, tokens, bits, nb, &po, &err);
        else if (!strcmp(kind, "optimal-fraction"))
            st = plot_optimal_fraction(qat_law,
                                       have[DATA_LAW_FRACTION] ? &laws[DATA_LAW_FRACTION] : NULL, rl, n_params, bits,
                                       nb, &po, &err);
        else
            st = plot_residuals(have[DATA_LAW_QAT] ? &laws[DATA_LAW_QAT] : have[DATA_LAW_CHINCHILLA] ? &laws[DATA_LAW_CHINCHILLA] : NULL,
                                rl, &po, &err);
    }
    if (!st) printf("wrote %s\n", po.output);
    data_run_list_free(&runs);
    for (int i = 0; i < DATA_LAW_FORM_COUNT_; i++)
        if (have[i]) data_law_free(&laws[i]);
    return cli_report(st, &err);
}
