/* bench_train: training throughput of qatplan's trainer against PyTorch on the same machine
 * in the same run, like with like: qatplan fp32 beside PyTorch fp32, qatplan bf16 beside
 * PyTorch's CPU bf16 autocast; utilisation (MFU) against the machine's fp32 FMA and bf16
 * dot-product peaks, measured here with short AVX-512 loops, and against the best GEMM.
 *
 *   bench_train [--steps N] [--threads N] [--shapes small|all] [--only 0..3] [--repeats R]
 *               [--no-torch] [--torch-core CORE] [--breakdown] [--efqat [R,R,...]] [--cpu-clock]
 *
 * Batch 16 x context 256, shapes (layers, width, heads) = (2,64,2) (4,128,4) (6,256,8)
 * (8,384,6). FLOPs per token = 6 (non-embedding params + V d) + 12 L T d (the attention
 * products counted whole, as is usual). Kernels, each at its best: qatplan on its build's
 * kernel (oneDNN: the CPU's ISA; its OpenBLAS fallback is shown too, on the environment's
 * core type), PyTorch fp32 on OpenBLAS with OPENBLAS_CORETYPE=CORE (default SkylakeX, its
 * best on AVX-512) and PyTorch bf16 on its bundled oneDNN. Medians over timed steps after 2
 * warm-up steps; every repeat is printed with the load average, and the best repeat of each
 * is kept (the least disturbed on a shared machine). --breakdown: where a bf16 step's time
 * goes (bench_breakdown.h). --efqat [R,R,...]: instead, EfQAT's backward and step at each
 * unfrozen ratio against full QAT, with the weight-gradient share phi (bench_efqat.h);
 * --cpu-clock: those timed in process CPU seconds (steadier on a loaded machine). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_breakdown.h"
#include "bench_efqat.h"
#include "bench_peak.h"
#include "bench_torch.h"
#include "gemm.h"
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

static double load1(void)
{
    double l[3] = {NAN, NAN, NAN};
    return getloadavg(l, 3) >= 1 ? l[0] : NAN;
}

/* FP steps (and, for fp32, 4-bit LSQ QAT steps alternating with them, so both see the same
 * load); returns FP tokens/s, the median step times, and the quantizer passes alone. */
static double run_ours(const train_shape *s, int steps, int bf16, double *ms_fp, double *ms_qat,
                       double *ms_quant)
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
    train_gemm_set_bf16(bf16);
    uint16_t *inp = malloc((size_t)B * T * 2), *tgt = malloc((size_t)B * T * 2);
    uint64_t st = 5;
    double t[2][64];
    int n[2] = {0, 0}, kinds = bf16 ? 1 : 2;
    for (int i = 0; i < kinds * (steps + 2); i++) {
        int qat = i % kinds;
        m.qat = qat;
        for (int j = 0; j < B * T; j++) {
            inp[j] = (uint16_t)(train_rng_next(&st) % 256);
            tgt[j] = (uint16_t)(train_rng_next(&st) % 256);
        }
        double t0 = qp_now(), gn;
        train_forward_backward(&m, inp, tgt, B, T, &gn);
        train_update(&m, &c, 1e-3, i + 1, gn);
        double dt = qp_now() - t0;
        if (i >= 2 * kinds && n[qat] < 64) t[qat][n[qat]++] = dt;
    }
    double tq[5];
    m.qat = 1;
    for (int r = 0; r < 5; r++) {
        double t0 = qp_now();
        model_quantize(&m);
        model_quant_backward(&m);
        tq[r] = qp_now() - t0;
    }
    train_gemm_set_bf16(0);
    *ms_quant = median(tq, 5) * 1e3;
    free(inp);
    free(tgt);
    model_free(&m);
    *ms_fp = median(t[0], n[0]) * 1e3;
    *ms_qat = bf16 ? NAN : median(t[1], n[1]) * 1e3;
    return B * T / (*ms_fp / 1e3);
}

static double run_torch(const train_shape *s, int threads, int steps, const char *core, int bf16)
{
    char env[256], args[512];
    snprintf(env, sizeof env, "OPENBLAS_CORETYPE=%s OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%d", core,
             threads);
    snprintf(args, sizeof args, "--layers %d --width %d --heads %d --ffn %d --threads %d --steps %d --precision %s",
             s->n_layer, s->d_model, s->n_head, s->d_ff, threads, steps, bf16 ? "bf16" : "fp32");
    return bench_torch_tokens_per_s(env, args);
}

