/* gemm.c: the trainer's matrix products on oneDNN (when built with it) or OpenBLAS.
 * fp32: dnnl_sgemm (oneDNN's JIT sgemm, the ISA chosen from the CPU) or cblas_sgemm.
 * bf16: both inputs rounded to bf16 into compact buffers, then oneDNN's matmul primitive
 * (bf16 x bf16 -> f32), one primitive per shape, created once and kept (creating one costs
 * far more than a product of the trainer's sizes). Threads: oneDNN here uses the OpenMP
 * runtime, so it follows omp_set_num_threads like the trainer's own loops. */
#include "gemm.h"

#include "qp.h"

#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QP_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

static int g_bf16, g_stats_on;
static train_gemm_stats g_stats;

void train_gemm_stats_enable(int on) { g_stats_on = on; }
void train_gemm_stats_take(train_gemm_stats *out)
{
    *out = g_stats;
    memset(&g_stats, 0, sizeof g_stats);
}
#ifdef QP_HAVE_DNNL
static train_gemm_kernel g_kernel = TRAIN_GEMM_ONEDNN;
#else
static train_gemm_kernel g_kernel = TRAIN_GEMM_OPENBLAS;
#endif

void train_gemm_set_bf16(int bf16) { g_bf16 = bf16 != 0; }
int train_gemm_bf16_on(void) { return g_bf16; }
train_gemm_kernel train_gemm_kernel_now(void) { return g_kernel; }

qp_status train_gemm_set_kernel(train_gemm_kernel k, qp_error *err)
{
#ifndef QP_HAVE_DNNL
    if (k == TRAIN_GEMM_ONEDNN)
        return qp_fail(err, QP_ERR_UNSUPPORTED, "this build has no oneDNN (install libdnnl-dev and rebuild)");
#endif
    g_kernel = k;
    return QP_OK;
}

float train_bf16_round(float x)
{
    union { float f; uint32_t u; } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return x; /* NaN */
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    v.u &= 0xffff0000u;
    return v.f;
}

static inline unsigned short bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    /* a NaN keeps its sign and a quiet payload rather than rounding into infinity */
    return (unsigned short)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

/* The conversions on AVX-512 where the CPU has it (checked at run time; compiled with target
 * attributes, so the build needs no -march): the same integer rounding as bf16_bits, 16 at a
 * time, hence the same bits (denormals kept, NaN quieted) as the scalar code and the GPU.
 * GCC leaves the scalar loop scalar. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QP_X86_VEC 1
#include <immintrin.h>

static _Atomic int g_avx512 = -1;

static int avx512_hw(void)
{
    int v = g_avx512;
    if (v < 0) {
        __builtin_cpu_init();
        g_avx512 = v = __builtin_cpu_supports("avx512f");
    }
    return v;
}

/* 16 floats -> their bf16 bits in the low halves of 32-bit lanes */
__attribute__((target("avx512f"))) static inline __m512i bf16x16(const float *x)
{
    __m512i u = _mm512_loadu_si512(x), one = _mm512_set1_epi32(1);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

__attribute__((target("avx512f"))) static void to_bf16_avx512(unsigned short *out, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(bf16x16(x + i)));
    for (; i < n; i++) out[i] = bf16_bits(x[i]);
}

__attribute__((target("avx512f"))) static void pairs_avx512(uint32_t *out, const float *x0, const float *x1, int n)
{
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512i w = bf16x16(x0 + j);
        if (x1) w = _mm512_or_si512(w, _mm512_slli_epi32(bf16x16(x1 + j), 16));
        _mm512_storeu_si512(out + j, w);
    }
    for (; j < n; j++) out[j] = bf16_bits(x0[j]) | (x1 ? (uint32_t)bf16_bits(x1[j]) << 16 : 0u);
}
#endif

/* one thread's conversion */
static void to_bf16_run(unsigned short *out, const float *x, size_t n)
{
#ifdef QP_X86_VEC
    if (avx512_hw()) {
        to_bf16_avx512(out, x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) out[i] = bf16_bits(x[i]);
}

void train_to_bf16(unsigned short *out, const float *x, size_t n)
{
    if (n <= 65536 || omp_in_parallel()) {
        to_bf16_run(out, x, n);
        return;
    }
#pragma omp parallel
    {
        size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        size_t per = ((n + nt - 1) / nt + 15) / 16 * 16, lo = id * per, hi = lo + per < n ? lo + per : n;
        if (lo < n) to_bf16_run(out + lo, x + lo, hi - lo);
    }
}

/* ---- names ---------------------------------------------------------------- */

static char g_name[96];

static const char *openblas_name(char *buf, size_t n)
{
    const char *cfg = openblas_get_config(), *core = openblas_get_corename();
    char ver[24] = "";
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9)) sscanf(cfg + 9, "%23s", ver);
    snprintf(buf, n, "openblas%s%s %s", ver[0] ? "-" : "", ver, core ? core : "unknown");
    for (char *p = buf; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return buf;
}

