/* model.h (internal to the trainer and its tests): the Llama-style model in the llm.c
 * manner: one allocation per tensor family (parameters, gradients, Adam moments,
 * quantized weights, activations) with named pointers into it, and explicit
 * forward/backward pairs per layer on raw arrays. */
#ifndef TRAIN_MODEL_H
#define TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "tensors.h"
#include "train.h"

/* The tensor lists (parameters, activations, quantized weights) are in tensors.h, shared
 * with the CUDA backend. */
typedef union {
    struct {
        MODEL_PARAM_TENSORS(MODEL_X_PFIELD)
    };
    float *t[MODEL_NT];
} model_params;

typedef struct {
    const char *name;
    int layered;         /* 1: L copies of [rows, cols] */
    size_t rows, cols;   /* per layer; cols 1 for vectors */
    int decay;           /* AdamW weight decay applies */
} model_tdesc;

/* The quantized (fake-quant) weights used by the forward pass during QAT. */
typedef struct {
    MODEL_QW_TENSORS(MODEL_X_FIELD)
} model_qweights;

/* Activations, and the backward scratch (tensors.h, MODEL_ACT_TENSORS). */
typedef struct {
    MODEL_ACT_TENSORS(MODEL_X_FIELD)
} model_acts;

typedef struct efqat_state efqat_state;

typedef struct {
    train_shape s;
    train_qspec q;
    int qkv_rows;            /* D + 2*Dkv */
    model_tdesc desc[MODEL_NT];
    size_t off[MODEL_NT], numel[MODEL_NT];
    size_t n_floats;         /* parameters incl. quantizer scales */
    size_t n_qw;             /* floats of the quantized weights */
    float *params_mem, *grads_mem, *m_mem, *v_mem, *qw_mem, *acts_mem;
    model_params p, g;
    model_qweights qw;
    model_acts a;
    int B, T;                /* activation buffers are sized for B x T */
    float *rope_cos, *rope_sin; /* T x hd/2 */
    float *att_scratch;      /* scratch_threads x T x T for the attention backward */
    int scratch_threads;
    int qat;                 /* block linears use quantized weights */
    int qat_embed;           /* embeddings/head use quantized weights */
    efqat_state *efq;        /* EfQAT's frozen rows (efqat.c); NULL: every weight trains */
    /* E2E-QP's layout (model_make_lean, spec 3.4): the block linears' W hold w_hat and are the
     * forward's weights too (qw.wqkv..w2 alias p.wqkv..w2), only their step sizes have Adam
     * moments: m_mem and v_mem hold the floats [fam_lo, fam_hi) of the layout (index them with
     * model_moment). Gradients: the step sizes, the norm gains (computed on the way, not
     * trained) and one layer's block-linear dW (dw_layer: the linears' g.t point there and the
     * backward takes no layer offset); none for the embedding, the zero points or the other
     * layers' weights. Full layout: lean 0, [0, n_floats), every gradient. */
    int lean;
    size_t fam_lo, fam_hi;
    size_t n_grads;          /* floats in grads_mem */
    float *dw_layer;         /* lean: the layer scratch inside grads_mem; NULL otherwise */
    double alloc_bytes;      /* bytes allocated by model_create (and model_make_lean) */
} model;

/* Floats of each family (model_create, or lean: model_make_lean): parameters, gradients, each
 * Adam moment, the quantized weights; the moment range. memory.c's need uses the same. */
typedef struct {
    size_t params, grads, moments, qw, fam_lo, fam_hi;
} model_arena;
void model_arena_of(const model *lay, int lean, model_arena *a);
/* Bytes model_create (lean: model_create_lean) allocates: the families, the activations, the
 * RoPE tables and threads x T x T attention scratch, as each allocation is rounded. */
double model_arena_bytes(const model *lay, int lean, int threads);
/* Whether the run builds its model lean from the start (model_create_lean): E2E-QP from a
 * checkpoint, whose QAT phase is the whole run (memory.c). */
int train_e2e_lean(const train_config *c);
/* Bytes of E2E-QP's fixed codes for the layout (e2eqp.c allocates them). */
double train_e2e_codes_bytes(const model *lay);
/* Adam moment of parameter tensor i in family base (m->m_mem or m->v_mem); NULL when the
 * layout holds none for it (lean: everything but the block linears' step sizes). */
