/* EfficientQAT in the trainer (--method blockap, e2eqp, efficientqat): Block-AP with no epochs
 * is the PTQ model, the record's method fields, E2E-QP keeps the integer codes, a stopped and
 * resumed run ends bit-identical to an uninterrupted one, and the refusals name the option. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data.h"
#include "testutil.h"

#define BASE                                                                                          \
    "--layers 2 --width 32 --heads 2 --ffn 96 --context 32 --batch 4 --bits 2 --group-size 16 "     \
    "--eval-tokens 2K --quiet --threads 1 --seed 3 --device cpu"
#define LRS "--blockap-weight-lr 1e-3 --blockap-qparam-lr 1e-3 --e2e-lr 1e-3"

static int have_fp;

/* The project's own sources as text (always there). */
static int run(const char *opts, const char *runs, data_run *out, char **errtxt)
{
    static int corpus;
    if (!corpus) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "cat %s/trainer/*.c %s/data/*.c > %s && cat %s/trainer/*.h > %s", QP_SOURCE_DIR,
                 QP_SOURCE_DIR, tu_path("train.txt"), QP_SOURCE_DIR, tu_path("val.txt"));
        if (system(cmd) != 0) return -1;
        corpus = 1;
    }
    char args[8192];
    snprintf(args, sizeof args, "train --train-text %s --val-text %s --runs-out %s %s %s", tu_path("train.txt"),
             tu_path("val.txt"), tu_path(runs), BASE, opts);
    char *err = NULL;
    int rc = tu_run_qatplan(args, NULL, &err);
    if (rc != 0 && rc != 1 && !errtxt) fprintf(stderr, "qatplan %s -> %d: %s\n", args, rc, err ? err : "");
    if (errtxt) *errtxt = err;
    else free(err);
    if (out) {
        data_run_list l;
        data_run_list_init(&l);
        qp_error e;
        memset(out, 0, sizeof *out);
        out->loss = NAN;
        if (data_runs_read(tu_path(runs), &l, &e) == QP_OK && l.n > 0) *out = l.runs[l.n - 1];
        data_run_list_free(&l);
    }
    return rc;
}

/* One FP model (400K tokens: 2-bit min-max loses 0.3 nats on it) that every method starts from. */
static data_run fp_run;
static double rtn_mse = NAN; /* Block-AP's validation MSE with no epochs: min-max's */
static int fp_model(void)
{
    if (!have_fp) {
        char o[1024];
        snprintf(o, sizeof o, "--tokens 400K --qat-fraction 0 --quantizer asym --checkpoint %s", tu_path("fp.st"));
        have_fp = run(o, "fp.jsonl", &fp_run, NULL) == 0;
    }
    return have_fp;
}

/* A safetensors tensor's bytes (malloc'ed) and length. */
static unsigned char *st_tensor(const char *path, const char *name, size_t *n)
{
    size_t len;
    char *buf = tu_read(path, &len);
    if (!buf || len < 8) return free(buf), NULL;
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)(unsigned char)buf[i] << (8 * i);
    char *h = strndup(buf + 8, hl);
    cJSON *hdr = cJSON_Parse(h), *off = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(hdr, name), "data_offsets");
    unsigned char *o = NULL;
    if (cJSON_GetArraySize(off) == 2) {
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        *n = b - a;
        o = malloc(*n + 1);
        memcpy(o, buf + 8 + hl + a, *n);
    }
    cJSON_Delete(hdr);
    free(h);
    free(buf);
    return o;
}

/* Compare one tensor of every block linear in two files: 1 all equal, 0 some differ. */
static int same_tensors(const char *a, const char *b, const char *suffix)
{
    static const char *lin[4] = {"wqkv", "wo", "w13", "w2"};
    int same = 1;
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 4; k++) {
            char name[96];
            snprintf(name, sizeof name, "layers.%d.%s%s", l, lin[k], suffix);
            size_t na = 0, nb = 0;
            unsigned char *x = st_tensor(a, name, &na), *y = st_tensor(b, name, &nb);
            CU_ASSERT_FATAL(x && y && na == nb && na > 0);
            same &= !memcmp(x, y, na);
            free(x);
            free(y);
        }
    return same;
}

