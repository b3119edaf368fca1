/* Penalty observations: from run records (quantized runs minus matched full-precision runs
 * or minus a full-precision law) and from calibration CSV files. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"

/* Mean loss of the status-ok full-precision runs of q's group (data_run_same_group: trainers
 * round tokens to whole steps); NAN when there is none. */
static double matched_fp_loss(const data_run_list *runs, const data_run *q)
{
    double sum = 0;
    int n = 0;
    for (size_t i = 0; i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        if (!data_run_is_fp(r) || r->status != DATA_RUN_OK || !isfinite(r->loss)) continue;
        if (data_run_same_group(r, q)) {
            sum += r->loss;
            n++;
        }
    }
    return n ? sum / n : NAN;
}

qp_status fit_penalty_points_from_runs(const data_run_list *runs, const data_law *fp_law, fit_penalty_point **pts,
                                       size_t *n, int *n_unmatched, int *n_nonpositive, qp_error *err)
{
    *pts = NULL;
    *n = 0;
    *n_unmatched = *n_nonpositive = 0;
    if (fp_law && fp_law->form != DATA_LAW_CHINCHILLA && fp_law->form != DATA_LAW_QAT)
        return qp_fail(err, QP_ERR_INPUT, "the full-precision law for a penalty fit must be a chinchilla or qat law, "
                                          "not %s", data_law_form_name(fp_law->form));
    fit_penalty_point *p = malloc(sizeof *p * (runs->n ? runs->n : 1));
    if (!p) return qp_fail(err, QP_ERR_NOMEM, "out of memory for penalty observations");
    size_t k = 0;
    for (size_t i = 0; i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        if (data_run_is_fp(r) || r->status != DATA_RUN_OK || !isfinite(r->loss) || !(r->n_params > 0)) continue;
        double fp = fp_law ? law_loss(fp_law, &(law_point){r->n_params, data_run_tokens(r), 0, LAW_FP_BITS})
                           : matched_fp_loss(runs, r);
        if (!isfinite(fp)) {
            (*n_unmatched)++;
            continue;
        }
        if (!(r->loss - fp > 0)) {
            (*n_nonpositive)++;
            continue;
        }
        p[k] = (fit_penalty_point){{r->n_params, r->d_fp, r->d_qat, r->bits}, r->loss - fp, 1.0, ""};
        snprintf(p[k].source, sizeof p[k].source, "%s", r->run_id);
        k++;
    }
    *pts = p;
    *n = k;
    return QP_OK;
}

/* Split one CSV line in place at commas; returns the number of fields (at most max). */
static int split_csv(char *line, char **f, int max)
{
    int n = 0;
    char *s = line;
    while (n < max) {
        f[n++] = s;
        char *c = strchr(s, ',');
        if (!c) break;
        *c = 0;
        s = c + 1;
    }
    return n;
}

static qp_status parse_real(const char *s, const char *what, const char *path, int line, double *out, qp_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    while (end && (*end == ' ' || *end == '\r')) end++;
    if (end == s || !end || *end || errno || !isfinite(v))
        return qp_fail(err, QP_ERR_PARSE, "%s:%d: %s '%s' is not a finite number", path, line, what, s);
    *out = v;
    return QP_OK;
}

static const char *const penalty_cols[] = {"source", "n_params", "d_fp", "d_qat", "bits", "penalty", "weight"};

static qp_status parse_point(char *line, const char *path, int ln, fit_penalty_point *p, qp_error *err)
{
    char *f[9];
    int nf = split_csv(line, f, 9);
    if (nf < 7) return qp_fail(err, QP_ERR_PARSE, "%s:%d: %d fields, expected at least 7", path, ln, nf);
    double v[6];
    for (int j = 1; j < 7; j++)
        if (parse_real(f[j], penalty_cols[j], path, ln, &v[j - 1], err)) return QP_ERR_PARSE;
    if (v[3] != floor(v[3]) || v[3] < 1 || v[3] >= LAW_FP_BITS)
        return qp_fail(err, QP_ERR_PARSE, "%s:%d: bits %g is not a QAT bit width (1..15)", path, ln, v[3]);
    *p = (fit_penalty_point){{v[0], v[1], v[2], (int)v[3]}, v[4], v[5], ""};
    snprintf(p->source, sizeof p->source, "%s", f[0]);
    if (!(p->x.n_params > 0) || p->x.d_fp < 0 || p->x.d_qat < 0 || !(p->x.d_fp + p->x.d_qat > 0) ||
        !(p->penalty > 0) || !(p->weight > 0))
        return qp_fail(err, QP_ERR_PARSE, "%s:%d: needs n_params > 0, d_fp, d_qat >= 0 with a positive sum, "
                                          "penalty > 0 and weight > 0", path, ln);
    return QP_OK;
}

qp_status fit_penalty_points_read(const char *path, fit_penalty_point **pts, size_t *n, qp_error *err)
{
    *pts = NULL;
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    qp_status st = qp_read_file(path, &text, &len, err);
    if (st) return st;
    size_t cap = 16, k = 0;
    fit_penalty_point *p = malloc(sizeof *p * cap);
    if (!p) {
        free(text);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
    }
    int ln = 0, header = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && !st; line = strtok_r(NULL, "\n", &save)) {
        ln++;
        if (!line[0] || line[0] == '#' || line[0] == '\r') continue;
        if (!header) { /* the header names the columns in this order */
            char *f[9];
            int nf = split_csv(line, f, 9);
            for (int j = 0; j < 7 && !st; j++)
                if (j >= nf || strncmp(f[j], penalty_cols[j], strlen(penalty_cols[j])))
                    st = qp_fail(err, QP_ERR_PARSE,
                                 "%s:%d: the header must begin source,n_params,d_fp,d_qat,bits,penalty,weight", path, ln);
            header = 1;
            continue;
        }
        if (k == cap) {
            fit_penalty_point *q = realloc(p, sizeof *p * (cap *= 2));
            if (!q) {
                st = qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            p = q;
        }
        st = parse_point(line, path, ln, &p[k], err);
        if (!st) k++;
    }
    free(text);
    if (!st && k == 0) st = qp_fail(err, QP_ERR_PARSE, "%s: no penalty observations", path);
    if (st) {
        free(p);
        return st;
    }
    *pts = p;
    *n = k;
    return QP_OK;
}
