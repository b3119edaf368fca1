/* Grid files: parse, expand into points with deterministic run ids, trainer arguments. */
#include "internal.h"
#include "sweep.h"
#include "train.h"

#include <cjson/cJSON.h>
#include <ctype.h>
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
    return data_shape_params(s);
}

void sweep_grid_free(sweep_grid *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_args; i++) free(g->args[i]);
    for (int m = 0; m < g->n_models; m++)
        for (int i = 0; i < g->models[m].n_args; i++) free(g->models[m].args[i]);
    for (int m = 0; m < g->n_methods; m++)
        for (int i = 0; i < g->methods[m].n_args; i++) free(g->methods[m].args[i]);
    free(g->points);
    for (size_t t = 0; t < g->n_trunks; t++) free(g->trunks[t].save_at);
    free(g->trunks);
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

/* A whole number; `opt` names the trainer option it becomes (its range is the trainer's,
 * from the options table), or NULL with the range lo..hi. */
static qp_status get_int(const cJSON *o, const char *key, int required, const char *opt, long lo, long hi, int *out,
                         const char *where, qp_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required) return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" is missing", where, key);
        return QP_OK;
    }
    if (opt && cJSON_IsNumber(v)) {
        char at[700];
        snprintf(at, sizeof at, "%s: \"%s\"", where, key);
        qp_status st = train_option_check_number(opt, v->valuedouble, at, err);
        if (st) return st;
    } else if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
               v->valuedouble > hi) {
        return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" must be a whole number in %ld..%ld", where, key, lo, hi);
    }
    *out = (int)v->valuedouble;
    return QP_OK;
}

/* Every value of a list against the trainer option it becomes. */
static qp_status check_list(const double *v, int n, const char *opt, const char *name, const char *key, qp_error *err)
{
    char at[700];
    snprintf(at, sizeof at, "%s: \"%s\"", name, key);
    qp_status st = QP_OK;
    for (int i = 0; i < n && !st; i++) st = train_option_check_number(opt, v[i], at, err);
    return st;
}

/* A positive learning rate within the trainer's range. */
static qp_status get_lr(const cJSON *o, double *out, const char *where, qp_error *err)
{
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(o, "lr");
    if (!lr) return QP_OK;
    if (!cJSON_IsNumber(lr))
        return qp_fail(err, QP_ERR_PARSE, "%s: \"lr\" must be a positive number, e.g. 0.01", where);
    char at[700];
    snprintf(at, sizeof at, "%s: \"lr\"", where);
    qp_status st = train_option_check_number("--lr", lr->valuedouble, at, err);
    if (!st) *out = lr->valuedouble;
    return st;
}

