/* fuzz_grid: grid files, sweep_grid_parse (sweep/grid.c), and the trainer arguments of the
 * points it expands to (sweep_point_args). An accepted grid has at least one point, numbered in
 * order, each within the documented ranges. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sweep.h"

static void check_point(const sweep_grid *g, const sweep_point *p, size_t i)
{
    if (p->index != (int)i) fz_fail("grid point %zu has index %d", i, p->index);
    if (!p->run_id[0]) fz_fail("grid point %zu has no run id", i);
    if (!((p->bits >= 1 && p->bits <= 8) || p->bits == 16 || p->bits == 32))
        fz_fail("grid point %zu has %d bits", i, p->bits);
    if (!(p->fraction >= 0 && p->fraction <= 1)) fz_fail("grid point %zu has fraction %g", i, p->fraction);
    if (!(p->tokens >= p->shape.context)) fz_fail("grid point %zu has %g tokens", i, p->tokens);
    char **argv = NULL;
    qp_error e = {0};
    if (sweep_point_args(g, p, "runs.jsonl", i % 2 ? "state.bin" : NULL, (int)(i % 3 == 0), 0, &argv, &e))
        fz_fail("no trainer arguments for grid point %zu: %s", i, e.msg);
    int n = 0;
    while (argv[n]) n++;
    if (n < 20) fz_fail("grid point %zu has only %d trainer arguments", i, n);
    sweep_argv_free(argv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    sweep_grid g;
    qp_error e = {0};
    if (!sweep_grid_parse(text, "fuzz.grid.json", &g, &e)) {
        if (g.n == 0) fz_fail("an accepted grid has no points");
        /* the first and the last points: enough to reach every field without making each
         * execution as slow as the grid is large */
        for (size_t i = 0; i < g.n && i < 16; i++) check_point(&g, &g.points[i], i);
        if (g.n > 16) check_point(&g, &g.points[g.n - 1], g.n - 1);
        sweep_grid_free(&g);
    } else if (!e.msg[0]) {
        fz_fail("a refused grid has no message");
    }
    free(text);
    return 0;
}
