/* qatplan plan: parse the request, run the planner, print a table or JSON. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "plan.h"

static void plan_help(FILE *f)
{
    fprintf(f,
            "usage: qatplan plan [--params N] (--budget C | --tokens D | --tokens-per-param R) [options]\n\n"
            "Recommends the model size (when not given), the bit width, the QAT fraction, the FP/QAT\n"
            "token split, the schedule and the predicted loss. Modes (docs/planner.md):\n"
            "  --params N            plan for this N;\n"
            "  no --params, --budget C: search N per bit width (D = C / 6N) under the law and --memory;\n"
            "  no --params, --memory M with --tokens, --tokens-per-param or --fill-memory: N per bit\n"
            "                        width = the largest model whose weights fit M.\n\n"
            "  --params N            model size, all parameters incl. embeddings: 2.2B, 86M, 2.2e9\n"
            "  --budget C            training compute in FLOPs (1e22, 1e22FLOP), or GPU-hours\n"
            "                        (50000gpuh, 50Kgpuh; needs --peak-flops and --mfu)\n"
            "  --tokens D            training budget in tokens instead: 1.4T, 2.3B\n"
            "  --tokens-per-param R  D = R * N (e.g. 20); with --budget and no --params, N = sqrt(C/(6R))\n"
            "  --peak-flops X        GPU peak FLOP/s for a GPU-hour budget (989e12, 989TFLOPS)\n"
            "  --mfu X               model FLOP utilisation for a GPU-hour budget: 0.4 or 40%%\n"
            "  --flops-per-token X   training FLOPs per token (default 6*N; with --budget and --params)\n"
            "  --memory BYTES        weight-memory limit: 1.5GiB, 2GB, bytes when bare; rows whose memory\n"
            "                        (below) exceeds it are not recommended\n"
            "  --fill-memory         without --params: N = the largest model that fits --memory\n"
            "  --embed-params E      embedding + head parameters, stored at --embed-bits (default 0)\n"
            "  --vocab V             vocabulary size: embeddings V*d_model (x2 unless --tied)\n"
            "  --d-model D           hidden width (default 2.1*N^(1/3), the QuEST shapes' rule)\n"
            "  --tied                the head shares the embedding matrix\n"
            "  --embed-bits B        bits of embeddings and head (default 16)\n"
            "  --group-size G        weights per 16-bit scale (default: one scale per row)\n"
            "  --bits LIST           candidate QAT bit widths in 1..8, comma-separated, one decimal at\n"
            "                        most; 1.58 (or ternary) = ternary, log2(3) bits (default 1,2,3,4,6,8)\n"
            "  --batch-tokens N      tokens per optimizer step: whole batches, step numbers (default: none)\n"
            "  --decay-frac X        classic schedule: decay length as a fraction of each phase (default 0.2)\n"
            "  --law FILE|NAME       a law file from 'qatplan fit', or a built-in law by name (repeatable;\n"
            "                        each replaces the law of its role). Built-in: reference (the default\n"
            "                        QAT penalty over Epoch AI's Chinchilla law, nats/token, LLM scale;\n"
            "                        docs/reference-law.md), own (qatplan's law of byte-level models of\n"
            "                        7.5K-117K parameters, nats/byte; docs/own-law.md), chinchilla, fraction.\n"
            "                        A qat law is its own full-precision reference unless a chinchilla\n"
            "                        law is also given; laws of different loss units are refused\n"
            "  --no-qat-law          plan without a QAT law: fractions from the paper's closed form\n"
            "                        only, no ranking of bit widths\n"
            "  --method LIST         rank training methods (comma-separated): qat, efqat, e2eqp, blockap,\n"
            "                        efficientqat. The budget becomes FLOPs, 6N per FP token and each\n"
            "                        method's cost per QAT token; rows = method x bits; --memory holds\n"
            "                        each method's storage. A method needs a law fitted to its runs or an\n"
            "                        efficiency law ('qatplan fit --form efficiency --method M') given\n"
            "                        with --law, else its rows show costs only (docs/planner.md)\n"
            "  --unfrozen R          efqat: fraction of rows trained, 0..1 (default 0.05)\n"
            "  --row-size C          input width of a row for the per-row scale term of the storage\n"
            "                        (default 4096)\n"
            "  --blockap-share S     efficientqat: share of the QAT FLOPs spent on Block-AP (default 0.5)\n"
            "  --json                print JSON (schema qatplan-plan-v1, docs/cli.md)\n"
            "  -h, --help            this help\n");
}

/* One width: 1..8 with at most one decimal, or ternary ("1.58", "ternary"). */
static qp_status parse_one_bits(const char *t, double *out, qp_error *err)
{
    if (!strcmp(t, "1.58") || !strcmp(t, "1.585") || !strcmp(t, "ternary")) {
        *out = PLAN_TERNARY_BITS;
        return QP_OK;
    }
    qp_status st = qp_parse_real(t, "--bits entry", 1, 8, out, err);
    if (!st && fabs(*out * 10 - round(*out * 10)) > 1e-9)
        st = qp_fail(err, QP_ERR_INPUT, "--bits '%s' has more than one decimal: give e.g. 2.5, or 1.58 for ternary", t);
    return st;
}

