/* trunk.c: trunk-and-branch grids ("trunks": true; docs/sweep.md, "Trunks and branches"): the
 * points grouped into trunks, each branch point computed by the trainer's own schedule
 * (config.c), the trunks' command lines and the tokens the sweep saves. */
#include "internal.h"
#include "sweep.h"
#include "train.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Trainer options (the grid's train.args, a method's) applied to a configuration: the numeric
 * ones (--warmup-tokens, --warmup-frac, --decay-frac, --weight-decay, ...) that shape a run's
 * schedule and its FP steps. */
static qp_status args_config(char *const *args, int n_args, train_config *c, int *has_init, qp_error *err)
{
    train_args a;
    memset(&a, 0, sizeof a);
    a.c = *c;
    size_t lo = offsetof(train_args, c), hi = lo + sizeof a.c;
    for (int i = 0; i < n_args; i++) {
        const train_option *o = train_option_find(args[i]);
        if (!o || o->type == TRAIN_OPT_FLAG) continue;
        const char *v = i + 1 < n_args ? args[++i] : "";
        if (!strcmp(o->name, "--init")) *has_init = 1;
        if (o->off < lo || o->off >= hi ||
            (o->type != TRAIN_OPT_INT && o->type != TRAIN_OPT_REAL && o->type != TRAIN_OPT_COUNT))
            continue;
        qp_status st = train_option_value(o, v, (char *)&a + o->off, err);
        if (st) return st;
    }
    *c = a.c;
    return QP_OK;
}

/* The configuration and schedule the trainer will give point p. */
static qp_status point_sched(const sweep_grid *g, const train_config *base, const sweep_point *p, train_config *c,
                             train_sched *s, qp_error *err)
{
    *c = *base;
    int has_init = 0;
    if (p->method) {
        const sweep_method *m = &g->methods[p->method - 1];
        qp_status st = args_config(m->args, m->n_args, c, &has_init, err);
        if (st) return st;
    }
    c->shape = p->shape;
    c->tokens = p->tokens;
    c->qat_fraction = p->fraction;
    c->quant.bits = p->bits;
    c->quant.kind = data_bits_is_fp(p->bits) ? TRAIN_Q_NONE : TRAIN_Q_LSQ; /* only "quantized or not" matters */
    c->schedule = p->schedule == DATA_SCHED_FUSED ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
    if (g->batch > 0) c->batch = g->batch;
    double lr = sweep_point_lr(g, p);
    if (isfinite(lr)) c->lr = lr;
    return train_sched_make(c, s, err);
}

/* What points sharing a trunk have in common: all of the run id's settings but the budget,
 * the fraction, the schedule and the bit width, which only the parameter layout remains of. */
