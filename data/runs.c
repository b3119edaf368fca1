/* Run records: JSONL reader/writer and CSV import. Format: docs/formats.md. */
#include "data.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_util.h"

static const char *sched_names[DATA_SCHED_COUNT_] = {"classic", "fused", "fp-only", "qat-only"};
static const char *status_names[DATA_RUN_STATUS_COUNT_] = {"ok", "diverged", "failed"};

const char *data_schedule_name(data_schedule s)
{
    return (unsigned)s < DATA_SCHED_COUNT_ ? sched_names[s] : "unknown";
}

qp_status data_schedule_parse(const char *name, data_schedule *out, qp_error *err)
{
    for (int i = 0; i < DATA_SCHED_COUNT_; i++)
        if (!strcasecmp(name, sched_names[i])) {
            *out = (data_schedule)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_INPUT, "unknown schedule '%s': use classic, fused, fp-only or qat-only",
                   name);
}

const char *data_run_status_name(data_run_status s)
{
    return (unsigned)s < DATA_RUN_STATUS_COUNT_ ? status_names[s] : "unknown";
}

void data_run_init(data_run *r)
{
    memset(r, 0, sizeof *r);
    r->n_params = NAN;
    r->n_params_nonembed = NAN;
    r->d_fp = NAN;
    r->d_qat = NAN;
    r->loss = NAN;
    r->loss_fp_switch = NAN;
    r->val_bpb = NAN;
    r->wall_seconds = NAN;
    r->lr_peak = NAN;
    r->batch_tokens = NAN;
    r->decay_frac = NAN;
    r->optimizer_reset = -1;
    r->lr_qat = r->loss_ptq = NAN;
    r->flops_fp = r->flops_qat = r->trainable_params_qat = NAN;
    r->wall_seconds_qat = r->peak_rss_bytes = r->train_state_bytes = NAN;
    r->unfrozen_ratio = r->unfrozen_ratio_eff = r->refresh_tokens = NAN;
    r->blockap_tokens = r->blockap_epochs = r->e2e_tokens = r->blockap_mse = NAN;
    r->flops_blockap = r->flops_e2eqp = r->storage_bits_per_weight = NAN;
    r->train_state_bytes_blockap = r->train_state_bytes_e2eqp = r->peak_rss_bytes_blockap = NAN;
    r->schedule = DATA_SCHED_CLASSIC;
    r->status = DATA_RUN_OK;
}

double data_run_tokens(const data_run *r) { return r->d_fp + r->d_qat; }

const char *data_run_method(const data_run *r) { return r->method[0] ? r->method : "qat"; }

static const char *const method_names[DATA_METHOD_COUNT_] = {"qat", "efqat", "blockap", "e2eqp", "efficientqat"};

const char *data_method_name(data_method m) { return (unsigned)m < DATA_METHOD_COUNT_ ? method_names[m] : "?"; }

qp_status data_method_parse(const char *name, data_method *out, qp_error *err)
{
    for (int i = 0; i < DATA_METHOD_COUNT_; i++)
        if (name && !strcmp(name, method_names[i])) {
            *out = (data_method)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_USAGE, "unknown training method '%s': use " DATA_METHOD_LIST, name ? name : "");
}

qp_status data_run_validate(const data_run *r, qp_error *err)
{
    if (!(r->n_params > 0) || !isfinite(r->n_params))
        return qp_fail(err, QP_ERR_INPUT, "N (parameters) must be a positive finite number");
    if (!(r->d_fp >= 0) || !isfinite(r->d_fp) || !(r->d_qat >= 0) || !isfinite(r->d_qat))
        return qp_fail(err, QP_ERR_INPUT, "D_fp and D_qat (tokens) must be finite and >= 0");
    if (!(r->d_fp + r->d_qat > 0))
        return qp_fail(err, QP_ERR_INPUT, "D_fp + D_qat (tokens) must be positive");
    if (!data_bits_valid(r->bits))
        return qp_fail(err, QP_ERR_INPUT, "bits = %d: use 1..8 for QAT, or 16/32 for full precision",
                       r->bits);
    if (!data_bits_is_fp(r->bits)) {
        if (r->schedule == DATA_SCHED_FP_ONLY && r->d_qat != 0)
            return qp_fail(err, QP_ERR_INPUT, "schedule fp-only needs D_qat = 0");
        if (r->schedule == DATA_SCHED_QAT_ONLY && r->d_fp != 0)
            return qp_fail(err, QP_ERR_INPUT, "schedule qat-only needs D_fp = 0");
        if ((r->schedule == DATA_SCHED_CLASSIC || r->schedule == DATA_SCHED_FUSED) &&
            (r->d_fp == 0 || r->d_qat == 0))
            return qp_fail(err, QP_ERR_INPUT,
                           "schedule %s needs both D_fp and D_qat > 0 (use fp-only or qat-only)",
                           data_schedule_name(r->schedule));
    }
    if (r->status == DATA_RUN_OK && !(isfinite(r->loss) && r->loss > 0))
        return qp_fail(err, QP_ERR_INPUT,
                       "a run with status ok needs a positive finite loss (mark it diverged or failed)");
    return QP_OK;
}

void data_run_list_init(data_run_list *l) { memset(l, 0, sizeof *l); }

void data_run_list_free(data_run_list *l)
{
    if (!l) return;
    free(l->runs);
    memset(l, 0, sizeof *l);
}