#ifdef QP_HAVE_DNNL
static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}
#endif

const char *train_gemm_backend_name(void)
{
#ifdef QP_HAVE_DNNL
    if (g_kernel == TRAIN_GEMM_ONEDNN) {
        const dnnl_version_t *v = dnnl_version();
        snprintf(g_name, sizeof g_name, "onednn-%d.%d.%d %s", v->major, v->minor, v->patch,
                 isa_name(dnnl_get_effective_cpu_isa()));
        return g_name;
    }
#endif
    return openblas_name(g_name, sizeof g_name);
}

/* ---- fp32 ----------------------------------------------------------------- */

#ifdef QP_HAVE_DNNL
/* oneDNN 2.6's threaded sgemm runs 20-25% below its single-threaded rate when op(B) is
 * transposed and K > N (measured on 2 threads, Zen 4: 155-173 against 195-205 GFLOP/s for
 * N 256-512, K 512-2048; e.g. w2's forward at (8, 384), N 384, K 1024), while split by rows of
 * C each thread runs at the single-threaded rate. There the rows go to the OpenMP team in
 * blocks of 16, one single-threaded dnnl_sgemm each (it runs single-threaded inside a
 * parallel region). Each element of C is still one sum over k by the same kernel. 0: done;
 * -1: not split here (or a block failed: dnnl_sgemm rejects its arguments before writing C,
 * and every block has the same ones but M, so then none wrote C). */
enum { SPLIT_MIN_ROWS = 64 };

int train_gemm_f32_row_split(int transB, int M, int N, int K, int nt)
{
    return transB && K > N && nt > 1 && M >= SPLIT_MIN_ROWS * nt;
}

static int dnnl_rows_split(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc)
{
    int nt = omp_get_max_threads(), bad = 0;
    if (omp_in_parallel() || !train_gemm_f32_row_split(transB, M, N, K, nt)) return -1;
    int per = (M / nt + 15) / 16 * 16;
#pragma omp parallel num_threads(nt) reduction(| : bad)
    {
        int m0 = per * omp_get_thread_num(), m = M - m0 < per ? M - m0 : per;
        if (m > 0)
            bad = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, N, K, alpha,
                             transA ? A + m0 : A + (size_t)m0 * lda, lda, B, ldb, beta, C + (size_t)m0 * ldc,
                             ldc) != dnnl_success;
    }
    return bad ? -1 : 0;
}
#else
int train_gemm_f32_row_split(int transB, int M, int N, int K, int nt) { return 0; }
#endif

