/* The sweep: grid expansion and run ids, running with a fake trainer (crash, hang, diverge,
 * torn lines, rerun skips, kill and resume), refits with a fake fitter, the report. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sweep.h"
#include "train.h"
#include "sweep_fakes.h"
#include "testutil.h"

/* 2 shapes x 2 budgets x bits {2, 4} x f {0, 0.25, 1} x {classic, fused} + FP runs:
 * per shape and budget: f=0 -> 2 runs (one per bits), f=1 -> 2, f=0.25 -> 4, FP -> 1: 9. */
static const char *grid_json =
    "{\"schema\": \"qatplan-grid-v1\", \"data\": \"corpus/x\",\n"
    " \"shapes\": [{\"layers\": 1, \"width\": 16, \"heads\": 2, \"context\": 32},\n"
    "            {\"layers\": 2, \"width\": 32, \"heads\": 2, \"context\": 32, \"tokens\": [\"50K\", \"200K\"]}],\n"
    " \"tokens_per_param\": [10, 40],\n"
    " \"bits\": [2, 4, 16], \"fractions\": [0, 0.25, 1], \"schedules\": [\"classic\", \"fused\"],\n"
    " \"train\": {\"batch\": 4, \"lr\": 0.003, \"args\": [\"--eval-tokens\", \"4096\"]}}\n";

static int count_lines_with(const char *path, const char *needle)
{
    char *t = tu_read(path, NULL);
    if (!t) return 0;
    int n = 0;
    for (char *p = t; (p = strstr(p, needle)); p += strlen(needle)) n++;
    free(t);
    return n;
}

/* Every grid point has exactly one record (ok or diverged) in the file. */
static void assert_each_once(const sweep_grid *g, const char *runs)
{
    char *t = tu_read(runs, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    for (size_t i = 0; i < g->n; i++) {
        char key[160];
        snprintf(key, sizeof key, "\"run_id\":\"%s\"", g->points[i].run_id);
        int n = 0;
        for (char *p = t; (p = strstr(p, key)); p += strlen(key)) n++;
        if (n != 1) fprintf(stderr, "run %s recorded %d times\n", g->points[i].run_id, n);
        CU_ASSERT_EQUAL(n, 1);
    }
    free(t);
}

static void test_grid_expand(void)
{
    sweep_grid g;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(grid_json, "grid.json", &g, &err), QP_OK);
    CU_ASSERT_EQUAL(g.n, 2 * 2 * 9);
    CU_ASSERT(g.has_quantized);
    /* shape 1: L1 d16: d_ff = 48 (8/3*16 = 42.7 -> 48 as a multiple of 8) */
    double n1 = 1 * (4 * 16 * 16 + 3 * 16 * 48 + 2 * 16) + 16 + 256 * 16;
    CU_ASSERT_DOUBLE_EQUAL(g.points[0].n_params, n1, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(g.points[0].tokens, round(10 * n1), 0.5);
    int fp = 0, qat_only = 0, fp_only = 0, fused = 0;
    for (size_t i = 0; i < g.n; i++) {
        const sweep_point *p = &g.points[i];
        CU_ASSERT_EQUAL(p->index, (int)i);
        for (size_t j = 0; j < i; j++) CU_ASSERT(strcmp(p->run_id, g.points[j].run_id) != 0);
        if (p->bits >= 16) {
            fp++;
            CU_ASSERT_EQUAL(p->fraction, 0);
        }
        if (p->schedule == DATA_SCHED_QAT_ONLY) {
            qat_only++;
            CU_ASSERT_EQUAL(p->fraction, 1);
        }
        if (p->schedule == DATA_SCHED_FP_ONLY && p->bits < 16) {
            fp_only++;
            CU_ASSERT_EQUAL(p->fraction, 0);
        }
        if (p->schedule == DATA_SCHED_FUSED) fused++;
        if (p->shape.n_layer == 2) CU_ASSERT(p->tokens == 50000 || p->tokens == 200000);
    }
    CU_ASSERT_EQUAL(fp, 4);
    CU_ASSERT_EQUAL(qat_only, 8);
    CU_ASSERT_EQUAL(fp_only, 8);
    CU_ASSERT_EQUAL(fused, 8);
    /* Deterministic: the same grid gives the same ids; a changed setting changes them. */
    sweep_grid g2;
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(grid_json, "grid.json", &g2, &err), QP_OK);
    for (size_t i = 0; i < g.n; i++) CU_ASSERT_STRING_EQUAL(g.points[i].run_id, g2.points[i].run_id);
    sweep_grid_free(&g2);
    char *changed = strdup(grid_json);
    memcpy(strstr(changed, "0.003"), "0.002", 5);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(changed, "grid.json", &g2, &err), QP_OK);
    for (size_t i = 0; i < g.n; i++) CU_ASSERT(strcmp(g.points[i].run_id, g2.points[i].run_id) != 0);
    free(changed);
    sweep_grid_free(&g2);
    /* The trainer's arguments carry the point. */
    char **args;
    CU_ASSERT_EQUAL_FATAL(sweep_point_args(&g, &g.points[5], "r.jsonl", "s.state", 1, 2, &args, &err), QP_OK);
    char joined[4096] = "";
    for (char **a = args; *a; a++) {
        strcat(joined, *a);
        strcat(joined, " ");
    }
    CU_ASSERT_PTR_NOT_NULL(strstr(joined, "--data corpus/x "));
    CU_ASSERT_PTR_NOT_NULL(strstr(joined, "--batch 4 --lr 0.003 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(joined, "--eval-tokens 4096 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(joined, "--runs-out r.jsonl --state s.state --resume "));
    CU_ASSERT_PTR_NOT_NULL(strstr(joined, g.points[5].run_id));
    sweep_argv_free(args);
    /* A shape's own "lr" wins for that shape only, and changes only that shape's ids. */
    char *own = strdup(grid_json);
    char *open_shape = strstr(own, "\"layers\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(open_shape);
    size_t at = (size_t)(open_shape - own);
    char *with_lr = malloc(strlen(own) + 32);
    sprintf(with_lr, "%.*s\"lr\": 0.01, %s", (int)at, own, own + at);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(with_lr, "grid.json", &g2, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(g2.n, g.n);
    int first_shape = 0, other_shapes = 0;
    for (size_t i = 0; i < g.n; i++) {
        int same_shape = g.points[i].shape.d_model == g.points[0].shape.d_model &&
                         g.points[i].shape.n_layer == g.points[0].shape.n_layer;
        int changed_id = strcmp(g.points[i].run_id, g2.points[i].run_id) != 0;
        CU_ASSERT_EQUAL(changed_id, same_shape);
        CU_ASSERT_EQUAL_FATAL(sweep_point_args(&g2, &g2.points[i], "r.jsonl", NULL, 0, 1, &args, &err), QP_OK);
        joined[0] = 0;
        for (char **a = args; *a; a++) {
            strcat(joined, *a);
            strcat(joined, " ");
        }
        CU_ASSERT_PTR_NOT_NULL(strstr(joined, same_shape ? "--lr 0.01 " : "--lr 0.003 "));
        sweep_argv_free(args);
        first_shape += same_shape;
        other_shapes += !same_shape;
    }
    CU_ASSERT(first_shape > 0 && other_shapes > 0);
    free(with_lr);
    free(own);
    sweep_grid_free(&g2);
    sweep_grid_free(&g);
    sweep_grid_free(NULL);
}

static void test_grid_errors(void)
{
    struct { const char *json, *expect; } bad[] = {
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000]}", "\"bits\" is missing"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4]}", "\"fractions\" is missing"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[1.5]}", "\"fractions\" 1.5 is outside the trainer's range 0..1 (qatplan train --qat-fraction)"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[9],\"fractions\":[0]}", "bits 9"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"bits\":[4],\"fractions\":[0]}", "no token budget"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"tokens_per_param\":[2],\"bits\":[4],\"fractions\":[0]}", "not both"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":18,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0]}", "even head size"},
        {"{\"data\":\"x\",\"shapes\":[],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0]}", "\"shapes\" must list"},
        {"{\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0]}", "\"data\" must name"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0],\"train\":{\"args\":[\"--bits\",\"2\"]}}", "must not set --bits"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0],\"fraction\":[1]}", "unknown key \"fraction\""},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[\"1m\"],\"bits\":[4],\"fractions\":[0]}", "1m"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[10],\"bits\":[4],\"fractions\":[0]}", "less than one context"},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0],\"schedules\":[\"fp-only\"]}", "\"classic\" or \"fused\""},
        {"{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32,\"lr\":-1}],\"tokens\":[1000],\"bits\":[4],\"fractions\":[0]}", "shapes[0]: \"lr\" -1 is outside the trainer's range (0, 1)"},
        {"[1,2", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sweep_grid g;
        qp_error err = {0};
        qp_status st = sweep_grid_parse(bad[i].json, "g.json", &g, &err);
        CU_ASSERT(st != QP_OK);
        if (!strstr(err.msg, bad[i].expect)) fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, err.msg, bad[i].expect);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[i].expect));
    }
    /* Through the CLI: exit 2 and the message. */
    tu_write(tu_path("bad-grid.json"), bad[0].json);
    char cmd[4096], *err = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s", tu_path("bad-grid.json"), tu_path("bad-runs.jsonl"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "\"bits\" is missing"));
    free(err);
    CU_ASSERT_EQUAL(tu_run_qatplan("sweep", NULL, NULL), 2);
    CU_ASSERT_EQUAL(tu_run_qatplan("sweep --emit pbs x.json -o y", NULL, NULL), 2);
}

