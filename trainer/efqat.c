/* efqat.c: EfQAT, partial-update QAT (docs/trainer.md, "Methods"; seed-methods-spec 2.4, 3.2).
 * The rows (output channels) of every freezable matrix with the largest mean |w| train; the
 * others are frozen: their integer codes are fixed at selection time, their latent weights
 * and Adam moments are left alone, the weight gradient is not computed for them (a row-subset
 * product), and their step sizes train with the fixed-code gradient from the linear's output.
 * Freezable: the four block linears per layer and the tied embedding (rows = vocabulary). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "model.h"

/* tensor k of the state: 0..3 the block linears (model_linears order), 4 the embedding */
static int tensor_of(int k) { return k < 4 ? model_linears[k].tensor : P_WTE; }

/* The quantizer of tensor k's rows; kind TRAIN_Q_NONE when it is not quantized. */
static void quantizer_of(const model *m, int k, train_quantizer *kind, int *bits, int *group)
{
    if (k < 4) {
        *kind = m->q.kind, *bits = m->q.bits, *group = m->q.group_size;
    } else {
        *kind = m->q.embed_bits > 0 ? TRAIN_Q_LSQ : TRAIN_Q_NONE, *bits = m->q.embed_bits, *group = 0;
    }
}

/* Step sizes per group of this many weights of a row of tensor k (C: one per row). */
static size_t scale_group(const model *m, int k)
{
    const efqat_state *e = m->efq;
    if (k == 4) return e->C[k];
    size_t ns = model_scale_count(m, e->R[k], e->C[k]);
    return ns ? e->C[k] / (ns / e->R[k]) : e->C[k];
}

/* Frozen rows' step sizes train (the output rule) for the per-row quantizers of the block
 * linears; grouped asym and the embedding's keep theirs frozen. */
static int scales_train(const model *m, int k)
{
    return k < 4 && m->q.kind != TRAIN_Q_NONE && scale_group(m, k) == m->efq->C[k];
}

qp_status efqat_create(model *m, double r, train_efqat_mode mode, qp_error *err)
{
    efqat_state *e = calloc(1, sizeof *e);
    if (!e) return qp_fail(err, QP_ERR_NOMEM, "out of memory for the EfQAT state");
    m->efq = e;
    e->r = r;
    e->mode = mode;
    size_t N = (size_t)m->B * m->T, rows = 0, codes = 0, units = 0, gather = 0, ymax = 0, rmax = 0;
    for (int k = 0; k < EFQ_NT; k++) {
        int i = tensor_of(k);
        e->nl[k] = m->desc[i].layered ? m->s.n_layer : 1;
        e->R[k] = m->desc[i].rows;
        e->C[k] = m->desc[i].cols;
        e->moff[k] = rows;
        e->coff[k] = codes;
        e->uoff[k] = units;
        rows += (size_t)e->nl[k] * e->R[k];
        units += (size_t)e->nl[k];
        train_quantizer kind;
        int b, g;
        quantizer_of(m, k, &kind, &b, &g);
        if (kind != TRAIN_Q_NONE) codes += (size_t)e->nl[k] * e->R[k] * e->C[k];
        size_t gk = (N + e->C[k]) * e->R[k];
        if (gk > gather) gather = gk;
        if (k < 4 && e->R[k] > ymax) ymax = e->R[k];
        if (e->R[k] > rmax) rmax = e->R[k];
        e->freezable += (double)e->nl[k] * (double)(e->R[k] * e->C[k]);
    }
    e->nrows = rows;
    e->ncodes = codes;
    e->frozen = calloc(rows ? rows : 1, 1);
    e->order = malloc((rows ? rows : 1) * sizeof *e->order);
    e->nunf = malloc(units * sizeof *e->nunf);
    e->s_at = calloc(rows ? rows : 1, sizeof *e->s_at);
    e->codes = calloc(codes ? codes : 1, 1);
    e->imp = malloc((rows ? rows : 1) * sizeof *e->imp);
    e->scratch = malloc((gather ? gather : 1) * sizeof *e->scratch);
    e->acc_threads = omp_get_max_threads();
    e->acc = malloc(((size_t)e->acc_threads * ymax + 1) * sizeof *e->acc);
    e->rowbuf = malloc(((size_t)e->acc_threads * ymax + 1) * sizeof *e->rowbuf);
    e->colmask = malloc((rmax + 15) / 16 * sizeof *e->colmask + 1);
    if (!e->frozen || !e->order || !e->nunf || !e->s_at || !e->codes || !e->imp || !e->scratch || !e->acc ||
        !e->rowbuf || !e->colmask) {
        efqat_free(m);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for the EfQAT state");
    }
    efqat_rebuild(m);
    e->trainable_max = NAN;
    return QP_OK;
}