qp_status data_run_list_push(data_run_list *l, const data_run *r, qp_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        data_run *nr = realloc(l->runs, cap * sizeof *nr);
        if (!nr) return qp_fail(err, QP_ERR_NOMEM, "out of memory storing run records");
        l->runs = nr;
        l->cap = cap;
    }
    l->runs[l->n++] = *r;
    return QP_OK;
}

/* ---- writing ------------------------------------------------------------ */

static void add_opt_real(cJSON *o, const char *key, double v)
{
    if (!isnan(v)) dj_add_real(o, key, v);
}

/* The method fields: optional, and only finite numbers (a NaN or an infinity is left out:
 * these are costs and losses that a reader must be able to take as numbers). */
static void add_method_fields(cJSON *o, const data_run *r)
{
    if (r->method[0]) cJSON_AddStringToObject(o, "method", r->method);
    struct { const char *k; double v; } f[] = {
        {"lr_qat", r->lr_qat}, {"loss_ptq", r->loss_ptq}, {"flops_fp", r->flops_fp},
        {"flops_qat", r->flops_qat}, {"trainable_params_qat", r->trainable_params_qat},
        {"wall_seconds_qat", r->wall_seconds_qat}, {"peak_rss_bytes", r->peak_rss_bytes},
        {"train_state_bytes", r->train_state_bytes}, {"unfrozen_ratio", r->unfrozen_ratio},
        {"unfrozen_ratio_eff", r->unfrozen_ratio_eff}, {"refresh_tokens", r->refresh_tokens},
        {"blockap_tokens", r->blockap_tokens}, {"blockap_epochs", r->blockap_epochs},
        {"e2e_tokens", r->e2e_tokens}, {"blockap_mse", r->blockap_mse}, {"flops_blockap", r->flops_blockap},
        {"flops_e2eqp", r->flops_e2eqp}, {"storage_bits_per_weight", r->storage_bits_per_weight},
        {"train_state_bytes_blockap", r->train_state_bytes_blockap},
        {"train_state_bytes_e2eqp", r->train_state_bytes_e2eqp},
        {"peak_rss_bytes_blockap", r->peak_rss_bytes_blockap},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (isfinite(f[i].v)) dj_add_real(o, f[i].k, f[i].v);
    if (r->init_checkpoint[0]) cJSON_AddStringToObject(o, "init_checkpoint", r->init_checkpoint);
    if (r->freeze_mode[0]) cJSON_AddStringToObject(o, "freeze_mode", r->freeze_mode);
    if (r->trunk[0]) cJSON_AddStringToObject(o, "trunk", r->trunk);
}

char *data_run_to_json(const data_run *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "schema", DATA_RUN_SCHEMA);
    cJSON_AddStringToObject(o, "run_id", r->run_id);
    const data_model_shape *s = &r->shape;
    /* any known field: a record that gives only some of them keeps them when written back */
    if (s->n_layer || s->d_model || s->n_head || s->n_kv_head || s->d_ff || s->context || s->vocab) {
        cJSON *m = cJSON_AddObjectToObject(o, "model");
        cJSON_AddNumberToObject(m, "n_layer", s->n_layer);
        cJSON_AddNumberToObject(m, "d_model", s->d_model);
        cJSON_AddNumberToObject(m, "n_head", s->n_head);
        cJSON_AddNumberToObject(m, "n_kv_head", s->n_kv_head);
        cJSON_AddNumberToObject(m, "d_ff", s->d_ff);
        cJSON_AddNumberToObject(m, "context", s->context);
        cJSON_AddNumberToObject(m, "vocab", s->vocab);
    }
    dj_add_real(o, "n_params", r->n_params);
    add_opt_real(o, "n_params_nonembed", r->n_params_nonembed);
    dj_add_real(o, "d_fp", r->d_fp);
    dj_add_real(o, "d_qat", r->d_qat);
    cJSON_AddNumberToObject(o, "bits", r->bits);
    cJSON_AddStringToObject(o, "quantizer", r->quantizer[0] ? r->quantizer : (data_run_is_fp(r) ? "none" : ""));
    cJSON_AddNumberToObject(o, "embed_bits", r->embed_bits);
    cJSON_AddNumberToObject(o, "group_size", r->group_size);
    cJSON_AddStringToObject(o, "schedule", data_schedule_name(r->schedule));
    dj_add_real(o, "loss", r->loss);
    add_opt_real(o, "loss_fp_switch", r->loss_fp_switch);
    add_opt_real(o, "val_bpb", r->val_bpb);
    /* Seeds are 64-bit: a JSON number (double) would round them above 2^53. */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddStringToObject(o, "dataset", r->dataset);
    cJSON_AddStringToObject(o, "status", data_run_status_name(r->status));
    if (r->reason[0]) cJSON_AddStringToObject(o, "reason", r->reason);
    add_opt_real(o, "wall_seconds", r->wall_seconds);
    cJSON_AddStringToObject(o, "code_version", r->code_version);
    add_opt_real(o, "lr_peak", r->lr_peak);
    add_opt_real(o, "batch_tokens", r->batch_tokens);
    add_opt_real(o, "decay_frac", r->decay_frac);
    if (r->decay_shape[0]) cJSON_AddStringToObject(o, "decay_shape", r->decay_shape);
    if (r->optimizer_reset >= 0) cJSON_AddBoolToObject(o, "optimizer_reset", r->optimizer_reset);
    if (r->device[0]) cJSON_AddStringToObject(o, "device", r->device);
    if (r->precision[0]) cJSON_AddStringToObject(o, "precision", r->precision);
    add_method_fields(o, r);
    if (r->gemm[0]) cJSON_AddStringToObject(o, "gemm", r->gemm);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

qp_status data_run_append(const char *path, const data_run *r, qp_error *err)
{
    char *line = data_run_to_json(r);
    if (!line) return qp_fail(err, QP_ERR_NOMEM, "out of memory formatting a run record");
    qp_status st = qp_append_line(path, line, err);
    free(line);
    return st;
}

/* ---- the quantities a fit needs, under the names other tools give them ---- */

/* Column (CSV) and field (JSONL) names, each concept's names in order of preference; the
 * first is qatplan's own. Matched case-insensitively. docs/formats.md lists them. */
enum { C_N, C_DFP, C_DQAT, C_DTOTAL, C_FRAC, C_BITS, C_LOSS, C_RUN_ID, C_SCHEDULE, C_SEED, C_DATASET,
       C_STATUS, C_REASON, C_COUNT };
#define ALIAS_MAX 8
static const char *const col_alias[C_COUNT][ALIAS_MAX] = {
    [C_N] = {"N", "n_params", "params", "model_params", "num_params", "parameters", NULL},
    [C_DFP] = {"D_fp", "fp_tokens", NULL},
    [C_DQAT] = {"D_qat", "qat_tokens", NULL},
    [C_DTOTAL] = {"tokens", "total_tokens", "D", "D_total", NULL},
    [C_FRAC] = {"qat_fraction", "f", "fraction", NULL},
    [C_BITS] = {"bits", "weight_bits", "w_bits", NULL},
    [C_LOSS] = {"loss", "val_loss", "eval_loss", "final_val_loss", NULL},
    [C_RUN_ID] = {"run_id", "run_name", "name", "id", NULL},
    [C_SCHEDULE] = {"schedule", NULL},
    [C_SEED] = {"seed", NULL},
    [C_DATASET] = {"dataset", NULL},
    [C_STATUS] = {"status", NULL},
    [C_REASON] = {"reason", NULL},
};

/* Skips a UTF-8 byte order mark (spreadsheets write one). */
static const char *skip_bom(const char *text)
{
    return !strncmp(text, "\xEF\xBB\xBF", 3) ? text + 3 : text;
}

/* "N, n_params, params, ..." for messages. */
static const char *alias_list(int c, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < ALIAS_MAX && col_alias[c][i] && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", col_alias[c][i]);
    return buf;
}

/* A status as other tools spell it: 1 when recognised. */
static int status_from_text(const char *s, data_run_status *out)
{
    static const char *const ok[] = {"ok", "success", "succeeded", "completed", "complete", "finished", "done"};
    static const char *const dv[] = {"diverged", "nan"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcasecmp(s, ok[i])) return *out = DATA_RUN_OK, 1;
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++)
        if (!strcasecmp(s, dv[i])) return *out = DATA_RUN_DIVERGED, 1;
    if (!strcasecmp(s, "failed")) return *out = DATA_RUN_FAILED, 1;
    return 0;
}