/* A grid of n_tok budgets x 50 fractions x {classic, fused} x seeds 1..n_seed, one QAT bit
 * width (bits_json) and the shape listed n_shape times: n_shape x n_tok x 50 x 2 x n_seed x
 * n_bits points before duplicates are dropped. */
static char *big_grid(int n_shape, int n_tok, int n_seed, const char *bits_json)
{
    size_t cap = 65536, k = 0;
    char *s = malloc(cap);
    k += (size_t)snprintf(s + k, cap - k, "{\"data\":\"x\",\"bits\":%s,\"schedules\":[\"classic\",\"fused\"],\"shapes\":[",
                          bits_json);
    for (int i = 0; i < n_shape; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}", i ? "," : "");
    k += (size_t)snprintf(s + k, cap - k, "],\"tokens\":[");
    for (int i = 0; i < n_tok; i++) k += (size_t)snprintf(s + k, cap - k, "%s%d", i ? "," : "", 1000 + i);
    k += (size_t)snprintf(s + k, cap - k, "],\"fractions\":[");
    for (int i = 0; i < 50; i++) k += (size_t)snprintf(s + k, cap - k, "%s%.3f", i ? "," : "", 0.01 + 0.019 * i);
    k += (size_t)snprintf(s + k, cap - k, "],\"seeds\":[");
    for (int i = 0; i < n_seed; i++) k += (size_t)snprintf(s + k, cap - k, "%s%d", i ? "," : "", i + 1);
    snprintf(s + k, cap - k, "]}");
    return s;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(((const sweep_point *)a)->run_id, ((const sweep_point *)b)->run_id);
}

/* Points are capped (with the count, before expanding); large grids and their duplicate
 * check are fast (a hash, not a scan per point). */
static void test_grid_cap_and_size(void)
{
    sweep_grid g;
    qp_error err = {0};
    /* 110000 points: refused, the count and the limit named */
    char *j = big_grid(1, 50, 11, "[2, 4]");
    CU_ASSERT_EQUAL(sweep_grid_parse(j, "big.json", &g, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expands to 110000 points"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "limit of 100000"));
    CU_ASSERT_PTR_NULL(g.points);
    free(j);
    /* 200 shapes x 256 seeds x 100 budgets x 256 bits (repeats are allowed in lists) x 50 x 2:
     * 1.3e11 points in a few KB, refused before any of them is built */
    j = big_grid(200, 100, 256, "[4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4]");
    double t0 = qp_now();
    CU_ASSERT_EQUAL(sweep_grid_parse(j, "huge.json", &g, &err), QP_ERR_INPUT);
    CU_ASSERT(qp_now() - t0 < 5);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expands to 16384000000 points"));
    free(j);

    /* 50000 distinct points, through the CLI's --dry-run; the old per-point scan took ~5 s here
     * (0.3 s now), so the bound only catches a quadratic check coming back */
    j = big_grid(1, 50, 10, "[4]");
    tu_write(tu_path("g50k.json"), j);
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --dry-run", tu_path("g50k.json"), tu_path("g50k-runs.jsonl"));
    t0 = qp_now();
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, NULL), 0);
    double dt = qp_now() - t0;
    fprintf(stderr, "dry run of 50000 points: %.2f s\n", dt);
    CU_ASSERT(dt < 30);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "50000 runs: 0 recorded, 50000 to run"));
    free(out);
    /* ... and with every one of them recorded (the lookups in the results file were a scan
     * per point too: 80 s here, 0.8 s with the index) */
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(j, "g50k.json", &g, &err), QP_OK);
    FILE *rf = fopen(tu_path("g50k-runs.jsonl"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rf);
    for (size_t i = 0; i < g.n; i++)
        fprintf(rf, "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"%s\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,"
                    "\"bits\":16,\"schedule\":\"fp-only\",\"loss\":3.1,\"status\":\"ok\"}\n", g.points[i].run_id);
    fclose(rf);
    sweep_grid_free(&g);
    t0 = qp_now();
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, NULL), 0);
    dt = qp_now() - t0;
    fprintf(stderr, "dry run of 50000 recorded points: %.2f s\n", dt);
    CU_ASSERT(dt < 30);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "50000 runs: 50000 recorded, 0 to run"));
    free(out);
    free(j);

    /* Duplicates still found: the shape listed twice and f = 0 under two schedules (the same
     * fp-only run): 2 x 20 x (49 x 2 + 1) x 3 = 11880 built, 20 x 99 x 3 = 5940 distinct. */
    j = big_grid(2, 20, 3, "[4]");
    char *f = strstr(j, "0.010");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    memcpy(f, "0.000", 5);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(j, "dup.json", &g, &err), QP_OK);
    CU_ASSERT_EQUAL(g.n, 20 * 99 * 3);
    qsort(g.points, g.n, sizeof *g.points, cmp_ids);
    for (size_t i = 1; i < g.n; i++) CU_ASSERT(strcmp(g.points[i - 1].run_id, g.points[i].run_id) != 0);
    sweep_grid_free(&g);
    free(j);
}

static void test_results_torn_lines(void)
{
    const char *p = tu_path("torn.jsonl");
    tu_write(p, "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"a\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":3.1,\"status\":\"ok\"}\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"b\",\"n_par\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"c\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":\"NaN\",\"status\":\"diverged\"}\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"d\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":3.1,\"status\":\"failed\"}\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"e\",\"n_params\":1e6");
    sweep_results r;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_results_read(p, &r, &err), QP_OK);
    CU_ASSERT_EQUAL(r.runs.n, 3);
    CU_ASSERT_EQUAL(r.n_bad_lines, 2);
    CU_ASSERT_EQUAL(r.first_bad_line, 2);
    CU_ASSERT_PTR_NOT_NULL(sweep_results_find(&r, "a"));
    CU_ASSERT_PTR_NOT_NULL(sweep_results_find(&r, "c"));   /* diverged counts as done */
    CU_ASSERT_PTR_NULL(sweep_results_find(&r, "d"));       /* failed is rerun */
    CU_ASSERT_PTR_NULL(sweep_results_find(&r, "b"));
    CU_ASSERT_PTR_NULL(sweep_results_find(&r, "e"));
    sweep_results_free(&r);
    /* the record that counts is the last ok or diverged one of its run id */
    tu_write(p, "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"a\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":3.1,\"status\":\"ok\"}\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"a\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":3.0,\"status\":\"ok\"}\n"
                "{\"schema\":\"qatplan-run-v1\",\"run_id\":\"a\",\"n_params\":1e6,\"d_fp\":1e7,\"d_qat\":0,\"bits\":16,"
                "\"schedule\":\"fp-only\",\"loss\":2.9,\"status\":\"failed\"}\n");
    CU_ASSERT_EQUAL_FATAL(sweep_results_read(p, &r, &err), QP_OK);
    const data_run *a = sweep_results_find(&r, "a");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_DOUBLE_EQUAL(a->loss, 3.0, 1e-12);
    sweep_results_free(&r);
    CU_ASSERT_EQUAL(sweep_results_read(tu_path("does-not-exist.jsonl"), &r, &err), QP_OK);
    CU_ASSERT_EQUAL(r.runs.n, 0);
    sweep_results_free(&r);
}

