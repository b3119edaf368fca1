/* tensors.h (internal to the trainer): the model's tensors, listed once. Plain C macros (no
 * trainer types), so that model.h and the CUDA sources (compiled as C++ by nvcc) generate
 * their enums, pointer structs and size tables from the same lists and cannot drift apart.
 *
 * Parameter tensors, in storage order: X(ENUM, field). The four block linears per layer are
 * stored fused:
 *   wqkv [L, D + 2*Dkv, D]  rows: q (H*hd), k (Hkv*hd), v (Hkv*hd)
 *   wo   [L, D, D]
 *   w13  [L, 2F, D]         rows: gate (F), up (F)
 *   w2   [L, D, F]
 * s_* are quantizer step sizes (per row, or per group for asym), z_* asym zero points. */
#ifndef TRAIN_TENSORS_H
#define TRAIN_TENSORS_H

#define MODEL_PARAM_TENSORS(X)                                                                    \
    X(WTE, wte) X(LN1, ln1) X(WQKV, wqkv) X(WO, wo) X(LN2, ln2) X(W13, w13) X(W2, w2) X(LNF, lnf) \
    X(S_WTE, s_wte) X(S_QKV, s_qkv) X(S_O, s_o) X(S_13, s_13) X(S_2, s_2)                         \
    X(Z_QKV, z_qkv) X(Z_O, z_o) X(Z_13, z_13) X(Z_2, z_2)

#define MODEL_X_ENUM(E, f) P_##E,
enum { MODEL_PARAM_TENSORS(MODEL_X_ENUM) MODEL_NT };

/* Activation buffers, in allocation order: X(field, floats). The sizes are expressions in
 * L, D, F, V, H, QKV (= D + 2*Dkv), B, T and N (= B*T), which the user of the table has in
 * scope (as doubles on the host, to refuse impossible sizes before converting; size_t on the
 * GPU). Per-layer buffers hold L slices; the backward scratch at the end holds one.
 * resid: the input of each layer, [L] the last block's output; mid: after the attention
 * residual; att: the attention probabilities [L, B, H, T, T]. */
/* dh13's rows may be padded by this many floats (model.c, dh13_ld) */
#define MODEL_DH13_PAD 16
#define MODEL_ACT_TENSORS(X)                                                                   \
    X(resid, (L + 1) * N * D) X(mid, L * N * D) X(ln1, L * N * D) X(ln1_rstd, L * N)            \
    X(qkv, L * N * QKV) X(att, L * B * H * T * T) X(atty, L * N * D) X(ln2, L * N * D)          \
    X(ln2_rstd, L * N) X(h13, L * N * 2 * F) X(hact, L * N * F)                                 \
    X(lnf, N * D) X(lnf_rstd, N) X(probs, N * V) X(losses, N)                                   \
    X(dx, N * D) X(dln, N * D) X(datty, N * D) X(dqkv, N * QKV) X(dh13, N * (2 * F + MODEL_DH13_PAD)) X(dhact, N * F)

#define MODEL_X_ACT_ENUM(f, n) A_##f,
enum { MODEL_ACT_TENSORS(MODEL_X_ACT_ENUM) MODEL_NACTS };

/* The quantized (fake-quant) weights the forward pass uses during QAT, contiguous in this
 * order: X(field, floats), sizes as above. */
#define MODEL_QW_TENSORS(X) \
    X(wte, V * D) X(wqkv, L * QKV * D) X(wo, L * D * D) X(w13, L * 2 * F * D) X(w2, L * D * F)

/* helpers for the users of the tables */
#define MODEL_X_FIELD(f, n) float *f;
#define MODEL_X_PFIELD(E, f) float *f;
#define MODEL_X_COUNT(f, n) (n),

#endif
