/* Trunk-and-branch: a branch (--init STATE from a trunk's --save-at copy) trains bit for bit as
 * the same point trained from scratch, on the CPU, with fewer tokens; the refusals of a state
 * that cannot be such a trunk; the sweep's "trunks" grids (grouping, dry run, running, kill and
 * resume, Slurm). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"
#include "sweep.h"
#include "testutil.h"

static char corpus[4096]; /* token-file prefix */
static char textf[2][4096]; /* the same tokens as raw text (train, val) for `qatplan train` */

/* Byte tokens of the project's docs: a real text, so that the runs learn something. */
static void make_corpus(void)
{
    if (corpus[0]) return;
    const char *docs[] = {"/docs/trainer.md", "/docs/sweep.md", "/docs/design.md", "/docs/data.md"};
    size_t n = 0, cap = 1 << 20;
    uint16_t *t = malloc(cap * sizeof *t);
    char *all = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    for (size_t d = 0; d < 4; d++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", QP_SOURCE_DIR, docs[d]);
        size_t len = 0;
        char *s = tu_read(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        for (size_t i = 0; i < len && n < cap; i++) {
            char ch = s[i] ? s[i] : ' ';
            all[n] = ch;
            t[n++] = (unsigned char)ch;
        }
        free(s);
    }
    CU_ASSERT_FATAL(n > 100000);
    size_t nv = 20000;
    qp_error e = {0};
    char path[4200];
    snprintf(corpus, sizeof corpus, "%s", tu_path("corpus"));
    snprintf(path, sizeof path, "%s.train.tok", corpus);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t, n - nv, 256, "trunk-test", &e), QP_OK);
    snprintf(path, sizeof path, "%s.val.tok", corpus);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t + n - nv, nv, 256, "trunk-test", &e), QP_OK);
    snprintf(textf[0], sizeof textf[0], "%s", tu_path("train.txt"));
    snprintf(textf[1], sizeof textf[1], "%s", tu_path("val.txt"));
    FILE *f = fopen(textf[0], "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite(all, 1, n - nv, f);
    fclose(f);
    f = fopen(textf[1], "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite(all + n - nv, 1, nv, f);
    fclose(f);
    free(t);
    free(all);
}

/* The one record of a results file. */
static int read_one(const char *path, data_run *r)
{
    data_run_list l;
    data_run_list_init(&l);
    qp_error e = {0};
    int ok = data_runs_read(path, &l, &e) == QP_OK && l.n == 1;
    if (ok) *r = l.runs[0];
    else fprintf(stderr, "%s: %s (%zu records)\n", path, e.msg, l.n);
    data_run_list_free(&l);
    return ok;
}

/* `qatplan train` on the text corpus with a small model and these options; 0 on success. */
static int train(const char *opts, const char *runs, char **err)
{
    char cmd[8192];
    unlink(runs);
    snprintf(cmd, sizeof cmd,
             "train --train-text %s --val-text %s --layers 1 --width 32 --heads 2 --context 32 --batch 4 --threads 2 "
             "--device cpu --eval-tokens 4096 --lr 0.003 --warmup-tokens 1024 --quiet --runs-out %s %s",
             textf[0], textf[1], runs, opts);
    return tu_run_qatplan(cmd, NULL, err);
}

/* One point trained alone and as a branch of a trunk: the same record, bit for bit. */
static void branch_equals_alone(const char *point, const char *trunk_state, double at)
{
    char alone[4096], br[4096], opts[4096];
    data_run a, b;
    snprintf(alone, sizeof alone, "%s", tu_path("alone.jsonl"));
    snprintf(br, sizeof br, "%s", tu_path("branch.jsonl"));
    CU_ASSERT_EQUAL_FATAL(train(point, alone, NULL), 0);
    snprintf(opts, sizeof opts, "%s --init %s.at%.0f", point, trunk_state, at);
    char *err = NULL;
    int rc = train(opts, br, &err);
    if (rc) fprintf(stderr, "branch %s: %s\n", point, err ? err : "");
    free(err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_FATAL(read_one(alone, &a) && read_one(br, &b));
    if (a.loss != b.loss) fprintf(stderr, "%s: loss %.17g alone, %.17g as a branch\n", point, a.loss, b.loss);
    CU_ASSERT(a.loss == b.loss); /* bit for bit, not approximately */
    CU_ASSERT(memcmp(&a.loss_fp_switch, &b.loss_fp_switch, sizeof a.loss_fp_switch) == 0);
    CU_ASSERT(memcmp(&a.loss_ptq, &b.loss_ptq, sizeof a.loss_ptq) == 0);
    CU_ASSERT_EQUAL(a.d_fp, b.d_fp);
    CU_ASSERT_EQUAL(a.d_qat, b.d_qat);
    CU_ASSERT_EQUAL(a.schedule, b.schedule);
    CU_ASSERT_EQUAL(a.optimizer_reset, b.optimizer_reset);
    CU_ASSERT_STRING_EQUAL(a.trunk, "");
    char want[160];
    snprintf(want, sizeof want, "trunk-q@%.0f", at);
    CU_ASSERT_STRING_EQUAL(b.trunk, want);
}

/* 128 tokens per step. The points: 100 steps (12800 tokens); classic f = 0.25: 75 FP steps,
 * decay round(0.2 x 75) = 15, branch at 60; fused f = 0.25: branch at 75; classic f = 0.5:
 * 50 FP steps, decay 10, branch at 40; --reset-optimizer at the switch; f = 0 (fp-only, decay
 * 20): branch at 80. */
static void test_branch_equals_alone(void)
{
    make_corpus();
    char st[4096], runs[4096];
    snprintf(st, sizeof st, "%s", tu_path("trunk-q.state"));
    snprintf(runs, sizeof runs, "%s", tu_path("trunk.jsonl"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "--bits 2 --tokens 10240 --qat-fraction 0 --decay-frac 0 --run-id trunk-q --state %s "
                              "--save-at 5120,7680,9600,10240", st);
    CU_ASSERT_EQUAL_FATAL(train(cmd, runs, NULL), 0);
    branch_equals_alone("--bits 2 --tokens 12800 --qat-fraction 0.25 --schedule classic", st, 7680);
    branch_equals_alone("--bits 2 --tokens 12800 --qat-fraction 0.25 --schedule fused", st, 9600);
    branch_equals_alone("--bits 2 --tokens 12800 --qat-fraction 0.5 --schedule classic --reset-optimizer", st, 5120);
    branch_equals_alone("--bits 4 --tokens 12800 --qat-fraction 0 --schedule classic", st, 10240);
    /* a fused branch with a QAT-phase rate of its own: only the branch's part differs */
    branch_equals_alone("--bits 2 --tokens 12800 --qat-fraction 0.25 --schedule fused --qat-lr 0.001", st, 9600);
}

/* What cannot be a trunk for this run is refused, naming why, before anything is trained. */
static void test_branch_refusals(void)
{
    make_corpus();
    char st[4096], runs[4096], opts[4096];
    snprintf(st, sizeof st, "%s", tu_path("trunk-r.state"));
    snprintf(runs, sizeof runs, "%s", tu_path("trunk-r.jsonl"));
    snprintf(opts, sizeof opts, "--bits 2 --tokens 10240 --qat-fraction 0 --decay-frac 0 --run-id trunk-r --state %s "
                                "--save-at 5120,10240", st);
    CU_ASSERT_EQUAL_FATAL(train(opts, runs, NULL), 0);
    struct {
        const char *opts, *msg;
    } bad[] = {
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --seed 2 --init STATE.at5120", "--seed differs"},
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --batch 8 --init STATE.at5120", "--batch differs"},
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --lr 0.002 --init STATE.at5120", "learning rate at step 0"},
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --warmup-tokens 2048 --init STATE.at5120", "learning rate at step"},
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --init STATE.at10240", "after this run's branch point (step 60"},
        {"--bits 16 --tokens 12800 --init STATE.at5120", "parameter layout"},
        {"--bits 2 --tokens 12800 --qat-fraction 0.25 --init STATE", "finished run"},
        {"--bits 2 --tokens 12800 --save-at 1280", "--save-at needs --state"},
        {"--bits 2 --tokens 12800 --save-at 1000 --state STATE.x", "whole multiples of the tokens per step (128)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char o[4096], r[4096], *err = NULL;
        const char *at = strstr(bad[i].opts, "STATE");
        if (at) snprintf(o, sizeof o, "%.*s%s%s", (int)(at - bad[i].opts), bad[i].opts, st, at + 5);
        else snprintf(o, sizeof o, "%s", bad[i].opts);
        snprintf(r, sizeof r, "%s", tu_path("bad.jsonl"));
        int rc = train(o, r, &err);
        CU_ASSERT(rc == 2 || rc == 1);
        if (!err || !strstr(err, bad[i].msg)) fprintf(stderr, "%s: want '%s', got: %s\n", o, bad[i].msg, err ? err : "");
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, bad[i].msg));
        CU_ASSERT_EQUAL(access(r, F_OK), -1); /* nothing trained, nothing recorded */
        free(err);
    }
}

/* ---- the sweep -------------------------------------------------------------------------- */

/* 2 fractions x 2 schedules at 2 bits, plus f = 1 (no FP phase: runs alone) and an FP run
 * (a trunk of its own parameter layout). */
static void write_grid(const char *path, int trunks, const char *extra)
{
    char g[8192];
    snprintf(g, sizeof g,
             "{\"data\": \"%s\", \"shapes\": [{\"layers\": 1, \"width\": 32, \"heads\": 2, \"context\": 32}],"
             " \"tokens\": [12800], \"bits\": [2, 16], \"fractions\": [0.25, 0.5, 1], \"schedules\": [\"classic\", \"fused\"],"
             " \"trunks\": %s, \"train\": {\"batch\": 4, \"lr\": 0.003, \"threads\": 2,"
             " \"args\": [\"--eval-tokens\", \"4096\", \"--warmup-tokens\", \"1024\", \"--device\", \"cpu\"%s]}}",
             corpus, trunks ? "true" : "false", extra);
    tu_write(path, g);
}

static void test_grid_trunks_plan(void)
{
    make_corpus();
    char gp[4096];
    snprintf(gp, sizeof gp, "%s", tu_path("plan.json"));
    write_grid(gp, 1, "");
    sweep_grid g, g0;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(gp, &g, &e), QP_OK);
    write_grid(gp, 0, "");
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(gp, &g0, &e), QP_OK);
    /* 2 x 2 at 2 bits, f = 1 once, and the FP run: 6 points, the same run ids either way */
    CU_ASSERT_EQUAL_FATAL(g.n, 6);
    CU_ASSERT_EQUAL_FATAL(g0.n, 6);
    CU_ASSERT_EQUAL(g0.n_trunks, 0);
    CU_ASSERT_EQUAL_FATAL(g.n_trunks, 2); /* the 2-bit layout and the FP one */
    int alone = 0;
    for (size_t i = 0; i < g.n; i++) {
        const sweep_point *p = &g.points[i];
        CU_ASSERT_STRING_EQUAL(p->run_id, g0.points[i].run_id);
        CU_ASSERT_EQUAL(g0.points[i].trunk, 0);
        if (!p->trunk) {
            alone++;
            CU_ASSERT_EQUAL(p->schedule, DATA_SCHED_QAT_ONLY);
            continue;
        }
        const sweep_trunk *t = &g.trunks[p->trunk - 1];
        CU_ASSERT(strncmp(t->p.run_id, "trunk-L1d32-", 12) == 0);
        CU_ASSERT_EQUAL(data_bits_is_fp(t->p.bits), data_bits_is_fp(p->bits));
        double want = p->bits == 16 ? 80 : p->schedule == DATA_SCHED_FUSED ? (1 - p->fraction) * 100
                                                                           : p->fraction == 0.25 ? 60 : 40;
        CU_ASSERT_DOUBLE_EQUAL(p->branch_tokens, want * 128, 0);
        CU_ASSERT(p->branch_tokens <= t->p.tokens);
    }
    CU_ASSERT_EQUAL(alone, 1);
    const sweep_trunk *q = &g.trunks[g.points[0].trunk - 1];
    CU_ASSERT_EQUAL(q->n_save, 4);
    CU_ASSERT_DOUBLE_EQUAL(q->p.tokens, 75 * 128, 0);
    double shared, separate;
    sweep_trunk_tokens(&g, NULL, &shared, &separate);
    CU_ASSERT_DOUBLE_EQUAL(separate, 6 * 12800, 0);
    /* trunks 75 + 80 steps; branches 40 + 25 + 60 + 50 + 20 steps; f = 1 alone: 100 */
    CU_ASSERT_DOUBLE_EQUAL(shared, (75 + 80 + 40 + 25 + 60 + 50 + 20 + 100) * 128.0, 0);
    sweep_grid_free(&g);
    sweep_grid_free(&g0);

    /* "methods" (settings of the QAT phase) share one trunk; one that changes an FP setting
     * cannot branch from it */
const char *mj[2] = {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":32,\"heads\":2,\"context\":32}],"
                         "\"tokens\":[12800],\"bits\":[2],\"fractions\":[0.25],\"schedules\":[\"classic\",\"fused\"],"
                         "\"trunks\":true,\"methods\":[{\"qat_lr\":0.003,\"name\":\"hi\"},{",
                         ",\"name\":\"lo\"}],\"train\":{\"batch\":4,\"args\":[\"--warmup-tokens\",\"1024\"]}}"};
    char mg[2048];
    snprintf(mg, sizeof mg, "%s%s%s", mj[0], "\"qat_lr\":0.001", mj[1]);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(mg, "m.json", &g, &e), QP_OK);
    CU_ASSERT_EQUAL(g.n, 4);
    CU_ASSERT_EQUAL(g.n_trunks, 1);
    CU_ASSERT_EQUAL(g.trunks[0].p.method, 0);
    sweep_grid_free(&g);
    snprintf(mg, sizeof mg, "%s%s%s", mj[0], "\"weight_decay\":0.01", mj[1]);
    CU_ASSERT_NOT_EQUAL(sweep_grid_parse(mg, "m.json", &g, &e), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "changes an FP setting"));

    /* refused: no absolute warmup, a warmup past a branch point, --init, a non-boolean */
    const char *bad[][2] = {
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":16}],\"tokens\":[4096],"
         "\"bits\":[4],\"fractions\":[0.5],\"trunks\":true}",
         "needs an absolute warmup"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":16}],\"tokens\":[4096],"
         "\"bits\":[4],\"fractions\":[0.5],\"trunks\":true,\"train\":{\"args\":[\"--warmup-tokens\",\"3000\"]}}",
         "use a smaller --warmup-tokens"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":16}],\"tokens\":[4096],"
         "\"bits\":[4],\"fractions\":[0.5],\"trunks\":true,\"train\":{\"args\":[\"--warmup-tokens\",\"256\",\"--init\","
         "\"c.safetensors\"]}}",
         "--init"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":16}],\"tokens\":[4096],"
         "\"bits\":[4],\"fractions\":[0.5],\"trunks\":\"yes\"}",
         "must be true or false"},
        {"{\"data\":\"x\",\"shapes\":[{\"n_params\":1e6}],\"tokens\":[4096],"
         "\"bits\":[4],\"fractions\":[0.5],\"trunks\":true,\"train\":{\"args\":[\"--warmup-tokens\",\"256\"]}}",
         "qatplan's own trainer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qp_error e2 = {0};
        sweep_grid b;
        CU_ASSERT_NOT_EQUAL(sweep_grid_parse(bad[i][0], "bad.json", &b, &e2), QP_OK);
        if (!strstr(e2.msg, bad[i][1])) fprintf(stderr, "want '%s', got: %s\n", bad[i][1], e2.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, bad[i][1]));
    }
}

