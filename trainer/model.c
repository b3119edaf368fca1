/* model.c: parameter layout, allocation, initialisation, the block and whole-model forward
 * and backward passes, and the quantization passes (llm.c style: one allocation per tensor
 * family). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

const model_linear model_linears[4] = {
    {P_WQKV, P_S_QKV, P_Z_QKV, 0, 0},
    {P_WO, P_S_O, P_Z_O, 0, 0},
    {P_W13, P_S_13, P_Z_13, 0, 0},
    {P_W2, P_S_2, P_Z_2, 0, 0},
};

uint64_t train_rng_next(uint64_t *state)
{
    return qp_rng_next(state); /* one word of state: trivially saved in the resumable state */
}

float train_rng_normal(uint64_t *state)
{
    double u1 = ((double)(train_rng_next(state) >> 11) + 0.5) * 0x1.0p-53;
    double u2 = (double)(train_rng_next(state) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

size_t model_scale_count(const model *m, size_t rows, size_t cols)
{
    if (m->q.kind == TRAIN_Q_NONE) return 0;
    if (m->q.kind == TRAIN_Q_ASYM && m->q.group_size > 0 && (size_t)m->q.group_size < cols)
        return rows * (cols / (size_t)m->q.group_size);
    return rows;
}

/* What alloc_floats takes for n floats: at least one, rounded up to 64 bytes. */
static double alloc_size(size_t n) { return (double)(((n ? n : 1) * sizeof(float) + 63) / 64 * 64); }

static void *alloc_floats(size_t n, double *bytes)
{
    size_t b = (size_t)alloc_size(n);
    void *p = aligned_alloc(64, b);
    if (p) memset(p, 0, b);
    if (p && bytes) *bytes += (double)b;
    return p;
}

void model_act_counts(const train_shape *s, int B, int T, double out[MODEL_NACTS])
{
    double L = s->n_layer, D = s->d_model, F = s->d_ff, V = s->vocab, H = s->n_head;
    double QKV = D + 2 * (D / H) * s->n_kv_head, N = (double)B * T;
    const double n[MODEL_NACTS] = {MODEL_ACT_TENSORS(MODEL_X_COUNT)};
    memcpy(out, n, sizeof n);
}

void model_layout(model *m, const train_shape *s, const train_qspec *q, int B, int T)
{
    memset(m, 0, sizeof *m);
    m->s = *s;
    m->q = *q;
    m->B = B;
    m->T = T;
    size_t L = (size_t)s->n_layer, D = (size_t)s->d_model, F = (size_t)s->d_ff, V = (size_t)s->vocab;
    size_t hd = D / (size_t)s->n_head, Dkv = hd * (size_t)s->n_kv_head;
    size_t QKV = D + 2 * Dkv;
    m->qkv_rows = (int)QKV;
    size_t lin_r[4] = {QKV, D, 2 * F, D}, lin_c[4] = {D, D, D, F};
    const model_tdesc base[8] = {
        {"embed", 0, V, D, 1},       {"attn_norm", 1, D, 1, 0}, {"wqkv", 1, QKV, D, 1},
        {"wo", 1, D, D, 1},          {"mlp_norm", 1, D, 1, 0},  {"w13", 1, 2 * F, D, 1},
        {"w2", 1, D, F, 1},          {"final_norm", 0, D, 1, 0},
    };
    for (int i = 0; i < 8; i++) m->desc[i] = base[i];
    m->desc[P_S_WTE] = (model_tdesc){"embed.scale", 0, q->embed_bits > 0 ? V : 0, 1, 0};
    static const char *sn[4] = {"wqkv.scale", "wo.scale", "w13.scale", "w2.scale"};
    static const char *zn[4] = {"wqkv.zero", "wo.zero", "w13.zero", "w2.zero"};
    for (int k = 0; k < 4; k++) {
        size_t ns = model_scale_count(m, lin_r[k], lin_c[k]);
        m->desc[P_S_QKV + k] = (model_tdesc){sn[k], 1, ns, 1, 0};
        m->desc[P_Z_QKV + k] = (model_tdesc){zn[k], 1, q->kind == TRAIN_Q_ASYM ? ns : 0, 1, 0};
    }
    size_t off = 0;
    for (int i = 0; i < MODEL_NT; i++) {
        m->numel[i] = (m->desc[i].layered ? L : 1) * m->desc[i].rows * m->desc[i].cols;
        m->off[i] = off;
        off += m->numel[i];
    }
    m->n_floats = off;
    m->fam_hi = m->n_grads = off; /* the full layout's */
#define MODEL_X_SUM(f, n) +(n)
    m->n_qw = 0 MODEL_QW_TENSORS(MODEL_X_SUM);
#undef MODEL_X_SUM
}

void model_arena_of(const model *lay, int lean, model_arena *a)
{
    a->params = lay->n_floats;
    if (!lean) {
        a->grads = a->moments = lay->n_floats;
        a->qw = lay->n_qw;
        a->fam_lo = 0;
        a->fam_hi = lay->n_floats;
        return;
    }
    /* the block linears' step sizes (P_S_WTE is empty without --embed-bits) */
    a->fam_lo = lay->off[P_S_WTE];
    a->fam_hi = lay->off[P_Z_QKV];
    a->moments = a->fam_hi - a->fam_lo;
    a->grads = a->moments + lay->numel[P_LN1] + lay->numel[P_LN2] + lay->numel[P_LNF];
    for (int k = 0; k < 4; k++) a->grads += lay->numel[model_linears[k].tensor] / (size_t)lay->s.n_layer;
    a->qw = lay->q.embed_bits > 0 ? lay->numel[P_WTE] : 0;
}

/* Floats of the activation allocation (each buffer rounded to 16 floats); 0 when too large. */
static size_t acts_floats(const train_shape *s, int B, int T, size_t acts_n[MODEL_NACTS])
{
    double acts_d[MODEL_NACTS];
    model_act_counts(s, B, T, acts_d);
    size_t na = 0;
    for (int i = 0; i < MODEL_NACTS; i++) {
        if (!(acts_d[i] < 0x1p60)) return 0; /* train_memory_need refuses such sizes first */
        acts_n[i] = (size_t)acts_d[i];
        na += (acts_n[i] + 15) / 16 * 16;
    }
    return na;
}

double model_arena_bytes(const model *lay, int lean, int threads)
{
    model_arena a;
    model_arena_of(lay, lean, &a);
    size_t acts_n[MODEL_NACTS], hd = (size_t)(lay->s.d_model / lay->s.n_head), T = (size_t)lay->T;
    return alloc_size(a.params) + alloc_size(a.grads) + 2 * alloc_size(a.moments) + alloc_size(a.qw) +
           alloc_size(acts_floats(&lay->s, lay->B, lay->T, acts_n)) + 2 * alloc_size(T * hd / 2) +
           alloc_size((size_t)threads * T * T);
}

/* The named pointers into the families (full or lean layout). */
static void set_pointers(model *m)
{
    memset(&m->g, 0, sizeof m->g);
    for (int i = 0; i < MODEL_NT; i++) {
        m->p.t[i] = m->params_mem + m->off[i];
        if (!m->lean) m->g.t[i] = m->grads_mem + m->off[i];
    }
    if (!m->lean) {
        m->dw_layer = NULL;
        size_t L = (size_t)m->s.n_layer, D = (size_t)m->s.d_model, F = (size_t)m->s.d_ff, V = (size_t)m->s.vocab;
        size_t QKV = (size_t)m->qkv_rows;
        float *qp = m->qw_mem;
#define MODEL_X_CARVE(f, n) m->qw.f = qp, qp += (n);
        MODEL_QW_TENSORS(MODEL_X_CARVE)
#undef MODEL_X_CARVE
        return;
    }
    float *g = m->grads_mem;
    for (int i = P_S_WTE; i <= P_S_2; i++) m->g.t[i] = g + (m->off[i] - m->fam_lo);
    g += m->fam_hi - m->fam_lo;
    static const int norms[3] = {P_LN1, P_LN2, P_LNF};
    for (int k = 0; k < 3; k++) m->g.t[norms[k]] = g, g += m->numel[norms[k]];
    m->dw_layer = g;
    for (int k = 0; k < 4; k++) {
        int i = model_linears[k].tensor;
        m->g.t[i] = g;
        g += m->numel[i] / (size_t)m->s.n_layer;
    }
    m->qw.wte = m->q.embed_bits > 0 ? m->qw_mem : NULL;
    m->qw.wqkv = m->p.wqkv;
    m->qw.wo = m->p.wo;
    m->qw.w13 = m->p.w13;
    m->qw.w2 = m->p.w2;
}

static qp_status create(model *m, const train_shape *s, const train_qspec *q, int B, int T, int lean,
                        qp_error *err)
{
    model_layout(m, s, q, B, T);
    size_t acts_n[MODEL_NACTS], na = acts_floats(s, B, T, acts_n);
    if (!na)
        return qp_fail(err, QP_ERR_NOMEM, "the activations for batch %d x context %d do not fit "
                                          "in memory; use a smaller --batch or --context", B, T);
    model_arena a;
    model_arena_of(m, lean, &a);
    size_t hd = (size_t)(s->d_model / s->n_head);
    double *b = &m->alloc_bytes;
    m->lean = lean;
    m->fam_lo = a.fam_lo;
    m->fam_hi = a.fam_hi;
    m->n_grads = a.grads;
    m->params_mem = alloc_floats(a.params, b);
    m->grads_mem = alloc_floats(a.grads, b);
    m->m_mem = alloc_floats(a.moments, b);
    m->v_mem = alloc_floats(a.moments, b);
    m->qw_mem = alloc_floats(a.qw, b);
    m->acts_mem = alloc_floats(na, b);
    m->rope_cos = alloc_floats((size_t)T * hd / 2, b);
    m->rope_sin = alloc_floats((size_t)T * hd / 2, b);
    m->scratch_threads = omp_get_max_threads();
    m->att_scratch = alloc_floats((size_t)m->scratch_threads * T * T, b);
    if (!m->params_mem || !m->grads_mem || !m->m_mem || !m->v_mem || !m->qw_mem || !m->acts_mem ||
        !m->rope_cos || !m->rope_sin || !m->att_scratch) {
        double gib = model_arena_bytes(m, lean, m->scratch_threads) / 1073741824.0;
        model_free(m);
        return qp_fail(err, QP_ERR_NOMEM,
                       "cannot allocate %.2f GiB for the model and its activations; use a smaller "
                       "--batch, --context or model",
                       gib);
    }
    set_pointers(m);
    float *ap = m->acts_mem;
#define MODEL_X_ADDR(f, n) &m->a.f,
    float **dst[MODEL_NACTS] = {MODEL_ACT_TENSORS(MODEL_X_ADDR)};
#undef MODEL_X_ADDR
    for (size_t i = 0; i < MODEL_NACTS; i++) {
        *dst[i] = ap;
        ap += (acts_n[i] + 15) / 16 * 16;
    }
    layer_rope_tables(m->rope_cos, m->rope_sin, T, (int)hd);
    return QP_OK;
}

qp_status model_create(model *m, const train_shape *s, const train_qspec *q, int B, int T, qp_error *err)
{
    return create(m, s, q, B, T, 0, err);
}

qp_status model_create_lean(model *m, const train_shape *s, const train_qspec *q, int B, int T,
                            qp_error *err)
{
    return create(m, s, q, B, T, 1, err);
}

qp_status model_make_lean(model *m, qp_error *err)
{
    if (m->lean) return QP_OK;
    model_arena a, o;
    model_arena_of(m, 1, &a);
    model_arena_of(m, 0, &o);
    double nb = 0;
    float *g = alloc_floats(a.grads, &nb), *mm = alloc_floats(a.moments, &nb), *vv = alloc_floats(a.moments, &nb);
    float *qw = alloc_floats(a.qw, &nb);
    if (!g || !mm || !vv || !qw) {
        free(g), free(mm), free(vv), free(qw);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for E2E-QP's step-size state");
    }
    memcpy(mm, m->m_mem + a.fam_lo, a.moments * sizeof *mm);
    memcpy(vv, m->v_mem + a.fam_lo, a.moments * sizeof *vv);
    if (a.qw) memcpy(qw, m->qw.wte, a.qw * sizeof *qw);
    free(m->grads_mem), free(m->m_mem), free(m->v_mem), free(m->qw_mem);
    m->alloc_bytes += nb - (alloc_size(o.grads) + 2 * alloc_size(o.moments) + alloc_size(o.qw));
    m->grads_mem = g, m->m_mem = mm, m->v_mem = vv, m->qw_mem = qw;
    m->lean = 1;
    m->fam_lo = a.fam_lo;
    m->fam_hi = a.fam_hi;
    m->n_grads = a.grads;
    set_pointers(m);
    return QP_OK;
}

void model_zero_moments(model *m)
{
    memset(m->m_mem, 0, (m->fam_hi - m->fam_lo) * sizeof(float));
    memset(m->v_mem, 0, (m->fam_hi - m->fam_lo) * sizeof(float));
}

void model_free(model *m)
{
    if (!m) return;
    free(m->params_mem);
    free(m->grads_mem);
    free(m->m_mem);
    free(m->v_mem);
    free(m->qw_mem);
    free(m->acts_mem);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->att_scratch);
    efqat_free(m);
    memset(m, 0, sizeof *m);
}

void model_init(model *m, uint64_t seed)
{
    uint64_t st = seed * 0x2545F4914F6CDD1Dull + 1;
    float std_out = 0.02f / sqrtf(2.0f * (float)m->s.n_layer);
    for (int i = 0; i < MODEL_NT; i++) {
        float *p = m->p.t[i];
        size_t n = m->numel[i];
        if (i == P_LN1 || i == P_LN2 || i == P_LNF || (i >= P_S_WTE && i <= P_S_2)) {
            for (size_t j = 0; j < n; j++) p[j] = 1.0f;
        } else if (i >= P_Z_QKV) {
            for (size_t j = 0; j < n; j++) p[j] = 0.0f;
        } else {
            float sd = (i == P_WO || i == P_W2) ? std_out : 0.02f;
            for (size_t j = 0; j < n; j++) p[j] = sd * train_rng_normal(&st);
        }
    }
    model_zero_moments(m);
}

void model_zero_grad(model *m) { memset(m->grads_mem, 0, m->n_grads * sizeof(float)); }

/* Per-layer slice of a layered tensor. */
static inline float *lay(const model *m, float *base, int i, int l)
{
    return base + (size_t)l * m->desc[i].rows * m->desc[i].cols;
}

static float *weights_for(model *m, int i)
{
    if (!m->qat) return m->p.t[i];
    switch (i) {
    case P_WQKV: return m->qw.wqkv;
    case P_WO: return m->qw.wo;
    case P_W13: return m->qw.w13;
    case P_W2: return m->qw.w2;
    default: return m->p.t[i];
    }
}

static float *quant_buf(model *m, int i)
{
    switch (i) {
    case P_WQKV: return m->qw.wqkv;
    case P_WO: return m->qw.wo;
    case P_W13: return m->qw.w13;
    default: return m->qw.w2;
    }
}

void model_quantize(model *m)
{
    if (m->qat && m->q.kind != TRAIN_Q_NONE) {
        for (int k = 0; k < 4; k++) {
            const model_linear *ln = &model_linears[k];
            int i = ln->tensor;
            size_t R = m->desc[i].rows, C = m->desc[i].cols;
            for (int l = 0; l < m->s.n_layer; l++)
                quant_forward(m->q.kind, m->q.bits, m->q.group_size, lay(m, m->p.t[i], i, l),
                              lay(m, quant_buf(m, i), i, l), R, C,
                              lay(m, m->p.t[ln->scale], ln->scale, l),
                              m->q.kind == TRAIN_Q_ASYM ? lay(m, m->p.t[ln->zero], ln->zero, l) : NULL);
        }
    }
    if (m->qat_embed && m->q.embed_bits > 0)
        quant_forward(TRAIN_Q_LSQ, m->q.embed_bits, 0, m->p.wte, m->qw.wte, (size_t)m->s.vocab,
                      (size_t)m->s.d_model, m->p.s_wte, NULL);
    /* EfQAT: frozen rows from their fixed codes (the forward's products are unchanged) */
    if (m->efq && m->qat && m->q.kind != TRAIN_Q_NONE)
        for (int k = 0; k < 4; k++) efqat_forward_codes(m, quant_buf(m, model_linears[k].tensor), k);
    if (m->efq && m->qat_embed && m->q.embed_bits > 0) efqat_forward_codes(m, m->qw.wte, 4);
}

void model_quant_init(model *m)
{
    if (m->q.kind != TRAIN_Q_NONE) {
        for (int k = 0; k < 4; k++) {
            const model_linear *ln = &model_linears[k];
            int i = ln->tensor;
            size_t R = m->desc[i].rows, C = m->desc[i].cols;
            for (int l = 0; l < m->s.n_layer; l++)
                quant_init(m->q.kind, m->q.bits, m->q.group_size, lay(m, m->p.t[i], i, l), R, C,
                           lay(m, m->p.t[ln->scale], ln->scale, l),
                           m->q.kind == TRAIN_Q_ASYM ? lay(m, m->p.t[ln->zero], ln->zero, l) : NULL);
        }
    }
    if (m->q.embed_bits > 0)
        quant_init(TRAIN_Q_LSQ, m->q.embed_bits, 0, m->p.wte, (size_t)m->s.vocab,
                   (size_t)m->s.d_model, m->p.s_wte, NULL);
}

void model_quant_backward(model *m)
{
    if (m->qat && m->q.kind != TRAIN_Q_NONE) {
        for (int k = 0; k < 4; k++) {
            const model_linear *ln = &model_linears[k];
            int i = ln->tensor;
            size_t R = m->desc[i].rows, C = m->desc[i].cols;
            int asym = m->q.kind == TRAIN_Q_ASYM;
            for (int l = 0; l < m->s.n_layer; l++) {
                const float *w = lay(m, m->p.t[i], i, l), *s = lay(m, m->p.t[ln->scale], ln->scale, l);
                const float *z = asym ? lay(m, m->p.t[ln->zero], ln->zero, l) : NULL;
                float *g = lay(m, m->g.t[i], i, l), *ds = lay(m, m->g.t[ln->scale], ln->scale, l);
                float *dz = asym ? lay(m, m->g.t[ln->zero], ln->zero, l) : NULL;
                if (m->efq) efqat_quant_backward(m, k, l, w, g, s, z, ds, dz); /* EfQAT: unfrozen rows only */
                else quant_backward(m->q.kind, m->q.bits, m->q.group_size, w, g, R, C, s, z, ds, dz);
            }
        }
    }
    if (m->qat_embed && m->q.embed_bits > 0) {
        if (m->efq && m->qat) efqat_quant_backward(m, 4, 0, m->p.wte, m->g.wte, m->p.s_wte, NULL, m->g.s_wte, NULL);
        else quant_backward(TRAIN_Q_LSQ, m->q.embed_bits, 0, m->p.wte, m->g.wte, (size_t)m->s.vocab,
                            (size_t)m->s.d_model, m->p.s_wte, NULL, m->g.s_wte, NULL);
    }
}

void model_block_forward(model *m, int l, const float *x, float *y, int B, int T)
{
    int D = m->s.d_model, F = m->s.d_ff, H = m->s.n_head;
    int Hkv = m->s.n_kv_head, hd = D / H, QKV = m->qkv_rows, N = B * T;
    model_acts *a = &m->a;
    float *ln1 = a->ln1 + (size_t)l * N * D, *r1 = a->ln1_rstd + (size_t)l * N;
    float *qkv = a->qkv + (size_t)l * N * QKV, *att = a->att + (size_t)l * B * H * T * T;
    float *atty = a->atty + (size_t)l * N * D, *mid = a->mid + (size_t)l * N * D;
    float *ln2 = a->ln2 + (size_t)l * N * D, *r2 = a->ln2_rstd + (size_t)l * N;
    float *h13 = a->h13 + (size_t)l * N * 2 * F, *hact = a->hact + (size_t)l * N * F;
    layer_rmsnorm_forward(ln1, r1, x, m->p.ln1 + (size_t)l * D, N, D);
    layer_matmul_forward(qkv, ln1, lay(m, weights_for(m, P_WQKV), P_WQKV, l), N, D, QKV);
    layer_rope(qkv, m->rope_cos, m->rope_sin, B, T, H, Hkv, hd, 0);
    layer_attention_forward(atty, att, qkv, B, T, H, Hkv, hd);
    layer_matmul_forward(mid, atty, lay(m, weights_for(m, P_WO), P_WO, l), N, D, D);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < (size_t)N * D; j++) mid[j] += x[j];
    layer_rmsnorm_forward(ln2, r2, mid, m->p.ln2 + (size_t)l * D, N, D);
    layer_matmul_forward(h13, ln2, lay(m, weights_for(m, P_W13), P_W13, l), N, D, 2 * F);
    layer_swiglu_forward(hact, h13, N, F);
    layer_matmul_forward(y, hact, lay(m, weights_for(m, P_W2), P_W2, l), N, F, D);
#pragma omp parallel for schedule(static)
    for (size_t j = 0; j < (size_t)N * D; j++) y[j] += mid[j];
}

