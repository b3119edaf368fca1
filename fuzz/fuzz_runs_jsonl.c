/* fuzz_runs_jsonl: run records as JSON lines, data_runs_parse_jsonl (data/runs.c). Every
 * accepted record must write back (data_run_to_json) as one line that reads again to the same
 * record: the sweep appends exactly these lines and reads them back. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

static void same_real(const char *what, double a, double b)
{
    if (memcmp(&a, &b, sizeof a) && !(a != a && b != b))
        fz_fail("run record round trip changed %s: %.17g -> %.17g", what, a, b);
}

static void round_trip(const data_run *r)
{
    char *line = data_run_to_json(r);
    if (!line) fz_fail("an accepted run record does not write back");
    if (strchr(line, '\n')) fz_fail("a run record written back spans lines: %s", line);
    data_run_list back;
    data_run_list_init(&back);
    qp_error e = {0};
    if (data_runs_parse_jsonl(line, "written", &back, &e) || back.n != 1)
        fz_fail("a written run record does not read back: %s\n%s", e.msg, line);
    const data_run *b = &back.runs[0];
    const char *changed = strcmp(b->run_id, r->run_id)               ? "run_id"
                          : strcmp(b->dataset, r->dataset)           ? "dataset"
                          : strcmp(b->reason, r->reason)             ? "reason"
                          : b->bits != r->bits                       ? "bits"
                          : b->schedule != r->schedule               ? "schedule"
                          : b->status != r->status                   ? "status"
                          : b->seed != r->seed                       ? "seed"
                          : memcmp(&b->shape, &r->shape, sizeof b->shape) ? "model"
                                                                     : NULL;
    if (changed) fz_fail("run record round trip changed %s:\n%s", changed, line);
    same_real("n_params", r->n_params, b->n_params);
    same_real("d_fp", r->d_fp, b->d_fp);
    same_real("d_qat", r->d_qat, b->d_qat);
    same_real("loss", r->loss, b->loss);
    same_real("loss_fp_switch", r->loss_fp_switch, b->loss_fp_switch);
    data_run_list_free(&back);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    data_run_list runs;
    data_run_list_init(&runs);
    qp_error e = {0};
    qp_status st = data_runs_parse_jsonl(text, "fuzz.jsonl", &runs, &e);
    if (st && !e.msg[0]) fz_fail("a refused JSONL file has no message");
    if (st && runs.n) fz_fail("a refused JSONL file left %zu records in the list", runs.n);
    for (size_t i = 0; !st && i < runs.n; i++) {
        qp_error v = {0};
        if (data_run_validate(&runs.runs[i], &v)) fz_fail("an accepted run record is invalid: %s", v.msg);
        round_trip(&runs.runs[i]);
    }
    data_run_list_free(&runs);
    free(text);
    return 0;
}
