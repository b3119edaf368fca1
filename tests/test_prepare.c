/* qatplan data prepare: document splitting, validation held out by whole documents,
 * determinism, the manifest, and refusals. Inputs are small files made here. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "testutil.h"

#define NDOC 12

/* Document k: distinctive, different lengths, with inner blank lines and edge whitespace. */
static char *doc_text(int k)
{
    size_t cap = 8192;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "\n\n  Document %d begins.\n", k);
    for (int i = 0; i < 5 + 7 * k; i++)
        n += (size_t)snprintf(s + n, cap - n, "Line %d of document %d.%s\n", i, k, i % 4 == 3 ? "\n" : "");
    snprintf(s + n, cap - n, "End of %d.\n\n\n", k);
    return s;
}

/* The document as it appears in a token file: trimmed, then '\n'. */
static char *doc_expected(int k)
{
    char *s = doc_text(k);
    char *a = s;
    while (*a == '\n' || *a == ' ') a++;
    size_t n = strlen(a);
    while (n && (a[n - 1] == '\n' || a[n - 1] == ' ')) n--;
    char *e = malloc(n + 2);
    memcpy(e, a, n);
    e[n] = '\n';
    e[n + 1] = 0;
    free(s);
    return e;
}

static const char *inputs[NDOC];

static void make_inputs(void)
{
    for (int k = 0; k < NDOC; k++) {
        char name[32];
        snprintf(name, sizeof name, "doc%02d.txt", k);
        char *t = doc_text(k);
        const char *p = tu_path(name);
        FILE *f = fopen(p, "wb"); /* not tu_write: no test is running yet to assert in */
        if (f) {
            fputs(t, f);
            fclose(f);
        }
        free(t);
        inputs[k] = strdup(p);
    }
}

/* Split a token file's tokens at EOD into documents; returns how many, fills which input
 * each equals (-1 if none). */
static int docs_of(const data_tokens *d, int *which, int max)
{
    int nd = 0;
    uint64_t start = 0;
    for (uint64_t i = 0; i < d->n_tokens; i++) {
        if (d->tokens[i] != DATA_EOD_TOKEN) continue;
        if (nd >= max) return -1;
        size_t len = (size_t)(i - start);
        char *s = malloc(len + 1);
        for (size_t j = 0; j < len; j++) s[j] = (char)d->tokens[start + j];
        s[len] = 0;
        which[nd] = -1;
        for (int k = 0; k < NDOC; k++) {
            char *e = doc_expected(k);
            if (!strcmp(e, s)) which[nd] = k;
            free(e);
        }
        free(s);
        nd++;
        start = i + 1;
    }
    CU_ASSERT_EQUAL(start, d->n_tokens); /* the file ends with an EOD */
    return nd;
}

static char *prefix(const char *name)
{
    return strdup(tu_path(name));
}

static char *with(const char *p, const char *suffix)
{
    char *s = malloc(strlen(p) + strlen(suffix) + 1);
    strcpy(s, p);
    strcat(s, suffix);
    return s;
}

static void test_whole_documents_held_out(void)
{
    qp_error err = {0};
    data_prepare_options o;
    data_prepare_options_init(&o);
    o.val_frac = 0.2;
    char *pre = prefix("c1");
    data_prepare_result r;
    CU_ASSERT_EQUAL_FATAL(data_prepare(pre, inputs, NDOC, &o, &r, &err), QP_OK);
    char *pt = with(pre, ".train.tok"), *pv = with(pre, ".val.tok");
    data_tokens tr, va;
    CU_ASSERT_EQUAL_FATAL(data_tokens_read(pt, &tr, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_tokens_read(pv, &va, &err), QP_OK);
    CU_ASSERT_EQUAL(tr.vocab, 256);
    CU_ASSERT_STRING_EQUAL(tr.dataset, "c1");
    int wt[NDOC + 1], wv[NDOC + 1], seen[NDOC] = {0};
    int nt = docs_of(&tr, wt, NDOC + 1), nv = docs_of(&va, wv, NDOC + 1);
    CU_ASSERT_EQUAL(nt + nv, NDOC);
    CU_ASSERT(nv >= 1 && nt >= 1);
    CU_ASSERT_EQUAL((uint64_t)nt, r.train_docs);
    CU_ASSERT_EQUAL((uint64_t)nv, r.val_docs);
    for (int i = 0; i < nt; i++) {
        CU_ASSERT(wt[i] >= 0);
        if (wt[i] >= 0) seen[wt[i]]++;
    }
    for (int i = 0; i < nv; i++) {
        CU_ASSERT(wv[i] >= 0);
        if (wv[i] >= 0) seen[wv[i]]++;
    }
    for (int k = 0; k < NDOC; k++) CU_ASSERT_EQUAL(seen[k], 1); /* every document exactly once */
    /* documents keep their input order within each split */
    for (int i = 1; i < nt; i++) CU_ASSERT(wt[i] > wt[i - 1]);
    double frac = (double)va.n_tokens / (double)(va.n_tokens + tr.n_tokens);
    CU_ASSERT(frac > 0.05 && frac <= 0.2 * 1.25 + 1e-9);
    CU_ASSERT_EQUAL(va.n_tokens, r.val_tokens);

    /* the manifest */
    char *pm = with(pre, ".manifest.json"), *text = NULL;
    CU_ASSERT_EQUAL_FATAL(qp_read_file(pm, &text, NULL, &err), QP_OK);
    cJSON *m = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(m, "schema")->valuestring, DATA_CORPUS_SCHEMA);
    cJSON *src = cJSON_GetObjectItem(m, "sources");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(src), NDOC);
    char hex[65];
    CU_ASSERT_EQUAL(data_sha256_file(inputs[3], hex, &err), QP_OK);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(cJSON_GetArrayItem(src, 3), "sha256")->valuestring, hex);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetArrayItem(src, 3), "documents")->valueint, 1);
    int nval_src = 0;
    for (int k = 0; k < NDOC; k++)
        nval_src += cJSON_GetObjectItem(cJSON_GetArrayItem(src, k), "val_documents")->valueint;
    CU_ASSERT_EQUAL(nval_src, nv);
    cJSON *val = cJSON_GetObjectItem(m, "val");
    CU_ASSERT_EQUAL((uint64_t)cJSON_GetObjectItem(val, "tokens")->valuedouble, va.n_tokens);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(val, "documents")->valueint, nv);
    CU_ASSERT_EQUAL((uint64_t)cJSON_GetObjectItem(cJSON_GetObjectItem(m, "train"), "tokens")->valuedouble,
                    tr.n_tokens);
    cJSON_Delete(m);
    free(text);
    data_tokens_free(&tr);
    data_tokens_free(&va);
    free(pt);
    free(pv);
    free(pm);
    free(pre);
}

