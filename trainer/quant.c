/* quant.c: weight-only fake quantizers with straight-through estimators and learned step
 * sizes (ParetoQ's binary / SEQ / LSQ, EfficientQAT's asymmetric per-group quantizer).
 * See docs/trainer.md, "Quantizers", for the formulas and the gradient scales. */
#include <math.h>
#include <string.h>

#include "model.h"

/* Round half to even without a libm call (the default FP rounding mode does the work):
 * exact for |x| < 2^22, and callers clamp first. Same ties as torch.round. */
static inline float round_even(float x)
{
    const float magic = 8388608.0f; /* 2^23: adding it leaves no fraction bits */
    float a = fabsf(x);
    float r = (a + magic) - magic;
    r = a < magic ? r : a; /* already an integer */
    return copysignf(r, x);
}

static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

#define SEQ_CLIP 0.99f

static void seq_params(train_quantizer k, float *L, float *shift)
{
    if (k == TRAIN_Q_TERNARY) {
        *L = 1.5f;
        *shift = 0.0f;
    } else {
        *L = 2.0f; /* 2^(b-1), b = 2 */
        *shift = 0.5f;
    }
}

int quant_code(train_quantizer k, int bits, float w, float s, float z)
{
    switch (k) {
    case TRAIN_Q_BINARY:
        return w >= 0.0f ? 1 : -1;
    case TRAIN_Q_TERNARY:
    case TRAIN_Q_SEQ: {
        float L, sh;
        seq_params(k, &L, &sh);
        float u = clampf(w / s, -SEQ_CLIP, SEQ_CLIP);
        return (int)round_even(u * L - sh);
    }
    case TRAIN_Q_LSQ: {
        float qn = -(float)(1 << (bits - 1)), qp = (float)((1 << (bits - 1)) - 1);
        return (int)clampf(round_even(clampf(w / s, qn - 1.0f, qp + 1.0f)), qn, qp);
    }
    case TRAIN_Q_ASYM: {
        float mx = (float)((1 << bits) - 1);
        float zr = round_even(clampf(z, -mx, 2.0f * mx));
        return (int)clampf(round_even(clampf(w / s, -4194304.0f, 4194304.0f)) + zr, 0.0f, mx);
    }
    default:
        return 0;
    }
}

float quant_dequant(train_quantizer k, int bits, int code, float s, float z)
{
    switch (k) {
    case TRAIN_Q_BINARY:
    case TRAIN_Q_LSQ:
        return s * (float)code;
    case TRAIN_Q_TERNARY:
    case TRAIN_Q_SEQ: {
        float L, sh;
        seq_params(k, &L, &sh);
        return s * (((float)code + sh) / L);
    }
    case TRAIN_Q_ASYM: {
        float mx = (float)((1 << bits) - 1);
        float zr = round_even(clampf(z, -mx, 2.0f * mx));
        return ((float)code - zr) * s;
    }
    default:
        return 0.0f;
    }
}

static size_t group_len(train_quantizer k, int group, size_t cols)
{
    if (k == TRAIN_Q_ASYM && group > 0 && (size_t)group < cols) return (size_t)group;
    return cols;
}

void quant_forward(train_quantizer k, int bits, int group, const float *w, float *w_hat,
                   size_t rows, size_t cols, const float *s, const float *z)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    float L = 1.0f, sh = 0.0f;
    if (k == TRAIN_Q_SEQ || k == TRAIN_Q_TERNARY) seq_params(k, &L, &sh);
    float qn = -(float)(1 << (bits - 1)), qp = (float)((1 << (bits - 1)) - 1);
    float mx = (float)((1 << bits) - 1);
    /* one loop per quantizer, branch-free inside, so each vectorises; the values are the same
     * as quant_dequant(quant_code(...)) (the export relies on it, tests check it) */
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        for (size_t gi = 0; gi < ng; gi++) {
            size_t si = r * ng + gi;
            float sc = s[si];
            const float *wr = w + r * cols + gi * G;
            float *o = w_hat + r * cols + gi * G;
            switch (k) {
            case TRAIN_Q_BINARY:
#pragma omp simd
                for (size_t c = 0; c < G; c++) o[c] = sc * (wr[c] >= 0.0f ? 1.0f : -1.0f);
                break;
            case TRAIN_Q_TERNARY:
            case TRAIN_Q_SEQ:
#pragma omp simd
                for (size_t c = 0; c < G; c++) {
                    float u = clampf(wr[c] / sc, -SEQ_CLIP, SEQ_CLIP);
                    o[c] = sc * ((round_even(u * L - sh) + sh) / L);
                }
                break;
            case TRAIN_Q_LSQ:
#pragma omp simd
                for (size_t c = 0; c < G; c++)
                    o[c] = sc * clampf(round_even(clampf(wr[c] / sc, qn - 1.0f, qp + 1.0f)), qn, qp);
                break;
            case TRAIN_Q_ASYM: {
                float zr = round_even(clampf(z[si], -mx, 2.0f * mx));
#pragma omp simd
                for (size_t c = 0; c < G; c++) {
                    float code = clampf(round_even(clampf(wr[c] / sc, -4194304.0f, 4194304.0f)) + zr, 0.0f, mx);
                    o[c] = (code - zr) * sc;
                }
                break;
            }
            default:
                for (size_t c = 0; c < G; c++) o[c] = wr[c];
                break;
            }
        }
    }
}