float model_forward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T)
{
    int L = m->s.n_layer, D = m->s.d_model, V = m->s.vocab, N = B * T;
    model_acts *a = &m->a;
    const float *wte = (m->qat_embed && m->q.embed_bits > 0) ? m->qw.wte : m->p.wte;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(a->resid + (size_t)n * D, wte + (size_t)inp[n] * D, D * sizeof(float));
    for (int l = 0; l < L; l++)
        model_block_forward(m, l, a->resid + (size_t)l * N * D, a->resid + (size_t)(l + 1) * N * D, B, T);
    layer_rmsnorm_forward(a->lnf, a->lnf_rstd, a->resid + (size_t)L * N * D, m->p.lnf, N, D);
    layer_matmul_forward(a->probs, a->lnf, wte, N, D, V);
    if (!tgt) return NAN;
    return layer_softmax_xent_forward(a->probs, a->losses, tgt, N, V);
}

/* The backward of linear k of layer l: every row's dW, or EfQAT's unfrozen rows' only (dout
 * compact: ldo == R). */
static void lin_backward(model *m, int k, int l, float *dinp, const float *dout, int ldo, const float *inp,
                         int N, int C, int R)
{
    int i = model_linears[k].tensor;
    float *dw = m->dw_layer ? m->g.t[i] : lay(m, m->g.t[i], i, l); /* lean: one layer's scratch */
    const float *w = lay(m, weights_for(m, i), i, l);
    if (m->efq && m->qat) efqat_linear_backward(m, k, l, dinp, dw, dout, inp, w, N, C, R);
    else layer_matmul_backward_ld(dinp, dw, dout, ldo, inp, w, N, C, R);
}

