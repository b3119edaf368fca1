/* Unit parsing: every quantity a user types is checked here, so that "2.2b", "-1",
 * "1e400" or "3 GB" never become a silent guess. */
#include "qp.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parse the leading number of s; *rest points after it. Refuses empty, non-finite and
 * overflowing input. */
static qp_status parse_leading(const char *s, const char *what, double *x, const char **rest,
                               qp_error *err)
{
    if (!s || !*s)
        return qp_fail(err, QP_ERR_INPUT, "%s is empty: give a number such as 2.2e9", what);
    while (isspace((unsigned char)*s)) s++;
    const char *mag = s + (*s == '-' || *s == '+'); /* "-nan" is NaN too, not an overflow */
    if (!strncasecmp(mag, "nan", 3))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not a number (NaN): give a finite number", what, s);
    if (!strncasecmp(mag, "inf", 3))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not finite: give a finite number", what, s);
    if (!isdigit((unsigned char)*s) && *s != '.' && *s != '-' && *s != '+')
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not a number", what, s);
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s': hexadecimal is not accepted, write it in decimal",
                       what, s);
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s) return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not a number", what, s);
    /* ERANGE is also set for a tiny value: a subnormal one is a number like any other (a JSON
     * grid holds it too), one that rounds to zero is refused as such */
    if (errno == ERANGE && isfinite(v) && fabs(v) < 1 && v == 0)
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' underflows to zero: give a larger value", what, s);
    if ((errno == ERANGE && fabs(v) >= 1) || !isfinite(v))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' overflows a double: give a smaller value", what, s);
    *x = v;
    *rest = end;
    return QP_OK;
}

static qp_status check_positive(double v, const char *s, const char *what, qp_error *err)
{
    if (v < 0) return qp_fail(err, QP_ERR_INPUT, "%s '%s' is negative: it must be positive", what, s);
    if (v == 0) return qp_fail(err, QP_ERR_INPUT, "%s '%s' is zero: it must be positive", what, s);
    if (!isfinite(v))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' overflows: give a smaller value", what, s);
    return QP_OK;
}

qp_status qp_parse_count(const char *s, const char *what, double *out, qp_error *err)
{
    double v;
    const char *rest;
    qp_status st = parse_leading(s, what, &v, &rest, err);
    if (st) return st;
    double mult = 1;
    if (*rest) {
        if (rest[1] != '\0')
            return qp_fail(err, QP_ERR_INPUT,
                           "%s '%s' has an unknown suffix '%s': use K, M, B or T (e.g. 2.2B)", what, s,
                           rest);
        switch (*rest) {
        case 'K': mult = 1e3; break;
        case 'M': mult = 1e6; break;
        case 'B': case 'G': mult = 1e9; break;
        case 'T': mult = 1e12; break;
        case 'k': case 'm': case 'b': case 'g': case 't':
            return qp_fail(err, QP_ERR_INPUT,
                           "%s '%s' has an ambiguous lower-case suffix '%c': use upper case K, M, B or T "
                           "(e.g. 2.2B for 2.2 billion)",
                           what, s, *rest);
        default:
            return qp_fail(err, QP_ERR_INPUT,
                           "%s '%s' has an unknown suffix '%s': use K, M, B or T (e.g. 2.2B)", what, s,
                           rest);
        }
    }
    v *= mult;
    if ((st = check_positive(v, s, what, err))) return st;
    *out = v;
    return QP_OK;
}

/* A decimal prefix K, M, G (or B), T, P, E before a unit; 1 when there is none. */
static double unit_prefix(const char **rest)
{
    static const char pre[] = "KMGBTPE";
    static const double mult[] = {1e3, 1e6, 1e9, 1e9, 1e12, 1e15, 1e18};
    const char *p = strchr(pre, **rest);
    if (!**rest || !p) return 1;
    (*rest)++;
    return mult[p - pre];
}

qp_status qp_parse_flops(const char *s, const char *what, double *out, qp_error *err)
{
    double v;
    const char *rest;
    qp_status st = parse_leading(s, what, &v, &rest, err);
    if (st) return st;
    const char *unit = rest;
    v *= unit_prefix(&unit); /* "989TFLOPS", "2.5PFLOP", "989T" */
    if (*unit && strcmp(unit, "FLOP") && strcmp(unit, "FLOPs") && strcmp(unit, "FLOPS") && strcmp(unit, "flop") &&
        strcmp(unit, "flops"))
        return qp_fail(err, QP_ERR_INPUT,
                       "%s '%s' has an unknown unit '%s': give FLOPs (1e22 or 1e22FLOP), or GPU-hours "
                       "as 50000gpuh with --peak-flops and --mfu",
                       what, s, rest);
    if ((st = check_positive(v, s, what, err))) return st;
    *out = v;
    return QP_OK;
}

qp_status qp_parse_budget(const char *s, double *value, int *is_gpuh, qp_error *err)
{
    double v;
    const char *rest;
    qp_status st = parse_leading(s, "budget", &v, &rest, err);
    if (st) return st;
    const char *unit = rest;
    double mult = unit_prefix(&unit); /* "50Kgpuh" */
    if (!strcasecmp(unit, "gpuh") || !strcasecmp(unit, "gpu-h") || !strcasecmp(unit, "gpuhours") ||
        !strcasecmp(unit, "gpu-hours")) {
        v *= mult;
        if ((st = check_positive(v, s, "budget", err))) return st;
        *value = v;
        *is_gpuh = 1;
        return QP_OK;
    }
    *is_gpuh = 0;
    return qp_parse_flops(s, "budget", value, err);
}

