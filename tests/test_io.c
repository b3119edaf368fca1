/* Nothing a user types destroys their data: every command refuses an output that is one of
 * its inputs (the input stays byte for byte), outputs are checked before long work starts,
 * the whole-file writer writes through symlinks and into /dev/null instead of replacing
 * them, and a directory given as an input file is named as one. Runs the real qatplan. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"
#include "qp.h"
#include "testutil.h"

#define RUNS_SRC QP_SOURCE_DIR "/data/sweeps/own-law/runs.jsonl"
#define GRID_SRC QP_SOURCE_DIR "/data/sweeps/own-law/grid.json"

/* tu_path's buffers rotate: keep the paths a test holds on to in its own */
#define PATH(var, name)  \
    char var[4096];      \
    snprintf(var, sizeof var, "%s/%s", tu_tmpdir(), name)

static void copy_file(const char *from, const char *to)
{
    size_t n = 0;
    char *b = tu_read(from, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    FILE *f = fopen(to, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

/* Run `qatplan ARGS`; it must fail (exit status `want_rc`), say `msg` on stderr, and leave
 * every file in `keep` (NULL-terminated) byte for byte as it was. */
static void expect_refused(const char *args, int want_rc, const char *msg, const char *const *keep)
{
    char *before[8] = {0};
    size_t len[8] = {0};
    int n = 0;
    for (; keep[n]; n++) before[n] = tu_read(keep[n], &len[n]);
    char *err = NULL;
    int rc = tu_run_qatplan(args, NULL, &err);
    CU_ASSERT_EQUAL(rc, want_rc);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, msg));
    CU_ASSERT_PTR_NOT_NULL(err && strchr(err, '\n') == strrchr(err, '\n')); /* one line */
    if (rc != want_rc || !err || !strstr(err, msg))
        fprintf(stderr, "qatplan %s -> %d: %s (wanted %d and '%s')\n", args, rc, err ? err : "", want_rc, msg);
    for (int i = 0; i < n; i++) {
        size_t l2 = 0;
        char *after = tu_read(keep[i], &l2);
        CU_ASSERT_PTR_NOT_NULL(before[i] && after);
        CU_ASSERT(before[i] && after && len[i] == l2 && !memcmp(before[i], after, l2));
        free(before[i]);
        free(after);
    }
    free(err);
}

/* sweep GRID -o RUNS with --law-out/--report equal to RUNS or to the grid */
static void test_sweep_output_is_input(void)
{
    PATH(grid, "sw-grid.json");
    PATH(runs, "sw-runs.jsonl");
    copy_file(GRID_SRC, grid);
    copy_file(RUNS_SRC, runs);
    const char *keep[] = {grid, runs, NULL};
    char a[8192];
    snprintf(a, sizeof a, "sweep %s -o %s --law-out %s", grid, runs, runs);
    expect_refused(a, 2, "is the same file as the output -o", keep);
    snprintf(a, sizeof a, "sweep %s -o %s --report %s/./sw-runs.jsonl", grid, runs, tu_tmpdir());
    expect_refused(a, 2, "--report", keep);
    snprintf(a, sizeof a, "sweep %s -o %s --law-out %s", grid, runs, grid);
    expect_refused(a, 2, "is the same file as the input grid", keep);
    snprintf(a, sizeof a, "sweep %s -o %s --report %s --refit-only", grid, runs, grid);
    expect_refused(a, 2, "is the same file as the input grid", keep);
    snprintf(a, sizeof a, "sweep %s -o %s", grid, grid);
    expect_refused(a, 2, "is the same file as the input grid", keep);
    snprintf(a, sizeof a, "sweep %s -o %s --emit slurm --script %s", grid, runs, runs);
    expect_refused(a, 2, "--script", keep);
    /* the results file need not exist yet: a law written over it still loses the runs */
    snprintf(a, sizeof a, "sweep %s -o %s --law-out %s --dry-run", grid, tu_path("new.jsonl"), tu_path("new.jsonl"));
    expect_refused(a, 2, "new.jsonl", keep);
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(tu_path("new.jsonl"), &sb), 0);
}