/* The whole sweep through the CLI with the fake trainer: faults, rerun, torn line, refits. */
static void test_sweep_run_faults_and_rerun(void)
{
    fakes_install();
    char grid[4096], runs[4096];
    snprintf(grid, sizeof grid, "%s", tu_path("grid.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("runs.jsonl"));
    tu_write(grid, grid_json);
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(grid, &g, &e), QP_OK);
    /* crash the 2-bit f=0.25 classic runs, hang one, diverge the fused 4-bit ones */
    setenv("FAKE_CRASH", "b2-f0.25-classic", 1);
    setenv("FAKE_HANG", "L2d32-200K-b4-f0.25-classic", 1);
    setenv("FAKE_DIVERGE", "b4-f0.25-fused", 1);
    setenv("FAKE_FIT_MIN", "6", 1);
    char cmd[8192], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --jobs 3 --refit-every 4 --run-timeout 2", grid, runs);
    double t0 = qp_now();
    int rc = tu_run_qatplan(cmd, &out, &err);
    double secs = qp_now() - t0;
    CU_ASSERT_EQUAL(rc, 1); /* some runs failed */
    CU_ASSERT(secs < 30);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "FAILED"));
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "killed by signal 11"));
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "timed out"));
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "fake trainer: crashing on purpose")); /* the log's last line */
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "diverged"));
    int crashed = 0, hung = 0, diverged = 0;
    for (size_t i = 0; i < g.n; i++) {
        crashed += strstr(g.points[i].run_id, "b2-f0.25-classic") != NULL;
        hung += strstr(g.points[i].run_id, "L2d32-200K-b4-f0.25-classic") != NULL;
        diverged += strstr(g.points[i].run_id, "b4-f0.25-fused") != NULL;
    }
    CU_ASSERT_EQUAL(crashed, 4);
    CU_ASSERT_EQUAL(hung, 1);
    CU_ASSERT_EQUAL(diverged, 4);
    char summary[256];
    snprintf(summary, sizeof summary, "%zu ok, %d diverged, %d failed", g.n - crashed - hung - diverged, diverged, crashed + hung);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, summary));
    if (err && !strstr(err, summary)) fprintf(stderr, "expected '%s' in:\n%s\n", summary, err);
    CU_ASSERT_EQUAL(count_lines_with(runs, "\"run_id\""), (int)g.n - crashed - hung);
    CU_ASSERT_EQUAL(count_lines_with(runs, "\"status\":\"diverged\""), diverged);
    /* refits: every 4 runs and at the end; the early ones lacked runs and did not fail the sweep */
    int fits = count_lines_with(tu_path("fitcalls.log"), "fit n=");
    CU_ASSERT(fits >= 3);
    char law[4096], report[4096];
    snprintf(law, sizeof law, "%s", tu_path("runs.law.json"));
    snprintf(report, sizeof report, "%s", tu_path("runs.report.txt"));
    CU_ASSERT_EQUAL(access(law, F_OK), 0);
    char *rep = tu_read(report, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
    CU_ASSERT_PTR_NOT_NULL(strstr(rep, "predicted against observed"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rep, "not recorded yet"));
    CU_ASSERT_PTR_NOT_NULL(strstr(rep, "by bit width"));
    /* the fake law is the fake trainer's law: every residual is zero to 4 decimals */
    CU_ASSERT_PTR_NULL(strstr(rep, "+0.0001"));
    const char *rm = strstr(rep, "RMSE of the residual ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rm);
    double rmse = 1;
    CU_ASSERT_EQUAL(sscanf(rm + strlen("RMSE of the residual "), "%lf", &rmse), 1);
    CU_ASSERT(rmse < 1e-6);
    free(rep);
    free(out);
    free(err);

    /* A torn last line (a writer killed mid-write), then a rerun without faults: only the
     * failed runs run, the torn line is reported and the new records start on a fresh line. */
    FILE *f = fopen(runs, "ab");
    fputs("{\"schema\":\"qatplan-run-v1\",\"run_id\":\"torn", f);
    fclose(f);
    unsetenv("FAKE_CRASH");
    unsetenv("FAKE_HANG");
    unsetenv("FAKE_DIVERGE");
    unlink(tu_path("calls.log"));
    rc = tu_run_qatplan(cmd, &out, &err);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "unreadable line"));
    CU_ASSERT_EQUAL(count_lines_with(tu_path("calls.log"), "resume="), crashed + hung);
    assert_each_once(&g, runs);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "sweep: law "));
    /* A third run does nothing. */
    unlink(tu_path("calls.log"));
    char *err3 = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err3), 0);
    CU_ASSERT_EQUAL(access(tu_path("calls.log"), F_OK), -1);
    CU_ASSERT_PTR_NOT_NULL(err3 && strstr(err3, "not refitted")); /* the law is newer than every record */
    free(err3);
    assert_each_once(&g, runs);
    free(out);
    free(err);

    /* --dry-run lists runs as recorded; --refit-only refits */
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --dry-run", grid, runs);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, NULL), 0);
    char expect[128];
    snprintf(expect, sizeof expect, "%zu runs: %zu recorded, 0 to run", g.n, g.n);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, expect));
    free(out);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --refit-only --law-out %s --report %s", grid, runs, tu_path("l2.json"),
             tu_path("r2.txt"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    CU_ASSERT_EQUAL(access(tu_path("l2.json"), F_OK), 0);
    CU_ASSERT_EQUAL(access(tu_path("r2.txt"), F_OK), 0);
    sweep_grid_free(&g);
}

/* SIGKILL the sweep mid-run: trainers die with it (no orphan writes a record later), no record
 * is lost or doubled, and a rerun resumes the interrupted runs from their saved state. */
static void test_sweep_killed_resumes(void)
{
    fakes_install();
    char grid[4096], runs[4096];
    snprintf(grid, sizeof grid, "%s", tu_path("grid-k.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("runs-k.jsonl"));
    tu_write(grid, "{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                   "\"tokens\":[1000,2000,3000],\"bits\":[4],\"fractions\":[0.5],\"schedules\":[\"classic\"]}");
    unlink(tu_path("calls.log"));
    setenv("FAKE_SLOW", "3.00K", 1); /* the 3000-token run takes 60 s unless stopped */
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        execl(QP_QATPLAN_EXE, "qatplan", "sweep", grid, "-o", runs, "--jobs", "3", "--no-fit", (char *)NULL);
        _exit(127);
    }
    /* wait until the two fast runs are recorded and the slow one runs */
    for (int i = 0; i < 100 && count_lines_with(runs, "\"run_id\"") < 2; i++) usleep(100000);
    CU_ASSERT_EQUAL(count_lines_with(runs, "\"run_id\""), 2);
    usleep(300000);
    kill(pid, SIGKILL);
    int ws;
    waitpid(pid, &ws, 0);
    /* the slow trainer got SIGTERM from the kernel (parent death), saved its state and ended */
    char statep[4096];
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(grid, &g, &e), QP_OK);
    snprintf(statep, sizeof statep, "%s.sweep/%s.state", runs, g.points[2].run_id);
    for (int i = 0; i < 30 && access(statep, F_OK) != 0; i++) usleep(100000);
    CU_ASSERT_EQUAL(access(statep, F_OK), 0);
    sleep(1);
    CU_ASSERT_EQUAL(count_lines_with(runs, "\"run_id\""), 2); /* no orphan appended anything */
    unsetenv("FAKE_SLOW");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit", grid, runs);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    CU_ASSERT_EQUAL(count_lines_with(tu_path("calls.log"), "resume=1"), 1);
    CU_ASSERT_EQUAL(access(statep, F_OK), -1); /* recorded: the state is removed */
    assert_each_once(&g, runs);
    sweep_grid_free(&g);
}

