/* train.c: the training job: data sampling, AdamW with clipping, the FP->QAT switch,
 * validation, divergence detection, progress output, state saving and the run record.
 * On --device cuda the steps and evaluations run on the device copy (train_cuda.cu); the
 * host model stays the reference for quantizer initialisation, states and checkpoints, and
 * is synchronised at those boundaries only. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "model.h"

extern void openblas_set_num_threads(int n);

#ifndef QATPLAN_HAVE_CUDA
typedef struct cuda_model cuda_model; /* never created without CUDA: always NULL */
#endif

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = 1;
    signal(sig, SIG_DFL); /* a second signal ends the process at once */
}

void train_install_signal_handlers(void)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

static void adamw(model *m, const train_config *c, double lr, int64_t t)
{
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->adam_eps;
    float c1 = (float)(1.0 - pow(c->beta1, (double)t)), c2 = (float)(1.0 - pow(c->beta2, (double)t));
    for (int i = 0; i < MODEL_NT; i++) {
        float wd = m->desc[i].decay ? (float)(lr * c->weight_decay) : 0.0f, flr = (float)lr;
        float *p = m->p.t[i], *g = m->g.t[i], *mm = m->m_mem + m->off[i], *vv = m->v_mem + m->off[i];
        long n = (long)m->numel[i];
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++) {
            float gj = g[j];
            float mj = b1 * mm[j] + (1.0f - b1) * gj;
            float vj = b2 * vv[j] + (1.0f - b2) * gj * gj;
            mm[j] = mj;
            vv[j] = vj;
            p[j] -= flr * ((mj / c1) / (sqrtf(vj / c2) + eps)) + wd * p[j];
        }
    }
    /* step sizes must stay positive: a zero or negative step would flip or kill a row */
    for (int i = P_S_WTE; i <= P_S_2; i++)
        for (size_t j = 0; j < m->numel[i]; j++)
            if (!(m->p.t[i][j] > 1e-8f)) m->p.t[i][j] = 1e-8f;
}

static double grad_norm(const model *m)
{
    /* fixed blocks summed in order: clipping (hence the trajectory) must not depend on timing */
    enum { NB = 64 };
    double part[NB] = {0};
    long n = (long)m->n_floats, per = (n + NB - 1) / NB;
    const float *g = m->grads_mem;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < NB; b++) {
        double ss = 0.0;
        long hi = (b + 1) * per < n ? (b + 1) * per : n;
#pragma omp simd reduction(+ : ss)
        for (long j = b * per; j < hi; j++) ss += (double)g[j] * g[j];
        part[b] = ss;
    }
    double ss = 0.0;
    for (int b = 0; b < NB; b++) ss += part[b];
    return sqrt(ss);
}

static void scale_grads(model *m, float k)
{
    long n = (long)m->n_floats;
    float *g = m->grads_mem;
#pragma omp parallel for schedule(static)
    for (long j = 0; j < n; j++) g[j] *= k;
}

float train_forward_backward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                             double *gnorm)
{
    if (m->qat || m->qat_embed) model_quantize(m);
    float loss = model_forward(m, inp, tgt, B, T);
    model_zero_grad(m);
    model_backward(m, inp, tgt, B, T);
    if (m->qat || m->qat_embed) model_quant_backward(m);
    *gnorm = grad_norm(m);
    return loss;
}

void train_update(model *m, const train_config *c, double lr, int64_t t, double gnorm)
{
    if (c->grad_clip > 0 && gnorm > c->grad_clip) scale_grads(m, (float)(c->grad_clip / gnorm));
    adamw(m, c, lr, t);
}

/* ---- the device copy (NULL on the CPU) --------------------------------------------------- */

/* Parameters and Adam moments: device -> host (to_host) or host -> device. */
static void dev_sync(model *m, cuda_model *gpu, int to_host)
{
#ifdef QATPLAN_HAVE_CUDA
    if (!gpu) return;
    if (to_host) cuda_download(gpu, m->params_mem, m->m_mem, m->v_mem, NULL);
    else cuda_upload(gpu, m->params_mem, m->m_mem, m->v_mem);
#else
    (void)m, (void)gpu, (void)to_host;
#endif
}