static qp_status parse_bits(const char *s, plan_request *req, qp_error *err)
{
    req->n_bits = 0;
    size_t len = strlen(s);
    if (!len || s[0] == ',' || s[len - 1] == ',' || strstr(s, ",,"))
        return qp_fail(err, QP_ERR_INPUT, "--bits '%s' has an empty entry: give e.g. --bits 2,4", s);
    char *copy = strdup(s);
    if (!copy) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    qp_status st = QP_OK;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && !st; t = strtok_r(NULL, ",", &save)) {
        double b;
        if ((st = parse_one_bits(t, &b, err))) break;
        for (int i = 0; i < req->n_bits; i++)
            if (fabs(req->bits[i] - b) < 1e-9) st = qp_fail(err, QP_ERR_INPUT, "--bits lists %s twice", t);
        if (!st && req->n_bits == PLAN_MAX_BITS) st = qp_fail(err, QP_ERR_INPUT, "--bits lists more than %d widths", PLAN_MAX_BITS);
        if (!st) req->bits[req->n_bits++] = b;
    }
    free(copy);
    return st;
}

/* "0.4" or "40%". */
static qp_status parse_mfu(const char *s, double *out, qp_error *err)
{
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == '%') {
        char buf[64];
        snprintf(buf, sizeof buf, "%.*s", (int)(n - 1), s);
        qp_status st = qp_parse_real(buf, "--mfu", 1e-4, 100, out, err);
        *out /= 100;
        return st;
    }
    return qp_parse_real(s, "--mfu", 1e-6, 1, out, err);
}

enum { O_PARAMS = 256, O_BUDGET, O_TOKENS, O_PEAK, O_MFU, O_FPT, O_MEMORY, O_BITS, O_BATCH, O_DECAY, O_LAW,
       O_JSON, O_NO_QAT, O_TPP, O_FILL, O_EMBED, O_VOCAB, O_DMODEL, O_TIED, O_EBITS, O_GROUP, O_METHOD, O_UNFROZEN,
       O_ROWSIZE, O_BSHARE };

/* "qat,efqat,efficientqat": each method once. */
static qp_status parse_methods(const char *s, plan_request *req, qp_error *err)
{
    req->n_methods = 0;
    size_t len = strlen(s);
    if (!len || s[0] == ',' || s[len - 1] == ',' || strstr(s, ",,"))
        return qp_fail(err, QP_ERR_USAGE, "--method '%s' has an empty entry: give e.g. --method qat,efqat", s);
    char *copy = strdup(s);
    if (!copy) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    qp_status st = QP_OK;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && !st; t = strtok_r(NULL, ",", &save)) {
        plan_method m;
        if ((st = plan_method_parse(t, &m, err))) break;
        for (int i = 0; i < req->n_methods; i++)
            if (req->methods[i] == m) st = qp_fail(err, QP_ERR_USAGE, "--method lists %s twice", t);
        if (!st) req->methods[req->n_methods++] = m;
    }
    free(copy);
    return st;
}

typedef struct {
    int json, no_qat, is_gpuh;
    double budget;
} plan_cli;

