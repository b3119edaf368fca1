/* ckpt.c: safetensors checkpoints (PyTorch and the safetensors library read them), the
 * integer export of quantized weights, and the resumable training state. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ckpt.h"

static int dtype_size(const char *dt)
{
    if (!strcmp(dt, "F32") || !strcmp(dt, "I32")) return 4;
    if (!strcmp(dt, "I8") || !strcmp(dt, "U8")) return 1;
    if (!strcmp(dt, "I64") || !strcmp(dt, "F64")) return 8;
    return 0;
}

typedef struct {
    char *b;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = s->cap - s->n;
        va_start(ap, fmt);
        int k = vsnprintf(s->b ? s->b + s->n : NULL, s->b ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { s->oom = 1; return; }
        if (s->b && (size_t)k < room) { s->n += (size_t)k; return; }
        size_t nc = (s->cap ? s->cap * 2 : 4096) + (size_t)k + 1;
        char *nb = realloc(s->b, nc);
        if (!nb) { s->oom = 1; return; }
        s->b = nb;
        s->cap = nc;
    }
}

qp_status st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int n_meta,
                   qp_error *err)
{
    sbuf h = {0};
    sb_add(&h, "{\"__metadata__\":{");
    for (int i = 0; i < n_meta; i++) sb_add(&h, "%s\"%s\":\"%s\"", i ? "," : "", meta[2 * i], meta[2 * i + 1]);
    sb_add(&h, "}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        sb_add(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) {
            sb_add(&h, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
            numel *= (size_t)t[i].shape[d];
        }
        size_t nb = numel * (size_t)dtype_size(t[i].dtype);
        sb_add(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    sb_add(&h, "}");
    while (!h.oom && h.n % 8) sb_add(&h, " "); /* the format allows trailing spaces; keeps data aligned */
    if (h.oom) {
        free(h.b);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    }
    size_t total = 8 + h.n + off;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(h.b);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    }
    uint64_t hl = h.n;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, h.b, h.n);
    unsigned char *p = buf + 8 + h.n;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        size_t nb = numel * (size_t)dtype_size(t[i].dtype);
        if (nb) memcpy(p, t[i].data, nb);
        p += nb;
    }
    free(h.b);
    qp_status st = qp_write_file_atomic(path, buf, total, err);
    free(buf);
    return st;
}

/* Name, shape and data of every parameter tensor, split per layer. Returns the count. */
static int model_tensors(const model *m, const model_params *src, const char *prefix,
                         st_tensor *out, char (*names)[96])
{
    int n = 0;
    for (int i = 0; i < MODEL_NT; i++) {
        const model_tdesc *d = &m->desc[i];
        if (m->numel[i] == 0) continue;
        int nl = d->layered ? m->s.n_layer : 1;
        size_t per = d->rows * d->cols;
        for (int l = 0; l < nl; l++) {
            if (d->layered) snprintf(names[n], 96, "%slayers.%d.%s", prefix, l, d->name);
            else snprintf(names[n], 96, "%s%s", prefix, d->name);
            out[n].name = names[n];
            out[n].dtype = "F32";
            out[n].ndim = d->cols == 1 ? 1 : 2;
            out[n].shape[0] = (int64_t)d->rows;
            out[n].shape[1] = (int64_t)d->cols;
            out[n].data = src->t[i] + (size_t)l * per;
            n++;
        }
    }
    return n;
}

static void model_meta(const model *m, char (*vals)[64], const char **kv, int *n)
{
    const char *keys[] = {"format", "n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "context",
                          "vocab", "quantizer", "bits", "group_size", "embed_bits", "rope_theta",
                          "norm_eps", "code_version"};
    int k = 0;
    snprintf(vals[k++], 64, "qatplan-llama-v1");
    snprintf(vals[k++], 64, "%d", m->s.n_layer);
    snprintf(vals[k++], 64, "%d", m->s.d_model);
    snprintf(vals[k++], 64, "%d", m->s.n_head);
    snprintf(vals[k++], 64, "%d", m->s.n_kv_head);
    snprintf(vals[k++], 64, "%d", m->s.d_ff);
    snprintf(vals[k++], 64, "%d", m->s.context);
    snprintf(vals[k++], 64, "%d", m->s.vocab);
    snprintf(vals[k++], 64, "%s", train_quantizer_name(m->q.kind));
    snprintf(vals[k++], 64, "%d", m->q.bits);
    snprintf(vals[k++], 64, "%d", m->q.group_size);
    snprintf(vals[k++], 64, "%d", m->q.embed_bits);
    snprintf(vals[k++], 64, "10000");
    snprintf(vals[k++], 64, "1e-5");
    snprintf(vals[k++], 64, "%s", qp_version());
    for (int i = 0; i < k; i++) {
        kv[2 * i] = keys[i];
        kv[2 * i + 1] = vals[i];
    }
    *n = k;
}

