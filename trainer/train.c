/* train.c: the training job: data sampling, AdamW with clipping, the FP->QAT switch,
 * validation, divergence detection, progress output, state saving and the run record.
 * Steps and evaluations go through a backend table (model.h, backend.c): the CPU's, or the
 * CUDA device copy's; the host model stays the reference for quantizer initialisation, states
 * and checkpoints, and is synchronised at those boundaries only. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "branch.h"
#include "ckpt.h"
#include "eq.h"
#include "formulas.h"
#include "gemm.h"
#include "model.h"

extern void openblas_set_num_threads(int n);

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
        /* quantizer step sizes and zero points (never decayed) may train at their own rate */
        double tlr = i >= P_S_WTE ? lr * c->qparam_lr_mult : lr;
        float wd = m->desc[i].decay ? (float)(tlr * c->weight_decay) : 0.0f, flr = (float)tlr;
        float *p = m->p.t[i], *g = m->g.t[i], *mm = m->m_mem + m->off[i], *vv = m->v_mem + m->off[i];
        long n = (long)m->numel[i];
        size_t per = 1;
        const uint8_t *frozen = m->qat ? efqat_mask(m, i, &per) : NULL;
        if (frozen) { /* EfQAT: frozen rows keep parameter and moments (no decay either) */
            long rows = n / (long)per;
#pragma omp parallel for schedule(static)
            for (long r = 0; r < rows; r++) {
                if (frozen[r]) continue;
                for (long j = r * (long)per; j < (r + 1) * (long)per; j++)
                    qf_adamw(&p[j], &mm[j], &vv[j], g[j], flr, wd, b1, b2, eps, c1, c2);
            }
            continue;
        }
#pragma omp parallel for schedule(static)
        for (long j = 0; j < n; j++) qf_adamw(&p[j], &mm[j], &vv[j], g[j], flr, wd, b1, b2, eps, c1, c2);
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
    long n = (long)m->n_grads, per = (n + NB - 1) / NB;
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
    long n = (long)m->n_grads;
    float *g = m->grads_mem;
#pragma omp parallel for schedule(static)
    for (long j = 0; j < n; j++) g[j] *= k;
}

float train_forward_backward(model *m, const uint16_t *inp, const uint16_t *tgt, int B, int T,
                             double *gnorm)
{
    if (m->qat || m->qat_embed) model_quantize(m);
    /* the forward's inputs and weights are not written again until the backward is done: bf16
     * products convert each once per step */
    train_gemm_keep(1);
    float loss = model_forward(m, inp, tgt, B, T);
    model_zero_grad(m);
    model_backward(m, inp, tgt, B, T);
    train_gemm_keep(0);
    if (m->qat || m->qat_embed) model_quant_backward(m);
    *gnorm = grad_norm(m);
    return loss;
}

void train_update(model *m, const train_config *c, double lr, int64_t t, double gnorm)
{
    if (c->grad_clip > 0 && gnorm > c->grad_clip) scale_grads(m, (float)(c->grad_clip / gnorm));
    adamw(m, c, lr, t);
}

/* Mean validation loss (nats/token) over n_seq non-overlapping sequences. */
static double eval_loss(model *m, const train_backend *be, void *dev, const train_data *d, long n_seq,
                        uint16_t *inp, uint16_t *tgt)
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
        float l = be->forward(dev, m, inp, tgt, b, T);
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

/* The method fields of a quantized run's record (the costs known before it runs). */
static void fill_method(data_run *r, const train_config *c, const train_sched *s, const model *m,
                        const ckpt_init_info *init)
{
    train_memory need;
    train_memory_need(c, &need);
    r->train_state_bytes = need.total; /* the trainer's accounting of its own buffers */
    if (c->quant.kind == TRAIN_Q_NONE) return;
    snprintf(r->method, sizeof r->method, "%s", train_method_name(c->method));
    if (s->n_qat > 0) {
        r->lr_qat = s->lr_qat;
        r->trainable_params_qat = (double)m->n_floats; /* every weight, gain, step size and zero */
    }
    if (c->method == TRAIN_METHOD_EFQAT) {
        r->unfrozen_ratio = c->unfrozen;
        snprintf(r->freeze_mode, sizeof r->freeze_mode, "%s", train_efqat_mode_name(c->efqat_mode));
        if (c->efqat_mode != TRAIN_EFQAT_CWPL)
            r->refresh_tokens = (double)c->refresh_steps * c->batch * c->shape.context;
    }
    if (!init) return;
    /* the FP phase was the checkpoint's: its tokens are this run's d_fp */
    r->d_fp = isfinite(init->tokens_trained) ? init->tokens_trained : 0;
    if (r->d_fp > 0) r->schedule = DATA_SCHED_CLASSIC;
    r->optimizer_reset = 1; /* Adam starts afresh from a checkpoint */
    snprintf(r->init_checkpoint, sizeof r->init_checkpoint, "%s", init->sha256);
}