/* "args": trainer options the grid does not own, each checked against the trainer's table. */
static qp_status parse_args(const cJSON *args, sweep_grid *g, const char *where, qp_error *err)
{
    if (!cJSON_IsArray(args))
        return qp_fail(err, QP_ERR_PARSE, "%s: \"args\" must be a list of strings, e.g. [\"--eval-tokens\", \"16384\"]", where);
    const train_option *want_value = NULL;
    for (const cJSON *a = args->child; a; a = a->next) {
        if (!cJSON_IsString(a)) return qp_fail(err, QP_ERR_PARSE, "%s: \"args\" entries must be strings", where);
        const char *s = a->valuestring;
        qp_status st;
        if (want_value) {
            if ((st = train_option_value(want_value, s, NULL, err))) return st;
            want_value = NULL;
        } else {
            const train_option *o = train_option_find(s);
            if (!o)
                return qp_fail(err, QP_ERR_INPUT, "%s: \"args\": %s is not an option of qatplan train (qatplan train --help)",
                               where, s);
            if (o->grid)
                return qp_fail(err, QP_ERR_INPUT, "%s: \"args\" must not set %s: the sweep sets it from the grid", where, s);
            if (o->type != TRAIN_OPT_FLAG) want_value = o;
        }
        if (g->n_args == SWEEP_MAX_ARGS - 8) return qp_fail(err, QP_ERR_INPUT, "%s: too many \"args\"", where);
        if (!(g->args[g->n_args++] = strdup(s))) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    if (want_value) return qp_fail(err, QP_ERR_INPUT, "%s: \"args\": %s needs a value", where, want_value->name);
    return QP_OK;
}

/* 64-bit FNV-1a: the run id's hash of every setting that changes the result. */
uint64_t sweep_fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* A shape's own learning rate wins over the grid's (small models train best with a larger one). */
double sweep_point_lr(const sweep_grid *g, const sweep_point *p) { return isfinite(p->lr) ? p->lr : g->lr; }
#define point_lr sweep_point_lr

/* The settings that name a point's model, for its run id's hash. */
int sweep_model_key(const sweep_grid *g, const sweep_point *p, char *key, size_t size)
{
    if (!p->model)
        return snprintf(key, size, "L=%d|D=%d|H=%d|KV=%d|F=%d|T=%d|V=%d", p->shape.n_layer, p->shape.d_model,
                        p->shape.n_head, p->shape.n_kv_head, p->shape.d_ff, p->shape.context, p->shape.vocab);
    const sweep_model *m = &g->models[p->model - 1];
    int k = snprintf(key, size, "model=%s|N=%.0f", m->name, m->n_params);
    for (int i = 0; i < m->n_args && k > 0 && (size_t)k < size; i++) k += snprintf(key + k, size - (size_t)k, "|%s", m->args[i]);
    return k;
}

static void make_run_id(const sweep_grid *g, sweep_point *p)
{
    /* the key of qatplan's own shapes is as it always was: recorded run ids stay valid */
    char key[8192], model[64];
    int k = snprintf(key, sizeof key, "data=%s|", g->data);
    k += sweep_model_key(g, p, key + k, sizeof key - (size_t)k);
    if (k > 0 && (size_t)k < sizeof key)
        k += snprintf(key + k, sizeof key - (size_t)k, "|tokens=%.0f|bits=%d|f=%.6g|sched=%s|seed=%llu|batch=%d|lr=%.6g",
                      p->tokens, p->bits, p->fraction, data_schedule_name(p->schedule),
                      (unsigned long long)p->seed, g->batch, point_lr(g, p));
    for (int i = 0; i < g->n_args && k > 0 && (size_t)k < sizeof key; i++)
        k += snprintf(key + k, sizeof key - (size_t)k, "|%s", g->args[i]);
    const sweep_method *me = p->method ? &g->methods[p->method - 1] : NULL;
    for (int i = 0; me && i < me->n_args && k > 0 && (size_t)k < sizeof key; i++)
        k += snprintf(key + k, sizeof key - (size_t)k, "|method:%s", me->args[i]);
    if (g->init[0] && !data_bits_is_fp(p->bits) && k > 0 && (size_t)k < sizeof key)
        k += snprintf(key + k, sizeof key - (size_t)k, "|init=%s", g->init);
    /* only a ratio other than 1 enters the key: grids without one keep their run ids */
    double qr = sweep_point_qat_lr_ratio(g, p);
    if (qr != 1 && k > 0 && (size_t)k < sizeof key) snprintf(key + k, sizeof key - (size_t)k, "|qat_lr_ratio=%.6g", qr);
    uint64_t h = sweep_fnv1a(key);
    char tok[32];
    qp_format_count(p->tokens, tok, sizeof tok);
    if (p->model) snprintf(model, sizeof model, "%s", g->models[p->model - 1].name);
    else snprintf(model, sizeof model, "L%dd%d", p->shape.n_layer, p->shape.d_model);
    const char *sched = p->schedule == DATA_SCHED_FP_ONLY ? "fp" : p->schedule == DATA_SCHED_QAT_ONLY ? "qat"
                                                                                                     : data_schedule_name(p->schedule);
    if (data_bits_is_fp(p->bits))
        snprintf(p->run_id, sizeof p->run_id, "%s-%s-b%d-s%llu-%012llx", model, tok, p->bits,
                 (unsigned long long)p->seed, (unsigned long long)(h >> 16));
    else
        snprintf(p->run_id, sizeof p->run_id, "%s-%s-b%d-f%.3g-%s%s%s-s%llu-%012llx", model, tok, p->bits, p->fraction,
                 sched, me ? "-" : "", me ? me->name : "", (unsigned long long)p->seed, (unsigned long long)(h >> 16));
}

/* Points with a hash set of run ids (open addressing; slots hold index + 1, 0 = empty):
 * the duplicate check was a linear scan per point, quadratic in the grid's size. */
typedef struct {
    uint32_t *slot;
    size_t mask;
} id_set;

static void push_point(sweep_grid *g, id_set *ids, sweep_point *p)
{
    make_run_id(g, p);
    size_t i = (size_t)sweep_fnv1a(p->run_id) & ids->mask;
    for (; ids->slot[i]; i = (i + 1) & ids->mask)
        if (!strcmp(g->points[ids->slot[i] - 1].run_id, p->run_id)) return; /* the same run twice */
    p->index = (int)g->n;
    g->points[g->n++] = *p;
    ids->slot[i] = (uint32_t)g->n;
}

static qp_status parse_train(const cJSON *t, sweep_grid *g, const char *name, qp_error *err)
{
    char where[600];
    snprintf(where, sizeof where, "%s: train", name);
    if (!cJSON_IsObject(t)) return qp_fail(err, QP_ERR_PARSE, "%s must be an object", where);
    qp_status st;
    if ((st = get_int(t, "batch", 0, "--batch", 0, 0, &g->batch, where, err))) return st;
    if ((st = get_int(t, "threads", 0, "--threads", 0, 0, &g->threads, where, err))) return st;
    if ((st = get_lr(t, &g->lr, where, err))) return st;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(t, "args");
    if (args && (st = parse_args(args, g, where, err))) return st;
    for (const cJSON *c = t->child; c; c = c->next)
        if (strcmp(c->string, "batch") && strcmp(c->string, "threads") && strcmp(c->string, "lr") &&
            strcmp(c->string, "args"))
            return qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\" (known: batch, lr, threads, args)", where,
                           c->string);
    return QP_OK;
}

