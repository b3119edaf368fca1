/* train.h: the trainer: Llama-style byte-level language models trained in full precision,
 * then with quantization-aware training (classic), or with the QAT phase fused into the
 * learning-rate cooldown (fused). Public symbols are prefixed train_. docs/trainer.md
 * describes the model, the quantizers, the schedules and the file formats. */
#ifndef TRAIN_H
#define TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "qp.h"

/* Human-readable name of the compute backend compiled in ("cpu", or "cpu+cuda"). */
const char *train_backends(void);

typedef enum { TRAIN_DEVICE_CPU = 0, TRAIN_DEVICE_CUDA } train_device;
/* fp32 everywhere, or (CUDA only) bf16 matrix products with fp32 accumulation and fp32
 * master weights, optimizer and element-wise work. */
typedef enum { TRAIN_PREC_FP32 = 0, TRAIN_PREC_BF16 } train_precision;
const char *train_device_name(train_device d);       /* "cpu", "cuda" */
const char *train_precision_name(train_precision p); /* "fp32", "bf16" */
/* Number of CUDA GPUs this process can use: 0, with the reason in why (not built with CUDA,
 * no driver, no device), when there are none. Safe without a driver. */
int train_cuda_devices(char *why, size_t n);

/* ---- model shape -------------------------------------------------------- */

typedef data_model_shape train_shape; /* data owns the shape and its parameter count */

/* Fill defaults: n_kv_head = n_head, d_ff = multiple of 8 near 8/3 d_model, vocab 256.
 * Then check divisibility (d_model % n_head, n_head % n_kv_head, even head size). */
qp_status train_shape_finish(train_shape *s, qp_error *err);
/* Parameter counts: data_shape_params, data_shape_params_nonembed. */

/* ---- quantizers --------------------------------------------------------- */

typedef enum {
    TRAIN_Q_NONE = 0, /* full precision */
    TRAIN_Q_BINARY,   /* 1 bit: alpha * sign(w) */
    TRAIN_Q_TERNARY,  /* SEQ ternary: {-2/3, 0, 2/3} alpha */
    TRAIN_Q_SEQ,      /* SEQ 2 bit: {+-0.25, +-0.75} alpha */
    TRAIN_Q_LSQ,      /* LSQ, signed grid, 3..8 bits */
    TRAIN_Q_ASYM,     /* EfficientQAT asymmetric per group: (q - z) s, 2..8 bits */
    TRAIN_Q_COUNT_
} train_quantizer;

const char *train_quantizer_name(train_quantizer q);
/* "auto" resolves by bits: 1 binary, 2 seq, 3..8 lsq, 16/32 none. */
qp_status train_quantizer_parse(const char *name, int bits, train_quantizer *out, qp_error *err);

typedef struct {
    train_quantizer kind; /* TRAIN_Q_NONE for a full-precision run */
    int bits;             /* 1..8 (2 for ternary); 16 or 32 = full precision */
    int group_size;       /* asym only: group length along the input (0 = whole row) */
    int embed_bits;       /* 0 = embeddings/head in FP; 4..8 = LSQ per row during QAT */
} train_qspec;

qp_status train_qspec_check(const train_qspec *q, const train_shape *s, qp_error *err);

/* ---- training configuration --------------------------------------------- */

/* --resume (the state must exist) or --resume-if-exists (start afresh when it does not). */
typedef enum { TRAIN_RESUME_NO = 0, TRAIN_RESUME_ALWAYS, TRAIN_RESUME_IF_EXISTS } train_resume;

