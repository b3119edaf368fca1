/* Law files: JSON with the form, coefficients by name, provenance and optional bootstrap.
 * Format: docs/formats.md. Unknown forms, missing or unknown coefficients and non-finite
 * values are refused. */
#include "data.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"

static const char *form_names[DATA_LAW_FORM_COUNT_] = {"chinchilla", "qat", "fraction", "penalty", "efficiency"};
static const char *unit_names[DATA_UNITS_COUNT_] = {"unknown", "nats_per_token", "nats_per_byte"};
static const char *chinchilla_coefs[] = {"E", "A", "B", "alpha", "beta"};
static const char *qat_coefs[] = {"E", "A", "B", "alpha", "beta", "theta", "kappa", "phi",
                                  "chi", "psi", "omega", "lambda", "mu", "xi", "nu", "rho"};
static const char *fraction_coefs[] = {"a"};
static const char *efficiency_coefs[] = {"eta_1", "eta_2", "eta_3", "eta_4", "eta_5", "eta_6", "eta_7", "eta_8"};

const char *data_law_form_name(data_law_form f)
{
    return (unsigned)f < DATA_LAW_FORM_COUNT_ ? form_names[f] : "unknown";
}

qp_status data_law_form_parse(const char *name, data_law_form *out, qp_error *err)
{
    for (int i = 0; i < DATA_LAW_FORM_COUNT_; i++)
        if (!strcmp(name, form_names[i])) {
            *out = (data_law_form)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_INPUT, "unknown law form '%s': qatplan knows chinchilla, qat, fraction, penalty and efficiency",
                   name);
}

const char *data_loss_units_name(data_loss_units u)
{
    return (unsigned)u < DATA_UNITS_COUNT_ ? unit_names[u] : "unknown";
}

qp_status data_loss_units_parse(const char *name, data_loss_units *out, qp_error *err)
{
    for (int i = 0; i < DATA_UNITS_COUNT_; i++)
        if (!strcmp(name, unit_names[i])) {
            *out = (data_loss_units)i;
            return QP_OK;
        }
    return qp_fail(err, QP_ERR_INPUT, "unknown loss unit '%s': use nats_per_token or nats_per_byte", name);
}

int data_law_ncoef(data_law_form f)
{
    switch (f) {
    case DATA_LAW_CHINCHILLA: return 5;
    case DATA_LAW_QAT: return 16;
    case DATA_LAW_FRACTION: return 1;
    case DATA_LAW_PENALTY: return 11;
    case DATA_LAW_EFFICIENCY: return 8;
    case DATA_LAW_FORM_COUNT_: break;
    }
    return 0;
}

const char *data_law_coef_name(data_law_form f, int i)
{
    if (i < 0 || i >= data_law_ncoef(f)) return NULL;
    switch (f) {
    case DATA_LAW_CHINCHILLA: return chinchilla_coefs[i];
    case DATA_LAW_QAT: return qat_coefs[i];
    case DATA_LAW_FRACTION: return fraction_coefs[i];
    case DATA_LAW_PENALTY: return qat_coefs[5 + i]; /* theta..rho: the qat form's penalty terms */
    case DATA_LAW_EFFICIENCY: return efficiency_coefs[i];
    case DATA_LAW_FORM_COUNT_: break;
    }
    return NULL;
}

int data_law_coef_index(data_law_form f, const char *name)
{
    for (int i = 0; i < data_law_ncoef(f); i++)
        if (!strcmp(name, data_law_coef_name(f, i))) return i;
    return -1;
}

void data_law_init(data_law *law, data_law_form form)
{
    memset(law, 0, sizeof *law);
    law->form = form;
    data_law_provenance *p = &law->prov;
    p->n_min = p->n_max = p->d_min = p->d_max = p->s_min = p->s_max = NAN;
    p->rmse_log = p->mae_log = p->r2 = p->huber_objective = p->loo_rmse_log = NAN;
}

void data_law_free(data_law *law)
{
    if (!law) return;
    free(law->samples);
    law->samples = NULL;
    law->n_samples = 0;
}

qp_status data_law_copy(data_law *dst, const data_law *src, qp_error *err)
{
    *dst = *src;
    dst->samples = NULL;
    if (src->n_samples > 0 && src->samples) {
        size_t n = (size_t)src->n_samples * (size_t)data_law_ncoef(src->form);
        dst->samples = malloc(n * sizeof(double));
        if (!dst->samples) return qp_fail(err, QP_ERR_NOMEM, "out of memory copying a law");
        memcpy(dst->samples, src->samples, n * sizeof(double));
    }
    return QP_OK;
}