void train_gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
#ifdef QP_HAVE_DNNL
    if (g_kernel == TRAIN_GEMM_ONEDNN &&
        !dnnl_rows_split(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    /* dnnl_sgemm runs single-threaded when called inside a parallel region */
    if (g_kernel == TRAIN_GEMM_ONEDNN &&
        dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C,
                   ldc) == dnnl_success)
        return;
#endif
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- bf16 ----------------------------------------------------------------- */

/* Without the oneDNN bf16 kernel: the fp32 kernel on bf16-rounded inputs (the same products
 * up to summation order). Uses float copies, so it needs its own buffers. */
static void bf16_by_rounding(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                             const float *B, int ldb, float beta, float *C, int ldc)
{
    int ar = tA ? K : M, ac = tA ? M : K, br = tB ? N : K, bc = tB ? K : N;
    float *a = malloc((size_t)ar * ac * sizeof *a), *b = malloc((size_t)br * bc * sizeof *b);
    if (a && b) {
        for (int r = 0; r < ar; r++)
            for (int c = 0; c < ac; c++) a[(size_t)r * ac + c] = train_bf16_round(A[(size_t)r * lda + c]);
        for (int r = 0; r < br; r++)
            for (int c = 0; c < bc; c++) b[(size_t)r * bc + c] = train_bf16_round(B[(size_t)r * ldb + c]);
        train_gemm_f32(tA, tB, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
    } else {
        /* out of memory for the copies: fp32 products rather than none */
        train_gemm_f32(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
    free(a);
    free(b);
}

static unsigned short *g_abuf, *g_bbuf;
static size_t g_acap, g_bcap;

/* the array g_abuf holds a copy of, while reuse is on (rows x cols, row stride ld) */
static struct {
    int on, valid;
    const float *p;
    int rows, cols, ld;
} g_reuse;

void train_gemm_reuse(int on)
{
    g_reuse.on = on != 0;
    g_reuse.valid = 0;
}

/* The kept bf16 copies of a step (train_gemm_keep): one entry per array, its buffer kept
 * across steps (the same arrays recur) and marked stale when a scope opens. */
typedef struct {
    const float *p;
    int rows, cols, ld, valid;
    unsigned short *buf;
    size_t cap;
} keep_entry;

static struct {
    int on, mark;
    keep_entry *e;
    int n, cap;
} g_keep;

void train_gemm_keep(int on)
{
    g_keep.on = on != 0;
    for (int i = 0; i < g_keep.n; i++) g_keep.e[i].valid = 0;
}

void train_gemm_keep_mark(int on) { g_keep.mark = on != 0; }

static void keep_release(void)
{
    for (int i = 0; i < g_keep.n; i++) free(g_keep.e[i].buf);
    free(g_keep.e);
    memset(&g_keep, 0, sizeof g_keep);
}

#ifdef QP_HAVE_DNNL
/* Compact bf16 copy of the stored matrix (rows x cols of a row-major array with stride ld). */
static void pack_bf16(unsigned short *out, const float *x, int rows, int cols, int ld)
{
    if (ld == cols) {
        train_to_bf16(out, x, (size_t)rows * cols);
        return;
    }
    for (int r = 0; r < rows; r++) train_to_bf16(out + (size_t)r * cols, x + (size_t)r * ld, (size_t)cols);
}

static int grow(unsigned short **buf, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    unsigned short *p = realloc(*buf, n * sizeof *p);
    if (!p) return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* The kept copy of the stored matrix (p, rows x cols, stride ld) in this scope: converted by an
 * earlier product (*fresh 0), or converted now into its entry because the products are marked
 * (*fresh 1); NULL: not kept (outside a scope, not marked, or out of memory). */
static unsigned short *keep_find(const float *p, int rows, int cols, int ld, int *fresh)
{
    *fresh = 0;
    if (!g_keep.on) return NULL;
    keep_entry *e = NULL;
    for (int i = 0; i < g_keep.n && !e; i++)
        if (g_keep.e[i].p == p) e = &g_keep.e[i];
    if (e && e->valid && e->rows == rows && e->cols == cols && e->ld == ld) return e->buf;
    if (!g_keep.mark) return NULL;
    if (!e) {
        if (g_keep.n == g_keep.cap) {
            int nc = g_keep.cap ? 2 * g_keep.cap : 32;
            keep_entry *ne = realloc(g_keep.e, (size_t)nc * sizeof *ne);
            if (!ne) return NULL;
            g_keep.e = ne;
            g_keep.cap = nc;
        }
        e = &g_keep.e[g_keep.n++];
        memset(e, 0, sizeof *e);
        e->p = p;
    }
    e->valid = 0;
    if (grow(&e->buf, &e->cap, (size_t)rows * cols)) return NULL;
    pack_bf16(e->buf, p, rows, cols, ld);
    e->rows = rows, e->cols = cols, e->ld = ld, e->valid = 1;
    *fresh = 1;
    return e->buf;
}

#define CACHE_N 64

typedef struct {
    int tA, tB, M, N, K, ldc;
    float alpha, beta;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} mm_entry;

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static mm_entry g_cache[CACHE_N];
static int g_ncache, g_bf16_broken;

static int dnnl_ready(void)
{
    if (g_bf16_broken) return 0;
    if (!g_engine && (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success ||
                      dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success)) {
        g_bf16_broken = 1;
        return 0;
    }
    return 1;
}

/* The primitive for one shape: A and B compact bf16 (transposes expressed as strides), C the
 * caller's f32 array with its row stride; alpha as the output scale, beta as a sum post-op. */
static int mm_create(mm_entry *e)
{
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_dims_t ad = {e->M, e->K}, bd = {e->K, e->N}, cd = {e->M, e->N};
    dnnl_dims_t as = {e->tA ? 1 : e->K, e->tA ? e->M : 1}, bs = {e->tB ? 1 : e->N, e->tB ? e->K : 1};
    dnnl_dims_t cs = {e->ldc, 1};
    if (dnnl_memory_desc_init_by_strides(&amd, 2, ad, dnnl_bf16, as) ||
        dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dnnl_bf16, bs) ||
        dnnl_memory_desc_init_by_strides(&cmd, 2, cd, dnnl_f32, cs))
        return -1;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd)) return -1;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int bad = dnnl_primitive_attr_create(&attr) != dnnl_success;
    if (!bad && e->alpha != 1.0f) bad = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha) != dnnl_success;
    if (!bad && e->beta != 0.0f) {
        bad = dnnl_post_ops_create(&po) || dnnl_post_ops_append_sum(po, e->beta) ||
              dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (!bad) bad = dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) != dnnl_success;
    if (!bad) bad = dnnl_primitive_create(&e->prim, pd) != dnnl_success;
    if (!bad)
        bad = dnnl_memory_create(&e->a, &amd, g_engine, DNNL_MEMORY_NONE) ||
              dnnl_memory_create(&e->b, &bmd, g_engine, DNNL_MEMORY_NONE) ||
              dnnl_memory_create(&e->c, &cmd, g_engine, DNNL_MEMORY_NONE);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return bad ? -1 : 0;
}

static void mm_entry_free(mm_entry *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
    memset(e, 0, sizeof *e);
}

static mm_entry *mm_get(int tA, int tB, int M, int N, int K, float alpha, float beta, int ldc)
{
    for (int i = 0; i < g_ncache; i++) {
        mm_entry *e = &g_cache[i];
        if (e->tA == tA && e->tB == tB && e->M == M && e->N == N && e->K == K && e->ldc == ldc &&
            e->alpha == alpha && e->beta == beta)
            return e;
    }
    /* full: the trainer uses a handful of shapes, so a full cache means a new model; start over */
    if (g_ncache == CACHE_N) {
        for (int i = 0; i < g_ncache; i++) mm_entry_free(&g_cache[i]);
        g_ncache = 0;
    }
    mm_entry *e = &g_cache[g_ncache];
    *e = (mm_entry){tA, tB, M, N, K, ldc, alpha, beta, NULL, NULL, NULL, NULL};
    if (mm_create(e)) {
        mm_entry_free(e);
        return NULL;
    }
    g_ncache++;
    return e;
}

static int bf16_onednn(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!dnnl_ready()) return -1;
    size_t na = (size_t)M * K, nb = (size_t)K * N;
    if (grow(&g_abuf, &g_acap, na) || grow(&g_bbuf, &g_bcap, nb)) {
        g_reuse.valid = 0; /* g_abuf may have moved */
        return -1;
    }
    mm_entry *e = mm_get(tA, tB, M, N, K, alpha, beta, ldc);
    if (!e) return -1;
    double t0 = g_stats_on ? qp_now() : 0;
    int ar = tA ? K : M, ac = tA ? M : K, br = tB ? N : K, bc = tB ? K : N, fresh;
    unsigned short *a16 = keep_find(A, ar, ac, lda, &fresh), *b16;
    if (g_stats_on && fresh) g_stats.converted += (double)ar * ac;
    if (!a16) {
        a16 = g_abuf;
        if (!(g_reuse.on && g_reuse.valid && g_reuse.p == A && g_reuse.rows == ar && g_reuse.cols == ac &&
              g_reuse.ld == lda)) {
            pack_bf16(g_abuf, A, ar, ac, lda);
            if (g_stats_on) g_stats.converted += (double)ar * ac;
            g_reuse.valid = g_reuse.on;
            g_reuse.p = A, g_reuse.rows = ar, g_reuse.cols = ac, g_reuse.ld = lda;
        }
    }
    b16 = keep_find(B, br, bc, ldb, &fresh);
    if (!b16 || fresh) {
        if (!b16) pack_bf16(b16 = g_bbuf, B, br, bc, ldb);
        if (g_stats_on) g_stats.converted += (double)K * N;
    }
    if (g_stats_on) g_stats.conv_s += qp_now() - t0;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    if (dnnl_memory_set_data_handle(e->a, a16) || dnnl_memory_set_data_handle(e->b, b16) ||
        dnnl_memory_set_data_handle(e->c, C) || dnnl_primitive_execute(e->prim, g_stream, 3, args) ||
        dnnl_stream_wait(g_stream))
        return -1;
    return 0;
}
#endif