void efqat_free(model *m)
{
    if (!m || !m->efq) return;
    efqat_state *e = m->efq;
    free(e->frozen);
    free(e->order);
    free(e->nunf);
    free(e->s_at);
    free(e->codes);
    free(e->imp);
    free(e->scratch);
    free(e->acc);
    free(e->rowbuf);
    free(e->colmask);
    free(e);
    m->efq = NULL;
}

/* The unfrozen row lists (order), counts, unfrozen share and trainable scalars from the masks. */
void efqat_rebuild(model *m)
{
    efqat_state *e = m->efq;
    double unf = 0, frozen_scalars = 0;
    for (int k = 0; k < EFQ_NT; k++) {
        size_t R = e->R[k], G = scale_group(m, k), ng = e->C[k] / G;
        int zmask = k < 4 && m->numel[model_linears[k].zero] > 0;
        int smask = k < 4 ? !scales_train(m, k) && m->numel[model_linears[k].scale] > 0 : m->numel[P_S_WTE] > 0;
        for (int l = 0; l < e->nl[k]; l++) {
            const uint8_t *fr = e->frozen + e->moff[k] + (size_t)l * R;
            int32_t *ord = e->order + e->moff[k] + (size_t)l * R;
            int32_t n = 0, f = 0, nf = 0;
            for (size_t r = 0; r < R; r++) nf += fr[r] != 0;
            for (size_t r = 0; r < R; r++) {
                if (fr[r]) ord[(size_t)(R - (size_t)nf) + (size_t)f++] = (int32_t)r;
                else ord[n++] = (int32_t)r;
            }
            e->nunf[e->uoff[k] + (size_t)l] = n;
            unf += (double)n * (double)e->C[k];
            frozen_scalars += (double)nf * ((double)e->C[k] + (smask ? (double)ng : 0) + (zmask ? (double)ng : 0));
        }
    }
    e->share = e->freezable > 0 ? unf / e->freezable : 1.0;
    e->trainable = (double)m->n_floats - frozen_scalars;
}

/* Mean |w| of every row into e->imp (double sums: a row's order must not depend on threads). */
static void importance(model *m)
{
    efqat_state *e = m->efq;
    for (int k = 0; k < EFQ_NT; k++) {
        const float *w = m->p.t[tensor_of(k)];
        size_t n = (size_t)e->nl[k] * e->R[k], C = e->C[k];
        double *imp = e->imp + e->moff[k];
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < n; r++) {
            double s = 0;
            for (size_t c = 0; c < C; c++) s += fabs((double)w[r * C + c]);
            imp[r] = s / (double)C;
        }
    }
}

/* The logical matrices of tensor k's layer (q, k, v of wqkv; gate, up of w13; one otherwise):
 * row ranges [start[j], start[j+1]). Returns their count. */
static int logical(const model *m, int k, size_t start[4])
{
    size_t R = m->efq->R[k];
    if (k == 0) {
        size_t D = (size_t)m->s.d_model, dkv = (R - D) / 2;
        start[0] = 0, start[1] = D, start[2] = D + dkv, start[3] = R;
        return 3;
    }
    if (k == 2) {
        start[0] = 0, start[1] = R / 2, start[2] = R;
        return 2;
    }
    start[0] = 0, start[1] = R;
    return 1;
}

static const double *sort_key;
static int by_importance(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] > sort_key[j] ? -1 : 1;
    return (i > j) - (i < j); /* ties to the lower index */
}

/* Rows to keep per logical matrix: ceil(r * rows), r * rows rounded first so that 0.05 * 20
 * is 1, not 2. */
static size_t keep_count(double r, size_t rows)
{
    double x = r * (double)rows, k = ceil(x - 1e-9 * (x > 1 ? x : 1));
    return k < 0 ? 0 : k > (double)rows ? rows : (size_t)k;
}

/* CWPL/CWPN: the top rows per logical matrix stay unfrozen. want[row] = 1: frozen. */
static void select_rows(model *m, uint8_t *want, int32_t *idx)
{
    efqat_state *e = m->efq;
    for (int k = 0; k < EFQ_NT; k++)
        for (int l = 0; l < e->nl[k]; l++) {
            size_t start[4], base = e->moff[k] + (size_t)l * e->R[k];
            int nm = logical(m, k, start);
            for (int j = 0; j < nm; j++) {
                size_t len = start[j + 1] - start[j];
                for (size_t r = 0; r < len; r++) idx[r] = (int32_t)(base + start[j] + r);
                sort_key = e->imp;
                qsort(idx, len, sizeof *idx, by_importance);
                size_t keep = keep_count(e->r, len);
                for (size_t r = 0; r < len; r++) want[idx[r]] = r >= keep;
            }
        }
}