qp_status data_law_validate(const data_law *law, qp_error *err)
{
    if ((unsigned)law->form >= DATA_LAW_FORM_COUNT_)
        return qp_fail(err, QP_ERR_INPUT, "law has an unknown form");
    int n = data_law_ncoef(law->form);
    /* a level outside (0, 1) means nothing, and a non-finite one would be written as null */
    if (law->has_interval && !(law->ci_level > 0 && law->ci_level < 1))
        return qp_fail(err, QP_ERR_NUMERIC, "the law's confidence level %g is not in (0, 1): write it as a "
                                            "fraction, e.g. 0.95", law->ci_level);
    for (int i = 0; i < n; i++) {
        if (!isfinite(law->coef[i]))
            return qp_fail(err, QP_ERR_NUMERIC, "law coefficient %s is not finite (%g): refusing to use or write it",
                           data_law_coef_name(law->form, i), law->coef[i]);
        if (law->has_interval && (!isfinite(law->ci_lo[i]) || !isfinite(law->ci_hi[i])))
            return qp_fail(err, QP_ERR_NUMERIC, "law coefficient %s has a non-finite confidence interval",
                           data_law_coef_name(law->form, i));
    }
    if (law->form == DATA_LAW_EFFICIENCY) {
        /* an eta scales QAT tokens: negative means nothing, and the law is one method's */
        for (int i = 0; i < n; i++)
            if (law->coef[i] < 0)
                return qp_fail(err, QP_ERR_INPUT, "efficiency law coefficient %s = %g is negative: an eta is a "
                                                  "token-efficiency factor >= 0 (0 = not fitted)",
                               data_law_coef_name(law->form, i), law->coef[i]);
        if (!law->prov.run_method[0] || !strcmp(law->prov.run_method, "qat"))
            return qp_fail(err, QP_ERR_INPUT, "an efficiency law must name its training method (provenance "
                                              "run_method, e.g. \"efqat\"; qat is the reference itself)");
    }
    for (long k = 0; k < (long)law->n_samples * n; k++)
        if (!isfinite(law->samples[k]))
            return qp_fail(err, QP_ERR_NUMERIC, "bootstrap sample %ld of the law is not finite", k / n);
    return QP_OK;
}

static void add_opt_real(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) cJSON_AddItemToObject(o, key, dj_number(v));
}