/* A run whose loss is not a positive finite number cannot be fitted: unless it already says
 * why (status diverged or failed), it is excluded as diverged (NaN, inf) or failed (no loss),
 * with the reason, so the fitter counts and names it instead of refusing the file. */
static void exclude_by_loss(data_run *r, int loss_missing)
{
    if (r->status != DATA_RUN_OK || (isfinite(r->loss) && r->loss > 0)) return;
    r->status = loss_missing || isfinite(r->loss) ? DATA_RUN_FAILED : DATA_RUN_DIVERGED;
    if (!r->reason[0]) {
        if (loss_missing) snprintf(r->reason, sizeof r->reason, "no loss recorded");
        else snprintf(r->reason, sizeof r->reason, "loss is %g", r->loss);
    }
}

/* The token split from total tokens and a QAT fraction (both already checked). */
static void split_total(data_run *r, double total, double f)
{
    r->d_qat = f == 1 ? total : total * f;
    r->d_fp = f == 1 ? 0 : total - r->d_qat;
}

/* Both forms given: they must agree (to rounding of printed values). */
static qp_status split_consistent(const data_run *r, double total, double f, const char *where, qp_error *err)
{
    double t = r->d_fp + r->d_qat;
    if (!isnan(total) && !(fabs(t - total) <= 1e-3 * fabs(total)))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: D_fp + D_qat = %.6g but total tokens = %.6g: give one form, or make them agree",
                       where, t, total);
    if (!isnan(f) && t > 0 && !(fabs(r->d_qat / t - f) <= 1e-3))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: D_qat / (D_fp + D_qat) = %.6g but the QAT fraction = %.6g: give one form, or "
                       "make them agree",
                       where, r->d_qat / t, f);
    return QP_OK;
}

/* ---- reading JSONL ------------------------------------------------------- */

/* The field of concept c: the first of its names present exactly, else in any case. */
static const cJSON *json_alias(const cJSON *o, int c, const char **key)
{
    for (int i = 0; i < ALIAS_MAX && col_alias[c][i]; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, col_alias[c][i]);
        if (it) return *key = col_alias[c][i], it;
    }
    for (const cJSON *it = o->child; it; it = it->next)
        for (int i = 0; it->string && i < ALIAS_MAX && col_alias[c][i]; i++)
            if (!strcasecmp(it->string, col_alias[c][i])) return *key = it->string, it;
    return NULL;
}

static qp_status cell_count(const char *s, const char *col, const char *where, double *out, qp_error *err);

/* A real field of concept c, NAN when absent: a number, "NaN"/"Infinity"/"-Infinity", or for
 * counts (N, tokens) a string such as "125M". */