static int count_in(const char *path, const char *needle)
{
    char *t = tu_read(path, NULL);
    int n = 0;
    for (char *p = t; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    free(t);
    return n;
}

/* Files in the sweep's work directory whose name holds `part`. */
static int count_files(const char *runs, const char *part)
{
    char ls[8192];
    snprintf(ls, sizeof ls, "ls %s.sweep 2>/dev/null | grep -c -- '%s'", runs, part);
    FILE *p = popen(ls, "r");
    int n = -1;
    if (!p || fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

/* Every record of `a` has one in `b` with the same run id (by_id), else the same bits, d_fp
 * and schedule, and bit for bit the same loss. */
static void same_losses_as(const char *a, const char *b, size_t n_want, int by_id)
{
    data_run_list la, lb;
    data_run_list_init(&la);
    data_run_list_init(&lb);
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(data_runs_read(a, &la, &e), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_runs_read(b, &lb, &e), QP_OK);
    CU_ASSERT_EQUAL(la.n, n_want);
    CU_ASSERT_EQUAL(lb.n, n_want);
    for (size_t i = 0; i < la.n; i++) {
        const data_run *x = &la.runs[i], *y = NULL;
        for (size_t j = 0; j < lb.n; j++) {
            const data_run *z = &lb.runs[j];
            if (by_id ? !strcmp(z->run_id, x->run_id)
                      : z->bits == x->bits && z->d_fp == x->d_fp && z->schedule == x->schedule)
                y = z;
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(y);
        CU_ASSERT_EQUAL(x->status, DATA_RUN_OK);
        if (x->loss != y->loss) fprintf(stderr, "%s: loss %.17g vs %.17g\n", x->run_id, x->loss, y->loss);
        CU_ASSERT(x->loss == y->loss);
        CU_ASSERT(memcmp(&x->loss_ptq, &y->loss_ptq, sizeof x->loss_ptq) == 0);
    }
    data_run_list_free(&la);
    data_run_list_free(&lb);
}

static void same_losses(const char *a, const char *b, size_t n_want) { same_losses_as(a, b, n_want, 1); }

/* The "done when": the same losses as the points trained separately, bit for bit on
 * the CPU, and fewer tokens trained, with the count in the output. */
static void test_sweep_trunks_equal_separate(void)
{
    make_corpus();
    char gt[4096], gs[4096], rt[4096], rs[4096], cmd[12288];
    snprintf(gt, sizeof gt, "%s", tu_path("grid-t.json"));
    snprintf(gs, sizeof gs, "%s", tu_path("grid-s.json"));
    snprintf(rt, sizeof rt, "%s", tu_path("runs-t.jsonl"));
    snprintf(rs, sizeof rs, "%s", tu_path("runs-s.jsonl"));
    write_grid(gt, 1, "");
    write_grid(gs, 0, "");
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --dry-run", gt, rt);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, &out, NULL), 0);
    /* 6 x 12800 = 76800 separately; trunks 75 + 80 steps, branches 195, f = 1 100: 450 steps */
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "trunk-and-branch: 57600 tokens instead of 76800 (2 trunks; 25.0% saved)"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "--save-at 5120,6400,7680,9600"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, ".state.at7680"));
    free(out);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit --jobs 2", gt, rt);
    int rc = tu_run_qatplan(cmd, NULL, &err);
    if (rc) fprintf(stderr, "%s\n", err ? err : "");
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "trained 57600 tokens instead of 76800"));
    free(err);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit --jobs 2 -q", gs, rs);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    same_losses(rt, rs, 6);
    /* the records name their trunk; the trunks' states and copies are gone once all are in */
    CU_ASSERT_EQUAL(count_in(rt, "\"trunk\":\"trunk-L1d32-"), 5);
    CU_ASSERT_EQUAL(count_files(rt, "state"), 0);
    /* a rerun trains nothing: every point is recorded, no trunk is needed */
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit", gt, rt);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "6 already recorded") && strstr(err, "to run and 0 trunks"));
    free(err);
}

