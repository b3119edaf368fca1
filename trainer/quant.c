/* quant.c: weight-only fake quantizers with straight-through estimators and learned step
 * sizes (ParetoQ's binary / SEQ / LSQ, EfficientQAT's asymmetric per-group quantizer).
 * See docs/trainer.md, "Quantizers", for the formulas and the gradient scales. */
#include <math.h>
#include <string.h>

#include "formulas.h"
#include "model.h"

/* The per-value formulas are formulas.h's, shared with the CUDA kernels. */
static void seq_params(train_quantizer k, float *L, float *shift)
{
    qf_seq_params(k == TRAIN_Q_TERNARY, L, shift);
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
        return (int)qf_seq_code(w / s, L, sh);
    }
    case TRAIN_Q_LSQ: {
        return (int)qf_lsq_code(w / s, qf_lsq_qn(bits), qf_lsq_qp(bits));
    }
    case TRAIN_Q_ASYM: {
        float mx = qf_asym_max(bits);
        return (int)qf_asym_code(qf_asym_pre(w / s, qf_asym_zero(z, mx)), mx);
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
        return s * qf_seq_level((float)code, L, sh);
    }
    case TRAIN_Q_ASYM: {
        float zr = qf_asym_zero(z, qf_asym_max(bits));
        return ((float)code - zr) * s;
    }
    default:
        return 0.0f;
    }
}

int quant_zero(train_quantizer k, int bits, float z)
{
    return k == TRAIN_Q_ASYM ? (int)qf_asym_zero(z, qf_asym_max(bits)) : 0;
}

float quant_gscale(train_quantizer k, int bits, double numel)
{
    if (k == TRAIN_Q_BINARY || k == TRAIN_Q_SEQ || k == TRAIN_Q_TERNARY) return qf_gscale_ste(numel);
    if (k == TRAIN_Q_LSQ) return qf_gscale_lsq(numel, bits);
    return 1.0f;
}

int quant_code_from_byte(train_quantizer k, uint8_t byte)
{
    return k == TRAIN_Q_ASYM ? (int)byte : (int)(int8_t)byte;
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
    float qn = qf_lsq_qn(bits), qp = qf_lsq_qp(bits), mx = qf_asym_max(bits);
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
                for (size_t c = 0; c < G; c++) o[c] = sc * qf_binary_sign(wr[c]);
                break;
            case TRAIN_Q_TERNARY:
            case TRAIN_Q_SEQ:
#pragma omp simd
                for (size_t c = 0; c < G; c++) o[c] = sc * qf_seq_level(qf_seq_code(wr[c] / sc, L, sh), L, sh);
                break;
            case TRAIN_Q_LSQ:
#pragma omp simd
                for (size_t c = 0; c < G; c++)
                    o[c] = sc * qf_lsq_code(wr[c] / sc, qn, qp);
                break;
            case TRAIN_Q_ASYM: {
                float zr = qf_asym_zero(z[si], mx);
#pragma omp simd
                for (size_t c = 0; c < G; c++) o[c] = (qf_asym_code(qf_asym_pre(wr[c] / sc, zr), mx) - zr) * sc;
                break;
            }
            default:
                for (size_t c = 0; c < G; c++) o[c] = wr[c];
                break;
            }
        }
    }
}

/* quant_backward of row r: the STE into g's row, its step sizes' (and zero points') gradients. */
static inline void backward_row(train_quantizer k, int bits, size_t G, size_t ng, size_t cols, size_t r,
                                const float *w, float *g, const float *s, const float *z, float *ds, float *dz,
                                float gscale)
{
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
                acc += qf_binary_sign(wr[c]) * gr[c];
                gr[c] = qf_binary_dw(wr[c] / sc, gr[c]);
            }
            break;
        case TRAIN_Q_TERNARY:
        case TRAIN_Q_SEQ: {
            float L, sh;
            seq_params(k, &L, &sh);
#pragma omp simd reduction(+ : acc)
            for (size_t c = 0; c < G; c++) {
                float q = wr[c] / sc;
                int in = qf_seq_in(q);
                acc += gr[c] * qf_ds(qf_seq_level(qf_seq_code(q, L, sh), L, sh), q, in);
                gr[c] = in ? gr[c] : 0.0f;
            }
            break;
        }
        case TRAIN_Q_LSQ: {
            float qn = qf_lsq_qn(bits), qp = qf_lsq_qp(bits);
#pragma omp simd reduction(+ : acc)
            for (size_t c = 0; c < G; c++) {
                float q = wr[c] / sc, code = qf_lsq_code(q, qn, qp);
                int in = qf_lsq_in(q, qn, qp);
                acc += gr[c] * qf_ds(code, q, in);
                gr[c] = in ? gr[c] : 0.0f;
            }
            break;
        }
        case TRAIN_Q_ASYM: {
            float mx = qf_asym_max(bits), zr = qf_asym_zero(z[si], mx);
#pragma omp simd reduction(+ : acc, accz)
            for (size_t c = 0; c < G; c++) {
                float q = wr[c] / sc, pre = qf_asym_pre(q, zr);
                int in = qf_asym_in(pre, mx);
                acc += gr[c] * qf_ds(qf_asym_code(pre, mx) - zr, q, in);
                accz += qf_asym_dz(gr[c], sc, in);
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

void quant_backward(train_quantizer k, int bits, int group, const float *w, float *g,
                    size_t rows, size_t cols, const float *s, const float *z, float *ds,
                    float *dz)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    float gscale = quant_gscale(k, bits, (double)rows * (double)cols);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) backward_row(k, bits, G, ng, cols, r, w, g, s, z, ds, dz, gscale);
}