static inline float *model_moment(const model *m, float *base, int i)
{
    if (m->off[i] < m->fam_lo || m->off[i] + m->numel[i] > m->fam_hi) return NULL;
    return base + (m->off[i] - m->fam_lo);
}

qp_status model_create(model *m, const train_shape *s, const train_qspec *q, int B, int T,
                       qp_error *err);
/* The parameter layout of model_create (desc, numel, off, n_floats, n_qw), allocating nothing. */
void model_layout(model *m, const train_shape *s, const train_qspec *q, int B, int T);
/* Floats in each activation buffer of model_create (in model_acts order), in double so
 * that impossible sizes can be refused before anything is converted or allocated. */
void model_act_counts(const train_shape *s, int B, int T, double out[MODEL_NACTS]);
/* model_create in E2E-QP's lean layout from the start (see model). */
qp_status model_create_lean(model *m, const train_shape *s, const train_qspec *q, int B, int T,
                            qp_error *err);
/* Into the lean layout: the step sizes' moments kept, the other gradients, moments and the
 * block linears' quantized copies freed; from then on W must hold w_hat (E2E-QP keeps it so).
 * Nothing changes when already lean; QP_ERR_NOMEM leaves m as it was. */
qp_status model_make_lean(model *m, qp_error *err);
/* Zero both Adam moment families (whatever they hold). */
void model_zero_moments(model *m);
void model_free(model *m);
/* Seeded initialisation: N(0, 0.02), output projections scaled by 1/sqrt(2L), gains 1. */
void model_init(model *m, uint64_t seed);
/* Forward on tokens [B x T] with targets [B x T]; returns the mean loss (nats/token).
 * targets may be NULL (no loss). Uses m->qat / m->qat_embed to choose the weights. */
float model_forward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T);
/* Backward of the last forward; gradients are ACCUMULATED into m->g (zero them first). */
void model_backward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T);
/* One transformer block l on its own (the whole-model passes loop over these; Block-AP calls
 * them on one block): y[N, D] = block_l(x[N, D]), N = B*T <= m->B * m->T. The block's
 * intermediate activations go to layer l's slices of m->a (the next call for layer l
 * overwrites them); x must not overlap y and must be unchanged until the backward. Weights as
 * model_forward (m->qat). */
void model_block_forward(model *m, int l, const float *x, float *y, int B, int T);
/* Backward of the last model_block_forward(m, l, x, ...) with the same x: dx holds d(y) on
 * entry and d(x) on return; the block's parameter gradients accumulate into m->g. need_dx = 0
 * (the input is data) skips the input norm's d(x), leaving dx's content unspecified; every
 * parameter gradient is still computed. Uses the backward scratch of m->a. With EfQAT
 * (m->efq) frozen w2 rows' step sizes get no gradient here (their output Y needs the block's
 * output y, which model_backward has): EfQAT trains through model_backward. */
void model_block_backward(model *m, int l, const float *x, float *dx, int B, int T, int need_dx);
/* FLOPs (2 M N K per matrix product) issued by the layers and the CUDA backend since the
 * process started, causal savings included: "FLOPs actually spent". A process-wide counter:
 * callers take differences around what they measure. */
uint64_t model_gemm_flops(void);
/* Adds to that counter (layers.c; also declared in cuda_backend.h for the CUDA products). */
void model_gemm_flops_add(uint64_t flops);
void model_zero_grad(model *m);
/* Recompute the quantized weights from the latent weights and the step sizes. */
void model_quantize(model *m);
/* Initialise the step sizes (and zero points) from the current weights. */
void model_quant_init(model *m);
/* Straight-through backward: turn gradients w.r.t. the quantized weights (in m->g) into
 * gradients w.r.t. the latent weights and the step sizes. */
void model_quant_backward(model *m);

/* Per-layer tensor views for the four block linears (for export and tests). */
typedef struct {
    int tensor, scale, zero; /* P_* indices */
    size_t rows, cols;
} model_linear;
extern const model_linear model_linears[4];
size_t model_scale_count(const model *m, size_t rows, size_t cols);

/* ---- layer functions (exposed for gradient checks) ------------------------ */

