#include "json_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *dj_number(double v)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    return cJSON_CreateRaw(buf);
}

cJSON *dj_number_array(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, dj_number(v[i]));
    return a;
}

int dj_add_real(cJSON *obj, const char *key, double v)
{
    if (isfinite(v)) return cJSON_AddItemToObject(obj, key, dj_number(v));
    return cJSON_AddStringToObject(obj, key, isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")) !=
           NULL;
}

qp_status dj_get_real(const cJSON *obj, const char *key, int required, double *out,
                      const char *where, qp_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) {
        if (required)
            return qp_fail(err, QP_ERR_PARSE, "%s: missing field \"%s\": every record needs it", where,
                           key);
        return QP_OK;
    }
    if (cJSON_IsNumber(it)) {
        *out = it->valuedouble;
        return QP_OK;
    }
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring;
        if (!strcmp(s, "NaN")) { *out = NAN; return QP_OK; }
        if (!strcmp(s, "Infinity")) { *out = INFINITY; return QP_OK; }
        if (!strcmp(s, "-Infinity")) { *out = -INFINITY; return QP_OK; }
    }
    if (cJSON_IsNull(it))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: field \"%s\" is null: write a number, or \"NaN\"/\"Infinity\" explicitly",
                       where, key);
    return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" is not a number", where, key);
}

qp_status dj_get_int(const cJSON *obj, const char *key, int required, long lo, long hi, long *out,
                     const char *where, qp_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) {
        if (required)
            return qp_fail(err, QP_ERR_PARSE, "%s: missing field \"%s\": every record needs it", where,
                           key);
        return QP_OK;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble != floor(it->valuedouble))
        return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" must be a whole number", where, key);
    double v = it->valuedouble;
    if (v < (double)lo || v > (double)hi)
        return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" = %.17g is out of range [%ld, %ld]", where,
                       key, v, lo, hi);
    *out = (long)v;
    return QP_OK;
}

qp_status dj_get_string(const cJSON *obj, const char *key, int required, char *out, size_t n,
                        const char *where, qp_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) {
        if (required)
            return qp_fail(err, QP_ERR_PARSE, "%s: missing field \"%s\": every record needs it", where,
                           key);
        return QP_OK;
    }
    if (!cJSON_IsString(it))
        return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" must be a string", where, key);
    if (strlen(it->valuestring) >= n)
        return qp_fail(err, QP_ERR_PARSE, "%s: field \"%s\" is longer than %zu characters", where, key,
                       n - 1);
    memcpy(out, it->valuestring, strlen(it->valuestring) + 1);
    return QP_OK;
}