/* dh13's row stride: 2F, padded by MODEL_DH13_PAD floats where 2F floats are a multiple of
 * 2 KiB. w13's dW product reads dh13 transposed, and rows 4 or 8 KiB apart fall into the
 * same few L1 sets: oneDNN's sgemm ran it 7% slower unpadded at (8, 384), F 1024. EfQAT's
 * row subsets and side jobs read dY compact: no pad there. */
static int dh13_ld(const model *m)
{
    int F2 = 2 * m->s.d_ff;
    return F2 % 512 == 0 && !(m->efq && m->qat) ? F2 + MODEL_DH13_PAD : F2;
}

/* EfQAT's side job for linear k of layer l (k 4: the head) on the pass that produces its dY
 * at dy, Y = y - ysub (efqat_side); NULL: none (plain QAT, or nothing frozen there). After
 * the pass, side_done. */
static const layer_side *side_for(model *m, int k, int l, const float *dy, const float *y, const float *ysub)
{
    return m->efq && m->qat ? efqat_side(m, k, l, dy, y, ysub) : NULL;
}

static void side_done(model *m, const layer_side *sd)
{
    if (sd) efqat_side_finish(m);
}

/* model_block_backward; chain: the whole-model backward (x is block l-1's output, whose mid
 * is in its slice): the input norm's pass, which finishes d(x), runs block l-1's w2 side job
 * (EfQAT: its Y = x - mid), as model_backward's final norm does for the last block. */