/* Several sweeps over the same grid and results file at once: the per-run locks make each
 * run happen exactly once. */
static void test_concurrent_sweeps(void)
{
    fakes_install();
    char grid[4096], runs[4096];
    snprintf(grid, sizeof grid, "%s", tu_path("grid-c.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("runs-c.jsonl"));
    tu_write(grid, grid_json);
    unlink(tu_path("calls.log"));
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "for i in 1 2 3; do %s sweep %s -o %s --jobs 2 --no-fit -q & done; wait", QP_QATPLAN_EXE, grid,
             runs);
    CU_ASSERT_EQUAL(system(cmd), 0);
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(grid, &g, &e), QP_OK);
    assert_each_once(&g, runs);
    CU_ASSERT_EQUAL(count_lines_with(tu_path("calls.log"), "resume="), (int)g.n); /* each trained once */
    sweep_grid_free(&g);
}

/* A run's progress is the last step line of its trainer's log, \n or \r terminated. */
static void test_parse_progress(void)
{
    sweep_run_progress p = {0, 0, 0};
    const char *log = "loading 3 shards\nstep 5/100 FP loss 4.1234 lr 1.00e-03 900 tok/s ETA 9s\n"
                      "step 10/100 QAT loss 3.5000 lr 1.00e-03 950 tok/s ETA 8s\nswitch to 4-bit QAT\n";
    CU_ASSERT_EQUAL(sweep_parse_progress(log, strlen(log), &p), 1);
    CU_ASSERT_EQUAL(p.step, 10);
    CU_ASSERT_EQUAL(p.total, 100);
    CU_ASSERT_DOUBLE_EQUAL(p.loss, 3.5, 1e-12);
    const char *term = "\rstep 1/9 FP  loss 2.0000 lr 1e-3 5 tok/s ETA 1s   \rstep 2/9 FP  loss 1.5000 lr 1e-3 5 tok/s";
    CU_ASSERT_EQUAL(sweep_parse_progress(term, strlen(term), &p), 1);
    CU_ASSERT_EQUAL(p.step, 2);
    CU_ASSERT_DOUBLE_EQUAL(p.loss, 1.5, 1e-12);
    /* a torn or foreign line is no progress; a good earlier line still is */
    const char *torn = "step 3/9 FP loss 1.2500 lr\nstep 4/9 FP lo";
    CU_ASSERT_EQUAL(sweep_parse_progress(torn, strlen(torn), &p), 1);
    CU_ASSERT_EQUAL(p.step, 3);
    const char *none = "qatplan: error: no data\nmystep 1/2 FP loss 1\nstep 9/2 FP loss 1\n";
    CU_ASSERT_EQUAL(sweep_parse_progress(none, strlen(none), &p), 0);
    CU_ASSERT_EQUAL(sweep_parse_progress("", 0, &p), 0);
}