/* A model name for run ids: letters, digits, '.', '_', '-'. */
static int model_name_ok(const char *s)
{
    if (!*s || strlen(s) >= sizeof ((sweep_model *)0)->name) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '.' || *s == '_' || *s == '-')) return 0;
    return 1;
}

/* One setting of a "methods" entry: key "unfrozen" is the trainer's --unfrozen, its value a
 * number, a string or true (a flag), checked against the trainer's table. */
static qp_status method_setting(const cJSON *c, sweep_method *m, const char *where, qp_error *err)
{
    char opt[64], val[256];
    if (snprintf(opt, sizeof opt, "--%s", c->string) >= (int)sizeof opt)
        return qp_fail(err, QP_ERR_PARSE, "%s: key \"%.40s...\" is too long", where, c->string);
    for (char *q = opt + 2; *q; q++)
        if (*q == '_') *q = '-';
    const train_option *o = train_option_find(opt);
    if (!o)
        return qp_fail(err, QP_ERR_INPUT, "%s: \"%s\" is not a setting of qatplan train (%s; qatplan train --help)",
                       where, c->string, opt);
    if (o->grid)
        return qp_fail(err, QP_ERR_INPUT, "%s: \"%s\" must not be set here: the sweep sets %s from the grid", where,
                       c->string, opt);
    if (m->n_args + 2 > SWEEP_MAX_ARGS) return qp_fail(err, QP_ERR_INPUT, "%s: too many settings", where);
    if (o->type == TRAIN_OPT_FLAG) {
        if (!cJSON_IsTrue(c)) return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" is a flag: give true, or leave it out", where, c->string);
        return (m->args[m->n_args++] = strdup(opt)) ? QP_OK : qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    if (cJSON_IsNumber(c)) snprintf(val, sizeof val, "%.15g", c->valuedouble);
    else if (cJSON_IsString(c) && strlen(c->valuestring) < sizeof val) snprintf(val, sizeof val, "%s", c->valuestring);
    else return qp_fail(err, QP_ERR_PARSE, "%s: \"%s\" must be a number or a short string", where, c->string);
    char at[700];
    snprintf(at, sizeof at, "%s: \"%s\"", where, c->string);
    qp_status st = train_option_value(o, val, NULL, err);
    if (st) return qp_error_prefix(err, "%s: ", at), st;
    if (!(m->args[m->n_args] = strdup(opt)) || !(m->args[m->n_args + 1] = strdup(val))) {
        free(m->args[m->n_args]);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    m->n_args += 2;
    return QP_OK;
}

/* "methods": [{"method": "qat"}, {"method": "efqat", "unfrozen": 0.05, "name": "ef05"}, ...]:
 * each entry a set of trainer settings, crossed with the quantized points. */
static qp_status parse_methods(const cJSON *ms, sweep_grid *g, const char *name, qp_error *err)
{
    if (!cJSON_IsArray(ms) || !ms->child)
        return qp_fail(err, QP_ERR_PARSE, "%s: \"methods\" must list settings, e.g. [{\"method\": \"qat\"}, "
                                          "{\"method\": \"efqat\", \"unfrozen\": 0.05}]", name);
    int i = 0;
    for (const cJSON *e = ms->child; e; e = e->next, i++) {
        char where[600];
        snprintf(where, sizeof where, "%s: methods[%d]", name, i);
        if (!cJSON_IsObject(e)) return qp_fail(err, QP_ERR_PARSE, "%s must be an object of trainer settings", where);
        if (g->n_methods == SWEEP_MAX_METHODS) return qp_fail(err, QP_ERR_INPUT, "%s: more than %d methods", where, SWEEP_MAX_METHODS);
        sweep_method *m = &g->methods[g->n_methods++];
        memset(m, 0, sizeof *m);
        for (const cJSON *c = e->child; c; c = c->next) {
            qp_status st;
            if (strcmp(c->string, "name")) {
                if ((st = method_setting(c, m, where, err))) return st;
            } else if (!cJSON_IsString(c) || !model_name_ok(c->valuestring)) {
                return qp_fail(err, QP_ERR_PARSE, "%s: \"name\" must be 1-39 letters, digits, '.', '_' or '-' (it goes "
                                                  "into the run ids)", where);
            } else {
                strcpy(m->name, c->valuestring);
            }
        }
        if (!m->name[0]) {
            const cJSON *me = cJSON_GetObjectItemCaseSensitive(e, "method");
            snprintf(m->name, sizeof m->name, "%.24s-%d", cJSON_IsString(me) && model_name_ok(me->valuestring) ? me->valuestring : "m",
                     i + 1);
        }
    }
    return QP_OK;
}

/* "init": the --init file of the quantized points ("{seed}" becomes each point's seed). */
static qp_status parse_init(const cJSON *v, sweep_grid *g, const char *name, qp_error *err)
{
    if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= sizeof g->init)
        return qp_fail(err, QP_ERR_PARSE, "%s: \"init\" must name the FP checkpoint the QAT runs start from, e.g. "
                                          "\"fp/L2d64-s{seed}.safetensors\"", name);
    if (!train_option_find("--init"))
        return qp_fail(err, QP_ERR_INPUT, "%s: \"init\": this qatplan train has no --init", name);
    strcpy(g->init, v->valuestring);
    return QP_OK;
}

