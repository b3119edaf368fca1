/* model.cu: the CUDA backend's whole-model passes (model.c's model_forward / model_backward),
 * launching the layer families of layers.cu, attention.cu, matmul.cu and quant.cu. */
#include "common.cuh"

static const float *weights_for(cuda_model *g, int i, int qat, int l)
{
    const cuda_layout *y = &g->y;
    const float *base = qat && y->qkind != Q_NONE && i != P_WTE ? qbuf(g, i) : g->p[i];
    return base + (size_t)l * y->rows[i] * y->cols[i];
}

float forward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt, int B, int qat,
              int qat_embed)
{
    const cuda_layout *y = &g->y;
    if (g->failed) return NAN;
    if (B < 1 || B > y->B) {
        failf(g, "internal: batch %d outside 1..%d", B, y->B);
        return NAN;
    }
    int L = y->L, D = y->D, F = y->F, V = y->V, H = y->H, T = y->T, QKV = y->QKV, N = B * T;
    if (!ck(g, cudaMemcpy(g->inp, inp, (size_t)N * sizeof *inp, cudaMemcpyHostToDevice), "copy tokens"))
        return NAN;
    if (tgt && !ck(g, cudaMemcpy(g->tgt, tgt, (size_t)N * sizeof *tgt, cudaMemcpyHostToDevice), "copy targets"))
        return NAN;
    const float *wte = qat_embed && y->embed_bits > 0 ? g->qw.wte : g->p[P_WTE];
    embed_forward(g, g->resid, wte, N, D);
    size_t ND = (size_t)N * D;
    for (int l = 0; l < L; l++) {
        float *x = g->resid + l * ND, *xo = g->resid + (l + 1) * ND;
        float *ln1 = g->ln1 + l * ND, *r1 = g->ln1_rstd + (size_t)l * N;
        float *qkv = g->qkv + (size_t)l * N * QKV, *att = g->att + (size_t)l * B * H * T * T;
        float *atty = g->atty + l * ND, *mid = g->mid + l * ND;
        float *ln2 = g->ln2 + l * ND, *r2 = g->ln2_rstd + (size_t)l * N;
        float *h13 = g->h13 + (size_t)l * N * 2 * F, *hact = g->hact + (size_t)l * N * F;
        rmsnorm_forward(g, ln1, r1, x, g->p[P_LN1] + (size_t)l * D, N, D);
        matmul_forward(g, qkv, ln1, weights_for(g, P_WQKV, qat, l), N, D, QKV);
        rope(g, qkv, N, 0);
        attention_forward(g, atty, att, qkv, B);
        matmul_forward(g, mid, atty, weights_for(g, P_WO, qat, l), N, D, D);
        add_inplace(mid, x, ND);
        rmsnorm_forward(g, ln2, r2, mid, g->p[P_LN2] + (size_t)l * D, N, D);
        matmul_forward(g, h13, ln2, weights_for(g, P_W13, qat, l), N, D, 2 * F);
        swiglu_forward(hact, h13, N, F);
        matmul_forward(g, xo, hact, weights_for(g, P_W2, qat, l), N, F, D);
        add_inplace(xo, mid, ND);
        LAUNCHED(g, "block forward");
    }
    rmsnorm_forward(g, g->lnf, g->lnf_rstd, g->resid + (size_t)L * ND, g->p[P_LNF], N, D);
    matmul_forward(g, g->probs, g->lnf, wte, N, D, V);
    if (!tgt) return NAN;
    softmax_xent_forward(g, N, V);
    if (!ck(g, cudaMemcpy(g->h_losses, g->losses, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost),
            "copy losses"))
        return NAN;
    double total = 0.0; /* summed on the host in token order, as layers.c does */
    for (int n = 0; n < N; n++) total += g->h_losses[n];
    return (float)(total / N);
}

void backward(cuda_model *g, int B, int qat, int qat_embed)
{
    const cuda_layout *y = &g->y;
    if (g->failed) return;
    int L = y->L, D = y->D, F = y->F, V = y->V, H = y->H, T = y->T, QKV = y->QKV, N = B * T;
    size_t ND = (size_t)N * D;
    const float *wte = qat_embed && y->embed_bits > 0 ? g->qw.wte : g->p[P_WTE];
    softmax_xent_backward(g, N, V);
    matmul_backward(g, g->dln, g->g[P_WTE], g->probs, g->lnf, wte, N, D, V);
    ck(g, cudaMemset(g->dx, 0, ND * sizeof(float)), "memset");
    rmsnorm_backward(g, g->dx, g->g[P_LNF], g->dln, g->resid + (size_t)L * ND, g->p[P_LNF],
                     g->lnf_rstd, N, D);
    for (int l = L - 1; l >= 0; l--) {
        float *x = g->resid + l * ND;
        float *ln1 = g->ln1 + l * ND, *r1 = g->ln1_rstd + (size_t)l * N;
        float *qkv = g->qkv + (size_t)l * N * QKV, *att = g->att + (size_t)l * B * H * T * T;
        float *atty = g->atty + l * ND, *mid = g->mid + l * ND;
        float *ln2 = g->ln2 + l * ND, *r2 = g->ln2_rstd + (size_t)l * N;
        float *h13 = g->h13 + (size_t)l * N * 2 * F, *hact = g->hact + (size_t)l * N * F;
        size_t lw[4];
        for (int k = 0; k < 4; k++) lw[k] = (size_t)l * y->rows[lin_tensor[k]] * y->cols[lin_tensor[k]];
        /* MLP */
        matmul_backward(g, g->dhact, g->g[P_W2] + lw[3], g->dx, hact, weights_for(g, P_W2, qat, l), N, F, D);
        swiglu_backward(g->dh13, g->dhact, h13, N, F);
        matmul_backward(g, g->dln, g->g[P_W13] + lw[2], g->dh13, ln2, weights_for(g, P_W13, qat, l), N, D, 2 * F);
        rmsnorm_backward(g, g->dx, g->g[P_LN2] + (size_t)l * D, g->dln, mid, g->p[P_LN2] + (size_t)l * D, r2, N, D);
        /* attention */
        matmul_backward(g, g->datty, g->g[P_WO] + lw[1], g->dx, atty, weights_for(g, P_WO, qat, l), N, D, D);
        attention_backward(g, g->dqkv, g->datty, att, qkv, B);
        rope(g, g->dqkv, N, 1);
        matmul_backward(g, g->dln, g->g[P_WQKV] + lw[0], g->dqkv, ln1, weights_for(g, P_WQKV, qat, l), N, D, QKV);
        rmsnorm_backward(g, g->dx, g->g[P_LN1] + (size_t)l * D, g->dln, x, g->p[P_LN1] + (size_t)l * D, r1, N, D);
    }
    embed_backward(g, g->g[P_WTE], g->dx, N, D, V);
}