char *data_law_to_json(const data_law *law, qp_error *err)
{
    if (data_law_validate(law, err)) return NULL;
    int n = data_law_ncoef(law->form);
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        qp_fail(err, QP_ERR_NOMEM, "out of memory formatting a law");
        return NULL;
    }
    cJSON_AddStringToObject(o, "schema", DATA_LAW_SCHEMA);
    cJSON_AddStringToObject(o, "form", data_law_form_name(law->form));
    cJSON *c = cJSON_AddObjectToObject(o, "coefficients");
    for (int i = 0; i < n; i++) cJSON_AddItemToObject(c, data_law_coef_name(law->form, i), dj_number(law->coef[i]));
    if (law->units != DATA_UNITS_UNKNOWN) {
        cJSON *u = cJSON_AddObjectToObject(o, "units");
        cJSON_AddStringToObject(u, "loss", data_loss_units_name(law->units));
        if (law->vocab > 0) cJSON_AddNumberToObject(u, "vocab", law->vocab);
        if (law->tokenizer[0]) cJSON_AddStringToObject(u, "tokenizer", law->tokenizer);
    }
    if (law->has_interval) {
        cJSON *iv = cJSON_AddObjectToObject(o, "intervals");
        cJSON_AddNumberToObject(iv, "level", law->ci_level);
        for (int i = 0; i < n; i++) {
            double pair[2] = {law->ci_lo[i], law->ci_hi[i]};
            cJSON_AddItemToObject(iv, data_law_coef_name(law->form, i), dj_number_array(pair, 2));
        }
    }
    const data_law_provenance *p = &law->prov;
    cJSON *pr = cJSON_AddObjectToObject(o, "provenance");
    cJSON_AddStringToObject(pr, "source", p->source);
    cJSON_AddStringToObject(pr, "method", p->method);
    if (p->created[0]) cJSON_AddStringToObject(pr, "created", p->created);
    if (p->code_version[0]) cJSON_AddStringToObject(pr, "code_version", p->code_version);
    cJSON_AddNumberToObject(pr, "n_runs", p->n_runs);
    cJSON_AddNumberToObject(pr, "n_excluded", p->n_excluded);
    if (p->run_method[0]) cJSON_AddStringToObject(pr, "run_method", p->run_method);
    if (isfinite(p->n_min) && isfinite(p->n_max)) {
        double r[2] = {p->n_min, p->n_max};
        cJSON_AddItemToObject(pr, "n_params_range", dj_number_array(r, 2));
    }
    if (isfinite(p->d_min) && isfinite(p->d_max)) {
        double r[2] = {p->d_min, p->d_max};
        cJSON_AddItemToObject(pr, "tokens_range", dj_number_array(r, 2));
    }
    if (isfinite(p->s_min) && isfinite(p->s_max)) {
        double r[2] = {p->s_min, p->s_max};
        cJSON_AddItemToObject(pr, "s_total_range", dj_number_array(r, 2));
    }
    if (p->n_bits > 0) cJSON_AddItemToObject(pr, "bits", cJSON_CreateIntArray(p->bits, p->n_bits));
    cJSON *q = cJSON_CreateObject();
    add_opt_real(q, "rmse_log", p->rmse_log);
    add_opt_real(q, "mae_log", p->mae_log);
    add_opt_real(q, "r2", p->r2);
    add_opt_real(q, "huber_objective", p->huber_objective);
    add_opt_real(q, "loo_rmse_log", p->loo_rmse_log);
    if (p->starts > 0) {
        cJSON_AddNumberToObject(q, "starts", p->starts);
        cJSON_AddNumberToObject(q, "starts_at_best", p->starts_at_best);
    }
    if (cJSON_GetArraySize(q) > 0) cJSON_AddItemToObject(pr, "quality", q);
    else cJSON_Delete(q);
    if (law->n_samples > 0) {
        cJSON *b = cJSON_AddObjectToObject(o, "bootstrap");
        cJSON_AddNumberToObject(b, "n_samples", law->n_samples);
        cJSON *arr = cJSON_AddArrayToObject(b, "samples");
        for (int s = 0; s < law->n_samples; s++)
            cJSON_AddItemToArray(arr, dj_number_array(law->samples + (size_t)s * (size_t)n, n));
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) qp_fail(err, QP_ERR_NOMEM, "out of memory formatting a law");
    return text;
}

static qp_status get_range(const cJSON *pr, const char *key, double *lo, double *hi, const char *where,
                           qp_error *err)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pr, key);
    if (!r) return QP_OK;
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(r, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(r, 1)))
        return qp_fail(err, QP_ERR_PARSE, "%s: provenance.%s must be [min, max]", where, key);
    *lo = cJSON_GetArrayItem(r, 0)->valuedouble;
    *hi = cJSON_GetArrayItem(r, 1)->valuedouble;
    return QP_OK;
}

/* Optional "units": {"loss": "nats_per_token", "vocab": 50304, "tokenizer": "GPT-2 BPE"}. */
static qp_status parse_units(const cJSON *o, data_law *law, const char *name, qp_error *err)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "units");
    if (!u) return QP_OK;
    if (!cJSON_IsObject(u)) return qp_fail(err, QP_ERR_PARSE, "%s: \"units\" must be an object", name);
    char buf[32] = "";
    qp_status st = dj_get_string(u, "loss", 1, buf, sizeof buf, name, err);
    if (!st && (st = data_loss_units_parse(buf, &law->units, err))) {
        qp_error_prefix(err, "%s: ", name);
        return QP_ERR_PARSE;
    }
    long v = 0;
    if (!st) st = dj_get_int(u, "vocab", 0, 0, 1L << 30, &v, name, err);
    law->vocab = (int)v;
    if (!st) st = dj_get_string(u, "tokenizer", 0, law->tokenizer, sizeof law->tokenizer, name, err);
    return st;
}

