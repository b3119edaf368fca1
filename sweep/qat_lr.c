/* qat_lr.c: the grid's "qat_lr_ratio", the QAT phase's peak learning rate per schedule and
 * fraction as a multiple of the point's FP peak (docs/sweep.md). Why per fraction: in the
 * classic schedule the QAT phase re-warms from a decayed model, and the best peak measured in
 * the own-law scan falls with the phase's length (docs/own-law.md); a single ratio handicaps
 * either the short or the long QAT phases. */
#include "internal.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const sched_keys[2] = {"classic", "fused"};

static qp_status ratio_value(const cJSON *v, const char *where, double *out, qp_error *err)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 100))
        return qp_fail(err, QP_ERR_PARSE, "%s: a ratio must be a number in (0, 100], e.g. 0.3", where);
    *out = v->valuedouble;
    return QP_OK;
}

/* {"0.1": 0.1, "0.25": 0.3}: per fraction of the grid; the others keep `all` (1). */
static qp_status per_fraction(const cJSON *o, sweep_qat_lr *q, const double *fr, int nf, const char *where,
                              qp_error *err)
{
    char at[700];
    for (const cJSON *c = o->child; c; c = c->next) {
        snprintf(at, sizeof at, "%s[\"%s\"]", where, c->string);
        char *end;
        double f = strtod(c->string, &end);
        int k = -1;
        for (int i = 0; *c->string && !*end && i < nf; i++)
            if (fabs(fr[i] - f) < 1e-9 && f > 0 && f < 1) k = i;
        if (k < 0)
            return qp_fail(err, QP_ERR_PARSE,
                           "%s: the key must be one of the grid's \"fractions\" strictly between 0 and 1, "
                           "written as a number (\"0.25\")",
                           at);
        if (q->n == SWEEP_MAX_QAT_LR) return qp_fail(err, QP_ERR_INPUT, "%s: more than %d fractions", at, SWEEP_MAX_QAT_LR);
        q->frac[q->n] = fr[k];
        qp_status st = ratio_value(c, at, &q->ratio[q->n], err);
        if (st) return st;
        q->n++;
    }
    return QP_OK;
}

static int has_qat_lr(char *const *args, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(args[i], "--qat-lr")) return 1;
    return 0;
}

qp_status sweep_qat_lr_parse(const cJSON *v, sweep_grid *g, const double *fr, int nf, const char *name,
                             qp_error *err)
{
    g->qat_lr[0].all = g->qat_lr[1].all = 1;
    if (!v) return QP_OK;
    int clash = has_qat_lr(g->args, g->n_args);
    for (int m = 0; m < g->n_methods; m++) clash |= has_qat_lr(g->methods[m].args, g->methods[m].n_args);
    if (clash)
        return qp_fail(err, QP_ERR_INPUT,
                       "%s: \"qat_lr_ratio\" and a --qat-lr setting (in \"train.args\" or \"methods\") both set the QAT "
                       "learning rate: keep one",
                       name);
    char where[700];
    snprintf(where, sizeof where, "%s: \"qat_lr_ratio\"", name);
    if (cJSON_IsNumber(v)) {
        qp_status st = ratio_value(v, where, &g->qat_lr[0].all, err);
        g->qat_lr[1].all = g->qat_lr[0].all;
        return st;
    }
    if (!cJSON_IsObject(v))
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: give a ratio (0.3) or one per schedule ({\"classic\": {\"0.1\": 0.1, \"0.25\": 0.3}, "
                       "\"fused\": 1})",
                       where);
    for (const cJSON *c = v->child; c; c = c->next) {
        int s = !strcmp(c->string, sched_keys[0]) ? 0 : !strcmp(c->string, sched_keys[1]) ? 1 : -1;
        if (s < 0) return qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\": use \"classic\" and \"fused\"", where, c->string);
        char at[760];
        snprintf(at, sizeof at, "%s.%s", where, c->string);
        qp_status st = cJSON_IsObject(c) ? per_fraction(c, &g->qat_lr[s], fr, nf, at, err)
                                         : ratio_value(c, at, &g->qat_lr[s].all, err);
        if (st) return st;
    }
    return QP_OK;
}

double sweep_point_qat_lr_ratio(const sweep_grid *g, const sweep_point *p)
{
    int s = p->schedule == DATA_SCHED_CLASSIC ? 0 : p->schedule == DATA_SCHED_FUSED ? 1 : -1;
    if (s < 0 || data_bits_is_fp(p->bits) || !(g->qat_lr[s].all > 0)) return 1; /* no FP-then-QAT phase */
    for (int i = 0; i < g->qat_lr[s].n; i++)
        if (fabs(g->qat_lr[s].frac[i] - p->fraction) < 1e-9) return g->qat_lr[s].ratio[i];
    return g->qat_lr[s].all;
}
