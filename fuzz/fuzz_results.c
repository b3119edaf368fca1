/* fuzz_results: a sweep's results file, sweep_results_read (sweep/results.c), which reads from
 * a path and tolerates torn and malformed lines (counted, never fatal): the input is written to
 * a temporary file. Reading never fails for a readable file, and every record it keeps is
 * valid; sweep_results_find then looks one of them up. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sweep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write_temp("fuzz.results.jsonl", data, size);
    sweep_results r;
    qp_error e = {0};
    if (sweep_results_read(path, &r, &e)) fz_fail("a readable results file was refused: %s", e.msg);
    if (r.n_bad_lines && (r.first_bad_line < 1 || !r.first_bad_msg[0]))
        fz_fail("%zu bad lines but no first line or message", r.n_bad_lines);
    for (size_t i = 0; i < r.runs.n; i++) {
        qp_error v = {0};
        if (data_run_validate(&r.runs.runs[i], &v)) fz_fail("a kept record is invalid: %s", v.msg);
    }
    if (r.runs.n) {
        const data_run *last = &r.runs.runs[r.runs.n - 1];
        const data_run *f = sweep_results_find(&r, last->run_id);
        if (last->status != DATA_RUN_FAILED && f != last) fz_fail("the last record of %s is not the one found",
                                                                  last->run_id);
    }
    sweep_results_free(&r);
    return 0;
}