/* The --init path of a point: the grid's "init" with "{seed}" replaced. */
static int init_path(const sweep_grid *g, const sweep_point *p, char *out, size_t n)
{
    const char *at = strstr(g->init, "{seed}");
    if (!at) return snprintf(out, n, "%s", g->init) < (int)n;
    return snprintf(out, n, "%.*s%llu%s", (int)(at - g->init), g->init, (unsigned long long)p->seed, at + 6) < (int)n;
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

/* The value lists every shape is crossed with. */
typedef struct {
    double bits[MAX_LIST], fr[MAX_LIST], seeds[MAX_LIST];
    int nb, nf, ns, nsched;
    int nm; /* the grid's "methods" (0 = none) */
    data_schedule sched[DATA_SCHED_COUNT_];
} grid_axes;

/* One shape of the grid, checked, with its token budgets. */
typedef struct {
    data_model_shape s;
    double lr, n_params;
    double tok[MAX_LIST];
    int nt;
    int model; /* 0, or 1 + the index of its external model in the grid */
} grid_shape;


/* A shape naming an external model by its parameter count: {"n_params": 125e6, "name":
 * "gpt2-small", "args": ["--config", "small.toml"], ...}. `g` NULL: checked, not kept. */
static qp_status parse_model(const cJSON *sh, sweep_grid *g, const char *where, grid_shape *out, qp_error *err)
{
    static const char *sk[] = {"n_params", "name", "args", "tokens", "tokens_per_param", "lr"};
    for (const cJSON *c = sh->child; c; c = c->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof sk / sizeof sk[0]; i++) ok |= !strcmp(c->string, sk[i]);
        if (!ok)
            return qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\" in an external model's shape (known: n_params, name, "
                                              "args, tokens, tokens_per_param, lr; layers, width, ... describe qatplan's own "
                                              "models and do not go with n_params)", where, c->string);
    }
    sweep_model m;
    memset(&m, 0, sizeof m);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(sh, "n_params");
    if (cJSON_IsNumber(n)) m.n_params = n->valuedouble;
    else if (cJSON_IsString(n) && qp_parse_count(n->valuestring, where, &m.n_params, err)) return QP_ERR_PARSE;
    if (!(m.n_params >= 1 && m.n_params <= 1e15 && m.n_params == floor(m.n_params)))
        return qp_fail(err, QP_ERR_INPUT, "%s: \"n_params\" must be a whole parameter count, e.g. 125e6 or \"125M\"", where);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(sh, "name");
    if (name && !(cJSON_IsString(name) && model_name_ok(name->valuestring)))
        return qp_fail(err, QP_ERR_PARSE, "%s: \"name\" must be 1-39 letters, digits, '.', '_' or '-' (it starts the run ids)",
                       where);
    if (name) {
        strcpy(m.name, name->valuestring);
    } else {
        m.name[0] = 'N';
        qp_format_count(m.n_params, m.name + 1, sizeof m.name - 1);
    }
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(sh, "args");
    if (args && !cJSON_IsArray(args))
        return qp_fail(err, QP_ERR_PARSE, "%s: \"args\" must be a list of strings, the trainer's own model options", where);
    qp_status st = QP_OK;
    for (const cJSON *a = args ? args->child : NULL; a && !st; a = a->next) {
        if (!cJSON_IsString(a)) st = qp_fail(err, QP_ERR_PARSE, "%s: \"args\" entries must be strings", where);
        else if (m.n_args == SWEEP_MAX_ARGS) st = qp_fail(err, QP_ERR_INPUT, "%s: too many \"args\"", where);
        else if (!(m.args[m.n_args++] = strdup(a->valuestring))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    if (!st && g && g->n_models == SWEEP_MAX_MODELS)
        st = qp_fail(err, QP_ERR_INPUT, "%s: more than %d external models in one grid", where, SWEEP_MAX_MODELS);
    out->n_params = m.n_params;
    out->model = g ? g->n_models + 1 : 1;
    if (st || !g) {
        for (int i = 0; i < m.n_args; i++) free(m.args[i]);
        return st;
    }
    g->models[g->n_models++] = m;
    return QP_OK;
}

/* Budgets of a shape, each checked against the trainer's --tokens and (own models) the context. */
static qp_status shape_budgets(const cJSON *sh, const cJSON *root, const char *where, grid_shape *out, qp_error *err)
{
    qp_status st;
    if ((st = budgets(sh, root, out->n_params, out->tok, &out->nt, where, err))) return st;
    if ((st = check_list(out->tok, out->nt, "--tokens", where, "tokens", err))) return st;
    for (int t = 0; t < out->nt && !out->model; t++)
        if (!(out->tok[t] >= out->s.context))
            return qp_fail(err, QP_ERR_INPUT, "%s: token budget %g is less than one context (%d tokens)", where,
                           out->tok[t], out->s.context);
    return QP_OK;
}

static qp_status parse_shape(const cJSON *sh, const cJSON *root, sweep_grid *g, const char *where, grid_shape *out,
                             qp_error *err)
{
    if (!cJSON_IsObject(sh)) return qp_fail(err, QP_ERR_PARSE, "%s must be an object", where);
    memset(out, 0, sizeof *out);
    out->lr = NAN;
    qp_status st;
    if (cJSON_HasObjectItem(sh, "n_params")) {
        if ((st = get_lr(sh, &out->lr, where, err)) || (st = parse_model(sh, g, where, out, err))) return st;
        return shape_budgets(sh, root, where, out, err);
    }
    static const char *sk[] = {"layers", "width", "heads", "kv_heads", "ffn", "context", "vocab", "tokens",
                               "tokens_per_param", "lr"};
    for (const cJSON *c = sh->child; c; c = c->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof sk / sizeof sk[0]; i++) ok |= !strcmp(c->string, sk[i]);
        if (!ok)
            return qp_fail(err, QP_ERR_PARSE, "%s: unknown key \"%s\" (known: layers, width, heads, kv_heads, ffn, "
                                              "context, vocab, tokens, tokens_per_param, lr)", where, c->string);
    }
    data_model_shape s = {0};
    if ((st = get_int(sh, "layers", 1, "--layers", 0, 0, &s.n_layer, where, err)) ||
        (st = get_int(sh, "width", 1, "--width", 0, 0, &s.d_model, where, err)) ||
        (st = get_int(sh, "heads", 1, "--heads", 0, 0, &s.n_head, where, err)) ||
        (st = get_int(sh, "kv_heads", 0, "--kv-heads", 0, 0, &s.n_kv_head, where, err)) ||
        (st = get_int(sh, "ffn", 0, "--ffn", 0, 0, &s.d_ff, where, err)) ||
        (st = get_int(sh, "context", 1, "--context", 0, 0, &s.context, where, err)) ||
        (st = get_int(sh, "vocab", 0, NULL, 2, 65536, &s.vocab, where, err)))
        return st;
    if (s.d_model % s.n_head || (s.d_model / s.n_head) % 2)
        return qp_fail(err, QP_ERR_INPUT, "%s: width %d / heads %d must be a whole, even head size", where, s.d_model,
                       s.n_head);
    if ((st = get_lr(sh, &out->lr, where, err))) return st;
    out->n_params = sweep_shape_params(&s);
    out->s = s;
    return shape_budgets(sh, root, where, out, err);
}