/* Block-AP with no epochs quantizes each block in place by min-max: the PTQ model. */
static void test_blockap_epochs0_is_ptq(void)
{
    CU_ASSERT_FATAL(fp_model());
    char o[1024];
    data_run r;
    snprintf(o, sizeof o, "--init %s --tokens 4K --method blockap --blockap-epochs 0 --export-int %s", tu_path("fp.st"),
             tu_path("b0.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "b0.jsonl", &r, NULL), 0);
    CU_ASSERT(r.loss == r.loss_ptq);
    CU_ASSERT(r.loss == fp_run.loss); /* the f = 0 run's final model is the same PTQ model */
    CU_ASSERT_STRING_EQUAL(r.method, "blockap");
    CU_ASSERT_STRING_EQUAL(r.quantizer, "asym"); /* auto resolves to asym */
    CU_ASSERT_EQUAL(r.blockap_epochs, 0);
    CU_ASSERT(isfinite(r.blockap_mse) && r.blockap_mse > 0);
    rtn_mse = r.blockap_mse;
}

/* efficientqat end to end: the budget split, the record's fields, and a loss below PTQ. */
static void test_efficientqat_record(void)
{
    CU_ASSERT_FATAL(fp_model());
    char o[1024];
    data_run r, b, e;
    /* 125 steps of 128 tokens: Block-AP 4000 calibration tokens x 2 epochs, E2E-QP 63 steps */
    snprintf(o, sizeof o, "--init %s --tokens 16000 --method efficientqat %s --export-int %s", tu_path("fp.st"),
             LRS, tu_path("eq.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "eq.jsonl", &r, NULL), 0);
    CU_ASSERT_STRING_EQUAL(r.method, "efficientqat");
    CU_ASSERT_EQUAL(r.blockap_tokens, 4000);
    CU_ASSERT_EQUAL(r.blockap_epochs, 2);
    CU_ASSERT_EQUAL(r.e2e_tokens, 63 * 128);
    CU_ASSERT_EQUAL(r.d_qat, 4000 * 2 + 63 * 128);
    CU_ASSERT_DOUBLE_EQUAL(r.storage_bits_per_weight, 2 + 18.0 / 16, 1e-12); /* b + (b + 16) / g */
    /* one block: norms, weights, then a scale and a zero per group of 16 */
    double lin = 96 * 32 + 32 * 32 + 192 * 32 + 32 * 96;
    CU_ASSERT_EQUAL(r.trainable_params_qat, 2 * 32 + lin + 2 * lin / 16);
    CU_ASSERT(r.flops_blockap > 0 && r.flops_e2eqp > 0 && r.flops_qat == r.flops_blockap + r.flops_e2eqp);
    /* at least the training products: 6 E per calibration token and block weight; E2E-QP's
     * forward, dX and dW over the block linears */
    CU_ASSERT(r.flops_blockap > 6.0 * 2 * 2 * lin * 4000);
    CU_ASSERT(r.flops_e2eqp > 6.0 * 2 * lin * 63 * 128);
    CU_ASSERT(isfinite(r.blockap_mse) && r.blockap_mse > 0);
    CU_ASSERT(r.train_state_bytes_blockap > r.train_state_bytes_e2eqp);
    CU_ASSERT(r.train_state_bytes == r.train_state_bytes_blockap);
    CU_ASSERT(r.loss < r.loss_ptq);
    CU_ASSERT(r.loss_ptq == fp_run.loss);
    /* each half alone from the same model, and the split by explicit token counts */
    snprintf(o, sizeof o, "--init %s --tokens 16000 --method blockap %s", tu_path("fp.st"), LRS);
    CU_ASSERT_EQUAL_FATAL(run(o, "eq_b.jsonl", &b, NULL), 0);
    CU_ASSERT_EQUAL(b.blockap_tokens, 8000); /* all of the budget, over 2 epochs */
    CU_ASSERT(isnan(b.e2e_tokens) && isnan(b.flops_e2eqp));
    CU_ASSERT(b.loss < b.loss_ptq);
    CU_ASSERT(b.blockap_mse < rtn_mse); /* reconstruction lowers the blocks' error */
    snprintf(o, sizeof o, "--init %s --tokens 16000 --method e2eqp %s", tu_path("fp.st"), LRS);
    CU_ASSERT_EQUAL_FATAL(run(o, "eq_e.jsonl", &e, NULL), 0);
    CU_ASSERT_EQUAL(e.e2e_tokens, 16000);
    CU_ASSERT(isnan(e.blockap_tokens) && isnan(e.flops_blockap));
    CU_ASSERT_EQUAL(e.trainable_params_qat, 2 * lin / 16); /* the step sizes of both layers */
    CU_ASSERT(e.loss < e.loss_ptq);
}

/* E2E-QP trains step sizes only: the exported integer codes (and zero points) are Block-AP's
 * (or min-max's), the scales are not. */
static void test_e2e_keeps_codes(void)
{
    CU_ASSERT_FATAL(fp_model());
    char o[1024];
    snprintf(o, sizeof o, "--init %s --tokens 4K --method blockap --blockap-epochs 0 --export-int %s",
             tu_path("fp.st"), tu_path("c0.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "c.jsonl", NULL, NULL), 0);
    snprintf(o, sizeof o, "--init %s --tokens 8K --method e2eqp %s --export-int %s", tu_path("fp.st"), LRS,
             tu_path("c1.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "c.jsonl", NULL, NULL), 0);
    CU_ASSERT(same_tensors(tu_path("c0.int"), tu_path("c1.int"), ".qweight"));
    CU_ASSERT(same_tensors(tu_path("c0.int"), tu_path("c1.int"), ".zero"));
    CU_ASSERT(!same_tensors(tu_path("c0.int"), tu_path("c1.int"), ".scale"));
    /* after Block-AP: with and without the E2E-QP steps */
    const char *eq = "--method efficientqat --blockap-tokens 2K --blockap-epochs 1 " LRS;
    snprintf(o, sizeof o, "--init %s --tokens 8K %s --e2e-tokens 0 --export-int %s", tu_path("fp.st"), eq,
             tu_path("c2.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "c.jsonl", NULL, NULL), 0);
    snprintf(o, sizeof o, "--init %s --tokens 8K %s --export-int %s", tu_path("fp.st"), eq, tu_path("c3.int"));
    CU_ASSERT_EQUAL_FATAL(run(o, "c.jsonl", NULL, NULL), 0);
    CU_ASSERT(same_tensors(tu_path("c2.int"), tu_path("c3.int"), ".qweight"));
    CU_ASSERT(!same_tensors(tu_path("c2.int"), tu_path("c3.int"), ".scale"));
    CU_ASSERT(!same_tensors(tu_path("c0.int"), tu_path("c2.int"), ".qweight")); /* Block-AP moved codes */
}

/* Stopped inside Block-AP's first block, inside its second, and inside E2E-QP (the FP phase
 * too: a classic run), each resumed: the same loss, record and checkpoint as one process. */
static void test_resume_bit_identical(void)
{
    char o[1024];
    const char *run_opts = "--tokens 24000 --qat-fraction 0.5 --method efficientqat --blockap-tokens 2K " LRS;
    data_run a, b;
    snprintf(o, sizeof o, "%s --checkpoint %s", run_opts, tu_path("ra.st"));
    CU_ASSERT_EQUAL_FATAL(run(o, "ra.jsonl", &a, NULL), 0);
    /* 94 FP steps, then Block-AP 2 blocks x 32 iterations, then E2E-QP 47 steps */
    remove(tu_path("rb.state"));
    remove(tu_path("rb.jsonl"));
    long stops[] = {60, 40, 40, 40, 0};
    int rc = 1;
    for (int i = 0; i < 5 && rc == 1; i++) {
        char lim[64] = "";
        if (stops[i]) snprintf(lim, sizeof lim, "--max-steps %ld", stops[i]);
        snprintf(o, sizeof o, "%s --state %s %s %s --checkpoint %s", run_opts, tu_path("rb.state"),
                 i ? "--resume" : "", lim, tu_path("rb.st"));
        rc = run(o, "rb.jsonl", &b, NULL);
        if (i < 4) CU_ASSERT_EQUAL(rc, 1); /* stopped, state saved */
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(a.loss == b.loss);
    CU_ASSERT(a.loss_ptq == b.loss_ptq);
    CU_ASSERT(a.blockap_mse == b.blockap_mse);
    CU_ASSERT(a.flops_blockap == b.flops_blockap && a.flops_e2eqp == b.flops_e2eqp);
    CU_ASSERT(tu_same_file(tu_path("ra.st"), tu_path("rb.st")));
}

/* E2E-QP's memory (spec Q4): its record's state bytes are full QAT's on the same model and
 * batch less, per scalar, 16 B for each block-linear weight (gradient, two moments, w_hat copy)
 * but the one-layer dW scratch (4 B / L) and its code byte, 16 B for each embedding weight,
 * 12 B for each zero point and 8 B for each norm gain (spec 3.4). */
static void test_e2e_memory(void)
{
    CU_ASSERT_FATAL(fp_model());
    char o[1024];
    data_run q, e;
    snprintf(o, sizeof o, "--init %s --tokens 8K --quantizer asym --lr 1e-4", tu_path("fp.st"));
    CU_ASSERT_EQUAL_FATAL(run(o, "mem_q.jsonl", &q, NULL), 0);
    snprintf(o, sizeof o, "--init %s --tokens 8K --method e2eqp %s", tu_path("fp.st"), LRS);
    CU_ASSERT_EQUAL_FATAL(run(o, "mem_e.jsonl", &e, NULL), 0);
    double L = 2, D = 32, V = 256, lin = L * (96 * 32 + 32 * 32 + 192 * 32 + 32 * 96), zeros = lin / 16;
    double expect = lin * (16 - 4 / L - 1) + 16 * V * D + 12 * zeros + 8 * (2 * L + 1) * D - 1;
    CU_ASSERT(e.train_state_bytes == e.train_state_bytes_e2eqp);
    /* the full run's by train_memory_need, E2E-QP's as allocated: both round each allocation
     * to 64 bytes (the expected amount does not) */
    if (fabs(q.train_state_bytes - e.train_state_bytes - expect) > 256)
        fprintf(stderr, "full QAT %.0f, E2E-QP %.0f: saved %.0f, expected %.0f\n", q.train_state_bytes,
                e.train_state_bytes, q.train_state_bytes - e.train_state_bytes, expect);
    CU_ASSERT(fabs(q.train_state_bytes - e.train_state_bytes - expect) <= 256); /* 4 families x 64 B */
}

/* e2eqp from a checkpoint runs lean from the start: a stop and resume (its state holds the step
 * sizes' moments only, zeros elsewhere) ends as one process does, bit for bit. */
static void test_e2e_lean_resume(void)
{
    CU_ASSERT_FATAL(fp_model());
    char o[1024];
    data_run a, b;
    snprintf(o, sizeof o, "--init %s --tokens 8K --method e2eqp %s --checkpoint %s", tu_path("fp.st"), LRS,
             tu_path("la.st"));
    CU_ASSERT_EQUAL_FATAL(run(o, "la.jsonl", &a, NULL), 0);
    remove(tu_path("lb.state"));
    snprintf(o, sizeof o, "--init %s --tokens 8K --method e2eqp %s --state %s --max-steps 20", tu_path("fp.st"),
             LRS, tu_path("lb.state"));
    CU_ASSERT_EQUAL_FATAL(run(o, "lb.jsonl", NULL, NULL), 1);
    snprintf(o, sizeof o, "--init %s --tokens 8K --method e2eqp %s --state %s --resume --checkpoint %s",
             tu_path("fp.st"), LRS, tu_path("lb.state"), tu_path("lb.st"));
    CU_ASSERT_EQUAL_FATAL(run(o, "lb.jsonl", &b, NULL), 0);
    CU_ASSERT(a.loss == b.loss && a.train_state_bytes_e2eqp < b.train_state_bytes_e2eqp); /* b: with --state */
    CU_ASSERT(tu_same_file(tu_path("la.st"), tu_path("lb.st")));
}

static void test_refusals(void)
{
    struct { const char *opt, *msg; } bad[] = {
        {"--method blockap --quantizer lsq --bits 3 --group-size 0", "use --quantizer asym"},
        {"--method efficientqat --embed-bits 8", "use --embed-bits 0"},
        {"--method efficientqat --schedule fused", "use --schedule classic"},
        {"--method efficientqat --qat-fraction 1", "use --qat-fraction below 1"},
        {"--method e2eqp --qat-fraction 0", "use --qat-fraction above 0"},
        {"--method blockap --e2e-tokens 1K", "--e2e-tokens: --method blockap runs no E2E-QP"},
        {"--method e2eqp --blockap-tokens 1K", "--blockap-tokens: --method e2eqp runs no Block-AP"},
        {"--method efficientqat --qparam-lr-mult 2", "drop --qparam-lr-mult"},
        {"--method efficientqat --blockap-tokens 8", "raise --blockap-tokens"},
        {"--method nope", "--method nope: use qat"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char o[1024], *err = NULL;
        snprintf(o, sizeof o, "--tokens 8K --qat-fraction 0.5 %s", bad[i].opt);
        CU_ASSERT_EQUAL(run(o, "bad.jsonl", NULL, &err), 2);
        if (!err || !strstr(err, bad[i].msg)) fprintf(stderr, "%s: %s\n", bad[i].opt, err ? err : "(none)");
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, bad[i].msg));
        free(err);
    }
}

/* The EfficientQAT record fields round-trip; a record without them reads them as unknown. */
static void test_record_fields_roundtrip(void)
{
    data_run r;
    data_run_init(&r);
    snprintf(r.run_id, sizeof r.run_id, "x");
    r.n_params = 1000;
    r.d_fp = 100;
    r.d_qat = 50;
    r.bits = 2;
    r.loss = 2.5;
    snprintf(r.method, sizeof r.method, "efficientqat");
    double *f[] = {&r.blockap_tokens, &r.blockap_epochs, &r.e2e_tokens, &r.blockap_mse, &r.flops_blockap,
                   &r.flops_e2eqp, &r.storage_bits_per_weight, &r.train_state_bytes_blockap,
                   &r.train_state_bytes_e2eqp, &r.peak_rss_bytes_blockap};
    size_t nf = sizeof f / sizeof f[0];
    for (size_t i = 0; i < nf; i++) *f[i] = 0.125 + (double)i * 1e9;
    char *json = data_run_to_json(&r);
    CU_ASSERT_FATAL(json != NULL);
    data_run_list l;
    data_run_list_init(&l);
    qp_error e;
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_jsonl(json, "t", &l, &e), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 1);
    data_run *b = &l.runs[0];
    double *g[] = {&b->blockap_tokens, &b->blockap_epochs, &b->e2e_tokens, &b->blockap_mse, &b->flops_blockap,
                   &b->flops_e2eqp, &b->storage_bits_per_weight, &b->train_state_bytes_blockap,
                   &b->train_state_bytes_e2eqp, &b->peak_rss_bytes_blockap};
    for (size_t i = 0; i < nf; i++) CU_ASSERT(*g[i] == *f[i]);
    CU_ASSERT_STRING_EQUAL(b->method, "efficientqat");
    data_run_list_free(&l);
    free(json);
    data_run_init(&r);
    snprintf(r.run_id, sizeof r.run_id, "y");
    r.n_params = 1000;
    r.d_fp = 100;
    r.d_qat = 50;
    r.bits = 2;
    r.loss = 2.5;
    json = data_run_to_json(&r);
    CU_ASSERT_PTR_NULL(strstr(json, "blockap"));
    data_run_list_init(&l);
    CU_ASSERT_EQUAL_FATAL(data_runs_parse_jsonl(json, "t", &l, &e), QP_OK);
    CU_ASSERT(isnan(l.runs[0].blockap_mse) && isnan(l.runs[0].storage_bits_per_weight));
    data_run_list_free(&l);
    free(json);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "record fields round-trip", test_record_fields_roundtrip);
    CU_add_test(s, "blockap --blockap-epochs 0 is the PTQ model", test_blockap_epochs0_is_ptq);
    CU_add_test(s, "efficientqat's record, blockap and e2eqp alone", test_efficientqat_record);
    CU_add_test(s, "E2E-QP keeps the integer codes", test_e2e_keeps_codes);
    CU_add_test(s, "stop and resume inside Block-AP and E2E-QP: bit-identical", test_resume_bit_identical);
    CU_add_test(s, "E2E-QP's state bytes: full QAT's less the latent weights' state", test_e2e_memory);
    CU_add_test(s, "E2E-QP from a checkpoint (lean from the start): stop and resume bit-identical",
                test_e2e_lean_resume);
    CU_add_test(s, "refusals name the option", test_refusals);
}

int main(void) { return tu_main("blockap", add); }
