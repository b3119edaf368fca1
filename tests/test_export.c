/* The integer export (train --export-int) of a trained model: dequantizing its codes with
 * its scales and zero points gives the fake-quantized weights the model was evaluated with,
 * recomputed here from the latent weights, step sizes and zero points of the checkpoint
 * written by the same run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model.h"
#include "testutil.h"

typedef struct {
    char *buf;
    size_t n;
    cJSON *hdr;
    const char *data;
} stfile;

static int st_open(stfile *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->buf = tu_read(path, &f->n);
    if (!f->buf || f->n < 8) return 0;
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(unsigned char)f->buf[i] << (8 * i);
    if (8 + hl > f->n) return 0;
    char *h = strndup(f->buf + 8, hl);
    f->hdr = cJSON_Parse(h);
    free(h);
    f->data = f->buf + 8 + hl;
    return f->hdr != NULL;
}

static void st_close(stfile *f)
{
    cJSON_Delete(f->hdr);
    free(f->buf);
}

/* A tensor's data as floats (F32 or U8 converted), its element count in *n; NULL if missing
 * or of another dtype. *dtype: its dtype. malloc'ed. */
static float *st_floats(const stfile *f, const char *name, size_t *n, const char **dtype)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(f->hdr, name);
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dt) || cJSON_GetArraySize(off) != 2) return NULL;
    size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    int f32 = !strcmp(dt->valuestring, "F32"), u8 = !strcmp(dt->valuestring, "U8");
    if (!f32 && !u8) return NULL;
    *n = (b - a) / (f32 ? 4 : 1);
    *dtype = dt->valuestring;
    float *o = malloc((*n ? *n : 1) * sizeof *o);
    for (size_t i = 0; i < *n; i++) {
        if (f32) memcpy(&o[i], f->data + a + 4 * i, 4);
        else o[i] = (float)(unsigned char)f->data[a + i];
    }
    return o;
}

static const char *meta(const stfile *f, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f->hdr, "__metadata__"), key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The project's own sources as text: always there, a few hundred KB. */
static int train_tiny(const char *opts, const char *ck, const char *ex)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cat %s/trainer/*.c > %s && cat %s/trainer/*.h > %s", QP_SOURCE_DIR,
             tu_path("train.txt"), QP_SOURCE_DIR, tu_path("val.txt"));
    if (system(cmd) != 0) return -1;
    char args[8192];
    snprintf(args, sizeof args,
             "train --train-text %s --val-text %s --runs-out %s --layers 1 --width 32 --heads 2 "
             "--context 32 --batch 4 --tokens 40K --eval-tokens 2K --quiet --threads 1 --seed 3 "
             "--device cpu --checkpoint %s --export-int %s %s",
             tu_path("train.txt"), tu_path("val.txt"), tu_path("runs.jsonl"), ck, ex, opts);
    char *err = NULL;
    int rc = tu_run_qatplan(args, NULL, &err);
    if (rc) fprintf(stderr, "qatplan %s -> %d: %s\n", args, rc, err ? err : "");
    free(err);
    return rc;
}

/* One block linear of layer 0: counts of weights whose dequantized export differs from the
 * fake-quantized weight, of zero points outside 0..mx or non-integer, and of latent
 * (checkpoint) zero points that are not integers. */
typedef struct { size_t weights, differ, zeros, bad_zeros, latent_frac, bad_codes; } rt_count;

static void check_linear(const stfile *ck, const stfile *ex, const char *name, int bits, int group,
                         size_t R, size_t C, rt_count *c)
{
    char k[128];
    size_t nw, ns, nz, nq, nes, nez;
    const char *dt;
    snprintf(k, sizeof k, "layers.0.%s", name);
    float *w = st_floats(ck, k, &nw, &dt);
    snprintf(k, sizeof k, "layers.0.%s.scale", name);
    float *s = st_floats(ck, k, &ns, &dt), *es = st_floats(ex, k, &nes, &dt);
    snprintf(k, sizeof k, "layers.0.%s.zero", name);
    float *z = st_floats(ck, k, &nz, &dt), *ez = st_floats(ex, k, &nez, &dt);
    CU_ASSERT_STRING_EQUAL(dt, "U8"); /* b-bit zero points, stored one per byte */
    snprintf(k, sizeof k, "layers.0.%s.qweight", name);
    float *q = st_floats(ex, k, &nq, &dt);
    CU_ASSERT_STRING_EQUAL(dt, "U8");
    size_t G = (size_t)group, ng = C / G;
    CU_ASSERT_FATAL(w && s && z && es && ez && q && nw == R * C && nq == R * C && ns == R * ng &&
                    nz == ns && nes == ns && nez == ns);
    float *wh = malloc(R * C * sizeof *wh);
    quant_forward(TRAIN_Q_ASYM, bits, group, w, wh, R, C, s, z);
    float mx = (float)((1 << bits) - 1);
    for (size_t i = 0; i < ns; i++) {
        c->zeros++;
        if (ez[i] != nearbyintf(ez[i]) || ez[i] < 0 || ez[i] > mx) c->bad_zeros++;
        if (z[i] != nearbyintf(z[i])) c->latent_frac++;
        CU_ASSERT(es[i] == s[i]);
    }
    for (size_t i = 0; i < R * C; i++) {
        size_t si = (i / C) * ng + (i % C) / G;
        float deq = (q[i] - ez[si]) * es[si];
        c->weights++;
        if (deq != wh[i]) c->differ++;
        if (q[i] > mx) c->bad_codes++;
    }
    free(w); free(s); free(es); free(z); free(ez); free(q); free(wh);
}

