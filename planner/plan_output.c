/* Human-readable and JSON output of a plan, and a law printer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

void plan_print_law(FILE *f, const data_law *law, const char *title)
{
    const data_law_provenance *p = &law->prov;
    char a[32], b[32];
    fprintf(f, "%s: form %s\n", title, data_law_form_name(law->form));
    for (int i = 0; i < data_law_ncoef(law->form); i++) {
        fprintf(f, "  %-7s = %.6g", data_law_coef_name(law->form, i), law->coef[i]);
        if (law->has_interval)
            fprintf(f, "   [%.4g, %.4g] (%.0f%% bootstrap)", law->ci_lo[i], law->ci_hi[i], 100 * law->ci_level);
        fprintf(f, "\n");
    }
    if (law->units) {
        fprintf(f, "  loss units: %s", law_units_label(law->units));
        if (law->vocab > 0) fprintf(f, " (vocabulary %d%s%s)", law->vocab, law->tokenizer[0] ? ", " : "", law->tokenizer);
        fprintf(f, "%s\n", law->form == DATA_LAW_PENALTY ? "; a penalty added to a full-precision law of these units" : "");
    } else if (law->form != DATA_LAW_FRACTION) {
        fprintf(f, "  loss units: not recorded (a law file from before units were recorded)\n");
    }
    fprintf(f, "  source: %s\n", p->source);
    if (p->method[0]) fprintf(f, "  method: %s\n", p->method);
    if (p->created[0]) fprintf(f, "  created: %s (qatplan %s)\n", p->created, p->code_version);
    if (p->n_runs > 0) fprintf(f, "  runs: %d used, %d excluded\n", p->n_runs, p->n_excluded);
    if (isfinite(p->n_min))
        fprintf(f, "  N range: %s-%s parameters (%s)\n", qp_format_count(p->n_min, a, sizeof a),
                qp_format_count(p->n_max, b, sizeof b),
                law->form == DATA_LAW_PENALTY ? "as the observations count them" : "all, embeddings included");
    if (isfinite(p->d_min))
        fprintf(f, "  D range: %s-%s tokens\n", qp_format_count(p->d_min, a, sizeof a), qp_format_count(p->d_max, b, sizeof b));
    if (isfinite(p->s_min)) fprintf(f, "  S_total range: %.3g-%.3g tokens per parameter byte\n", p->s_min, p->s_max);
    if (p->n_bits > 0) {
        fprintf(f, "  bit widths:");
        for (int i = 0; i < p->n_bits; i++) fprintf(f, " %d", p->bits[i]);
        fprintf(f, "\n");
    }
    if (isfinite(p->rmse_log) || isfinite(p->r2)) {
        fprintf(f, "  fit quality:");
        if (isfinite(p->rmse_log))
            fprintf(f, " RMSE(log %s) %.4f", law->form == DATA_LAW_PENALTY ? "penalty" : "L", p->rmse_log);
        if (isfinite(p->mae_log)) fprintf(f, ", MAE(log L) %.4f", p->mae_log);
        if (isfinite(p->r2)) fprintf(f, ", R^2 %.4f", p->r2);
        if (isfinite(p->loo_rmse_log)) fprintf(f, ", leave-one-size-out RMSE %.4f", p->loo_rmse_log);
        if (p->starts > 0) fprintf(f, ", %d/%d starts reached the best objective", p->starts_at_best, p->starts);
        fprintf(f, "\n");
    }
    if (law->n_samples > 0) fprintf(f, "  bootstrap samples: %d\n", law->n_samples);
}

static const char *sched_label(data_schedule s)
{
    switch (s) {
    case DATA_SCHED_FUSED: return "fused cooldown-QAT";
    case DATA_SCHED_CLASSIC: return "classic FP-then-QAT";
    case DATA_SCHED_FP_ONLY: return "no QAT: post-training quantization";
    case DATA_SCHED_QAT_ONLY: return "QAT from scratch";
    default: return "?";
    }
}

static const char *fmt_tok(double x, char *buf, size_t n)
{
    if (!isfinite(x)) {
        snprintf(buf, n, isinf(x) ? "never" : "-");
        return buf;
    }
    return qp_format_count(x, buf, n);
}

static void print_laws(FILE *f, const plan_result *res, const plan_laws *laws)
{
    const data_law *fp = laws->has_qat && !laws->fp_given ? &laws->qat : &laws->fp;
    const char *fp_name = laws->has_qat && !laws->fp_given ? laws->qat_name : laws->fp_name;
    fprintf(f, "Laws: full-precision loss: %s (%s form), %s", fp_name, data_law_form_name(fp->form),
            law_units_label(res->units));
    if (fp->vocab > 0) fprintf(f, " of a %d-token vocabulary", fp->vocab);
    fprintf(f, "\n");
    if (laws->has_qat)
        fprintf(f, "      QAT loss: %s (qat form: its own full-precision part plus penalty)\n", laws->qat_name);
    else if (laws->has_penalty)
        fprintf(f, "      QAT penalty: %s (penalty form, added to the full-precision loss)\n", laws->penalty_name);
    else
        fprintf(f, "      QAT loss: none (ranking bit widths needs one)\n");
    fprintf(f, "      optimal fraction: %s (a = %.4f)\n", laws->has_fraction ? laws->fraction_name : "paper constant",
            laws->has_fraction ? laws->fraction.coef[0] : LAW_FRACTION_A_PAPER);
}

static void print_request(FILE *f, const plan_result *res)
{
    const plan_request *q = &res->req;
    char a[32], b[32];
    switch (res->mode) {
    case PLAN_MODE_SEARCH:
        fprintf(f, "Mode: model size searched: for each bit width, the N of lowest predicted loss at D = C / (6*N)%s\n",
                isfinite(q->memory_bytes) ? ", within the memory limit" : "");
        break;
    case PLAN_MODE_FILL_MEMORY:
        fprintf(f, "Mode: memory-bound: for each bit width, the largest N whose weights fit the memory\n");
        break;
    default:
        if (isfinite(q->n_params))
            fprintf(f, "Model: N = %s parameters (all, embeddings included)\n", qp_format_count(q->n_params, a, sizeof a));
        else
            fprintf(f, "Model: N = sqrt(C / (6 * %g tokens per parameter)) = %s parameters (all)\n", q->tokens_per_param,
                    qp_format_count(sqrt(q->flops / (6 * q->tokens_per_param)), a, sizeof a));
    }
    if (isfinite(q->memory_bytes))
        fprintf(f, "Memory limit for weights: %s (%.4g bytes)\n", qp_format_bytes(q->memory_bytes, a, sizeof a), q->memory_bytes);
    if (isfinite(q->vocab))
        snprintf(b, sizeof b, "vocab %.0f x d_model x %d", q->vocab, q->tied ? 1 : 2);
    else
        qp_format_count(q->embed_params, b, sizeof b);
    const char *scales = q->group_size > 0 ? "per group of " : "per row";
    const char *group = q->group_size > 0 ? qp_format_count(q->group_size, a, sizeof a) : "";
    if (q->n_methods > 0)
        fprintf(f, "Memory model: each method's storage (b/w below: scales and zero points included); embeddings "
                   "(%s parameters) at %g bits\n", b, q->embed_bits);
    else if (isfinite(q->vocab) || q->embed_params > 0)
        fprintf(f, "Memory model: %s embedding/head parameters at %g bits; the rest at the row's bits plus a 16-bit "
                   "scale %s%s\n", b, q->embed_bits, scales, group);
    else
        fprintf(f, "Memory model: every weight at the row's bits plus a 16-bit scale %s%s (embeddings not given: "
                   "--embed-params or --vocab keeps them at %g bits)\n", scales, group, q->embed_bits);
    if (isfinite(q->gpu_hours))
        fprintf(f, "Budget: %.6g GPU-hours x 3600 s/h x %.4g FLOP/s peak x MFU %.3g = %.4g FLOPs\n", q->gpu_hours,
                q->peak_flops, q->mfu, q->flops);
    if (isfinite(q->flops) && q->n_methods > 0)
        fprintf(f, "Budget: %.4g FLOPs = 6N D_fp + c_m D_qat (c_m: each method's FLOPs per QAT token)\n", q->flops);
    else if (isfinite(q->flops))
        fprintf(f, "Budget: %.4g FLOPs, D = C / (%s per token)\n", q->flops,
                isfinite(q->flops_per_token) ? "given FLOPs" : "6*N FLOPs");
    else if (isfinite(q->tokens))
        fprintf(f, "Budget: %s tokens\n", qp_format_count(q->tokens, a, sizeof a));
    else
        fprintf(f, "Budget: %g tokens per parameter\n", q->tokens_per_param);
}

static void print_ranked_rows(FILE *f, const plan_result *res)
{
    char a[32], b[32], c[32], d[32], e[32], g[16];
    fprintf(f, "%4s %8s %10s %8s %6s %6s %7s %8s %8s %8s %10s %8s %8s  %s\n", "bits", "N", "memory", "S_total", "f_hat",
            "f_opt", "L_fp", "penalty", "L(f_opt)", "L(10%)", "10%-extra", "D_fp", "D_qat", "schedule");
    for (int i = 0; i < res->n_rows; i++) {
        const plan_row *r = &res->rows[i];
        fprintf(f, "%4s %8s %10s %8.4g %6.3f %6.3f %7.4f %8.4f %8.4f %8.4f %10s %8s %8s  %s%s%s%s%s\n",
                plan_bits_label(r->bits, g, sizeof g), qp_format_count(r->n_params, a, sizeof a),
                qp_format_bytes(r->memory_bytes, b, sizeof b), r->s_total, r->f_hat, r->f_opt, r->loss_fp, r->penalty,
                r->loss_opt, r->loss_10pct, fmt_tok(r->extra_tokens_10pct, c, sizeof c), fmt_tok(r->d_fp, d, sizeof d),
                fmt_tok(r->d_qat, e, sizeof e), sched_label(r->schedule), r->at_memory_limit ? " (N at the memory limit)" : "",
                r->fits_memory == 0 ? " (does not fit memory)" : "", r->valid ? "" : " INVALID",
                i == res->recommended ? (res->tie ? "  <= best (tie)" : "  <= best") : "");
    }
    fprintf(f, "(f_opt: law-optimal QAT fraction; L_fp: full-precision loss at the same N and D; penalty =\n"
               " L(f_opt) - L_fp; losses in %s; 10%%-extra: tokens the 10%% rule would need on top of D to\n"
               " reach L(f_opt); D_fp, D_qat in tokens; memory: the memory model's bytes; INVALID: breaks a\n"
               " physical check, see the warnings)\n",
            law_units_label(res->units));
}

static void print_closed_form_rows(FILE *f, const plan_result *res)
{
    char a[32], b[32], c[32], d[32], e[32], g[16];
    fprintf(f, "%4s %8s %10s %8s %6s %8s %8s %10s  %s\n", "bits", "N", "memory", "S_total", "f_hat", "D_fp", "D_qat",
            "QAT starts", "schedule");
    for (int i = 0; i < res->n_rows; i++) {
        const plan_row *r = &res->rows[i];
        fprintf(f, "%4s %8s %10s %8.4g %6.3f %8s %8s %10s  %s%s\n", plan_bits_label(r->bits, g, sizeof g),
                qp_format_count(r->n_params, a, sizeof a), qp_format_bytes(r->memory_bytes, b, sizeof b), r->s_total,
                r->f_hat, fmt_tok(r->d_fp, c, sizeof c), fmt_tok(r->d_qat, d, sizeof d),
                fmt_tok(r->qat_start_token, e, sizeof e), sched_label(r->schedule),
                r->fits_memory == 0 ? " (does not fit memory)" : "");
    }
    fprintf(f, "(S_total: tokens per parameter byte; f_hat = exp(-a / ln S_total); D_fp, D_qat, QAT start in tokens;\n"
               " memory: the memory model's bytes)\n");
}

/* Rows of a plan that ranks methods: costs and storage first, then the predictions. */
static void print_method_rows(FILE *f, const plan_result *res)
{
    char a[32], b[32], c[32], d[32], g[16];
    fprintf(f, "%-12s %4s %8s %7s %10s %6s %6s %6s %6s %7s %8s %8s %8s %8s  %s\n", "method", "bits", "N", "b/w",
            "storage", "c/6N", "eta", "x_c", "f", "L_fp", "penalty", "L(x_c)", "D_fp", "D_qat", "schedule");
    for (int i = 0; i < res->n_rows; i++) {
        const plan_row *r = &res->rows[i];
        char eta[16] = "-", pen[16] = "-", lo[16] = "-", lfp[16] = "-";
        if (isfinite(r->eta)) snprintf(eta, sizeof eta, "%.3g", r->eta);
        if (r->rankable && isfinite(r->loss_opt)) {
            snprintf(pen, sizeof pen, "%.4f", r->penalty);
            snprintf(lo, sizeof lo, "%.4f", r->loss_opt);
            snprintf(lfp, sizeof lfp, "%.4f", r->loss_fp);
        }
        fprintf(f, "%-12s %4s %8s %7.3f %10s %6.3f %6s %6.3f %6.3f %7s %8s %8s %8s %8s  %s%s%s%s%s\n",
                plan_method_name(r->method), plan_bits_label(r->bits, g, sizeof g),
                qp_format_count(r->n_params, a, sizeof a), r->storage_bits_per_weight,
                qp_format_bytes(r->storage_bytes, b, sizeof b), r->qat_flops_per_token / (6 * r->n_params), eta,
                r->compute_fraction, r->fraction, lfp, pen, lo, fmt_tok(r->d_fp, c, sizeof c),
                fmt_tok(r->d_qat, d, sizeof d), sched_label(r->schedule), r->rankable ? "" : " (not ranked: no law)",
                r->fits_memory == 0 ? " (does not fit memory)" : "", r->valid ? "" : " INVALID",
                i == res->recommended ? (res->tie ? "  <= best (tie)" : "  <= best") : "");
    }
    fprintf(f, "(b/w: stored bits per block-linear weight incl. scales and zero points; storage: weight bytes for\n"
               " inference; c/6N: FLOPs per QAT token over 6N; eta: QAT-token efficiency against the qat law (1 =\n"
               " full QAT or the method's own law); x_c: QAT share of the FLOPs; f: QAT share of the tokens; L_fp:\n"
               " full-precision loss at the same N and tokens; losses in %s; D_fp, D_qat in tokens;\n"
               " rows without a law split at the closed-form fraction, as compute)\n",
            law_units_label(res->units));
}