/* a * b, saturating at UINT64_MAX: point counts are checked before anything is allocated. */
static uint64_t mul_sat(uint64_t a, uint64_t b) { return a && b > UINT64_MAX / a ? UINT64_MAX : a * b; }

/* Points of one budget of one shape, before duplicates are dropped. */
static uint64_t points_per_budget(const grid_axes *ax)
{
    uint64_t nfp = 0, nq = 0;
    for (int b = 0; b < ax->nb; b++) data_bits_is_fp((int)ax->bits[b]) ? nfp++ : nq++;
    uint64_t per_seed = mul_sat(nfp + mul_sat(mul_sat(nq, (uint64_t)ax->nf), (uint64_t)(ax->nm > 0 ? ax->nm : 1)),
                                (uint64_t)ax->nsched);
    return mul_sat(per_seed, (uint64_t)ax->ns);
}

static void expand_shape(sweep_grid *g, id_set *ids, const grid_shape *gs, const grid_axes *ax)
{
    for (int t = 0; t < gs->nt; t++)
        for (int b = 0; b < ax->nb; b++)
            for (int k = 0; k < ax->ns; k++) {
                int fp = data_bits_is_fp((int)ax->bits[b]), nfr = fp ? 1 : ax->nf, nme = fp || !ax->nm ? 1 : ax->nm;
                for (int f = 0; f < nfr; f++)
                    for (int q = 0; q < ax->nsched * nme; q++) {
                        sweep_point p = {0};
                        p.method = fp || !ax->nm ? 0 : q / ax->nsched + 1;
                        p.shape = gs->s;
                        p.n_params = gs->n_params;
                        p.tokens = gs->tok[t];
                        p.bits = (int)ax->bits[b];
                        p.seed = (uint64_t)ax->seeds[k];
                        p.fraction = data_bits_is_fp((int)ax->bits[b]) ? 0 : ax->fr[f];
                        p.schedule = ax->sched[q % ax->nsched];
                        p.lr = gs->lr;
                        p.model = gs->model;
                        p.schedule = data_schedule_resolve(p.bits, 1 - p.fraction, p.fraction, p.schedule);
                        push_point(g, ids, &p);
                    }
            }
}