/* ---- bf16 on one thread (inside parallel regions: attention's per-head products) ----
 * Where the CPU has AVX512_BF16 (checked at run time; the kernel is compiled for it with a
 * target attribute, so the build needs no -march): both inputs are packed as bf16 pairs along
 * K (the layout vdpbf16ps reads; K2 = K rounded up to even), op(B) as [K2/2][N2] (N2 = N
 * rounded up to 32), and a 4 x 32 register block accumulates in fp32.
 * Elsewhere: bf16_by_rounding, the same products on the fp32 kernel. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QP_BF16_KERNEL 1
#include <immintrin.h>

#define BK_MR 4
#define BK_NR 32

static _Atomic int g_bf16_hw = -1;

static int bf16_hw(void)
{
    int v = g_bf16_hw;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
        g_bf16_hw = v;
    }
    return v;
}

/* The packs hold bf16 pairs (k, k+1) as 32-bit words, the low half k: the word for row i and
 * pair kp of op(A) at a[i * ai + kp * ak], for pair kp and column j of op(B) at b[kp * N2 + j].
 * Pads (rows past M, columns past N, the second half of an odd K's last pair) are zero. */
static void pair_rows(uint32_t *out, const float *x0, const float *x1, int n)
{
#ifdef QP_X86_VEC
    if (avx512_hw()) {
        pairs_avx512(out, x0, x1, n);
        return;
    }
#endif
    if (x1) {
        for (int j = 0; j < n; j++) out[j] = bf16_bits(x0[j]) | (uint32_t)bf16_bits(x1[j]) << 16;
    } else {
        for (int j = 0; j < n; j++) out[j] = bf16_bits(x0[j]);
    }
}

