/* eq.h (internal to the trainer): EfficientQAT's QAT phase, after the FP phase or from --init:
 * Block-AP (blockap.c, block-wise reconstruction), E2E-QP (e2eqp.c, step sizes only, codes
 * fixed) and their sequencing, budget and record (efficientqat.c). docs/trainer.md,
 * "EfficientQAT". CPU only so far. */
#ifndef TRAIN_EQ_H
#define TRAIN_EQ_H

#include "ckpt.h"

/* The QAT phase resolved to windows and steps. */
typedef struct {
    long n_cal, n_val;   /* Block-AP calibration and validation windows (of the context) */
    int epochs;
    long n_e2e;          /* E2E-QP steps of batch x context tokens */
    long e2e_warm;       /* its warmup steps */
    double blockap_tokens, e2e_tokens; /* as recorded: n_cal T, n_e2e B T */
} eq_plan;

/* What the phase needs of the job (train.c keeps the job private). */
typedef struct {
    model *m;
    const train_config *c;
    const train_data *d;
    train_progress *pr;
    eq_plan plan;
    uint16_t *inp, *tgt;  /* B x T */
    long *steps_here;     /* steps (Block-AP iterations, E2E-QP steps) in this process */
    void *ctx;
    int (*stop)(void *ctx);                         /* a signal, or --max-steps reached */
    qp_status (*save)(void *ctx, qp_error *err);    /* the state at the current progress */
    void (*maybe_save)(void *ctx);                  /* periodic saves (--save-every) */
    double state_bytes;   /* Block-AP's own allocations (caches, moments) while it runs */
    double peak_rss_blockap; /* getrusage after Block-AP (this process), NAN if not run here */
    double e2e_bytes;     /* E2E-QP's model (lean layout) and codes as allocated; 0 if not run here */
} eq_env;

/* Progress stages (train_progress.eq_stage). */
enum { EQ_STAGE_NONE = 0, EQ_STAGE_BLOCKAP, EQ_STAGE_E2E, EQ_STAGE_DONE };

/* Settings that can be refused before anything is allocated: quantizer asym, classic (or
 * --init), --embed-bits 0, the CPU, a QAT phase; then the plan. */
qp_status eq_check(const train_config *c, const train_sched *s, const train_data *d, eq_plan *plan,
                   qp_error *err);
/* The QAT phase from the progress in env->pr (a resume continues it). QP_ERR_INTERRUPTED when
 * stopped (state saved when there is one). */
qp_status eq_run(eq_env *env, qp_error *err);
/* The method fields of the record (known before the run, and from the progress after it). */
void eq_fill_record(data_run *r, const eq_env *env);

/* Block-AP over blocks pr->blockap_blocks .. L-1 (blockap.c). */
qp_status blockap_run(eq_env *env, qp_error *err);
/* Trained scalars of one block: weights, norm gains, step sizes and zero points. */
double blockap_trainable(const model *m);
/* Block-AP's allocations for the plan (caches and one block's moments), bytes. */
double blockap_state_bytes(const model *m, const eq_plan *p, int B, int T);

/* W <- w_hat for layer l's four linears (quant_inplace): the codes are then W's. */
void eq_quant_inplace(model *m, int l);
/* E2E-QP steps pr->e2e_step .. n_e2e - 1 (e2eqp.c). */
qp_status e2eqp_run(eq_env *env, qp_error *err);
double e2eqp_trainable(const model *m);
/* E2E-QP's allocations: the lean model (model_arena_bytes) and the codes, bytes. */
double e2eqp_state_bytes(const model *m);
/* Storage of the block linears per weight: codes, FP16 scales, b-bit zero points. */
double eq_storage_bits(const model *m);

#endif
