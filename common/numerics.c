/* numerics.c: the small shared numerics: the splitmix64 generator and percentiles. */
#include <math.h>

#include "qp.h"

uint64_t qp_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double qp_rng_uniform(uint64_t *state) { return (double)(qp_rng_next(state) >> 11) * 0x1.0p-53; }

int qp_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double qp_percentile_sorted(const double *v, int n, double p)
{
    if (n < 1) return NAN;
    double pos = p * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}
