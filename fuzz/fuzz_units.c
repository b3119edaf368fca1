/* fuzz_units: the unit parsers of common/units.c (counts, FLOPs, budgets, bytes, reals, whole
 * numbers) and the formatters. The first byte picks the parser, the rest is the text. Checks
 * the documented contract: an accepted count, FLOPs or bytes value is finite and positive; an
 * accepted real or whole number lies in its range. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "qp.h"

static void check_positive(const char *what, const char *s, double v)
{
    if (!(isfinite(v) && v > 0)) fz_fail("%s accepted '%s' as %g (not finite and positive)", what, s, v);
}

static void format_all(double v, size_t n)
{
    char buf[64];
    /* short buffers too: the formatters must truncate, never overrun */
    size_t len = n % sizeof buf + 1;
    qp_format_count(v, buf, len);
    qp_format_bytes(v, buf, len);
    qp_format_count(-v, buf, sizeof buf);
    qp_format_bytes(-v, buf, sizeof buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char *s = fz_cstr(data + 1, size - 1);
    qp_error e = {0};
    double v = NAN;
    long l = 0;
    int gpuh = -1;
    switch (data[0] % 7) {
    case 0:
        if (!qp_parse_count(s, "count", &v, &e)) check_positive("qp_parse_count", s, v);
        break;
    case 1:
        if (!qp_parse_flops(s, "flops", &v, &e)) check_positive("qp_parse_flops", s, v);
        break;
    case 2:
        if (!qp_parse_budget(s, &v, &gpuh, &e)) {
            check_positive("qp_parse_budget", s, v);
            if (gpuh != 0 && gpuh != 1) fz_fail("qp_parse_budget set is_gpuh = %d", gpuh);
        }
        break;
    case 3:
        if (!qp_parse_bytes(s, "bytes", &v, &e)) check_positive("qp_parse_bytes", s, v);
        break;
    case 4:
        if (!qp_parse_real(s, "real", -INFINITY, INFINITY, &v, &e) && !isfinite(v))
            fz_fail("qp_parse_real accepted '%s' as %g", s, v);
        break;
    case 5:
        if (!qp_parse_real(s, "fraction", 0, 1, &v, &e) && !(v >= 0 && v <= 1))
            fz_fail("qp_parse_real [0, 1] accepted '%s' as %g", s, v);
        break;
    default:
        if (!qp_parse_long(s, "whole", -5, 1L << 40, &l, &e) && (l < -5 || l > 1L << 40))
            fz_fail("qp_parse_long accepted '%s' as %ld", s, l);
        break;
    }
    if (e.status != QP_OK && !e.msg[0]) fz_fail("a refusal of '%s' has no message", s);
    if (isfinite(v)) format_all(v, size);
    /* the formatters on raw bit patterns, NaN and infinities included */
    if (size >= 9) {
        double x;
        memcpy(&x, data + 1, sizeof x);
        format_all(x, data[0]);
    }
    free(s);
    return 0;
}