/* fit RUNS -o RUNS, --report RUNS, a hard link and a symlink to RUNS, --synth over --synth-law */
static void test_fit_output_is_input(void)
{
    PATH(runs, "fit-runs.jsonl");
    PATH(hard, "fit-hard.jsonl");
    PATH(sym, "fit-sym.json");
    copy_file(RUNS_SRC, runs);
    unlink(hard);
    unlink(sym);
    CU_ASSERT_EQUAL(link(runs, hard), 0);
    CU_ASSERT_EQUAL(symlink(runs, sym), 0);
    const char *keep[] = {runs, NULL};
    char a[8192];
    snprintf(a, sizeof a, "fit %s -o %s", runs, runs);
    expect_refused(a, 2, "is the same file as the input run file", keep);
    snprintf(a, sizeof a, "fit %s -o %s --report %s", runs, tu_path("law.json"), runs);
    expect_refused(a, 2, "--report", keep);
    snprintf(a, sizeof a, "fit %s -o %s", runs, hard);
    expect_refused(a, 2, "fit-hard.jsonl", keep);
    snprintf(a, sizeof a, "fit %s -o %s", runs, sym);
    expect_refused(a, 2, "fit-sym.json", keep);
    snprintf(a, sizeof a, "fit %s -o %s --report %s", runs, tu_path("l2.json"), tu_path("l2.json"));
    expect_refused(a, 2, "one would overwrite the other", keep);
    PATH(law, "synth-law.json");
    tu_write(law, "{\"schema\":\"qatplan-law-v1\",\"form\":\"chinchilla\",\"coefficients\":{\"E\":1.8,\"A\":482,"
                  "\"B\":2085,\"alpha\":0.35,\"beta\":0.37},\"provenance\":{\"source\":\"test\"}}\n");
    const char *keep2[] = {law, NULL};
    snprintf(a, sizeof a, "fit --synth %s --synth-law %s --form chinchilla", law, law);
    expect_refused(a, 2, "--synth-law", keep2);
}

/* train: the checkpoint, export, state or record over the token files it trains on */
static void test_train_output_is_input(void)
{
    uint16_t t[4096];
    for (int i = 0; i < 4096; i++) t[i] = (uint16_t)(1 + (i * 7919) % 255);
    qp_error e = {0};
    PATH(tr, "c.train.tok");
    PATH(va, "c.val.tok");
    CU_ASSERT_EQUAL(data_tokens_write(tr, t, 4096, 256, "io", &e), QP_OK);
    CU_ASSERT_EQUAL(data_tokens_write(va, t, 1024, 256, "io", &e), QP_OK);
    const char *keep[] = {tr, va, NULL};
    char a[8192];
    const char *opts = "--layers 1 --width 16 --heads 2 --context 16 --batch 2 --tokens 2K --eval-tokens 256 "
                       "--quiet --threads 1 --device cpu";
    snprintf(a, sizeof a, "train --data %s %s --checkpoint %s", tu_path("c"), opts, tr);
    expect_refused(a, 2, "--checkpoint", keep);
    snprintf(a, sizeof a, "train --data %s %s --runs-out %s", tu_path("c"), opts, va);
    expect_refused(a, 2, "is the same file as the input validation data", keep);
    snprintf(a, sizeof a, "train --train-tokens %s --val-tokens %s %s --state %s", tr, va, opts, tr);
    expect_refused(a, 2, "--state", keep);
    snprintf(a, sizeof a, "train --data %s %s --export-int %s", tu_path("c"), opts, tr);
    expect_refused(a, 2, "--export-int", keep);
    snprintf(a, sizeof a, "train --data %s %s --checkpoint %s --export-int %s", tu_path("c"), opts,
             tu_path("same.safetensors"), tu_path("same.safetensors"));
    expect_refused(a, 2, "one would overwrite the other", keep);
    /* and the same options with distinct outputs train and write them */
    snprintf(a, sizeof a, "train --data %s %s --checkpoint %s --runs-out %s", tu_path("c"), opts,
             tu_path("ok.safetensors"), tu_path("ok.jsonl"));
    CU_ASSERT_EQUAL(tu_run_qatplan(a, NULL, NULL), 0);
    struct stat sb;
    CU_ASSERT_EQUAL(stat(tu_path("ok.safetensors"), &sb), 0);
}

