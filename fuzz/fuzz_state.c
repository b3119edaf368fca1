/* fuzz_state: trainer states, through the public API the CLI uses for `train --resume`:
 * train_run_job with resume = 1 on a state file (trainer/train.c, which loads it with
 * state_load in trainer/ckpt.c). The input is written to a temporary file and resumed by the
 * tiny configuration of fuzz_state_setup.c for at most one step (max_steps = 1), which saves
 * the state again over the temporary file. A resume that succeeds ends with a finite loss. */
#include <math.h>
#include <stdlib.h>

#include "fuzz_state_setup.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    train_config c;
    train_data d;
    fz_state_setup(&c, &d);
    c.state_path = fz_write_temp("fuzz.state", data, size);
    c.resume = 1;
    c.max_steps = 1;
    data_run rec;
    qp_error e = {0};
    qp_status st = train_run_job(&c, &d, NULL, NULL, &rec, &e);
    if (st == QP_OK && (rec.status != DATA_RUN_OK || !isfinite(rec.loss)))
        fz_fail("a resumed run ended ok with status %d and loss %g", (int)rec.status, rec.loss);
    if (st != QP_OK && !e.msg[0]) fz_fail("a refused state has no message");
    return 0;
}
