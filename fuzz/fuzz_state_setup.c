/* fuzz_state_setup.c: a 1-layer, 8-wide model with 8-token context on 2 sequences per step:
 * a step takes microseconds, so the target can resume a state per input. */
#include "fuzz_state_setup.h"

#include <string.h>

static uint16_t train_tok[512], val_tok[128];

void fz_state_setup(train_config *c, train_data *d)
{
    static const char text[] = "In the beginning God created the heaven and the earth. ";
    for (size_t i = 0; i < sizeof train_tok / sizeof train_tok[0]; i++)
        train_tok[i] = (uint8_t)text[i % (sizeof text - 1)];
    for (size_t i = 0; i < sizeof val_tok / sizeof val_tok[0]; i++)
        val_tok[i] = (uint8_t)text[(i * 7) % (sizeof text - 1)];
    train_config_default(c);
    c->shape = (train_shape){.n_layer = 1, .d_model = 8, .n_head = 2, .context = 8};
    c->quant = (train_qspec){.kind = TRAIN_Q_LSQ, .bits = 4};
    c->schedule = DATA_SCHED_CLASSIC;
    c->batch = 2;
    c->tokens = (double)FZ_STATE_STEPS * c->batch * c->shape.context;
    c->qat_fraction = 0.5;
    c->lr = 0.01;
    c->threads = 1;
    c->eval_tokens = 16;
    c->seed = 7;
    c->run_id = "fuzz-state";
    c->dataset = "fuzz";
    c->progress = 0;
    memset(d, 0, sizeof *d);
    d->train = train_tok;
    d->n_train = sizeof train_tok / sizeof train_tok[0];
    d->val = val_tok;
    d->n_val = sizeof val_tok / sizeof val_tok[0];
    d->vocab = 256;
}
