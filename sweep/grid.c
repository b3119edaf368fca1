/* Grid files: parse, expand into points with deterministic run ids, trainer arguments. */
#include "sweep.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIST 256

double sweep_shape_params(data_model_shape *s)
{
    if (s->n_kv_head == 0) s->n_kv_head = s->n_head;
    if (s->d_ff == 0) {
        int f = (8 * s->d_model + 2) / 3; /* Llama's 2/3 * 4d, rounded up to a multiple of 8 */
        s->d_ff = (f + 7) / 8 * 8;
    }
    if (s->vocab == 0) s->vocab = 256;
    double D = s->d_model, F = s->d_ff, hd = D / s->n_head, Dkv = hd * s->n_kv_head;
    double per_layer = D * (D + 2 * Dkv) + D * D + 3 * D * F + 2 * D;
    return s->n_layer * per_layer + D + (double)s->vocab * D;
}

void sweep_grid_free(sweep_grid *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_args; i++) free(g->args[i]);
    free(g->points);
    memset(g, 0, sizeof *g);
}

/* A list of numbers, or a single number; strings are counts ("4M") when `counts`. */
static qp_status get_list(const cJSON *o, const char *key, int counts, double *vals, int *n,
                          const char *name, qp_error *err)
{
    *n = 0;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a) return QP_OK;
    const cJSON *item;
    int single = !cJSON_IsArray(a);
    for (item = single ? a : a->child; item; item = single ? NULL : item->next) {
        if (*n == MAX_LIST)
            return qp_fail(err, QP_ERR_INPUT, "%s: \"%s\" lists more than %d values", name, key, MAX_LIST);
        double v;
        if (cJSON_IsNumber(item)) {
            v = item->valuedouble;
        } else if (counts && cJSON_IsString(item)) {
            char what[128];
            snprintf(what, sizeof what, "%s: \"%s\" entry", name, key);
            qp_status st = qp_parse_count(item->valuestring, what, &v, err);
            if (st) return st;
        } else {
            return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" must be a number or a list of numbers%s", name,
                           key, counts ? " (or counts like \"4M\")" : "");
        }
        if (!isfinite(v))
            return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" holds a non-finite value", name, key);
        vals[(*n)++] = v;
    }
    if (*n == 0) return qp_fail(err, QP_ERR_INPUT, "%s: \"%s\" is an empty list: give at least one value", name, key);
    return QP_OK;
}

static qp_status get_int(const cJSON *o, const char *key, int required, long lo, long hi, int *out,
                         const char *where, qp_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required) return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" is missing", where, key);
        return QP_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" must be a whole number in %ld..%ld", where, key, lo, hi);
    *out = (int)v->valuedouble;
    return QP_OK;
}

/* 64-bit FNV-1a: the run id's hash of every setting that changes the result. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* A shape's own learning rate wins over the grid's (small models train best with a larger one). */
static double point_lr(const sweep_grid *g, const sweep_point *p) { return isfinite(p->lr) ? p->lr : g->lr; }

static void make_run_id(const sweep_grid *g, sweep_point *p)
{
    char key[4096];
    int k = snprintf(key, sizeof key, "data=%s|L=%d|D=%d|H=%d|KV=%d|F=%d|T=%d|V=%d|tokens=%.0f|bits=%d|f=%.6g|"
                                      "sched=%s|seed=%llu|batch=%d|lr=%.6g",
                     g->data, p->shape.n_layer, p->shape.d_model, p->shape.n_head, p->shape.n_kv_head,
                     p->shape.d_ff, p->shape.context, p->shape.vocab, p->tokens, p->bits, p->fraction,
                     data_schedule_name(p->schedule), (unsigned long long)p->seed, g->batch, point_lr(g, p));
    for (int i = 0; i < g->n_args && k > 0 && (size_t)k < sizeof key; i++)
        k += snprintf(key + k, sizeof key - (size_t)k, "|%s", g->args[i]);
    uint64_t h = fnv1a(key);
    char tok[32];
    qp_format_count(p->tokens, tok, sizeof tok);
    const char *sched = p->schedule == DATA_SCHED_FP_ONLY ? "fp" : p->schedule == DATA_SCHED_QAT_ONLY ? "qat"
                                                                                                     : data_schedule_name(p->schedule);
    if (p->bits >= 16)
        snprintf(p->run_id, sizeof p->run_id, "L%dd%d-%s-b%d-s%llu-%012llx", p->shape.n_layer, p->shape.d_model,
                 tok, p->bits, (unsigned long long)p->seed, (unsigned long long)(h >> 16));
    else
        snprintf(p->run_id, sizeof p->run_id, "L%dd%d-%s-b%d-f%.3g-%s-s%llu-%012llx", p->shape.n_layer,
                 p->shape.d_model, tok, p->bits, p->fraction, sched, (unsigned long long)p->seed,
                 (unsigned long long)(h >> 16));
}

