/* ckpt.h (internal): safetensors writing, integer export, resumable state. */
#ifndef TRAIN_CKPT_H
#define TRAIN_CKPT_H

#include "model.h"

typedef struct {
    const char *name;
    const char *dtype; /* "F32", "I32", "I8", "U8" */
    int ndim;
    int64_t shape[3];
    const void *data;
} st_tensor;

/* Write a safetensors file atomically. meta: n_meta (key, value) string pairs (no quotes or
 * backslashes in them). */
qp_status st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int n_meta,
                   qp_error *err);
/* All parameters (latent weights, norm gains, quantizer step sizes and zero points), plus
 * their gradients under "grad." when grads != NULL, plus extra tensors. */
qp_status ckpt_write_model(const char *path, const model *m, const model_params *grads,
                           const st_tensor *extra, int n_extra, qp_error *err);
/* A checkpoint for --init: ckpt_write_model plus metadata method, tokens_trained (every token
 * the parameters were trained on) and tokens_qat. */
qp_status ckpt_write_trained(const char *path, const model *m, double tokens_trained, double tokens_qat,
                             const char *method, qp_error *err);

typedef struct {
    double tokens_trained; /* NAN when the checkpoint does not say */
    char method[16];       /* "" when it does not say */
    char sha256[65];       /* of the whole file */
} ckpt_init_info;
/* Check a qatplan checkpoint against the shape s (QP_ERR_INPUT naming the option to change),
 * read its metadata and SHA-256 into info, and, when m is not NULL, load its latent weights
 * and norm gains into m (quantizer step sizes and zero points are not read). */
qp_status ckpt_read_init(const char *path, const train_shape *s, model *m, ckpt_init_info *info, qp_error *err);

/* Integer codes of the quantized weights with their scales (and zero points). */
qp_status ckpt_export_int(const char *path, const model *m, qp_error *err);

/* Everything besides parameters and Adam moments that a resumed run needs. */
typedef struct {
    int64_t step;          /* next step to run */
    int64_t adam_t;        /* Adam's step counter (restarts when the optimizer is reset) */
    uint64_t rng;          /* data-sampling RNG state (the data position) */
    int64_t switched;      /* quantizers initialised */
    int64_t finished;      /* the run ended (ok or diverged) and the state holds its record */
    double loss_fp_switch; /* FP validation loss at the switch, NAN before it */
    double wall_seconds;   /* time spent in earlier processes */
    double train_loss;     /* smoothed training loss (progress only) */
    /* from format 3 on (NAN when read from a format-2 state) */
    double loss_ptq;       /* validation loss quantized at the switch, before any QAT step */
    double wall_switch;    /* wall seconds (all processes) at the switch */
    /* from format 4 on (NAN from an older state: the record then leaves them out) */
    double flops_fp, flops_qat; /* GEMM FLOPs of the training steps of each phase */
    /* EfficientQAT's QAT phase (eq.h; 0 when read from a state without them) */
    int64_t eq_stage;      /* EQ_STAGE_*: none, Block-AP, E2E-QP, done */
    int64_t blockap_blocks; /* blocks reconstructed (Block-AP resumes at this block's start) */
    int64_t e2e_step;      /* E2E-QP steps done */
    double blockap_mse;    /* sum over the blocks done of their final validation MSE */
    double flops_blockap, flops_e2eqp; /* GEMM FLOPs of the method's steps so far */
} train_progress;

/* The settings that change a run's result, one "key value" line each (keys are the options
 * that set them), and the run id as a label; the data are identified by count and hash, the
 * --init file by init_id (NULL none): "checkpoint sha256 HEX", or a trunk state's identity. */
void state_settings(char *buf, size_t n, const train_config *c, const train_sched *s, long n_eval,
                    const train_data *d, const char *init_id);
/* Write the state atomically: settings, progress, parameters and Adam moments of m, the
 * record (JSON, or NULL while the run is unfinished), and a checksum. */
qp_status state_save(const char *path, const char *settings, const model *m, const train_progress *pr,
                     const char *record, qp_error *err);
/* Read a state into m and pr after checking its format, size and checksum, and that its
 * settings equal `settings` (else the message names the first setting that differs; NULL:
 * not compared, for a trunk's state that a branch checked itself).
 * *record: the stored record (malloc'ed) or NULL; run_id: the saved run id ("" if none). */
qp_status state_load(const char *path, const char *settings, model *m, train_progress *pr,
                     char **record, char *run_id, size_t n_run_id, qp_error *err);

/* A state's settings text (malloc'ed), progress, floats per tensor family and stored checksum,
 * from its head and tail only (the checksum is verified when it is loaded). */
qp_status state_peek(const char *path, char **settings, train_progress *pr, uint64_t *n_floats, uint64_t *checksum,
                     qp_error *err);

/* The state's checksum (also usable for other data): 64-bit, streaming. */
typedef struct {
    uint64_t h[4], n;
    unsigned char tail[32];
    size_t nt;
} state_hash;
void state_hash_init(state_hash *x);
void state_hash_update(state_hash *x, const void *data, size_t n);
uint64_t state_hash_final(state_hash *x);

#endif