static void fill_record(data_run *r, const train_config *c, const train_sched *s, const model *m,
                        const ckpt_init_info *init)
{
    data_run_init(r);
    snprintf(r->run_id, sizeof r->run_id, "%s", c->run_id ? c->run_id : "");
    r->shape = (data_model_shape){c->shape.n_layer, c->shape.d_model, c->shape.n_head,
                                  c->shape.n_kv_head, c->shape.d_ff, c->shape.context, c->shape.vocab};
    r->n_params = data_shape_params(&c->shape);
    r->n_params_nonembed = data_shape_params_nonembed(&c->shape);
    double tps = (double)c->batch * c->shape.context;
    r->d_fp = (double)s->n_fp * tps;
    r->d_qat = (double)s->n_qat * tps;
    r->bits = c->quant.kind == TRAIN_Q_NONE ? (data_bits_is_fp(c->quant.bits) ? c->quant.bits : 32) : c->quant.bits;
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
    fill_method(r, c, s, m, init);
    snprintf(r->gemm, sizeof r->gemm, "%s", c->device == TRAIN_DEVICE_CPU ? train_gemm_backend_name() : "cublas");
}

static void fmt_eta(double sec, char *buf, size_t n)
{
    if (!isfinite(sec) || sec < 0) sec = 0;
    long s = (long)sec;
    if (s >= 3600) snprintf(buf, n, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
}

/* ---- a job: checks, state, the loop, the end ----------------------------------------------- */

typedef struct {
    train_config c;
    train_sched s;
    const train_data *d;
    data_run *rec;
    model m;
    const train_backend *be; /* the CPU's, or the CUDA copy's (dev) */
    void *dev;
    uint16_t *inp, *tgt;
    long n_eval;
    train_progress pr;
    double t_start;     /* this process's start: wall time = pr.wall_seconds + now - t_start */
    double last_print;  /* of the terminal progress line */
    char settings[8192]; /* state_settings() of this run */
    ckpt_init_info init; /* --init: the checkpoint's metadata and hash */
    long steps_here;     /* steps trained in this process (--max-steps) */
    double last_save;    /* of the periodic saves */
    long last_save_steps; /* steps_here at the last periodic save of the QAT phase */
    eq_env eq;           /* EfficientQAT's QAT phase (eq.h); plan only for qat */
    branch_info br;      /* --init STATE: the trunk this run branches from */
    long *save_at;       /* --save-at: steps at which a copy of the state is saved */
    int n_save_at;
} job;

/* --init: a quantized run on the CPU path or CUDA, from a checkpoint of this shape. */
static qp_status job_check_init(job *j, qp_error *err)
{
    const train_config *c = &j->c;
    if (c->qparam_lr_mult != 1.0 && c->device == TRAIN_DEVICE_CUDA)
        return qp_fail(err, QP_ERR_UNSUPPORTED, "--qparam-lr-mult runs on --device cpu only so far; drop it "
                                                "or use --device cpu");
    if (!c->init_path || c->init_state) return QP_OK; /* a state: job_check_branch */
    if (c->quant.kind == TRAIN_Q_NONE)
        return qp_fail(err, QP_ERR_INPUT, "--init trains the QAT phase of a quantized run: use --bits 1..8, or "
                                          "drop --init");
    qp_status st = ckpt_read_init(c->init_path, &c->shape, NULL, &j->init, err);
    if (st) return st;
    if (c->progress)
        fprintf(stderr, "note: --init %s: training only the QAT phase (%.0f tokens; --qat-fraction is "
                        "ignored) from a model trained on %.0f tokens%s\n",
                c->init_path, (double)j->s.n_qat * c->batch * c->shape.context,
                isfinite(j->init.tokens_trained) ? j->init.tokens_trained : 0.0,
                isfinite(j->init.tokens_trained) ? "" : " (the checkpoint does not say: d_fp 0 recorded)");
    return QP_OK;
}

/* --method efqat: its settings resolved and checked (docs/trainer.md, "Methods"). */
static qp_status job_check_method(job *j, qp_error *err)
{
    train_config *c = &j->c;
    if (c->method != TRAIN_METHOD_EFQAT) return QP_OK;
    if (c->quant.kind == TRAIN_Q_NONE)
        return qp_fail(err, QP_ERR_INPUT, "--method efqat trains the QAT phase of a quantized run: use --bits "
                                          "1..8, or --method qat");
    if (c->device == TRAIN_DEVICE_CUDA)
        return qp_fail(err, QP_ERR_INPUT, "--method efqat runs on --device cpu only so far (no CUDA path "
                                          "yet); use --device cpu");
    if (!c->init_path && (c->schedule == DATA_SCHED_FUSED || (j->s.n_fp == 0 && j->s.n_qat > 0)))
        return qp_fail(err, QP_ERR_INPUT, "--method efqat: EfQAT starts from a converged FP model; use "
                                          "--schedule classic with --qat-fraction below 1, or --init FILE");
    if (c->unfrozen < 0) c->unfrozen = 0.05;
    if (c->efqat_mode == TRAIN_EFQAT_CWPL && c->refresh_steps > 0)
        return qp_fail(err, QP_ERR_INPUT, "--refresh re-selects the rows of --efqat-mode cwpn or lwpn; cwpl "
                                          "locks them at the switch: drop --refresh or choose a mode");
    if (c->efqat_mode != TRAIN_EFQAT_CWPL && c->refresh_steps <= 0) c->refresh_steps = TRAIN_EFQAT_REFRESH_DEFAULT;
    if (!c->progress) return QP_OK;
    if (c->unfrozen >= 1)
        fprintf(stderr, "note: --unfrozen 1: every row trains, which is full QAT (--method qat)\n");
    if (c->quant.kind == TRAIN_Q_ASYM && c->quant.group_size > 0)
        fprintf(stderr, "warning: --method efqat with grouped asym: frozen rows' step sizes and zero points "
                        "freeze too (only per-row step sizes train from the output rule)\n");
    if (c->quant.embed_bits > 0)
        fprintf(stderr, "note: --method efqat with --embed-bits: frozen embedding rows' step sizes freeze\n");
    return QP_OK;
}

/* --init STATE: this run is a branch of the trunk that saved it (branch.c checks that it
 * trains as this point would have), and --save-at: this run is a trunk. */
static qp_status job_check_branch(job *j, qp_error *err)
{
    train_config *c = &j->c;
    qp_status st = branch_save_steps(c, &j->s, &j->save_at, &j->n_save_at, err);
    if (st || !c->init_state) return st;
    char mine[sizeof j->settings];
    state_settings(mine, sizeof mine, c, &j->s, j->n_eval, j->d, NULL);
    if ((st = branch_check(c, &j->s, mine, &j->br, err))) return st;
    if (c->progress)
        fprintf(stderr, "note: --init %s: a branch of trunk %s, continuing at step %ld of %ld\n", c->init_path,
                j->br.trunk, j->br.step, j->s.total);
    return QP_OK;
}

/* Everything that can be refused before the first allocation. */
static qp_status job_check(job *j, qp_error *err)
{
    train_config *c = &j->c;
    const train_data *d = j->d;
    qp_status st;
    c->init_state = c->init_path && branch_is_state(c->init_path);
    if ((st = train_shape_finish(&c->shape, err))) return st;
    if ((st = train_qspec_check(&c->quant, &c->shape, err))) return st;
    if ((st = train_config_check(c, err))) return st;
    if (c->device == TRAIN_DEVICE_CUDA) {
        char why[256];
        if (train_cuda_devices(why, sizeof why) < 1)
            return qp_fail(err, QP_ERR_UNSUPPORTED, "--device cuda: no CUDA GPU found (%s): use "
                                                    "--device cpu", why);
    }
    if ((st = train_sched_make(c, &j->s, err))) return st;
    if ((st = job_check_init(j, err))) return st;
    if ((st = job_check_method(j, err))) return st;
    int T = c->shape.context;
    if (d->vocab && (int)d->vocab != c->shape.vocab)
        return qp_fail(err, QP_ERR_INPUT, "the token files have vocabulary %u but the model %d",
                       d->vocab, c->shape.vocab);
    if (d->n_train < (uint64_t)T + 2)
        return qp_fail(err, QP_ERR_INPUT, "the training tokens (%llu) are fewer than one context "
                                          "(%d + 1); use more data or a smaller --context",
                       (unsigned long long)d->n_train, T);
    if (d->n_val < (uint64_t)T + 1)
        return qp_fail(err, QP_ERR_INPUT, "the validation tokens (%llu) are fewer than one context "
                                          "(%d + 1); use more validation data or a smaller --context",
                       (unsigned long long)d->n_val, T);
    for (uint64_t i = 0; i < d->n_train; i++)
        if (d->train[i] >= c->shape.vocab)
            return qp_fail(err, QP_ERR_INPUT, "training token %llu has id %u >= vocabulary %d",
                           (unsigned long long)i, d->train[i], c->shape.vocab);
    for (uint64_t i = 0; i < d->n_val; i++)
        if (d->val[i] >= c->shape.vocab)
            return qp_fail(err, QP_ERR_INPUT, "validation token %llu has id %u >= vocabulary %d",
                           (unsigned long long)i, d->val[i], c->shape.vocab);
    if ((st = eq_check(c, &j->s, d, &j->eq.plan, err))) return st;
    long n_eval = (long)(c->eval_tokens / T); /* bounded by train_config_check */
    long max_eval = (long)((d->n_val - 1) / (uint64_t)T);
    j->n_eval = n_eval > max_eval ? max_eval : n_eval < 1 ? 1 : n_eval;
    train_memory need;
    train_memory_need(c, &need);
    const char *what;
    double lim = train_memory_limit(c, &what);
    if (lim > 0 && need.total > lim) {
        char a[32], b[32], p[32], o[32], l[32];
        return qp_fail(err, QP_ERR_INPUT,
                       "this run needs %s of memory (parameters, gradients, Adam moments: %s; "
                       "activations for --batch %d x --context %d: %s; buffers and state: %s), more "
                       "than %s (%s); use a smaller --batch, --context or model%s",
                       qp_format_bytes(need.total, a, sizeof a), qp_format_bytes(need.params, p, sizeof p),
                       c->batch, T, qp_format_bytes(need.acts, b, sizeof b),
                       qp_format_bytes(need.other, o, sizeof o), what,
                       qp_format_bytes(lim, l, sizeof l),
                       c->max_memory > 0 ? ", or a larger --max-memory" : "");
    }
    if ((st = job_check_branch(j, err))) return st;
    if (c->state_path) {
        struct stat sb;
        int exists = stat(c->state_path, &sb) == 0;
        if (exists && c->resume == TRAIN_RESUME_NO)
            return qp_fail(err, QP_ERR_INPUT, "%s exists: continue that run with --resume (or "
                                              "--resume-if-exists), or delete it to start again",
                           c->state_path);
        if (!exists && c->resume == TRAIN_RESUME_ALWAYS)
            return qp_fail(err, QP_ERR_INPUT, "--resume: there is no state at %s; drop --resume to "
                                              "start the run (--resume-if-exists does both)",
                           c->state_path);
        if (!exists) c->resume = TRAIN_RESUME_NO;
        char ck[96];
        snprintf(ck, sizeof ck, "checkpoint sha256 %s", j->init.sha256);
        state_settings(j->settings, sizeof j->settings, c, &j->s, j->n_eval, d,
                       !c->init_path ? NULL : c->init_state ? j->br.id : ck);
    }
    return QP_OK;
}

/* Save the state with progress at `step` to path (unfinished: record NULL). */
static qp_status job_save_to(job *j, const char *path, long step, const char *record, qp_error *err)
{
    train_progress snap = j->pr;
    snap.step = step;
    snap.finished = record != NULL;
    snap.wall_seconds = j->pr.wall_seconds + (qp_now() - j->t_start);
    j->be->sync(j->dev, &j->m, 1);
    return state_save(path, j->settings, &j->m, &snap, record, err);
}

static qp_status job_save(job *j, long step, const char *record, qp_error *err)
{
    return job_save_to(j, j->c.state_path, step, record, err);
}

/* --save-at: a trunk's copy of its state for the branches that start at `step`. */
static qp_status job_save_branch(job *j, long step, qp_error *err)
{
    for (int i = 0; i < j->n_save_at; i++)
        if (j->save_at[i] == step) {
            char path[4200];
            branch_save_path(&j->c, step, path, sizeof path);
            return job_save_to(j, path, step, NULL, err);
        }
    return QP_OK;
}

/* The run is over (ok or diverged): the state keeps its record, so that resuming it writes
 * no second one. A failure here only costs a rerun of the tail on a later resume. */
static void job_save_finished(job *j)
{
    if (!j->c.state_path) return;
    char *json = data_run_to_json(j->rec);
    qp_error e = {0};
    if (!json || job_save(j, j->s.total, json, &e))
        fprintf(stderr, "qatplan: warning: the finished state could not be saved: %s\n",
                json ? e.msg : "out of memory");
    free(json);
}

/* The checkpoint and the integer export of the final parameters. EfQAT's frozen rows are
 * written as their w_hat (re-quantizing gives the frozen codes) with the frozen masks; their
 * latent weights live in the resumable state only. */
static qp_status write_outputs(const model *m, const char *ckpt, const char *exp, const data_run *rec,
                               qp_error *err)
{
    if (!ckpt && !exp) return QP_OK;
    model view = *m;
    float *hat = NULL;
    if (m->efq) {
        if (!(hat = efqat_params_hat(m))) return qp_fail(err, QP_ERR_NOMEM, "out of memory writing the checkpoint");
        view.params_mem = hat;
        for (int i = 0; i < MODEL_NT; i++) view.p.t[i] = hat + m->off[i];
    }
    qp_status st = QP_OK;
    if (ckpt) st = ckpt_write_trained(ckpt, &view, rec->d_fp + rec->d_qat, rec->d_qat, data_run_method(rec), err);
    if (!st && exp) st = ckpt_export_int(exp, &view, err);
    free(hat);
    return st;
}

/* The cost fields counted during the run (flops per phase, EfQAT's shares). */
static void fill_costs(data_run *rec, const train_progress *pr, const model *m, int eq)
{
    rec->flops_fp = pr->flops_fp;
    if (!eq) rec->flops_qat = pr->flops_qat; /* EfficientQAT's: Block-AP's and E2E-QP's (eq_fill_record) */
    if (!m->efq) return;
    if (m->efq->steps > 0) rec->unfrozen_ratio_eff = m->efq->eff_sum / (double)m->efq->steps;
    if (isfinite(m->efq->trainable_max)) rec->trainable_params_qat = m->efq->trainable_max;
}

/* A resumed state whose run had finished: its record, and the outputs asked for now. */
static qp_status job_finished_before(job *j, const char *record, const char *ckpt, const char *exp,
                                     int *fin, qp_error *err)
{
    data_run_list l;
    data_run_list_init(&l);
    qp_status st = data_runs_parse_jsonl(record, j->c.state_path, &l, err);
    if (!st && l.n != 1) st = qp_fail(err, QP_ERR_PARSE, "%s: the stored run record is missing", j->c.state_path);
    if (!st) *j->rec = l.runs[0];
    data_run_list_free(&l);
    if (st) return st;
    *fin = 1; /* the caller writes rec where it is missing */
    if (j->rec->status == DATA_RUN_DIVERGED)
        return qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", j->rec->reason);
    /* the state holds the final parameters: the same files the run wrote */
    return write_outputs(&j->m, ckpt, exp, j->rec, err);
}

static void job_progress(job *j, long step, int qat, double lr, long steps_here, double t_loop)
{
    const train_config *c = &j->c;
    double tps = (double)c->batch * c->shape.context, now = qp_now();
    long total = j->s.total, every = total / 20 > 0 ? total / 20 : 1;
    double rate = (double)steps_here * tps / (now - t_loop);
    char eta[32];
    fmt_eta((double)(total - step - 1) * tps / rate, eta, sizeof eta);
    if (c->progress == 2 && (now - j->last_print > 0.25 || step + 1 == total)) {
        fprintf(stderr, "\rstep %ld/%ld %s loss %.4f lr %.2e %.0f tok/s ETA %s   ", step + 1, total,
                qat ? "QAT" : "FP ", j->pr.train_loss, lr, rate, eta);
        j->last_print = now;
    } else if (c->progress == 1 && ((step + 1) % every == 0 || step + 1 == total)) {
        fprintf(stderr, "step %ld/%ld %s loss %.4f lr %.2e %.0f tok/s ETA %s\n", step + 1, total,
                qat ? "QAT" : "FP", j->pr.train_loss, lr, rate, eta);
    }
}

/* The FP->QAT switch: evaluate the FP model, initialise the quantizers from the current
 * weights, optionally reset Adam, evaluate the quantized model before any QAT step (loss_ptq:
 * the post-training-quantization loss every recovery is measured from). */
static void job_switch(job *j, long step)
{
    model *m = &j->m;
    const train_config *c = &j->c;
    int had_fp = j->s.n_fp > 0 || c->init_path;
    m->qat = m->qat_embed = 0;
    if (had_fp) j->pr.loss_fp_switch = eval_loss(m, j->be, j->dev, j->d, j->n_eval, j->inp, j->tgt);
    j->be->sync(j->dev, m, 1); /* the step sizes are initialised on the host, as on the CPU */
    model_quant_init(m);
    if (c->reset_optimizer && j->s.n_fp > 0) {
        model_zero_moments(m);
        j->pr.adam_t = 0;
    }
    if (m->efq) efqat_select(m); /* after the step sizes: frozen rows keep these codes */
    j->be->sync(j->dev, m, 0);
    m->qat = 1;
    m->qat_embed = c->quant.embed_bits > 0;
    model_quantize(m); /* the host's quantized weights (the CPU forward reads them) */
    j->pr.loss_ptq = eval_loss(m, j->be, j->dev, j->d, j->n_eval, j->inp, j->tgt);
    j->pr.wall_switch = j->pr.wall_seconds + (qp_now() - j->t_start);
    j->pr.switched = 1;
    if (c->progress && had_fp)
        fprintf(stderr, "%sswitch to %d-bit QAT (%s) at step %ld: FP val loss %.4f, quantized before QAT "
                        "(loss_ptq) %.4f nats/token\n",
                c->progress == 2 ? "\n" : "", c->quant.bits, train_quantizer_name(c->quant.kind), step,
                j->pr.loss_fp_switch, j->pr.loss_ptq);
    if (c->progress && m->efq)
        fprintf(stderr, "EfQAT (%s): %.1f%% of the freezable weights train, %.0f trainable scalars\n",
                train_efqat_mode_name(c->efqat_mode), 100.0 * m->efq->share, m->efq->trainable);
}

/* Periodic saves: every save_every_steps steps, or every save_every_seconds of wall time. */
static void job_maybe_save(job *j, long done, double *last_save)
{
    const train_config *c = &j->c;
    if (!c->state_path || done >= j->s.total) return; /* the end saves anyway */
    double now = qp_now();
    if (!((c->save_every_steps > 0 && done % c->save_every_steps == 0) ||
          (c->save_every_seconds > 0 && now - *last_save >= c->save_every_seconds)))
        return;
    qp_error e = {0};
    if (job_save(j, done, NULL, &e))
        fprintf(stderr, "%sqatplan: warning: periodic state save failed (training goes on): %s\n",
                c->progress == 2 ? "\n" : "", e.msg);
    *last_save = qp_now();
}

/* Steps from pr.step to the end: QP_OK, QP_ERR_INTERRUPTED (state saved) or QP_ERR_DIVERGED
 * (record filled). */
static qp_status job_loop(job *j, qp_error *err)
{
    const train_config *c = &j->c;
    const train_sched *s = &j->s;
    model *m = &j->m;
    int B = c->batch, T = c->shape.context, quant = c->quant.kind != TRAIN_Q_NONE;
    double tps = (double)B * T, t_loop = qp_now(), last_save = t_loop;
    double lim = c->diverge_loss > 0 ? c->diverge_loss : 3.0 * log((double)c->shape.vocab) + 5.0;
    long steps_here = 0;
    qp_status st;
    /* EfficientQAT's methods run their QAT phase after the FP steps (job_eq) */
    long end = train_method_is_eq(c->method) ? s->n_fp : s->total;
    for (long step = (long)j->pr.step; step < end; step++) {
        if ((st = job_save_branch(j, step, err))) return st;
        if (stop_requested || (c->max_steps > 0 && steps_here >= c->max_steps)) {
            if (c->state_path) {
                if ((st = job_save(j, step, NULL, err))) return st;
                if (c->progress) fprintf(stderr, "%sstopped at step %ld of %ld; state saved to %s\n",
                                         c->progress == 2 ? "\n" : "", step, s->total, c->state_path);
            }
            return qp_fail(err, QP_ERR_INTERRUPTED, "stopped at step %ld of %ld%s%s", step, s->total,
                           c->state_path ? "; continue with --resume --state " : " (no --state: progress lost)",
                           c->state_path ? c->state_path : "");
        }
        int qat = quant && step >= s->n_fp;
        if (qat && !j->pr.switched) job_switch(j, step);
        m->qat = qat;
        m->qat_embed = qat && c->quant.embed_bits > 0;
        if (qat && efqat_due(m, step - s->n_fp, c->refresh_steps)) efqat_select(m);
        double lr = train_lr_at(s, step);
        sample_batch(j->d, B, T, &j->pr.rng, j->inp, j->tgt);
        double gn;
        uint64_t f0 = model_gemm_flops(); /* the step's products only: evaluations are not counted */
        float loss = j->be->forward_backward(j->dev, m, j->inp, j->tgt, B, T, &gn);
        double fl = (double)(model_gemm_flops() - f0);
        if (qat) j->pr.flops_qat += fl;
        else j->pr.flops_fp += fl;
        if (qat && m->efq) {
            m->efq->eff_sum += m->efq->share;
            m->efq->steps++;
        }
        if ((st = j->be->check(j->dev, err))) return st;
        if (!isfinite(loss) || !isfinite(gn) || loss > lim) {
            data_run *rec = j->rec;
            rec->status = DATA_RUN_DIVERGED;
            rec->loss = (double)loss;
            snprintf(rec->reason, sizeof rec->reason,
                     "training loss %g (limit %g; gradient norm %g) at step %ld of %ld (%.0f tokens, "
                     "%s phase, lr %.3g); lower --lr",
                     (double)loss, lim, gn, step, s->total, (double)step * tps, qat ? "QAT" : "FP", lr);
            rec->wall_seconds = j->pr.wall_seconds + (qp_now() - j->t_start);
            job_save_finished(j);
            return qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", rec->reason);
        }
        j->pr.adam_t++;
        j->be->update(j->dev, m, c, lr, j->pr.adam_t, gn);
        j->pr.train_loss = isnan(j->pr.train_loss) ? loss : 0.9 * j->pr.train_loss + 0.1 * loss;
        steps_here++;
        if (c->progress) job_progress(j, step, qat, lr, steps_here, t_loop);
        job_maybe_save(j, step + 1, &last_save);
    }
    if (c->progress == 2 && steps_here > 0) fprintf(stderr, "\n");
    j->steps_here = j->last_save_steps = steps_here;
    j->last_save = last_save;
    /* before job_finish quantizes anything; a trunk runs the step loop to the end */
    return end == s->total ? job_save_branch(j, s->total, err) : QP_OK;
}

/* ---- EfficientQAT's QAT phase (eq.h): the job's side of it --------------------------------- */

static int eq_stop(void *ctx)
{
    job *j = ctx;
    return stop_requested || (j->c.max_steps > 0 && j->steps_here >= j->c.max_steps);
}

static qp_status eq_save(void *ctx, qp_error *err)
{
    job *j = ctx;
    if (!j->c.state_path) return QP_OK;
    qp_status st = job_save(j, j->s.n_fp, NULL, err);
    if (!st && j->c.progress)
        fprintf(stderr, "%sstopped in the QAT phase (%s); state saved to %s\n", j->c.progress == 2 ? "\n" : "",
                train_method_name(j->c.method), j->c.state_path);
    return st;
}

static void eq_maybe_save(void *ctx)
{
    job *j = ctx;
    const train_config *c = &j->c;
    double now = qp_now();
    /* steps since the last save: Block-AP can save only at block boundaries */
    if (!c->state_path || !((c->save_every_steps > 0 && j->steps_here - j->last_save_steps >= c->save_every_steps) ||
                            (c->save_every_seconds > 0 && now - j->last_save >= c->save_every_seconds)))
        return;
    qp_error e = {0};
    if (job_save(j, j->s.n_fp, NULL, &e))
        fprintf(stderr, "qatplan: warning: periodic state save failed (training goes on): %s\n", e.msg);
    j->last_save = qp_now();
    j->last_save_steps = j->steps_here;
}

/* After the FP steps: the switch (loss_ptq), then Block-AP and/or E2E-QP. */
static qp_status job_eq(job *j, qp_error *err)
{
    eq_env *e = &j->eq;
    e->m = &j->m;
    e->c = &j->c;
    e->d = j->d;
    e->pr = &j->pr;
    e->inp = j->inp;
    e->tgt = j->tgt;
    e->steps_here = &j->steps_here;
    e->ctx = j;
    e->stop = eq_stop;
    e->save = eq_save;
    e->maybe_save = eq_maybe_save;
    e->peak_rss_blockap = NAN;
    e->e2e_bytes = 0;
    if (!j->pr.switched) job_switch(j, j->s.n_fp);
    qp_status st = eq_run(e, err);
    if (st == QP_ERR_INTERRUPTED) {
        char what[512];
        snprintf(what, sizeof what, "%s", err ? err->msg : "stopped");
        return qp_fail(err, QP_ERR_INTERRUPTED, "%s%s%s", what,
                       j->c.state_path ? "; continue with --resume --state " : " (no --state: progress lost)",
                       j->c.state_path ? j->c.state_path : "");
    }
    if (st == QP_ERR_DIVERGED) {
        data_run *rec = j->rec;
        rec->status = DATA_RUN_DIVERGED;
        snprintf(rec->reason, sizeof rec->reason, "%s", err ? err->msg : "diverged");
        rec->wall_seconds = j->pr.wall_seconds + (qp_now() - j->t_start);
        job_save_finished(j);
        return qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", rec->reason);
    }
    if (!st) eq_fill_record(j->rec, e);
    return st;
}

/* This process's peak resident memory in bytes (Linux reports kilobytes); NAN if unknown. */
static double peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return NAN;
    return (double)ru.ru_maxrss * 1024.0;
}

