/* The trainer contract (docs/sweep.md): `qatplan sweep --train-cmd` runs a foreign trainer,
 * scripts/train_torch.py, on a two-point grid (FP and 4-bit QAT), and its records read like
 * the C trainer's: same fields, matched to the points by run_id. Skipped, visibly, when
 * /usr/bin/python3 has no torch (the suite then exits 77, which CTest reports as skipped). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "data.h"
#include "testutil.h"

static int have_torch(void) { return system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0; }

/* A byte corpus with structure to learn: words of a sentence in a random order. */
static void write_corpus(const char *prefix)
{
    enum { NTRAIN = 60000, NVAL = 8000 };
    uint16_t *t = malloc((NTRAIN + NVAL) * sizeof *t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    static const char *words[] = {"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog. "};
    uint64_t x = 11;
    for (int n = 0; n < NTRAIN + NVAL;) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        for (const char *w = words[(x >> 33) % 8]; *w && n < NTRAIN + NVAL; w++) t[n++] = (uint16_t)*w;
    }
    qp_error e = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s.train.tok", prefix);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t, NTRAIN, 256, "contract", &e), QP_OK);
    snprintf(path, sizeof path, "%s.val.tok", prefix);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t + NTRAIN, NVAL, 256, "contract", &e), QP_OK);
    free(t);
}

/* Every top-level key of the first record of `a` is in that of `b`. */
static int keys_within(const char *a, const char *b)
{
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    int ok = ja && jb;
    for (cJSON *k = ja ? ja->child : NULL; ok && k; k = k->next)
        if (!cJSON_GetObjectItemCaseSensitive(jb, k->string)) {
            fprintf(stderr, "field \"%s\" missing\n", k->string);
            ok = 0;
        }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return ok;
}

static void test_torch_trainer_sweep(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch and numpy (install python3-torch) - trainer contract not checked");
        return;
    }
    char prefix[4096], grid[8192], gpath[4096], runs[4096], cmd[16384];
    snprintf(prefix, sizeof prefix, "%s", tu_path("corpus"));
    write_corpus(prefix);
    snprintf(grid, sizeof grid,
             "{\"data\":\"%s\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[50000],"
             "\"bits\":[4,16],\"fractions\":[0.25],\"schedules\":[\"classic\"],"
             "\"train\":{\"batch\":4,\"threads\":1,\"args\":[\"--eval-tokens\",\"4096\"]}}",
             prefix);
    snprintf(gpath, sizeof gpath, "%s", tu_path("grid.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("runs.jsonl"));
    tu_write(gpath, grid);
    const char *src = QP_SOURCE_DIR;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit --jobs 2 --train-cmd \"/usr/bin/python3 %s/scripts/train_torch.py\"",
             gpath, runs, src);
    char *err = NULL;
    int rc = tu_run_qatplan(cmd, NULL, &err);
    if (rc) fprintf(stderr, "sweep: %s\n", err ? err : "");
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "2 ok, 0 diverged, 0 failed"));
    free(err);

    data_run_list l;
    data_run_list_init(&l);
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(data_runs_read(runs, &l, &e), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 2);
    int seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        const data_run *r = &l.runs[i];
        CU_ASSERT_EQUAL(r->status, DATA_RUN_OK);
        /* learned the words: the corpus' entropy is ln 8 per word = 0.41 nats/byte (a loss below
         * it would mean validation leaked into training); untrained is ln 256 = 5.5 */
        CU_ASSERT(isfinite(r->loss) && r->loss > 0.35 && r->loss < 1.0);
        CU_ASSERT_EQUAL(r->n_params, 7472); /* data_shape_params of L1 d16 ffn48 */
        CU_ASSERT_EQUAL(r->shape.d_ff, 48);
        CU_ASSERT(fabs(data_run_tokens(r) - 50000) < 128);
        if (r->bits == 4) {
            seen |= 1;
            CU_ASSERT_EQUAL(r->schedule, DATA_SCHED_CLASSIC);
            CU_ASSERT_STRING_EQUAL(r->quantizer, "lsq");
            CU_ASSERT(fabs(r->d_qat / data_run_tokens(r) - 0.25) < 0.01);
            CU_ASSERT(isfinite(r->loss_fp_switch));
        } else if (r->bits == 16) {
            seen |= 2;
            CU_ASSERT_EQUAL(r->schedule, DATA_SCHED_FP_ONLY);
            CU_ASSERT_EQUAL(r->d_qat, 0);
        }
        CU_ASSERT_PTR_NOT_NULL(strstr(r->run_id, r->bits == 4 ? "-b4-" : "-b16-"));
    }
    CU_ASSERT_EQUAL(seen, 3);
    data_run_list_free(&l);

    /* the records are matched to the points by run_id: nothing left to run */
    err = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "2 recorded before"));
    free(err);

    /* the C trainer's record of the QAT point has no field the torch record lacks, nor the reverse */
    char cruns[4096];
    snprintf(cruns, sizeof cruns, "%s", tu_path("c-runs.jsonl"));
    snprintf(cmd, sizeof cmd,
             "train --data %s --layers 1 --width 16 --heads 2 --context 32 --tokens 5000 --qat-fraction 0.25 "
             "--bits 4 --batch 4 --eval-tokens 1024 --threads 1 --quiet --run-id c --runs-out %s",
             prefix, cruns);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    char *ct = tu_read(cruns, NULL), *tt = tu_read(runs, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ct);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tt);
    char *tq = NULL;
    for (char *line = tt; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strstr(line, "\"bits\":4,")) tq = line;
    char *nl = tq ? strchr(tq, '\n') : NULL;
    if (nl) *nl = '\0';
    CU_ASSERT(tq && keys_within(ct, tq) && keys_within(tq, ct));
    free(ct);
    free(tt);
}