enum { Q32, QBLAS, Q16, T32, T16, NCOL };
static const char *col_name[NCOL] = {"qatplan fp32", "qatplan fp32 openblas", "qatplan bf16", "torch fp32",
                                     "torch bf16"};

typedef struct {
    int on;
    train_shape s;
    double tps[NCOL]; /* best tokens/s of each column (NAN: not measured) */
    double ms_q, ms_fp_q, ms_quant;
} shape_result;

/* One repeat of every column for shape s, each printed with the load average. */
static void measure_repeat(shape_result *r, int steps, int threads, int torch, const char *core, int dnn)
{
    qp_error err;
    for (int k = 0; k < NCOL; k++) {
        double x = NAN, a = NAN, b = NAN, c = NAN;
        if (k == QBLAS && !dnn) continue; /* the fallback is the kernel already */
        if ((k == T32 || k == T16) && !torch) continue;
        if (k == Q32 || k == Q16) {
            x = run_ours(&r->s, steps, k == Q16, &a, &b, &c);
        } else if (k == QBLAS) {
            train_gemm_set_kernel(TRAIN_GEMM_OPENBLAS, &err);
            x = run_ours(&r->s, steps, 0, &a, &b, &c);
            train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err);
        } else {
            x = run_torch(&r->s, threads, steps, core, k == T16);
        }
        printf("  %d,%d,%d  %-22s %9.0f tok/s  load %.2f\n", r->s.n_layer, r->s.d_model, r->s.n_head,
               col_name[k], x, load1());
        fflush(stdout);
        if (k == Q32 && (isnan(r->tps[k]) || x > r->tps[k])) {
            r->ms_fp_q = a;
            r->ms_q = b;
        }
        if (k == Q32 && c < r->ms_quant) r->ms_quant = c;
        if (isnan(r->tps[k]) || x > r->tps[k]) r->tps[k] = x;
    }
}

static void print_table(const shape_result *res, int n, const peaks *pk)
{
    printf("\n%-9s %7s %8s %8s %8s %8s %8s %6s %6s %6s %7s %7s %7s %6s\n", "L,d,h", "params", "q fp32",
           "q blas", "q bf16", "t fp32", "t bf16", "MFU32", "MFU16", "MFUg16", "q/t 32", "q/t 16", "bf/fp",
           "QAT");
    for (int k = 0; k < n; k++) {
        const shape_result *r = &res[k];
        if (!r->on) continue;
        const train_shape *s = &r->s;
        double flop_tok = 6.0 * (data_shape_params_nonembed(s) + 256.0 * s->d_model) +
                          12.0 * s->n_layer * s->context * s->d_model;
        char lbl[32];
        snprintf(lbl, sizeof lbl, "%d,%d,%d", s->n_layer, s->d_model, s->n_head);
        printf("%-9s %6.2fM %8.0f %8.0f %8.0f %8.0f %8.0f %5.1f%% %5.1f%% %5.1f%% %6.2fx %6.2fx %6.2fx %+5.0f%%\n",
               lbl, data_shape_params(s) / 1e6, r->tps[Q32], r->tps[QBLAS], r->tps[Q16], r->tps[T32],
               r->tps[T16], 100.0 * flop_tok * r->tps[Q32] / 1e9 / pk->fma_f32,
               100.0 * flop_tok * r->tps[Q16] / 1e9 / pk->dot_bf16, 100.0 * flop_tok * r->tps[Q16] / 1e9 / pk->gemm_bf16,
               r->tps[Q32] / r->tps[T32], r->tps[Q16] / r->tps[T16], r->tps[Q16] / r->tps[Q32],
               100.0 * (r->ms_q / r->ms_fp_q - 1.0));
    }
    printf("\ntokens/s (best repeat): q = qatplan (fp32 on its kernel, blas = its OpenBLAS fallback on the\n"
           "environment's core, bf16), t = PyTorch (fp32 on OpenBLAS at the core above, bf16 autocast).\n"
           "MFU32 = qatplan fp32 GFLOP/s / fp32 FMA peak; MFU16 = qatplan bf16 / bf16 dot-product peak;\n"
           "MFUg16 = qatplan bf16 / best bf16 GEMM; q/t = qatplan / PyTorch at the same precision;\n"
           "bf/fp = qatplan bf16 / fp32; QAT = 4-bit LSQ fp32 step / FP step - 1 (alternating steps).\n"
           "The machine may be shared: compare ratios from one run, and the load averages above.\n");
}