static void block_backward(model *m, int l, const float *x, int chain, float *dx, int B, int T, int need_dx)
{
    int D = m->s.d_model, F = m->s.d_ff, H = m->s.n_head;
    int Hkv = m->s.n_kv_head, hd = D / H, QKV = m->qkv_rows, N = B * T;
    model_acts *a = &m->a;
    float *ln1 = a->ln1 + (size_t)l * N * D, *r1 = a->ln1_rstd + (size_t)l * N;
    float *qkv = a->qkv + (size_t)l * N * QKV, *att = a->att + (size_t)l * B * H * T * T;
    float *atty = a->atty + (size_t)l * N * D, *mid = a->mid + (size_t)l * N * D;
    float *ln2 = a->ln2 + (size_t)l * N * D, *r2 = a->ln2_rstd + (size_t)l * N;
    float *h13 = a->h13 + (size_t)l * N * 2 * F, *hact = a->hact + (size_t)l * N * F;
    const layer_side *sd;
    /* MLP: y = mid + swiglu(rms(mid) W13^T) W2^T; dx becomes d(mid). EfQAT's side jobs (frozen
     * rows' step sizes, unfrozen rows' dY columns) ride on the pass that writes each dY: w13's
     * Y is h13, wo's mid - x, wqkv's the stored qkv with RoPE undone */
    int ldd = dh13_ld(m);
    lin_backward(m, 3, l, a->dhact, dx, D, hact, N, F, D);
    layer_swiglu_backward_ld(a->dh13, ldd, a->dhact, h13, N, F, sd = side_for(m, 2, l, a->dh13, h13, NULL));
    side_done(m, sd);
    lin_backward(m, 2, l, a->dln, a->dh13, ldd, ln2, N, D, 2 * F);
    layer_rmsnorm_backward_side(dx, m->g.ln2 + (size_t)l * D, a->dln, mid, m->p.ln2 + (size_t)l * D, r2, N, D,
                                sd = side_for(m, 1, l, dx, mid, x));
    side_done(m, sd);
    /* attention: mid = x + attn(rms(x)) Wo^T; dx becomes d(x). wqkv's dX product stays with
     * need_dx = 0: it feeds the attn_norm gain's gradient. */
    lin_backward(m, 1, l, a->datty, dx, D, atty, N, D, D);
    memset(a->dqkv, 0, (size_t)N * QKV * sizeof(float));
    layer_attention_backward(a->dqkv, a->datty, att, qkv, B, T, H, Hkv, hd,
                             omp_get_max_threads() <= m->scratch_threads ? m->att_scratch : NULL);
    layer_rope_side(a->dqkv, m->rope_cos, m->rope_sin, B, T, H, Hkv, hd, 1, sd = side_for(m, 0, l, a->dqkv, qkv, NULL));
    side_done(m, sd);
    lin_backward(m, 0, l, a->dln, a->dqkv, QKV, ln1, N, D, QKV);
    sd = chain && need_dx && l > 0 ? side_for(m, 3, l - 1, dx, x, a->mid + (size_t)(l - 1) * N * D) : NULL;
    layer_rmsnorm_backward_side(need_dx ? dx : NULL, m->g.ln1 + (size_t)l * D, a->dln, x, m->p.ln1 + (size_t)l * D, r1,
                                N, D, sd);
    side_done(m, sd);
}