/* The ETA against a constructed history: remaining work over the measured aggregate rate. */
static void test_eta_estimate(void)
{
    double lo, hi;
    /* nothing measured: a run started, no progress logged yet */
    sweep_eta_sample s0[] = {{0, 100, 5}};
    CU_ASSERT(isnan(sweep_eta_estimate(s0, 1, 200, 2, 2, &lo, &hi)));
    CU_ASSERT(isnan(lo) && isnan(hi));
    /* two finished runs (rates 10 and 15 work/s) and one halfway in flight (rate 10): the rate is
     * 450 work / 35 s, 350 work left (150 in flight, 200 pending in one run), two at once */
    sweep_eta_sample s1[] = {{100, 0, 10}, {300, 0, 20}, {50, 150, 5}};
    CU_ASSERT_DOUBLE_EQUAL(sweep_eta_estimate(s1, 3, 200, 1, 2, &lo, &hi), 350.0 / (450.0 / 35 * 2), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(lo, 350.0 / (15 * 2), 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(hi, 350.0 / (10 * 2), 1e-9);
    /* more slots than runs left: only two run at once */
    CU_ASSERT_DOUBLE_EQUAL(sweep_eta_estimate(s1, 3, 200, 1, 8, &lo, &hi), 350.0 / (450.0 / 35 * 2), 1e-9);
    /* the case the old model got 9x wrong: the first finished run is tiny and its start-up
     * dominates (1 work in 10 s); the large run in flight shows the real rate */
    sweep_eta_sample s2[] = {{1, 0, 10}, {500, 500, 10}};
    double e = sweep_eta_estimate(s2, 2, 0, 0, 1, &lo, &hi);
    CU_ASSERT_DOUBLE_EQUAL(e, 500.0 / (501.0 / 20), 1e-9);
    CU_ASSERT(e < 25);
    /* nothing left */
    sweep_eta_sample s3[] = {{100, 0, 10}};
    CU_ASSERT_DOUBLE_EQUAL(sweep_eta_estimate(s3, 1, 0, 0, 2, &lo, &hi), 0, 0);
}

/* The library directly on `grid_text` (written as TAG.json, results TAG.jsonl) with the fake
 * trainer, its log in memory as a terminal (tty) or a file would get it; steps: the trainer
 * logs a step line (FAKE_STEPS). Returns the log (the caller frees it); g and sum are filled. */
static char *run_logged(const char *tag, const char *grid_text, int tty, double progress_every, int steps,
                        sweep_grid *g, sweep_summary *sum)
{
    fakes_install();
    char grid[4096], runs[4096];
    snprintf(grid, sizeof grid, "%s", tu_path(tag));
    strcat(grid, ".json");
    snprintf(runs, sizeof runs, "%s", tu_path(tag));
    strcat(runs, ".jsonl");
    tu_write(grid, grid_text);
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(grid, g, &e), QP_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&text, &len);
    sweep_options o;
    sweep_options_init(&o);
    CU_ASSERT_DOUBLE_EQUAL(o.progress_every, 60, 0);
    o.runs_path = runs;
    o.train_cmd = getenv("QP_SWEEP_TRAIN_CMD");
    o.fit = 0;
    o.log = log;
    o.tty = tty;
    o.progress_every = progress_every;
    if (steps) setenv("FAKE_STEPS", "*", 1);
    CU_ASSERT_EQUAL(sweep_run(g, &o, sum, &e), QP_OK);
    unsetenv("FAKE_STEPS");
    fclose(log);
    return text;
}

/* While runs are in flight the bar shows each one's logged step and loss, and the ETA is
 * "unknown" until something is measured, then a time. */
static void test_progress_in_flight(void)
{
    sweep_grid g;
    sweep_summary sum;
    char *text = run_logged("grid-pf", "{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                            "\"tokens\":[1000,2000],\"bits\":[4],\"fractions\":[0.5],\"schedules\":[\"classic\"]}",
                            1, 60, 1, &g, &sum);
    CU_ASSERT_EQUAL(sum.ok, 2);
    char want[256];
    snprintf(want, sizeof want, "| %s step 1/4 loss 5.1250", g.points[0].run_id);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    snprintf(want, sizeof want, "| %s step 1/4 loss 5.1250", g.points[1].run_id);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    const char *unknown = strstr(text, "ETA unknown");
    CU_ASSERT_PTR_NOT_NULL(unknown);
    /* once the first run logged a step, a time (the run is a quarter done) */
    const char *p = text, *timed = NULL;
    while ((p = strstr(p, "ETA ")) != NULL) {
        if (p[4] >= '0' && p[4] <= '9') timed = p;
        p += 4;
    }
    CU_ASSERT_PTR_NOT_NULL(timed);
    free(text);
    sweep_grid_free(&g);
}

/* Shapes naming an external model by its parameter count: sized by N, passed on to the
 * trainer as --params N and the model's own options; qatplan's trainer cannot run them. */
static void test_grid_external_models(void)
{
    const char *j = "{\"data\":\"d/x\",\"shapes\":["
                    "{\"n_params\":\"125M\",\"name\":\"gpt2-small\",\"args\":[\"--config\",\"small.toml\"],"
                    "\"tokens_per_param\":[20]},"
                    "{\"n_params\":350e6,\"tokens\":[\"1B\"]},"
                    "{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32,\"tokens\":[1000]}],"
                    "\"bits\":[4],\"fractions\":[0.5]}";
    sweep_grid g;
    qp_error e = {0};
    qp_status st0 = sweep_grid_parse(j, "ext.json", &g, &e);
    if (st0) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(st0, QP_OK);
    CU_ASSERT_EQUAL_FATAL(g.n, 3);
    CU_ASSERT_EQUAL(g.n_models, 2);
    const sweep_point *a = &g.points[0], *b = &g.points[1], *own = &g.points[2];
    CU_ASSERT_EQUAL(a->model, 1);
    CU_ASSERT_DOUBLE_EQUAL(a->n_params, 125e6, 0);
    CU_ASSERT_DOUBLE_EQUAL(a->tokens, 2.5e9, 0);
    CU_ASSERT_EQUAL(strncmp(a->run_id, "gpt2-small-2.50B-b4-f0.5-classic-s1-", 36), 0);
    CU_ASSERT_EQUAL(strncmp(b->run_id, "N350M-1.00B-b4-", 15), 0);
    CU_ASSERT_EQUAL(own->model, 0);
    CU_ASSERT_EQUAL(strncmp(own->run_id, "L1d16-", 6), 0);
    char **args = NULL;
    CU_ASSERT_EQUAL_FATAL(sweep_point_args(&g, a, "runs.jsonl", NULL, 0, 1, &args, &e), QP_OK);
    int params = -1, config = -1, layers = 0, n = 0;
    for (; args[n]; n++) {
        if (!strcmp(args[n], "--params")) params = n;
        if (!strcmp(args[n], "--config")) config = n;
        if (!strcmp(args[n], "--layers") || !strcmp(args[n], "--width") || !strcmp(args[n], "--context")) layers++;
    }
    CU_ASSERT(params >= 0 && params + 1 < n && !strcmp(args[params + 1], "125000000"));
    CU_ASSERT(config >= 0 && config + 1 < n && !strcmp(args[config + 1], "small.toml"));
    CU_ASSERT_EQUAL(layers, 0);
    sweep_argv_free(args);
    /* only a --train-cmd trainer builds them; the refusal says so */
    CU_ASSERT_EQUAL(sweep_grid_check_trainer(&g, NULL, &e), QP_ERR_USAGE);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "--train-cmd"));
    CU_ASSERT_EQUAL(sweep_grid_check_trainer(&g, "python3 mytrain.py", &e), QP_OK);
    sweep_options o;
    sweep_options_init(&o);
    o.runs_path = tu_path("runs-ext.jsonl");
    sweep_summary sum;
    CU_ASSERT_EQUAL(sweep_run(&g, &o, &sum, &e), QP_ERR_USAGE);
    char id_a[sizeof a->run_id];
    strcpy(id_a, a->run_id);
    sweep_grid_free(&g);
    /* the run id of the model changes with its arguments */
    const char *j2 = "{\"data\":\"d/x\",\"shapes\":[{\"n_params\":\"125M\",\"name\":\"gpt2-small\","
                     "\"args\":[\"--config\",\"other.toml\"],\"tokens_per_param\":[20]}],\"bits\":[4],\"fractions\":[0.5]}";
    sweep_grid g2;
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(j2, "ext2.json", &g2, &e), QP_OK);
    CU_ASSERT_EQUAL(strncmp(g2.points[0].run_id, "gpt2-small-2.50B-b4-f0.5-classic-s1-", 36), 0);
    CU_ASSERT_STRING_NOT_EQUAL(g2.points[0].run_id, id_a);
    sweep_grid_free(&g2);
    /* a grid of qatplan's own shapes needs no trainer command */
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(grid_json, "grid.json", &g2, &e), QP_OK);
    CU_ASSERT_EQUAL(sweep_grid_check_trainer(&g2, NULL, &e), QP_OK);
    sweep_grid_free(&g2);
    static const struct { const char *shape, *msg; } bad[] = {
        {"{\"n_params\":125e6,\"layers\":2}", "unknown key \"layers\""},
        {"{\"n_params\":0}", "whole parameter count"},
        {"{\"n_params\":1.5}", "whole parameter count"},
        {"{\"n_params\":\"lots\"}", "lots"},
        {"{\"n_params\":125e6,\"name\":\"a b\"}", "\"name\""},
        {"{\"n_params\":125e6,\"args\":\"--x\"}", "\"args\" must be a list"},
        {"{\"n_params\":125e6,\"args\":[1]}", "entries must be strings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char jb[1024];
        snprintf(jb, sizeof jb, "{\"data\":\"d/x\",\"shapes\":[%s],\"tokens\":[1000],\"bits\":[16]}", bad[i].shape);
        qp_error e3 = {0};
        CU_ASSERT_NOT_EQUAL(sweep_grid_parse(jb, "bad.json", &g2, &e3), QP_OK);
        if (!strstr(e3.msg, bad[i].msg)) fprintf(stderr, "shape %s: %s\n", bad[i].shape, e3.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, bad[i].msg));
    }
}

/* "qat_lr_ratio": the QAT peak per schedule and fraction as a multiple of the point's --lr;
 * points at ratio 1 (and fp-only, qat-only, full precision) keep the run ids and command
 * lines of a grid without it. */
static char *joined_args(const sweep_grid *g, const sweep_point *p, char *buf, size_t n)
{
    char **args = NULL;
    qp_error e = {0};
    buf[0] = 0;
    if (sweep_point_args(g, p, "r.jsonl", NULL, 0, 1, &args, &e)) return buf;
    for (char **a = args; *a; a++) {
        strncat(buf, " ", n - strlen(buf) - 1);
        strncat(buf, *a, n - strlen(buf) - 1);
    }
    sweep_argv_free(args);
    return buf;
}