/* plot -o equal to a --runs or --law input; data prepare outputs equal to a text input */
static void test_plot_and_prepare_output_is_input(void)
{
    PATH(runs, "pl-runs.jsonl");
    PATH(law, "pl-law.json");
    copy_file(RUNS_SRC, runs);
    copy_file(QP_SOURCE_DIR "/data/sweeps/own-law/runs.law.json", law);
    const char *keep[] = {runs, law, NULL};
    char a[8192];
    snprintf(a, sizeof a, "plot residuals --runs %s -o %s", runs, runs);
    expect_refused(a, 2, "is the same file as the input --runs", keep);
    snprintf(a, sizeof a, "plot residuals --runs %s --law %s -o %s", runs, law, law);
    expect_refused(a, 2, "is the same file as the input --law", keep);

    PATH(txt, "p.train.tok");
    tu_write(txt, "Some text that is an input and not a token file.\n");
    const char *keep2[] = {txt, NULL};
    snprintf(a, sizeof a, "data prepare --out %s %s", tu_path("p"), txt);
    expect_refused(a, 2, "is the same file as the input text", keep2);
    PATH(man, "q.manifest.json");
    tu_write(man, "text\n");
    const char *keep3[] = {man, NULL};
    snprintf(a, sizeof a, "data prepare --out %s %s", tu_path("q"), man);
    expect_refused(a, 2, "q.manifest.json", keep3);
}

/* Run with a time limit: a check that comes only after the work shows up as a timeout. */
static int run_limited(const char *args, int seconds, char **err)
{
    char cmd[16384];
    PATH(e, "limited.err");
    snprintf(cmd, sizeof cmd, "timeout %d %s %s >/dev/null 2>%s </dev/null", seconds, QP_QATPLAN_EXE, args, e);
    int rc = system(cmd);
    *err = tu_read(e, NULL);
    return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

/* Outputs that cannot be written fail before the training, not after it */
static void test_outputs_checked_before_work(void)
{
    char a[8192], *err = NULL;
    /* 1G tokens would train for hours: the bad output must stop it at once */
    const char *opts = "--train-text " QP_SOURCE_DIR "/README.md --val-text " QP_SOURCE_DIR "/README.md "
                       "--layers 1 --width 16 --heads 2 --context 16 --batch 2 --tokens 1G --quiet --device cpu";
    const char *bad[] = {"--runs-out", "--checkpoint", "--export-int", "--state"};
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "train %s %s %s", opts, bad[i], tu_path("no-such-dir/out"));
        int rc = run_limited(a, 60, &err);
        CU_ASSERT_EQUAL(rc, 1);
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "checked before starting") && strstr(err, bad[i]));
        if (rc != 1) fprintf(stderr, "%s -> %d: %s\n", a, rc, err ? err : "");
        free(err);
    }
    /* a directory as the output */
    snprintf(a, sizeof a, "train %s --checkpoint %s", opts, tu_tmpdir());
    CU_ASSERT_EQUAL(run_limited(a, 60, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "is a directory"));
    free(err);

    /* sweep: a law in a missing folder fails before any run starts */
    PATH(grid, "ck-grid.json");
    PATH(runs, "ck-runs.jsonl");
    copy_file(GRID_SRC, grid);
    snprintf(a, sizeof a, "sweep %s -o %s --law-out %s --train-cmd false", grid, runs, tu_path("no-such-dir/law.json"));
    CU_ASSERT_EQUAL(run_limited(a, 60, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "checked before starting; fix --law-out"));
    free(err);
    struct stat sb;
    snprintf(a, sizeof a, "%s.sweep", runs);
    CU_ASSERT_NOT_EQUAL(stat(a, &sb), 0); /* no run was started */
    CU_ASSERT_NOT_EQUAL(stat(runs, &sb), 0);
    snprintf(a, sizeof a, "sweep %s -o %s --train-cmd false", grid, tu_path("no-such-dir/runs.jsonl"));
    CU_ASSERT_EQUAL(run_limited(a, 60, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "checked before starting; fix -o"));
    free(err);
    /* fit: before the fit */
    snprintf(a, sizeof a, "fit %s -o %s", RUNS_SRC, tu_path("no-such-dir/law.json"));
    CU_ASSERT_EQUAL(run_limited(a, 60, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "checked before starting; fix -o"));
    free(err);
}