/* A sweep killed while its trunk trains: the trunk saves its state (SIGTERM from the dying
 * sweep) and the rerun resumes it; branches killed mid-run resume too (--max-steps slices the
 * runs: each process stops after 30 steps with its state saved, as a kill would). The losses
 * are still those of the separate runs. */
static void test_sweep_trunks_killed_resume(void)
{
    make_corpus();
    char gt[4096], rt[4096], rs[4096], cmd[12288];
    snprintf(gt, sizeof gt, "%s", tu_path("grid-k.json"));
    snprintf(rt, sizeof rt, "%s", tu_path("runs-k.jsonl"));
    snprintf(rs, sizeof rs, "%s", tu_path("runs-s.jsonl")); /* test_sweep_trunks_equal_separate's */
    write_grid(gt, 1, "");
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        execl(QP_QATPLAN_EXE, "qatplan", "sweep", gt, "-o", rt, "--no-fit", "-q", (char *)NULL);
        _exit(127);
    }
    /* the first trunk's first copy is saved (step 40 of 75): kill the sweep there */
    for (int i = 0; i < 600 && count_files(rt, ".state.at") < 1; i++) usleep(5000);
    kill(pid, SIGKILL);
    int ws;
    waitpid(pid, &ws, 0);
    for (int i = 0; i < 100 && count_files(rt, "trunk-L1d32-9.60K") < 3; i++) usleep(50000); /* log, lock, state */
    usleep(300000);
    int killed_in_trunk = count_in(rt, "run_id") == 0;
    if (!killed_in_trunk) fprintf(stderr, "note: the trunk finished before the kill\n");
    /* resume with every process sliced into 30 steps: several reruns until all are in */
    char st_cmd[12288];
    snprintf(st_cmd, sizeof st_cmd, "sweep %s -o %s --no-fit --progress-every 0", gt, rt);
    char *err = NULL;
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(st_cmd, NULL, &err), -1);
    if (killed_in_trunk) CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "(resuming)"));
    free(err);
    for (int i = 0; i < 3 && count_in(rt, "run_id") < 6; i++) tu_run_qatplan(st_cmd, NULL, NULL);
    same_losses(rt, rs, 6);

    /* every process (trunks and branches) stopped after 30 steps, its state saved: a rerun
     * continues each; the trunks take 3 processes, the longest branch 4 */
    char gm[4096], rm[4096];
    snprintf(gm, sizeof gm, "%s", tu_path("grid-m.json"));
    snprintf(rm, sizeof rm, "%s", tu_path("runs-m.jsonl"));
    write_grid(gm, 1, ", \"--max-steps\", \"30\"");
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit -q", gm, rm);
    int reruns = 0;
    while (reruns < 12 && count_in(rm, "run_id") < 6) {
        tu_run_qatplan(cmd, NULL, NULL);
        reruns++;
    }
    CU_ASSERT(reruns >= 4 && reruns <= 8);
    CU_ASSERT(count_in(rm, "(resuming)") == 0); /* the logs say it, not the records */
    same_losses_as(rm, rs, 6, 0);
}