static unsigned char *bytes(const char *p, size_t *n)
{
    char *t = NULL;
    qp_error err = {0};
    if (qp_read_file(p, &t, n, &err)) return NULL;
    return (unsigned char *)t;
}

static void test_deterministic_for_a_seed(void)
{
    qp_error err = {0};
    data_prepare_options o;
    data_prepare_options_init(&o);
    o.val_frac = 0.2;
    o.dataset_id = "same";
    o.seed = 7;
    CU_ASSERT_EQUAL_FATAL(data_prepare(tu_path("d1"), inputs, NDOC, &o, NULL, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_prepare(tu_path("d2"), inputs, NDOC, &o, NULL, &err), QP_OK);
    CU_ASSERT(tu_same_file(tu_path("d1.train.tok"), tu_path("d2.train.tok")));
    CU_ASSERT(tu_same_file(tu_path("d1.val.tok"), tu_path("d2.val.tok")));
    /* The manifest names its token files, so compare it across two runs to one prefix. */
    size_t n1, n2;
    unsigned char *m1 = bytes(tu_path("d1.manifest.json"), &n1);
    CU_ASSERT_EQUAL_FATAL(data_prepare(tu_path("d1"), inputs, NDOC, &o, NULL, &err), QP_OK);
    unsigned char *m2 = bytes(tu_path("d1.manifest.json"), &n2);
    CU_ASSERT(m1 && m2 && n1 == n2 && !memcmp(m1, m2, n1));
    free(m1);
    free(m2);
    /* Some other seed holds out other documents. */
    int differs = 0;
    for (uint64_t s = 8; s < 16 && !differs; s++) {
        o.seed = s;
        CU_ASSERT_EQUAL_FATAL(data_prepare(tu_path("d3"), inputs, NDOC, &o, NULL, &err), QP_OK);
        differs = !tu_same_file(tu_path("d1.val.tok"), tu_path("d3.val.tok"));
    }
    CU_ASSERT(differs);
}

static void test_split_rule(void)
{
    qp_error err = {0};
    data_prepare_options o;
    data_prepare_options_init(&o);
    o.doc_bytes = 1000;
    o.chunk_bytes = 400;
    o.min_doc_bytes = 100;
    /* a book: a preface, then chapters of ~250 bytes, each several paragraphs */
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "PREFACE\n\nSome words.\n\n");
    for (int c = 1; c <= 8; c++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "CHAPTER %d. The %dth.\n\n", c, c);
        for (int p = 0; p < 3; p++)
            n += (size_t)snprintf(text + n, sizeof text - n,
                                  "Paragraph %d of chapter %d, long enough to matter here.\nSecond line.\n\n", p, c);
    }
    size_t *ends = NULL, nd = 0;
    CU_ASSERT_EQUAL_FATAL(data_split_documents(text, n, &o, &ends, &nd, &err), QP_OK);
    CU_ASSERT_EQUAL(ends[nd - 1], n);
    /* The preface is under min_doc_bytes, so chapter 1 joins it; every later chapter
     * heading starts a document. */
    CU_ASSERT_EQUAL(nd, 8);
    for (size_t k = 0; k + 1 < nd; k++) {
        CU_ASSERT(!strncmp(text + ends[k], "CHAPTER ", 8));
        CU_ASSERT(text[ends[k] - 1] == '\n' && text[ends[k] - 2] == '\n'); /* after a blank line */
    }
    free(ends);
    /* no headings: cut at the first paragraph start past chunk_bytes */
    n = 0;
    for (int p = 0; p < 40; p++)
        n += (size_t)snprintf(text + n, sizeof text - n, "Paragraph %d has some text in it.\nAnd more.\n\n", p);
    CU_ASSERT_EQUAL_FATAL(data_split_documents(text, n, &o, &ends, &nd, &err), QP_OK);
    CU_ASSERT(nd >= 3);
    size_t start = 0;
    for (size_t k = 0; k < nd; k++) {
        CU_ASSERT(k + 1 == nd || ends[k] - start >= o.chunk_bytes);
        CU_ASSERT(k + 1 == nd || ends[k] - start < o.chunk_bytes + 60);
        CU_ASSERT(k + 1 == nd || !strncmp(text + ends[k], "Paragraph ", 10));
        start = ends[k];
    }
    free(ends);
    /* a small file is one document, whatever it holds */
    o.doc_bytes = 1u << 20;
    CU_ASSERT_EQUAL_FATAL(data_split_documents(text, n, &o, &ends, &nd, &err), QP_OK);
    CU_ASSERT_EQUAL(nd, 1);
    free(ends);
}