static qp_status push_point(sweep_grid *g, size_t *cap, sweep_point *p, qp_error *err)
{
    make_run_id(g, p);
    for (size_t i = 0; i < g->n; i++)
        if (!strcmp(g->points[i].run_id, p->run_id)) return QP_OK; /* the same run twice */
    if (g->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        sweep_point *np = realloc(g->points, nc * sizeof *np);
        if (!np) return qp_fail(err, QP_ERR_NOMEM, "out of memory expanding the grid");
        g->points = np;
        *cap = nc;
    }
    p->index = (int)g->n;
    g->points[g->n++] = *p;
    return QP_OK;
}

static qp_status parse_train(const cJSON *t, sweep_grid *g, const char *name, qp_error *err)
{
    char where[600];
    snprintf(where, sizeof where, "%s: train", name);
    if (!cJSON_IsObject(t)) return qp_fail(err, QP_ERR_PARSE, "%s must be an object", where);
    qp_status st;
    if ((st = get_int(t, "batch", 0, 1, 1 << 20, &g->batch, where, err))) return st;
    if ((st = get_int(t, "threads", 0, 1, 1024, &g->threads, where, err))) return st;
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(t, "lr");
    if (lr) {
        if (!cJSON_IsNumber(lr) || !(lr->valuedouble > 0) || !isfinite(lr->valuedouble))
            return qp_fail(err, QP_ERR_PARSE, "%s: \"lr\" must be a positive number", where);
        g->lr = lr->valuedouble;
    }
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(t, "args");
    if (args) {
        if (!cJSON_IsArray(args))
            return qp_fail(err, QP_ERR_PARSE, "%s: \"args\" must be a list of strings, e.g. [\"--eval-tokens\", \"16384\"]", where);
        static const char *owned[] = {"--data", "--layers", "--width", "--heads", "--kv-heads", "--ffn", "--context",
                                      "--tokens", "--qat-fraction", "--bits", "--schedule", "--batch", "--lr",
                                      "--seed", "--threads", "--run-id", "--runs-out", "--state", "--resume"};
        for (const cJSON *a = args->child; a; a = a->next) {
            if (!cJSON_IsString(a)) return qp_fail(err, QP_ERR_PARSE, "%s: \"args\" entries must be strings", where);
            for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
                if (!strcmp(a->valuestring, owned[i]))
                    return qp_fail(err, QP_ERR_INPUT, "%s: \"args\" must not set %s: the sweep sets it from the grid",
                                   where, owned[i]);
            if (g->n_args == SWEEP_MAX_ARGS - 8)
                return qp_fail(err, QP_ERR_INPUT, "%s: too many \"args\"", where);
            if (!(g->args[g->n_args++] = strdup(a->valuestring))) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
        }
    }
    for (const cJSON *c = t->child; c; c = c->next)
        if (strcmp(c->string, "batch") && strcmp(c->string, "threads") && strcmp(c->string, "lr") &&
            strcmp(c->string, "args"))
            return qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\" (known: batch, lr, threads, args)", where,
                           c->string);
    return QP_OK;
}

