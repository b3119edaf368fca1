/* bench_train: training throughput of qatplan's trainer against PyTorch (same architecture,
 * same machine, same run), utilisation against an sgemm peak measured in the run, and the
 * cost of a QAT step over an FP step.
 *
 *   bench_train [--steps N] [--threads N] [--shapes small|all] [--only 0..3] [--repeats R] [--no-torch]
 *
 * Batch 16 x context 256, fp32, shapes (layers, width, heads) = (2,64,2) (4,128,4)
 * (6,256,8) (8,384,6). FLOPs per token = 6 (non-embedding params + V d) + 12 L T d.
 * Medians over timed steps after 2 warm-up steps; each shape measures qatplan then PyTorch,
 * R times (default 2) alternating, and keeps the best of each, which is the least disturbed
 * by other processes on a shared machine. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_torch.h"
#include "model.h"

extern void openblas_set_num_threads(int n);

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Best sgemm GFLOP/s over shapes like the trainer's (4096 token rows). */
static double gemm_peak(void)
{
    int shapes[][3] = {{4096, 1536, 384}, {4096, 384, 1536}, {1024, 1024, 1024}, {2048, 2048, 2048}};
    double best = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
        float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)K * N, 4), *c = calloc((size_t)M * N, 4);
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.1f;
        double t[7];
        for (int r = 0; r < 7; r++) {
            double t0 = qp_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            t[r] = qp_now() - t0;
        }
        double g = 2.0 * M * N * K / median(t, 7) / 1e9;
        if (g > best) best = g;
        free(a);
        free(b);
        free(c);
    }
    return best;
}

/* FP and 4-bit LSQ QAT steps alternate on one model, so both see the same machine load;
 * returns FP tokens/s and the two median step times. */
static double run_ours(const train_shape *s, int steps, double *ms_fp, double *ms_qat, double *ms_quant)
{
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, 0};
    train_config c;
    train_config_default(&c);
    model m;
    qp_error err;
    int B = 16, T = s->context;
    if (model_create(&m, s, &q, B, T, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        exit(1);
    }
    model_init(&m, 1);
    model_quant_init(&m);
    uint16_t *inp = malloc((size_t)B * T * 2), *tgt = malloc((size_t)B * T * 2);
    uint64_t st = 5;
    double t[2][64];
    int n[2] = {0, 0};
    for (int i = 0; i < 2 * (steps + 2); i++) {
        int qat = i % 2;
        m.qat = qat;
        for (int j = 0; j < B * T; j++) {
            inp[j] = (uint16_t)(train_rng_next(&st) % 256);
            tgt[j] = (uint16_t)(train_rng_next(&st) % 256);
        }
        double t0 = qp_now(), gn;
        train_forward_backward(&m, inp, tgt, B, T, &gn);
        train_update(&m, &c, 1e-3, i + 1, gn);
        double dt = qp_now() - t0;
        if (i >= 4 && n[qat] < 64) t[qat][n[qat]++] = dt;
    }
    /* the quantizer passes alone (fake-quantize all weights, STE backward): what QAT adds */
    double tq[5];
    m.qat = 1;
    for (int r = 0; r < 5; r++) {
        double t0 = qp_now();
        model_quantize(&m);
        model_quant_backward(&m);
        tq[r] = qp_now() - t0;
    }
    *ms_quant = median(tq, 5) * 1e3;
    free(inp);
    free(tgt);
    model_free(&m);
    *ms_fp = median(t[0], n[0]) * 1e3;
    *ms_qat = median(t[1], n[1]) * 1e3;
    return B * T / (*ms_fp / 1e3);
}

static double run_torch(const train_shape *s, int threads, int steps)
{
    char env[256], args[512];
    snprintf(env, sizeof env, "OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%d",
             threads);
    snprintf(args, sizeof args, "--layers %d --width %d --heads %d --ffn %d --threads %d --steps %d",
             s->n_layer, s->d_model, s->n_head, s->d_ff, threads, steps);
    return bench_torch_tokens_per_s(env, args);
}