/* The writer writes through a symlink to its target and leaves the link a link */
static void test_writer_symlinks(void)
{
    qp_error e = {0};
    PATH(target, "target.txt");
    PATH(link1, "link1");
    PATH(link2, "link2");
    tu_write(target, "old\n");
    CU_ASSERT_EQUAL(chmod(target, 0640), 0);
    unlink(link1);
    unlink(link2);
    CU_ASSERT_EQUAL(symlink("target.txt", link1), 0); /* relative */
    CU_ASSERT_EQUAL(symlink(link1, link2), 0);         /* absolute, to a link */
    CU_ASSERT_EQUAL(qp_write_file_atomic(link2, "new\n", 4, &e), QP_OK);
    struct stat sb;
    CU_ASSERT(lstat(link1, &sb) == 0 && S_ISLNK(sb.st_mode));
    CU_ASSERT(lstat(link2, &sb) == 0 && S_ISLNK(sb.st_mode));
    CU_ASSERT(lstat(target, &sb) == 0 && S_ISREG(sb.st_mode));
    CU_ASSERT_EQUAL(sb.st_mode & 0777, 0640); /* the replaced file keeps its mode */
    char *t = tu_read(target, NULL);
    CU_ASSERT_STRING_EQUAL(t ? t : "", "new\n");
    free(t);
    /* a dangling link: the target is created, as the shell's > does */
    PATH(dang, "dangling");
    unlink(dang);
    unlink(tu_path("created.txt"));
    CU_ASSERT_EQUAL(symlink("created.txt", dang), 0);
    CU_ASSERT_EQUAL(qp_write_file_atomic(dang, "x", 1, &e), QP_OK);
    CU_ASSERT(lstat(dang, &sb) == 0 && S_ISLNK(sb.st_mode));
    t = tu_read(tu_path("created.txt"), NULL);
    CU_ASSERT_STRING_EQUAL(t ? t : "", "x");
    free(t);
    /* a directory is refused, and stays */
    CU_ASSERT_EQUAL(qp_write_file_atomic(tu_tmpdir(), "x", 1, &e), QP_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "is a directory"));

    /* through the CLI: a law written to a symlink */
    char a[8192];
    PATH(lawt, "law-target.json");
    PATH(lawl, "law-link.json");
    tu_write(lawt, "placeholder\n");
    unlink(lawl);
    CU_ASSERT_EQUAL(symlink(lawt, lawl), 0);
    snprintf(a, sizeof a, "fit --synth %s --form chinchilla --runs 20", lawl);
    CU_ASSERT_EQUAL(tu_run_qatplan(a, NULL, NULL), 0);
    CU_ASSERT(lstat(lawl, &sb) == 0 && S_ISLNK(sb.st_mode));
    t = tu_read(lawt, NULL);
    CU_ASSERT_PTR_NOT_NULL(t && strstr(t, "\"run_id\""));
    free(t);
}