static void test_grid_qat_lr_ratio(void)
{
    const char *base = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32,\"lr\":0.004}],"
                       "\"tokens\":[4000],\"bits\":[2,16],\"fractions\":[0,0.25,0.5,1],\"schedules\":[\"classic\",\"fused\"]";
    char j[1024], buf[4096];
    snprintf(j, sizeof j, "%s%s}", base, ",\"qat_lr_ratio\":{\"classic\":{\"0.25\":0.1},\"fused\":0.5}");
    sweep_grid g, plain;
    qp_error e = {0};
    qp_status st0 = sweep_grid_parse(j, "q.json", &g, &e);
    if (st0) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(st0, QP_OK);
    snprintf(j, sizeof j, "%s}", base);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(j, "p.json", &plain, &e), QP_OK);
    CU_ASSERT_EQUAL_FATAL(g.n, plain.n);
    int changed = 0;
    for (size_t i = 0; i < g.n; i++) {
        const sweep_point *p = &g.points[i];
        double want = p->bits == 16 || p->fraction == 0 || p->fraction == 1 ? 1
                      : p->schedule == DATA_SCHED_FUSED ? 0.5
                      : p->fraction == 0.25 ? 0.1 : 1;
        CU_ASSERT_DOUBLE_EQUAL(sweep_point_qat_lr_ratio(&g, p), want, 0);
        joined_args(&g, p, buf, sizeof buf);
        char lr[64];
        snprintf(lr, sizeof lr, " --qat-lr %g ", want * 0.004);
        if (want == 1) {
            CU_ASSERT_STRING_EQUAL(p->run_id, plain.points[i].run_id);
            CU_ASSERT_PTR_NULL(strstr(buf, "--qat-lr"));
        } else {
            changed++;
            CU_ASSERT_STRING_NOT_EQUAL(p->run_id, plain.points[i].run_id);
            CU_ASSERT_PTR_NOT_NULL(strstr(buf, lr));
        }
    }
    CU_ASSERT_EQUAL(changed, 3); /* classic 0.25; fused 0.25 and 0.5 */
    sweep_grid_free(&g);
    sweep_grid_free(&plain);
    static const struct { const char *v, *msg; } bad[] = {
        {",\"qat_lr_ratio\":0", "a ratio must be a number in (0, 100]"},
        {",\"qat_lr_ratio\":\"x\"", "give a ratio"},
        {",\"qat_lr_ratio\":{\"slow\":1}", "unknown key \"slow\""},
        {",\"qat_lr_ratio\":{\"classic\":{\"0.3\":0.1}}", "the grid's \"fractions\""},
        {",\"qat_lr_ratio\":{\"classic\":{\"1\":0.1}}", "strictly between 0 and 1"},
        {",\"qat_lr_ratio\":300", "(0, 100]"},
        {",\"qat_lr_ratio\":0.5,\"methods\":[{\"qat_lr\":0.001}]", "keep one"},
        {",\"qat_lr_ratio\":0.5,\"train\":{\"args\":[\"--qat-lr\",\"0.001\"]}", "keep one"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(j, sizeof j, "%s%s}", base, bad[i].v);
        qp_error e2 = {0};
        CU_ASSERT_NOT_EQUAL(sweep_grid_parse(j, "b.json", &g, &e2), QP_OK);
        if (!strstr(e2.msg, bad[i].msg)) fprintf(stderr, "qat_lr_ratio %s: %s\n", bad[i].v, e2.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, bad[i].msg));
    }
    /* a ratio that puts the QAT peak outside the trainer's range */
    const char *big = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32,\"lr\":0.02}],"
                      "\"tokens\":[4000],\"bits\":[2],\"fractions\":[0.5],\"qat_lr_ratio\":60}";
    qp_error e4 = {0};
    CU_ASSERT_NOT_EQUAL(sweep_grid_parse(big, "g.json", &g, &e4), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(e4.msg, "= --qat-lr 1.2 (point"));
    /* no --lr to scale */
    const char *nolr = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                       "\"tokens\":[4000],\"bits\":[2],\"fractions\":[0.5],\"qat_lr_ratio\":0.5}";
    qp_error e3 = {0};
    CU_ASSERT_NOT_EQUAL(sweep_grid_parse(nolr, "n.json", &g, &e3), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, "give \"lr\""));
}

/* "methods" cross trainer settings with the quantized points (never the full-precision ones),
 * each setting checked against the trainer's table; "init" gives their --init per seed. */
static void test_grid_methods_and_init(void)
{
    const char *j = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                    "\"tokens\":[1000],\"bits\":[2,16],\"fractions\":[0.5],\"seeds\":[1,2],"
                    "\"init\":\"fp/s{seed}.safetensors\","
                    "\"methods\":[{\"qat_lr\":0.0003,\"name\":\"lr3e-4\"},{\"qparam_lr_mult\":2,\"reset_optimizer\":true}]}";
    sweep_grid g;
    qp_error e = {0};
    qp_status st0 = sweep_grid_parse(j, "m.json", &g, &e);
    if (st0) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(st0, QP_OK);
    CU_ASSERT_EQUAL_FATAL(g.n, 6); /* per seed: 2 methods x 2-bit, 1 full precision */
    CU_ASSERT_STRING_EQUAL(g.methods[1].name, "m-2");
    int fp = 0, lr = 0, m2 = 0;
    for (size_t i = 0; i < g.n; i++) {
        const sweep_point *p = &g.points[i];
        char **args = NULL;
        CU_ASSERT_EQUAL_FATAL(sweep_point_args(&g, p, "r.jsonl", NULL, 0, 1, &args, &e), QP_OK);
        char joined[4096] = "";
        for (char **a = args; *a; a++) {
            strncat(joined, " ", sizeof joined - strlen(joined) - 1);
            strncat(joined, *a, sizeof joined - strlen(joined) - 1);
        }
        sweep_argv_free(args);
        char want[64];
        snprintf(want, sizeof want, " --init fp/s%llu.safetensors", (unsigned long long)p->seed);
        if (p->bits == 16) {
            fp++;
            CU_ASSERT_EQUAL(p->method, 0);
            CU_ASSERT_PTR_NULL(strstr(joined, "--init"));
            continue;
        }
        CU_ASSERT_PTR_NOT_NULL(strstr(joined, want));
        if (p->method == 1) {
            lr++;
            CU_ASSERT_PTR_NOT_NULL(strstr(joined, " --qat-lr 0.0003"));
            CU_ASSERT_PTR_NOT_NULL(strstr(p->run_id, "-classic-lr3e-4-s"));
        } else {
            m2++;
            CU_ASSERT_PTR_NOT_NULL(strstr(joined, " --qparam-lr-mult 2 --reset-optimizer"));
            CU_ASSERT_PTR_NOT_NULL(strstr(p->run_id, "-classic-m-2-s"));
        }
    }
    CU_ASSERT(fp == 2 && lr == 2 && m2 == 2);
    sweep_grid_free(&g);
    /* a grid without methods or init keeps the run ids it always had (the 492 recorded runs of
     * data/sweeps/own-law/grid.json are all found by a dry run) */
    sweep_grid a, b;
    const char *plain = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                        "\"tokens\":[1000],\"bits\":[2],\"fractions\":[0.5]}";
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(plain, "p.json", &a, &e), QP_OK);
    CU_ASSERT_STRING_EQUAL(a.points[0].run_id, "L1d16-1.00K-b2-f0.5-classic-s1-59243d0a6428");
    const char *one = "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                      "\"tokens\":[1000],\"bits\":[2],\"fractions\":[0.5],\"methods\":[{\"qat_lr\":0.001}]}";
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(one, "o.json", &b, &e), QP_OK);
    CU_ASSERT_STRING_NOT_EQUAL(a.points[0].run_id, b.points[0].run_id);
    sweep_grid_free(&a);
    sweep_grid_free(&b);
    static const struct { const char *methods, *msg; } bad[] = {
        {"[{\"layers\":2}]", "the sweep sets --layers"},
        {"[{\"no_such\":1}]", "not a setting of qatplan train"},
        {"[{\"qat_lr\":5}]", "qat_lr"},
        {"[{\"reset_optimizer\":false}]", "is a flag"},
        {"[{\"qat_lr\":0.001,\"name\":\"a b\"}]", "\"name\""},
        {"[]", "\"methods\" must list"},
        {"[3]", "must be an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char jb[1024];
        snprintf(jb, sizeof jb, "{\"data\":\"d/x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                                "\"tokens\":[1000],\"bits\":[2],\"fractions\":[0.5],\"methods\":%s}", bad[i].methods);
        qp_error e3 = {0};
        CU_ASSERT_NOT_EQUAL(sweep_grid_parse(jb, "bad.json", &g, &e3), QP_OK);
        if (!strstr(e3.msg, bad[i].msg)) fprintf(stderr, "methods %s: %s\n", bad[i].methods, e3.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(e3.msg, bad[i].msg));
    }
}

/* A log that is not a terminal (a file, Slurm's output) gets a plain progress line every
 * --progress-every seconds with the runs in flight, their logged step and loss. */
static void test_progress_lines_not_tty(void)
{
    sweep_grid g;
    sweep_summary sum;
    char *text = run_logged("grid-pl", "{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                            "\"tokens\":[1000,2000],\"bits\":[4],\"fractions\":[0.5],\"schedules\":[\"classic\"]}",
                            0, 0.2, 1, &g, &sum);
    CU_ASSERT_EQUAL(sum.ok, 2);
    CU_ASSERT_PTR_NULL(strchr(text, '\r')); /* no bar */
    char want[256];
    snprintf(want, sizeof want, "sweep: 0/2 runs, 1 running, ");
    CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof want, "; %s step 1/4 loss 5.1250 (", g.points[i].run_id);
        if (!strstr(text, want)) fprintf(stderr, "log:\n%s\n", text);
        CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
    }
    free(text);
    sweep_grid_free(&g);
}

