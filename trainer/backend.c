/* backend.c: which compute backends exist, and the glue between the host model (model.h)
 * and the CUDA backend's plain-C interface (cuda_backend.h). */
#include <stdio.h>
#include <string.h>

#include "model.h"

const char *train_backends(void)
{
#ifdef QATPLAN_HAVE_CUDA
    return "cpu+cuda";
#else
    return "cpu";
#endif
}

const char *train_device_name(train_device d) { return d == TRAIN_DEVICE_CUDA ? "cuda" : "cpu"; }

const char *train_precision_name(train_precision p) { return p == TRAIN_PREC_BF16 ? "bf16" : "fp32"; }

int train_cuda_devices(char *why, size_t n)
{
#ifdef QATPLAN_HAVE_CUDA
    return cuda_device_count(why, n);
#else
    if (why && n) snprintf(why, n, "this qatplan was built without CUDA");
    return 0;
#endif
}

#ifdef QATPLAN_HAVE_CUDA
/* the CUDA sources share the tensor lists (tensors.h) but repeat the quantizer numbers
 * (they include no train.h) */
_Static_assert(TRAIN_Q_NONE == 0 && TRAIN_Q_BINARY == 1 && TRAIN_Q_TERNARY == 2 &&
                   TRAIN_Q_SEQ == 3 && TRAIN_Q_LSQ == 4 && TRAIN_Q_ASYM == 5,
               "quantizer numbers");

qp_status model_cuda_create(cuda_model **g, const model *m, int bf16, qp_error *err)
{
    cuda_layout y;
    memset(&y, 0, sizeof y);
    y.L = m->s.n_layer;
    y.D = m->s.d_model;
    y.F = m->s.d_ff;
    y.V = m->s.vocab;
    y.H = m->s.n_head;
    y.Hkv = m->s.n_kv_head;
    y.QKV = m->qkv_rows;
    y.B = m->B;
    y.T = m->T;
    y.qkind = m->q.kind;
    y.bits = m->q.bits;
    y.group = m->q.group_size;
    y.embed_bits = m->q.embed_bits;
    y.bf16 = bf16;
    y.n_floats = m->n_floats;
    for (int i = 0; i < MODEL_NT; i++) {
        y.off[i] = m->off[i];
        y.numel[i] = m->numel[i];
        y.rows[i] = m->desc[i].rows;
        y.cols[i] = m->desc[i].cols;
        y.decay[i] = m->desc[i].decay;
    }
    char msg[QP_ERRMSG_MAX];
    if (cuda_model_create(g, &y, m->rope_cos, m->rope_sin, msg, sizeof msg))
        return qp_fail(err, QP_ERR_NOMEM, "%s", msg);
    cuda_upload(*g, m->params_mem, m->m_mem, m->v_mem);
    qp_status st = model_cuda_check(*g, err);
    if (st) {
        cuda_model_free(*g);
        *g = NULL;
    }
    return st;
}

qp_status model_cuda_check(const cuda_model *g, qp_error *err)
{
    char msg[QP_ERRMSG_MAX];
    if (!cuda_failed(g, msg, sizeof msg)) return QP_OK;
    return qp_fail(err, QP_ERR_UNSUPPORTED, "%s; run with --device cpu", msg);
}
#endif

/* ---- the backend table: the training loop calls these, never the device directly ---- */

static void cpu_sync(void *dev, model *m, int to_host) { (void)dev, (void)m, (void)to_host; }

static qp_status cpu_check(const void *dev, qp_error *err)
{
    (void)dev, (void)err;
    return QP_OK;
}

static float cpu_forward(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T)
{
    (void)dev;
    return model_forward(m, inp, tgt, B, T);
}

static float cpu_forward_backward(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                                  double *gnorm)
{
    (void)dev;
    return train_forward_backward(m, inp, tgt, B, T, gnorm);
}

static void cpu_update(void *dev, model *m, const train_config *c, double lr, int64_t t, double gnorm)
{
    (void)dev;
    train_update(m, c, lr, t, gnorm);
}

static void cpu_close(void *dev) { (void)dev; }

const train_backend train_backend_cpu = {"cpu", cpu_sync, cpu_check, cpu_forward, cpu_forward_backward,
                                         cpu_update, cpu_close};

#ifdef QATPLAN_HAVE_CUDA
static void gpu_sync(void *dev, model *m, int to_host)
{
    if (to_host) cuda_download(dev, m->params_mem, m->m_mem, m->v_mem, NULL);
    else cuda_upload(dev, m->params_mem, m->m_mem, m->v_mem);
}

static qp_status gpu_check(const void *dev, qp_error *err) { return model_cuda_check(dev, err); }

static float gpu_forward(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T)
{
    (void)T;
    return cuda_forward(dev, inp, tgt, B, m->qat, m->qat_embed);
}

static float gpu_forward_backward(void *dev, model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                                  double *gnorm)
{
    (void)T;
    return cuda_forward_backward(dev, inp, tgt, B, m->qat, m->qat_embed, gnorm);
}

static void gpu_update(void *dev, model *m, const train_config *c, double lr, int64_t t, double gnorm)
{
    (void)m;
    cuda_adam hp = {lr, c->weight_decay, c->beta1, c->beta2, c->adam_eps, c->grad_clip};
    cuda_update(dev, &hp, t, gnorm);
}

static void gpu_close(void *dev) { cuda_model_free(dev); }

static const train_backend train_backend_cuda = {"cuda", gpu_sync, gpu_check, gpu_forward, gpu_forward_backward,
                                                 gpu_update, gpu_close};
#endif

qp_status train_backend_open(train_device d, const model *m, int bf16, const train_backend **be, void **dev,
                             qp_error *err)
{
    *be = &train_backend_cpu;
    *dev = NULL;
    if (d != TRAIN_DEVICE_CUDA) return QP_OK;
#ifdef QATPLAN_HAVE_CUDA
    cuda_model *g = NULL;
    qp_status st = model_cuda_create(&g, m, bf16, err);
    if (st) return st;
    *be = &train_backend_cuda;
    *dev = g;
    return QP_OK;
#else
    (void)m, (void)bf16;
    return qp_fail(err, QP_ERR_UNSUPPORTED, "--device cuda: this qatplan was not built with CUDA; use --device cpu");
#endif
}