static qp_status json_real(const cJSON *o, int c, int is_count, double *out, const char *where, qp_error *err)
{
    const char *key = NULL;
    const cJSON *it = json_alias(o, c, &key);
    *out = NAN;
    if (!it) return QP_OK;
    if (cJSON_IsNumber(it)) return *out = it->valuedouble, QP_OK;
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring;
        if (!strcmp(s, "NaN")) return *out = NAN, QP_OK;
        if (!strcmp(s, "Infinity")) return *out = INFINITY, QP_OK;
        if (!strcmp(s, "-Infinity")) return *out = -INFINITY, QP_OK;
        if (is_count) return cell_count(s, key, where, out, err);
    }
    if (cJSON_IsNull(it))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: field \"%s\" is null: write a number, or \"NaN\"/\"Infinity\" explicitly", where, key);
    return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" is not a number", where, key);
}

/* schema, run_id, N, tokens, bits, loss, schedule, status: what a fit needs is required (every
 * missing one named at once), the rest has defaults (docs/formats.md). */
static qp_status json_core(const cJSON *o, data_run *r, const char *name, long lineno, const char *where,
                           qp_error *err)
{
    qp_status st;
    char schema[64] = "", buf[64];
    if ((st = dj_get_string(o, "schema", 0, schema, sizeof schema, where, err))) return st;
    if (schema[0] && !strncmp(schema, "qatplan-run-", 12) && strcmp(schema, DATA_RUN_SCHEMA))
        return qp_fail(err, QP_ERR_PARSE, "%s: schema \"%s\" is not \"%s\": this qatplan reads only that version",
                       where, schema, DATA_RUN_SCHEMA);
    const char *key = NULL;
    const cJSON *id = json_alias(o, C_RUN_ID, &key);
    if (id && cJSON_IsNumber(id)) snprintf(r->run_id, sizeof r->run_id, "%.17g", id->valuedouble);
    else if (id && (st = dj_get_string(o, key, 1, r->run_id, sizeof r->run_id, where, err))) return st;
    else if (!id) { /* the file's name too: ids from two files must not collide as duplicates */
        const char *base = strrchr(name, '/');
        snprintf(r->run_id, sizeof r->run_id, "%s:line-%ld", base ? base + 1 : name, lineno);
    }
    double total, f, bits;
    if ((st = json_real(o, C_N, 1, &r->n_params, where, err)) || (st = json_real(o, C_DFP, 1, &r->d_fp, where, err)) ||
        (st = json_real(o, C_DQAT, 1, &r->d_qat, where, err)) || (st = json_real(o, C_DTOTAL, 1, &total, where, err)) ||
        (st = json_real(o, C_FRAC, 0, &f, where, err)) || (st = json_real(o, C_BITS, 0, &bits, where, err)) ||
        (st = json_real(o, C_LOSS, 0, &r->loss, where, err)))
        return st;
    if (isnan(r->d_fp) != isnan(r->d_qat)) { /* one phase and the total: the other phase follows */
        if (isnan(total))
            return qp_fail(err, QP_ERR_PARSE, "%s: %s is given without %s: give both, or the total tokens with "
                                              "either", where, isnan(r->d_fp) ? "d_qat" : "d_fp",
                           isnan(r->d_fp) ? "d_fp" : "d_qat");
        double *other = isnan(r->d_fp) ? &r->d_fp : &r->d_qat;
        *other = total - (isnan(r->d_fp) ? r->d_qat : r->d_fp);
        if (!(*other >= -1e-3 * fabs(total)))
            return qp_fail(err, QP_ERR_PARSE, "%s: one phase's tokens exceed the total tokens %.6g", where, total);
        if (*other < 0) *other = 0; /* printed values' rounding */
    }
    int has_loss = json_alias(o, C_LOSS, &key) != NULL, has_split = !isnan(r->d_fp) && !isnan(r->d_qat);
    int fp = bits >= DATA_FP_BITS; /* no cast before the range check below */
    char miss[600] = "";
    size_t k = 0;
    if (isnan(r->n_params)) k += (size_t)snprintf(miss + k, sizeof miss - k, "%sn_params", k ? ", " : "");
    if (!has_split && (isnan(total) || (isnan(f) && !fp)))
        k += (size_t)snprintf(miss + k, sizeof miss - k, "%sd_fp and d_qat (or tokens and qat_fraction)", k ? ", " : "");
    if (isnan(bits)) k += (size_t)snprintf(miss + k, sizeof miss - k, "%sbits", k ? ", " : "");
    if (!has_loss) k += (size_t)snprintf(miss + k, sizeof miss - k, "%sloss", k ? ", " : "");
    if (k) return qp_fail(err, QP_ERR_PARSE, "%s: missing %s: a run record needs N, tokens, bits and loss", where, miss);
    if (!(bits >= 1 && bits <= 32 && bits == floor(bits)))
        return qp_fail(err, QP_ERR_PARSE, "%s: field \"bits\" = %.17g must be a whole number 1..8, 16 or 32", where, bits);
    r->bits = (int)bits;
    if (!isnan(f) && !(f >= 0 && f <= 1))
        return qp_fail(err, QP_ERR_PARSE, "%s: the QAT fraction %.17g must be in [0, 1]", where, f);
    if (!has_split) split_total(r, total, isnan(f) ? 0 : f);
    else if ((st = split_consistent(r, total, f, where, err))) return st;
    r->schedule = data_schedule_resolve(r->bits, r->d_fp, r->d_qat, DATA_SCHED_CLASSIC);
    strcpy(buf, "");
    if ((st = dj_get_string(o, "schedule", 0, buf, sizeof buf, where, err))) return st;
    if (buf[0] && (st = data_schedule_parse(buf, &r->schedule, err))) {
        qp_error_prefix(err, "%s: ", where);
        return QP_ERR_PARSE;
    }
    strcpy(buf, "ok");
    if ((st = dj_get_string(o, "status", 0, buf, sizeof buf, where, err))) return st;
    if (!status_from_text(buf, &r->status)) {
        r->status = DATA_RUN_FAILED;
        snprintf(r->reason, sizeof r->reason, "status '%s'", buf);
    }
    return QP_OK;
}