/* The library directly, with a terminal-style log: a redrawn progress bar with an ETA. */
static void test_progress_bar(void)
{
    sweep_grid g;
    sweep_summary sum;
    char *text = run_logged("grid-p", "{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":32}],"
                            "\"tokens\":[1000,2000,3000,4000],\"bits\":[4],\"fractions\":[0.5],\"schedules\":[\"classic\"]}",
                            1, 60, 0, &g, &sum);
    CU_ASSERT_EQUAL(sum.ok, 4);
    CU_ASSERT_EQUAL(sum.ran, 4);
    CU_ASSERT_EQUAL(sum.failed, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\r\033[Ksweep [###"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "4/4 runs"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "ETA "));
    CU_ASSERT_PTR_NULL(strstr(text, "[1/4, ETA")); /* the plain-line suffix is for non-terminals */
    free(text);
    /* --only-index outside the grid */
    sweep_options o;
    sweep_options_init(&o);
    o.runs_path = tu_path("grid-p.jsonl");
    o.train_cmd = getenv("QP_SWEEP_TRAIN_CMD");
    o.fit = 0;
    o.only_index = 4;
    qp_error e = {0};
    CU_ASSERT_EQUAL(sweep_run(&g, &o, &sum, &e), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "0..3"));
    sweep_grid_free(&g);
}

/* A grid with one sweep-owned trainer option set to v (the other fields fixed and valid). */
static char *grid_with(const char *opt, double v)
{
    char val[64], shape[256] = "\"layers\":1,\"width\":64,\"heads\":2,\"context\":32";
    char top[256] = "\"tokens\":[1000000],\"bits\":[4],\"fractions\":[0.5]", train[128] = "";
    snprintf(val, sizeof val, "%.17g", v);
    if (!strcmp(opt, "--layers")) snprintf(shape, sizeof shape, "\"layers\":%s,\"width\":64,\"heads\":2,\"context\":32", val);
    else if (!strcmp(opt, "--width")) snprintf(shape, sizeof shape, "\"layers\":1,\"width\":%s,\"heads\":1,\"context\":32", val);
    else if (!strcmp(opt, "--heads")) snprintf(shape, sizeof shape, "\"layers\":1,\"width\":8192,\"heads\":%s,\"context\":32", val);
    else if (!strcmp(opt, "--kv-heads")) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), ",\"kv_heads\":%s", val);
    else if (!strcmp(opt, "--ffn")) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), ",\"ffn\":%s", val);
    else if (!strcmp(opt, "--context")) snprintf(shape, sizeof shape, "\"layers\":1,\"width\":64,\"heads\":2,\"context\":%s", val);
    else if (!strcmp(opt, "--lr")) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), ",\"lr\":%s", val);
    else if (!strcmp(opt, "--tokens")) snprintf(top, sizeof top, "\"tokens\":[%s],\"bits\":[4],\"fractions\":[0.5]", val);
    else if (!strcmp(opt, "--bits")) snprintf(top, sizeof top, "\"tokens\":[1000000],\"bits\":[%s],\"fractions\":[0.5]", val);
    else if (!strcmp(opt, "--qat-fraction")) snprintf(top, sizeof top, "\"tokens\":[1000000],\"bits\":[4],\"fractions\":[%s]", val);
    else if (!strcmp(opt, "--seed")) snprintf(top + strlen(top), sizeof top - strlen(top), ",\"seeds\":[%s]", val);
    else if (!strcmp(opt, "--batch")) snprintf(train, sizeof train, ",\"train\":{\"batch\":%s}", val);
    else if (!strcmp(opt, "--threads")) snprintf(train, sizeof train, ",\"train\":{\"threads\":%s}", val);
    else return NULL;
    char *j = malloc(1024);
    snprintf(j, 1024, "{\"data\":\"x\",\"shapes\":[{%s}],%s%s}", shape, top, train);
    return j;
}

/* Every numeric option the sweep sets from the grid: the grid accepts exactly the values
 * `qatplan train` accepts (the ends, and the nearest values outside), and a refusal names the
 * grid field and the trainer's range. */
static void test_grid_ranges_are_the_trainers(void)
{
    int n_checked = 0;
    for (size_t i = 0; i < train_options_count; i++) {
        const train_option *o = &train_options[i];
        if (!o->grid || !(o->type == TRAIN_OPT_INT || o->type == TRAIN_OPT_COUNT || o->type == TRAIN_OPT_REAL))
            continue;
        int whole = o->type != TRAIN_OPT_REAL;
        double vals[6] = {o->lo, o->hi, whole ? o->lo - 1 : nextafter(o->lo, -INFINITY),
                          whole ? o->hi + (o->hi >= 9007199254740992.0 ? 2 : 1) : nextafter(o->hi, INFINITY),
                          whole ? 2 * floor((o->lo + o->hi) / 4) : (o->lo + o->hi) / 2, o->lo + 0.5};
        for (int k = 0; k < 6; k++) {
            double v = vals[k];
            if (!strcmp(o->name, "--tokens") && v < 1000) continue; /* below one context: a grid rule of its own */
            char *json = grid_with(o->name, v), sv[64];
            CU_ASSERT_PTR_NOT_NULL_FATAL(json);
            snprintf(sv, sizeof sv, "%.17g", v);
            qp_error e1 = {0}, e2 = {0};
            int trainer_ok = train_option_check(o->name, sv, &e1) == QP_OK;
            sweep_grid g;
            int grid_ok = sweep_grid_parse(json, "g.json", &g, &e2) == QP_OK;
            if (grid_ok) sweep_grid_free(&g);
            if (!strcmp(o->name, "--bits") && trainer_ok && !((v >= 1 && v <= 8) || v == 16 || v == 32))
                trainer_ok = 0; /* the valid widths inside 1..32, checked after parsing by both */
            if (trainer_ok != grid_ok)
                fprintf(stderr, "%s %s: trainer %s (%s), grid %s (%s)\n", o->name, sv, trainer_ok ? "accepts" : "refuses",
                        e1.msg, grid_ok ? "accepts" : "refuses", e2.msg);
            CU_ASSERT_EQUAL(trainer_ok, grid_ok);
            if (!grid_ok && (k == 2 || k == 3)) {
                char r[64];
                CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, "trainer's range"));
                CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, train_option_range(o, r, sizeof r)));
                CU_ASSERT_PTR_NOT_NULL(strstr(e2.msg, o->name));
            }
            n_checked++;
            free(json);
        }
    }
    CU_ASSERT(n_checked >= 13 * 4);
    /* the sweep's own options that become the trainer's --threads take its range too */
    const char *thr[] = {"--threads 257", "--slurm-cpus 257"};
    for (int i = 0; i < 2; i++) {
        char cmd[256], *err = NULL;
        snprintf(cmd, sizeof cmd, "sweep g.json -o r.jsonl %s", thr[i]);
        CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "it must be in [1, 256]"));
        free(err);
    }
    /* the seed range: 2^53, the largest whole number every double holds exactly */
    CU_ASSERT_EQUAL(train_option_find("--seed")->hi, 9007199254740992.0);
    /* "args" may pass only what the grid does not own, each checked by the trainer's table */
    const char *bad_args[][2] = {{"[\"--seed\",\"3\"]", "must not set --seed"},
                                 {"[\"--eval-tokens\",\"1e30\"]", "--eval-tokens"},
                                 {"[\"--frob\"]", "not an option of qatplan train"},
                                 {"[\"--eval-tokens\"]", "needs a value"}};
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"data\":\"x\",\"shapes\":[{\"layers\":1,\"width\":64,\"heads\":2,\"context\":32}],"
                                    "\"tokens\":[1000000],\"bits\":[4],\"fractions\":[0.5],\"train\":{\"args\":%s}}",
                 bad_args[i][0]);
        sweep_grid g;
        qp_error e = {0};
        CU_ASSERT_NOT_EQUAL(sweep_grid_parse(json, "g.json", &g, &e), QP_OK);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad_args[i][1]));
    }
}

/* Every command line the sweep builds is one `qatplan train` parses as the grid meant it, and
 * together they use every option the sweep owns. */
