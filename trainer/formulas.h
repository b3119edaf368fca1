/* formulas.h (internal to the trainer): the quantizer formulas and the AdamW update for one
 * value, written once and compiled by both gcc (quant.c, train.c) and nvcc (trainer/cuda/).
 * Plain C, static inline: on the CPU they inline into the vectorised loops, on the GPU into
 * the kernels; both backends therefore compute the same floats (docs/trainer.md, "Quantizers").
 * Each quantizer works on q = w / s (the weight in units of its step size). */
#ifndef TRAIN_FORMULAS_H
#define TRAIN_FORMULAS_H

#include <math.h>

#ifdef __CUDACC__
#define QP_HD __host__ __device__
#else
#define QP_HD
#endif

#define QF_SEQ_CLIP 0.99f
#define QF_ASYM_RANGE 4194304.0f /* 2^22: keeps w/s where rounding is exact before the clamp */

/* Round half to even (torch.round's ties). On the CPU without a libm call (the default FP
 * rounding mode does the work; exact for |x| < 2^22, callers clamp first) so loops vectorise;
 * on the GPU rintf, which gives the same result. */
static inline QP_HD float qf_round_even(float x)
{
#ifdef __CUDA_ARCH__
    return rintf(x);
#else
    const float magic = 8388608.0f; /* 2^23: adding it leaves no fraction bits */
    float a = fabsf(x);
    float r = (a + magic) - magic;
    r = a < magic ? r : a; /* already an integer */
    return copysignf(r, x);
#endif
}

static inline QP_HD float qf_clamp(float x, float lo, float hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* ---- binary: w_hat = s * sign(w); STE passes |q| <= 1 ---------------------------------- */
static inline QP_HD float qf_binary_sign(float w) { return w >= 0.0f ? 1.0f : -1.0f; }
/* the gradient w.r.t. w of g (the gradient w.r.t. w_hat) */
static inline QP_HD float qf_binary_dw(float q, float g) { return fabsf(q) > 1.0f ? 0.0f : g; }

/* ---- SEQ (2-bit, levels +-1/4, +-3/4) and ternary (levels 0, +-2/3): w_hat = s * level ---- */
/* L and shift of the level grid: level = (round(clip(q) * L - shift) + shift) / L */
static inline QP_HD void qf_seq_params(int ternary, float *L, float *shift)
{
    *L = ternary ? 1.5f : 2.0f; /* 2^(b-1), b = 2 */
    *shift = ternary ? 0.0f : 0.5f;
}
static inline QP_HD float qf_seq_code(float q, float L, float sh)
{
    return qf_round_even(qf_clamp(q, -QF_SEQ_CLIP, QF_SEQ_CLIP) * L - sh);
}
static inline QP_HD float qf_seq_level(float code, float L, float sh) { return (code + sh) / L; }
static inline QP_HD int qf_seq_in(float q) { return fabsf(q) <= QF_SEQ_CLIP; }

/* ---- LSQ (b-bit symmetric, codes qn..qp): w_hat = s * code ------------------------------- */
static inline QP_HD float qf_lsq_qn(int bits) { return -(float)(1 << (bits - 1)); }
static inline QP_HD float qf_lsq_qp(int bits) { return (float)((1 << (bits - 1)) - 1); }
static inline QP_HD float qf_lsq_code(float q, float qn, float qp)
{
    return qf_clamp(qf_round_even(qf_clamp(q, qn - 1.0f, qp + 1.0f)), qn, qp);
}
static inline QP_HD int qf_lsq_in(float q, float qn, float qp) { return q >= qn && q <= qp; }

/* ---- asym (b-bit per group, codes 0..mx, zero point z): w_hat = (code - round(z)) * s ------ */
static inline QP_HD float qf_asym_max(int bits) { return (float)((1 << bits) - 1); }
/* The zero point the forward uses: z clamped to the code range [0, mx] and rounded (the
 * same as rounding, then clamping: the bounds are integers), as EfficientQAT
 * (quantizer.py:60) and b-bit zero points in storage need. The STE passes through both:
 * dz (qf_asym_dz) does not depend on where z lies. */
static inline QP_HD float qf_asym_zero(float z, float mx)
{
    return qf_round_even(qf_clamp(z, 0.0f, mx));
}
/* the code before the clamp to 0..mx (the STE passes it when in range) */
static inline QP_HD float qf_asym_pre(float q, float zr)
{
    return qf_round_even(qf_clamp(q, -QF_ASYM_RANGE, QF_ASYM_RANGE)) + zr;
}
static inline QP_HD float qf_asym_code(float pre, float mx) { return qf_clamp(pre, 0.0f, mx); }
static inline QP_HD int qf_asym_in(float pre, float mx) { return pre >= 0.0f && pre <= mx; }

/* ---- step-size gradient pieces (LSQ-style): d w_hat / d s per element --------------------- */
/* level: w_hat / s; in: the STE passes this element. Inside the range the rounding error
 * (level - q), outside the clamped level. */
static inline QP_HD float qf_ds(float level, float q, int in) { return in ? level - q : level; }
/* asym's zero point: d w_hat / d z = -s where the code is clamped, else 0 (times g) */
static inline QP_HD float qf_asym_dz(float g, float s, int in) { return in ? 0.0f : g * -s; }
/* the step-size gradient scales: 1/sqrt(numel) (binary, ternary, SEQ) and
 * 1/sqrt(numel * qp) (LSQ), numel per layer */
static inline QP_HD float qf_gscale_ste(double numel) { return (float)(1.0 / sqrt(numel)); }
static inline QP_HD float qf_gscale_lsq(double numel, int bits)
{
    return (float)(1.0 / sqrt(numel * (double)((1 << (bits - 1)) - 1)));
}

/* ---- AdamW for one parameter (decoupled decay wd = lr * weight_decay; c1, c2 the bias
 * corrections 1 - beta^t) ------------------------------------------------------------------- */
static inline QP_HD void qf_adamw(float *p, float *m, float *v, float g, float lr, float wd,
                                  float b1, float b2, float eps, float c1, float c2)
{
    float mj = b1 * *m + (1.0f - b1) * g;
    float vj = b2 * *v + (1.0f - b2) * g * g;
    *m = mj;
    *v = vj;
    *p -= lr * ((mj / c1) / (sqrtf(vj / c2) + eps)) + wd * *p;
}

#endif