/* After training (the zero points have moved off the integers), every dequantized weight
 * equals the fake-quantized one; the zero points are the rounded, clamped integers. */
static void test_asym_export_after_training(void)
{
    char ckp[4096], exp[4096]; /* tu_path's buffers rotate */
    snprintf(ckp, sizeof ckp, "%s", tu_path("ck.safetensors"));
    snprintf(exp, sizeof exp, "%s", tu_path("ex.safetensors"));
    CU_ASSERT_EQUAL_FATAL(train_tiny("--bits 2 --quantizer asym --group-size 16 --ffn 96 --qat-fraction 0.5",
                                     ckp, exp), 0);
    stfile ck, ex;
    CU_ASSERT_FATAL(st_open(&ck, ckp));
    CU_ASSERT_FATAL(st_open(&ex, exp));
    struct { const char *name; size_t R, C; } lin[] = {{"wqkv", 96, 32}, {"wo", 32, 32}, {"w13", 192, 32}, {"w2", 32, 96}};
    rt_count c = {0};
    for (int i = 0; i < 4; i++) check_linear(&ck, &ex, lin[i].name, 2, 16, lin[i].R, lin[i].C, &c);
    fprintf(stderr, "%zu of %zu weights differ; %zu of %zu exported zeros bad; %zu latent zeros non-integer\n",
            c.differ, c.weights, c.bad_zeros, c.zeros, c.latent_frac);
    CU_ASSERT_EQUAL(c.weights, 13312);
    CU_ASSERT_EQUAL(c.differ, 0);
    CU_ASSERT_EQUAL(c.bad_zeros, 0);
    CU_ASSERT_EQUAL(c.bad_codes, 0);
    CU_ASSERT(c.latent_frac > c.zeros / 2); /* QAT moved them: the test exercises the rounding */
    /* 2-bit codes and zeros, an F32 scale per group of 16: 2 + (2 + 32) / 16 */
    CU_ASSERT_STRING_EQUAL(meta(&ex, "storage_bits_per_weight"), "4.125");
    CU_ASSERT_STRING_EQUAL(meta(&ex, "dequant"), "w = (q - zero) * scale");
    st_close(&ck);
    st_close(&ex);
}

/* Per-row quantizers: b-bit codes and an F32 scale per row, averaged over the block linears
 * by weight count (w2's rows have d_ff inputs, the others d). */
static void test_storage_bits_per_row(void)
{
    char ckp[4096], exp[4096];
    snprintf(ckp, sizeof ckp, "%s", tu_path("ck4.safetensors"));
    snprintf(exp, sizeof exp, "%s", tu_path("ex4.safetensors"));
    CU_ASSERT_EQUAL_FATAL(train_tiny("--bits 4 --ffn 96 --qat-fraction 0.5", ckp, exp), 0);
    stfile ex;
    CU_ASSERT_FATAL(st_open(&ex, exp));
    /* rows 96 + 32 + 192 + 32 = 352 scales over 13312 weights */
    char want[32];
    snprintf(want, sizeof want, "%.6g", 4 + 352.0 * 32 / 13312);
    CU_ASSERT_STRING_EQUAL(meta(&ex, "storage_bits_per_weight"), want);
    CU_ASSERT_STRING_EQUAL(meta(&ex, "storage_bits_per_weight"), "4.84615");
    st_close(&ex);
}


/* EfQAT from an --init checkpoint (r = 0.25, 2-bit SEQ): the checkpoint's frozen masks hold
 * ceil(r rows) unfrozen rows per logical matrix; every frozen row's weights are its w_hat =
 * level(code) s with the codes the init weights had under the initial step sizes (bit for
 * bit), the step sizes moved, the export's codes are those codes; frozen embedding rows (FP)
 * are the init's latent weights, bit for bit. */