/* Bad input: an unknown option is refused with exit 2 and nothing written. */
static void test_torch_trainer_refuses(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch - trainer contract not checked");
        return;
    }
    char cmd[12288], out[4096], errp[4096];
    snprintf(out, sizeof out, "%s", tu_path("refused.jsonl"));
    snprintf(errp, sizeof errp, "%s", tu_path("refused.err"));
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/scripts/train_torch.py --train-text %s/README.md --val-text %s/README.md "
             "--no-such-option 1 --runs-out %s 2>%s",
             QP_SOURCE_DIR, QP_SOURCE_DIR, QP_SOURCE_DIR, out, errp);
    int ws = system(cmd);
    CU_ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 2);
    char *msg = tu_read(errp, NULL); /* the trainer's one line, not the shell's */
    CU_ASSERT_PTR_NOT_NULL(msg && strstr(msg, "unknown option '--no-such-option'"));
    free(msg);
    char *written = tu_read(out, NULL);
    CU_ASSERT_PTR_NULL(written);
    free(written);
}

/* The loss in the first record of `path` as written, or "" (a static buffer). */
static const char *loss_text(const char *path)
{
    static char buf[64];
    buf[0] = '\0';
    char *t = tu_read(path, NULL);
    const char *p = t ? strstr(t, "\"loss\":") : NULL;
    if (p) snprintf(buf, sizeof buf, "%.*s", (int)strcspn(p + 7, ","), p + 7);
    free(t);
    return buf;
}

/* SIGTERM saves the state and exits 1 without a record; --resume finishes the run with the
 * record an uninterrupted run writes, to the last digit, and removes the state. */
static void test_torch_trainer_sigterm_resume(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch - trainer contract not checked");
        return;
    }
    char prefix[4096], args[8192], cmd[20000], whole[4096], cut[4096], st[4096], log[4096], rcp[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_path("rcorpus"));
    write_corpus(prefix);
    snprintf(whole, sizeof whole, "%s", tu_path("whole.jsonl"));
    snprintf(cut, sizeof cut, "%s", tu_path("cut.jsonl"));
    snprintf(st, sizeof st, "%s", tu_path("cut.state"));
    snprintf(log, sizeof log, "%s", tu_path("cut.log"));
    snprintf(rcp, sizeof rcp, "%s", tu_path("cut.rc"));
    snprintf(args, sizeof args,
             "/usr/bin/python3 %s/scripts/train_torch.py --data %s --layers 1 --width 16 --heads 2 --context 32 "
             "--tokens 60000 --qat-fraction 0.5 --bits 4 --batch 4 --eval-tokens 2048 --threads 1 --run-id r",
             QP_SOURCE_DIR, prefix);
    snprintf(cmd, sizeof cmd, "%s --quiet --runs-out %s", args, whole);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    /* stopped once it has printed its first progress line (5%% of the steps) */
    snprintf(cmd, sizeof cmd,
             "%s --runs-out %s --state %s 2>%s & p=$!; i=0; "
             "while ! grep -q '^step' %s && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
             "kill -TERM $p; wait $p; echo $? >%s",
             args, cut, st, log, log, rcp);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    char *rc = tu_read(rcp, NULL);
    CU_ASSERT_PTR_NOT_NULL(rc && atoi(rc) == 1);
    free(rc);
    CU_ASSERT_STRING_EQUAL(loss_text(cut), "");
    char *state = tu_read(st, NULL);
    CU_ASSERT_PTR_NOT_NULL(state);
    free(state);
    snprintf(cmd, sizeof cmd, "%s --quiet --runs-out %s --state %s --resume", args, cut, st);
    CU_ASSERT_EQUAL(system(cmd), 0);
    char lw[64];
    snprintf(lw, sizeof lw, "%s", loss_text(whole));
    CU_ASSERT(lw[0] != '\0');
    CU_ASSERT_STRING_EQUAL(loss_text(cut), lw);
    state = tu_read(st, NULL);
    CU_ASSERT_PTR_NULL(state);
    free(state);
}

