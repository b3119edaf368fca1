/* branch.h (internal to the trainer): trunk-and-branch runs (docs/trainer.md, "Trunks and
 * branches"). A trunk is an FP run at constant learning rate that saves copies of its state
 * at the branch points (--save-at); a branch is an ordinary run that starts from such a copy
 * (--init STATE), with its parameters, Adam moments, data position and step, and trains the
 * rest of its own schedule. */
#ifndef TRAIN_BRANCH_H
#define TRAIN_BRANCH_H

#include "ckpt.h"

typedef struct {
    char trunk[128]; /* the record's `trunk`: the trunk's run id @ the tokens it had trained */
    char id[96];     /* the --init line of this run's settings: the trunk state's identity */
    long step;       /* the step the trunk's state was saved at */
} branch_info;

/* 1 when path is a resumable state (its magic), 0 otherwise (a checkpoint, or unreadable:
 * the checkpoint reader then names the problem). */
int branch_is_state(const char *path);
/* Check --init STATE against this run (c, its schedule s, `mine` = its state_settings without
 * --init): a trunk's unfinished FP state, of this parameter layout, with the same model,
 * batch, optimizer, seed, precision and training data, saved no later than this run's decay
 * start, and the same learning rate at every step before it. Fills b. */
qp_status branch_check(const train_config *c, const train_sched *s, const char *mine, branch_info *b,
                       qp_error *err);
/* Load the trunk's parameters, Adam moments and progress (step, Adam's step, data RNG) into a
 * created model m and pr; the rest of pr starts afresh. */
qp_status branch_load(const char *path, model *m, train_progress *pr, qp_error *err);
/* --save-at as steps (sorted, each a whole number of steps within the run; needs --state).
 * *steps malloc'ed (NULL when none). */
qp_status branch_save_steps(const train_config *c, const train_sched *s, long **steps, int *n, qp_error *err);
/* Where --save-at saves the state at `step`: STATE.atD with D = step x tokens per step. */
void branch_save_path(const train_config *c, long step, char *buf, size_t n);

#endif