void layer_matmul_forward(float *out, const float *inp, const float *w, int N, int C, int R);
void layer_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, int N, int C, int R);
/* The same with dout's rows ldo (>= R) floats apart. */
void layer_matmul_backward_ld(float *dinp, float *dw, const float *dout, int ldo, const float *inp,
                              const float *w, int N, int C, int R);
/* dw only for rows[0..nrows) (sorted, distinct), the other rows untouched; dinp as above.
 * scratch: (N + C) * nrows floats. nrows == R is exactly layer_matmul_backward. */
void layer_matmul_backward_rows(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, int N, int C, int R, const int *rows, int nrows,
                                float *scratch);
/* dinp[N, C] = dout @ w (overwritten). */
void layer_matmul_dx(float *dinp, const float *dout, const float *w, int N, int C, int R);
/* dw[rows] += dout[:, rows]^T inp for rows[0..nrows) (sorted, distinct): one product per
 * contiguous run straight from dout when the runs are long (layer_rows_gather 0), else one
 * product of the gathered columns, dsub [N, nrows] (gathered here into scratch when NULL),
 * added into dw's rows. scratch: (N + C) * nrows floats (C * nrows after a given dsub). */
void layer_matmul_dw_rows(float *dw, const float *dout, const float *dsub, const float *inp, int N, int C, int R,
                          const int *rows, int nrows, float *scratch);
/* Whether layer_matmul_dw_rows gathers dout's columns for these rows (their contiguous runs
 * are short on average) rather than multiplying each run in place. */
int layer_rows_gather(const int *rows, int nrows);
/* A side job for the element-wise pass that produces a linear's output gradient dY [N, R] row
 * by row (EfQAT's frozen and unfrozen rows, efqat.c): while a row of dY is in cache, add
 * dY[n, j] (y[n, j] - ysub[n, j]) to the calling thread's partial sums acc[tid][j] (float: a
 * thread sums at most a batch's tokens, and single precision halves the pass's work;
 * the caller zeroes them and adds the threads' sums in thread order) and copy the columns
 * rows[] of dY into row n of dsub [N, nrows]. acc or dsub NULL: that part skipped. The pass
 * runs on at most nt threads. */
typedef struct {
    int R;
    const float *y, *ysub; /* Y = y - ysub [N, R] (ysub NULL: Y = y) */
    float *acc;            /* [nt][R] */
    int nt;
    float *dsub;
    const int32_t *rows;
    int nrows;
    float *rowbuf;         /* [nt][R] (layer_rope_side) */
    const uint16_t *mask;  /* rows as train_cols_mask's bits (the gather's; NULL: scalar) */
} layer_side;
void layer_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int D);
/* dx may be NULL (only dg). */
void layer_rmsnorm_backward(float *dx, float *dg, const float *dout, const float *x,
                            const float *g, const float *rstd, int N, int D);
/* With a side job on every finished row of dx (dY; Y from side->y). */
void layer_rmsnorm_backward_side(float *dx, float *dg, const float *dout, const float *x, const float *g,
                                 const float *rstd, int N, int D, const layer_side *side);
void layer_rope_tables(float *cos_t, float *sin_t, int T, int hd);
/* Applies RoPE in place to q and k inside qkv rows [N=B*T, H+2Hkv heads]; inverse = 1 undoes
 * it (the backward of a rotation is the inverse rotation). */
void layer_rope(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int H, int Hkv,
                int hd, int inverse);
/* inverse = 1 with a side job on every row rotated back (dY), Y the rows of side->y rotated
 * back the same way (wqkv's output before RoPE). */
void layer_rope_side(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int H, int Hkv,
                     int hd, int inverse, const layer_side *side);
void layer_attention_forward(float *out, float *att, const float *qkv, int B, int T, int H,
                             int Hkv, int hd);
/* scratch: omp_get_max_threads() x T x T floats, or NULL to allocate per call. */
void layer_attention_backward(float *dqkv, const float *dout, const float *att, const float *qkv,
                              int B, int T, int H, int Hkv, int hd, float *scratch);
void layer_swiglu_forward(float *out, const float *h13, int N, int F);
void layer_swiglu_backward(float *dh13, const float *dout, const float *h13, int N, int F);
/* With a side job on every row of dh13 (dY), Y the rows of h13. */
void layer_swiglu_backward_side(float *dh13, const float *dout, const float *h13, int N, int F,
                                const layer_side *side);
