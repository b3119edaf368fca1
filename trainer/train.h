/* train.h: the trainer: Llama-style byte-level language models trained in full precision,
 * then with quantization-aware training (classic), or with the QAT phase fused into the
 * learning-rate cooldown (fused). Public symbols are prefixed train_. docs/trainer.md
 * describes the model, the quantizers, the schedules and the file formats. */
#ifndef TRAIN_H
#define TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "qp.h"

/* Human-readable name of the compute backend compiled in ("cpu", or "cpu+cuda"). */
const char *train_backends(void);

typedef enum { TRAIN_DEVICE_CPU = 0, TRAIN_DEVICE_CUDA } train_device;
/* fp32 everywhere, or bf16 matrix products with fp32 accumulation and fp32 master weights,
 * optimizer and element-wise work (CUDA: every product; CPU: the linear layers' products,
 * gemm.h). */
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

/* ---- training method ----------------------------------------------------- */

/* The QAT phase's method (docs/trainer.md, "Methods" and "EfficientQAT"): full QAT (the step
 * loop); EfQAT (partial-update QAT: the most important rows train, the others keep frozen
 * integer codes and train only their step sizes); EfficientQAT's block-wise reconstruction
 * (blockap), its step-size-only phase (e2eqp), or both in turn (efficientqat). The one owner
 * of the names: the options table's choices spell the same list. */
typedef data_method train_method; /* data.h owns the names */
#define TRAIN_METHOD_QAT DATA_METHOD_QAT
#define TRAIN_METHOD_EFQAT DATA_METHOD_EFQAT
#define TRAIN_METHOD_BLOCKAP DATA_METHOD_BLOCKAP
#define TRAIN_METHOD_E2EQP DATA_METHOD_E2EQP
#define TRAIN_METHOD_EFFICIENTQAT DATA_METHOD_EFFICIENTQAT
#define TRAIN_METHOD_COUNT_ DATA_METHOD_COUNT_
#define TRAIN_METHOD_CHOICES DATA_METHOD_CHOICES
const char *train_method_name(train_method m); /* "qat", "efqat", "blockap", "e2eqp", "efficientqat" */
qp_status train_method_parse(const char *name, train_method *out, qp_error *err);
/* blockap, e2eqp, efficientqat: the QAT phase is EfficientQAT's own loop (job_eq), not the step loop */
int train_method_is_eq(train_method m);

/* EfQAT's freezing modes: channel-wise (rows) with the set locked at the start (cwpl) or
 * re-selected every --refresh steps (cwpn), or layer-wise re-selected (lwpn). */
typedef enum { TRAIN_EFQAT_CWPL = 0, TRAIN_EFQAT_CWPN, TRAIN_EFQAT_LWPN, TRAIN_EFQAT_COUNT_ } train_efqat_mode;
#define TRAIN_EFQAT_MODE_CHOICES "cwpl|cwpn|lwpn"
#define TRAIN_EFQAT_REFRESH_DEFAULT 64 /* steps between re-selections (cwpn, lwpn) */
const char *train_efqat_mode_name(train_efqat_mode m);
qp_status train_efqat_mode_parse(const char *name, train_efqat_mode *out, qp_error *err);

/* EfficientQAT's settings (--blockap-*, --e2e-*). Token counts 0: from the QAT budget. */
typedef struct {
    double blockap_tokens;    /* calibration tokens (whole windows of the context) */
    double e2e_tokens;        /* E2E-QP training tokens */
    double blockap_share;     /* efficientqat: share of the QAT budget's token passes for Block-AP */
    int blockap_epochs;
    double blockap_weight_lr, blockap_qparam_lr, blockap_min_lr_factor;
    double blockap_val_tokens;
    double e2e_lr, e2e_warmup_frac, e2e_grad_clip;
} train_eq_config;

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
    double qat_lr;           /* peak learning rate of the QAT phase; 0 = lr */
    double qparam_lr_mult;   /* step sizes and zero points train at this times the phase's rate */
    const char *init_path;   /* --init: start the QAT phase from this checkpoint, or (init_state)
                              * continue a trunk's saved state as a branch; NULL none */
    int init_state;          /* init_path is a resumable state (set by the trainer from its magic) */
    double warmup_tokens;    /* > 0: the FP warmup in tokens, the same for every run length
                              * (trunk-and-branch sweeps); 0: warmup_frac of the phase */
    const char *save_at;     /* --save-at: token counts "D,D,..." at which a copy of the state is
                              * saved as STATE.atD (branch points of a trunk); NULL none */
    train_method method;     /* the QAT phase's method */
    double unfrozen;         /* EfQAT: share of rows (cwpl, cwpn) or weights (lwpn) that train;
                              * < 0 = not given (0.05) */
    train_efqat_mode efqat_mode;
    long refresh_steps;      /* EfQAT cwpn/lwpn: steps between re-selections; 0 = not given */
    train_eq_config eq;      /* blockap, e2eqp, efficientqat */
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
    train_precision precision;
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
    double lr_qat;           /* peak of the QAT phase (= lr unless --qat-lr) */
    int decay_sqrt;
    data_schedule schedule;
    double decay_frac;       /* the value actually used (recorded) */
} train_sched;

qp_status train_sched_make(const train_config *c, train_sched *s, qp_error *err);
double train_lr_at(const train_sched *s, long step);
/* The step at which a run with this schedule can branch off an FP trunk trained at constant
 * learning rate: the start of the FP decay (classic, fp-only) or the switch (fused, where QAT
 * and the decay start together); 0 for qat-only (no FP phase). */