static qp_status parse_option(int c, const char *arg, plan_request *req, plan_laws *laws, plan_cli *cl, qp_error *err)
{
    switch (c) {
    case O_PARAMS: return qp_parse_count(arg, "--params", &req->n_params, err);
    case O_BUDGET: return qp_parse_budget(arg, &cl->budget, &cl->is_gpuh, err);
    case O_TOKENS: return qp_parse_count(arg, "--tokens", &req->tokens, err);
    case O_TPP: return qp_parse_real(arg, "--tokens-per-param", 1e-3, 1e7, &req->tokens_per_param, err);
    case O_PEAK: return qp_parse_flops(arg, "--peak-flops", &req->peak_flops, err);
    case O_MFU: return parse_mfu(arg, &req->mfu, err);
    case O_FPT: return qp_parse_flops(arg, "--flops-per-token", &req->flops_per_token, err);
    case O_MEMORY: return qp_parse_bytes(arg, "--memory", &req->memory_bytes, err);
    case O_FILL: req->fill_memory = 1; return QP_OK;
    case O_EMBED:
        if (!strcmp(arg, "0")) return req->embed_params = 0, QP_OK;
        return qp_parse_count(arg, "--embed-params", &req->embed_params, err);
    case O_VOCAB: req->embed_params = NAN; return qp_parse_whole_count(arg, "--vocab", 1e8, &req->vocab, err);
    case O_DMODEL: return qp_parse_whole_count(arg, "--d-model", 1e7, &req->d_model, err);
    case O_TIED: req->tied = 1; return QP_OK;
    case O_EBITS: return qp_parse_real(arg, "--embed-bits", 1, 32, &req->embed_bits, err);
    case O_GROUP: return qp_parse_whole_count(arg, "--group-size", 1e9, &req->group_size, err);
    case O_BITS: return parse_bits(arg, req, err);
    case O_METHOD: return parse_methods(arg, req, err);
    case O_UNFROZEN: return qp_parse_real(arg, "--unfrozen", 0, 1, &req->unfrozen, err);
    case O_ROWSIZE: return qp_parse_whole_count(arg, "--row-size", 1e9, &req->row_size, err);
    case O_BSHARE: return qp_parse_real(arg, "--blockap-share", 0, 1, &req->blockap_share, err);
    case O_BATCH: return qp_parse_whole_count(arg, "--batch-tokens", 1e12, &req->batch_tokens, err);
    case O_DECAY: return qp_parse_real(arg, "--decay-frac", 1e-6, 0.999999, &req->decay_frac, err);
    case O_LAW: return plan_laws_add(laws, arg, err);
    case O_JSON: cl->json = 1; return QP_OK;
    case O_NO_QAT: cl->no_qat = 1; return QP_OK;
    default: return qp_fail(err, QP_ERR_USAGE, "unknown option: see 'qatplan plan --help'");
    }
}

/* The budget in FLOPs: given, or GPU-hours x peak x MFU (echoed by the plan). */
static qp_status resolve_budget(plan_request *req, const plan_cli *cl, qp_error *err)
{
    int have_gpu = isfinite(req->peak_flops) || isfinite(req->mfu);
    if (!cl->is_gpuh) {
        if (have_gpu)
            return qp_fail(err, QP_ERR_USAGE, "--peak-flops and --mfu apply to a GPU-hour budget (--budget 50000gpuh) only");
        req->flops = cl->budget;
        return QP_OK;
    }
    if (!isfinite(req->peak_flops) || !isfinite(req->mfu))
        return qp_fail(err, QP_ERR_USAGE,
                       "a GPU-hour budget needs --peak-flops (e.g. 989TFLOPS for an H100's dense bf16) and --mfu (e.g. 40%%)");
    req->gpu_hours = cl->budget;
    req->flops = cl->budget * 3600.0 * req->peak_flops * req->mfu;
    if (!isfinite(req->flops)) return qp_fail(err, QP_ERR_INPUT, "the GPU-hour budget overflows: check its value");
    return QP_OK;
}

