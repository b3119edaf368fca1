/* Corpus preparation: plain-text files -> byte-level (vocab 256) train and validation
 * token files, validation held out by whole documents, plus a JSON manifest.
 * The rules (what a document is, how validation is chosen) are in docs/data.md. */
#include "data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

void data_prepare_options_init(data_prepare_options *o)
{
    memset(o, 0, sizeof *o);
    o->val_frac = 0.05;
    o->seed = 1;
    o->doc_bytes = 256 * 1024;
    o->chunk_bytes = 64 * 1024;
    o->min_doc_bytes = 4096;
}

static int is_blank_line(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* "CHAPTER 12", "Chapter XII.", "BOOK III": a heading word, then a space or digit. */
static int is_chapter_heading(const char *s, size_t len)
{
    static const char *words[] = {"CHAPTER", "Chapter", "BOOK", "Book"};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        size_t w = strlen(words[k]);
        if (len > w && !memcmp(s, words[k], w) && (s[w] == ' ' || (s[w] >= '0' && s[w] <= '9'))) return 1;
    }
    return 0;
}

qp_status data_split_documents(const char *text, size_t len, const data_prepare_options *o, size_t **ends,
                               size_t *n, qp_error *err)
{
    size_t cap = 16, cnt = 0;
    size_t *e = malloc(cap * sizeof *e);
    if (!e) return qp_fail(err, QP_ERR_NOMEM, "out of memory splitting documents");
    if (len > o->doc_bytes) {
        size_t start = 0, p = 0;
        int prev_blank = 0;
        while (p < len) {
            const char *nl = memchr(text + p, '\n', len - p);
            size_t line_end = nl ? (size_t)(nl - text) : len;
            size_t line_len = line_end - p;
            int blank = is_blank_line(text + p, line_len);
            /* Cut only at a paragraph start (a non-blank line after a blank one). */
            if (prev_blank && !blank && p > start &&
                ((is_chapter_heading(text + p, line_len) && p - start >= o->min_doc_bytes) ||
                 p - start >= o->chunk_bytes)) {
                if (cnt == cap) {
                    size_t *ne = realloc(e, (cap *= 2) * sizeof *e);
                    if (!ne) {
                        free(e);
                        return qp_fail(err, QP_ERR_NOMEM, "out of memory splitting documents");
                    }
                    e = ne;
                }
                e[cnt++] = p;
                start = p;
            }
            prev_blank = blank;
            p = nl ? line_end + 1 : len;
        }
    }
    if (cnt == cap) {
        size_t *ne = realloc(e, (cap + 1) * sizeof *e);
        if (!ne) {
            free(e);
            return qp_fail(err, QP_ERR_NOMEM, "out of memory splitting documents");
        }
        e = ne;
    }
    e[cnt++] = len;
    *ends = e;
    *n = cnt;
    return QP_OK;
}

typedef struct {
    size_t off, len; /* into the token buffer, EOD included */
    int source;
} doc_span;

typedef struct {
    char *name;
    size_t bytes;
    char sha256[65];
    uint64_t docs, val_docs;
} source_info;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

static char *path_join_suffix(const char *prefix, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s", prefix, suffix);
    return p;
}

/* Append the token range of docs[...] whose `take` flag equals `want`, in document order. */
static qp_status gather(const uint16_t *all, const doc_span *docs, size_t nd, const unsigned char *is_val, int want,
                        uint16_t **out, uint64_t *ntok, uint64_t *ndoc, qp_error *err)
{
    uint64_t n = 0, k = 0;
    for (size_t i = 0; i < nd; i++)
        if (is_val[i] == want) n += docs[i].len, k++;
    uint16_t *t = malloc(n ? n * sizeof *t : 1);
    if (!t) return qp_fail(err, QP_ERR_NOMEM, "out of memory gathering %llu tokens", (unsigned long long)n);
    uint64_t at = 0;
    for (size_t i = 0; i < nd; i++)
        if (is_val[i] == want) {
            memcpy(t + at, all + docs[i].off, docs[i].len * sizeof *t);
            at += docs[i].len;
        }
    *out = t;
    *ntok = n;
    *ndoc = k;
    return QP_OK;
}