static qp_status dev_check(const cuda_model *gpu, qp_error *err)
{
#ifdef QATPLAN_HAVE_CUDA
    if (gpu) return model_cuda_check(gpu, err);
#else
    (void)gpu, (void)err;
#endif
    return QP_OK;
}

static float dev_forward(model *m, cuda_model *gpu, const uint16_t *inp, const uint16_t *tgt,
                         int B, int T)
{
#ifdef QATPLAN_HAVE_CUDA
    if (gpu) return cuda_forward(gpu, inp, tgt, B, m->qat, m->qat_embed);
#endif
    return model_forward(m, inp, tgt, B, T);
}

static float dev_forward_backward(model *m, cuda_model *gpu, const uint16_t *inp,
                                  const uint16_t *tgt, int B, int T, double *gnorm)
{
#ifdef QATPLAN_HAVE_CUDA
    if (gpu) return cuda_forward_backward(gpu, inp, tgt, B, m->qat, m->qat_embed, gnorm);
#endif
    return train_forward_backward(m, inp, tgt, B, T, gnorm);
}

static void dev_update(model *m, cuda_model *gpu, const train_config *c, double lr, int64_t t,
                       double gnorm)
{
#ifdef QATPLAN_HAVE_CUDA
    if (gpu) {
        cuda_adam hp = {lr, c->weight_decay, c->beta1, c->beta2, c->adam_eps, c->grad_clip};
        cuda_update(gpu, &hp, t, gnorm);
        return;
    }
#endif
    train_update(m, c, lr, t, gnorm);
}

/* Mean validation loss (nats/token) over n_seq non-overlapping sequences. */
static double eval_loss(model *m, cuda_model *gpu, const train_data *d, long n_seq, uint16_t *inp,
                        uint16_t *tgt)
{
    int B = m->B, T = m->T;
    double sum = 0.0;
    long done = 0;
    while (done < n_seq) {
        int b = (int)((n_seq - done) < B ? (n_seq - done) : B);
        for (int i = 0; i < b; i++) {
            const uint16_t *src = d->val + (size_t)(done + i) * T;
            memcpy(inp + (size_t)i * T, src, T * sizeof *inp);
            memcpy(tgt + (size_t)i * T, src + 1, T * sizeof *tgt);
        }
        float l = dev_forward(m, gpu, inp, tgt, b, T);
        sum += (double)l * b;
        done += b;
    }
    return sum / (double)n_seq;
}

static void sample_batch(const train_data *d, int B, int T, uint64_t *rng, uint16_t *inp, uint16_t *tgt)
{
    uint64_t span = d->n_train - (uint64_t)T; /* valid starts: 0 .. n - T - 1 */
    for (int b = 0; b < B; b++) {
        uint64_t off = train_rng_next(rng) % span;
        memcpy(inp + (size_t)b * T, d->train + off, T * sizeof *inp);
        memcpy(tgt + (size_t)b * T, d->train + off + 1, T * sizeof *tgt);
    }
}

static void fill_record(data_run *r, const train_config *c, const train_sched *s, const model *m)
{
    data_run_init(r);
    snprintf(r->run_id, sizeof r->run_id, "%s", c->run_id ? c->run_id : "");
    r->shape = (data_model_shape){c->shape.n_layer, c->shape.d_model, c->shape.n_head,
                                  c->shape.n_kv_head, c->shape.d_ff, c->shape.context, c->shape.vocab};
    r->n_params = train_shape_params(&c->shape);
    r->n_params_nonembed = train_shape_params_nonembed(&c->shape);
    double tps = (double)c->batch * c->shape.context;
    r->d_fp = (double)s->n_fp * tps;
    r->d_qat = (double)s->n_qat * tps;
    r->bits = c->quant.kind == TRAIN_Q_NONE ? (c->quant.bits >= 16 ? c->quant.bits : 32) : c->quant.bits;
    snprintf(r->quantizer, sizeof r->quantizer, "%s", train_quantizer_name(c->quant.kind));
    r->embed_bits = c->quant.embed_bits;
    r->group_size = c->quant.kind == TRAIN_Q_ASYM ? c->quant.group_size : 0;
    r->schedule = s->schedule;
    r->seed = c->seed;
    snprintf(r->dataset, sizeof r->dataset, "%s", c->dataset ? c->dataset : "");
    snprintf(r->code_version, sizeof r->code_version, "%s", qp_version());
    r->lr_peak = c->lr;
    r->batch_tokens = tps;
    r->decay_frac = s->decay_frac;
    snprintf(r->decay_shape, sizeof r->decay_shape, "%s", c->decay_sqrt ? "1-sqrt" : "linear");
    r->optimizer_reset = (s->schedule == DATA_SCHED_CLASSIC || s->schedule == DATA_SCHED_FUSED)
                             ? (c->reset_optimizer ? 1 : 0) : -1;
    snprintf(r->device, sizeof r->device, "%s", train_device_name(c->device));
    snprintf(r->precision, sizeof r->precision, "%s", train_precision_name(c->precision));
    (void)m;
}