int cmd_plan(int argc, char **argv)
{
    static const struct option opts[] = {
        {"params", required_argument, 0, O_PARAMS},       {"budget", required_argument, 0, O_BUDGET},
        {"tokens", required_argument, 0, O_TOKENS},       {"peak-flops", required_argument, 0, O_PEAK},
        {"mfu", required_argument, 0, O_MFU},          {"flops-per-token", required_argument, 0, O_FPT},
        {"memory", required_argument, 0, O_MEMORY},       {"bits", required_argument, 0, O_BITS},
        {"batch-tokens", required_argument, 0, O_BATCH}, {"decay-frac", required_argument, 0, O_DECAY},
        {"law", required_argument, 0, O_LAW},          {"json", no_argument, 0, O_JSON},
        {"no-qat-law", no_argument, 0, O_NO_QAT},         {"tokens-per-param", required_argument, 0, O_TPP},
        {"fill-memory", no_argument, 0, O_FILL},        {"embed-params", required_argument, 0, O_EMBED},
        {"vocab", required_argument, 0, O_VOCAB},        {"d-model", required_argument, 0, O_DMODEL},
        {"tied", no_argument, 0, O_TIED},               {"embed-bits", required_argument, 0, O_EBITS},
        {"group-size", required_argument, 0, O_GROUP},   {"help", no_argument, 0, 'h'},
        {"method", required_argument, 0, O_METHOD},      {"unfrozen", required_argument, 0, O_UNFROZEN},
        {"row-size", required_argument, 0, O_ROWSIZE},   {"blockap-share", required_argument, 0, O_BSHARE},
        {0, 0, 0, 0},
    };
    plan_request req;
    plan_request_init(&req);
    plan_laws laws;
    qp_error err = {0};
    qp_status st = plan_laws_builtin(&laws, &err);
    plan_cli cl = {0, 0, 0, NAN};
    optind = 1;
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c == 'h') {
            plan_help(stdout);
            plan_laws_free(&laws);
            return 0;
        } else if (c == ':') {
            st = qp_fail(&err, QP_ERR_USAGE, "option '%s' needs a value: see 'qatplan plan --help'", argv[optind - 1]);
        } else if (c == '?') {
            st = qp_fail(&err, QP_ERR_USAGE, "unknown option '%s': see 'qatplan plan --help'", argv[optind - 1]);
        } else {
            st = parse_option(c, optarg, &req, &laws, &cl, &err);
        }
    }
    if (!st && optind < argc)
        st = qp_fail(&err, QP_ERR_USAGE, "unexpected argument '%s': options take the form --name VALUE", argv[optind]);
    if (!st && isfinite(cl.budget) && isfinite(req.tokens))
        st = qp_fail(&err, QP_ERR_USAGE, "give either --budget or --tokens, not both");
    if (!st && !isfinite(cl.budget) && !isfinite(req.tokens) && !isfinite(req.tokens_per_param))
        st = qp_fail(&err, QP_ERR_USAGE, "no budget: give --budget FLOPs (e.g. 1e22), --tokens (e.g. 1.4T) or "
                                         "--tokens-per-param (e.g. 20)");
    if (!st && isfinite(req.embed_params) && isfinite(req.n_params) && req.embed_params >= req.n_params)
        st = qp_fail(&err, QP_ERR_INPUT, "--embed-params must be smaller than --params (N counts all parameters)");
    if (!st && isfinite(cl.budget)) st = resolve_budget(&req, &cl, &err);
    else if (!st && (isfinite(req.peak_flops) || isfinite(req.mfu)))
        st = qp_fail(&err, QP_ERR_USAGE, "--peak-flops and --mfu apply to a GPU-hour budget (--budget 50000gpuh) only");
    if (!st && cl.no_qat) {
        const char *given = laws.has_qat ? laws.qat_name : laws.has_penalty ? laws.penalty_name : "";
        if (given[0] && strcmp(given, "built-in reference"))
            st = qp_fail(&err, QP_ERR_USAGE, "--no-qat-law contradicts the QAT law %s given with --law: drop one", given);
        else plan_laws_drop_qat(&laws);
    }
    plan_result *res = st ? NULL : malloc(sizeof *res);
    if (!st && !res) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
    if (!st) st = plan_run(&req, &laws, res, &err);
    if (!st && cl.json) {
        char *t = plan_result_to_json(res, &laws, &err);
        if (!t) st = err.status ? err.status : QP_ERR_NOMEM;
        else printf("%s\n", t);
        free(t);
    } else if (!st) {
        plan_print_table(stdout, res, &laws);
    }
    free(res);
    plan_laws_free(&laws);
    return cli_report(st, &err);
}