/* Token budgets of one shape: its own "tokens"/"tokens_per_param", else the grid's. */
static qp_status budgets(const cJSON *shape, const cJSON *root, double n_params, double *out, int *n,
                         const char *where, qp_error *err)
{
    const cJSON *scopes[2] = {shape, root};
    for (int s = 0; s < 2; s++) {
        int has_abs = cJSON_HasObjectItem(scopes[s], "tokens"), has_tpp = cJSON_HasObjectItem(scopes[s], "tokens_per_param");
        if (has_abs && has_tpp)
            return qp_fail(err, QP_ERR_INPUT, "%s: give either \"tokens\" or \"tokens_per_param\", not both", where);
        qp_status st;
        if (has_abs) return get_list(scopes[s], "tokens", 1, out, n, where, err);
        if (has_tpp) {
            if ((st = get_list(scopes[s], "tokens_per_param", 0, out, n, where, err))) return st;
            for (int i = 0; i < *n; i++) {
                if (!(out[i] > 0))
                    return qp_fail(err, QP_ERR_INPUT, "%s: tokens_per_param %g must be positive", where, out[i]);
                out[i] = round(out[i] * n_params);
            }
            return QP_OK;
        }
    }
    return qp_fail(err, QP_ERR_INPUT,
                   "%s: no token budget: give \"tokens\" (e.g. [\"1M\", \"4M\"]) or \"tokens_per_param\" (e.g. [20, 80]) "
                   "in the grid or the shape",
                   where);
}