void quant_backward_rows(train_quantizer k, int bits, int group, const float *w, float *g, size_t rows,
                         size_t cols, const float *s, const float *z, float *ds, float *dz, const int32_t *list,
                         size_t n)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    float gscale = quant_gscale(k, bits, (double)rows * (double)cols);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < n; j++) backward_row(k, bits, G, ng, cols, (size_t)list[j], w, g, s, z, ds, dz, gscale);
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
            case TRAIN_Q_LSQ: sc = mx / qf_lsq_qp(bits); break;
            case TRAIN_Q_ASYM: sc = (hi - lo) / qf_asym_max(bits); break;
            default: sc = 1.0f; break;
            }
            if (!(sc > 1e-8f)) sc = 1e-8f; /* an all-zero row would divide by zero */
            s[si] = sc;
            if (k == TRAIN_Q_ASYM && z) z[si] = qf_round_even(qf_clamp(-lo / sc, -QF_ASYM_RANGE, QF_ASYM_RANGE));
        }
    }
}

/* ---- fixed codes ---------------------------------------------------------------------- */

/* level (w_hat / s) of every code byte of a per-row quantizer: quant_dequant's at s = 1, so
 * that s * level is the float quant_dequant (and quant_forward) computes */
static void level_table(train_quantizer k, int bits, float lvl[256])
{
    for (int b = 0; b < 256; b++) lvl[b] = quant_dequant(k, bits, quant_code_from_byte(k, (uint8_t)b), 1.0f, 0.0f);
}

void quant_forward_codes_rows(train_quantizer k, int bits, int group, const uint8_t *codes, const float *s,
                              const float *z, float *w_hat, size_t cols, const int32_t *rows, size_t nrows)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    float lvl[256], mx = qf_asym_max(bits);
    if (k != TRAIN_Q_ASYM) level_table(k, bits, lvl);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < nrows; j++) {
        size_t r = rows ? (size_t)rows[j] : j;
        for (size_t gi = 0; gi < ng; gi++) {
            size_t si = r * ng + gi;
            float sc = s[si];
            const uint8_t *cr = codes + r * cols + gi * G;
            float *o = w_hat + r * cols + gi * G;
            if (k == TRAIN_Q_ASYM) {
                float zr = qf_asym_zero(z[si], mx);
                for (size_t c = 0; c < G; c++) o[c] = ((float)cr[c] - zr) * sc;
            } else {
                for (size_t c = 0; c < G; c++) o[c] = sc * lvl[cr[c]];
            }
        }
    }
}

void quant_forward_codes(train_quantizer k, int bits, int group, const uint8_t *codes,
                         const float *s, const float *z, float *w_hat, size_t rows, size_t cols)
{
    quant_forward_codes_rows(k, bits, group, codes, s, z, w_hat, cols, NULL, rows);
}

void quant_backward_codes(train_quantizer k, int bits, int group, const float *g,
                          const uint8_t *codes, const float *z, float *ds, size_t rows,
                          size_t cols, float gscale)
{
    size_t G = group_len(k, group, cols), ng = cols / G;
    float lvl[256], mx = qf_asym_max(bits);
    if (k != TRAIN_Q_ASYM) level_table(k, bits, lvl);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        for (size_t gi = 0; gi < ng; gi++) {
            size_t si = r * ng + gi;
            const uint8_t *cr = codes + r * cols + gi * G;
            const float *gr = g + r * cols + gi * G;
            float acc = 0.0f;
            if (k == TRAIN_Q_ASYM) {
                float zr = qf_asym_zero(z[si], mx);
                for (size_t c = 0; c < G; c++) acc += gr[c] * ((float)cr[c] - zr);
            } else {
                for (size_t c = 0; c < G; c++) acc += gr[c] * lvl[cr[c]];
            }
            ds[si] += acc * gscale; /* as quant_backward */
        }
    }
}

void quant_ds_from_output(float *ds, const float *dY, const float *Y, const float *Ysub, const float *s,
                          size_t N, size_t R, float gscale)
{
    /* rows per task: contiguous reads of dY and Y, sums on the stack; small enough that a
     * 128-row linear still splits over threads. Each row's sum runs over n in order (the
     * lanes of the simd loop are rows), so results do not depend on threads or vector width;
     * the products of two floats are exact in double, so contraction changes nothing either. */
    enum { CHUNK = 64 };
    size_t nchunk = (R + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t ci = 0; ci < nchunk; ci++) {
        size_t r0 = ci * CHUNK, nr = R - r0 < CHUNK ? R - r0 : CHUNK;
        double acc[CHUNK] = {0};
        for (size_t n = 0; n < N; n++) {
            const float *dy = dY + n * R + r0, *y = Y + n * R + r0;
            if (Ysub) {
                const float *b = Ysub + n * R + r0;
#pragma omp simd
                for (size_t j = 0; j < nr; j++) acc[j] += (double)dy[j] * (double)(y[j] - b[j]);
            } else {
#pragma omp simd
                for (size_t j = 0; j < nr; j++) acc[j] += (double)dy[j] * (double)y[j];
            }
        }
        for (size_t j = 0; j < nr; j++) ds[r0 + j] += (float)((double)gscale * (acc[j] / (double)s[r0 + j]));
    }
}
