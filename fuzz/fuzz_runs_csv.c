/* fuzz_runs_csv: run records imported as CSV, data_runs_parse_csv (data/runs.c). Every
 * accepted row must be a valid record that qatplan can write as a JSON line and read back. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    data_run_list runs;
    data_run_list_init(&runs);
    qp_error e = {0};
    qp_status st = data_runs_parse_csv(text, "fuzz.csv", &runs, &e);
    if (st && !e.msg[0]) fz_fail("a refused CSV file has no message");
    if (st && runs.n) fz_fail("a refused CSV file left %zu records in the list", runs.n);
    for (size_t i = 0; !st && i < runs.n; i++) {
        qp_error v = {0};
        if (data_run_validate(&runs.runs[i], &v)) fz_fail("an accepted CSV row is invalid: %s", v.msg);
        char *line = data_run_to_json(&runs.runs[i]);
        if (!line) fz_fail("an accepted CSV row does not write as JSON");
        data_run_list back;
        data_run_list_init(&back);
        if (data_runs_parse_jsonl(line, "written", &back, &v) || back.n != 1)
            fz_fail("an imported CSV row written as JSON does not read back: %s\n%s", v.msg, line);
        if (strcmp(back.runs[0].run_id, runs.runs[i].run_id)) fz_fail("the run id changed: %s", line);
        data_run_list_free(&back);
        free(line);
    }
    data_run_list_free(&runs);
    free(text);
    return 0;
}
