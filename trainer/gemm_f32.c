/* gemm_f32.c: fp32 products on the calling thread (attention's per-head products, inside the
 * OpenMP loop over heads). Their shapes are small (64 query rows against up to T keys, head
 * width 64), where a library sgemm spends a good part of each call packing and dispatching: a
 * register-blocked AVX-512 kernel (6 rows x up to 64 columns of C in 24 zmm accumulators, A's
 * elements broadcast, B's rows loaded as they lie; only a transposed B is packed) runs them
 * faster. Chosen at run time from the CPU (compiled with target attributes, so the build needs
 * no -march); elsewhere train_gemm_f32. Each element of C is one sum in k order, so results do
 * not depend on the thread or the blocking (K beyond FK_KC is summed in blocks of FK_KC). */
#include "gemm.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define FK_MR 6    /* rows of C per block */
#define FK_KC 128  /* k per packed panel of a transposed B (32 KiB on the stack) */

static _Atomic int g_f32_hw = -1;

static int f32_hw(void)
{
    int v = g_f32_hw;
    if (v < 0) {
        __builtin_cpu_init();
        g_f32_hw = v = __builtin_cpu_supports("avx512f") != 0;
    }
    return v;
}

static inline __mmask16 fk_mask(int valid)
{
    return valid >= 16 ? (__mmask16)0xffff : valid > 0 ? (__mmask16)((1u << valid) - 1) : 0;
}

/* One block: rows [i0, i0 + rows) (rows <= FK_MR; the missing ones repeat the last row's A and
 * are not stored) by NV x 16 columns (masks m[]) over kc k's. A's element (i, k) at
 * a[i * ai + k * ak]; B's row k at b + k * bs. */
#define FK_BLOCK(NV)                                                                                                 \
    __attribute__((target("avx512f"))) static void fk_block##NV(                                                     \
        int rows, int kc, const float *a, ptrdiff_t ai, ptrdiff_t ak, const float *b, ptrdiff_t bs,                 \
        const __mmask16 *m, float *c, int ldc, float alpha, float beta)                                              \
    {                                                                                                                \
        __m512 acc[FK_MR][NV];                                                                                       \
        const float *ar[FK_MR];                                                                                      \
        _Pragma("GCC unroll 8") for (int r = 0; r < FK_MR; r++) {                                                    \
            ar[r] = a + (r < rows ? r : rows - 1) * ai;                                                              \
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();                                            \
        }                                                                                                            \
        for (int k = 0; k < kc; k++, b += bs) {                                                                      \
            __m512 bv[NV];                                                                                           \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(m[v], b + 16 * v);                          \
            ptrdiff_t o = k * ak;                                                                                    \
            _Pragma("GCC unroll 8") for (int r = 0; r < FK_MR; r++) {                                                \
                __m512 x = _mm512_set1_ps(ar[r][o]);                                                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);                     \
            }                                                                                                        \
        }                                                                                                            \
        __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);                                               \
        /* constant indices (unrolled, rows tested) keep acc in registers */                                         \
        _Pragma("GCC unroll 8") for (int r = 0; r < FK_MR; r++) {                                                    \
            if (r >= rows) break;                                                                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                                   \
                float *cr = c + (size_t)r * ldc + 16 * v;                                                            \
                __m512 x = _mm512_mul_ps(acc[r][v], al);                                                             \
                /* beta 0: C is not read (it may hold anything, NaN included) */                                     \
                if (beta != 0.0f) x = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(m[v], cr), x);                      \
                _mm512_mask_storeu_ps(cr, m[v], x);                                                                  \
            }                                                                                                        \
        }                                                                                                            \
    }

FK_BLOCK(1)
FK_BLOCK(2)
FK_BLOCK(3)
FK_BLOCK(4)

typedef void (*fk_fn)(int, int, const float *, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, const __mmask16 *,
                      float *, int, float, float);
static const fk_fn fk_blocks[5] = {NULL, fk_block1, fk_block2, fk_block3, fk_block4};

/* 16 rows of B (stride ldb) by 16 k's into 16 rows of the pack (stride w): a 16 x 16 transpose
 * in registers (4 rounds of shuffles) instead of 256 scalar moves. */