static void print_method_recommendation(FILE *f, const plan_result *res)
{
    const plan_row *r = &res->rows[res->recommended];
    char a[32], b[32], g[16];
    fprintf(f, "Recommendation: %s at %s bits, QAT compute fraction %.3f (token fraction %.3f)\n",
            plan_method_name(r->method), plan_bits_label(r->bits, g, sizeof g), r->compute_fraction, r->fraction);
    if (res->tie)
        fprintf(f, "  a tie: a row at %s bits is within the QAT law's uncertainty; choose on other grounds\n",
                plan_bits_label(res->tie_bits, g, sizeof g));
    fprintf(f, "  tokens: D_fp = %s full precision, then D_qat = %s %s tokens; storage %s\n", fmt_tok(r->d_fp, a, sizeof a),
            fmt_tok(r->d_qat, b, sizeof b), plan_method_name(r->method), qp_format_bytes(r->storage_bytes, g, sizeof g));
    if (isfinite(r->loss_opt))
        fprintf(f, "  predicted loss: %.4f %s = %.4f full precision + %.4f\n", r->loss_opt, law_units_label(res->units),
                r->loss_fp, r->penalty);
}

static void print_method_plan(FILE *f, const plan_result *res)
{
    print_method_rows(f, res);
    fprintf(f, "\n");
    int unranked = 0;
    for (int i = 0; i < res->n_rows; i++) unranked += !res->rows[i].rankable;
    if (res->recommended >= 0 && res->ranked) print_method_recommendation(f, res);
    else if (!res->ranked)
        fprintf(f, "No recommendation: no row has a law to predict its loss; the warnings say what each method "
                   "needs.\n");
    else
        fprintf(f, "No recommendation: no (method, bit width) satisfies the constraints (memory, physical checks).\n");
    if (unranked && res->ranked)
        fprintf(f, "note: %d rows are not ranked (no law or efficiency factor for their method): the recommendation is "
                   "among the others only\n", unranked);
    for (int i = 0; i < res->n_warnings; i++) fprintf(f, "warning: %s\n", res->warnings[i]);
    if (res->n_warnings_dropped)
        fprintf(f, "warning: %d more warnings not shown (the %d above are the most severe)\n", res->n_warnings_dropped,
                res->n_warnings);
}