/* LWPN: whole logical matrices by decreasing mean |w| until they hold r of the freezable
 * weights. */
static void select_matrices(model *m, uint8_t *want, int32_t *idx, double *key)
{
    efqat_state *e = m->efq;
    size_t nu = 0;
    /* unit u: its first row (global) and length, its mean |w| */
    size_t *first = malloc(e->nrows * sizeof *first), *len = malloc(e->nrows * sizeof *len);
    if (!first || !len) { /* no memory: keep the current selection */
        memcpy(want, e->frozen, e->nrows);
        free(first);
        free(len);
        return;
    }
    for (int k = 0; k < EFQ_NT; k++)
        for (int l = 0; l < e->nl[k]; l++) {
            size_t start[4], base = e->moff[k] + (size_t)l * e->R[k];
            int nm = logical(m, k, start);
            for (int j = 0; j < nm; j++, nu++) {
                first[nu] = base + start[j];
                len[nu] = start[j + 1] - start[j];
                double s = 0;
                for (size_t r = 0; r < len[nu]; r++) s += e->imp[first[nu] + r];
                key[nu] = s / (double)len[nu];
                idx[nu] = (int32_t)nu;
            }
        }
    sort_key = key;
    qsort(idx, nu, sizeof *idx, by_importance);
    memset(want, 1, e->nrows);
    double taken = 0, target = e->r * e->freezable;
    for (size_t u = 0; u < nu && taken < target - 0.5; u++) {
        size_t f = first[idx[u]], k = 0;
        while (k + 1 < EFQ_NT && e->moff[k + 1] <= f) k++;
        memset(want + f, 0, len[idx[u]]);
        taken += (double)len[idx[u]] * (double)e->C[k];
    }
    free(first);
    free(len);
}

/* Apply a new mask: newly frozen rows store their codes and step size, newly unfrozen rows
 * (cwpn, lwpn) are rescaled by s_now / s_at_freeze so that they quantize to the frozen codes
 * again (the forward stays continuous). */
static void apply(model *m, const uint8_t *want)
{
    efqat_state *e = m->efq;
    for (int k = 0; k < EFQ_NT; k++) {
        train_quantizer kind;
        int bits, group;
        quantizer_of(m, k, &kind, &bits, &group);
        size_t R = e->R[k], C = e->C[k], G = scale_group(m, k), ng = C / G;
        int i = tensor_of(k), si = k < 4 ? model_linears[k].scale : P_S_WTE;
        const float *zt = k < 4 && kind == TRAIN_Q_ASYM ? m->p.t[model_linears[k].zero] : NULL;
        size_t n = (size_t)e->nl[k] * R;
#pragma omp parallel for schedule(static)
        for (size_t row = 0; row < n; row++) {
            size_t g = e->moff[k] + row;
            if (want[g] == e->frozen[g]) continue;
            float *w = m->p.t[i] + row * C;
            const float *s = kind != TRAIN_Q_NONE ? m->p.t[si] + row * ng : NULL;
            if (want[g]) {
                if (kind != TRAIN_Q_NONE) {
                    uint8_t *code = e->codes + e->coff[k] + row * C;
                    for (size_t c = 0; c < C; c++)
                        code[c] = (uint8_t)quant_code(kind, bits, w[c], s[c / G], zt ? zt[row * ng + c / G] : 0.0f);
                    e->s_at[g] = s[0];
                }
            } else if (kind != TRAIN_Q_NONE && ng == 1 && e->s_at[g] > 0) {
                float f = s[0] / e->s_at[g];
                for (size_t c = 0; c < C; c++) w[c] *= f;
            }
            e->frozen[g] = want[g];
        }
    }
}

void efqat_select(model *m)
{
    efqat_state *e = m->efq;
    uint8_t *want = malloc(e->nrows ? e->nrows : 1);
    int32_t *idx = malloc((e->nrows ? e->nrows : 1) * sizeof *idx);
    double *key = malloc((e->nrows ? e->nrows : 1) * sizeof *key);
    if (want && idx && key) { /* no memory: the current selection stays */
        importance(m);
        if (e->mode == TRAIN_EFQAT_LWPN) select_matrices(m, want, idx, key);
        else select_rows(m, want, idx);
        apply(m, want);
        efqat_rebuild(m);
        if (!(e->trainable <= e->trainable_max)) e->trainable_max = e->trainable;
    }
    free(want);
    free(idx);
    free(key);
}