__attribute__((target("avx512f"))) static void fk_transpose16(float *out, int w, const float *src, int ldb)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * ldb);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int b = 0; b < 16; b += 4) {
        r[b] = _mm512_shuffle_ps(t[b], t[b + 2], 0x44);
        r[b + 1] = _mm512_shuffle_ps(t[b], t[b + 2], 0xee);
        r[b + 2] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0x44);
        r[b + 3] = _mm512_shuffle_ps(t[b + 1], t[b + 3], 0xee);
    }
    for (int b = 0; b < 16; b += 8)
        for (int j = 0; j < 4; j++) {
            t[b + j] = _mm512_shuffle_f32x4(r[b + j], r[b + 4 + j], 0x88);
            t[b + 4 + j] = _mm512_shuffle_f32x4(r[b + j], r[b + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        _mm512_storeu_ps(out + (size_t)j * w, _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88));
        _mm512_storeu_ps(out + (size_t)(8 + j) * w, _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd));
    }
}

/* op(B) = B^T's panel: columns [j0, j0 + cols) of op(B) are rows of B; k's [k0, k0 + kc) */
static void fk_pack_t(float *pack, int w, const float *B, int ldb, int j0, int cols, int k0, int kc)
{
    int c16 = cols & ~15, k16 = kc & ~15;
    for (int j = 0; j < c16; j += 16)
        for (int k = 0; k < k16; k += 16) fk_transpose16(pack + (size_t)k * w + j, w, B + (size_t)(j0 + j) * ldb + k0 + k, ldb);
    for (int j = 0; j < cols; j++) {
        const float *src = B + (size_t)(j0 + j) * ldb + k0;
        for (int k = j < c16 ? k16 : 0; k < kc; k++) pack[k * w + j] = src[k];
    }
}

/* op(B) = B's panel: kc rows of 16 nv columns (masks m; the rest zero), row stride ldb */
__attribute__((target("avx512f"))) static void fk_pack_n(float *pack, int nv, const __mmask16 *m, const float *b,
                                                         ptrdiff_t ldb, int kc)
{
    for (int k = 0; k < kc; k++, b += ldb, pack += 16 * nv)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(pack + 16 * v, _mm512_maskz_loadu_ps(m[v], b + 16 * v));
}

/* One panel of C (columns [j0, j0 + 16 nv), masks m) over k in [k0, k0 + kc) (B's rows at b,
 * stride bs), every block of FK_MR rows; with diag >= 0 each block only as far as the causal
 * structure needs (train_gemm_f32_1t_causal). Returns the FLOPs issued. */
typedef struct {
    int tA, tB, M, N, diag, ldc;
    const float *A;
    ptrdiff_t ai, ak;
    float alpha;
} fk_call;

static uint64_t fk_panel(const fk_call *f, int j0, int nv, const __mmask16 *m, int k0, int kc, const float *b,
                         ptrdiff_t bs, float *C, float beta)
{
    uint64_t flops = 0;
    for (int i0 = 0; i0 < f->M; i0 += FK_MR) {
        int rows = f->M - i0 < FK_MR ? f->M - i0 : FK_MR, nvb = nv, ks = 0, ke = kc;
        if (f->diag >= 0 && !f->tA && f->tB) { /* C[i][j] only for j <= i + diag */
            int need = i0 + rows + f->diag - j0;
            nvb = need <= 0 ? 0 : (need + 15) / 16 < nv ? (need + 15) / 16 : nv;
            if (!nvb) continue; /* unspecified there: nothing written */
        } else if (f->diag >= 0 && !f->tA) { /* A[i][k] == 0 for k > i + diag */
            int last = i0 + rows + f->diag - k0;
            ke = last < 0 ? 0 : last < kc ? last : kc;
        } else if (f->diag >= 0 && !f->tB) { /* op(A)[i][k] = A[k][i] == 0 for k < i - diag */
            int first = i0 - f->diag - k0;
            ks = first < 0 ? 0 : first < kc ? first : kc;
        }
        if (ke <= ks && beta == 1.0f) continue; /* no terms, C as it is */
        int kn = ke > ks ? ke - ks : 0, cols = f->N - j0 < 16 * nvb ? f->N - j0 : 16 * nvb;
        fk_blocks[nvb](rows, kn, f->A + (k0 + ks) * f->ak + i0 * f->ai, f->ai, f->ak, b + ks * bs, bs, m,
                       C + (size_t)i0 * f->ldc, f->ldc, f->alpha, beta);
        flops += 2 * (uint64_t)rows * (uint64_t)cols * (uint64_t)kn;
    }
    return flops;
}