static void print_schedule(FILE *f, const plan_result *res, const plan_row *r)
{
    const plan_request *q = &res->req;
    char a[32], b[32], c[32];
    fprintf(f, "  schedule: %s. ", sched_label(r->schedule));
    if (r->schedule == DATA_SCHED_FUSED)
        fprintf(f, "FP warmup and stable phase for %s tokens; QAT starts at token %s at the peak learning rate, and the "
                   "decay begins there and runs to the end.\n",
                fmt_tok(r->d_fp, a, sizeof a), fmt_tok(r->qat_start_token, b, sizeof b));
    else if (r->schedule == DATA_SCHED_CLASSIC)
        fprintf(f, "FP with its own decay from token %s; QAT starts at token %s with a short re-warmup, its decay "
                   "begins at token %s.\n",
                fmt_tok(r->fp_decay_start_token, a, sizeof a), fmt_tok(r->qat_start_token, b, sizeof b),
                fmt_tok(r->decay_start_token, c, sizeof c));
    else if (r->schedule == DATA_SCHED_FP_ONLY)
        fprintf(f, "train in full precision (decay from token %s), then quantize the weights after training.\n",
                fmt_tok(r->decay_start_token, a, sizeof a));
    else
        fprintf(f, "quantization-aware from the first step; decay begins at token %s.\n",
                fmt_tok(r->decay_start_token, a, sizeof a));
    if (isfinite(r->qat_start_step)) {
        fprintf(f, "  steps (at %s tokens/step): QAT starts at step %.0f (torchtune: fake_quant_after_n_steps=%.0f); "
                   "decay starts at step %.0f\n",
                qp_format_count(q->batch_tokens, a, sizeof a), r->qat_start_step, r->qat_start_step, r->decay_start_step);
        if (r->schedule == DATA_SCHED_CLASSIC && isfinite(r->fp_decay_start_step))
            fprintf(f, "         FP decay starts at step %.0f\n", r->fp_decay_start_step);
    }
}