static void test_efqat_checkpoint(void)
{
    char fp[4096], ck[4096], ex[4096], opts[8192];
    snprintf(fp, sizeof fp, "%s", tu_path("efq_fp.safetensors"));
    snprintf(ck, sizeof ck, "%s", tu_path("efq_ck.safetensors"));
    snprintf(ex, sizeof ex, "%s", tu_path("efq_ex.safetensors"));
    CU_ASSERT_EQUAL_FATAL(train_tiny("--bits 2 --qat-fraction 0 --tokens 20K", fp, tu_path("efq_fpx.safetensors")), 0);
    snprintf(opts, sizeof opts, "--bits 2 --tokens 8K --init %s --method efqat --unfrozen 0.25", fp);
    CU_ASSERT_EQUAL_FATAL(train_tiny(opts, ck, ex), 0);
    stfile a, b, x;
    CU_ASSERT_FATAL(st_open(&a, fp) && st_open(&b, ck) && st_open(&x, ex));
    CU_ASSERT_STRING_EQUAL(meta(&b, "method"), "efqat");
    CU_ASSERT_STRING_EQUAL(meta(&b, "freeze_mode"), "cwpl");
    const char *names[4] = {"wqkv", "wo", "w13", "w2"};
    const size_t keep[4] = {3 * 8, 8, 2 * 22, 8}; /* width 32, ffn 88 */
    size_t frozen = 0, moved = 0;
    for (int k = 0; k < 4; k++) {
        char nm[96];
        size_t nw, ns, nf, n1;
        const char *dt;
        snprintf(nm, sizeof nm, "layers.0.%s", names[k]);
        float *w0 = st_floats(&a, nm, &nw, &dt), *w1 = st_floats(&b, nm, &n1, &dt);
        snprintf(nm, sizeof nm, "layers.0.%s.frozen", names[k]);
        float *fr = st_floats(&b, nm, &nf, &dt);
        snprintf(nm, sizeof nm, "layers.0.%s.scale", names[k]);
        float *s1 = st_floats(&b, nm, &ns, &dt);
        snprintf(nm, sizeof nm, "layers.0.%s.qweight", names[k]);
        cJSON *qt = cJSON_GetObjectItemCaseSensitive(x.hdr, nm);
        cJSON *qo = cJSON_GetObjectItemCaseSensitive(qt, "data_offsets");
        CU_ASSERT_FATAL(w0 && w1 && fr && s1 && qo && nw == n1 && ns == nf);
        const int8_t *q = (const int8_t *)(x.data + (size_t)cJSON_GetArrayItem(qo, 0)->valuedouble);
        size_t R = nf, C = nw / R, unf = 0;
        float *s0 = malloc(R * sizeof *s0);
        quant_init(TRAIN_Q_SEQ, 2, 0, w0, R, C, s0, NULL);
        for (size_t r = 0; r < R; r++) {
            if (fr[r] == 0.0f) {
                unf++;
                continue;
            }
            frozen++;
            moved += s1[r] != s0[r];
            for (size_t c = 0; c < C; c++) {
                int code = quant_code(TRAIN_Q_SEQ, 2, w0[r * C + c], s0[r], 0);
                CU_ASSERT(w1[r * C + c] == quant_dequant(TRAIN_Q_SEQ, 2, code, s1[r], 0));
                CU_ASSERT(q[r * C + c] == code);
            }
        }
        CU_ASSERT_EQUAL(unf, keep[k]);
        free(s0);
        free(w0);
        free(w1);
        free(fr);
        free(s1);
    }
    CU_ASSERT(frozen > 0 && moved > frozen / 2);
    size_t ne, n1, nf;
    const char *dt;
    float *e0 = st_floats(&a, "embed", &ne, &dt), *e1 = st_floats(&b, "embed", &n1, &dt);
    float *ef = st_floats(&b, "embed.frozen", &nf, &dt);
    CU_ASSERT_FATAL(e0 && e1 && ef && nf == 256 && ne == n1);
    size_t ekeep = 0, echanged = 0;
    for (size_t r = 0; r < nf; r++) {
        int same = !memcmp(e0 + r * 32, e1 + r * 32, 32 * sizeof(float));
        if (ef[r] == 0.0f) ekeep++, echanged += !same;
        else CU_ASSERT(same);
    }
    CU_ASSERT_EQUAL(ekeep, 64);
    CU_ASSERT(echanged > 0);
    free(e0);
    free(e1);
    free(ef);
    st_close(&a);
    st_close(&b);
    st_close(&x);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_efqat_checkpoint);
    TU_ADD(s, test_asym_export_after_training);
    TU_ADD(s, test_storage_bits_per_row);
}

int main(void) { return tu_main("export", add); }