/* --efqat: every shape at every ratio (bench_efqat.h), then the tables. */
static int run_efqat(int shp[4][3], int nshapes, int only, int steps, int repeats, efq_result *proto)
{
    efq_result res[4];
    train_shape s[4];
    qp_error err;
    printf("EfQAT backward (E1): 4-bit LSQ QAT, CWPL, ratios against R = 1 in the same run; %s\n",
           efq_cpu_clock ? "times in process CPU seconds (--cpu-clock; ms below are CPU ms)" : "wall-clock times");
    for (int k = 0; k < nshapes; k++) {
        res[k] = *proto;
        res[k].nr = 0;
        if (only >= 0 && k != only) continue;
        s[k] = (train_shape){shp[k][0], shp[k][1], shp[k][2], 0, 0, 256, 256};
        if (train_shape_finish(&s[k], &err)) return 1;
        res[k].nr = proto->nr;
        if (efq_measure(&s[k], &res[k], steps, repeats, load1)) return 1;
    }
    for (int k = 0; k < nshapes; k++)
        if (res[k].nr) efq_print(&s[k], &res[k]);
    efq_legend();
    train_gemm_release();
    return 0;
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
    int steps = 5, threads = 2, torch = 1, nshapes = 4, only = -1, repeats = 2, breakdown = 0;
    const char *core = "SkylakeX";
    efq_result efq = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) torch = 0;
        else if (!strcmp(argv[i], "--breakdown")) breakdown = 1;
        else if (!strcmp(argv[i], "--cpu-clock")) efq_cpu_clock = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--torch-core") && i + 1 < argc) core = argv[++i];
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) nshapes = strcmp(argv[++i], "small") ? 4 : 2;
        else if (!strcmp(argv[i], "--efqat")) {
            const char *list = i + 1 < argc && strncmp(argv[i + 1], "--", 2) ? argv[++i] : "1,0.5,0.25,0.05,0";
            if (!(efq.nr = efq_parse_ratios(list, efq.r))) return 2;
        } else {
            fprintf(stderr, "usage: bench_train [--steps N] [--threads N] [--shapes small|all] [--only 0..3] "
                            "[--repeats R] [--no-torch] [--torch-core CORE] [--breakdown] [--efqat [R,R,...]] "
                            "[--cpu-clock]\n");
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    if (steps > 60) steps = 60;
    if (repeats < 1) repeats = 1;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    qp_error err;
    int dnn = train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err) == QP_OK;
    printf("bench_train: batch 16 x context 256, %d threads, %d timed steps, load %.2f\n", threads, steps, load1());
    printf("qatplan kernel %s; its fallback OpenBLAS core %s (OPENBLAS_CORETYPE=%s); PyTorch fp32: OpenBLAS core %s\n",
           train_gemm_backend_name(), qp_blas_core_name(), getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
           core);
    int shp[4][3] = {{2, 64, 2}, {4, 128, 4}, {6, 256, 8}, {8, 384, 6}};
    if (efq.nr) return run_efqat(shp, nshapes, only, steps, repeats, &efq);
    peaks pk;
    bench_measure_peaks(&pk, threads, "start");
    shape_result res[4];
    memset(res, 0, sizeof res);
    for (int k = 0; k < nshapes; k++) {
        if (only >= 0 && k != only) continue;
        shape_result *r = &res[k];
        r->s = (train_shape){shp[k][0], shp[k][1], shp[k][2], 0, 0, 256, 256};
        if (train_shape_finish(&r->s, &err)) return 1;
        r->on = 1;
        r->ms_quant = INFINITY;
        for (int c = 0; c < NCOL; c++) r->tps[c] = NAN;
        for (int rep = 0; rep < repeats; rep++) measure_repeat(r, steps, threads, torch, core, dnn);
        if (breakdown) bench_breakdown(&r->s, 16, steps);
    }
    bench_measure_peaks_again(&pk, threads);
    bench_print_peaks(&pk);
    print_table(res, nshapes, &pk);
    train_gemm_release();
    return 0;
}