static void print_recommendation(FILE *f, const plan_result *res, const plan_laws *laws)
{
    const plan_row *r = &res->rows[res->recommended];
    char a[32], b[32], c[32], g[16];
    fprintf(f, "Recommendation: ");
    if (res->mode != PLAN_MODE_GIVEN_N) fprintf(f, "N = %s parameters, ", qp_format_count(r->n_params, a, sizeof a));
    fprintf(f, "%s-bit%s QAT, QAT fraction %.3f (%s)\n", plan_bits_label(r->bits, g, sizeof g),
            fabs(r->bits - PLAN_TERNARY_BITS) < 1e-6 ? " (ternary)" : "", r->fraction,
            res->ranked ? "law optimum" : "closed form");
    if (res->tie)
        fprintf(f, "  a tie: %s bits is within the QAT law's uncertainty (it beats this row in at least 2.5%% of the "
                   "bootstrap samples); choose on other grounds\n", plan_bits_label(res->tie_bits, g, sizeof g));
    fprintf(f, "  tokens: D_fp = %s full precision, then D_qat = %s QAT (D_total = %s)\n", fmt_tok(r->d_fp, a, sizeof a),
            fmt_tok(r->d_qat, b, sizeof b), fmt_tok(r->d_total, c, sizeof c));
    print_schedule(f, res, r);
    if (fabs(r->bits - PLAN_TERNARY_BITS) < 1e-6)
        fprintf(f, "  ternary in qatplan's trainer: --bits 2 --quantizer ternary (ParetoQ's {-2/3, 0, 2/3} grid); the "
                   "law counts log2(3) = 1.585 bits per weight\n");
    if (!res->ranked) return;
    const char *u = law_units_label(res->units);
    fprintf(f, "  predicted loss: %.4f %s = %.4f full precision + %.4f QAT penalty\n", r->loss_opt, u, r->loss_fp, r->penalty);
    if (isfinite(r->loss_opt_lo))
        fprintf(f, "  %.0f%% intervals over the QAT law's bootstrap: loss [%.4f, %.4f], penalty [%.4f, %.4f], "
                   "fraction [%.3f, %.3f]\n",
                100 * (laws->has_qat ? laws->qat.ci_level : laws->penalty.ci_level), r->loss_opt_lo, r->loss_opt_hi,
                r->penalty_lo, r->penalty_hi, r->f_opt_lo, r->f_opt_hi);
    if (isinf(r->extra_tokens_10pct))
        fprintf(f, "  the 10%% rule would predict %.4f; under this law no number of extra tokens brings it to %.4f\n",
                r->loss_10pct, r->loss_opt);
    else
        fprintf(f, "  the 10%% rule would predict %.4f; it needs %s more tokens (%.3g%% of the budget) to match\n",
                r->loss_10pct, fmt_tok(r->extra_tokens_10pct, a, sizeof a), 100 * r->extra_tokens_10pct / r->d_total);
}