/* After the last step: the final evaluation with the weights actually quantized, the
 * outputs, the finished state. */
static qp_status job_finish(job *j, const char *checkpoint_path, const char *export_path, qp_error *err)
{
    const train_config *c = &j->c;
    model *m = &j->m;
    data_run *rec = j->rec;
    int quant = c->quant.kind != TRAIN_Q_NONE;
    qp_status st;
    j->pr.step = j->s.total;
    j->be->sync(j->dev, m, 1);
    m->qat = m->qat_embed = 0;
    if (j->s.n_qat == 0) {
        j->pr.loss_fp_switch = eval_loss(m, j->be, j->dev, j->d, j->n_eval, j->inp, j->tgt);
        if (quant) {
            model_quant_init(m); /* f = 0: quantize the trained FP model (PTQ) */
            j->be->sync(j->dev, m, 0);
        }
    }
    if (quant || c->quant.embed_bits > 0) {
        m->qat = quant;
        m->qat_embed = c->quant.embed_bits > 0;
        model_quantize(m);
    }
    rec->loss = eval_loss(m, j->be, j->dev, j->d, j->n_eval, j->inp, j->tgt);
    if ((st = j->be->check(j->dev, err))) return st;
    int had_fp = j->s.n_fp > 0 || c->init_path;
    rec->loss_fp_switch = quant && had_fp ? j->pr.loss_fp_switch : (quant ? NAN : rec->loss);
    /* f = 0: the final model is the PTQ model, quantized by the same rules */
    if (quant) rec->loss_ptq = j->s.n_qat > 0 ? j->pr.loss_ptq : rec->loss; /* NAN from a format-2 state */
    if (c->shape.vocab == 256) rec->val_bpb = rec->loss / log(2.0);
    fill_costs(rec, &j->pr, m, train_method_is_eq(c->method));
    if (!isfinite(rec->loss)) {
        rec->status = DATA_RUN_DIVERGED;
        snprintf(rec->reason, sizeof rec->reason, "final validation loss is %g; lower --lr", rec->loss);
        st = qp_fail(err, QP_ERR_DIVERGED, "run diverged: %s", rec->reason);
    }
    if (!st) st = write_outputs(m, checkpoint_path, export_path, rec, err);
    rec->wall_seconds = j->pr.wall_seconds + (qp_now() - j->t_start);
    if (quant && j->s.n_qat > 0 && isfinite(j->pr.wall_switch))
        rec->wall_seconds_qat = rec->wall_seconds - j->pr.wall_switch;
    rec->peak_rss_bytes = peak_rss();
    if (st && st != QP_ERR_DIVERGED) {
        rec->status = DATA_RUN_FAILED;
        snprintf(rec->reason, sizeof rec->reason, "%s", err ? err->msg : qp_strerror(st));
        /* unfinished at the last step: a resume redoes only the evaluation and the outputs */
        qp_error e2 = {0};
        if (c->state_path) job_save(j, j->s.total, NULL, &e2);
        return st;
    }
    if (c->state_path && st != QP_ERR_DIVERGED) {
        char *json = data_run_to_json(rec);
        qp_status s2 = json ? job_save(j, j->s.total, json, err) : qp_fail(err, QP_ERR_NOMEM, "out of memory");
        free(json);
        if (s2) {
            rec->status = DATA_RUN_FAILED;
            snprintf(rec->reason, sizeof rec->reason, "%s", err ? err->msg : qp_strerror(s2));
            return s2;
        }
    } else if (st == QP_ERR_DIVERGED) {
        job_save_finished(j);
    }
    return st;
}