/* The optional method fields (add_method_fields). An absent method reads as "" (= qat). */
static qp_status method_from_json(const cJSON *o, data_run *r, const char *where, qp_error *err)
{
    qp_status st;
    if ((st = dj_get_string(o, "method", 0, r->method, sizeof r->method, where, err))) return st;
    struct { const char *k; double *dst; } f[] = {
        {"lr_qat", &r->lr_qat}, {"loss_ptq", &r->loss_ptq}, {"flops_fp", &r->flops_fp},
        {"flops_qat", &r->flops_qat}, {"trainable_params_qat", &r->trainable_params_qat},
        {"wall_seconds_qat", &r->wall_seconds_qat}, {"peak_rss_bytes", &r->peak_rss_bytes},
        {"train_state_bytes", &r->train_state_bytes}, {"unfrozen_ratio", &r->unfrozen_ratio},
        {"unfrozen_ratio_eff", &r->unfrozen_ratio_eff}, {"refresh_tokens", &r->refresh_tokens},
        {"blockap_tokens", &r->blockap_tokens}, {"blockap_epochs", &r->blockap_epochs},
        {"e2e_tokens", &r->e2e_tokens}, {"blockap_mse", &r->blockap_mse}, {"flops_blockap", &r->flops_blockap},
        {"flops_e2eqp", &r->flops_e2eqp}, {"storage_bits_per_weight", &r->storage_bits_per_weight},
        {"train_state_bytes_blockap", &r->train_state_bytes_blockap},
        {"train_state_bytes_e2eqp", &r->train_state_bytes_e2eqp},
        {"peak_rss_bytes_blockap", &r->peak_rss_bytes_blockap},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if ((st = dj_get_real(o, f[i].k, 0, f[i].dst, where, err))) return st;
    if ((st = dj_get_string(o, "freeze_mode", 0, r->freeze_mode, sizeof r->freeze_mode, where, err))) return st;
    if ((st = dj_get_string(o, "init_checkpoint", 0, r->init_checkpoint, sizeof r->init_checkpoint, where, err)))
        return st;
    return dj_get_string(o, "trunk", 0, r->trunk, sizeof r->trunk, where, err);
}

static qp_status run_from_json(const cJSON *o, data_run *r, const char *name, long lineno, const char *where,
                               qp_error *err)
{
    qp_status st;
    data_run_init(r);
    if (!cJSON_IsObject(o)) return qp_fail(err, QP_ERR_PARSE, "%s: a run record must be a JSON object", where);
    if ((st = json_core(o, r, name, lineno, where, err))) return st;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (m) {
        long v;
        struct { const char *k; int *dst; } f[] = {
            {"n_layer", &r->shape.n_layer}, {"d_model", &r->shape.d_model}, {"n_head", &r->shape.n_head},
            {"n_kv_head", &r->shape.n_kv_head}, {"d_ff", &r->shape.d_ff}, {"context", &r->shape.context},
            {"vocab", &r->shape.vocab},
        };
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            v = 0;
            if ((st = dj_get_int(m, f[i].k, 0, 0, 1L << 30, &v, where, err))) return st;
            *f[i].dst = (int)v;
        }
    }
    if ((st = dj_get_real(o, "n_params_nonembed", 0, &r->n_params_nonembed, where, err))) return st;
    long eb = 0, gs = 0;
    if ((st = dj_get_int(o, "embed_bits", 0, 0, 32, &eb, where, err))) return st;
    if ((st = dj_get_int(o, "group_size", 0, 0, 1L << 30, &gs, where, err))) return st;
    r->embed_bits = (int)eb;
    r->group_size = (int)gs;
    if ((st = dj_get_string(o, "quantizer", 0, r->quantizer, sizeof r->quantizer, where, err))) return st;
    if ((st = dj_get_real(o, "loss_fp_switch", 0, &r->loss_fp_switch, where, err))) return st;
    if ((st = dj_get_real(o, "val_bpb", 0, &r->val_bpb, where, err))) return st;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (seed) {
        if (cJSON_IsString(seed)) {
            char *end = NULL;
            r->seed = strtoull(seed->valuestring, &end, 10);
            if (!*seed->valuestring || *end)
                return qp_fail(err, QP_ERR_PARSE, "%s: field \"seed\" must be a decimal integer", where);
        } else if (cJSON_IsNumber(seed) && seed->valuedouble >= 0 &&
                   seed->valuedouble == floor(seed->valuedouble) && seed->valuedouble < 9007199254740992.0) {
            r->seed = (uint64_t)seed->valuedouble;
        } else {
            return qp_fail(err, QP_ERR_PARSE, "%s: field \"seed\" must be a non-negative integer", where);
        }
    }
    if ((st = dj_get_string(o, "dataset", 0, r->dataset, sizeof r->dataset, where, err))) return st;
    if ((st = dj_get_string(o, "reason", 0, r->reason, sizeof r->reason, where, err))) return st;
    if ((st = dj_get_real(o, "wall_seconds", 0, &r->wall_seconds, where, err))) return st;
    if ((st = dj_get_string(o, "code_version", 0, r->code_version, sizeof r->code_version, where, err)))
        return st;
    if ((st = dj_get_real(o, "lr_peak", 0, &r->lr_peak, where, err))) return st;
    if ((st = dj_get_real(o, "batch_tokens", 0, &r->batch_tokens, where, err))) return st;
    if ((st = dj_get_real(o, "decay_frac", 0, &r->decay_frac, where, err))) return st;
    if ((st = dj_get_string(o, "decay_shape", 0, r->decay_shape, sizeof r->decay_shape, where, err)))
        return st;
    const cJSON *reset = cJSON_GetObjectItemCaseSensitive(o, "optimizer_reset");
    if (reset) {
        if (!cJSON_IsBool(reset))
            return qp_fail(err, QP_ERR_PARSE, "%s: field \"optimizer_reset\" must be true or false", where);
        r->optimizer_reset = cJSON_IsTrue(reset);
    }
    if ((st = dj_get_string(o, "device", 0, r->device, sizeof r->device, where, err))) return st;
    if ((st = dj_get_string(o, "precision", 0, r->precision, sizeof r->precision, where, err)))
        return st;
    if ((st = method_from_json(o, r, where, err))) return st;
    if ((st = dj_get_string(o, "gemm", 0, r->gemm, sizeof r->gemm, where, err))) return st;
    exclude_by_loss(r, 0);
    if ((st = data_run_validate(r, err))) {
        qp_error_prefix(err, "%s: ", where);
        return QP_ERR_PARSE;
    }
    return QP_OK;
}