static cJSON *split_json(const char *file, uint64_t docs, uint64_t tokens, const uint16_t *t)
{
    cJSON *o = cJSON_CreateObject();
    char sum[32];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)data_tokens_checksum(t, tokens));
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddNumberToObject(o, "documents", (double)docs);
    cJSON_AddNumberToObject(o, "tokens", (double)tokens);
    cJSON_AddStringToObject(o, "fnv1a64", sum);
    return o;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The options and the dataset id (checked, copied into dataset[64]). */
static qp_status prepare_check(const char *prefix, int n_inputs, const data_prepare_options *opt, char *dataset,
                               qp_error *err)
{
    if (n_inputs < 1) return qp_fail(err, QP_ERR_USAGE, "no text inputs: give one or more text files");
    if (!(opt->val_frac > 0 && opt->val_frac < 0.5))
        return qp_fail(err, QP_ERR_INPUT, "--val-frac %g is out of range: use a value in (0, 0.5), e.g. 0.05",
                       opt->val_frac);
    if (opt->chunk_bytes < 1 || opt->min_doc_bytes > opt->chunk_bytes)
        return qp_fail(err, QP_ERR_INPUT, "document sizes are inconsistent: need 1 <= min_doc_bytes <= chunk_bytes");
    const char *id = opt->dataset_id ? opt->dataset_id : base_name(prefix);
    if (!*id || strlen(id) >= 64)
        return qp_fail(err, QP_ERR_INPUT, "dataset id '%s' must be 1-63 characters: use --dataset-id", id);
    for (const char *c = id; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"' || *c == '\\')
            return qp_fail(err, QP_ERR_INPUT, "dataset id '%s' holds a control character, quote or backslash: "
                           "use letters, digits, '-', '_' or '.'", id);
    snprintf(dataset, 64, "%s", id);
    return QP_OK;
}

/* All documents' byte tokens, one after another, each ending '\n', EOD. */
typedef struct {
    uint16_t *all;
    size_t n, cap;
    doc_span *docs;
    size_t nd, dcap;
} corpus;

static void corpus_free(corpus *c)
{
    free(c->all);
    free(c->docs);
}

/* Append text[a..b) of source s as one document. */
static qp_status corpus_add(corpus *c, const char *text, size_t a, size_t b, int s, const char *input, qp_error *err)
{
    size_t need = (b - a) + 2; /* text, '\n', EOD */
    if (c->n + need > c->cap) {
        size_t nc = c->cap ? c->cap : 1 << 16;
        while (nc < c->n + need) nc *= 2;
        uint16_t *na = realloc(c->all, nc * sizeof *na);
        if (!na) return qp_fail(err, QP_ERR_NOMEM, "out of memory tokenizing %s", input);
        c->all = na;
        c->cap = nc;
    }
    if (c->nd == c->dcap) {
        size_t nc = c->dcap ? c->dcap * 2 : 64;
        doc_span *nds = realloc(c->docs, nc * sizeof *nds);
        if (!nds) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
        c->docs = nds;
        c->dcap = nc;
    }
    doc_span *d = &c->docs[c->nd++];
    d->off = c->n;
    for (size_t i = a; i < b; i++) c->all[c->n++] = (unsigned char)text[i];
    c->all[c->n++] = '\n';
    c->all[c->n++] = DATA_EOD_TOKEN;
    d->len = c->n - d->off;
    d->source = s;
    return QP_OK;
}

/* Read input s (a path or URL), record it in src[s], split it into documents and add them. */
static qp_status corpus_read(corpus *c, const char *input, int s, const data_prepare_options *opt, source_info *src,
                             qp_error *err)
{
    char *local = NULL, *text = NULL;
    size_t len = 0;
    qp_status st = data_open_input(input, opt->cache_dir, &local, err);
    if (!st) st = qp_read_file(local, &text, &len, err);
    free(local);
    if (st) return st;
    src[s].name = strdup(input);
    src[s].bytes = len;
    data_sha256_hex(text, len, src[s].sha256);
    const char *nul = memchr(text, 0, len);
    if (nul) {
        st = qp_fail(err, QP_ERR_INPUT, "%s: NUL byte at offset %zu: not a plain-text file (give text files only)",
                     input, (size_t)(nul - text));
        free(text);
        return st;
    }
    size_t *ends = NULL, ne = 0;
    st = data_split_documents(text, len, opt, &ends, &ne, err);
    size_t start = 0;
    for (size_t k = 0; k < ne && !st; k++) {
        size_t a = start, b = ends[k];
        start = ends[k];
        while (a < b && is_space(text[a])) a++;
        while (b > a && is_space(text[b - 1])) b--;
        if (a == b) continue; /* whitespace only: not a document */
        if (!(st = corpus_add(c, text, a, b, s, input, err))) src[s].docs++;
    }
    free(ends);
    free(text);
    return st;
}

/* Hold out whole documents: visit them in a seeded random order and take each one that keeps
 * the validation share under 1.25x the target, until the target is met; never all of them.
 * If none fits, take the smallest. is_val: nd flags (malloc'ed). */
static qp_status hold_out(const corpus *c, const data_prepare_options *opt, unsigned char **is_val_out, qp_error *err)
{
    size_t nd = c->nd;
    unsigned char *is_val = calloc(nd, 1);
    size_t *perm = malloc(nd * sizeof *perm);
    if (!is_val || !perm) {
        free(is_val);
        free(perm);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    uint64_t rs = opt->seed;
    for (size_t i = 0; i < nd; i++) perm[i] = i;
    for (size_t i = nd - 1; i > 0; i--) {
        size_t j = (size_t)(qp_rng_next(&rs) % (i + 1));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double target = opt->val_frac * (double)c->n;
    size_t val_tok = 0, val_docs = 0;
    for (size_t i = 0; i < nd && (double)val_tok < target && val_docs + 1 < nd; i++) {
        const doc_span *d = &c->docs[perm[i]];
        if ((double)(val_tok + d->len) <= 1.25 * target) {
            is_val[perm[i]] = 1;
            val_tok += d->len;
            val_docs++;
        }
    }
    if (val_docs == 0) {
        size_t best = 0;
        for (size_t i = 1; i < nd; i++)
            if (c->docs[i].len < c->docs[best].len) best = i;
        is_val[best] = 1;
    }
    free(perm);
    *is_val_out = is_val;
    return QP_OK;
}

/* One split's tokens and documents. */
typedef struct {
    uint16_t *t;
    uint64_t n, docs;
    char *path;
} split_out;

/* The manifest (pretty JSON ending in a newline, malloc'ed), NULL when out of memory. No
 * timestamp: the manifest, like the token files, is a pure function of the inputs. */
static char *manifest_text(const char *dataset, const data_prepare_options *opt, const source_info *src,
                           int n_inputs, const split_out *tr, const split_out *va)
{
    cJSON *man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "schema", DATA_CORPUS_SCHEMA);
    cJSON_AddStringToObject(man, "dataset", dataset);
    cJSON_AddStringToObject(man, "tokenizer", "bytes");
    cJSON_AddNumberToObject(man, "vocab", 256);
    cJSON_AddNumberToObject(man, "eod_token", DATA_EOD_TOKEN);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)opt->seed);
    cJSON_AddStringToObject(man, "seed", seed);
    cJSON_AddNumberToObject(man, "val_frac_target", opt->val_frac);
    cJSON_AddNumberToObject(man, "val_frac_actual", (double)va->n / (double)(tr->n + va->n));
    cJSON *split = cJSON_AddObjectToObject(man, "document_split");
    cJSON_AddNumberToObject(split, "doc_bytes", (double)opt->doc_bytes);
    cJSON_AddNumberToObject(split, "chunk_bytes", (double)opt->chunk_bytes);
    cJSON_AddNumberToObject(split, "min_doc_bytes", (double)opt->min_doc_bytes);
    cJSON *arr = cJSON_AddArrayToObject(man, "sources");
    for (int s = 0; s < n_inputs; s++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", src[s].name);
        cJSON_AddNumberToObject(o, "bytes", (double)src[s].bytes);
        cJSON_AddStringToObject(o, "sha256", src[s].sha256);
        cJSON_AddNumberToObject(o, "documents", (double)src[s].docs);
        cJSON_AddNumberToObject(o, "val_documents", (double)src[s].val_docs);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddItemToObject(man, "train", split_json(base_name(tr->path), tr->docs, tr->n, tr->t));
    cJSON_AddItemToObject(man, "val", split_json(base_name(va->path), va->docs, va->n, va->t));
    char *json = cJSON_Print(man);
    cJSON_Delete(man);
    if (!json) return NULL;
    size_t jl = strlen(json);
    char *jn = realloc(json, jl + 2);
    if (!jn) {
        free(json);
        return NULL;
    }
    jn[jl] = '\n';
    jn[jl + 1] = 0;
    return jn;
}

/* Gather both splits, write the token files and the manifest. */
static qp_status write_splits(const char *prefix, const char *dataset, const corpus *c, const unsigned char *is_val,
                              const data_prepare_options *opt, const source_info *src, int n_inputs,
                              data_prepare_result *res, qp_error *err)
{
    split_out tr = {0}, va = {0};
    char *pman = NULL, *json = NULL;
    qp_status st = gather(c->all, c->docs, c->nd, is_val, 0, &tr.t, &tr.n, &tr.docs, err);
    if (!st) st = gather(c->all, c->docs, c->nd, is_val, 1, &va.t, &va.n, &va.docs, err);
    if (!st) {
        tr.path = path_join_suffix(prefix, ".train.tok");
        va.path = path_join_suffix(prefix, ".val.tok");
        pman = path_join_suffix(prefix, ".manifest.json");
        if (!tr.path || !va.path || !pman) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    if (!st) st = data_tokens_write_docs(tr.path, tr.t, tr.n, 256, tr.docs, dataset, err);
    if (!st) st = data_tokens_write_docs(va.path, va.t, va.n, 256, va.docs, dataset, err);
    if (!st && !(json = manifest_text(dataset, opt, src, n_inputs, &tr, &va)))
        st = qp_fail(err, QP_ERR_NOMEM, "out of memory writing the manifest");
    if (!st) st = qp_write_file_atomic(pman, json, strlen(json), err);
    if (!st && res) {
        res->train_docs = tr.docs;
        res->val_docs = va.docs;
        res->train_tokens = tr.n;
        res->val_tokens = va.n;
        res->n_sources = n_inputs;
    }
    free(tr.t);
    free(va.t);
    free(tr.path);
    free(va.path);
    free(pman);
    free(json);
    return st;
}

qp_status data_prepare(const char *prefix, const char *const *inputs, int n_inputs,
                       const data_prepare_options *opt, data_prepare_result *res, qp_error *err)
{
    data_prepare_options defaults;
    if (!opt) {
        data_prepare_options_init(&defaults);
        opt = &defaults;
    }
    if (res) memset(res, 0, sizeof *res);
    char dataset[64];
    qp_status st = prepare_check(prefix, n_inputs, opt, dataset, err);
    if (st) return st;
    source_info *src = calloc((size_t)n_inputs, sizeof *src);
    if (!src) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    corpus c = {0};
    unsigned char *is_val = NULL;
    for (int s = 0; s < n_inputs && !st; s++) st = corpus_read(&c, inputs[s], s, opt, src, err);
    if (!st && c.nd < 2)
        st = qp_fail(err, QP_ERR_INPUT,
                     "the inputs hold %zu document(s): validation is held out by whole documents, so give at "
                     "least 2 (each file is a document; files over %zu bytes are split)",
                     c.nd, opt->doc_bytes);
    if (!st) st = hold_out(&c, opt, &is_val, err);
    if (!st)
        for (size_t i = 0; i < c.nd; i++)
            if (is_val[i]) src[c.docs[i].source].val_docs++;
    if (!st) st = write_splits(prefix, dataset, &c, is_val, opt, src, n_inputs, res, err);
    for (int s = 0; s < n_inputs; s++) free(src[s].name);
    free(src);
    corpus_free(&c);
    free(is_val);
    return st;
}