/* op(B)'s words for k pairs of rows of the stored matrix (not transposed), or of op(A) when it
 * is a transposed A: pair kp of stored rows 2kp, 2kp+1, n columns, row stride ld, out stride os */
static void pack_pairs_of_rows(uint32_t *out, const float *X, int ld, int K, int n, int os)
{
    for (int kp = 0; kp < (K + 1) / 2; kp++) {
        const float *x0 = X + (size_t)2 * kp * ld, *x1 = 2 * kp + 1 < K ? x0 + ld : NULL;
        uint32_t *o = out + (size_t)kp * os;
        pair_rows(o, x0, x1, n);
        memset(o + n, 0, (size_t)(os - n) * sizeof *o);
    }
}

/* each stored row's k values as words, contiguous (the row's bf16 with an odd K zero padded) */
static void pack_row_words(uint32_t *out, const float *x, int K)
{
    unsigned short *o = (unsigned short *)out;
    to_bf16_run(o, x, (size_t)K);
    if (K & 1) o[K] = 0;
}

/* A: !tA rows of K2/2 words (ai = K2/2, ak = 1); tA pairs of rows (ai = 1, ak = M2) */
static void pack_a(uint32_t *out, int tA, const float *A, int lda, int M, int K, int M2, int K2)
{
    if (!tA) {
        for (int i = 0; i < M; i++) pack_row_words(out + (size_t)i * (K2 / 2), A + (size_t)i * lda, K);
        memset(out + (size_t)M * (K2 / 2), 0, (size_t)(M2 - M) * (K2 / 2) * sizeof *out);
    } else {
        pack_pairs_of_rows(out, A, lda, K, M, M2);
    }
}

/* B [K2/2][N2] words; tB goes through one row's words (tmp, K2/2) and scatters them */
static void pack_b(uint32_t *out, uint32_t *tmp, int tB, const float *B, int ldb, int K, int N, int K2, int N2)
{
    if (!tB) {
        pack_pairs_of_rows(out, B, ldb, K, N, N2);
        return;
    }
    for (int j = 0; j < N; j++) {
        pack_row_words(tmp, B + (size_t)j * ldb, K);
        for (int kp = 0; kp < K2 / 2; kp++) out[(size_t)kp * N2 + j] = tmp[kp];
    }
    for (int kp = 0; kp < K2 / 2; kp++) memset(out + (size_t)kp * N2 + N, 0, (size_t)(N2 - N) * sizeof *out);
}

__attribute__((target("avx512f,avx512bf16"))) static inline void bk_store(float *c, __m512 acc, __mmask16 m,
                                                                         float alpha, float beta)
{
    __m512 r = _mm512_mul_ps(acc, _mm512_set1_ps(alpha));
    /* beta 0: C is not read (it may hold anything, NaN included) */
    if (beta != 0.0f) r = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, c), r);
    _mm512_mask_storeu_ps(c, m, r);
}