/* The same with dh13's rows ldd (>= 2F) floats apart (the columns past 2F left alone). */
void layer_swiglu_backward_ld(float *dh13, int ldd, const float *dout, const float *h13, int N, int F,
                              const layer_side *side);
/* probs: logits in, softmax out (in place); returns the mean loss. */
float layer_softmax_xent_forward(float *probs, float *losses, const uint16_t *tgt, int N, int V);
/* probs becomes dlogits. */
void layer_softmax_xent_backward(float *probs, const uint16_t *tgt, int N, int V);
/* With a side job on every row of dlogits (Y from side->y when its sums are wanted). */
void layer_softmax_xent_backward_side(float *probs, const uint16_t *tgt, int N, int V, const layer_side *side);

/* ---- quantizer kernels (quant.c) ------------------------------------------ */

/* Quantize a [rows, cols] matrix: per row (nscale == rows) or per group of `group` columns
 * (asym). z may be NULL except for asym. */
void quant_forward(train_quantizer k, int bits, int group, const float *w, float *w_hat,
                   size_t rows, size_t cols, const float *s, const float *z);
/* STE backward. g: gradient w.r.t. w_hat in, gradient w.r.t. w out (in place).
 * ds, dz accumulate. */
void quant_backward(train_quantizer k, int bits, int group, const float *w, float *g,
                    size_t rows, size_t cols, const float *s, const float *z, float *ds,
                    float *dz);
/* quant_backward for the rows list[0..n) of a [rows, cols] matrix only (the gradient scale
 * still that of the whole matrix); the other rows untouched. */
void quant_backward_rows(train_quantizer k, int bits, int group, const float *w, float *g, size_t rows,
                         size_t cols, const float *s, const float *z, float *ds, float *dz, const int32_t *list,
                         size_t n);
void quant_init(train_quantizer k, int bits, int group, const float *w, size_t rows, size_t cols,
                float *s, float *z);
/* Integer code of one weight and the dequantised value: w_hat = deq(code). */
int quant_code(train_quantizer k, int bits, float w, float s, float z);
float quant_dequant(train_quantizer k, int bits, int code, float s, float z);

/* One training step in two halves (train.c): quantize (when m->qat / m->qat_embed), forward,
 * backward, STE; returns the loss and the global gradient norm. Then clip and AdamW. */
float train_forward_backward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                             double *gnorm);
void train_update(model *m, const train_config *c, double lr, int64_t t, double gnorm);


/* ---- compute backends (backend.c) -------------------------------------------------- */
/* What the training loop asks of a device. The host model m stays the reference for
 * quantizer initialisation, states and checkpoints, and is synchronised at those
 * boundaries only (sync); on the CPU, m is the device and sync does nothing. */
typedef struct {
    const char *name;
    void (*sync)(void *dev, model *m, int to_host); /* parameters and Adam moments */
    qp_status (*check)(const void *dev, qp_error *err); /* the first device failure, if any */
    float (*forward)(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T);
    float (*forward_backward)(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                              double *gnorm);
    void (*update)(void *dev, model *m, const train_config *c, double lr, int64_t t, double gnorm);
    void (*close)(void *dev); /* NULL is fine */
} train_backend;

extern const train_backend train_backend_cpu;
/* The backend for device d: the CPU's (*dev NULL), or a CUDA copy of m (bf16: bf16 matrix
 * products). QP_ERR_UNSUPPORTED for CUDA in a build without it. */
qp_status train_backend_open(train_device d, const model *m, int bf16, const train_backend **be, void **dev,
                             qp_error *err);

/* ---- CUDA backend glue (backend.c; the kernels are in cuda/) ----------- */
#ifdef QATPLAN_HAVE_CUDA
#include "cuda_backend.h"
/* A device copy of m (its layout; parameters and moments uploaded from m). */
qp_status model_cuda_create(cuda_model **g, const model *m, int bf16, qp_error *err);
/* QP_OK, or the first CUDA failure as QP_ERR_UNSUPPORTED with its message. */
qp_status model_cuda_check(const cuda_model *g, qp_error *err);
#endif

/* ---- RNG --------------------------------------------------------------------- */
uint64_t train_rng_next(uint64_t *state);
float train_rng_normal(uint64_t *state);

