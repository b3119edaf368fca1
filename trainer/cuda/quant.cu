/* quant.cu: the quantizers of the CUDA backend (quant.c's quant_forward / quant_backward):
 * the per-value formulas are formulas.h's, compiled for the device, so the quantized weights
 * match the CPU's bit for bit given the same latent weights. */
#include "common.cuh"

/* Quantize [rows, cols] (all layers at once: scales are contiguous per layer as well) */
__global__ void quant_forward_k(int kind, int bits, int G, const float *w, float *w_hat,
                                size_t rows, size_t cols, const float *s, const float *z)
{
    size_t ng = cols / G;
    float L, sh;
    qf_seq_params(kind == Q_TERNARY, &L, &sh);
    float qn = qf_lsq_qn(bits), qp = qf_lsq_qp(bits), mx = qf_asym_max(bits);
    GRID_LOOP(i, rows * cols) {
        size_t r = i / cols, c = i % cols, si = r * ng + c / G;
        float sc = s[si], x = w[i], o;
        switch (kind) {
        case Q_BINARY: o = sc * qf_binary_sign(x); break;
        case Q_TERNARY:
        case Q_SEQ: o = sc * qf_seq_level(qf_seq_code(x / sc, L, sh), L, sh); break;
        case Q_LSQ: o = sc * qf_lsq_code(x / sc, qn, qp); break;
        case Q_ASYM: {
            float zr = qf_asym_zero(z[si], mx);
            o = (qf_asym_code(qf_asym_pre(x / sc, zr), mx) - zr) * sc;
            break;
        }
        default: o = x; break;
        }
        w_hat[i] = o;
    }
}

/* STE backward: one block per scale (row or group). g: gradient w.r.t. w_hat in, w.r.t. w
 * out; ds, dz accumulate. gscale: the step-size gradient scale of quant.c. */
__global__ void quant_backward_k(int kind, int bits, int G, const float *w, float *gw,
                                 size_t cols, const float *s, const float *z, float *ds,
                                 float *dz, float gscale)
{
    size_t ng = cols / G, si = blockIdx.x, r = si / ng, gi = si % ng;
    float sc = s[si];
    const float *wr = w + r * cols + gi * G;
    float *gr = gw + r * cols + gi * G;
    float L, sh;
    qf_seq_params(kind == Q_TERNARY, &L, &sh);
    float qn = qf_lsq_qn(bits), qp = qf_lsq_qp(bits), mx = qf_asym_max(bits);
    float zr = kind == Q_ASYM ? qf_asym_zero(z[si], mx) : 0.0f;
    float acc = 0.0f, accz = 0.0f;
    for (int c = threadIdx.x; c < G; c += blockDim.x) {
        float q = wr[c] / sc, gc = gr[c];
        switch (kind) {
        case Q_BINARY:
            acc += qf_binary_sign(wr[c]) * gc;
            gr[c] = qf_binary_dw(q, gc);
            break;
        case Q_TERNARY:
        case Q_SEQ: {
            float Qv = qf_seq_level(qf_seq_code(q, L, sh), L, sh);
            int in = qf_seq_in(q);
            acc += gc * qf_ds(Qv, q, in);
            gr[c] = in ? gc : 0.0f;
            break;
        }
        case Q_LSQ: {
            float code = qf_lsq_code(q, qn, qp);
            int in = qf_lsq_in(q, qn, qp);
            acc += gc * qf_ds(code, q, in);
            gr[c] = in ? gc : 0.0f;
            break;
        }
        case Q_ASYM: {
            float pre = qf_asym_pre(q, zr);
            float code = qf_asym_code(pre, mx);
            int in = qf_asym_in(pre, mx);
            acc += gc * qf_ds(code - zr, q, in);
            accz += qf_asym_dz(gc, sc, in);
            gr[c] = in ? gc : 0.0f;
            break;
        }
        default: break;
        }
    }
    acc = block_sum(acc);
    accz = block_sum(accz);
    if (threadIdx.x == 0) {
        ds[si] += acc * gscale;
        if (dz) dz[si] += accz;
    }
}

/* ---- passes over the model ------------------------------------------------------------ */

const int lin_tensor[4] = {P_WQKV, P_WO, P_W13, P_W2};

float *qbuf(cuda_model *g, int i)
{
    switch (i) {
    case P_WQKV: return g->qw.wqkv;
    case P_WO: return g->qw.wo;
    case P_W13: return g->qw.w13;
    default: return g->qw.w2;
    }
}

static size_t group_of(int kind, int group, size_t cols)
{
    return kind == Q_ASYM && group > 0 && (size_t)group < cols ? (size_t)group : cols;
}

void quantize(cuda_model *g, int qat, int qat_embed)
{
    const cuda_layout *y = &g->y;
    if (qat && y->qkind != Q_NONE) {
        for (int k = 0; k < 4; k++) {
            int i = lin_tensor[k];
            size_t R = (size_t)y->L * y->rows[i], C = y->cols[i];
            size_t G = group_of(y->qkind, y->group, C);
            quant_forward_k<<<blocks_for(R * C, 256), 256>>>(
                y->qkind, y->bits, (int)G, g->p[i], qbuf(g, i), R, C, g->p[P_S_QKV + k],
                y->qkind == Q_ASYM ? g->p[P_Z_QKV + k] : NULL);
        }
    }
    if (qat_embed && y->embed_bits > 0)
        quant_forward_k<<<blocks_for((size_t)y->V * y->D, 256), 256>>>(
            Q_LSQ, y->embed_bits, y->D, g->p[P_WTE], g->qw.wte, (size_t)y->V, (size_t)y->D,
            g->p[P_S_WTE], NULL);
    LAUNCHED(g, "quant_forward");
}

void quant_backward(cuda_model *g, int qat, int qat_embed)
{
    const cuda_layout *y = &g->y;
    if (qat && y->qkind != Q_NONE) {
        for (int k = 0; k < 4; k++) {
            int i = lin_tensor[k];
            size_t C = y->cols[i], G = group_of(y->qkind, y->group, C);
            size_t nscale = y->numel[P_S_QKV + k]; /* all layers */
            double numel = (double)y->rows[i] * (double)C; /* one layer, as quant.c */
            float gs = 1.0f;
            if (y->qkind == Q_BINARY || y->qkind == Q_SEQ || y->qkind == Q_TERNARY) gs = qf_gscale_ste(numel);
            if (y->qkind == Q_LSQ) gs = qf_gscale_lsq(numel, y->bits);
            int asym = y->qkind == Q_ASYM;
            quant_backward_k<<<(unsigned)nscale, 256>>>(
                y->qkind, y->bits, (int)G, g->p[i], g->g[i], C, g->p[P_S_QKV + k],
                asym ? g->p[P_Z_QKV + k] : NULL, g->g[P_S_QKV + k], asym ? g->g[P_Z_QKV + k] : NULL, gs);
        }
    }
    if (qat_embed && y->embed_bits > 0) {
        double numel = (double)y->V * y->D;
        float gs = qf_gscale_lsq(numel, y->embed_bits);
        quant_backward_k<<<(unsigned)y->V, 256>>>(Q_LSQ, y->embed_bits, y->D, g->p[P_WTE],
                                                  g->g[P_WTE], (size_t)y->D, g->p[P_S_WTE], NULL,
                                                  g->g[P_S_WTE], NULL, gs);
    }
    LAUNCHED(g, "quant_backward");
}
