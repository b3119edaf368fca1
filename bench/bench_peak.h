/* bench_peak.h: the machine's peaks for bench_train, measured in the same run: fp32 FMA
 * (AVX-512 vfmadd, 16 independent chains per thread) and bf16 dot products (AVX512_BF16
 * vdpbf16ps: 32 products and 32 sums per instruction), on `threads` OpenMP threads, best of
 * 5; and the best train_gemm GFLOP/s in fp32 and bf16 on trainer-like shapes. A peak the
 * CPU lacks is NAN. Header-only: each bench_*.c is one program. */
#ifndef BENCH_PEAK_H
#define BENCH_PEAK_H

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemm.h"
#include "qp.h"

typedef struct {
    double fma_f32, dot_bf16;   /* GFLOP/s */
    double gemm_f32, gemm_bf16; /* best train_gemm GFLOP/s */
} peaks;

#define PEAK_ITERS 4000000L
#define PEAK_CHAINS 16

__attribute__((target("avx512f"))) static float peak_fma_loop(long iters)
{
    __m512 acc[PEAK_CHAINS];
    __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
        /* unrolled whole, so the chains live in registers */
#pragma GCC unroll 16
        for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], x, y);
    }
    __m512 s = acc[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) static float peak_dot_loop(long iters)
{
    __m512 acc[PEAK_CHAINS];
    __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
    __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < PEAK_CHAINS; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
    }
    __m512 s = acc[0];
    for (int k = 1; k < PEAK_CHAINS; k++) s = _mm512_add_ps(s, acc[k]);
    return _mm512_reduce_add_ps(s);
}

/* GFLOP/s of one loop on `threads` threads, best of 5. */
static inline double peak_run(int bf16, int threads)
{
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = qp_now();
#pragma omp parallel num_threads(threads)
        {
            float v = bf16 ? peak_dot_loop(PEAK_ITERS) : peak_fma_loop(PEAK_ITERS);
#pragma omp critical
            sink += v;
        }
        double dt = qp_now() - t0;
        double flop = (double)threads * (PEAK_ITERS) * PEAK_CHAINS * (bf16 ? 64.0 : 32.0);
        if (flop / dt / 1e9 > best) best = flop / dt / 1e9;
    }
    (void)sink;
    return best;
}

/* Best GFLOP/s of train_gemm (precision bf16 or fp32, the current kernel) on trainer-like
 * shapes (4096 token rows, the weights transposed as in the forward pass). */
static inline double peak_gemm(int bf16)
{
    int shapes[][3] = {{4096, 1536, 384}, {4096, 384, 1536}, {4096, 1024, 1024}, {2048, 2048, 2048}};
    double best = 0;
    train_gemm_set_bf16(bf16);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
        float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)K * N, 4), *c = calloc((size_t)M * N, 4);
        if (!a || !b || !c) {
            free(a), free(b), free(c);
            continue;
        }
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.1f;
        for (int r = 0; r < 6; r++) {
            double t0 = qp_now();
            train_gemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            double g = 2.0 * M * N * K / (qp_now() - t0) / 1e9;
            if (r > 0 && g > best) best = g; /* the first call creates the primitive */
        }
        free(a), free(b), free(c);
    }
    train_gemm_set_bf16(0);
    return best;
}

static inline void bench_measure_peaks(peaks *p, int threads, const char *when)
{
    __builtin_cpu_init();
    p->fma_f32 = __builtin_cpu_supports("avx512f") ? peak_run(0, threads) : NAN;
    p->dot_bf16 = __builtin_cpu_supports("avx512bf16") ? peak_run(1, threads) : NAN;
    p->gemm_f32 = peak_gemm(0);
    p->gemm_bf16 = peak_gemm(1);
    printf("peaks (%s): fp32 FMA %.0f, bf16 dot %.0f, fp32 GEMM %.0f, bf16 GEMM %.0f GFLOP/s\n", when,
           p->fma_f32, p->dot_bf16, p->gemm_f32, p->gemm_bf16);
}

/* Measured again at the end; the best of both is kept (the least disturbed). */
static inline void bench_measure_peaks_again(peaks *p, int threads)
{
    peaks q;
    bench_measure_peaks(&q, threads, "end");
    p->fma_f32 = fmax(p->fma_f32, q.fma_f32);
    p->dot_bf16 = fmax(p->dot_bf16, q.dot_bf16);
    p->gemm_f32 = fmax(p->gemm_f32, q.gemm_f32);
    p->gemm_bf16 = fmax(p->gemm_bf16, q.gemm_bf16);
}

static inline void bench_print_peaks(const peaks *p)
{
    printf("peaks (best): fp32 FMA %.0f GFLOP/s, bf16 dot-product %.0f GFLOP/s; best GEMM fp32 %.0f "
           "(%.0f%% of FMA), bf16 %.0f (%.0f%% of dot)\n",
           p->fma_f32, p->dot_bf16, p->gemm_f32, 100 * p->gemm_f32 / p->fma_f32, p->gemm_bf16,
           100 * p->gemm_bf16 / p->dot_bf16);
}

#endif
