/* fuzz_state_setup.h: the one tiny training configuration that the trainer-state target resumes
 * from and fuzz_make_seeds saves states of, so the seed states match it. */
#ifndef FUZZ_STATE_SETUP_H
#define FUZZ_STATE_SETUP_H

#include "train.h"

/* Steps of the tiny run: 4 in full precision, then 4 of 4-bit QAT (classic schedule). */
#define FZ_STATE_STEPS 8

/* The configuration (state_path and resume left to the caller) and in-memory token data. */
void fz_state_setup(train_config *c, train_data *d);

#endif