qp_status sweep_grid_parse(const char *json, const char *name, sweep_grid *g, qp_error *err)
{
    memset(g, 0, sizeof *g);
    g->lr = NAN;
    cJSON *root = cJSON_Parse(json);
    if (!root) return qp_fail(err, QP_ERR_PARSE, "%s: not valid JSON (near: %.40s)", name, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    qp_status st = QP_OK;
    size_t cap = 0;
    double bits[MAX_LIST], fr[MAX_LIST], seeds[MAX_LIST], tok[MAX_LIST];
    int nb = 0, nf = 0, ns = 0, nt = 0, nsched = 0;
    data_schedule sched[DATA_SCHED_COUNT_];
    static const char *known[] = {"schema", "data", "shapes", "tokens", "tokens_per_param", "bits", "fractions",
                                  "schedules", "seeds", "train", "comment"};
    if (!cJSON_IsObject(root)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: a grid must be a JSON object", name);
        goto done;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok |= !strcmp(c->string, known[i]);
        if (!ok) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\": see docs/sweep.md for the grid format", name, c->string);
            goto done;
        }
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (schema && (!cJSON_IsString(schema) || strcmp(schema->valuestring, SWEEP_GRID_SCHEMA))) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: schema must be \"%s\"", name, SWEEP_GRID_SCHEMA);
        goto done;
    }
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsString(data) || !data->valuestring[0] || strlen(data->valuestring) >= sizeof g->data) {
        st = qp_fail(err, QP_ERR_PARSE,
                     "%s: \"data\" must name the token-file prefix, e.g. \"data/corpus/default\" "
                     "(PREFIX.train.tok and PREFIX.val.tok)",
                     name);
        goto done;
    }
    strcpy(g->data, data->valuestring);
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(root, "train");
    if (train && (st = parse_train(train, g, name, err))) goto done;
    if ((st = get_list(root, "bits", 0, bits, &nb, name, err))) goto done;
    if (nb == 0) {
        st = qp_fail(err, QP_ERR_INPUT, "%s: \"bits\" is missing: list bit widths, e.g. [2, 4] (16 = full precision)", name);
        goto done;
    }
    for (int i = 0; i < nb; i++)
        if (bits[i] != floor(bits[i]) || !((bits[i] >= 1 && bits[i] <= 8) || bits[i] == 16 || bits[i] == 32)) {
            st = qp_fail(err, QP_ERR_INPUT, "%s: bits %g: use 1..8 for QAT or 16/32 for full precision", name, bits[i]);
            goto done;
        } else if (bits[i] < 16) {
            g->has_quantized = 1;
        }
    if ((st = get_list(root, "fractions", 0, fr, &nf, name, err))) goto done;
    if (nf == 0 && g->has_quantized) {
        st = qp_fail(err, QP_ERR_INPUT, "%s: \"fractions\" is missing: list QAT fractions in [0, 1], e.g. [0, 0.2, 0.5, 1]", name);
        goto done;
    }
    for (int i = 0; i < nf; i++)
        if (!(fr[i] >= 0 && fr[i] <= 1)) {
            st = qp_fail(err, QP_ERR_INPUT, "%s: QAT fraction %g is outside [0, 1]", name, fr[i]);
            goto done;
        }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "schedules");
    if (!sc) {
        sched[nsched++] = DATA_SCHED_CLASSIC;
    } else {
        if (!cJSON_IsArray(sc) || !sc->child) {
            st = qp_fail(err, QP_ERR_PARSE, "%s: \"schedules\" must be a list like [\"classic\", \"fused\"]", name);
            goto done;
        }
        for (const cJSON *s = sc->child; s; s = s->next) {
            data_schedule d;
            if (!cJSON_IsString(s) || data_schedule_parse(s->valuestring, &d, err) ||
                (d != DATA_SCHED_CLASSIC && d != DATA_SCHED_FUSED) || nsched == DATA_SCHED_COUNT_) {
                st = qp_fail(err, QP_ERR_INPUT,
                             "%s: \"schedules\" entries must be \"classic\" or \"fused\" (f = 0 and 1 choose fp-only "
                             "and qat-only by themselves)",
                             name);
                goto done;
            }
            sched[nsched++] = d;
        }
    }
    if ((st = get_list(root, "seeds", 0, seeds, &ns, name, err))) goto done;
    if (ns == 0) seeds[ns++] = 1;
    for (int i = 0; i < ns; i++)
        if (seeds[i] < 0 || seeds[i] != floor(seeds[i]) || seeds[i] > 9007199254740992.0) {
            st = qp_fail(err, QP_ERR_INPUT, "%s: seed %g must be a whole number >= 0", name, seeds[i]);
            goto done;
        }
    const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(root, "shapes");
    if (!cJSON_IsArray(shapes) || !shapes->child) {
        st = qp_fail(err, QP_ERR_INPUT,
                     "%s: \"shapes\" must list model shapes, e.g. [{\"layers\": 2, \"width\": 64, \"heads\": 2, "
                     "\"context\": 128}]",
                     name);
        goto done;
    }
    int si = 0;
    for (const cJSON *sh = shapes->child; sh; sh = sh->next, si++) {
        char where[600];
        snprintf(where, sizeof where, "%s: shapes[%d]", name, si);
        if (!cJSON_IsObject(sh)) {
            st = qp_fail(err, QP_ERR_PARSE, "%s must be an object", where);
            goto done;
        }
        static const char *sk[] = {"layers", "width", "heads", "kv_heads", "ffn", "context", "vocab", "tokens",
                                   "tokens_per_param", "lr"};
        for (const cJSON *c = sh->child; c; c = c->next) {
            int ok = 0;
            for (size_t i = 0; i < sizeof sk / sizeof sk[0]; i++) ok |= !strcmp(c->string, sk[i]);
            if (!ok) {
                st = qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\" (known: layers, width, heads, kv_heads, ffn, "
                                                "context, vocab, tokens, tokens_per_param, lr)", where, c->string);
                goto done;
            }
        }
        data_model_shape s = {0};
        if ((st = get_int(sh, "layers", 1, 1, 1024, &s.n_layer, where, err)) ||
            (st = get_int(sh, "width", 1, 2, 1 << 16, &s.d_model, where, err)) ||
            (st = get_int(sh, "heads", 1, 1, 1024, &s.n_head, where, err)) ||
            (st = get_int(sh, "kv_heads", 0, 1, 1024, &s.n_kv_head, where, err)) ||
            (st = get_int(sh, "ffn", 0, 1, 1 << 20, &s.d_ff, where, err)) ||
            (st = get_int(sh, "context", 1, 2, 65536, &s.context, where, err)) ||
            (st = get_int(sh, "vocab", 0, 2, 65536, &s.vocab, where, err)))
            goto done;
        if (s.d_model % s.n_head || (s.d_model / s.n_head) % 2) {
            st = qp_fail(err, QP_ERR_INPUT, "%s: width %d / heads %d must be a whole, even head size", where, s.d_model,
                         s.n_head);
            goto done;
        }
        double shape_lr = NAN;
        const cJSON *slr = cJSON_GetObjectItemCaseSensitive(sh, "lr");
        if (slr) {
            if (!cJSON_IsNumber(slr) || !(slr->valuedouble > 0) || !isfinite(slr->valuedouble)) {
                st = qp_fail(err, QP_ERR_PARSE, "%s: \"lr\" must be a positive number, e.g. 0.01", where);
                goto done;
            }
            shape_lr = slr->valuedouble;
        }
        double n_params = sweep_shape_params(&s);
        if ((st = budgets(sh, root, n_params, tok, &nt, where, err))) goto done;
        for (int t = 0; t < nt; t++) {
            if (!(tok[t] >= s.context)) {
                st = qp_fail(err, QP_ERR_INPUT, "%s: token budget %g is less than one context (%d tokens)", where,
                             tok[t], s.context);
                goto done;
            }
            for (int b = 0; b < nb; b++)
                for (int k = 0; k < ns; k++) {
                    int nfr = bits[b] >= 16 ? 1 : nf;
                    for (int f = 0; f < nfr; f++)
                        for (int q = 0; q < nsched; q++) {
                            sweep_point p = {0};
                            p.shape = s;
                            p.n_params = n_params;
                            p.tokens = tok[t];
                            p.bits = (int)bits[b];
                            p.seed = (uint64_t)seeds[k];
                            p.fraction = bits[b] >= 16 ? 0 : fr[f];
                            p.schedule = sched[q];
                            p.lr = shape_lr;
                            if (p.bits >= 16 || p.fraction == 0) p.schedule = DATA_SCHED_FP_ONLY;
                            else if (p.fraction == 1) p.schedule = DATA_SCHED_QAT_ONLY;
                            if ((st = push_point(g, &cap, &p, err))) goto done;
                        }
                }
        }
    }