static void trunk_key(const sweep_grid *g, const sweep_point *p, char *key, size_t n)
{
    int k = snprintf(key, n, "data=%s|", g->data);
    k += sweep_model_key(g, p, key + k, n - (size_t)k);
    if (k > 0 && (size_t)k < n)
        snprintf(key + k, n - (size_t)k, "|seed=%llu|batch=%d|lr=%.6g|layout=%s", (unsigned long long)p->seed, g->batch,
                 sweep_point_lr(g, p), data_bits_is_fp(p->bits) ? "fp" : "q");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Trunk t's run: its length, bits, save points and deterministic run id, from its points. */
static qp_status trunk_finish(sweep_grid *g, size_t t, const char *key, qp_error *err)
{
    sweep_trunk *tr = &g->trunks[t];
    double *v = malloc((g->n ? g->n : 1) * sizeof *v);
    if (!v) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int n = 0;
    for (size_t i = 0; i < g->n; i++) {
        const sweep_point *p = &g->points[i];
        if (p->trunk != (int)t + 1) continue;
        v[n++] = p->branch_tokens;
        if (p->bits > tr->p.bits) tr->p.bits = p->bits; /* any of the layout's widths: the largest */
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!m || v[i] != v[m - 1]) v[m++] = v[i];
    tr->save_at = v;
    tr->n_save = m;
    tr->p.tokens = v[m - 1];
    tr->p.fraction = 0;
    tr->p.schedule = DATA_SCHED_FP_ONLY;
    char full[8192], tok[32];
    int k = snprintf(full, sizeof full, "%s|bits=%d|tokens=%.0f|save=", key, tr->p.bits, tr->p.tokens);
    for (int i = 0; i < m && k > 0 && (size_t)k < sizeof full; i++) k += snprintf(full + k, sizeof full - (size_t)k, "%.0f,", v[i]);
    for (int i = 0; i < g->n_args && k > 0 && (size_t)k < sizeof full; i++)
        k += snprintf(full + k, sizeof full - (size_t)k, "|%s", g->args[i]);
    qp_format_count(tr->p.tokens, tok, sizeof tok);
    snprintf(tr->p.run_id, sizeof tr->p.run_id, "trunk-L%dd%d-%s-b%d-s%llu-%012llx", tr->p.shape.n_layer,
             tr->p.shape.d_model, tok, tr->p.bits, (unsigned long long)tr->p.seed,
             (unsigned long long)(sweep_fnv1a(full) >> 16));
    return QP_OK;
}

/* Every branch of trunk t follows the trunk's learning rate up to its branch point. */
static qp_status trunk_check(const sweep_grid *g, size_t t, const train_config *base, const char *name, qp_error *err)
{
    const sweep_trunk *tr = &g->trunks[t];
    train_config tc, c;
    train_sched ts, s;
    qp_status st = point_sched(g, base, &tr->p, &tc, &ts, err);
    tc.decay_frac = 0;
    if (!st) st = train_sched_make(&tc, &ts, err);
    for (size_t i = 0; i < g->n && !st; i++) {
        const sweep_point *p = &g->points[i];
        if (p->trunk != (int)t + 1) continue;
        if ((st = point_sched(g, base, p, &c, &s, err))) break;
        if (c.weight_decay != tc.weight_decay || c.grad_clip != tc.grad_clip || c.beta1 != tc.beta1 ||
            c.beta2 != tc.beta2 || c.adam_eps != tc.adam_eps || c.qparam_lr_mult != tc.qparam_lr_mult) {
            st = qp_fail(err, QP_ERR_INPUT, "%s: %s: its method changes an FP setting (weight decay, clipping, Adam, "
                                            "--qparam-lr-mult), so it cannot branch from the trunk the other methods "
                                            "share; set it in train.args, or drop \"trunks\"", name, p->run_id);
            break;
        }
        long k = train_sched_branch_step(&s), d = train_sched_first_difference(&ts, &s, k);
        if (d >= 0)
            st = qp_fail(err, QP_ERR_INPUT, "%s: %s cannot branch from a trunk: its learning rate at step %ld is %.6g, "
                                            "the trunk's %.6g (its warmup of --warmup-tokens must end before its FP "
                                            "decay starts at step %ld); use a smaller --warmup-tokens",
                         name, p->run_id, d, train_lr_at(&s, d), train_lr_at(&ts, d), k);
    }
    return st;
}

/* Points into trunks by their key (a hash set of trunk indices). */
static qp_status group_points(sweep_grid *g, const train_config *base, char **keys, const char *name, qp_error *err)
{
    size_t cap = 64;
    while (cap < 2 * g->n) cap *= 2;
    size_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    qp_status st = QP_OK;
    char key[8192];
    for (size_t i = 0; i < g->n && !st; i++) {
        sweep_point *p = &g->points[i];
        train_config c;
        train_sched s;
        if ((st = point_sched(g, base, p, &c, &s, err))) {
            qp_error_prefix(err, "%s: %s: ", name, p->run_id);
            break;
        }
        long k = train_sched_branch_step(&s);
        if (k <= 0) continue; /* qat-only: nothing to share */
        trunk_key(g, p, key, sizeof key);
        size_t h = (size_t)sweep_fnv1a(key) & (cap - 1);
        while (slot[h] && strcmp(keys[slot[h] - 1], key)) h = (h + 1) & (cap - 1);
        if (!slot[h]) {
            if (!(keys[g->n_trunks] = strdup(key))) {
                st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
                break;
            }
            sweep_trunk *tr = &g->trunks[g->n_trunks++];
            memset(tr, 0, sizeof *tr);
            tr->p = *p;
            tr->p.bits = 0;
            tr->p.method = 0; /* a trunk is plain FP training: the methods differ after it */
            tr->p.trunk = 0;
            tr->p.branch_tokens = 0;
            tr->p.index = -1;
            slot[h] = g->n_trunks;
        }
        p->trunk = (int)slot[h];
        p->branch_tokens = (double)k * c.batch * c.shape.context;
    }
    free(slot);
    return st;
}

qp_status sweep_trunks_plan(sweep_grid *g, const char *name, qp_error *err)
{
    if (g->n_models)
        return qp_fail(err, QP_ERR_INPUT, "%s: \"trunks\" needs qatplan's own trainer (a branch starts from the trunk's "
                                          "saved state); drop \"trunks\" for external models", name);
    train_config base;
    train_config_default(&base);
    int has_init = 0;
    qp_status st = args_config(g->args, g->n_args, &base, &has_init, err);
    if (st) return st;
    if (has_init || g->init[0])
        return qp_fail(err, QP_ERR_INPUT, "%s: \"trunks\" and --init (\"init\", or in train.args) do not go together: "
                                          "the branches start from their trunk", name);
    if (!(base.warmup_tokens > 0))
        return qp_fail(err, QP_ERR_INPUT, "%s: \"trunks\" needs an absolute warmup: add \"--warmup-tokens\", \"N\" to "
                                          "train.args (a --warmup-frac warmup depends on each run's length, so runs of "
                                          "different D_fp could not share a trunk)", name);
    g->trunks = calloc(g->n ? g->n : 1, sizeof *g->trunks);
    char **keys = calloc(g->n ? g->n : 1, sizeof *keys);
    if (!g->trunks || !keys) {
        free(keys);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    st = group_points(g, &base, keys, name, err);
    for (size_t t = 0; t < g->n_trunks && !st; t++) st = trunk_finish(g, t, keys[t], err);
    for (size_t t = 0; t < g->n_trunks && !st; t++) st = trunk_check(g, t, &base, name, err);
    for (size_t t = 0; t < g->n_trunks; t++) free(keys[t]);
    free(keys);
    return st;
}

qp_status sweep_trunk_args(const sweep_grid *g, const sweep_trunk *t, const char *runs_path, const char *state_path,
                           int resume, int threads, char ***out, qp_error *err)
{
    char **a;
    qp_status st = sweep_point_args(g, &t->p, runs_path, state_path, resume, threads, &a, err);
    if (st) return st;
    size_t n = 0, len = 1;
    while (a[n]) n++;
    for (int i = 0; i < t->n_save; i++) len += 24;
    char *list = malloc(len), **b = realloc(a, (n + 5) * sizeof *a);
    if (b) a = b;
    if (!list || !b) {
        free(list);
        sweep_argv_free(a);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < t->n_save; i++) k += (size_t)snprintf(list + k, len - k, "%s%.0f", i ? "," : "", t->save_at[i]);
    /* after the grid's options, where the last value wins: a trunk never decays; --save-at needs
     * --state (a dry run shows the command without either) */
    const char *add[4] = {"--decay-frac", "0", "--save-at", list};
    int n_add = state_path ? 4 : 2;
    a[n] = NULL;
    for (int i = 0; i < n_add; i++) {
        if (!(a[n + (size_t)i] = strdup(add[i]))) {
            free(list);
            sweep_argv_free(a);
            return qp_fail(err, QP_ERR_NOMEM, "out of memory");
        }
        a[n + (size_t)i + 1] = NULL;
    }
    free(list);
    *out = a;
    return QP_OK;
}

void sweep_trunk_copy_path(const char *state_path, double tokens, char *buf, size_t n)
{
    snprintf(buf, n, "%s.at%.0f", state_path, tokens);
}

void sweep_trunk_tokens(const sweep_grid *g, const unsigned char *include, double *shared, double *separate)
{
    *shared = *separate = 0;
    unsigned char *used = calloc(g->n_trunks ? g->n_trunks : 1, 1);
    for (size_t i = 0; i < g->n; i++) {
        const sweep_point *p = &g->points[i];
        if (include && !include[i]) continue;
        *separate += p->tokens;
        *shared += p->tokens - p->branch_tokens;
        if (p->trunk && used) used[p->trunk - 1] = 1;
    }
    for (size_t t = 0; t < g->n_trunks && used; t++)
        if (used[t]) *shared += g->trunks[t].p.tokens;
    free(used);
}