qp_status qp_parse_bytes(const char *s, const char *what, double *out, qp_error *err)
{
    double v;
    const char *rest;
    qp_status st = parse_leading(s, what, &v, &rest, err);
    if (st) return st;
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1}, {"B", 1},
        {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
    };
    double mult = -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(rest, units[i].suffix)) mult = units[i].mult;
    if (mult < 0) {
        if (strchr(rest, 'b'))
            return qp_fail(err, QP_ERR_INPUT,
                           "%s '%s': '%s' is ambiguous (bits or bytes?): write bytes as B, e.g. 2GB or 1.5GiB",
                           what, s, rest);
        return qp_fail(err, QP_ERR_INPUT,
                       "%s '%s' has an unknown unit '%s': use B, KB, MB, GB, TB (powers of 1000) or "
                       "KiB, MiB, GiB, TiB (powers of 1024)",
                       what, s, rest);
    }
    v *= mult;
    if ((st = check_positive(v, s, what, err))) return st;
    *out = v;
    return QP_OK;
}

qp_status qp_parse_real(const char *s, const char *what, double lo, double hi, double *out,
                        qp_error *err)
{
    double v;
    const char *rest;
    qp_status st = parse_leading(s, what, &v, &rest, err);
    if (st) return st;
    if (*rest) return qp_fail(err, QP_ERR_INPUT, "%s '%s' has trailing characters '%s'", what, s, rest);
    if (v < lo || v > hi)
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is out of range: it must be in [%g, %g]", what, s,
                       lo, hi);
    *out = v;
    return QP_OK;
}

qp_status qp_parse_long(const char *s, const char *what, long lo, long hi, long *out,
                        qp_error *err)
{
    if (!s || !*s) return qp_fail(err, QP_ERR_INPUT, "%s is empty: give a whole number", what);
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end)
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not a whole number", what, s);
    if (errno == ERANGE) return qp_fail(err, QP_ERR_INPUT, "%s '%s' overflows", what, s);
    if (v < lo || v > hi)
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is out of range: it must be in [%ld, %ld]", what, s,
                       lo, hi);
    *out = v;
    return QP_OK;
}

qp_status qp_parse_whole_count(const char *s, const char *what, double max, double *out, qp_error *err)
{
    double v;
    qp_status st = qp_parse_count(s, what, &v, err);
    if (st) return st;
    if (v != floor(v))
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is not a whole number: it is a count (%.17g)", what, s, v);
    if (v > max)
        return qp_fail(err, QP_ERR_INPUT, "%s '%s' is too large: at most %.17g", what, s, max);
    *out = v;
    return QP_OK;
}

qp_status qp_parse_long_list(const char *s, const char *what, long lo, long hi, long *out, int max_n, int *n,
                             qp_error *err)
{
    if (!s || !*s) return qp_fail(err, QP_ERR_INPUT, "%s is empty: give values separated by commas, e.g. 2,4", what);
    int k = 0;
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return qp_fail(err, QP_ERR_INPUT, "%s '%s' has an empty entry: separate values by single commas, e.g. 2,4",
                           what, s);
        char item[64];
        if (len >= sizeof item) return qp_fail(err, QP_ERR_INPUT, "%s '%s': an entry is too long", what, s);
        memcpy(item, p, len);
        item[len] = '\0';
        long v;
        qp_status st = qp_parse_long(item, what, lo, hi, &v, err);
        if (st) return st;
        for (int i = 0; i < k; i++)
            if (out[i] == v) return qp_fail(err, QP_ERR_INPUT, "%s '%s' lists %ld twice", what, s, v);
        if (k == max_n) return qp_fail(err, QP_ERR_INPUT, "%s '%s' lists more than %d values", what, s, max_n);
        out[k++] = v;
        if (!comma) break;
        p = comma + 1;
    }
    *n = k;
    return QP_OK;
}

const char *qp_format_count(double x, char *buf, size_t n)
{
    static const struct { double v; const char *s; } units[] = {
        {1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"},
    };
    if (!isfinite(x)) {
        snprintf(buf, n, "%s", isnan(x) ? "NaN" : (x > 0 ? "Inf" : "-Inf"));
        return buf;
    }
    double ax = fabs(x);
    if (ax >= 1e15) {
        snprintf(buf, n, "%.3g", x);
        return buf;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ax >= units[i].v) {
            double y = x / units[i].v;
            snprintf(buf, n, fabs(y) >= 100 ? "%.0f%s" : fabs(y) >= 10 ? "%.1f%s" : "%.2f%s", y,
                     units[i].s);
            return buf;
        }
    }
    snprintf(buf, n, "%.4g", x);
    return buf;
}

const char *qp_format_bytes(double bytes, char *buf, size_t n)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    double v = bytes;
    while (fabs(v) >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    snprintf(buf, n, i == 0 ? "%.0f %s" : "%.2f %s", v, names[i]);
    return buf;
}
