/* qatplan law show [FILE|NAME...]: print laws with their coefficients and provenance.
 * qatplan law eval: the loss a law predicts for one configuration. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data.h"
#include "law.h"
#include "plan.h"

static void law_help(FILE *f)
{
    fprintf(f, "usage: qatplan law show [FILE|NAME...] [--json]\n"
               "       qatplan law eval --params N --fp-tokens D_FP --qat-tokens D_QAT --bits B\n"
               "                        [--law FILE|NAME]... [--json]\n\n"
               "show: without arguments prints the built-in laws (compiled in): the reference QAT penalty\n"
               "(the default, docs/reference-law.md), Epoch AI's Chinchilla law, the paper's fraction\n"
               "constant and the own-sweep law (docs/own-law.md). With FILE (a law file) or NAME (reference,\n"
               "own, chinchilla, fraction), prints that law: form, every coefficient (with bootstrap\n"
               "intervals when present), loss units and provenance.\n\n"
               "eval: the full-precision loss at N and D_FP + D_QAT tokens, the QAT loss of the model\n"
               "quantized at B bits after D_FP full-precision and D_QAT QAT tokens, and the penalty, with the\n"
               "same extrapolation warnings as a plan and the physical checks. N counts all parameters,\n"
               "embeddings included. --bits 16 evaluates full precision. Laws as in 'qatplan plan --law'.\n"
               "JSON keys: loss_fp, loss, penalty, loss_units, valid, warnings.\n");
}

/* A token count that may be zero (QAT from scratch has no full-precision tokens). */
static qp_status parse_tokens(const char *s, const char *what, double *out, qp_error *err)
{
    if (!strcmp(s, "0")) {
        *out = 0;
        return QP_OK;
    }
    return qp_parse_count(s, what, out, err);
}

static qp_status show_one(const data_law *law, const char *title, int json, qp_error *err)
{
    if (!json) {
        plan_print_law(stdout, law, title);
        return QP_OK;
    }
    char *t = data_law_to_json(law, err);
    if (!t) return err->status ? err->status : QP_ERR_NOMEM;
    printf("%s\n", t);
    free(t);
    return QP_OK;
}

static int law_show(int argc, char **argv)
{
    int json = 0, nargs = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            law_help(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "qatplan: unknown option '%s' for 'law show': see 'qatplan law --help'\n", argv[i]);
            return 2;
        } else nargs++;
    }
    static const char *const builtins[] = {"reference", "chinchilla", "fraction", "own"};
    static const char *const titles[] = {"built-in reference QAT penalty (the default)",
                                         "built-in full-precision law (Epoch AI's Chinchilla refit)",
                                         "built-in QAT-fraction law", "built-in own-sweep QAT law (--law own)"};
    qp_error err = {0};
    qp_status st = QP_OK;
    int n = nargs ? argc : 4;
    for (int i = nargs ? 2 : 0; i < n && !st; i++) {
        const char *arg = nargs ? argv[i] : builtins[i];
        if (nargs && arg[0] == '-') continue;
        data_law law;
        if ((st = law_read(arg, &law, &err))) break;
        st = show_one(&law, nargs ? arg : titles[i], json, &err);
        if (!json) printf("\n");
        data_law_free(&law);
    }
    if (!st && !nargs && !json)
        printf("The reference penalty composes with the Chinchilla law (nats/token). The own-sweep law was\n"
               "fitted to byte-level models of 7.5K-117K parameters (nats/byte); use it only there.\n");
    return cli_report(st, &err);
}

static void print_eval(const plan_eval_result *r, const char *fp_name, const char *pen_name)
{
    char a[32], b[32], c[32];
    const char *u = law_units_label(r->units);
    printf("N = %s parameters (all), D_fp = %s, D_qat = %s tokens, %g bits\n",
           qp_format_count(r->x.n_params, a, sizeof a), qp_format_count(r->x.d_fp, b, sizeof b),
           qp_format_count(r->x.d_qat, c, sizeof c), r->x.bits);
    printf("laws: full precision %s; QAT %s\n", fp_name, pen_name);
    printf("full-precision loss at D = D_fp + D_qat: %.4f %s\n", r->loss_fp, u);
    printf("QAT penalty:                              %.4f %s\n", r->penalty, u);
    printf("loss of the quantized model:              %.4f %s\n", r->loss, u);
    if (!r->valid) printf("INVALID: %s\n", r->invalid_reason);
    for (int i = 0; i < r->n_warnings; i++) printf("warning: %s\n", r->warnings[i]);
}