/* Count the points (checked against SWEEP_MAX_POINTS), then expand them: a few hundred bytes
 * of grid can ask for billions of runs, refused here before any memory is spent on them. */
static qp_status expand(sweep_grid *g, const cJSON *root, const cJSON *shapes, const grid_axes *ax,
                        const char *name, qp_error *err)
{
    grid_shape *gs = malloc(sizeof *gs);
    if (!gs) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    char where[600];
    uint64_t total = 0, per_budget = points_per_budget(ax);
    qp_status st = QP_OK;
    int si = 0;
    for (const cJSON *sh = shapes->child; sh && !st; sh = sh->next, si++) {
        snprintf(where, sizeof where, "%s: shapes[%d]", name, si);
        if (!(st = parse_shape(sh, root, NULL, where, gs, err))) {
            uint64_t add = mul_sat((uint64_t)gs->nt, per_budget);
            total = add > UINT64_MAX - total ? UINT64_MAX : total + add;
        }
    }
    if (!st && total > SWEEP_MAX_POINTS)
        st = qp_fail(err, QP_ERR_INPUT,
                     "%s: the grid expands to %s%llu points (shapes x budgets x bits x fractions x schedules x "
                     "seeds), more than the limit of %d: split it into smaller grids or list fewer values",
                     name, total == UINT64_MAX ? "over " : "", (unsigned long long)total, SWEEP_MAX_POINTS);
    id_set ids = {NULL, 0};
    size_t nslot = 64;
    while (!st && nslot < 2 * total) nslot *= 2;
    if (!st && (!(g->points = malloc((size_t)(total ? total : 1) * sizeof *g->points)) ||
                !(ids.slot = calloc(nslot, sizeof *ids.slot))))
        st = qp_fail(err, QP_ERR_NOMEM, "out of memory expanding the grid (%llu points)", (unsigned long long)total);
    ids.mask = nslot - 1;
    si = 0;
    for (const cJSON *sh = shapes->child; sh && !st; sh = sh->next, si++) {
        snprintf(where, sizeof where, "%s: shapes[%d]", name, si);
        if (!(st = parse_shape(sh, root, g, where, gs, err))) expand_shape(g, &ids, gs, ax);
    }
    free(ids.slot);
    free(gs);
    return st;
}