long train_sched_branch_step(const train_sched *s);
/* The first step before k at which the two schedules' learning rates differ; -1 if none
 * (then a run with `a` and one with `b` train steps 0..k-1 identically). */
long train_sched_first_difference(const train_sched *a, const train_sched *b, long k);


/* ---- options: the one table (qatplan train, its help, the sweep) ----------------------- */

/* Seeds: 0..2^53. The RNG takes 64 bits, but grids are JSON, whose numbers are doubles: every
 * whole number up to 2^53 is exact there, in the run id and in the record (a decimal string). */
#define TRAIN_SEED_MAX 9007199254740992.0

typedef enum {
    TRAIN_OPT_INT,      /* whole number in [lo, hi] */
    TRAIN_OPT_COUNT,    /* count with suffixes (2M, 1.5B) in [lo, hi] */
    TRAIN_OPT_REAL,     /* real in [lo, hi], or (lo, hi) when `open` */
    TRAIN_OPT_ENUM,     /* one of `choices` ("a|b|c") */
    TRAIN_OPT_TEXT,     /* free text (an id) */
    TRAIN_OPT_PATH,     /* a file path or prefix */
    TRAIN_OPT_FLAG,     /* no value: sets its field to `set` */
    TRAIN_OPT_BYTES,    /* a size such as 16GiB */
    TRAIN_OPT_INTERVAL  /* steps (500) or a time (600s, 10m, 2h) */
} train_opt_type;

typedef struct {
    const char *section; /* help heading */
    const char *name;    /* "--layers" */
    train_opt_type type;
    const char *arg;     /* value placeholder in the help */
    double lo, hi;       /* INT, COUNT, REAL */
    int open;            /* REAL: both ends excluded */
    const char *choices; /* ENUM */
    const char *def;     /* the default as the help shows it; NULL: none */
    const char *help;    /* what it sets, with its unit */
    const char *grid;    /* the sweep sets it on every run, from this grid field; NULL: the
                          * grid's "train.args" may pass it */
    size_t off;          /* where train_args_parse stores it in train_args */
    int width;           /* INT: bytes of the field (4 int, 8 long/uint64) */
    int set;             /* FLAG: the value stored */
} train_option;

extern const train_option train_options[];
extern const size_t train_options_count;
const train_option *train_option_find(const char *name); /* NULL: no such option */
/* The accepted values of o in words ("1..256", "(0, 1)", "classic|fused"). */
const char *train_option_range(const train_option *o, char *buf, size_t n);
/* Parse one option's value as qatplan train does (range included), storing it at dst
 * (NULL: check only). */
qp_status train_option_value(const train_option *o, const char *value, void *dst, qp_error *err);
/* The same check by name; an unknown name is refused. */
qp_status train_option_check(const char *name, const char *value, qp_error *err);
/* A grid's number for a sweep-owned option, against the trainer's range; `where` names the
 * grid file and field, the message adds the range and the option. */
qp_status train_option_check_number(const char *name, double v, const char *where, qp_error *err);
/* `qatplan train --help`, generated from the table. */
void train_options_help(FILE *f);

/* The options of one `qatplan train` command line, as given. */
typedef struct {
    train_config c; /* the options that set the run's settings directly */
    const char *data, *train_tokens, *val_tokens, *train_text, *val_text, *dataset;
    const char *runs_out, *checkpoint, *export_int, *run_id;
    const char *quantizer, *schedule, *decay_shape, *device, *precision, *method, *efqat_mode;
    int bits, vocab, quiet, progress, help; /* vocab 0: from the data */
} train_args;

void train_args_default(train_args *a);
/* argv holds the options only (no command name). QP_ERR_USAGE for an unknown option or a
 * missing value, QP_ERR_INPUT for a value out of range. Stops at --help (a->help = 1). */
qp_status train_args_parse(train_args *a, int argc, char **argv, qp_error *err);

/* ---- a run ------------------------------------------------------------------ */

typedef struct {
    const uint16_t *train;
    uint64_t n_train;
    const uint16_t *val;
    uint64_t n_val;
    uint32_t vocab;
} train_data;

typedef struct train_run train_run;

/* ---- from the options to a run (the policy of `qatplan train`) ------------------------ */

/* One data source given whole, --resume needs --state, the device (auto: a CUDA GPU when
 * there is one, else the CPU with a note unless quiet; cuda: refused without one), a valid
 * bit width and its quantizer, the schedule and decay shape. Fills a->c. */
qp_status train_args_resolve(train_args *a, qp_error *err);

typedef struct {
    train_data d;
    data_tokens tt, tv;        /* token files */
    uint16_t *xt, *xv;         /* raw text */
    char train_path[4096], val_path[4096];
    char dataset[96], run_id[96];
} train_inputs;

/* Check the outputs first (none may be an input or another output; each must be writable
 * now, not after the run), then read the data; set the vocabulary, the dataset id and the
 * run id (given, or train_default_run_id) in a->c, pointing into `in`. */
qp_status train_inputs_load(train_args *a, train_inputs *in, qp_error *err);
void train_inputs_free(train_inputs *in); /* safe on a zeroed struct */
/* L<layers>-D<width>-f<f>-b<bits>-<quantizer>-s<seed>-<pid>: readable and unique per process. */
void train_default_run_id(const train_config *c, long pid, char *buf, size_t n);

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