static inline __mmask16 bk_mask(int valid)
{
    return valid >= 16 ? (__mmask16)0xffff : valid > 0 ? (__mmask16)((1u << valid) - 1) : 0;
}

__attribute__((target("avx512f,avx512bf16"))) static void bk_run(int M, int N, int K2, int N2, float alpha,
                                                                float beta, const uint32_t *ap, int ai, int ak,
                                                                const uint32_t *bp, float *C, int ldc)
{
    for (int j0 = 0; j0 < N2; j0 += BK_NR) {
        __mmask16 m0 = bk_mask(N - j0), m1 = bk_mask(N - j0 - 16);
        for (int i0 = 0; i0 < M; i0 += BK_MR) {
            __m512 c[BK_MR][2];
            for (int r = 0; r < BK_MR; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
            const uint32_t *a = ap + (size_t)i0 * ai, *b = bp + j0;
            for (int kp = 0; kp < K2 / 2; kp++, a += ak, b += N2) {
                __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
                for (int r = 0; r < BK_MR; r++) {
                    int32_t pair; /* memcpy: the packs are written as 16-bit halves too */
                    memcpy(&pair, a + (size_t)r * ai, 4);
                    __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
                    c[r][0] = _mm512_dpbf16_ps(c[r][0], av, b0);
                    c[r][1] = _mm512_dpbf16_ps(c[r][1], av, b1);
                }
            }
            for (int r = 0; r < BK_MR && i0 + r < M; r++) {
                float *cr = C + (size_t)(i0 + r) * ldc + j0;
                bk_store(cr, c[r][0], m0, alpha, beta);
                if (m1) bk_store(cr + 16, c[r][1], m1, alpha, beta);
            }
        }
    }
}

/* 0 done, -1 not here (no AVX512_BF16, or out of memory for the packs) */
static int bf16_kernel(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!bf16_hw() || K <= 0) return -1;
    int M2 = (M + BK_MR - 1) / BK_MR * BK_MR, K2 = (K + 1) & ~1, N2 = (N + BK_NR - 1) / BK_NR * BK_NR;
    /* one block: A's words, B's, a row of B's for the transposed pack */
    size_t na = (size_t)M2 * (K2 / 2), nb = (size_t)(K2 / 2) * N2;
    uint32_t *ap = malloc((na + nb + (size_t)K2 / 2) * sizeof *ap), *bp = ap ? ap + na : NULL;
    int ok = ap != NULL;
    if (ok) {
        pack_a(ap, tA, A, lda, M, K, M2, K2);
        pack_b(bp, bp + nb, tB, B, ldb, K, N, K2, N2);
        bk_run(M, N, K2, N2, alpha, beta, ap, tA ? 1 : K2 / 2, tA ? M2 : 1, bp, C, ldc);
    }
    free(ap);
    return ok ? 0 : -1;
}
#else
static int bf16_kernel(int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    return -1;
}
#endif

void train_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    int serial = !omp_in_parallel();
#ifdef QP_HAVE_DNNL
    if (g_kernel == TRAIN_GEMM_ONEDNN && serial && K > 0 &&
        !bf16_onednn(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
#endif
    if (!serial) {
        train_gemm_bf16_1t(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    bf16_by_rounding(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void train_gemm_bf16_1t(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (!bf16_kernel(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    bf16_by_rounding(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void train_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc)
{
    int serial = !omp_in_parallel(), timed = g_stats_on && serial;
    double t0 = timed ? qp_now() : 0;
    if (g_bf16)
        train_gemm_bf16(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        train_gemm_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (timed) {
        g_stats.gemm_s += qp_now() - t0;
        g_stats.flop += 2.0 * M * N * K;
        g_stats.calls++;
    }
}

void train_gemm_release(void)
{
#ifdef QP_HAVE_DNNL
    for (int i = 0; i < g_ncache; i++) mm_entry_free(&g_cache[i]);
    g_ncache = 0;
    if (g_stream) dnnl_stream_destroy(g_stream);
    if (g_engine) dnnl_engine_destroy(g_engine);
    g_stream = NULL;
    g_engine = NULL;
#endif
    free(g_abuf);
    free(g_bbuf);
    g_abuf = g_bbuf = NULL;
    keep_release();
    g_acap = g_bcap = 0;
}