/* The axes every shape is crossed with: bits, fractions, schedules, seeds. */
static qp_status parse_axes(const cJSON *root, sweep_grid *g, grid_axes *axp, const char *name, qp_error *err)
{
    grid_axes ax = *axp;
    qp_status st;
    if ((st = get_list(root, "bits", 0, ax.bits, &ax.nb, name, err))) return st;
    if (ax.nb == 0)
        return qp_fail(err, QP_ERR_INPUT, "%s: \"bits\" is missing: list bit widths, e.g. [2, 4] (16 = full precision)", name);
    if ((st = check_list(ax.bits, ax.nb, "--bits", name, "bits", err))) return st;
    for (int i = 0; i < ax.nb; i++) {
        if (ax.bits[i] != floor(ax.bits[i]) || !(fabs(ax.bits[i]) <= 64) || !data_bits_valid((int)ax.bits[i]))
            return qp_fail(err, QP_ERR_INPUT, "%s: bits %g: use 1..8 for QAT or 16/32 for full precision", name, ax.bits[i]);
        if (!data_bits_is_fp((int)ax.bits[i])) g->has_quantized = 1;
    }
    if ((st = get_list(root, "fractions", 0, ax.fr, &ax.nf, name, err))) return st;
    if (ax.nf == 0 && g->has_quantized)
        return qp_fail(err, QP_ERR_INPUT, "%s: \"fractions\" is missing: list QAT fractions in [0, 1], e.g. [0, 0.2, 0.5, 1]", name);
    if ((st = check_list(ax.fr, ax.nf, "--qat-fraction", name, "fractions", err))) return st;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "schedules");
    if (!sc) {
        ax.sched[ax.nsched++] = DATA_SCHED_CLASSIC;
    } else {
        if (!cJSON_IsArray(sc) || !sc->child)
            return qp_fail(err, QP_ERR_PARSE, "%s: \"schedules\" must be a list like [\"classic\", \"fused\"]", name);
        for (const cJSON *s = sc->child; s; s = s->next) {
            data_schedule d;
            if (!cJSON_IsString(s) || data_schedule_parse(s->valuestring, &d, err) ||
                (d != DATA_SCHED_CLASSIC && d != DATA_SCHED_FUSED) || ax.nsched == DATA_SCHED_COUNT_) {
                return qp_fail(err, QP_ERR_INPUT,
                             "%s: \"schedules\" entries must be \"classic\" or \"fused\" (f = 0 and 1 choose fp-only "
                             "and qat-only by themselves)",
                             name);
            }
            ax.sched[ax.nsched++] = d;
        }
    }
    if ((st = get_list(root, "seeds", 0, ax.seeds, &ax.ns, name, err))) return st;
    if (ax.ns == 0) ax.seeds[ax.ns++] = 1;
    if ((st = check_list(ax.seeds, ax.ns, "--seed", name, "seeds", err))) return st;
    *axp = ax;
    return QP_OK;
}

/* Every point's QAT peak (ratio x its --lr) within the trainer's range, and an --lr to scale. */
static qp_status check_qat_lr(const sweep_grid *g, const char *name, qp_error *err)
{
    for (size_t i = 0; i < g->n; i++) {
        double r = sweep_point_qat_lr_ratio(g, &g->points[i]), lr = point_lr(g, &g->points[i]);
        if (r == 1) continue;
        if (!isfinite(lr))
            return qp_fail(err, QP_ERR_INPUT,
                           "%s: \"qat_lr_ratio\" scales the FP peak learning rate: give \"lr\" in \"train\" or in "
                           "the shape",
                           name);
        char v[64];
        snprintf(v, sizeof v, "%.6g", r * lr);
        if (train_option_check("--qat-lr", v, err))
            return qp_fail(err, QP_ERR_INPUT,
                           "%s: \"qat_lr_ratio\" %g x lr %g = --qat-lr %s (point %s) is outside the trainer's range "
                           "(0, 1): lower the ratio",
                           name, r, lr, v, g->points[i].run_id);
    }
    return QP_OK;
}

qp_status sweep_grid_parse(const char *json, const char *name, sweep_grid *g, qp_error *err)
{
    memset(g, 0, sizeof *g);
    g->lr = NAN;
    cJSON *root = cJSON_Parse(json);
    if (!root) return qp_fail(err, QP_ERR_PARSE, "%s: not valid JSON (near: %.40s)", name, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    qp_status st = QP_OK;
    grid_axes ax;
    memset(&ax, 0, sizeof ax);
    static const char *known[] = {"schema", "data", "shapes", "tokens", "tokens_per_param", "bits", "fractions",
                                  "schedules", "seeds", "train", "comment", "methods", "init", "trunks",
                                  "qat_lr_ratio"};
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
                     "(PREFIX.train.tok and PREFIX.val.tok, or llm.c/nanoGPT .bin shards: docs/data.md)",
                     name);
        goto done;
    }
    strcpy(g->data, data->valuestring);
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(root, "train");
    if (train && (st = parse_train(train, g, name, err))) goto done;
    const cJSON *methods = cJSON_GetObjectItemCaseSensitive(root, "methods"), *init = cJSON_GetObjectItemCaseSensitive(root, "init");
    if (methods && (st = parse_methods(methods, g, name, err))) goto done;
    if (init && (st = parse_init(init, g, name, err))) goto done;
    ax.nm = g->n_methods;
    if ((st = parse_axes(root, g, &ax, name, err))) goto done;
    if ((st = sweep_qat_lr_parse(cJSON_GetObjectItemCaseSensitive(root, "qat_lr_ratio"), g, ax.fr, ax.nf, name, err)))
        goto done;
    const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(root, "shapes");
    if (!cJSON_IsArray(shapes) || !shapes->child) {
        st = qp_fail(err, QP_ERR_INPUT,
                     "%s: \"shapes\" must list model shapes, e.g. [{\"layers\": 2, \"width\": 64, \"heads\": 2, "
                     "\"context\": 128}]",
                     name);
        goto done;
    }
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "trunks");
    if (tr && !cJSON_IsBool(tr)) {
        st = qp_fail(err, QP_ERR_PARSE, "%s: \"trunks\" must be true or false", name);
        goto done;
    }
    g->use_trunks = cJSON_IsTrue(tr);
    if ((st = expand(g, root, shapes, &ax, name, err))) goto done;
    if ((st = check_qat_lr(g, name, err))) goto done;
    if (g->use_trunks) st = sweep_trunks_plan(g, name, err);
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