static void fmt_eta(double sec, char *buf, size_t n)
{
    if (!isfinite(sec) || sec < 0) sec = 0;
    long s = (long)sec;
    if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

qp_status train_run_job(const train_config *cin, const train_data *d, const char *checkpoint_path,
                        const char *export_path, data_run *rec, qp_error *err)
{
    train_config c = *cin;
    qp_status st;
    double t_start = qp_now();
    data_run_init(rec);
    if ((st = train_shape_finish(&c.shape, err))) return st;
    if ((st = train_qspec_check(&c.quant, &c.shape, err))) return st;
    if (c.batch < 1) return qp_fail(err, QP_ERR_INPUT, "--batch %d: use at least 1 sequence", c.batch);
    if (!(c.lr > 0 && c.lr < 1)) return qp_fail(err, QP_ERR_INPUT, "--lr %g: use a value in (0, 1)", c.lr);
    if (c.threads < 1) return qp_fail(err, QP_ERR_INPUT, "--threads %d: use at least 1", c.threads);
    if (c.precision == TRAIN_PREC_BF16 && c.device != TRAIN_DEVICE_CUDA)
        return qp_fail(err, QP_ERR_INPUT, "--precision bf16 runs only on --device cuda (the CPU "
                                          "trainer is fp32); use --precision fp32");
    if (c.device == TRAIN_DEVICE_CUDA) {
        char why[256];
        if (train_cuda_devices(why, sizeof why) < 1)
            return qp_fail(err, QP_ERR_UNSUPPORTED, "--device cuda: no CUDA GPU found (%s): use "
                                                    "--device cpu", why);
    }
    train_sched s;
    if ((st = train_sched_make(&c, &s, err))) return st;
    int T = c.shape.context, B = c.batch;
    if (d->vocab && (int)d->vocab != c.shape.vocab)
        return qp_fail(err, QP_ERR_INPUT, "the token files have vocabulary %u but the model %d",
                       d->vocab, c.shape.vocab);
    if (d->n_train < (uint64_t)T + 2)
        return qp_fail(err, QP_ERR_INPUT, "the training tokens (%llu) are fewer than one context "
                                          "(%d + 1); use more data or a smaller --context",
                       (unsigned long long)d->n_train, T);
    if (d->n_val < (uint64_t)T + 1)
        return qp_fail(err, QP_ERR_INPUT, "the validation tokens (%llu) are fewer than one context "
                                          "(%d + 1); use more validation data or a smaller --context",
                       (unsigned long long)d->n_val, T);
    for (uint64_t i = 0; i < d->n_train; i++)
        if (d->train[i] >= c.shape.vocab)
            return qp_fail(err, QP_ERR_INPUT, "training token %llu has id %u >= vocabulary %d",
                           (unsigned long long)i, d->train[i], c.shape.vocab);
    for (uint64_t i = 0; i < d->n_val; i++)
        if (d->val[i] >= c.shape.vocab)
            return qp_fail(err, QP_ERR_INPUT, "validation token %llu has id %u >= vocabulary %d",
                           (unsigned long long)i, d->val[i], c.shape.vocab);
    long n_eval = (long)(c.eval_tokens / T);
    long max_eval = (long)((d->n_val - 1) / (uint64_t)T);
    if (n_eval > max_eval) n_eval = max_eval;
    if (n_eval < 1) n_eval = 1;

    omp_set_num_threads(c.threads);
    openblas_set_num_threads(c.threads);

    model m;
    cuda_model *gpu = NULL;
    if ((st = model_create(&m, &c.shape, &c.quant, B, T, err))) return st;
    uint16_t *inp = malloc((size_t)B * T * sizeof *inp), *tgt = malloc((size_t)B * T * sizeof *tgt);
    if (!inp || !tgt) {
        free(inp);
        free(tgt);
        model_free(&m);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for the batch");
    }
    fill_record(rec, &c, &s, &m);
    train_progress pr = {0, 0, c.seed ^ 0xD1B54A32D192ED03ull, 0, NAN, 0.0, NAN};
    if (c.resume) {
        if (!c.state_path) {
            st = qp_fail(err, QP_ERR_USAGE, "--resume needs --state FILE");
            goto done;
        }
        if ((st = state_load(c.state_path, &m, &c, &s, &pr, err))) goto done;
    } else {
        model_init(&m, c.seed);
    }
#ifdef QATPLAN_HAVE_CUDA
    if (c.device == TRAIN_DEVICE_CUDA &&
        (st = model_cuda_create(&gpu, &m, c.precision == TRAIN_PREC_BF16, err)))
        goto done;
#endif
    int quant = c.quant.kind != TRAIN_Q_NONE;
    double tps = (double)B * T;
    double t_loop = qp_now(), last_print = 0.0;
    long step0 = (long)pr.step, steps_here = 0;
    long print_every = s.total / 20 > 0 ? s.total / 20 : 1;
    st = QP_OK;
    for (long step = (long)pr.step; step < s.total; step++) {
        if (stop_requested || (c.max_steps > 0 && steps_here >= c.max_steps)) {
            pr.step = step;
            pr.wall_seconds += qp_now() - t_start;
            dev_sync(&m, gpu, 1);
            if (c.state_path) {
                if ((st = state_save(c.state_path, &m, &c, &s, &pr, err))) goto done;
                if (c.progress) fprintf(stderr, "%sstopped at step %ld of %ld; state saved to %s\n",
                                        c.progress == 2 ? "\n" : "", step, s.total, c.state_path);
            }
            st = qp_fail(err, QP_ERR_INTERRUPTED, "stopped at step %ld of %ld%s%s", step, s.total,
                         c.state_path ? "; continue with --resume --state " : " (no --state: progress lost)",
                         c.state_path ? c.state_path : "");
            goto done;
        }
        int qat = quant && step >= s.n_fp;
        if (qat && !pr.switched) {
            /* the FP->QAT switch: evaluate the FP model, initialise the quantizers from the
             * current weights, optionally reset Adam */
            m.qat = m.qat_embed = 0;
            if (s.n_fp > 0) pr.loss_fp_switch = eval_loss(&m, gpu, d, n_eval, inp, tgt);
            dev_sync(&m, gpu, 1); /* the step sizes are initialised on the host, as on the CPU */
            model_quant_init(&m);
            if (c.reset_optimizer && s.n_fp > 0) {
                memset(m.m_mem, 0, m.n_floats * sizeof(float));
                memset(m.v_mem, 0, m.n_floats * sizeof(float));
                pr.adam_t = 0;
            }
            dev_sync(&m, gpu, 0);
            pr.switched = 1;
            if (c.progress && s.n_fp > 0)
                fprintf(stderr, "%sswitch to %d-bit QAT (%s) at step %ld: FP val loss %.4f nats/token\n",
                        c.progress == 2 ? "\n" : "", c.quant.bits, train_quantizer_name(c.quant.kind),
                        step, pr.loss_fp_switch);
        }
        m.qat = qat;
        m.qat_embed = qat && c.quant.embed_bits > 0;
        double lr = train_lr_at(&s, step);
        sample_batch(d, B, T, &pr.rng, inp, tgt);
        double gn;
        float loss = dev_forward_backward(&m, gpu, inp, tgt, B, T, &gn);
        if ((st = dev_check(gpu, err))) goto done;
        double lim = c.diverge_loss > 0 ? c.diverge_loss : 3.0 * log((double)c.shape.vocab) + 5.0;
        if (!isfinite(loss) || !isfinite(gn) || loss > lim) {
            rec->status = DATA_RUN_DIVERGED;
            rec->loss = isfinite(loss) ? (double)loss : (double)loss;
            snprintf(rec->reason, sizeof rec->reason,
                     "training loss %g (limit %g; gradient norm %g) at step %ld of %ld (%.0f tokens, "
                     "%s phase, lr %.3g); lower --lr",
                     (double)loss, lim, gn, step, s.total, (double)step * tps, qat ? "QAT" : "FP", lr);
            st = qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", rec->reason);
            goto record;
        }
        pr.adam_t++;
        dev_update(&m, gpu, &c, lr, pr.adam_t, gn);
        pr.train_loss = isnan(pr.train_loss) ? loss : 0.9 * pr.train_loss + 0.1 * loss;
        steps_here++;
        double now = qp_now();
        if (c.progress) {
            double rate = (double)steps_here * tps / (now - t_loop);
            char eta[32];
            fmt_eta((double)(s.total - step - 1) * tps / rate, eta, sizeof eta);
            if (c.progress == 2 && (now - last_print > 0.25 || step + 1 == s.total)) {
                fprintf(stderr, "\rstep %ld/%ld %s loss %.4f lr %.2e %.0f tok/s ETA %s   ", step + 1,
                        s.total, qat ? "QAT" : "FP ", pr.train_loss, lr, rate, eta);
                last_print = now;
            } else if (c.progress == 1 && ((step + 1) % print_every == 0 || step + 1 == s.total)) {
                fprintf(stderr, "step %ld/%ld %s loss %.4f lr %.2e %.0f tok/s ETA %s\n", step + 1,
                        s.total, qat ? "QAT" : "FP", pr.train_loss, lr, rate, eta);
            }
        }
    }
    if (c.progress == 2) fprintf(stderr, "\n");
    pr.step = s.total;
    (void)step0;
    dev_sync(&m, gpu, 1);
    /* final evaluation with the weights actually quantized */
    m.qat = m.qat_embed = 0;
    if (s.n_qat == 0) {
        pr.loss_fp_switch = eval_loss(&m, gpu, d, n_eval, inp, tgt);
        if (quant) {
            model_quant_init(&m); /* f = 0: quantize the trained FP model (PTQ) */
            dev_sync(&m, gpu, 0);
        }
    }
    if (quant || c.quant.embed_bits > 0) {
        m.qat = quant;
        m.qat_embed = c.quant.embed_bits > 0;
        model_quantize(&m);
    }
    rec->loss = eval_loss(&m, gpu, d, n_eval, inp, tgt);
    if ((st = dev_check(gpu, err))) goto done;
    rec->loss_fp_switch = quant && s.n_fp > 0 ? pr.loss_fp_switch : (quant ? NAN : rec->loss);
    if (c.shape.vocab == 256) rec->val_bpb = rec->loss / log(2.0);
    if (!isfinite(rec->loss)) {
        rec->status = DATA_RUN_DIVERGED;
        snprintf(rec->reason, sizeof rec->reason, "final validation loss is %g; lower --lr", rec->loss);
        st = qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", rec->reason);
    }
    if (c.state_path) {
        qp_status s2 = state_save(c.state_path, &m, &c, &s, &pr, err);
        if (s2 && !st) st = s2;
    }
    if (!st && checkpoint_path) st = ckpt_write_model(checkpoint_path, &m, NULL, NULL, 0, err);
    if (!st && export_path) st = ckpt_export_int(export_path, &m, err);
    if (st && st != QP_ERR_DIVERGED) {
        rec->status = DATA_RUN_FAILED;
        snprintf(rec->reason, sizeof rec->reason, "%s", err ? err->msg : qp_strerror(st));
    }
record:
    rec->wall_seconds = pr.wall_seconds + (qp_now() - t_start);
done:
#ifdef QATPLAN_HAVE_CUDA
    cuda_model_free(gpu);
#endif
    free(inp);
    free(tgt);
    model_free(&m);
    return st;
}