static void print_method_laws(FILE *f, const plan_result *res, const plan_laws *laws)
{
    const plan_request *q = &res->req;
    fprintf(f, "Methods: QAT tokens priced per method (docs/planner.md): efqat --unfrozen %g; e2eqp/blockap/"
               "efficientqat asym per %s%g; Block-AP E = %g, %g of efficientqat's QAT FLOPs; row size %g\n",
            q->unfrozen, q->group_size > 0 ? "group of " : "row of ", q->group_size > 0 ? q->group_size : q->row_size,
            q->blockap_epochs, q->blockap_share, q->row_size);
    for (int i = 0; i < q->n_methods; i++) {
        plan_method m = q->methods[i];
        if (m == PLAN_METHOD_QAT) continue;
        if (laws->has_method_law[m])
            fprintf(f, "      %s loss: %s (%s form fitted to its runs)\n", plan_method_name(m), laws->method_law_name[m],
                    data_law_form_name(laws->method_law[m].form));
        else if (laws->has_eta[m])
            fprintf(f, "      %s loss: the QAT law at eta x its QAT tokens, eta from %s\n", plan_method_name(m),
                    laws->eta_name[m]);
        else
            fprintf(f, "      %s loss: none (cannot rank)\n", plan_method_name(m));
    }
}