/* ---- quantizer: integer zero points and fixed codes (quant.c) ------------------------------ */

/* The integer zero point the asym forward uses for a latent z: round(clamp(z, 0, 2^b-1)),
 * half to even; 0 for the other quantizers. */
int quant_zero(train_quantizer k, int bits, float z);

/* Fixed-code mode (EfficientQAT's E2E-QP, EfQAT's frozen rows): the integer codes stay fixed,
 * only the step sizes learn. A code is stored as the byte (uint8_t)quant_code(...): two's
 * complement for the signed codes of binary, ternary, seq and lsq, 0..255 as is for asym. */
int quant_code_from_byte(train_quantizer k, uint8_t byte);
/* The step-size gradient scale of quant_backward for a layer matrix of numel weights:
 * 1/sqrt(numel) (binary, ternary, seq), 1/sqrt(numel (2^(b-1)-1)) (lsq), 1 (asym). */
float quant_gscale(train_quantizer k, int bits, double numel);
/* w_hat = quant_dequant(code, s, z) for a [rows, cols] matrix of code bytes; scales per row,
 * or per group of `group` columns (asym), as quant_forward. z may be NULL except for asym.
 * The same floats as quant_forward of weights that have these codes (a zero may differ in
 * sign: -0 == 0). */
void quant_forward_codes(train_quantizer k, int bits, int group, const uint8_t *codes,
                         const float *s, const float *z, float *w_hat, size_t rows, size_t cols);
/* quant_forward_codes of the rows rows[0..nrows) of such a matrix only (codes, s, z, w_hat its
 * bases; rows NULL: rows 0..nrows-1), in one pass: EfQAT's frozen rows. */
void quant_forward_codes_rows(train_quantizer k, int bits, int group, const uint8_t *codes, const float *s,
                              const float *z, float *w_hat, size_t cols, const int32_t *rows, size_t nrows);
/* The gradient of w_hat = level(code) s w.r.t. s with the codes fixed: ds (per row or group)
 * += gscale * sum g level(code), level = w_hat / s (asym: code - the forward's integer zero
 * point). g: the gradient w.r.t. w_hat (not changed); no gradient to w or z. gscale: the
 * STE path's, quant_gscale of the whole layer matrix (also when only some rows are fixed). */
void quant_backward_codes(train_quantizer k, int bits, int group, const float *g,
                          const uint8_t *codes, const float *z, float *ds, size_t rows,
                          size_t cols, float gscale);
/* The same gradient from a linear's output Y = X w_hat^T [N, R] and its gradient dY [N, R]
 * without the weight gradient: ds_r += gscale * sum_n dY[n,r] Y[n,r] / s_r (per-row scales
 * only; sums in double). Equals quant_backward_codes of dW = dY^T X. Ysub non-NULL: the output
 * is Y - Ysub (in float; a residual add undone without a pass of its own). */
void quant_ds_from_output(float *ds, const float *dY, const float *Y, const float *Ysub, const float *s,
                          size_t N, size_t R, float gscale);

/* ---- EfQAT: partial-update QAT (efqat.c) ---------------------------------------------- */

/* Freezable tensors k: 0..3 the block linears (model_linears order), 4 the tied embedding. Per
 * tensor and layer a byte mask over its rows (1 = frozen), the rows listed unfrozen first then
 * frozen (each ascending), the unfrozen count; per frozen row its step size at freezing and
 * its code bytes (quantized tensors only). One allocation per family, as the model's. */
