/* fuzz_state: trainer states, through the public API the CLI uses for `train --resume`:
 * train_run_job with resume = TRAIN_RESUME_ALWAYS on a state file (trainer/train.c, which
 * loads it with state_load in trainer/state.c). The input is written to a temporary file and
 * resumed by the tiny configuration of fuzz_state_setup.c for at most one step (max_steps = 1),
 * which saves the state again over the temporary file.
 * Each input is resumed twice: as it is, and with its last 8 bytes set to the state checksum of
 * the bytes before them (state_hash_*, trainer/ckpt.h), so that mutations get past the checksum
 * to the settings, progress and stored run record behind it. If the format moves its checksum,
 * the second pass only tests the checksum again. A resume that succeeds ends with a finite loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "fuzz_state_setup.h"
#include "fuzz_util.h"

static void resume_one(const uint8_t *data, size_t size)
{
    train_config c;
    train_data d;
    fz_state_setup(&c, &d);
    c.state_path = fz_write_temp("fuzz.state", data, size);
    c.resume = TRAIN_RESUME_ALWAYS;
    c.max_steps = 1;
    data_run rec;
    int finished_before = -1;
    qp_error e = {0};
    qp_status st = train_run_job(&c, &d, NULL, NULL, &rec, &finished_before, &e);
    if (st == QP_OK && (rec.status != DATA_RUN_OK || !isfinite(rec.loss)))
        fz_fail("a resumed run ended ok with status %d and loss %g", (int)rec.status, rec.loss);
    if (finished_before == 1 && st != QP_OK && st != QP_ERR_DIVERGED)
        fz_fail("a finished state was reported as finished but returned status %d", (int)st);
    if (st != QP_OK && !e.msg[0]) fz_fail("a refused state has no message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    resume_one(data, size);
    if (size < 16) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) fz_fail("out of memory");
    memcpy(fixed, data, size);
    state_hash x;
    state_hash_init(&x);
    state_hash_update(&x, fixed, size - 8);
    uint64_t sum = state_hash_final(&x);
    memcpy(fixed + size - 8, &sum, 8);
    resume_one(fixed, size);
    free(fixed);
    return 0;
}