static void test_sweep_commands_parse_in_trainer(void)
{
    const char *json =
        "{\"data\":\"corpus/x\",\"shapes\":[{\"layers\":2,\"width\":64,\"heads\":4,\"kv_heads\":2,\"ffn\":96,\"context\":32,"
        "\"lr\":0.01},{\"layers\":1,\"width\":32,\"heads\":2,\"context\":16}],\"tokens\":[\"40K\"],\"bits\":[2,4,16],"
        "\"fractions\":[0,0.5,1],\"schedules\":[\"classic\",\"fused\"],\"seeds\":[3000000000,9007199254740992],"
        "\"train\":{\"batch\":4,\"threads\":2,\"lr\":0.003,\"args\":[\"--eval-tokens\",\"4K\",\"--reset-optimizer\"]}}";
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(json, "g.json", &g, &e), QP_OK);
    int used[256] = {0};
    CU_ASSERT_FATAL(train_options_count <= 256);
    for (size_t i = 0; i < g.n; i++) {
        char **argv;
        CU_ASSERT_EQUAL_FATAL(sweep_point_args(&g, &g.points[i], "runs.jsonl", "s.state", 1, 2, &argv, &e), QP_OK);
        int argc = 0;
        while (argv[argc]) argc++;
        train_args a;
        train_args_default(&a);
        qp_status st = train_args_parse(&a, argc, argv, &e);
        if (st) fprintf(stderr, "point %zu: %s\n", i, e.msg);
        CU_ASSERT_EQUAL(st, QP_OK);
        CU_ASSERT_EQUAL(a.c.seed, g.points[i].seed);
        CU_ASSERT_EQUAL(a.bits, g.points[i].bits);
        CU_ASSERT_EQUAL(a.c.qat_fraction, g.points[i].fraction);
        CU_ASSERT_EQUAL(a.c.tokens, g.points[i].tokens);
        /* --kv-heads is left out when it equals --heads (the trainer's default) */
        CU_ASSERT_EQUAL(a.c.shape.n_kv_head ? a.c.shape.n_kv_head : a.c.shape.n_head, g.points[i].shape.n_kv_head);
        CU_ASSERT_EQUAL(a.c.shape.d_ff, g.points[i].shape.d_ff);
        CU_ASSERT_STRING_EQUAL(a.run_id, g.points[i].run_id);
        for (int k = 0; k < argc; k++) {
            const train_option *o = train_option_find(argv[k]);
            if (o) used[o - train_options] = 1;
        }
        sweep_argv_free(argv);
    }
    CU_ASSERT(g.points[0].seed == 3000000000ull);
    /* the same grid with trunks: each trunk's command line (it carries --save-at) parses too */
    sweep_grid gt;
    char tj[2048];
    snprintf(tj, sizeof tj, "%.*s,\"trunks\":true,\"train\":{\"batch\":4,\"threads\":2,\"lr\":0.003,\"args\":"
             "[\"--eval-tokens\",\"4K\",\"--warmup-tokens\",\"1K\"]}}", (int)(strstr(json, ",\"train\"") - json), json);
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(tj, "gt.json", &gt, &e), QP_OK);
    CU_ASSERT(gt.n_trunks >= 4); /* 2 shapes x 2 seeds x {quantized, FP} */
    for (size_t t = 0; t < gt.n_trunks; t++) {
        char **argv;
        CU_ASSERT_EQUAL_FATAL(sweep_trunk_args(&gt, &gt.trunks[t], "t.jsonl", "t.state", 0, 2, &argv, &e), QP_OK);
        int argc = 0;
        while (argv[argc]) argc++;
        train_args a;
        train_args_default(&a);
        CU_ASSERT_EQUAL(train_args_parse(&a, argc, argv, &e), QP_OK);
        CU_ASSERT_EQUAL(a.c.qat_fraction, 0);
        CU_ASSERT_EQUAL(a.c.decay_frac, 0);
        CU_ASSERT_PTR_NOT_NULL(a.c.save_at);
        CU_ASSERT_STRING_EQUAL(a.run_id, gt.trunks[t].p.run_id);
        for (int k = 0; k < argc; k++) {
            const train_option *o = train_option_find(argv[k]);
            if (o) used[o - train_options] = 1;
        }
        sweep_argv_free(argv);
    }
    sweep_grid_free(&gt);
    for (size_t i = 0; i < train_options_count; i++) {
        if (train_options[i].grid && !used[i]) fprintf(stderr, "the sweep never sets %s\n", train_options[i].name);
        CU_ASSERT(!train_options[i].grid || used[i]);
    }
    sweep_grid_free(&g);
}

/* A grid with seed 3000000000 (and 2^53) runs: the real trainer, through the real binary, and
 * the records keep the seeds exactly. */
static void test_sweep_big_seed_runs(void)
{
    unsetenv("QP_SWEEP_TRAIN_CMD");
    unsetenv("QP_SWEEP_FIT_CMD");
    uint16_t *t = malloc(20000 * sizeof *t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    uint64_t x = 7;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (uint16_t)("the quick brown fox jumps over the lazy dog "[(x >> 33) % 44]);
    }
    qp_error e = {0};
    char prefix[4096], path[4200];
    snprintf(prefix, sizeof prefix, "%s", tu_path("seedcorpus"));
    snprintf(path, sizeof path, "%s.train.tok", prefix);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t, 16000, 256, "seed-test", &e), QP_OK);
    snprintf(path, sizeof path, "%s.val.tok", prefix);
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(path, t + 16000, 4000, 256, "seed-test", &e), QP_OK);
    free(t);
    char grid[8192], gpath[4096], runs[4096], cmd[12288];
    snprintf(grid, sizeof grid,
             "{\"data\":\"%s\",\"shapes\":[{\"layers\":1,\"width\":16,\"heads\":2,\"context\":16}],\"tokens\":[2048],"
             "\"bits\":[4],\"fractions\":[0.5],\"seeds\":[3000000000,9007199254740992],"
             "\"train\":{\"batch\":2,\"threads\":1,\"args\":[\"--eval-tokens\",\"512\",\"--device\",\"cpu\"]}}",
             prefix);
    snprintf(gpath, sizeof gpath, "%s", tu_path("seedgrid.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("seedruns.jsonl"));
    tu_write(gpath, grid);
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --dry-run", gpath, runs);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "--seed 3000000000 "));
    free(out);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --no-fit --jobs 1", gpath, runs);
    int rc = tu_run_qatplan(cmd, NULL, &err);
    if (rc) fprintf(stderr, "sweep: %s\n", err ? err : "");
    CU_ASSERT_EQUAL(rc, 0);
    free(err);
    data_run_list l;
    data_run_list_init(&l);
    CU_ASSERT_EQUAL_FATAL(data_runs_read(runs, &l, &e), QP_OK);
    CU_ASSERT_EQUAL(l.n, 2);
    int seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        CU_ASSERT_EQUAL(l.runs[i].status, DATA_RUN_OK);
        seen |= (l.runs[i].seed == 3000000000ull) | (l.runs[i].seed == 9007199254740992ull) << 1;
    }
    CU_ASSERT_EQUAL(seen, 3);
    data_run_list_free(&l);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_grid_expand);
    TU_ADD(s, test_grid_errors);
    TU_ADD(s, test_grid_cap_and_size);
    TU_ADD(s, test_grid_ranges_are_the_trainers);
    TU_ADD(s, test_sweep_commands_parse_in_trainer);
    TU_ADD(s, test_sweep_big_seed_runs);
    TU_ADD(s, test_results_torn_lines);
    TU_ADD(s, test_sweep_run_faults_and_rerun);
    TU_ADD(s, test_sweep_killed_resumes);
    TU_ADD(s, test_concurrent_sweeps);
    TU_ADD(s, test_progress_bar);
    TU_ADD(s, test_grid_external_models);
    TU_ADD(s, test_grid_methods_and_init);
    TU_ADD(s, test_grid_qat_lr_ratio);
    TU_ADD(s, test_progress_lines_not_tty);
    TU_ADD(s, test_parse_progress);
    TU_ADD(s, test_eta_estimate);
    TU_ADD(s, test_progress_in_flight);
}

int main(void) { return tu_main("sweep", add); }
