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
            "usage: qatplan plan --params N (--budget C | --tokens D) [options]\n"
            "       qatplan plan --memory BYTES (--budget C | --tokens D) [options]\n\n"
            "Recommends the QAT fraction, bit width, FP/QAT token split, schedule and predicted loss.\n\n"
            "  --params N            model size, all parameters incl. embeddings: 2.2B, 86M, 2.2e9\n"
            "  --budget C            training compute in FLOPs (1e22, 1e22FLOP), or GPU-hours\n"
            "                        (50000gpuh, needs --peak-flops and --mfu)\n"
            "  --tokens D            training budget in tokens instead: 1.4T, 2.3B\n"
            "  --peak-flops X        GPU peak FLOP/s for a GPU-hour budget (e.g. 989e12)\n"
            "  --mfu X               model FLOP utilisation in (0, 1] for a GPU-hour budget\n"
            "  --flops-per-token X   training FLOPs per token (default 6*N)\n"
            "  --memory BYTES        weight-memory limit: 1.5GiB, 2GB, bytes when bare. With --params,\n"
            "                        only bit widths whose N*bits/8 fit are recommended; without it,\n"
            "                        N = memory*8/bits per bit width\n"
            "  --bits LIST           candidate QAT bit widths, comma-separated (default 1,2,3,4,6,8)\n"
            "  --batch-tokens N      tokens per optimizer step, to print step numbers (default: none)\n"
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
            "  --json                print JSON (schema qatplan-plan-v1, docs/cli.md)\n"
            "  -h, --help            this help\n");
}

static qp_status parse_bits(const char *s, plan_request *req, qp_error *err)
{
    long b[PLAN_MAX_BITS];
    int n = 0;
    qp_status st = qp_parse_long_list(s, "--bits", 1, 8, b, PLAN_MAX_BITS, &n, err);
    req->n_bits = 0;
    for (int i = 0; !st && i < n; i++) req->bits[req->n_bits++] = (int)b[i];
    return st;
}

int cmd_plan(int argc, char **argv)
{
    enum { O_PARAMS = 256, O_BUDGET, O_TOKENS, O_PEAK, O_MFU, O_FPT, O_MEMORY, O_BITS, O_BATCH, O_DECAY, O_LAW, O_JSON, O_NO_QAT };
    static const struct option opts[] = {
        {"params", required_argument, 0, O_PARAMS}, {"budget", required_argument, 0, O_BUDGET},
        {"tokens", required_argument, 0, O_TOKENS}, {"peak-flops", required_argument, 0, O_PEAK},
        {"mfu", required_argument, 0, O_MFU},       {"flops-per-token", required_argument, 0, O_FPT},
        {"memory", required_argument, 0, O_MEMORY}, {"bits", required_argument, 0, O_BITS},
        {"batch-tokens", required_argument, 0, O_BATCH}, {"decay-frac", required_argument, 0, O_DECAY},
        {"law", required_argument, 0, O_LAW},       {"json", no_argument, 0, O_JSON},
        {"no-qat-law", no_argument, 0, O_NO_QAT},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    plan_request req;
    plan_request_init(&req);
    plan_laws laws;
    qp_error err = {0};
    qp_status st = plan_laws_builtin(&laws, &err);
    int no_qat = 0;
    int json = 0, is_gpuh = 0;
    double budget = NAN, peak = NAN, mfu = NAN;
    optind = 1;
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_PARAMS: st = qp_parse_count(optarg, "--params", &req.n_params, &err); break;
        case O_BUDGET: st = qp_parse_budget(optarg, &budget, &is_gpuh, &err); break;
        case O_TOKENS: st = qp_parse_count(optarg, "--tokens", &req.tokens, &err); break;
        case O_PEAK: st = qp_parse_flops(optarg, "--peak-flops", &peak, &err); break;
        case O_MFU: st = qp_parse_real(optarg, "--mfu", 1e-6, 1, &mfu, &err); break;
        case O_FPT: st = qp_parse_flops(optarg, "--flops-per-token", &req.flops_per_token, &err); break;
        case O_MEMORY: st = qp_parse_bytes(optarg, "--memory", &req.memory_bytes, &err); break;
        case O_BITS: st = parse_bits(optarg, &req, &err); break;
        case O_BATCH: st = qp_parse_whole_count(optarg, "--batch-tokens", 1e12, &req.batch_tokens, &err); break;
        case O_DECAY: st = qp_parse_real(optarg, "--decay-frac", 1e-6, 0.999999, &req.decay_frac, &err); break;
        case O_LAW: st = plan_laws_add(&laws, optarg, &err); break;
        case O_JSON: json = 1; break;
        case O_NO_QAT: no_qat = 1; break;
        case 'h':
            plan_help(stdout);
            plan_laws_free(&laws);
            return 0;
        case ':':
            st = qp_fail(&err, QP_ERR_USAGE, "option '%s' needs a value: see 'qatplan plan --help'", argv[optind - 1]);
            break;
        default:
            st = qp_fail(&err, QP_ERR_USAGE, "unknown option '%s': see 'qatplan plan --help'", argv[optind - 1]);
            break;
        }
    }
    if (!st && optind < argc)
        st = qp_fail(&err, QP_ERR_USAGE, "unexpected argument '%s': options take the form --name VALUE", argv[optind]);
    if (!st && isfinite(budget) && isfinite(req.tokens))
        st = qp_fail(&err, QP_ERR_USAGE, "give either --budget or --tokens, not both");
    if (!st && !isfinite(budget) && !isfinite(req.tokens))
        st = qp_fail(&err, QP_ERR_USAGE, "no budget: give --budget FLOPs (e.g. 1e22) or --tokens (e.g. 1.4T)");
    if (!st && !isfinite(req.n_params) && !isfinite(req.memory_bytes))
        st = qp_fail(&err, QP_ERR_USAGE, "no model size: give --params (e.g. 2.2B) or --memory (e.g. 1.5GiB)");
    if (!st && is_gpuh) {
        if (!isfinite(peak) || !isfinite(mfu))
            st = qp_fail(&err, QP_ERR_USAGE,
                         "a GPU-hour budget needs --peak-flops (e.g. 989e12 for an H100's dense bf16) and --mfu (e.g. 0.4)");
        else {
            req.flops = budget * 3600.0 * peak * mfu;
            if (!isfinite(req.flops)) st = qp_fail(&err, QP_ERR_INPUT, "the GPU-hour budget overflows: check its value");
        }
    } else if (!st && (isfinite(peak) || isfinite(mfu))) {
        st = qp_fail(&err, QP_ERR_USAGE, "--peak-flops and --mfu apply to a GPU-hour budget (--budget 50000gpuh) only");
    } else if (!st) {
        req.flops = budget;
    }
    if (!st && no_qat) {
        const char *given = laws.has_qat ? laws.qat_name : laws.has_penalty ? laws.penalty_name : "";
        if (given[0] && strcmp(given, "built-in reference"))
            st = qp_fail(&err, QP_ERR_USAGE, "--no-qat-law contradicts the QAT law %s given with --law: drop one", given);
        else plan_laws_drop_qat(&laws);
    }
    plan_result res;
    if (!st) st = plan_run(&req, &laws, &res, &err);
    if (!st) {
        if (json) {
            char *t = plan_result_to_json(&res, &laws, &err);
            if (!t) st = err.status ? err.status : QP_ERR_NOMEM;
            else {
                printf("%s\n", t);
                free(t);
            }
        } else {
            plan_print_table(stdout, &res, &laws);
        }
    }
    plan_laws_free(&laws);
    return cli_report(st, &err);
}