qp_status train_run_job(const train_config *cin, const train_data *d, const char *checkpoint_path,
                        const char *export_path, data_run *rec, int *finished_before, qp_error *err)
{
    job j;
    memset(&j, 0, sizeof j);
    j.c = *cin;
    j.d = d;
    j.rec = rec;
    j.t_start = qp_now();
    j.be = &train_backend_cpu;
    int fin = 0;
    if (finished_before) *finished_before = 0;
    data_run_init(rec);
    qp_status st = job_check(&j, err);
    if (st) {
        free(j.save_at);
        return st;
    }
    train_config *c = &j.c;
    omp_set_num_threads(c->threads);
    openblas_set_num_threads(c->threads);
    train_gemm_set_bf16(c->device == TRAIN_DEVICE_CPU && c->precision == TRAIN_PREC_BF16);
    if (c->progress)
        fprintf(stderr, "qatplan: training on %s, %s, %d threads, matrix products %s\n", train_device_name(c->device),
                train_precision_name(c->precision), c->threads,
                c->device == TRAIN_DEVICE_CPU ? train_gemm_backend_name() : "cublas");
    int B = c->batch, T = c->shape.context;
    /* E2E-QP from a checkpoint never needs the latent weights' gradients and moments */
    st = train_e2e_lean(c) ? model_create_lean(&j.m, &c->shape, &c->quant, B, T, err)
                           : model_create(&j.m, &c->shape, &c->quant, B, T, err);
    if (st) return st;
    j.inp = malloc((size_t)B * T * sizeof *j.inp);
    j.tgt = malloc((size_t)B * T * sizeof *j.tgt);
    if (!j.inp || !j.tgt) {
        st = qp_fail(err, QP_ERR_NOMEM, "out of memory for the batch");
        goto done;
    }
    fill_record(rec, c, &j.s, &j.m, c->init_path && !c->init_state ? &j.init : NULL);
    snprintf(rec->trunk, sizeof rec->trunk, "%s", j.br.trunk);
    j.pr = (train_progress){0, 0, c->seed ^ 0xD1B54A32D192ED03ull, 0, 0, NAN, 0.0, NAN, NAN, NAN, 0.0, 0.0,
                            0, 0, 0, 0, 0, 0};
    if (c->method == TRAIN_METHOD_EFQAT && (st = efqat_create(&j.m, c->unfrozen, c->efqat_mode, err))) goto done;
    if (c->resume) {
        char *record = NULL, saved_id[sizeof rec->run_id];
        st = state_load(c->state_path, j.settings, &j.m, &j.pr, &record, saved_id, sizeof saved_id, err);
        /* a generated run id (it holds the pid) stays the first process's */
        if (!st && c->run_id_auto && saved_id[0]) {
            snprintf(rec->run_id, sizeof rec->run_id, "%s", saved_id);
            char rest[sizeof j.settings];
            const char *nl = strchr(j.settings, '\n'); /* the first line is the run id */
            snprintf(rest, sizeof rest, "%s", nl ? nl : "");
            snprintf(j.settings, sizeof j.settings, "run-id %s%s", saved_id, rest);
        }
        if (!st && j.pr.finished)
            st = record ? job_finished_before(&j, record, checkpoint_path, export_path, &fin, err)
                        : qp_fail(err, QP_ERR_PARSE, "%s: finished, but holds no run record", c->state_path);
        free(record);
        if (st || fin) goto done;
    } else if (c->init_state) {
        if ((st = branch_load(c->init_path, &j.m, &j.pr, err))) goto done;
    } else {
        model_init(&j.m, c->seed);
        if (c->init_path && (st = ckpt_read_init(c->init_path, &c->shape, &j.m, &j.init, err))) goto done;
    }
    if ((st = train_backend_open(c->device, &j.m, c->precision == TRAIN_PREC_BF16, &j.be, &j.dev, err))) goto done;
    st = job_loop(&j, err);
    if (!st && train_method_is_eq(c->method)) st = job_eq(&j, err);
    if (!st) st = job_finish(&j, checkpoint_path, export_path, err);
done:
    if (finished_before) *finished_before = fin;
    train_gemm_set_bf16(0);
    j.be->close(j.dev);
    free(j.inp);
    free(j.tgt);
    free(j.save_at);
    model_free(&j.m);
    return st;
}
