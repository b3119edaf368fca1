/* Internal helpers of the data module for reading and writing JSON with cJSON.
 * Non-finite numbers are written as the strings "NaN", "Infinity", "-Infinity" and read
 * back from them; JSON null is refused (cJSON would turn NaN into a silent null). */
#ifndef DATA_JSON_UTIL_H
#define DATA_JSON_UTIL_H

#include <cjson/cJSON.h>

#include "qp.h"

/* A JSON number that reads back bit-exactly (cJSON's own printer may drop the last
 * bit: its round-trip check allows an epsilon). Finite values only. */
cJSON *dj_number(double v);
cJSON *dj_number_array(const double *v, int n);
/* Adds a real number; non-finite values become the explicit strings above. */
int dj_add_real(cJSON *obj, const char *key, double v);
/* Reads a real: a JSON number or one of the explicit strings. Missing key: *out untouched
 * and QP_OK when !required. `where` prefixes messages ("runs.jsonl:3"). */
qp_status dj_get_real(const cJSON *obj, const char *key, int required, double *out,
                      const char *where, qp_error *err);
qp_status dj_get_int(const cJSON *obj, const char *key, int required, long lo, long hi, long *out,
                     const char *where, qp_error *err);
qp_status dj_get_string(const cJSON *obj, const char *key, int required, char *out, size_t n,
                        const char *where, qp_error *err);

#endif
