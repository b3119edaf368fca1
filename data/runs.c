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
    r->schedule = DATA_SCHED_CLASSIC;
    r->status = DATA_RUN_OK;
}

double data_run_tokens(const data_run *r) { return r->d_fp + r->d_qat; }

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

/* ---- reading JSONL ------------------------------------------------------- */

static qp_status run_from_json(const cJSON *o, data_run *r, const char *where, qp_error *err)
{
    qp_status st;
    data_run_init(r);
    if (!cJSON_IsObject(o)) return qp_fail(err, QP_ERR_PARSE, "%s: a run record must be a JSON object", where);
    char schema[64] = "";
    if ((st = dj_get_string(o, "schema", 1, schema, sizeof schema, where, err))) return st;
    if (strcmp(schema, DATA_RUN_SCHEMA))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: schema \"%s\" is not \"%s\": this qatplan reads only that version "
                       "(import other data as CSV)",
                       where, schema, DATA_RUN_SCHEMA);
    if ((st = dj_get_string(o, "run_id", 1, r->run_id, sizeof r->run_id, where, err))) return st;
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
    if ((st = dj_get_real(o, "n_params", 1, &r->n_params, where, err))) return st;
    if ((st = dj_get_real(o, "n_params_nonembed", 0, &r->n_params_nonembed, where, err))) return st;
    if ((st = dj_get_real(o, "d_fp", 1, &r->d_fp, where, err))) return st;
    if ((st = dj_get_real(o, "d_qat", 1, &r->d_qat, where, err))) return st;
    long bits = 0, eb = 0, gs = 0;
    if ((st = dj_get_int(o, "bits", 1, 1, 32, &bits, where, err))) return st;
    if ((st = dj_get_int(o, "embed_bits", 0, 0, 32, &eb, where, err))) return st;
    if ((st = dj_get_int(o, "group_size", 0, 0, 1L << 30, &gs, where, err))) return st;
    r->bits = (int)bits;
    r->embed_bits = (int)eb;
    r->group_size = (int)gs;
    if ((st = dj_get_string(o, "quantizer", 0, r->quantizer, sizeof r->quantizer, where, err))) return st;
    char buf[64] = "classic";
    if ((st = dj_get_string(o, "schedule", 1, buf, sizeof buf, where, err))) return st;
    if ((st = data_schedule_parse(buf, &r->schedule, err))) {
        qp_error_prefix(err, "%s: ", where);
        return QP_ERR_PARSE;
    }
    if ((st = dj_get_real(o, "loss", 1, &r->loss, where, err))) return st;
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
    strcpy(buf, "ok");
    if ((st = dj_get_string(o, "status", 1, buf, sizeof buf, where, err))) return st;
    int found = 0;
    for (int i = 0; i < DATA_RUN_STATUS_COUNT_; i++)
        if (!strcmp(buf, status_names[i])) {
            r->status = (data_run_status)i;
            found = 1;
        }
    if (!found)
        return qp_fail(err, QP_ERR_PARSE, "%s: status \"%s\" is not ok, diverged or failed", where, buf);
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
    if ((st = data_run_validate(r, err))) {
        qp_error_prefix(err, "%s: ", where);
        return QP_ERR_PARSE;
    }
    return QP_OK;
}

qp_status data_runs_parse_jsonl(const char *text, const char *name, data_run_list *out,
                                qp_error *err)
{
    const char *p = text;
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
            qp_status st = run_from_json(o, &r, where, err);
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

/* Split one CSV line in place; fields may be double-quoted (no embedded quotes). */
static int split_csv(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (n == max) return -1;
        if (*p == '"') {
            fields[n++] = ++p;
            char *q = strchr(p, '"');
            if (!q) return -1;
            *q = '\0';
            p = q + 1;
            while (*p && *p != ',') p++;
        } else {
            fields[n++] = p;
            while (*p && *p != ',') p++;
        }
        char *end = p;
        if (*p == ',') *p++ = '\0';
        else {
            /* trim trailing blanks and the CR of CRLF files on the last field */
            while (end > fields[n - 1] && (end[-1] == ' ' || end[-1] == '\r' || end[-1] == '\t')) *--end = '\0';
            return n;
        }
        char *t = end;
        while (t > fields[n - 1] && (t[-1] == ' ' || t[-1] == '\t')) *--t = '\0';
    }
}

enum { C_N, C_DFP, C_DQAT, C_BITS, C_LOSS, C_RUN_ID, C_SCHEDULE, C_SEED, C_DATASET, C_STATUS, C_COUNT };
static const char *csv_cols[C_COUNT] = {"N", "D_fp", "D_qat", "bits", "loss",
                                        "run_id", "schedule", "seed", "dataset", "status"};

static qp_status csv_real(const char *s, const char *col, const char *where, double *out, qp_error *err)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end)
        return qp_fail(err, QP_ERR_PARSE, "%s: column %s = '%s' is not a number", where, col, s);
    *out = v;
    return QP_OK;
}