static void test_refusals(void)
{
    qp_error err = {0};
    data_prepare_options o;
    data_prepare_options_init(&o);
    const char *one[1] = {inputs[0]};
    CU_ASSERT_EQUAL(data_prepare(tu_path("r1"), one, 1, &o, NULL, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at least 2"));
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(tu_path("r1.train.tok"), &sb), 0);
    /* binary input */
    FILE *f = fopen(tu_path("bin.dat"), "wb");
    fwrite("abc\0def", 1, 7, f);
    fclose(f);
    const char *two[2] = {inputs[0], tu_path("bin.dat")};
    CU_ASSERT_EQUAL(data_prepare(tu_path("r2"), two, 2, &o, NULL, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "NUL byte at offset 3"));
    CU_ASSERT_NOT_EQUAL(stat(tu_path("r2.train.tok"), &sb), 0);
    const char *miss[2] = {inputs[0], tu_path("no-such.txt")};
    CU_ASSERT_EQUAL(data_prepare(tu_path("r3"), miss, 2, &o, NULL, &err), QP_ERR_IO);
    o.val_frac = 0.7;
    CU_ASSERT_EQUAL(data_prepare(tu_path("r4"), inputs, NDOC, &o, NULL, &err), QP_ERR_INPUT);
    o.val_frac = 0.05;
    o.dataset_id = "";
    CU_ASSERT_EQUAL(data_prepare(tu_path("r5"), inputs, NDOC, &o, NULL, &err), QP_ERR_INPUT);
    /* whitespace-only files are not documents */
    tu_write(tu_path("blank.txt"), "  \n\n\t\n");
    const char *wb[2] = {inputs[1], tu_path("blank.txt")};
    o.dataset_id = NULL;
    CU_ASSERT_EQUAL(data_prepare(tu_path("r6"), wb, 2, &o, NULL, &err), QP_ERR_INPUT);
}

static void test_cli(void)
{
    char args[8192], *out = NULL, *e = NULL;
    size_t n = (size_t)snprintf(args, sizeof args, "data prepare --out %s --val-frac 0.1 --seed 3 --dataset-id cli",
                                tu_path("cli"));
    for (int k = 0; k < NDOC; k++) n += (size_t)snprintf(args + n, sizeof args - n, " %s", inputs[k]);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "cli.val.tok"));
    free(out);
    free(e);
    data_tokens d;
    qp_error err = {0};
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("cli.train.tok"), &d, &err), QP_OK);
    CU_ASSERT_STRING_EQUAL(d.dataset, "cli");
    data_tokens_free(&d);
    CU_ASSERT_EQUAL(tu_run_qatplan("data prepare x.txt y.txt", NULL, &e), 2); /* no --out */
    CU_ASSERT_PTR_NOT_NULL(e && strstr(e, "--out"));
    free(e);
    snprintf(args, sizeof args, "data prepare --out %s --val-frac 0.9 %s %s", tu_path("cli2"), inputs[0], inputs[1]);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, NULL, NULL), 2);
    CU_ASSERT_EQUAL(tu_run_qatplan("data frobnicate", NULL, NULL), 2);
}

static void add(CU_pSuite s)
{
    make_inputs();
    TU_ADD(s, test_whole_documents_held_out);
    TU_ADD(s, test_deterministic_for_a_seed);
    TU_ADD(s, test_split_rule);
    TU_ADD(s, test_refusals);
    TU_ADD(s, test_cli);
}

int main(void) { return tu_main("prepare", add); }