qp_status sweep_grid_check_trainer(const sweep_grid *g, const char *train_cmd, qp_error *err)
{
    if (!g->n_models || train_cmd) return QP_OK;
    return qp_fail(err, QP_ERR_USAGE,
                   "the grid names an external model (\"%s\", by its parameter count) that qatplan's own trainer cannot "
                   "build: run it with --train-cmd (the trainer that takes --params and the model's \"args\"), or describe "
                   "the shape by layers, width and heads",
                   g->models[0].name);
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
    char **a = calloc(SWEEP_MAX_ARGS * 4, sizeof *a); /* the grid's, a model's, a method's and the point's own */
    if (!a) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int n = 0;
    char buf[8192];
#define ADD(s)                                                                   \
    do {                                                                         \
        if (!(a[n++] = strdup(s))) {                                             \
            sweep_argv_free(a);                                                  \
            return qp_fail(err, QP_ERR_NOMEM, "out of memory");                  \
        }                                                                        \
    } while (0)
    /* each option and value through the trainer's table: a command line the trainer would
     * refuse is never built */
#define OPT(name, fmt, v)                                                        \
    do {                                                                         \
        qp_status st_ = snprintf(buf, sizeof buf, fmt, v) < (int)sizeof buf      \
                            ? train_option_check(name, buf, err)                 \
                            : qp_fail(err, QP_ERR_INPUT, "%s: too long", name);  \
        if (st_) {                                                               \
            sweep_argv_free(a);                                                  \
            return st_;                                                          \
        }                                                                        \
        ADD(name);                                                               \
        ADD(buf);                                                                \
    } while (0)
    OPT("--data", "%s", g->data);
    if (p->model) { /* an external model: its parameter count and its own options, unchecked */
        const sweep_model *m = &g->models[p->model - 1];
        snprintf(buf, sizeof buf, "%.0f", m->n_params);
        ADD("--params");
        ADD(buf);
        for (int i = 0; i < m->n_args; i++) ADD(m->args[i]);
    } else {
        OPT("--layers", "%d", p->shape.n_layer);
        OPT("--width", "%d", p->shape.d_model);
        OPT("--heads", "%d", p->shape.n_head);
        if (p->shape.n_kv_head != p->shape.n_head) OPT("--kv-heads", "%d", p->shape.n_kv_head);
        OPT("--ffn", "%d", p->shape.d_ff);
        OPT("--context", "%d", p->shape.context);
    }
    OPT("--tokens", "%.0f", p->tokens);
    OPT("--qat-fraction", "%.6g", p->fraction);
    OPT("--bits", "%d", p->bits);
    OPT("--schedule", "%s", p->schedule == DATA_SCHED_FUSED ? "fused" : "classic");
    if (g->batch > 0) OPT("--batch", "%d", g->batch);
    if (isfinite(point_lr(g, p))) OPT("--lr", "%.6g", point_lr(g, p));
    OPT("--seed", "%llu", (unsigned long long)p->seed);
    OPT("--threads", "%d", threads > 0 ? threads : 1);
    double qat_lr_ratio = sweep_point_qat_lr_ratio(g, p);
    if (qat_lr_ratio != 1) OPT("--qat-lr", "%.6g", qat_lr_ratio * point_lr(g, p));
    for (int i = 0; i < g->n_args; i++) ADD(g->args[i]); /* checked when the grid was read */
    for (int i = 0; p->method && i < g->methods[p->method - 1].n_args; i++) ADD(g->methods[p->method - 1].args[i]);
    if (g->init[0] && !data_bits_is_fp(p->bits)) {
        if (!init_path(g, p, buf, sizeof buf)) {
            sweep_argv_free(a);
            return qp_fail(err, QP_ERR_INPUT, "\"init\": the path is too long");
        }
        ADD("--init");
        ADD(buf);
    }
    OPT("--run-id", "%s", p->run_id);
    OPT("--runs-out", "%s", runs_path);
    if (state_path) {
        OPT("--state", "%s", state_path);
        if (resume) ADD("--resume");
    }
#undef OPT
#undef ADD
    a[n] = NULL;
    *out = a;
    return QP_OK;
}