done:
    cJSON_Delete(root);
    if (st) sweep_grid_free(g);
    return st;
}

qp_status sweep_grid_read(const char *path, sweep_grid *g, qp_error *err)
{
    char *text;
    qp_status st = qp_read_file(path, &text, NULL, err);
    if (st) return st;
    st = sweep_grid_parse(text, path, g, err);
    free(text);
    return st;
}

void sweep_argv_free(char **argv)
{
    if (!argv) return;
    for (char **a = argv; *a; a++) free(*a);
    free(argv);
}

qp_status sweep_point_args(const sweep_grid *g, const sweep_point *p, const char *runs_path,
                           const char *state_path, int resume, int threads, char ***out, qp_error *err)
{
    char **a = calloc(SWEEP_MAX_ARGS * 2, sizeof *a);
    if (!a) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int n = 0;
    char buf[64];
#define ADD(s)                                                                   \
    do {                                                                         \
        if (!(a[n++] = strdup(s))) {                                             \
            sweep_argv_free(a);                                                  \
            return qp_fail(err, QP_ERR_NOMEM, "out of memory");                  \
        }                                                                        \
    } while (0)
#define ADDF(fmt, v)                          \
    do {                                      \
        snprintf(buf, sizeof buf, fmt, v);    \
        ADD(buf);                             \
    } while (0)
    ADD("--data"); ADD(g->data);
    ADD("--layers"); ADDF("%d", p->shape.n_layer);
    ADD("--width"); ADDF("%d", p->shape.d_model);
    ADD("--heads"); ADDF("%d", p->shape.n_head);
    if (p->shape.n_kv_head != p->shape.n_head) { ADD("--kv-heads"); ADDF("%d", p->shape.n_kv_head); }
    ADD("--ffn"); ADDF("%d", p->shape.d_ff);
    ADD("--context"); ADDF("%d", p->shape.context);
    ADD("--tokens"); ADDF("%.0f", p->tokens);
    ADD("--qat-fraction"); ADDF("%.6g", p->fraction);
    ADD("--bits"); ADDF("%d", p->bits);
    ADD("--schedule"); ADD(p->schedule == DATA_SCHED_FUSED ? "fused" : "classic");
    if (g->batch > 0) { ADD("--batch"); ADDF("%d", g->batch); }
    if (isfinite(point_lr(g, p))) { ADD("--lr"); ADDF("%.6g", point_lr(g, p)); }
    ADD("--seed"); ADDF("%llu", (unsigned long long)p->seed);
    ADD("--threads"); ADDF("%d", threads > 0 ? threads : 1);
    for (int i = 0; i < g->n_args; i++) ADD(g->args[i]);
    ADD("--run-id"); ADD(p->run_id);
    ADD("--runs-out"); ADD(runs_path);
    if (state_path) {
        ADD("--state"); ADD(state_path);
        if (resume) ADD("--resume");
    }
#undef ADD
#undef ADDF
    a[n] = NULL;
    *out = a;
    return QP_OK;
}