/* EfQAT's frozen-row masks: layers.{l}.{name}.frozen (U8 per row, 1 = frozen), embed.frozen. */
static int efqat_masks(const model *m, st_tensor *t, char (*names)[96])
{
    if (!m->efq) return 0;
    int n = 0;
    for (int k = 0; k < EFQ_NT; k++) {
        int i = k < 4 ? model_linears[k].tensor : P_WTE;
        const model_tdesc *d = &m->desc[i];
        for (int l = 0; l < (d->layered ? m->s.n_layer : 1); l++, n++) {
            size_t rows;
            const uint8_t *mask = efqat_layer_mask(m, k, l, &rows);
            if (d->layered) snprintf(names[n], 96, "layers.%d.%s.frozen", l, d->name);
            else snprintf(names[n], 96, "%s.frozen", d->name);
            t[n] = (st_tensor){names[n], "U8", 1, {(int64_t)rows, 0, 0}, mask};
        }
    }
    return n;
}

static qp_status write_model(const char *path, const model *m, const model_params *grads,
                             const st_tensor *extra, int n_extra, const char *const *xmeta, int n_xmeta,
                             qp_error *err)
{
    int cap = MODEL_NT * (m->s.n_layer + 1) * 2 + n_extra + 4 + (m->efq ? EFQ_NT * m->s.n_layer + 1 : 0);
    st_tensor *t = calloc((size_t)cap, sizeof *t);
    char(*names)[96] = calloc((size_t)cap, sizeof *names);
    if (!t || !names) {
        free(t);
        free(names);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    }
    int n = model_tensors(m, &m->p, "", t, names);
    if (grads) n += model_tensors(m, grads, "grad.", t + n, names + n);
    for (int i = 0; i < n_extra; i++) t[n++] = extra[i];
    n += efqat_masks(m, t + n, names + n);
    char vals[20][64];
    const char *kv[48];
    int nk;
    model_meta(m, vals, kv, &nk);
    for (int i = 0; i < n_xmeta && nk < 24; i++, nk++) {
        kv[2 * nk] = xmeta[2 * i];
        kv[2 * nk + 1] = xmeta[2 * i + 1];
    }
    qp_status st = st_write(path, t, n, kv, nk, err);
    free(t);
    free(names);
    return st;
}

/* The codes of the four block linears, their scales and (asym) the integer zero points the
 * forward pass used, into t/names from index 0; codes into cp, zeros into zp. Returns the
 * tensor count; *bits_sum: storage bits of codes, scales and zeros, *weights: their count. */