qp_status data_runs_parse_jsonl(const char *text, const char *name, data_run_list *out,
                                qp_error *err)
{
    const char *p = skip_bom(text);
    long lineno = 0;
    size_t start_n = out->n;
    while (*p) {
        lineno++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *q = p;
        while (q < p + len && isspace((unsigned char)*q)) q++;
        if (q < p + len && *q != '#') {
            char where[600];
            snprintf(where, sizeof where, "%s:%ld", name, lineno);
            if (!nl) {
                /* A crash mid-write can only leave an unterminated last line; say so. */
                cJSON *probe = cJSON_ParseWithLength(p, len);
                if (!probe) {
                    out->n = start_n;
                    return qp_fail(err, QP_ERR_PARSE,
                                   "%s: the last line is incomplete (a write was cut off): remove it "
                                   "and rerun the missing run",
                                   where);
                }
                cJSON_Delete(probe);
            }
            const char *end = NULL;
            cJSON *o = cJSON_ParseWithLengthOpts(p, len, &end, 0);
            while (o && end && end < p + len && isspace((unsigned char)*end)) end++;
            if (o && end && end < p + len) { /* two records glued together, or junk after one */
                cJSON_Delete(o);
                out->n = start_n;
                return qp_fail(err, QP_ERR_PARSE, "%s: unexpected text after the record at column %ld: one record per line",
                               where, (long)(end - p + 1));
            }
            if (!o) {
                out->n = start_n;
                return qp_fail(err, QP_ERR_PARSE, "%s: not valid JSON near column %ld", where,
                               (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - p + 1 : 1));
            }
            data_run r;
            qp_status st = run_from_json(o, &r, name, lineno, where, err);
            cJSON_Delete(o);
            if (!st) st = data_run_list_push(out, &r, err);
            if (st) {
                out->n = start_n;
                return st;
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
    return QP_OK;
}

/* ---- CSV import ----------------------------------------------------------- */

/* Split one line in place at `delim`; fields may be double-quoted (no embedded quotes).
 * Blanks around fields are trimmed (tabs too, unless tabs separate the fields). */
static int split_csv(char *line, char delim, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || (*p == '\t' && delim != '\t')) p++;
        if (n == max) return -1;
        if (*p == '"') {
            fields[n++] = ++p;
            char *q = strchr(p, '"');
            if (!q) return -1;
            *q = '\0';
            p = q + 1;
            while (*p && *p != delim) p++;
        } else {
            fields[n++] = p;
            while (*p && *p != delim) p++;
        }
        char *end = p;
        int last = *p != delim;
        if (!last) *p++ = '\0';
        /* trim trailing blanks, and the CR of CRLF files on the last field */
        while (end > fields[n - 1] &&
               (end[-1] == ' ' || (end[-1] == '\t' && delim != '\t') || (last && end[-1] == '\r')))
            *--end = '\0';
        if (last) return n;
    }
}

/* Tabs when the header has more tabs than commas (outside quotes), else commas. */
static char csv_delimiter(const char *line)
{
    int tabs = 0, commas = 0, quoted = 0;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (*p == '"') quoted = !quoted;
        else if (!quoted) tabs += *p == '\t', commas += *p == ',';
    }
    return tabs > commas ? '\t' : ',';
}

/* A count cell: a plain number (0 allowed), an exponent, or a K/M/B/T suffix ("125M"). */
static qp_status cell_count(const char *s, const char *col, const char *where, double *out, qp_error *err)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end != s && !*end && isfinite(v) && v >= 0) return *out = v, QP_OK;
    qp_error e2 = {0};
    if (*s && !qp_parse_count(s, col, out, &e2)) return QP_OK;
    if (strstr(e2.msg, "suffix")) return qp_fail(err, QP_ERR_PARSE, "%s: %s", where, e2.msg); /* says which */
    return qp_fail(err, QP_ERR_PARSE, "%s: %s = '%s' is not a count: write e.g. 125000000, 1.25e8 or 125M", where,
                   col, s);
}

