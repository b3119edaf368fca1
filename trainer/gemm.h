/* gemm.h: the trainer's matrix products (docs/trainer.md, "Matrix products"). Row-major,
 * with cblas_sgemm's argument order: C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C.
 * The kernel is oneDNN's when the build found it (it picks the ISA from the CPU, whatever
 * OPENBLAS_CORETYPE pins), else OpenBLAS's. bf16 products round both inputs to bf16
 * (round-to-nearest-even) and accumulate in fp32. Part of the trainer (prefix train_). */
#ifndef TRAIN_GEMM_H
#define TRAIN_GEMM_H

#include <stdint.h>
#include <stddef.h>

#include "qp.h"

typedef enum { TRAIN_GEMM_OPENBLAS = 0, TRAIN_GEMM_ONEDNN } train_gemm_kernel;

/* The precision of train_gemm's products for this process: 0 fp32, 1 bf16. Set by the
 * trainer from --precision before a run (one run per process at a time). */
void train_gemm_set_bf16(int bf16);
int train_gemm_bf16_on(void);

/* The fp32 kernel: TRAIN_GEMM_ONEDNN (the default where built) or TRAIN_GEMM_OPENBLAS;
 * QP_ERR_UNSUPPORTED when the build lacks that library. */
qp_status train_gemm_set_kernel(train_gemm_kernel k, qp_error *err);
train_gemm_kernel train_gemm_kernel_now(void);

/* "onednn-2.6.3 avx512_core_bf16" or "openblas-0.3.21 haswell": the library, its version
 * and the ISA (oneDNN) or core type (OpenBLAS) the products run on now. */
const char *train_gemm_backend_name(void);

/* The process's precision: train_gemm_bf16 where bf16 is on (inside an OpenMP parallel
 * region that is train_gemm_bf16_1t, one thread each), else train_gemm_f32. Wall time and
 * FLOPs go to the stats for calls outside parallel regions. */
void train_gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* Always fp32, on the current kernel; safe inside parallel regions (one thread each). */
void train_gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* 1 where train_gemm_f32 on oneDNN, called outside a parallel region with nt threads, splits
 * the rows of C over the threads itself (one single-threaded product each) instead of
 * threading one product: op(B) transposed and K > N, where oneDNN's own threading is slow
 * (gemm.c); 0 otherwise, and always 0 in a build without oneDNN. */
int train_gemm_f32_row_split(int transB, int M, int N, int K, int nt);
/* fp32 on the calling thread whether or not inside a parallel region (attention's per-head
 * products): a register-blocked AVX-512 kernel where the CPU has it (checked at run time;
 * gemm_f32.c), else train_gemm_f32. Each element of C one sum in k order (in blocks of 128 k
 * when B is transposed and K is longer), the same bits on any thread. */
void train_gemm_f32_1t(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
/* train_gemm_f32_1t for attention's causal products (diag >= 0; -1: none), where the score
 * matrix S (rows i, keys j) is zero for j > i + diag: (0,1) C is S and only its entries with
 * j <= i + diag are wanted (others, in blocks, may be left unwritten); (0,0) A is S; (1,0) A is
 * S, so op(A)[i][k] == 0 for k < i - diag. The AVX-512 kernel skips the blocks of zero terms
 * (their sums unchanged, as adding +-0 to a sum leaves it; inf or NaN in the other operand are
 * not carried into those entries); the fallback multiplies whole. Returns the FLOPs issued
 * (2 x rows x columns x k of each block computed). */
uint64_t train_gemm_f32_1t_causal(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                                  int lda, const float *B, int ldb, float beta, float *C, int ldc, int diag);
/* EfQAT's row subsets (a gather, not a product, but the same kernel family): dst[j] =
 * src[cols[j]] for j < ncols (cols ascending, distinct, below width), on the calling thread.
 * With AVX-512 (checked at run time) and at least a third of the columns wanted, one compress
 * per 16 columns of src from mask (train_cols_mask of the same cols and width) instead of a
 * load per wanted column; mask NULL: always the scalar loop. */
void train_gather_cols(float *dst, const float *src, int width, const int32_t *cols, int ncols, const uint16_t *mask);
/* The bits of cols in (width + 15) / 16 words, bit c % 16 of word c / 16. */
void train_cols_mask(uint16_t *mask, int width, const int32_t *cols, int ncols);
/* Always bf16 inputs, fp32 accumulation: oneDNN's bf16 matmul when it is the kernel (it
 * emulates bf16 where the CPU lacks it), else the fp32 kernel on bf16-rounded copies (the same
 * products, no speed-up). Inside a parallel region: train_gemm_bf16_1t, one thread each. */
void train_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* bf16 inputs, fp32 accumulation, on the calling thread whether or not inside a parallel
 * region (attention's per-head products): an AVX512_BF16 kernel where the CPU has it (checked
 * at run time), else the fp32 kernel on bf16-rounded copies. train_gemm_bf16 uses it inside
 * parallel regions. */
void train_gemm_bf16_1t(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Between train_gemm_reuse(1) and train_gemm_reuse(0) the caller promises that no array
 * read by the products is written: a bf16 product whose first input is the same array, read
 * the same way, as the previous one's reuses its bf16 copy (layer_matmul_backward's two
 * products share dout). */
void train_gemm_reuse(int on);

/* Between train_gemm_keep(1) and train_gemm_keep(0) (one training step: forward and backward)
 * the caller promises that no array read by a marked product is written: the bf16 copies of
 * the inputs of products issued between train_gemm_keep_mark(1) and (0) (the linear layers'
 * forward products: activations and weights) are kept, and any later product in the scope
 * that reads the same array the same way (the backward's dX and dW products) uses them
 * instead of converting again. Opening a scope forgets the previous step's copies (their
 * buffers are reused); outside a scope marks do nothing. */
void train_gemm_keep(int on);
void train_gemm_keep_mark(int on);

/* f32 -> bf16 bits, round to nearest even (NaN stays NaN), and back. */
void train_to_bf16(unsigned short *out, const float *x, size_t n);
float train_bf16_round(float x);

/* Where train_gemm's time goes (benchmarks): while enabled, the products called outside
 * parallel regions add their wall time (conversions to bf16 separately) and FLOPs. */
typedef struct {
    double gemm_s, conv_s, flop;
    double converted; /* elements converted to bf16 */
    long calls;
} train_gemm_stats;
void train_gemm_stats_enable(int on);
/* The totals since the last take, then zeroed. */
void train_gemm_stats_take(train_gemm_stats *out);

/* Frees the cached oneDNN primitives and bf16 buffers (tests, leak checks). */
void train_gemm_release(void);

#endif