static int export_linears(const model *m, st_tensor *t, char (*names)[96], int8_t *cp, uint8_t *zp,
                          double *bits_sum, double *weights)
{
    int n = 0, L = m->s.n_layer, asym = m->q.kind == TRAIN_Q_ASYM, b = m->q.bits;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        const model_tdesc *d = &m->desc[ln->tensor];
        size_t R = d->rows, C = d->cols, ns = m->desc[ln->scale].rows, G = C / (ns / R);
        /* b-bit codes (and zeros) as packed for inference; the scales as written: F32 */
        *bits_sum += (double)L * ((double)(R * C) * b + (double)ns * (32 + (asym ? b : 0)));
        *weights += (double)L * (double)(R * C);
        for (int l = 0; l < L; l++) {
            const float *w = m->p.t[ln->tensor] + (size_t)l * R * C;
            const float *s = m->p.t[ln->scale] + (size_t)l * ns;
            const float *z = asym ? m->p.t[ln->zero] + (size_t)l * ns : NULL;
            for (size_t r = 0; r < R; r++)
                for (size_t c = 0; c < C; c++) {
                    size_t si = r * (C / G) + c / G;
                    int code = quant_code(m->q.kind, m->q.bits, w[r * C + c], s[si], z ? z[si] : 0);
                    /* asym codes are 0..255 at 8 bits: stored as U8 */
                    cp[r * C + c] = (int8_t)(uint8_t)code;
                }
            snprintf(names[n], 96, "layers.%d.%s.qweight", l, d->name);
            t[n] = (st_tensor){names[n], asym ? "U8" : "I8", 2, {(int64_t)R, (int64_t)C, 0}, cp};
            n++;
            snprintf(names[n], 96, "layers.%d.%s.scale", l, d->name);
            t[n] = (st_tensor){names[n], "F32", 2, {(int64_t)R, (int64_t)(C / G), 0}, s};
            n++;
            if (asym) {
                /* the rounded, clamped integer zero points the forward used, not the latent z */
                for (size_t i = 0; i < ns; i++) zp[i] = (uint8_t)quant_zero(m->q.kind, m->q.bits, z[i]);
                snprintf(names[n], 96, "layers.%d.%s.zero", l, d->name);
                t[n] = (st_tensor){names[n], "U8", 2, {(int64_t)R, (int64_t)(C / G), 0}, zp};
                n++;
                zp += ns;
            }
            cp += R * C;
        }
    }
    return n;
}

qp_status ckpt_write_model(const char *path, const model *m, const model_params *grads,
                           const st_tensor *extra, int n_extra, qp_error *err)
{
    return write_model(path, m, grads, extra, n_extra, NULL, 0, err);
}

qp_status ckpt_write_trained(const char *path, const model *m, double tokens_trained, double tokens_qat,
                             const char *method, qp_error *err)
{
    char tt[40], tq[40];
    snprintf(tt, sizeof tt, "%.17g", tokens_trained);
    snprintf(tq, sizeof tq, "%.17g", tokens_qat);
    char ur[40];
    snprintf(ur, sizeof ur, "%.17g", m->efq ? m->efq->r : 0.0);
    const char *xm[] = {"method", method, "tokens_trained", tt, "tokens_qat", tq, "unfrozen_ratio", ur,
                        "freeze_mode", m->efq ? train_efqat_mode_name(m->efq->mode) : ""};
    return write_model(path, m, NULL, NULL, 0, xm, m->efq ? 5 : 3, err);
}