int efqat_due(const model *m, long qat_step, long refresh)
{
    return m->efq && m->efq->mode != TRAIN_EFQAT_CWPL && qat_step > 0 && refresh > 0 && qat_step % refresh == 0;
}

/* Frozen rows of layer l of tensor k: their indices and count. */
static const int32_t *frozen_rows(const model *m, int k, int l, size_t *n)
{
    const efqat_state *e = m->efq;
    int32_t nu = e->nunf[e->uoff[k] + (size_t)l];
    *n = e->R[k] - (size_t)nu;
    return e->order + e->moff[k] + (size_t)l * e->R[k] + nu;
}

void efqat_forward_codes(model *m, float *w_hat_base, int k)
{
    efqat_state *e = m->efq;
    train_quantizer kind;
    int bits, group;
    quantizer_of(m, k, &kind, &bits, &group);
    if (kind == TRAIN_Q_NONE) return;
    size_t R = e->R[k], C = e->C[k], ng = C / scale_group(m, k);
    int si = k < 4 ? model_linears[k].scale : P_S_WTE;
    const float *zt = k < 4 && kind == TRAIN_Q_ASYM ? m->p.t[model_linears[k].zero] : NULL;
    for (int l = 0; l < e->nl[k]; l++) {
        size_t nf, r0 = (size_t)l * R;
        const int32_t *fr = frozen_rows(m, k, l, &nf);
        /* one pass over the layer's frozen rows (a call per row rebuilt the level table and
         * opened a nested parallel region each time) */
        quant_forward_codes_rows(kind, bits, group, e->codes + e->coff[k] + r0 * C, m->p.t[si] + r0 * ng,
                                 zt ? zt + r0 * ng : NULL, w_hat_base + r0 * C, C, fr, nf);
    }
}

/* The unfrozen rows of layer l of tensor k (ascending) and their count. */
static const int32_t *unfrozen_rows(const model *m, int k, int l, int *n)
{
    const efqat_state *e = m->efq;
    *n = e->nunf[e->uoff[k] + (size_t)l];
    return e->order + e->moff[k] + (size_t)l * e->R[k];
}

void efqat_linear_backward(model *m, int k, int l, float *dinp, float *dw, const float *dout,
                           const float *inp, const float *w, int N, int C, int R)
{
    efqat_state *e = m->efq;
    int nu;
    const int32_t *rows = unfrozen_rows(m, k, l, &nu);
    if (e->ready && e->side_k == k && e->side_l == l && e->side_dy == dout) { /* gathered by the side job */
        e->ready = 0;
        if (dinp) layer_matmul_dx(dinp, dout, w, N, C, R);
        layer_matmul_dw_rows(dw, dout, e->scratch, inp, N, C, R, rows, nu, e->scratch);
        return;
    }
    layer_matmul_backward_rows(dinp, dw, dout, inp, w, N, C, R, rows, nu, e->scratch);
}

int efqat_needs_ds(const model *m, int k, int l)
{
    const efqat_state *e = m->efq;
    return e && scales_train(m, k) && (size_t)e->nunf[e->uoff[k] + (size_t)l] < e->R[k];
}

const layer_side *efqat_side(model *m, int k, int l, const float *dy, const float *y, const float *ysub)
{
    efqat_state *e = m->efq;
    if (!e || !m->qat) return NULL;
    int nu;
    const int32_t *rows = unfrozen_rows(m, k, l, &nu);
    size_t R = e->R[k];
    int sums = y && efqat_needs_ds(m, k, l);
    int gather = nu > 0 && (size_t)nu < R && layer_rows_gather(rows, nu);
    e->ready = 0;
    if (!sums && !gather) return NULL;
    int nt = omp_get_max_threads();
    layer_side *sd = &e->side;
    *sd = (layer_side){(int)R, y, ysub, sums ? e->acc : NULL, nt < e->acc_threads ? nt : e->acc_threads,
                       gather ? e->scratch : NULL, rows, nu, e->rowbuf, gather ? e->colmask : NULL};
    if (gather) train_cols_mask(e->colmask, (int)R, rows, nu);
    if (sums) memset(e->acc, 0, (size_t)sd->nt * R * sizeof *e->acc);
    e->side_k = k, e->side_l = l, e->side_dy = dy;
    return sd;
}