void plan_print_table(FILE *f, const plan_result *res, const plan_laws *laws)
{
    print_request(f, res);
    print_laws(f, res, laws);
    if (res->req.n_methods > 0) {
        print_method_laws(f, res, laws);
        fprintf(f, "\n");
        print_method_plan(f, res);
        return;
    }
    fprintf(f, "\n");
    if (res->ranked) print_ranked_rows(f, res);
    else print_closed_form_rows(f, res);
    fprintf(f, "\n");
    if (res->recommended >= 0) {
        print_recommendation(f, res, laws);
    } else if (!res->ranked) {
        fprintf(f, "No bit-width recommendation: ranking bit widths needs a QAT law: the built-in reference\n"
                   "penalty (drop --no-qat-law), or one fitted to your runs ('qatplan fit RUNS -o law.json', then\n"
                   "'--law law.json'). The split above follows the closed-form optimal fraction for each bit width.\n");
    } else {
        fprintf(f, "No recommendation: no bit width satisfies the constraints (memory, physical checks).\n");
    }
    if (res->ranked && res->mode == PLAN_MODE_GIVEN_N && !isfinite(res->req.memory_bytes) && res->n_rows > 1)
        fprintf(f, "note: at a fixed N without a memory limit, more bits always predict a lower loss; give --memory "
                   "to weigh model size against bit width, or drop --params to search N\n");
    for (int i = 0; i < res->n_warnings; i++) fprintf(f, "warning: %s\n", res->warnings[i]);
    if (res->n_warnings_dropped)
        fprintf(f, "warning: %d more warnings not shown (the %d above are the most severe)\n", res->n_warnings_dropped,
                res->n_warnings);
}

/* ---- JSON ------------------------------------------------------------------ */

/* Non-finite values appear only where the schema says so, as explicit strings. */
static void add_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddStringToObject(o, k, isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"));
}

static void add_opt(cJSON *o, const char *k, double v)
{
    if (!isnan(v)) add_num(o, k, v);
}