/* The "coefficients" object: every coefficient of the form, nothing else. */
static qp_status parse_coefficients(const cJSON *o, data_law *law, const char *name, qp_error *err)
{
    data_law_form form = law->form;
    int n = data_law_ncoef(form);
    qp_status st = QP_OK;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "coefficients");
    if (!cJSON_IsObject(c)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: missing \"coefficients\" object", name);
        return st;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, c) {
        if (data_law_coef_index(form, it->string) < 0) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: coefficient \"%s\" is not part of the %s form", name,
                         it->string, data_law_form_name(form));
            return st;
        }
    }
    for (int i = 0; i < n; i++) {
        const char *cn = data_law_coef_name(form, i);
        if (!cJSON_GetObjectItemCaseSensitive(c, cn)) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: the %s form needs coefficient \"%s\", which is missing", name,
                         data_law_form_name(form), cn);
            return st;
        }
        if ((st = dj_get_real(c, cn, 1, &law->coef[i], name, err))) return st;
    }
    return QP_OK;
}

/* The "provenance" object (present: checked by the caller). */
static qp_status parse_provenance(const cJSON *pr, data_law_provenance *p, const char *name, qp_error *err)
{
    qp_status st = QP_OK;
    const cJSON *it;
    long v = 0;
    if ((st = dj_get_string(pr, "source", 1, p->source, sizeof p->source, name, err)) ||
        (st = dj_get_string(pr, "method", 0, p->method, sizeof p->method, name, err)) ||
        (st = dj_get_string(pr, "created", 0, p->created, sizeof p->created, name, err)) ||
        (st = dj_get_string(pr, "code_version", 0, p->code_version, sizeof p->code_version, name, err)) ||
        (st = dj_get_string(pr, "run_method", 0, p->run_method, sizeof p->run_method, name, err)) ||
        (st = get_range(pr, "n_params_range", &p->n_min, &p->n_max, name, err)) ||
        (st = get_range(pr, "tokens_range", &p->d_min, &p->d_max, name, err)) ||
        (st = get_range(pr, "s_total_range", &p->s_min, &p->s_max, name, err)))
        return st;
    if ((st = dj_get_int(pr, "n_runs", 0, 0, INT_MAX, &v, name, err))) return st;
    p->n_runs = (int)v;
    v = 0;
    if ((st = dj_get_int(pr, "n_excluded", 0, 0, INT_MAX, &v, name, err))) return st;
    p->n_excluded = (int)v;
    const cJSON *bits = cJSON_GetObjectItemCaseSensitive(pr, "bits");
    if (bits) {
        if (!cJSON_IsArray(bits) || cJSON_GetArraySize(bits) > 16) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: provenance.bits must be an array of at most 16 bit widths", name);
            return st;
        }
        cJSON_ArrayForEach(it, bits) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 32) {
                st = qp_fail(err, QP_ERR_PARSE, "%s: provenance.bits holds a value that is not a bit width", name);
                return st;
            }
            p->bits[p->n_bits++] = (int)it->valuedouble;
        }
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(pr, "quality");
    if (q) {
        if ((st = dj_get_real(q, "rmse_log", 0, &p->rmse_log, name, err)) ||
            (st = dj_get_real(q, "mae_log", 0, &p->mae_log, name, err)) ||
            (st = dj_get_real(q, "r2", 0, &p->r2, name, err)) ||
            (st = dj_get_real(q, "huber_objective", 0, &p->huber_objective, name, err)) ||
            (st = dj_get_real(q, "loo_rmse_log", 0, &p->loo_rmse_log, name, err)))
            return st;
        v = 0;
        if ((st = dj_get_int(q, "starts", 0, 0, INT_MAX, &v, name, err))) return st;
        p->starts = (int)v;
        v = 0;
        if ((st = dj_get_int(q, "starts_at_best", 0, 0, INT_MAX, &v, name, err))) return st;
        p->starts_at_best = (int)v;
    }
    return QP_OK;
}

/* The "bootstrap" object's samples, if any: n coefficients each. */
static qp_status parse_samples(const cJSON *o, data_law *law, const char *name, qp_error *err)
{
    qp_status st = QP_OK;
    int n = data_law_ncoef(law->form);
    const cJSON *it;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "bootstrap");
    if (b) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(b, "samples");
        if (!cJSON_IsArray(arr)) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: bootstrap.samples must be an array", name);
            return st;
        }
        int ns = cJSON_GetArraySize(arr);
        law->samples = ns ? malloc((size_t)ns * (size_t)n * sizeof(double)) : NULL;
        if (ns && !law->samples) {
            st = qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", name);
            return st;
        }
        int s = 0;
        cJSON_ArrayForEach(it, arr) {
            if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n) {
                st = qp_fail(err, QP_ERR_PARSE, "%s: bootstrap sample %d must hold %d coefficients", name, s, n);
                return st;
            }
            for (int i = 0; i < n; i++) {
                const cJSON *x = cJSON_GetArrayItem(it, i);
                if (!cJSON_IsNumber(x)) {
                    st = qp_fail(err, QP_ERR_PARSE, "%s: bootstrap sample %d holds a non-number", name, s);
                    return st;
                }
                law->samples[(size_t)s * (size_t)n + (size_t)i] = x->valuedouble;
            }
            s++;
        }
        law->n_samples = ns;
    }
    return QP_OK;
}

