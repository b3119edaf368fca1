/* branch.c: trunk-and-branch runs: the checks and loading of --init STATE, and the trunk's
 * --save-at copies. A branch must train bit for bit as the same point trained from scratch:
 * everything that shaped the trunk's steps before the branch point is compared here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "branch.h"

#define STATE_MAGIC_BYTES "QTST" /* state.c's magic, little-endian */

int branch_is_state(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char b[4];
    int ok = fread(b, 1, 4, f) == 4 && !memcmp(b, STATE_MAGIC_BYTES, 4);
    fclose(f);
    return ok;
}

/* The value of `key` in settings text, as a NUL-terminated copy in buf; NULL when absent. */
static const char *setting(const char *text, const char *key, char *buf, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > kl && !strncmp(p, key, kl) && p[kl] == ' ') {
            snprintf(buf, n, "%.*s", (int)(ll - kl - 1), p + kl + 1);
            return buf;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

static double setting_real(const char *text, const char *key, double dflt)
{
    char buf[128];
    return setting(text, key, buf, sizeof buf) ? strtod(buf, NULL) : dflt;
}

/* The settings that shape every FP step: the same in the trunk and this run (absent on both
 * sides counts as the same; the learning-rate path is compared step by step below). */
static qp_status same_fp_settings(const char *path, const char *trunk, const char *mine, qp_error *err)
{
    static const char *keys[] = {"vocabulary", "--layers", "--width", "--heads", "--kv-heads", "--ffn",
                                 "--context", "--batch", "--qparam-lr-mult", "--weight-decay", "--grad-clip",
                                 "adam-betas-eps", "--seed", "--precision", "training-data"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char a[256], b[256];
        const char *t = setting(trunk, keys[i], a, sizeof a), *m = setting(mine, keys[i], b, sizeof b);
        if (!t != !m || (t && strcmp(t, m)))
            return qp_fail(err, QP_ERR_INPUT, "--init %s: %s differs: the trunk has %s, this run %s; a branch "
                                              "trains as its trunk did up to the branch point, so use the trunk's",
                           path, keys[i], t ? t : "none", m ? m : "none");
    }
    if (setting(trunk, "--init", (char[8]){0}, 8))
        return qp_fail(err, QP_ERR_INPUT, "--init %s: that run itself started from --init; branch from an FP trunk",
                       path);
    return QP_OK;
}

/* The trunk's schedule, rebuilt from its settings on top of this run's configuration. */
static qp_status trunk_sched(const train_config *c, const char *text, train_sched *ts, qp_error *err)
{
    train_config t = *c;
    char buf[64];
    t.init_path = NULL;
    t.init_state = 0;
    t.tokens = setting_real(text, "--tokens", NAN);
    t.qat_fraction = setting_real(text, "--qat-fraction", NAN);
    t.quant.bits = (int)setting_real(text, "--bits", 0);
    if (data_bits_is_fp(t.quant.bits)) t.quant.kind = TRAIN_Q_NONE;
    else if (t.quant.kind == TRAIN_Q_NONE) t.quant.kind = TRAIN_Q_LSQ; /* only NONE or not matters here */
    t.schedule = setting(text, "--schedule", buf, sizeof buf) && !strcmp(buf, "fused") ? DATA_SCHED_FUSED
                                                                                      : DATA_SCHED_CLASSIC;
    t.lr = setting_real(text, "--lr", NAN);
    t.qat_lr = setting_real(text, "--qat-lr", 0);
    t.warmup_frac = setting_real(text, "--warmup-frac", NAN);
    t.warmup_tokens = setting_real(text, "--warmup-tokens", 0);
    t.decay_frac = setting_real(text, "--decay-frac", NAN);
    t.decay_sqrt = setting(text, "--decay-shape", buf, sizeof buf) && !strcmp(buf, "1-sqrt");
    t.min_lr_frac = setting_real(text, "--min-lr-frac", NAN);
    if (!(isfinite(t.tokens) && isfinite(t.lr) && isfinite(t.warmup_frac) && isfinite(t.decay_frac)))
        return qp_fail(err, QP_ERR_PARSE, "the trunk state's settings lack its schedule");
    return train_sched_make(&t, ts, err);
}

/* The trunk's learning rate up to the branch point is this run's. */
static qp_status same_lr_path(const char *path, const train_config *c, const train_sched *s, const char *text,
                              long k, qp_error *err)
{
    train_sched ts;
    qp_status st = trunk_sched(c, text, &ts, err);
    if (st) return st;
    long d = train_sched_branch_step(s);
    if (k > d || k > ts.total)
        return qp_fail(err, QP_ERR_INPUT, "--init %s: saved at step %ld, after this run's branch point (step %ld, "
                                          "where its %s starts); branch from a state saved at or before it",
                       path, k, d, s->schedule == DATA_SCHED_FUSED ? "QAT phase" : "FP decay");
    long i = train_sched_first_difference(&ts, s, k);
    if (i >= 0)
        return qp_fail(err, QP_ERR_INPUT, "--init %s: the learning rate at step %ld is %.6g in the trunk and %.6g "
                                          "here: use the trunk's --lr and an absolute --warmup-tokens (a --warmup-frac "
                                          "warmup depends on each run's length)",
                       path, i, train_lr_at(&ts, i), train_lr_at(s, i));
    return QP_OK;
}

qp_status branch_check(const train_config *c, const train_sched *s, const char *mine, branch_info *b, qp_error *err)
{
    const char *path = c->init_path;
    memset(b, 0, sizeof *b);
    char *text = NULL;
    train_progress pr;
    uint64_t nf = 0, sum = 0;
    qp_status st = state_peek(path, &text, &pr, &nf, &sum, err);
    if (st) return st;
    model lay;
    model_layout(&lay, &c->shape, &c->quant, 1, c->shape.context);
    if (pr.finished)
        st = qp_fail(err, QP_ERR_INPUT, "--init %s: the state of a finished run; branch from a copy a trunk saved "
                                        "with --save-at", path);
    else if (pr.switched)
        st = qp_fail(err, QP_ERR_INPUT, "--init %s: saved after its FP->QAT switch; branch from an FP trunk", path);
    else if (nf != lay.n_floats)
        st = qp_fail(err, QP_ERR_INPUT, "--init %s: saved for %llu parameters (quantizer scales included), this run "
                                        "has %zu: a branch needs its trunk's model and parameter layout (bits 1..8 "
                                        "share one, 16/32 another; --quantizer asym, --group-size, --embed-bits)",
                     path, (unsigned long long)nf, lay.n_floats);
    if (!st) st = same_fp_settings(path, text, mine, err);
    if (!st) st = same_lr_path(path, c, s, text, (long)pr.step, err);
    if (!st) {
        char id[96] = "";
        setting(text, "run-id", id, sizeof id);
        double tps = (double)c->batch * c->shape.context;
        snprintf(b->trunk, sizeof b->trunk, "%s@%.0f", id[0] ? id : "?", (double)pr.step * tps);
        snprintf(b->id, sizeof b->id, "trunk state %016llx step %lld", (unsigned long long)sum, (long long)pr.step);
        b->step = (long)pr.step;
    }
    free(text);
    return st;
}

qp_status branch_load(const char *path, model *m, train_progress *pr, qp_error *err)
{
    train_progress t;
    char *record = NULL, id[96];
    qp_status st = state_load(path, NULL, m, &t, &record, id, sizeof id, err);
    free(record);
    if (st) return st;
    pr->step = t.step;
    pr->adam_t = t.adam_t;
    pr->rng = t.rng;
    pr->train_loss = t.train_loss; /* progress output only */
    return QP_OK;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

qp_status branch_save_steps(const train_config *c, const train_sched *s, long **steps, int *n, qp_error *err)
{
    *steps = NULL;
    *n = 0;
    if (!c->save_at) return QP_OK;
    if (!c->state_path) return qp_fail(err, QP_ERR_USAGE, "--save-at needs --state FILE (the copies are FILE.atD)");
    double tps = (double)c->batch * c->shape.context;
    size_t cap = 1;
    for (const char *p = c->save_at; *p; p++) cap += *p == ',';
    long *v = malloc(cap * sizeof *v);
    if (!v) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    char *text = strdup(c->save_at), *save = NULL;
    qp_status st = text ? QP_OK : qp_fail(err, QP_ERR_NOMEM, "out of memory");
    for (char *t = text ? strtok_r(text, ",", &save) : NULL; t && !st; t = strtok_r(NULL, ",", &save)) {
        double d;
        if ((st = qp_parse_count(t, "--save-at", &d, err))) break;
        double k = d / tps;
        if (k != floor(k) || k > (double)s->total)
            st = qp_fail(err, QP_ERR_INPUT, "--save-at %s: use whole multiples of the tokens per step (%.0f) up to "
                                            "--tokens (%.0f)", t, tps, (double)s->total * tps);
        else v[(*n)++] = (long)k;
    }
    free(text);
    if (st) {
        free(v);
        *n = 0;
        return st;
    }
    qsort(v, (size_t)*n, sizeof *v, cmp_long);
    *steps = v;
    return QP_OK;
}

void branch_save_path(const train_config *c, long step, char *buf, size_t n)
{
    snprintf(buf, n, "%s.at%.0f", c->state_path, (double)step * c->batch * c->shape.context);
}