void model_block_backward(model *m, int l, const float *x, float *dx, int B, int T, int need_dx)
{
    block_backward(m, l, x, 0, dx, B, T, need_dx);
}

void model_backward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T)
{
    int L = m->s.n_layer, D = m->s.d_model, V = m->s.vocab, N = B * T;
    model_acts *a = &m->a;
    const float *wte = (m->qat_embed && m->q.embed_bits > 0) ? m->qw.wte : m->p.wte;
    const layer_side *sd = side_for(m, 4, 0, a->probs, NULL, NULL);
    layer_softmax_xent_backward_side(a->probs, tgt, N, V, sd);
    side_done(m, sd);
    if (m->efq && m->qat) efqat_linear_backward(m, 4, 0, a->dln, m->g.wte, a->probs, a->lnf, wte, N, D, V);
    else layer_matmul_backward(a->dln, m->g.wte, a->probs, a->lnf, wte, N, D, V);
    memset(a->dx, 0, (size_t)N * D * sizeof(float));
    /* d(block output): the last block's w2 side job (Y = its output - mid) */
    const float *yL = a->resid + (size_t)L * N * D;
    sd = side_for(m, 3, L - 1, a->dx, yL, a->mid + (size_t)(L - 1) * N * D);
    layer_rmsnorm_backward_side(a->dx, m->g.lnf, a->dln, yL, m->p.lnf, a->lnf_rstd, N, D, sd);
    side_done(m, sd);
    for (int l = L - 1; l >= 0; l--) block_backward(m, l, a->resid + (size_t)l * N * D, 1, a->dx, B, T, 1);
    /* embedding rows: serial over tokens (rows repeat), vectorised over D; EfQAT's frozen rows
     * get none (AdamW skips them, and the gradient norm covers trained entries only) */
    int skip = m->efq && m->qat;
    for (int n = 0; n < N; n++) {
        if (skip && efqat_row_frozen(m, 4, inp[n])) continue;
        float *gw = m->g.wte + (size_t)inp[n] * D;
        const float *d = a->dx + (size_t)n * D;
        for (int j = 0; j < D; j++) gw[j] += d[j];
    }
}