int main(int argc, char **argv)
{
    qp_blas_select_kernels(argc, argv);
    /* same thread-waiting settings as `qatplan train` (see cli/cmd_train.c) */
    if (!getenv("QP_TRAIN_REEXEC") && !getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        if (!getenv("OPENBLAS_THREAD_TIMEOUT")) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
        setenv("QP_TRAIN_REEXEC", "1", 1);
        execv("/proc/self/exe", argv);
    }
    int steps = 5, threads = 2, torch = 1, nshapes = 4, only = -1, repeats = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) nshapes = strcmp(argv[++i], "small") ? 4 : 2;
        else {
            fprintf(stderr, "usage: bench_train [--steps N] [--threads N] [--shapes small|all] [--only 0..3] [--repeats R] [--no-torch]\n");
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    if (steps > 60) steps = 60;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    printf("bench_train: batch 16 x context 256, fp32, %d threads, OpenBLAS core %s, %d timed steps\n",
           threads, qp_blas_core_name(), steps);
    /* the sgemm peak is measured before every shape and at the end; the best is used */
    double peak = gemm_peak();
    int shp[4][3] = {{2, 64, 2}, {4, 128, 4}, {6, 256, 8}, {8, 384, 6}};
    struct { int on; train_shape s; double ms_fp, ms_q, ms_quant, tps, tt, gf; } res[4];
    memset(res, 0, sizeof res);
    for (int k = 0; k < nshapes; k++) {
        if (only >= 0 && k != only) continue;
        train_shape s = {shp[k][0], shp[k][1], shp[k][2], 0, 0, 256, 256};
        qp_error err;
        if (train_shape_finish(&s, &err)) return 1;
        double pk = gemm_peak();
        if (pk > peak) peak = pk;
        double ms_fp = INFINITY, ms_q = INFINITY, ms_quant = INFINITY, tt = torch ? 0 : NAN;
        for (int r = 0; r < (repeats < 1 ? 1 : repeats); r++) {
            double a, b, c;
            run_ours(&s, steps, &a, &b, &c);
            /* QAT cost from the same repeat as the best FP time */
            if (a < ms_fp) {
                ms_fp = a;
                ms_q = b;
            }
            if (c < ms_quant) ms_quant = c;
            if (torch) {
                double x = run_torch(&s, threads, steps);
                if (x > tt) tt = x;
            }
        }
        double flop_tok = 6.0 * (data_shape_params_nonembed(&s) + 256.0 * s.d_model) +
                          12.0 * s.n_layer * s.context * s.d_model;
        double tps = 16.0 * s.context / (ms_fp / 1e3);
        res[k].on = 1;
        res[k].s = s;
        res[k].ms_fp = ms_fp;
        res[k].ms_q = ms_q;
        res[k].ms_quant = ms_quant;
        res[k].tps = tps;
        res[k].tt = tt;
        res[k].gf = flop_tok * tps / 1e9;
        fprintf(stderr, "  measured %d,%d,%d\n", s.n_layer, s.d_model, s.n_head);
    }
    double pk = gemm_peak();
    if (pk > peak) peak = pk;
    printf("best measured sgemm: %.1f GFLOP/s\n\n", peak);
    printf("%-10s %8s %9s %9s %8s %6s %9s %7s %8s %8s\n", "L,d,h", "params", "ms/step", "tok/s",
           "GFLOP/s", "MFU", "torch t/s", "x torch", "QAT step", "quant ms");
    for (int k = 0; k < 4; k++) {
        if (!res[k].on) continue;
        char lbl[32];
        snprintf(lbl, sizeof lbl, "%d,%d,%d", res[k].s.n_layer, res[k].s.d_model, res[k].s.n_head);
        printf("%-10s %7.2fM %9.1f %9.0f %8.1f %5.1f%% %9.0f %6.2fx %+7.1f%% %8.1f\n", lbl,
               data_shape_params(&res[k].s) / 1e6, res[k].ms_fp, res[k].tps, res[k].gf,
               100.0 * res[k].gf / peak, res[k].tt, res[k].tps / res[k].tt,
               100.0 * (res[k].ms_q / res[k].ms_fp - 1.0), res[k].ms_quant);
    }
    printf("\nMFU = GFLOP/s / best measured sgemm; QAT step = 4-bit LSQ step / FP step - 1 (alternating\n"
           "steps); quant ms = the quantizer passes alone (fake-quantize + STE backward, all weights).\n"
           "The machine is shared: compare ratios from one run.\n");
    return 0;
}