static cJSON *law_ref(const data_law *law, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "form", data_law_form_name(law->form));
    cJSON *c = cJSON_AddObjectToObject(o, "coefficients");
    for (int i = 0; i < data_law_ncoef(law->form); i++) add_num(c, data_law_coef_name(law->form, i), law->coef[i]);
    cJSON_AddStringToObject(o, "source", law->prov.source);
    cJSON_AddStringToObject(o, "loss_units", data_loss_units_name(law->units));
    if (law->vocab > 0) cJSON_AddNumberToObject(o, "vocab", law->vocab);
    return o;
}

static cJSON *row_json(const plan_result *res, int i)
{
    const plan_request *q = &res->req;
    const plan_row *r = &res->rows[i];
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "bits", r->bits);
    if (fabs(r->bits - PLAN_TERNARY_BITS) < 1e-6) cJSON_AddBoolToObject(x, "ternary", 1);
    add_num(x, "n_params", r->n_params);
    add_num(x, "weight_bytes", r->weight_bytes);
    add_num(x, "memory_bytes", r->memory_bytes);
    add_num(x, "embed_params", r->embed_params);
    if (res->mode == PLAN_MODE_SEARCH) cJSON_AddBoolToObject(x, "at_memory_limit", r->at_memory_limit);
    if (r->fits_memory >= 0) cJSON_AddBoolToObject(x, "fits_memory", r->fits_memory);
    add_num(x, "d_total_tokens", r->d_total);
    add_num(x, "s_total", r->s_total);
    add_num(x, "f_hat", r->f_hat);
    add_opt(x, "loss_fp", r->loss_fp);
    add_opt(x, "f_opt", r->f_opt);
    add_opt(x, "loss_opt", r->loss_opt);
    add_opt(x, "penalty", r->penalty);
    if (res->ranked) cJSON_AddBoolToObject(x, "valid", r->valid);
    if (!r->valid) cJSON_AddStringToObject(x, "invalid_reason", r->invalid_reason);
    add_opt(x, "loss_f_hat", r->loss_f_hat);
    add_opt(x, "loss_10pct", r->loss_10pct);
    add_opt(x, "extra_tokens_10pct", r->extra_tokens_10pct);
    if (isfinite(r->f_opt_lo)) {
        double fi[2] = {r->f_opt_lo, r->f_opt_hi}, li[2] = {r->loss_opt_lo, r->loss_opt_hi};
        cJSON_AddItemToObject(x, "f_opt_interval", cJSON_CreateDoubleArray(fi, 2));
        cJSON_AddItemToObject(x, "loss_opt_interval", cJSON_CreateDoubleArray(li, 2));
        double pi[2] = {r->penalty_lo, r->penalty_hi};
        cJSON_AddItemToObject(x, "penalty_interval", cJSON_CreateDoubleArray(pi, 2));
    }
    add_num(x, "fraction", r->fraction);
    add_num(x, "d_fp_tokens", r->d_fp);
    add_num(x, "d_qat_tokens", r->d_qat);
    cJSON_AddStringToObject(x, "schedule", data_schedule_name(r->schedule));
    add_num(x, "qat_start_token", r->qat_start_token);
    add_num(x, "decay_start_token", r->decay_start_token);
    add_opt(x, "fp_decay_start_token", r->fp_decay_start_token);
    add_opt(x, "qat_start_step", r->qat_start_step);
    add_opt(x, "decay_start_step", r->decay_start_step);
    add_opt(x, "fp_decay_start_step", r->fp_decay_start_step);
    if (q->n_methods > 0) {
        cJSON_AddStringToObject(x, "method", plan_method_name(r->method));
        add_num(x, "qat_flops_per_token", r->qat_flops_per_token);
        add_num(x, "compute_fraction", r->compute_fraction);
        add_num(x, "storage_bits_per_weight", r->storage_bits_per_weight);
        add_num(x, "storage_bytes", r->storage_bytes);
        add_num(x, "eta", r->eta);
        cJSON_AddBoolToObject(x, "rankable", r->rankable);
    }
    return x;
}

