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
/* Integer codes of the quantized weights with their scales (and zero points). */
qp_status ckpt_export_int(const char *path, const model *m, qp_error *err);

/* Everything besides parameters and Adam moments that a resumed run needs. */
typedef struct {
    int64_t step;          /* next step to run */
    int64_t adam_t;        /* Adam's step counter (restarts when the optimizer is reset) */
    uint64_t rng;          /* data-sampling RNG state (the data position) */
    int64_t switched;      /* quantizers initialised */
    double loss_fp_switch; /* FP validation loss at the switch, NAN before it */
    double wall_seconds;   /* time spent in earlier processes */
    double train_loss;     /* smoothed training loss (progress only) */
} train_progress;

qp_status state_save(const char *path, const model *m, const train_config *c,
                     const train_sched *s, const train_progress *pr, qp_error *err);
qp_status state_load(const char *path, model *m, const train_config *c, const train_sched *s,
                     train_progress *pr, qp_error *err);

#endif