typedef struct {
    train_shape shape;
    train_qspec quant;
    data_schedule schedule;  /* classic or fused; f = 0 / f = 1 resolve to FP_ONLY / QAT_ONLY */
    double tokens;           /* D_total: training tokens (all phases) */
    double qat_fraction;     /* f in [0, 1] */
    int batch;               /* sequences per step; tokens per step = batch * context */
    double lr;               /* peak learning rate */
    double min_lr_frac;      /* learning rate at the end of a decay, as a fraction of lr */
    double warmup_frac;      /* warmup (and QAT re-warmup in classic) as a fraction of the phase */
    double decay_frac;       /* decay length as a fraction of the phase; < 0: default */
    int decay_sqrt;          /* 0 linear, 1 1-sqrt */
    int reset_optimizer;     /* zero the Adam moments at the FP->QAT switch */
    double weight_decay, beta1, beta2, adam_eps, grad_clip;
    double diverge_loss;     /* training loss (nats/token) above which the run is diverged;
                              * 0 = 3 ln(vocab) + 5 (far above a uniform guess) */
    uint64_t seed;
    int threads;
    train_device device;     /* TRAIN_DEVICE_CUDA needs train_cuda_devices() > 0 */
    train_precision precision; /* TRAIN_PREC_BF16 needs TRAIN_DEVICE_CUDA */
    double eval_tokens;      /* validation tokens per evaluation */
    const char *run_id, *dataset;
    int run_id_auto;         /* run_id was generated: a resumed run keeps the state's run id */
    const char *state_path;  /* resumable state (docs/trainer.md, "Resumable state"); NULL none */
    train_resume resume;     /* start from state_path */
    long save_every_steps;   /* > 0: save the state every this many steps */
    double save_every_seconds; /* > 0: save the state every this many seconds of wall time */
    long max_steps;          /* > 0: stop (saving state) after this many steps in this process */
    double max_memory;       /* bytes the run may use; 0 = the machine's (or cgroup's) memory */
    int progress;            /* 0 quiet, 1 plain lines, 2 terminal progress line */
} train_config;

/* Bounds checked before any conversion or allocation (docs/trainer.md, "Limits"). */
#define TRAIN_MAX_TOKENS 1e15          /* --tokens, --eval-tokens */
#define TRAIN_MAX_STEP_TOKENS 2147483647.0 /* batch x context: positions index with int */
#define TRAIN_SAVE_EVERY_DEFAULT 300.0 /* seconds between periodic state saves */

void train_config_default(train_config *c);
/* Bounds and consistency of the settings that need no data: batch, learning rate, threads,
 * token counts, tokens per step, save interval, memory limit. */
qp_status train_config_check(const train_config *c, qp_error *err);

/* Memory a run needs before it allocates anything, in bytes, split for the message:
 * parameters with their gradients, Adam moments and quantized copies; activations for
 * batch x context; everything else (batch buffers, the state being written). */
typedef struct {
    double params, acts, other, total;
} train_memory;
void train_memory_need(const train_config *c, train_memory *out);
/* The limit a run is checked against: c->max_memory, else the physical memory or the
 * cgroup's limit when lower. what names its source for messages. */
double train_memory_limit(const train_config *c, const char **what);

/* Learning-rate schedule resolved to steps. */
typedef struct {
    long total, n_fp, n_qat; /* steps */
    long fp_warm, fp_decay, qat_warm, qat_decay;
    double lr, min_lr_frac;
    int decay_sqrt;
    data_schedule schedule;
    double decay_frac;       /* the value actually used (recorded) */
} train_sched;

qp_status train_sched_make(const train_config *c, train_sched *s, qp_error *err);
double train_lr_at(const train_sched *s, long step);

/* ---- a run ------------------------------------------------------------------ */

typedef struct {
    const uint16_t *train;
    uint64_t n_train;
    const uint16_t *val;
    uint64_t n_val;
    uint32_t vocab;
} train_data;

typedef struct train_run train_run;

/* Run a training job. Fills `rec` (always, also on divergence) and returns QP_OK when the
 * run completed, QP_ERR_DIVERGED when it diverged (rec->status = diverged), QP_ERR_INTERRUPTED
 * when a signal or max_steps stopped it (state saved), another status on failure.
 * If checkpoint/export paths are non-NULL they are written at the end.
 * *finished_before is set to 1 when the resumed state belongs to a run that had already
 * finished: nothing was trained, rec is the record that run wrote (the caller appends it only
 * where it is missing), and the return value is that run's (QP_OK or QP_ERR_DIVERGED). */
qp_status train_run_job(const train_config *c, const train_data *d, const char *checkpoint_path,
                        const char *export_path, data_run *rec, int *finished_before,
                        qp_error *err);

/* Install SIGINT/SIGTERM handlers that ask a running job to save its state and stop. */
void train_install_signal_handlers(void);

#endif
