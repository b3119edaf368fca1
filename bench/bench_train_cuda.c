/* bench_train_cuda: training throughput of qatplan's CUDA backend against PyTorch on the same
 * GPU, and utilisation (MFU) against the GEMM peak measured in the same run.
 *
 *   bench_train_cuda [--steps N] [--precision fp32|bf16|both] [--only K] [--batch B]
 *                    [--no-torch] [--compile]
 *
 * Shapes (layers, width, heads, context): the CPU benchmark's four at batch 16 x context 256,
 * (2,64,2) (4,128,4) (6,256,8) (8,384,6); "gpt2-body" (12,768,12) at context 1024, GPT-2
 * small's transformer (85.2M parameters here: the byte vocabulary replaces GPT-2's 38.6M-
 * parameter token embedding); and "124M" (18,768,12, ffn 1968) at context 1024, 124.3M
 * parameters in all. FLOPs per token = 6 (non-embedding params + V d) + 12 L T d (the causal
 * attention counted whole, as is usual). Each row: FP steps, then 4-bit LSQ QAT steps, mean
 * time over N timed steps after 3 warm-up steps. PyTorch: bench/train_torch.py --device cuda
 * (TF32 off for fp32; autocast for bf16; --compile adds torch.compile). Without a GPU the
 * program says SKIPPED and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_torch.h"
#include "model.h"

#ifndef QATPLAN_HAVE_CUDA

int main(void)
{
    char why[256];
    train_cuda_devices(why, sizeof why);
    printf("bench_train_cuda: SKIPPED: no CUDA GPU: %s\n", why);
    return 0;
}

#else

typedef struct {
    const char *label;
    int L, D, H, T, F;
} bshape;

static const bshape shapes[] = {
    {"2,64,2", 2, 64, 2, 256, 0},        {"4,128,4", 4, 128, 4, 256, 0},
    {"6,256,8", 6, 256, 8, 256, 0},      {"8,384,6", 8, 384, 6, 256, 0},
    {"gpt2-body", 12, 768, 12, 1024, 0}, {"124M", 18, 768, 12, 1024, 1968},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static double run_torch(const train_shape *s, int B, int bf16, int compile, int steps)
{
    char args[512];
    snprintf(args, sizeof args,
             "--device cuda --precision %s %s --layers %d --width %d --heads %d --ffn %d --batch %d "
             "--context %d --steps %d --warmup 3",
             bf16 ? "bf16" : "fp32", compile ? "--compile" : "", s->n_layer, s->d_model, s->n_head,
             s->d_ff, B, s->context, steps);
    return bench_torch_tokens_per_s("", args);
}

/* Mean ms per FP step and per 4-bit LSQ QAT step; NAN on failure (message printed). */
static void run_ours(const train_shape *s, int B, int bf16, int steps, double *ms_fp, double *ms_qat)
{
    *ms_fp = *ms_qat = NAN;
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, 0};
    train_config c;
    train_config_default(&c);
    model m;
    qp_error err;
    int T = s->context;
    /* the host copy holds parameters only: batch 1 keeps its (unused) activations small; the
     * device copy is sized for B */
    if (model_create(&m, s, &q, 1, T, &err)) {
        fprintf(stderr, "bench_train_cuda: %s\n", err.msg);
        return;
    }
    model_init(&m, 1);
    model_quant_init(&m);
    m.B = B;
    cuda_model *g = NULL;
    if (model_cuda_create(&g, &m, bf16, &err)) {
        fprintf(stderr, "bench_train_cuda: %s\n", err.msg);
        model_free(&m);
        return;
    }
    uint16_t *inp = malloc((size_t)B * T * 2), *tgt = malloc((size_t)B * T * 2);
    uint64_t st = 5;
    cuda_adam hp = {1e-3, c.weight_decay, c.beta1, c.beta2, c.adam_eps, c.grad_clip};
    int64_t t = 0;
    for (int qat = 0; qat < 2; qat++) {
        double t0 = 0;
        for (int i = 0; i < 3 + steps; i++) {
            if (i == 3) {
                cuda_synchronize(g);
                t0 = qp_now();
            }
            for (int j = 0; j < B * T; j++) {
                inp[j] = (uint16_t)(train_rng_next(&st) % 256);
                tgt[j] = (uint16_t)(train_rng_next(&st) % 256);
            }
            double gn;
            cuda_forward_backward(g, inp, tgt, B, qat, 0, &gn);
            cuda_update(g, &hp, ++t, gn);
        }
        cuda_synchronize(g);
        double ms = (qp_now() - t0) / steps * 1e3;
        if (qat) *ms_qat = ms;
        else *ms_fp = ms;
    }
    if (model_cuda_check(g, &err)) {
        fprintf(stderr, "bench_train_cuda: %s\n", err.msg);
        *ms_fp = *ms_qat = NAN;
    }
    free(inp);
    free(tgt);
    cuda_model_free(g);
    model_free(&m);
}