qp_status data_runs_parse_csv(const char *text, const char *name, data_run_list *out,
                              qp_error *err)
{
    size_t start_n = out->n;
    char *copy = strdup(text);
    if (!copy) return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", name);
    int col_of[C_COUNT];
    for (int i = 0; i < C_COUNT; i++) col_of[i] = -1;
    int ncols = 0, have_header = 0;
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
        char *fields[64];
        int nf = split_csv(line, fields, 64);
        if (nf < 0) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: malformed CSV line (unterminated quote or over 64 columns)", where);
            break;
        }
        if (!have_header) {
            for (int i = 0; i < nf; i++)
                for (int c = 0; c < C_COUNT; c++)
                    if (!strcasecmp(fields[i], csv_cols[c])) col_of[c] = i;
            for (int c = 0; c <= C_LOSS; c++)
                if (col_of[c] < 0) {
                    st = qp_fail(err, QP_ERR_PARSE,
                                 "%s: the CSV header has no column '%s': the header must name N, D_fp, "
                                 "D_qat, bits, loss",
                                 where, csv_cols[c]);
                    break;
                }
            ncols = nf;
            have_header = 1;
            continue;
        }
        if (nf != ncols) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: %d fields, but the header has %d", where, nf, ncols);
            break;
        }
        data_run r;
        data_run_init(&r);
        double bits = 0;
        if ((st = csv_real(fields[col_of[C_N]], "N", where, &r.n_params, err)) ||
            (st = csv_real(fields[col_of[C_DFP]], "D_fp", where, &r.d_fp, err)) ||
            (st = csv_real(fields[col_of[C_DQAT]], "D_qat", where, &r.d_qat, err)) ||
            (st = csv_real(fields[col_of[C_BITS]], "bits", where, &bits, err)) ||
            (st = csv_real(fields[col_of[C_LOSS]], "loss", where, &r.loss, err)))
            break;
        if (bits != floor(bits) || bits < 1 || bits > 32) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: bits = %s must be a whole number 1..8, 16 or 32", where,
                         fields[col_of[C_BITS]]);
            break;
        }
        r.bits = (int)bits;
        if (col_of[C_RUN_ID] >= 0)
            snprintf(r.run_id, sizeof r.run_id, "%s", fields[col_of[C_RUN_ID]]);
        else
            snprintf(r.run_id, sizeof r.run_id, "%s:%ld", name, lineno);
        if (data_run_is_fp(&r)) {
            r.schedule = DATA_SCHED_FP_ONLY;
            snprintf(r.quantizer, sizeof r.quantizer, "none");
        } else if (col_of[C_SCHEDULE] >= 0 && fields[col_of[C_SCHEDULE]][0]) {
            if ((st = data_schedule_parse(fields[col_of[C_SCHEDULE]], &r.schedule, err))) {
                qp_error_prefix(err, "%s: ", where);
                st = QP_ERR_PARSE;
                break;
            }
        } else {
            r.schedule = data_schedule_resolve(r.bits, r.d_fp, r.d_qat, DATA_SCHED_CLASSIC);
        }
        if (col_of[C_SEED] >= 0) r.seed = strtoull(fields[col_of[C_SEED]], NULL, 10);
        if (col_of[C_DATASET] >= 0) snprintf(r.dataset, sizeof r.dataset, "%s", fields[col_of[C_DATASET]]);
        if (col_of[C_STATUS] >= 0 && fields[col_of[C_STATUS]][0]) {
            const char *s = fields[col_of[C_STATUS]];
            int found = 0;
            for (int i = 0; i < DATA_RUN_STATUS_COUNT_; i++)
                if (!strcasecmp(s, status_names[i])) {
                    r.status = (data_run_status)i;
                    found = 1;
                }
            if (!found) {
                st = qp_fail(err, QP_ERR_PARSE, "%s: status '%s' is not ok, diverged or failed", where, s);
                break;
            }
        }
        if ((st = data_run_validate(&r, err))) {
            qp_error_prefix(err, "%s: ", where);
            st = QP_ERR_PARSE;
            break;
        }
        st = data_run_list_push(out, &r, err);
    }
    if (!st && !have_header)
        st = qp_fail(err, QP_ERR_PARSE, "%s: empty CSV: the first line must be a header naming N, D_fp, D_qat, bits, loss", name);
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
    int is_csv = n >= 4 && !strcasecmp(path + n - 4, ".csv");
    if (!is_csv && !strstr(path, ".json")) {
        /* No telling extension: JSON lines start with '{'. */
        const char *p = text;
        while (isspace((unsigned char)*p)) p++;
        is_csv = *p && *p != '{' && *p != '#';
    }
    st = is_csv ? data_runs_parse_csv(text, path, out, err) : data_runs_parse_jsonl(text, path, out, err);
    free(text);
    return st;
}