char *plan_result_to_json(const plan_result *res, const plan_laws *laws, qp_error *err)
{
    const plan_request *q = &res->req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "schema", "qatplan-plan-v1");
    cJSON *in = cJSON_AddObjectToObject(o, "request");
    add_opt(in, "n_params", q->n_params);
    add_opt(in, "memory_bytes", q->memory_bytes);
    add_opt(in, "budget_flops", q->flops);
    add_opt(in, "budget_tokens", q->tokens);
    add_opt(in, "flops_per_token", q->flops_per_token);
    add_opt(in, "batch_tokens", q->batch_tokens);
    add_num(in, "decay_frac", q->decay_frac);
    cJSON_AddItemToObject(in, "bits", cJSON_CreateDoubleArray(q->bits, q->n_bits));
    add_opt(in, "tokens_per_param", q->tokens_per_param);
    add_opt(in, "gpu_hours", q->gpu_hours);
    add_opt(in, "peak_flops", q->peak_flops);
    add_opt(in, "mfu", q->mfu);
    add_opt(in, "vocab", q->vocab);
    if (!isfinite(q->vocab)) add_num(in, "embed_params", q->embed_params);
    add_num(in, "embed_bits", q->embed_bits);
    add_num(in, "group_size", q->group_size);
    if (q->n_methods > 0) {
        cJSON *ms = cJSON_AddArrayToObject(in, "methods");
        for (int i = 0; i < q->n_methods; i++) cJSON_AddItemToArray(ms, cJSON_CreateString(plan_method_name(q->methods[i])));
        add_num(in, "unfrozen", q->unfrozen);
        add_num(in, "row_size", q->row_size);
        add_num(in, "blockap_share", q->blockap_share);
        add_num(in, "blockap_epochs", q->blockap_epochs);
    }
    cJSON *l = cJSON_AddObjectToObject(o, "laws");
    if (laws->has_fp) cJSON_AddItemToObject(l, "fp", law_ref(&laws->fp, laws->fp_name));
    if (laws->has_fraction) cJSON_AddItemToObject(l, "fraction", law_ref(&laws->fraction, laws->fraction_name));
    if (laws->has_qat) cJSON_AddItemToObject(l, "qat", law_ref(&laws->qat, laws->qat_name));
    if (laws->has_penalty) cJSON_AddItemToObject(l, "penalty", law_ref(&laws->penalty, laws->penalty_name));
    for (int i = 0; i < q->n_methods; i++) { /* new with --method: "efqat": {law or efficiency} */
        plan_method m = q->methods[i];
        if (laws->has_method_law[m])
            cJSON_AddItemToObject(l, plan_method_name(m), law_ref(&laws->method_law[m], laws->method_law_name[m]));
        else if (laws->has_eta[m])
            cJSON_AddItemToObject(l, plan_method_name(m), law_ref(&laws->eta[m], laws->eta_name[m]));
    }
    cJSON_AddStringToObject(o, "mode", plan_mode_name(res->mode));
    cJSON_AddBoolToObject(o, "ranked", res->ranked);
    cJSON_AddStringToObject(o, "loss_units", data_loss_units_name(res->units));
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (int i = 0; i < res->n_rows; i++) cJSON_AddItemToArray(rows, row_json(res, i));
    if (res->recommended >= 0) {
        cJSON_AddNumberToObject(o, "recommended_bits", res->rows[res->recommended].bits);
        cJSON_AddNumberToObject(o, "recommended_params", res->rows[res->recommended].n_params);
        if (q->n_methods > 0)
            cJSON_AddStringToObject(o, "recommended_method", plan_method_name(res->rows[res->recommended].method));
        cJSON_AddBoolToObject(o, "tie", res->tie);
        if (res->tie) cJSON_AddNumberToObject(o, "tie_bits", res->tie_bits);
    } else {
        cJSON_AddStringToObject(o, "recommended_bits", "none");
        cJSON_AddStringToObject(o, "recommended_params", "none");
    }
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    for (int i = 0; i < res->n_warnings; i++) cJSON_AddItemToArray(w, cJSON_CreateString(res->warnings[i]));
    cJSON_AddNumberToObject(o, "warnings_not_shown", res->n_warnings_dropped);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) qp_fail(err, QP_ERR_NOMEM, "out of memory formatting the plan");
    return text;
}
