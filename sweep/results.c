/* Reading the shared results file: line by line, so one torn line (a writer killed mid-write;
 * qp_append_line starts the next record on a fresh line) costs only itself. */
#include "sweep.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void sweep_results_free(sweep_results *r)
{
    if (!r) return;
    data_run_list_free(&r->runs);
    free(r->index);
    memset(r, 0, sizeof *r);
}

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static int counts(const data_run *x) { return x->status == DATA_RUN_OK || x->status == DATA_RUN_DIVERGED; }

/* The index of the records that count, the last one per run id winning. Without memory for
 * it, sweep_results_find scans (slowly, but correctly). */
static void build_index(sweep_results *r)
{
    size_t slots = 64;
    while (slots < 2 * r->runs.n) slots *= 2;
    if (r->runs.n >= UINT32_MAX || !(r->index = calloc(slots, sizeof *r->index))) return;
    r->index_mask = slots - 1;
    r->index_n = r->runs.n;
    for (size_t i = 0; i < r->runs.n; i++) {
        const data_run *x = &r->runs.runs[i];
        if (!counts(x)) continue;
        size_t k = hash_id(x->run_id) & r->index_mask;
        while (r->index[k] && strcmp(r->runs.runs[r->index[k] - 1].run_id, x->run_id)) k = (k + 1) & r->index_mask;
        r->index[k] = (uint32_t)(i + 1);
    }
}

qp_status sweep_results_read(const char *path, sweep_results *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    data_run_list_init(&out->runs);
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT) return QP_OK; /* nothing recorded yet */
    char *text;
    qp_status st = qp_read_file(path, &text, NULL, err);
    if (st) return st;
    char *p = text;
    long lineno = 0;
    while (*p) {
        lineno++;
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q && *q != '#') {
            char where[600];
            snprintf(where, sizeof where, "%s:%ld", path, lineno);
            qp_error e = {0};
            /* A line without its newline is torn (or still being written) unless it parses. */
            qp_status ls = data_runs_parse_jsonl(p, where, &out->runs, &e);
            if (ls == QP_ERR_NOMEM) {
                free(text);
                sweep_results_free(out);
                return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
            }
            if (ls) {
                if (!out->n_bad_lines) {
                    out->first_bad_line = lineno;
                    if (!nl) snprintf(out->first_bad_msg, sizeof out->first_bad_msg, "%s: incomplete last line (a write was cut off or is in progress)", where);
                    else {
                        /* the parser names line 1 of the one line it was given: drop that */
                        size_t wl = strlen(where);
                        const char *m = e.msg;
                        if (!strncmp(m, where, wl) && !strncmp(m + wl, ":1: ", 4)) m += wl + 4;
                        snprintf(out->first_bad_msg, sizeof out->first_bad_msg, "%s: %s", where, m);
                    }
                }
                out->n_bad_lines++;
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    build_index(out);
    return QP_OK;
}

const data_run *sweep_results_find(const sweep_results *r, const char *run_id)
{
    if (r->index && r->index_n == r->runs.n) {
        for (size_t k = hash_id(run_id) & r->index_mask; r->index[k]; k = (k + 1) & r->index_mask)
            if (!strcmp(r->runs.runs[r->index[k] - 1].run_id, run_id)) return &r->runs.runs[r->index[k] - 1];
        return NULL;
    }
    const data_run *found = NULL;
    for (size_t i = 0; i < r->runs.n; i++) {
        const data_run *x = &r->runs.runs[i];
        if (counts(x) && !strcmp(x->run_id, run_id)) found = x;
    }
    return found;
}