static qp_status cell_real(const char *s, const char *col, const char *where, double *out, qp_error *err)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end)
        return qp_fail(err, QP_ERR_PARSE, "%s: column %s = '%s' is not a number", where, col, s);
    *out = v;
    return QP_OK;
}

/* The loss cell: empty, NaN, inf, None or null read as a run without a usable loss. */
static qp_status cell_loss(const char *s, const char *col, const char *where, double *out, int *missing,
                           qp_error *err)
{
    *missing = !*s || !strcasecmp(s, "none") || !strcasecmp(s, "null") || !strcasecmp(s, "n/a");
    if (*missing) return *out = NAN, QP_OK;
    return cell_real(s, col, where, out, err);
}

/* Maps the header's columns to concepts; one error names every missing required column with
 * the names accepted for it. `hdr` gets each concept's column name as written. */
static qp_status csv_header(char **fields, int nf, int *col_of, const char *where, qp_error *err)
{
    for (int i = 0; i < nf; i++)
        for (int c = 0; c < C_COUNT; c++)
            for (int a = 0; a < ALIAS_MAX && col_alias[c][a]; a++)
                if (!strcasecmp(fields[i], col_alias[c][a])) {
                    if (col_of[c] >= 0)
                        return qp_fail(err, QP_ERR_PARSE, "%s: columns '%s' and '%s' both give %s: keep one",
                                       where, fields[col_of[c]], fields[i], col_alias[c][0]);
                    col_of[c] = i;
                }
    char miss[1400] = "", b1[160], b2[160], b3[160], b4[160];
    size_t k = 0;
    static const int req[] = {C_N, C_BITS, C_LOSS};
    for (int j = 0; j < 3; j++)
        if (col_of[req[j]] < 0)
            k += (size_t)snprintf(miss + k, sizeof miss - k, "%s%s (%s)", k ? "; " : "", col_alias[req[j]][0],
                                  alias_list(req[j], b1, sizeof b1));
    if (col_of[C_DTOTAL] < 0 && (col_of[C_DFP] < 0 || col_of[C_DQAT] < 0))
        k += (size_t)snprintf(miss + k, sizeof miss - k,
                              "%stokens (D_fp and D_qat: %s / %s; or total tokens: %s, with a QAT fraction: %s)",
                              k ? "; " : "", alias_list(C_DFP, b1, sizeof b1), alias_list(C_DQAT, b2, sizeof b2),
                              alias_list(C_DTOTAL, b3, sizeof b3), alias_list(C_FRAC, b4, sizeof b4));
    if (k)
        return qp_fail(err, QP_ERR_PARSE, "%s: the header lacks %s (names are case-insensitive)", where, miss);
    return QP_OK;
}

/* The token split of a row: D_fp and D_qat when both cells are filled, else total tokens and
 * the QAT fraction (0 for a full-precision run without one); both given must agree. */
static qp_status csv_tokens(char **fields, const int *col_of, char **hdr, const char *where, data_run *r,
                            qp_error *err)
{
    qp_status st;
#define CELL(c) (col_of[c] >= 0 && fields[col_of[c]][0] ? fields[col_of[c]] : NULL)
    const char *sfp = CELL(C_DFP), *sqat = CELL(C_DQAT), *stot = CELL(C_DTOTAL), *sf = CELL(C_FRAC);
#undef CELL
    double total = NAN, f = NAN;
    if (sfp && sqat && ((st = cell_count(sfp, hdr[C_DFP], where, &r->d_fp, err)) ||
                        (st = cell_count(sqat, hdr[C_DQAT], where, &r->d_qat, err))))
        return st;
    if (stot && (st = cell_count(stot, hdr[C_DTOTAL], where, &total, err))) return st;
    if (sf) {
        if ((st = cell_real(sf, hdr[C_FRAC], where, &f, err))) return st;
        if (!(f >= 0 && f <= 1))
            return qp_fail(err, QP_ERR_PARSE, "%s: %s = %s must be a fraction in [0, 1]", where, hdr[C_FRAC], sf);
    }
    if (sfp && sqat) return split_consistent(r, total, f, where, err);
    if (!stot)
        return qp_fail(err, QP_ERR_PARSE, "%s: no tokens: fill D_fp and D_qat, or total tokens and a QAT fraction",
                       where);
    if (!sf && !data_bits_is_fp(r->bits))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: a %d-bit run needs its QAT fraction: add a qat_fraction column (or D_fp and D_qat)",
                       where, r->bits);
    split_total(r, total, sf ? f : 0);
    return QP_OK;
}

/* Status and reason cells; an unknown status excludes the run as failed, saying which. */
static void csv_status(char **fields, const int *col_of, data_run *r)
{
    if (col_of[C_REASON] >= 0) snprintf(r->reason, sizeof r->reason, "%s", fields[col_of[C_REASON]]);
    const char *s = col_of[C_STATUS] >= 0 ? fields[col_of[C_STATUS]] : "";
    if (!*s || status_from_text(s, &r->status)) return;
    r->status = DATA_RUN_FAILED;
    if (!r->reason[0]) snprintf(r->reason, sizeof r->reason, "status '%s'", s);
}

