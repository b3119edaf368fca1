/* fuzz_make_seeds OUTDIR: seed inputs that are made by qatplan itself rather than kept in the
 * repository, so that they follow the current formats: token files (OUTDIR/tokens/) and
 * trainer states of the fuzz_state configuration (OUTDIR/state/). scripts/fuzz.sh runs it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "fuzz_state_setup.h"

static int mkdir_p(const char *path)
{
    if (mkdir(path, 0777) && errno != EEXIST) {
        fprintf(stderr, "fuzz_make_seeds: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

static int tokens(const char *dir)
{
    uint16_t t[64];
    char p[4200];
    qp_error e = {0};
    for (int i = 0; i < 64; i++) t[i] = (uint16_t)("In the beginning was the Word\0"[i % 30]);
    snprintf(p, sizeof p, "%s/bytes.tok", dir);
    if (data_tokens_write_docs(p, t, 64, 256, 3, "kjv-bytes", &e)) goto fail;
    snprintf(p, sizeof p, "%s/empty.tok", dir);
    if (data_tokens_write(p, t, 0, 256, "", &e)) goto fail;
    for (int i = 0; i < 16; i++) t[i] = (uint16_t)(i * 4099);
    snprintf(p, sizeof p, "%s/wide.tok", dir);
    if (data_tokens_write_docs(p, t, 16, 65536, 0, "wide-vocabulary", &e)) goto fail;
    for (int i = 0; i < 8; i++) t[i] = (uint16_t)(i % 2);
    snprintf(p, sizeof p, "%s/binary.tok", dir);
    if (data_tokens_write(p, t, 8, 2, "b", &e)) goto fail;
    /* an llm.c shard: 256 little-endian int32 (magic, version, count, zeros), then uint16 ids */
    snprintf(p, sizeof p, "%s/shard.bin", dir);
    FILE *f = fopen(p, "wb");
    if (!f) return fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", p), 1;
    int32_t hdr[256] = {(int32_t)DATA_SHARD_MAGIC, DATA_SHARD_VERSION, 12};
    uint16_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = (uint16_t)(i * 4000 + 7);
    int ok = fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(ids, sizeof ids, 1, f) == 1;
    if (fclose(f) || !ok) return fprintf(stderr, "fuzz_make_seeds: cannot write %s\n", p), 1;
    return 0;
fail:
    fprintf(stderr, "fuzz_make_seeds: %s\n", e.msg);
    return 1;
}

/* States after 1 step, at the switch to QAT, and at the end of the tiny run. */
static int states(const char *dir)
{
    static const long stops[] = {1, FZ_STATE_STEPS / 2, FZ_STATE_STEPS + 1};
    static const char *names[] = {"step1", "switch", "end"};
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s.state", dir, names[i]);
        train_config c;
        train_data d;
        fz_state_setup(&c, &d);
        c.state_path = p;
        c.max_steps = stops[i];
        data_run rec;
        int finished_before = 0;
        qp_error e = {0};
        qp_status st = train_run_job(&c, &d, NULL, NULL, &rec, &finished_before, &e);
        if (st != QP_OK && st != QP_ERR_INTERRUPTED) {
            fprintf(stderr, "fuzz_make_seeds: tiny training run: %s\n", e.msg);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds OUTDIR\n");
        return 2;
    }
    char tok[4200], st[4200];
    snprintf(tok, sizeof tok, "%s/tokens", argv[1]);
    snprintf(st, sizeof st, "%s/state", argv[1]);
    if (mkdir_p(argv[1]) || mkdir_p(tok) || mkdir_p(st)) return 1;
    if (tokens(tok) || states(st)) return 1;
    return 0;
}