enum { EFQ_NT = 5 };
struct efqat_state {
    double r;                   /* --unfrozen */
    train_efqat_mode mode;
    int nl[EFQ_NT];             /* layers (1 for the embedding) */
    size_t R[EFQ_NT], C[EFQ_NT];
    size_t moff[EFQ_NT];        /* first row in frozen, order, s_at, imp */
    size_t coff[EFQ_NT];        /* first code byte */
    size_t uoff[EFQ_NT];        /* first (tensor, layer) entry of nunf */
    size_t nrows, ncodes;
    double freezable;           /* weights of all freezable tensors */
    uint8_t *frozen;
    int32_t *order, *nunf;
    float *s_at;
    uint8_t *codes;
    double *imp;                /* selection scratch: mean |w| per row */
    float *scratch;             /* row-subset product: gathered dY columns, their dW rows */
    float *acc;                 /* side jobs' partial sums of dY Y: acc_threads x max rows */
    float *rowbuf;              /* side jobs' rows of Y: acc_threads x max rows */
    uint16_t *colmask;          /* the side job's gather mask (train_cols_mask): (max R + 15) / 16 */
    int acc_threads;
    layer_side side;            /* the side job handed out last (efqat_side) */
    int side_k, side_l, ready;  /* its linear; ready: its gathered dY is in scratch */
    const float *side_dy;       /* the dY it ran on */
    double share;               /* unfrozen share of the freezable weights now */
    double trainable;           /* scalars trained now */
    double trainable_max;       /* most at any selection (resumable) */
    double eff_sum;             /* sum of share over the QAT steps run (resumable) */
    long steps;                 /* QAT steps counted in eff_sum (resumable) */
};
/* Allocate m->efq for m's shape and batch, nothing frozen (full QAT until efqat_select). */
qp_status efqat_create(model *m, double r, train_efqat_mode mode, qp_error *err);
void efqat_free(model *m); /* NULL m or m->efq: nothing */
/* Select the frozen rows (or matrices, lwpn) from the latent weights; newly frozen rows keep
 * their codes, newly unfrozen rows are rescaled to their frozen codes. Call after the step
 * sizes are initialised. */
void efqat_select(model *m);
/* cwpn/lwpn re-select before QAT step qat_step (0 = the switch, selected there). */
int efqat_due(const model *m, long qat_step, long refresh);
/* Lists, counts, share and trainable count from the masks (after reading them). */
void efqat_rebuild(model *m);
/* Overwrite the frozen rows of tensor k's w_hat (all layers, base = its layer-0 slice) from
 * their codes and the current step sizes. */
void efqat_forward_codes(model *m, float *w_hat_base, int k);
/* layer_matmul_backward with dW for the unfrozen rows of (k, l) only (k 4: the head), from
 * the columns the side job gathered when it ran on this dout, else gathering them here (or
 * per contiguous run: layer_matmul_dw_rows). */
void efqat_linear_backward(model *m, int k, int l, float *dinp, float *dw, const float *dout,
                           const float *inp, const float *w, int N, int C, int R);
/* Whether (k, l) has frozen rows whose step sizes train (per-row quantizers). */
int efqat_needs_ds(const model *m, int k, int l);
/* The side job for linear (k, l) (k 4: the head), to give to the pass that produces its dY
 * [N, R] (at dy): the frozen rows' step-size sums from Y = y - ysub (y NULL: none; the
 * output rule quant_ds_from_output describes, sums per thread) and the unfrozen rows' dY
 * columns gathered for efqat_linear_backward. NULL when there is nothing to do (no frozen
 * rows: the plain path). After the pass, efqat_side_finish. */
const layer_side *efqat_side(model *m, int k, int l, const float *dy, const float *y, const float *ysub);
/* Adds the side job's sums to the frozen rows' step-size gradients (in m->g). */
void efqat_side_finish(model *m);
/* model_quant_backward's STE for the unfrozen rows of (k, l) only (a frozen row's dW is zero:
 * nothing to add); pointers to the layer's slices as quant_backward's. */
void efqat_quant_backward(model *m, int k, int l, const float *w, float *g, const float *s, const float *z,
                          float *ds, float *dz);
int efqat_row_frozen(const model *m, int k, size_t row);
/* The row mask of parameter tensor i (all layers; per_row: its scalars per row) when AdamW
 * must skip its frozen rows: weights, zero points, and step sizes that freeze; NULL: none. */
const uint8_t *efqat_mask(const model *m, int i, size_t *per_row);
const uint8_t *efqat_layer_mask(const model *m, int k, int l, size_t *rows);
/* The resumable part: masks, step sizes at freezing, codes, the record's accumulators. */
size_t efqat_state_bytes(const model *m); /* 0 without m->efq */
void efqat_state_write(const model *m, unsigned char *p);
void efqat_state_read(model *m, const unsigned char *p);
/* A malloc'ed copy of the parameters with the frozen rows' latent weights replaced by their
 * w_hat (what a checkpoint and the export hold); NULL when out of memory. */
float *efqat_params_hat(const model *m);

#endif