qp_status data_law_parse(const char *json, const char *name, data_law *out, qp_error *err)
{
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithOpts(json, &end, 0);
    if (!o) return qp_fail(err, QP_ERR_PARSE, "%s: not valid JSON", name);
    while (end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end && *end) { /* a law followed by anything is a damaged or concatenated file */
        cJSON_Delete(o);
        return qp_fail(err, QP_ERR_PARSE, "%s: unexpected text after the JSON object (byte %ld): a law file holds one object",
                       name, (long)(end - json));
    }
    qp_status st = QP_OK;
    char buf[64] = "";
    data_law law;
    data_law_init(&law, DATA_LAW_CHINCHILLA);
    if (!cJSON_IsObject(o)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: a law file must be a JSON object", name);
        goto done;
    }
    if ((st = dj_get_string(o, "schema", 1, buf, sizeof buf, name, err))) goto done;
    if (strcmp(buf, DATA_LAW_SCHEMA)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: schema \"%s\" is not \"%s\"", name, buf, DATA_LAW_SCHEMA);
        goto done;
    }
    if ((st = dj_get_string(o, "form", 1, buf, sizeof buf, name, err))) goto done;
    data_law_form form = DATA_LAW_CHINCHILLA;
    if ((st = data_law_form_parse(buf, &form, err))) {
        qp_error_prefix(err, "%s: ", name);
        st = QP_ERR_PARSE;
        goto done;
    }
    data_law_init(&law, form);
    int n = data_law_ncoef(form);
    if ((st = parse_coefficients(o, &law, name, err))) goto done;
    if ((st = parse_units(o, &law, name, err))) goto done;
    const cJSON *iv = cJSON_GetObjectItemCaseSensitive(o, "intervals");
    if (iv) {
        law.has_interval = 1;
        law.ci_level = 0.95;
        if ((st = dj_get_real(iv, "level", 0, &law.ci_level, name, err))) goto done;
        for (int i = 0; i < n; i++)
            if ((st = get_range(iv, data_law_coef_name(form, i), &law.ci_lo[i], &law.ci_hi[i], name, err)))
                goto done;
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "provenance");
    if (!cJSON_IsObject(pr)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: missing \"provenance\": a law must say where it came from", name);
        goto done;
    }
    if ((st = parse_provenance(pr, &law.prov, name, err))) goto done;
    if ((st = parse_samples(o, &law, name, err))) goto done;
    if ((st = data_law_validate(&law, err))) {
        qp_error_prefix(err, "%s: ", name);
        st = QP_ERR_PARSE;
        goto done;
    }
done:
    cJSON_Delete(o);
    if (st) {
        data_law_free(&law);
        return st;
    }
    *out = law;
    return QP_OK;
}

qp_status data_law_read(const char *path, data_law *out, qp_error *err)
{
    if (qp_is_url(path)) { /* download to the cache (data/fetch.c), then read that file */
        char *local = NULL;
        qp_status ust = data_open_input(path, NULL, &local, err);
        if (!ust) ust = data_law_read(local, out, err);
        free(local);
        return ust;
    }
    char *text = NULL;
    size_t len = 0;
    qp_status st = qp_read_file(path, &text, &len, err);
    if (st) return st;
    if (strlen(text) != len) /* the parser would stop at the NUL and ignore the rest */
        st = qp_fail(err, QP_ERR_PARSE, "%s: a NUL byte at offset %zu: a law file is JSON text", path, strlen(text));
    else st = data_law_parse(text, path, out, err);
    free(text);
    return st;
}

qp_status data_law_write(const char *path, const data_law *law, qp_error *err)
{
    char *text = data_law_to_json(law, err);
    if (!text) return err ? err->status : QP_ERR_NUMERIC;
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    qp_status st = qp_write_file_atomic(path, withnl, len + 1, err);
    free(withnl);
    return st;
}