/* Grid shapes may name an external model by its parameter count: the sweep passes --params
 * and the model's own options to the trainer, sizes budgets by N, and the records of six FP
 * runs fit a chinchilla law as the C trainer's do (all used, none excluded). */
static void test_torch_external_models_fit(void)
{
    if (!have_torch()) {
        tu_skip("/usr/bin/python3 cannot import torch - trainer contract not checked");
        return;
    }
    char prefix[4096], grid[8192], gpath[4096], runs[4096], law[4096], cmd[16384];
    snprintf(prefix, sizeof prefix, "%s", tu_path("ecorpus"));
    write_corpus(prefix);
    /* N as the C trainer counts L1 d16 (ffn 48) and L1 d24 (ffn 64) */
    snprintf(grid, sizeof grid,
             "{\"data\":\"%s\",\"shapes\":["
             "{\"n_params\":7472,\"name\":\"t16\",\"args\":[\"--layers\",\"1\",\"--width\",\"16\",\"--heads\",\"2\","
             "\"--context\",\"32\"]},"
             "{\"n_params\":13128,\"name\":\"t24\",\"args\":[\"--layers\",\"1\",\"--width\",\"24\",\"--heads\",\"2\","
             "\"--context\",\"32\"]}],"
             "\"tokens_per_param\":[2,4,8],\"bits\":[16],\"train\":{\"batch\":4,\"threads\":1,"
             "\"args\":[\"--eval-tokens\",\"4096\"]}}",
             prefix);
    snprintf(gpath, sizeof gpath, "%s", tu_path("egrid.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("eruns.jsonl"));
    snprintf(law, sizeof law, "%s", tu_path("eruns.law.json"));
    tu_write(gpath, grid);
    /* qatplan's own trainer cannot build them: refused before anything runs */
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit", gpath, runs);
    char *err = NULL;
    unsetenv("QP_SWEEP_TRAIN_CMD");
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "--train-cmd"));
    free(err);
    snprintf(cmd, sizeof cmd,
             "sweep %s -o %s --jobs 2 --fit-form chinchilla --law-out %s --train-cmd \"/usr/bin/python3 %s/scripts/train_torch.py\"",
             gpath, runs, law, QP_SOURCE_DIR);
    err = NULL;
    int rc = tu_run_qatplan(cmd, NULL, &err);
    if (rc) fprintf(stderr, "sweep: %s\n", err ? err : "");
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "6 ok, 0 diverged, 0 failed"));
    CU_ASSERT_PTR_NULL(err && strstr(err, "law not refitted") ? err : NULL);
    free(err);
    data_run_list l;
    data_run_list_init(&l);
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(data_runs_read(runs, &l, &e), QP_OK);
    CU_ASSERT_EQUAL_FATAL(l.n, 6);
    for (size_t i = 0; i < l.n; i++) {
        const data_run *r = &l.runs[i];
        int small = !strncmp(r->run_id, "t16-", 4);
        CU_ASSERT(small || !strncmp(r->run_id, "t24-", 4));
        CU_ASSERT_EQUAL(r->n_params, small ? 7472 : 13128); /* the model built is the one named */
        CU_ASSERT_EQUAL(r->status, DATA_RUN_OK);
    }
    data_run_list_free(&l);
    char *lt = tu_read(law, NULL);
    cJSON *j = lt ? cJSON_Parse(lt) : NULL;
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(j, "provenance");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(prov, "n_runs"), *x = cJSON_GetObjectItemCaseSensitive(prov, "n_excluded");
    CU_ASSERT(cJSON_IsNumber(n) && n->valuedouble == 6);
    CU_ASSERT(cJSON_IsNumber(x) && x->valuedouble == 0);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "form")), "chinchilla");
    cJSON_Delete(j);
    free(lt);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_torch_trainer_sweep);
    TU_ADD(s, test_torch_trainer_refuses);
    TU_ADD(s, test_torch_trainer_sigterm_resume);
    TU_ADD(s, test_torch_external_models_fit);
}

int main(void) { return tu_main("contract", add); }