void efqat_side_finish(model *m)
{
    efqat_state *e = m->efq;
    const layer_side *sd = &e->side;
    int k = e->side_k, l = e->side_l;
    if (sd->acc) { /* the frozen rows' ds: the threads' sums added in thread order, in double */
        size_t R = e->R[k], nf;
        const model_linear *ln = &model_linears[k];
        float *ds = m->g.t[ln->scale] + (size_t)l * R;
        const float *s = m->p.t[ln->scale] + (size_t)l * R;
        float gs = quant_gscale(m->q.kind, m->q.bits, (double)R * (double)e->C[k]);
        const int32_t *fr = frozen_rows(m, k, l, &nf);
        for (size_t j = 0; j < nf; j++) {
            size_t r = (size_t)fr[j];
            double t = 0;
            for (int th = 0; th < sd->nt; th++) t += sd->acc[(size_t)th * R + r];
            ds[r] += (float)((double)gs * (t / (double)s[r]));
        }
    }
    e->ready = sd->dsub != NULL;
}

void efqat_quant_backward(model *m, int k, int l, const float *w, float *g, const float *s, const float *z,
                          float *ds, float *dz)
{
    efqat_state *e = m->efq;
    train_quantizer kind;
    int bits, group, nu;
    quantizer_of(m, k, &kind, &bits, &group);
    const int32_t *rows = unfrozen_rows(m, k, l, &nu);
    if ((size_t)nu == e->R[k]) quant_backward(kind, bits, group, w, g, e->R[k], e->C[k], s, z, ds, dz);
    else quant_backward_rows(kind, bits, group, w, g, e->R[k], e->C[k], s, z, ds, dz, rows, (size_t)nu);
}

int efqat_row_frozen(const model *m, int k, size_t row) { return m->efq->frozen[m->efq->moff[k] + row]; }

const uint8_t *efqat_mask(const model *m, int i, size_t *per_row)
{
    const efqat_state *e = m->efq;
    if (!e || m->numel[i] == 0) return NULL;
    for (int k = 0; k < EFQ_NT; k++) {
        const uint8_t *mask = e->frozen + e->moff[k];
        size_t G = scale_group(m, k);
        if (i == tensor_of(k)) {
            *per_row = e->C[k];
            return mask;
        }
        if (k < 4 && i == model_linears[k].zero) {
            *per_row = e->C[k] / G;
            return mask;
        }
        if ((k < 4 && i == model_linears[k].scale) || (k == 4 && i == P_S_WTE)) {
            if (scales_train(m, k)) return NULL;
            *per_row = e->C[k] / G;
            return mask;
        }
    }
    return NULL;
}

/* ---- state and checkpoint ------------------------------------------------------------- */

size_t efqat_state_bytes(const model *m)
{
    const efqat_state *e = m->efq;
    return e ? e->nrows + e->nrows * sizeof(float) + e->ncodes + 3 * sizeof(double) : 0;
}

void efqat_state_write(const model *m, unsigned char *p)
{
    const efqat_state *e = m->efq;
    double d[3] = {e->eff_sum, e->trainable_max, (double)e->steps};
    memcpy(p, e->frozen, e->nrows), p += e->nrows;
    memcpy(p, e->s_at, e->nrows * sizeof(float)), p += e->nrows * sizeof(float);
    memcpy(p, e->codes, e->ncodes), p += e->ncodes;
    memcpy(p, d, sizeof d);
}

void efqat_state_read(model *m, const unsigned char *p)
{
    efqat_state *e = m->efq;
    double d[3];
    memcpy(e->frozen, p, e->nrows), p += e->nrows;
    memcpy(e->s_at, p, e->nrows * sizeof(float)), p += e->nrows * sizeof(float);
    memcpy(e->codes, p, e->ncodes), p += e->ncodes;
    memcpy(d, p, sizeof d);
    e->eff_sum = d[0];
    e->trainable_max = d[1];
    e->steps = (long)d[2];
    efqat_rebuild(m);
}

float *efqat_params_hat(const model *m)
{
    float *p = malloc((m->n_floats ? m->n_floats : 1) * sizeof *p);
    if (!p) return NULL;
    memcpy(p, m->params_mem, m->n_floats * sizeof *p);
    model tmp = *m; /* the frozen rows' w_hat written over the copy's latent rows */
    for (int k = 0; k < EFQ_NT; k++) efqat_forward_codes(&tmp, p + m->off[tensor_of(k)], k);
    return p;
}

const uint8_t *efqat_layer_mask(const model *m, int k, int l, size_t *rows)
{
    const efqat_state *e = m->efq;
    *rows = e->R[k];
    return e->frozen + e->moff[k] + (size_t)l * e->R[k];
}