void quant_backward(train_quantizer k, int bits, int group, const float *w, float *g,
                    size_t rows, size_t cols, const float *s, const float *z, float *ds,
                    float *dz)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    double numel = (double)rows * (double)cols;
    float gscale = 1.0f;
    if (k == TRAIN_Q_BINARY || k == TRAIN_Q_SEQ || k == TRAIN_Q_TERNARY) gscale = (float)(1.0 / sqrt(numel));
    if (k == TRAIN_Q_LSQ) gscale = (float)(1.0 / sqrt(numel * (double)((1 << (bits - 1)) - 1)));
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        for (size_t gi = 0; gi < ng; gi++) {
            size_t si = r * ng + gi;
            float sc = s[si];
            const float *wr = w + r * cols + gi * G;
            float *gr = g + r * cols + gi * G;
            float acc = 0.0f, accz = 0.0f;
            switch (k) {
            case TRAIN_Q_BINARY:
#pragma omp simd reduction(+ : acc)
                for (size_t c = 0; c < G; c++) {
                    float q = wr[c] / sc;
                    acc += (wr[c] >= 0.0f ? 1.0f : -1.0f) * gr[c];
                    gr[c] = fabsf(q) > 1.0f ? 0.0f : gr[c];
                }
                break;
            case TRAIN_Q_TERNARY:
            case TRAIN_Q_SEQ: {
                float L, sh;
                seq_params(k, &L, &sh);
#pragma omp simd reduction(+ : acc)
                for (size_t c = 0; c < G; c++) {
                    float q = wr[c] / sc;
                    float u = clampf(q, -SEQ_CLIP, SEQ_CLIP);
                    float Qv = (round_even(u * L - sh) + sh) / L;
                    int in = fabsf(q) <= SEQ_CLIP;
                    acc += gr[c] * (in ? Qv - q : Qv);
                    gr[c] = in ? gr[c] : 0.0f;
                }
                break;
            }
            case TRAIN_Q_LSQ: {
                float qn = -(float)(1 << (bits - 1)), qp = (float)((1 << (bits - 1)) - 1);
#pragma omp simd reduction(+ : acc)
                for (size_t c = 0; c < G; c++) {
                    float q = wr[c] / sc;
                    float code = clampf(round_even(clampf(q, qn - 1.0f, qp + 1.0f)), qn, qp);
                    int in = q >= qn && q <= qp;
                    acc += gr[c] * (in ? code - q : code);
                    gr[c] = in ? gr[c] : 0.0f;
                }
                break;
            }
            case TRAIN_Q_ASYM: {
                float mx = (float)((1 << bits) - 1);
                float zr = round_even(clampf(z[si], -mx, 2.0f * mx));
#pragma omp simd reduction(+ : acc, accz)
                for (size_t c = 0; c < G; c++) {
                    float q = wr[c] / sc;
                    float pre = round_even(clampf(q, -4194304.0f, 4194304.0f)) + zr;
                    float code = clampf(pre, 0.0f, mx);
                    int in = pre >= 0.0f && pre <= mx;
                    acc += gr[c] * (in ? (code - zr) - q : (code - zr));
                    accz += in ? 0.0f : gr[c] * -sc;
                    gr[c] = in ? gr[c] : 0.0f;
                }
                break;
            }
            default:
                break;
            }
            ds[si] += acc * gscale;
            if (dz) dz[si] += accz;
        }
    }
}

void quant_init(train_quantizer k, int bits, int group, const float *w, size_t rows, size_t cols,
                float *s, float *z)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    for (size_t r = 0; r < rows; r++) {
        for (size_t gi = 0; gi < ng; gi++) {
            size_t si = r * ng + gi;
            const float *wr = w + r * cols + gi * G;
            double sum = 0.0;
            float mx = 0.0f, lo = wr[0], hi = wr[0];
            for (size_t c = 0; c < G; c++) {
                float a = fabsf(wr[c]);
                sum += a;
                if (a > mx) mx = a;
                if (wr[c] < lo) lo = wr[c];
                if (wr[c] > hi) hi = wr[c];
            }
            float sc;
            switch (k) {
            case TRAIN_Q_BINARY: sc = (float)(sum / (double)G); break;
            case TRAIN_Q_TERNARY:
            case TRAIN_Q_SEQ: sc = mx; break;
            case TRAIN_Q_LSQ: sc = mx / (float)((1 << (bits - 1)) - 1); break;
            case TRAIN_Q_ASYM: sc = (hi - lo) / (float)((1 << bits) - 1); break;
            default: sc = 1.0f; break;
            }
            if (!(sc > 1e-8f)) sc = 1e-8f; /* an all-zero row would divide by zero */
            s[si] = sc;
            if (k == TRAIN_Q_ASYM && z) z[si] = round_even(clampf(-lo / sc, -4194304.0f, 4194304.0f));
        }
    }
}