static char *eval_json(const plan_eval_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "schema", "qatplan-law-eval-v1");
    cJSON_AddNumberToObject(o, "n_params", r->x.n_params);
    cJSON_AddNumberToObject(o, "fp_tokens", r->x.d_fp);
    cJSON_AddNumberToObject(o, "qat_tokens", r->x.d_qat);
    cJSON_AddNumberToObject(o, "bits", r->x.bits);
    cJSON_AddStringToObject(o, "loss_units", data_loss_units_name(r->units));
    cJSON_AddNumberToObject(o, "loss_fp", r->loss_fp); /* finite: plan_eval refuses non-finite laws as invalid */
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "penalty", r->penalty);
    cJSON_AddBoolToObject(o, "valid", r->valid);
    if (!r->valid) cJSON_AddStringToObject(o, "invalid_reason", r->invalid_reason);
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    for (int i = 0; i < r->n_warnings; i++) cJSON_AddItemToArray(w, cJSON_CreateString(r->warnings[i]));
    char *t = cJSON_Print(o);
    cJSON_Delete(o);
    return t;
}

static int law_eval(int argc, char **argv)
{
    enum { O_PARAMS = 256, O_FP, O_QAT, O_BITS, O_LAW, O_JSON };
    static const struct option opts[] = {
        {"params", required_argument, 0, O_PARAMS}, {"fp-tokens", required_argument, 0, O_FP},
        {"qat-tokens", required_argument, 0, O_QAT}, {"bits", required_argument, 0, O_BITS},
        {"law", required_argument, 0, O_LAW},       {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    plan_laws laws;
    qp_error err = {0};
    qp_status st = plan_laws_builtin(&laws, &err);
    law_point x = {NAN, NAN, NAN, 0};
    long bits = 0;
    int json = 0;
    optind = 1;
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc - 1, argv + 1, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_PARAMS: st = qp_parse_count(optarg, "--params", &x.n_params, &err); break;
        case O_FP: st = parse_tokens(optarg, "--fp-tokens", &x.d_fp, &err); break;
        case O_QAT: st = parse_tokens(optarg, "--qat-tokens", &x.d_qat, &err); break;
        case O_BITS: st = qp_parse_long(optarg, "--bits", 1, 32, &bits, &err); break;
        case O_LAW: st = plan_laws_add(&laws, optarg, &err); break;
        case O_JSON: json = 1; break;
        case 'h':
            law_help(stdout);
            plan_laws_free(&laws);
            return 0;
        case ':': st = qp_fail(&err, QP_ERR_USAGE, "option '%s' needs a value: see 'qatplan law --help'", argv[optind]); break;
        default: st = qp_fail(&err, QP_ERR_USAGE, "unknown option '%s': see 'qatplan law --help'", argv[optind]); break;
        }
    }
    if (!st && optind < argc - 1)
        st = qp_fail(&err, QP_ERR_USAGE, "unexpected argument '%s': options take the form --name VALUE", argv[optind + 1]);
    if (!st && (!isfinite(x.n_params) || !isfinite(x.d_fp) || !isfinite(x.d_qat) || !bits))
        st = qp_fail(&err, QP_ERR_USAGE, "law eval needs --params N, --fp-tokens D_FP, --qat-tokens D_QAT and --bits B "
                                         "(e.g. --params 2.2B --fp-tokens 850B --qat-tokens 550B --bits 4)");
    x.bits = bits >= LAW_FP_BITS ? LAW_FP_BITS : (int)bits;
    plan_eval_result r;
    if (!st) st = plan_eval(&laws, &x, &r, &err);
    if (!st && json) {
        char *t = eval_json(&r);
        if (!t) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        else printf("%s\n", t);
        free(t);
    } else if (!st) {
        const char *fp = laws.has_qat && !laws.fp_given ? laws.qat_name : laws.fp_name;
        const char *pen = laws.has_qat ? laws.qat_name : laws.has_penalty ? laws.penalty_name : "none";
        print_eval(&r, fp, pen);
    }
    plan_laws_free(&laws);
    return cli_report(st, &err);
}

int cmd_law(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        law_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "show")) return law_show(argc, argv);
    if (!strcmp(argv[1], "eval")) return law_eval(argc, argv);
    fprintf(stderr, "qatplan: unknown law subcommand '%s': use 'qatplan law show' or 'qatplan law eval'\n", argv[1]);
    return 2;
}