qp_status ckpt_export_int(const char *path, const model *m, qp_error *err)
{
    if (m->q.kind == TRAIN_Q_NONE && m->q.embed_bits == 0)
        return qp_fail(err, QP_ERR_INPUT, "--export-int needs a quantized model (--bits 1..8 or "
                                          "--embed-bits 4..8)");
    int L = m->s.n_layer, cap = 4 * L * 3 + 2 * L + 8;
    st_tensor *t = calloc((size_t)cap, sizeof *t);
    char(*names)[96] = calloc((size_t)cap, sizeof *names);
    size_t codes_n = 0, zeros_n = 0;
    for (int k = 0; k < 4; k++) {
        codes_n += m->numel[model_linears[k].tensor];
        zeros_n += m->numel[model_linears[k].zero];
    }
    codes_n += m->numel[P_WTE];
    int8_t *codes = malloc(codes_n ? codes_n : 1);
    uint8_t *zeros = malloc(zeros_n ? zeros_n : 1);
    if (!t || !names || !codes || !zeros) {
        free(t);
        free(names);
        free(codes);
        free(zeros);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory exporting %s", path);
    }
    int n = 0;
    int8_t *cp = codes;
    double bits_sum = 0, weights = 0;
    if (m->q.kind != TRAIN_Q_NONE) {
        n = export_linears(m, t, names, cp, zeros, &bits_sum, &weights);
        for (int k = 0; k < 4; k++) cp += m->numel[model_linears[k].tensor];
    }
    size_t V = (size_t)m->s.vocab, D = (size_t)m->s.d_model;
    if (m->q.embed_bits > 0) {
        for (size_t r = 0; r < V; r++)
            for (size_t c = 0; c < D; c++)
                cp[r * D + c] = (int8_t)quant_code(TRAIN_Q_LSQ, m->q.embed_bits, m->p.wte[r * D + c],
                                                   m->p.s_wte[r], 0);
        t[n++] = (st_tensor){"embed.qweight", "I8", 2, {(int64_t)V, (int64_t)D, 0}, cp};
        t[n++] = (st_tensor){"embed.scale", "F32", 2, {(int64_t)V, 1, 0}, m->p.s_wte};
    } else {
        t[n++] = (st_tensor){"embed", "F32", 2, {(int64_t)V, (int64_t)D, 0}, m->p.wte};
    }
    for (int l = 0; l < L; l++) {
        /* norm gains stay in floating point */
        snprintf(names[n], 96, "layers.%d.attn_norm", l);
        t[n] = (st_tensor){names[n], "F32", 1, {(int64_t)D, 0, 0}, m->p.ln1 + (size_t)l * D};
        n++;
        snprintf(names[n], 96, "layers.%d.mlp_norm", l);
        t[n] = (st_tensor){names[n], "F32", 1, {(int64_t)D, 0, 0}, m->p.ln2 + (size_t)l * D};
        n++;
    }
    t[n++] = (st_tensor){"final_norm", "F32", 1, {(int64_t)D, 0, 0}, m->p.lnf};
    char vals[21][64];
    const char *kv[44];
    int nk;
    model_meta(m, vals, kv, &nk);
    kv[2 * nk] = "dequant";
    kv[2 * nk + 1] = m->q.kind == TRAIN_Q_SEQ       ? "w = scale * (q + 0.5) / 2"
                     : m->q.kind == TRAIN_Q_TERNARY ? "w = scale * q / 1.5"
                     : m->q.kind == TRAIN_Q_ASYM    ? "w = (q - zero) * scale"
                                                    : "w = scale * q";
    nk++;
    if (weights > 0) {
        /* the block linears' inference storage per weight (docs/trainer.md, "Files") */
        snprintf(vals[nk], 64, "%.6g", bits_sum / weights);
        kv[2 * nk] = "storage_bits_per_weight";
        kv[2 * nk + 1] = vals[nk];
        nk++;
    }
    qp_status st = st_write(path, t, n, kv, nk, err);
    free(t);
    free(names);
    free(codes);
    free(zeros);
    return st;
}


/* ---- reading a checkpoint back (--init) ------------------------------------------------ */