/* Slurm: the trunks as an array of their own, the runs' array after it (afterany); running the
 * tasks by hand in that order (--only-trunk t, then --only-index i) gives the same records. */
static void test_slurm_trunks(void)
{
    make_corpus();
    char gt[4096], rt[4096], rs[4096], cmd[12288];
    snprintf(gt, sizeof gt, "%s", tu_path("grid-sl.json"));
    snprintf(rt, sizeof rt, "%s", tu_path("runs-sl.jsonl"));
    snprintf(rs, sizeof rs, "%s", tu_path("runs-s.jsonl"));
    write_grid(gt, 1, "");
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --emit slurm", gt, rt);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "--job-name=qatplan-trunks --array=0-1 "));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "--only-trunk \"\\$SLURM_ARRAY_TASK_ID\""));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "--array=0-5 --dependency=afterany:$trunk_job"));
    char *trunk_at = out ? strstr(out, "trunk_job=$(sbatch") : NULL, *runs_at = out ? strstr(out, "array_job=$(sbatch") : NULL;
    CU_ASSERT(trunk_at && runs_at && trunk_at < runs_at);
    free(out);
    for (int t = 0; t < 2; t++) {
        snprintf(cmd, sizeof cmd, "sweep %s -o %s --only-trunk %d -q", gt, rt, t);
        CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    }
    CU_ASSERT_EQUAL(count_in(rt, "run_id"), 0); /* trunks record nothing in the results */
    CU_ASSERT_EQUAL(count_files(rt, ".state.at"), 5); /* 4 branch points of the 2-bit trunk, 1 of the FP one */
    for (int i = 5; i >= 0; i--) {
        snprintf(cmd, sizeof cmd, "sweep %s -o %s --only-index %d -q", gt, rt, i);
        CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    }
    same_losses(rt, rs, 6);
    CU_ASSERT_EQUAL(count_files(rt, ".state"), 0);
    /* a trunk that does not exist */
    char *err = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --only-trunk 2", gt, rt);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "--only-trunk 2: the grid has 2 trunks"));
    free(err);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_branch_equals_alone);
    TU_ADD(s, test_branch_refusals);
    TU_ADD(s, test_grid_trunks_plan);
    TU_ADD(s, test_sweep_trunks_equal_separate);
    TU_ADD(s, test_sweep_trunks_killed_resume);
    TU_ADD(s, test_slurm_trunks);
}

int main(void) { return tu_main("trunk", add); }
