/* train.h: the trainer: Llama-style models trained FP-then-QAT or fused cooldown-QAT.
 * Public symbols are prefixed train_. (Being built: see issue "Trainer".) */
#ifndef TRAIN_H
#define TRAIN_H

#include "data.h"
#include "qp.h"

/* Human-readable name of the compute backend compiled in ("cpu", or "cpu+cuda"). */
const char *train_backends(void);

#endif
