/* Parity with the PyTorch reference (scripts/torch_reference.py): the C model writes its
 * parameters, loss and gradients for one batch (FP and every quantizer) to a safetensors
 * file; the script recomputes them. Skipped, visibly, when /usr/bin/python3 has no torch (then
 * the suite exits 77, which CTest reports as skipped). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "data.h"
#include "gemm.h"
#include "model.h"
#include "testutil.h"

static int have_torch(void)
{
    return system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0;
}

static char cmd[16384];

/* Write one parity file and add it to the script's command line. */
static void parity_case(train_quantizer k, int bits, int group, int embed_bits, int qat, int bf16)
{
    train_shape s = {2, 32, 4, 2, 48, 16, 256};
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(train_shape_finish(&s, &err), QP_OK);
    train_qspec q = {k, bits, group, embed_bits};
    enum { B = 2, T = 16 };
    model m;
    CU_ASSERT_EQUAL_FATAL(model_create(&m, &s, &q, B, T, &err), QP_OK);
    model_init(&m, 11);
    uint64_t st = 77;
    /* larger weights than at init so attention and the MLP carry signal */
    for (int i = 0; i < MODEL_NT; i++)
        if (m.desc[i].decay)
            for (size_t j = 0; j < m.numel[i]; j++) m.p.t[i][j] *= 4.0f;
    for (size_t j = 0; j < m.numel[P_LN1]; j++) m.p.ln1[j] += 0.1f * train_rng_normal(&st);
    if (qat) {
        model_quant_init(&m);
        /* step sizes away from their initial values, as after some training */
        for (int i = P_S_WTE; i <= P_S_2; i++)
            for (size_t j = 0; j < m.numel[i]; j++) m.p.t[i][j] *= 1.0f + 0.1f * train_rng_normal(&st);
    }
    int32_t tok[B * (T + 1)];
    uint16_t inp[B * T], tgt[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t <= T; t++) tok[b * (T + 1) + t] = (int32_t)(train_rng_next(&st) % 256);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inp[b * T + t] = (uint16_t)tok[b * (T + 1) + t];
            tgt[b * T + t] = (uint16_t)tok[b * (T + 1) + t + 1];
        }
    m.qat = qat && k != TRAIN_Q_NONE;
    m.qat_embed = qat && embed_bits > 0;
    /* the trainer's own step (quantize, forward, backward in one bf16 keep scope, quantizer
     * backward), so that the kept bf16 copies are what is checked */
    double gnorm;
    train_gemm_set_bf16(bf16);
    float loss = train_forward_backward(&m, inp, tgt, B, T, &gnorm);
    train_gemm_set_bf16(0);
    CU_ASSERT(isfinite(gnorm));
    int32_t qflag = qat;
    st_tensor extra[3] = {
        {"tokens", "I32", 2, {B, T + 1, 0}, tok},
        {"loss", "F32", 1, {1, 0, 0}, &loss},
        {"qat", "I32", 1, {1, 0, 0}, &qflag},
    };
    char name[128];
    snprintf(name, sizeof name, "parity-%s%d-e%d-q%d%s.safetensors", train_quantizer_name(k), bits,
             embed_bits, qat, bf16 ? "-bf16" : "");
    const char *path = tu_path(name);
    CU_ASSERT_EQUAL_FATAL(ckpt_write_model(path, &m, &m.g, extra, 3, &err), QP_OK);
    strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
    strncat(cmd, path, sizeof cmd - strlen(cmd) - 1);
    model_free(&m);
}

/* Every quantizer's parity file, then the script on all of them. */
static void parity_cases(int bf16)
{
    parity_case(TRAIN_Q_NONE, 32, 0, 0, 0, bf16);
    parity_case(TRAIN_Q_LSQ, 4, 0, 4, 1, bf16);
    parity_case(TRAIN_Q_LSQ, 8, 0, 0, 1, bf16);
    parity_case(TRAIN_Q_SEQ, 2, 0, 0, 1, bf16);
    parity_case(TRAIN_Q_TERNARY, 2, 0, 0, 1, bf16);
    parity_case(TRAIN_Q_BINARY, 1, 0, 0, 1, bf16);
    parity_case(TRAIN_Q_ASYM, 3, 16, 0, 1, bf16);
    fprintf(stderr, "\n");
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_torch_parity(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch and numpy (install python3-torch) - PyTorch "
                "parity not checked");
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/torch_reference.py --check",
             QP_SOURCE_DIR);
    parity_cases(0);
}

/* --precision bf16 on the CPU against PyTorch's CPU bf16 autocast, within the tolerances the
 * script states (loss 1e-3 relative, each gradient 4e-2; docs/trainer.md, "Precision"). */
static void test_torch_parity_bf16(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch and numpy (install python3-torch) - bf16 "
                "parity not checked");
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/torch_reference.py --check-bf16",
             QP_SOURCE_DIR);
    parity_cases(1);
}

/* PyTorch reads a checkpoint written by `qatplan train` and reproduces the run record's
 * final (quantized) validation loss. */
static void test_torch_reads_checkpoint(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch - checkpoint not checked");
        return;
    }
    /* a small text: this test's own source */
    char args[8192], src[4096];
    snprintf(src, sizeof src, "%s/tests/test_train_torch.c", QP_SOURCE_DIR);
    snprintf(args, sizeof args,
             "train --train-text %s/trainer/model.c --val-text %s --layers 1 --width 32 --heads 4 "
             "--kv-heads 2 --context 32 --batch 4 --tokens 8K --bits 3 --embed-bits 5 --eval-tokens 2048 "
             "--quiet --checkpoint %s --runs-out %s",
             QP_SOURCE_DIR, src, tu_path("run.safetensors"), tu_path("run.jsonl"));
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(args, NULL, NULL), 0);
    data_run_list l;
    data_run_list_init(&l);
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(data_runs_read(tu_path("run.jsonl"), &l, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 1);
    double want = l.runs[0].loss;
    data_run_list_free(&l);
    char ev[8192];
    snprintf(ev, sizeof ev,
             "/usr/bin/python3 %s/scripts/torch_reference.py --eval %s --text %s --tokens 2048 --quantized",
             QP_SOURCE_DIR, tu_path("run.safetensors"), src);
    FILE *p = popen(ev, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    double got = NAN;
    CU_ASSERT_EQUAL(fscanf(p, "val loss %lf", &got), 1);
    pclose(p);
    fprintf(stderr, "record loss %.6f, PyTorch on the checkpoint %.6f\n", want, got);
    CU_ASSERT_DOUBLE_EQUAL(got, want, 1e-5 * want);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_torch_parity);
    TU_ADD(s, test_torch_parity_bf16);
    TU_ADD(s, test_torch_reads_checkpoint);
}

int main(void) { return tu_main("train_torch", add); }