/* One data row into r. */
static qp_status csv_row(char **fields, const int *col_of, char **hdr, const char *name, long lineno,
                         const char *where, data_run *r, qp_error *err)
{
    qp_status st;
    data_run_init(r);
    const char *sbits = fields[col_of[C_BITS]];
    double bits = 0;
    if (!strcasecmp(sbits, "fp16") || !strcasecmp(sbits, "bf16")) bits = 16;
    else if (!strcasecmp(sbits, "fp32")) bits = 32;
    else if ((st = cell_real(sbits, hdr[C_BITS], where, &bits, err))) return st;
    if (bits != floor(bits) || bits < 1 || bits > 32)
        return qp_fail(err, QP_ERR_PARSE, "%s: bits = %s must be a whole number 1..8, 16 or 32", where, sbits);
    r->bits = (int)bits;
    int no_loss = 0;
    if ((st = cell_count(fields[col_of[C_N]], hdr[C_N], where, &r->n_params, err)) ||
        (st = csv_tokens(fields, col_of, hdr, where, r, err)) ||
        (st = cell_loss(fields[col_of[C_LOSS]], hdr[C_LOSS], where, &r->loss, &no_loss, err)))
        return st;
    if (col_of[C_RUN_ID] >= 0 && fields[col_of[C_RUN_ID]][0])
        snprintf(r->run_id, sizeof r->run_id, "%s", fields[col_of[C_RUN_ID]]);
    else
        snprintf(r->run_id, sizeof r->run_id, "%s:%ld", name, lineno);
    if (data_run_is_fp(r)) {
        r->schedule = DATA_SCHED_FP_ONLY;
        snprintf(r->quantizer, sizeof r->quantizer, "none");
    } else if (col_of[C_SCHEDULE] >= 0 && fields[col_of[C_SCHEDULE]][0]) {
        if ((st = data_schedule_parse(fields[col_of[C_SCHEDULE]], &r->schedule, err))) {
            qp_error_prefix(err, "%s: ", where);
            return QP_ERR_PARSE;
        }
    } else {
        r->schedule = data_schedule_resolve(r->bits, r->d_fp, r->d_qat, DATA_SCHED_CLASSIC);
    }
    if (col_of[C_SEED] >= 0) r->seed = strtoull(fields[col_of[C_SEED]], NULL, 10);
    if (col_of[C_DATASET] >= 0) snprintf(r->dataset, sizeof r->dataset, "%s", fields[col_of[C_DATASET]]);
    csv_status(fields, col_of, r);
    exclude_by_loss(r, no_loss);
    if ((st = data_run_validate(r, err))) {
        qp_error_prefix(err, "%s: ", where);
        return QP_ERR_PARSE;
    }
    return QP_OK;
}

qp_status data_runs_parse_csv(const char *text, const char *name, data_run_list *out,
                              qp_error *err)
{
    size_t start_n = out->n;
    char *copy = strdup(skip_bom(text));
    if (!copy) return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", name);
    int col_of[C_COUNT];
    char *hdr[C_COUNT];
    for (int i = 0; i < C_COUNT; i++) col_of[i] = -1, hdr[i] = (char *)col_alias[i][0];
    int ncols = 0, have_header = 0;
    char delim = ',';
    long lineno = 0;
    qp_status st = QP_OK;
    char *save = NULL;
    char where[600];
    for (char *line = copy; line && !st; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl) *nl = '\0';
        lineno++;
        snprintf(where, sizeof where, "%s:%ld", name, lineno);
        char *q = line;
        while (isspace((unsigned char)*q)) q++;
        if (!*q || *q == '#') continue;
        if (!have_header) delim = csv_delimiter(line);
        char *fields[64];
        int nf = split_csv(line, delim, fields, 64);
        if (nf < 0) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: malformed CSV line (unterminated quote or over 64 columns)", where);
            break;
        }
        if (!have_header) {
            if ((st = csv_header(fields, nf, col_of, where, err))) break;
            for (int c = 0; c < C_COUNT; c++)
                if (col_of[c] >= 0) hdr[c] = fields[col_of[c]];
            ncols = nf;
            have_header = 1;
            continue;
        }
        if (nf != ncols) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: %d fields, but the header has %d", where, nf, ncols);
            break;
        }
        data_run r;
        if (!(st = csv_row(fields, col_of, hdr, name, lineno, where, &r, err))) st = data_run_list_push(out, &r, err);
    }
    if (!st && !have_header)
        st = qp_fail(err, QP_ERR_PARSE,
                     "%s: empty CSV: the first line must be a header naming N, tokens, bits and loss", name);
    free(copy);
    if (st) out->n = start_n;
    return st;
}

qp_status data_runs_read(const char *path, data_run_list *out, qp_error *err)
{
    if (qp_is_url(path)) { /* download to the cache (data/fetch.c), then read that file */
        char *local = NULL;
        qp_status ust = data_open_input(path, NULL, &local, err);
        if (!ust) ust = data_runs_read(local, out, err);
        free(local);
        return ust;
    }
    char *text = NULL;
    qp_status st = qp_read_file(path, &text, NULL, err);
    if (st) return st;
    size_t n = strlen(path);
    int is_csv = n >= 4 && (!strcasecmp(path + n - 4, ".csv") || !strcasecmp(path + n - 4, ".tsv"));
    if (!is_csv && !strstr(path, ".json")) {
        /* No telling extension: JSON lines start with '{'. */
        const char *p = skip_bom(text);
        while (isspace((unsigned char)*p)) p++;
        is_csv = *p && *p != '{' && *p != '#';
    }
    st = is_csv ? data_runs_parse_csv(text, path, out, err) : data_runs_parse_jsonl(text, path, out, err);
    free(text);
    return st;
}