int main(int argc, char **argv)
{
    int steps = 10, torch = 1, compile = 0, only = -1, B = 16, p_lo = 0, p_hi = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (!strcmp(argv[i], "--compile")) compile = 1;
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
            const char *v = argv[++i];
            p_lo = !strcmp(v, "bf16");
            p_hi = strcmp(v, "fp32") ? 1 : 0;
        } else {
            fprintf(stderr, "usage: bench_train_cuda [--steps N] [--precision fp32|bf16|both] "
                            "[--only 0..%d] [--batch B] [--no-torch] [--compile]\n", NSHAPES - 1);
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    if (B < 1) B = 1;
    char why[256];
    if (train_cuda_devices(why, sizeof why) < 1) {
        printf("bench_train_cuda: SKIPPED: no CUDA GPU: %s\n", why);
        return 0;
    }
    printf("bench_train_cuda: batch %d, %d timed steps; PyTorch %s\n", B, steps,
           torch ? (compile ? "eager + torch.compile" : "eager") : "not run");
    printf("%-10s %8s %5s %9s %10s %8s %6s %10s %7s %8s\n", "shape", "params", "prec", "ms/step",
           "tok/s", "TFLOP/s", "MFU", "torch t/s", "x torch", "QAT step");
    for (int bf16 = p_lo; bf16 <= p_hi; bf16++) {
        char msg[512] = "";
        double peak = cuda_gemm_peak(bf16, msg, sizeof msg);
        if (peak <= 0) {
            fprintf(stderr, "bench_train_cuda: GEMM peak: %s\n", msg);
            return 1;
        }
        for (int k = 0; k < NSHAPES; k++) {
            if (only >= 0 && k != only) continue;
            const bshape *b = &shapes[k];
            train_shape s = {b->L, b->D, b->H, 0, b->F, b->T, 256};
            qp_error err;
            if (train_shape_finish(&s, &err)) {
                fprintf(stderr, "bench_train_cuda: %s\n", err.msg);
                return 1;
            }
            double ms_fp, ms_qat;
            run_ours(&s, B, bf16, steps, &ms_fp, &ms_qat);
            double tps = (double)B * s.context / (ms_fp / 1e3);
            double flop_tok = 6.0 * (data_shape_params_nonembed(&s) + 256.0 * s.d_model) +
                              12.0 * s.n_layer * s.context * s.d_model;
            double tt = torch ? run_torch(&s, B, bf16, compile, steps) : NAN;
            printf("%-10s %7.1fM %5s %9.2f %10.0f %8.2f %5.1f%% %10.0f %6.2fx %+7.1f%%\n", b->label,
                   data_shape_params(&s) / 1e6, bf16 ? "bf16" : "fp32", ms_fp, tps,
                   flop_tok * tps / 1e12, 100.0 * flop_tok * tps / peak, tt, tps / tt,
                   100.0 * (ms_qat / ms_fp - 1.0));
            fflush(stdout);
        }
        printf("measured %s GEMM peak: %.1f TFLOP/s (MFU is against it)\n", bf16 ? "bf16" : "fp32",
               peak / 1e12);
    }
    printf("\nQAT step = 4-bit LSQ step / FP step - 1. x torch = qatplan tok/s / PyTorch tok/s "
           "(NaN: PyTorch with CUDA not found).\n");
    return 0;
}

#endif