static uint64_t f32_kernel(const fk_call *f, int K, const float *B, int ldb, float beta, float *C)
{
    int N = f->N, nvmax = N >= 64 ? 4 : (N + 15) / 16;
    float pack[FK_KC * 64];
    uint64_t flops = 0;
    for (int j0 = 0; j0 < N; j0 += 16 * nvmax) {
        int nv = (N - j0 + 15) / 16 < nvmax ? (N - j0 + 15) / 16 : nvmax, w = 16 * nv;
        __mmask16 m[4];
        for (int v = 0; v < nv; v++) m[v] = fk_mask(N - j0 - 16 * v);
        /* the panel's k rows packed contiguous, FK_KC at a time: read as they lie, B's row
         * stride (often a multiple of 4 KiB's fraction: qkv rows) maps them onto few cache sets */
        for (int k0 = 0; k0 < K; k0 += FK_KC) {
            int kc = K - k0 < FK_KC ? K - k0 : FK_KC, cols = N - j0 < w ? N - j0 : w;
            if (!f->tB) {
                fk_pack_n(pack, nv, m, B + (size_t)k0 * ldb + j0, ldb, kc);
            } else {
                fk_pack_t(pack, w, B, ldb, j0, cols, k0, kc);
            }
            flops += fk_panel(f, j0, nv, m, k0, kc, pack, w, C + j0, k0 ? 1.0f : beta);
        }
    }
    return flops;
}

uint64_t train_gemm_f32_1t_causal(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                                  int lda, const float *B, int ldb, float beta, float *C, int ldc, int diag)
{
    if (M <= 0 || N <= 0) return 0;
    if (K > 0 && f32_hw()) {
        int tA = transA != 0;
        fk_call f = {tA, transB != 0, M, N, transA && transB ? -1 : diag, ldc, A, tA ? 1 : lda, tA ? lda : 1, alpha};
        return f32_kernel(&f, K, B, ldb, beta, C);
    }
    train_gemm_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 2 * (uint64_t)M * (uint64_t)N * (uint64_t)(K > 0 ? K : 0);
}

/* 16 columns of src at a time: the wanted ones (mask bits) compressed to the front of a
 * register and stored as the next popcount outputs (the register form: the compressing
 * store is microcoded, slow on Zen 4). */
__attribute__((target("avx512f"))) static void gather_avx512(float *dst, const float *src, int width,
                                                             const uint16_t *mask)
{
    for (int c = 0, o = 0; c < width; c += 16) {
        __mmask16 m = mask[c / 16] & fk_mask(width - c);
        if (!m) continue;
        __m512 v = _mm512_maskz_compress_ps(m, _mm512_maskz_loadu_ps(m, src + c));
        int cnt = __builtin_popcount(m);
        _mm512_mask_storeu_ps(dst + o, fk_mask(cnt), v);
        o += cnt;
    }
}
#else
uint64_t train_gemm_f32_1t_causal(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                                  int lda, const float *B, int ldb, float beta, float *C, int ldc, int diag)
{
    if (M <= 0 || N <= 0) return 0;
    train_gemm_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 2 * (uint64_t)M * (uint64_t)N * (uint64_t)(K > 0 ? K : 0);
}
#endif

void train_gemm_f32_1t(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    train_gemm_f32_1t_causal(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, -1);
}

void train_cols_mask(uint16_t *mask, int width, const int32_t *cols, int ncols)
{
    memset(mask, 0, (size_t)(width + 15) / 16 * sizeof *mask);
    for (int j = 0; j < ncols; j++) mask[cols[j] / 16] |= (uint16_t)(1u << (cols[j] % 16));
}

void train_gather_cols(float *dst, const float *src, int width, const int32_t *cols, int ncols, const uint16_t *mask)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* a compress per 16 columns against a load per wanted column: even at about a third */
    if (mask && 3 * ncols >= width && f32_hw()) {
        gather_avx512(dst, src, width, mask);
        return;
    }
#endif
    (void)width;
    for (int j = 0; j < ncols; j++) dst[j] = src[cols[j]];
}