/* /dev/null stays a character device whatever is written to it */
static void test_writer_dev_null(void)
{
    struct stat before, after;
    CU_ASSERT_EQUAL_FATAL(stat("/dev/null", &before), 0);
    CU_ASSERT(S_ISCHR(before.st_mode));
    qp_error e = {0};
    CU_ASSERT_EQUAL(qp_write_file_atomic("/dev/null", "abc", 3, &e), QP_OK);
    CU_ASSERT_EQUAL(qp_append_line("/dev/null", "{}", &e), QP_OK);
    CU_ASSERT_EQUAL(qp_check_writable("/dev/null", "-o", 0, &e), QP_OK);
    char a[8192];
    /* two outputs to /dev/null are not "the same file" (it holds nothing to lose) */
    snprintf(a, sizeof a, "fit %s -o /dev/null --report /dev/null --form fraction -q", RUNS_SRC);
    CU_ASSERT_EQUAL(tu_run_qatplan(a, NULL, NULL), 0);
    snprintf(a, sizeof a, "fit --synth /dev/null --form chinchilla --runs 20");
    CU_ASSERT_EQUAL(tu_run_qatplan(a, NULL, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(stat("/dev/null", &after), 0);
    CU_ASSERT(S_ISCHR(after.st_mode));
    CU_ASSERT_EQUAL(after.st_rdev, before.st_rdev);
    CU_ASSERT_EQUAL(after.st_ino, before.st_ino);
    /* no temp file was left in /dev */
    CU_ASSERT_EQUAL(system("ls /dev | grep -q 'null.tmp'"), 256);
}

/* A directory where a file is read: "is a directory", not "read error" */
static void test_directory_as_input(void)
{
    const char *d = tu_tmpdir();
    const char *cmds[] = {"law show", "fit -o /dev/null", "plot residuals -o /dev/null --runs", "data info",
                          "plan --params 1B --budget 1e21 --law", "sweep -o /dev/null --dry-run"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char a[8192], *err = NULL;
        snprintf(a, sizeof a, "%s %s", cmds[i], d);
        int rc = tu_run_qatplan(a, NULL, &err);
        CU_ASSERT_NOT_EQUAL(rc, 0);
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "is a directory"));
        CU_ASSERT_PTR_NULL(err ? strstr(err, "read error") : NULL);
        if (!err || !strstr(err, "is a directory")) fprintf(stderr, "qatplan %s: %s\n", a, err ? err : "");
        free(err);
    }
    char *buf = NULL;
    qp_error e = {0};
    CU_ASSERT_EQUAL(qp_read_file(d, &buf, NULL, &e), QP_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "is a directory"));
}

/* Other counts and lists typed on the command line: fractions and empty entries refused */
static void test_cli_counts_and_lists(void)
{
    static const struct { const char *args, *msg; } cases[] = {
        {"fit --synth /dev/null --runs 2.5", "--runs '2.5' is not a whole number"},
        {"data prepare --out /dev/null/x --doc-bytes 100.5 README.md", "not a whole number of bytes"},
        {"plot residuals -o x.svg --bits 4,", "empty entry"},
        {"plot residuals -o x.svg --bits 2,2", "twice"},
        {"plot residuals -o x.svg --size 960x640px", "WIDTHxHEIGHT"},
        {"plot residuals -o x.svg --size 960,640", "WIDTHxHEIGHT"},
        {"--params 1B --tokens 1T --bits 4,", "empty entry"},
        {"--params 1B --tokens 1T --batch-tokens 0.5M", ""},
        {"--params 1B --tokens 1T --batch-tokens 1.5", "not a whole number"},
        {"--params -nan --tokens 1T", "not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *err = NULL;
        int rc = tu_run_qatplan(cases[i].args, NULL, &err);
        if (!cases[i].msg[0]) { /* a whole count written with a fraction and a suffix is fine */
            CU_ASSERT_EQUAL(rc, 0);
        } else {
            CU_ASSERT_EQUAL(rc, 2);
            CU_ASSERT_PTR_NOT_NULL(err && strstr(err, cases[i].msg));
            if (rc != 2 || !err || !strstr(err, cases[i].msg))
                fprintf(stderr, "qatplan %s -> %d: %s\n", cases[i].args, rc, err ? err : "");
        }
        free(err);
    }
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_sweep_output_is_input);
    TU_ADD(s, test_fit_output_is_input);
    TU_ADD(s, test_train_output_is_input);
    TU_ADD(s, test_plot_and_prepare_output_is_input);
    TU_ADD(s, test_outputs_checked_before_work);
    TU_ADD(s, test_writer_symlinks);
    TU_ADD(s, test_writer_dev_null);
    TU_ADD(s, test_directory_as_input);
    TU_ADD(s, test_cli_counts_and_lists);
}

int main(void) { return tu_main("io", add); }