/* The safetensors header of path as JSON, with the file's bytes (the caller frees both). */
static qp_status st_read(const char *path, cJSON **hdr, char **bytes, size_t *len, size_t *data_at,
                         qp_error *err)
{
    *hdr = NULL;
    qp_error e = {0};
    if (qp_read_file(path, bytes, len, &e))
        return qp_fail(err, QP_ERR_INPUT, "--init: %s; check the checkpoint's path", e.msg);
    const unsigned char *b = (const unsigned char *)*bytes;
    uint64_t hl = 0;
    for (int i = 0; i < 8 && *len >= 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    if (*len < 8 || hl > *len - 8 || hl > (1u << 26) || !(*hdr = cJSON_ParseWithLength(*bytes + 8, (size_t)hl)) ||
        !cJSON_IsObject(*hdr))
        return qp_fail(err, QP_ERR_INPUT, "--init %s: not a safetensors file; use a checkpoint written by "
                                          "qatplan train --checkpoint", path);
    *data_at = 8 + (size_t)hl;
    return QP_OK;
}

static const char *meta_str(const cJSON *hdr, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__"), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The checkpoint's shape against this run's: the message names the option to change. */
static qp_status check_init_shape(const char *path, const cJSON *hdr, const train_shape *s, qp_error *err)
{
    const char *fmt = meta_str(hdr, "format");
    if (!fmt || strcmp(fmt, "qatplan-llama-v1"))
        return qp_fail(err, QP_ERR_INPUT, "--init %s: not a qatplan checkpoint (metadata format %s); "
                                          "use a file written by qatplan train --checkpoint", path,
                       fmt ? fmt : "missing");
    struct { const char *key, *opt; int have; } f[] = {
        {"n_layer", "--layers", s->n_layer}, {"d_model", "--width", s->d_model}, {"n_head", "--heads", s->n_head},
        {"n_kv_head", "--kv-heads", s->n_kv_head}, {"d_ff", "--ffn", s->d_ff},
        {"vocab", "--vocab (or data of that vocabulary)", s->vocab},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        const char *v = meta_str(hdr, f[i].key);
        if (!v) return qp_fail(err, QP_ERR_INPUT, "--init %s: metadata %s missing", path, f[i].key);
        if (atoi(v) != f[i].have)
            return qp_fail(err, QP_ERR_INPUT, "--init %s: the checkpoint has %s %s, this run %d; use %s %s",
                           path, f[i].key, v, f[i].have, f[i].opt, v);
    }
    return QP_OK;
}

/* Copy one tensor (name, [rows, cols] F32) from the checkpoint into dst. */
static qp_status load_tensor(const char *path, const cJSON *hdr, const char *bytes, size_t len, size_t data_at,
                             const char *name, size_t rows, size_t cols, float *dst, qp_error *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(hdr, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype"), *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!t || !cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || !cJSON_IsArray(sh) || !cJSON_IsArray(off) ||
        cJSON_GetArraySize(off) != 2)
        return qp_fail(err, QP_ERR_INPUT, "--init %s: tensor %s missing or not F32", path, name);
    int nd = cJSON_GetArraySize(sh);
    double r = nd >= 1 ? cJSON_GetArrayItem(sh, 0)->valuedouble : -1, c = nd == 2 ? cJSON_GetArrayItem(sh, 1)->valuedouble : 1;
    double a = cJSON_GetArrayItem(off, 0)->valuedouble, b = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (nd < 1 || nd > 2 || r != (double)rows || c != (double)cols)
        return qp_fail(err, QP_ERR_INPUT, "--init %s: tensor %s has another shape than this run's model; use "
                                          "the checkpoint's model options", path, name);
    if (!(a >= 0 && b - a == 4.0 * (double)(rows * cols) && b <= (double)(len - data_at)))
        return qp_fail(err, QP_ERR_INPUT, "--init %s: tensor %s lies outside the file (damaged?); write the "
                                          "checkpoint again", path, name);
    memcpy(dst, bytes + data_at + (size_t)a, rows * cols * sizeof(float));
    return QP_OK;
}

qp_status ckpt_read_init(const char *path, const train_shape *s, model *m, ckpt_init_info *info, qp_error *err)
{
    cJSON *hdr = NULL;
    char *bytes = NULL;
    size_t len = 0, at = 0;
    memset(info, 0, sizeof *info);
    info->tokens_trained = NAN;
    qp_status st = st_read(path, &hdr, &bytes, &len, &at, err);
    if (!st) st = check_init_shape(path, hdr, s, err);
    if (!st) {
        const char *tt = meta_str(hdr, "tokens_trained"), *me = meta_str(hdr, "method");
        if (tt) info->tokens_trained = strtod(tt, NULL);
        snprintf(info->method, sizeof info->method, "%s", me ? me : "");
        if (!(info->tokens_trained >= 0 && info->tokens_trained < 1e18)) info->tokens_trained = NAN;
    }
    /* the latent weights and norm gains; quantizer step sizes and zeros are initialised from
     * them at the switch, as after an FP phase */
    for (int i = 0; !st && m && i < P_S_WTE; i++) {
        const model_tdesc *d = &m->desc[i];
        int nl = d->layered ? m->s.n_layer : 1;
        for (int l = 0; !st && l < nl; l++) {
            char name[96];
            if (d->layered) snprintf(name, sizeof name, "layers.%d.%s", l, d->name);
            else snprintf(name, sizeof name, "%s", d->name);
            st = load_tensor(path, hdr, bytes, len, at, name, d->rows, d->cols,
                             m->p.t[i] + (size_t)l * d->rows * d->cols, err);
        }
    }
    if (!st) st = data_sha256_file(path, info->sha256, err);
    cJSON_Delete(hdr);
    free(bytes);
    return st;
}
