/* qatplan sweep --emit slurm: the generated script's content, and the script run against a
 * fake sbatch that executes every array task locally, twice at once, so concurrent tasks
 * appending to one results file under flock must leave each record exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sweep.h"
#include "sweep_fakes.h"
#include "testutil.h"

static const char *grid_json =
    "{\"data\": \"corpus/x\",\n"
    " \"shapes\": [{\"layers\": 1, \"width\": 16, \"heads\": 2, \"context\": 32},\n"
    "            {\"layers\": 2, \"width\": 32, \"heads\": 2, \"context\": 32}],\n"
    " \"tokens\": [\"20K\", \"80K\"], \"bits\": [2, 4], \"fractions\": [0, 0.5, 1], \"schedules\": [\"classic\", \"fused\"]}\n";

/* Runs the job script it is given on stdin: an array job's tasks all at once, each task
 * twice (as a requeued or duplicated task would), then prints a job id like --parsable. */
static const char *fake_sbatch =
    "#!/bin/sh\n"
    "echo \"$*\" >> \"$SBATCH_LOG\"\n"
    "n=$(cat \"$SBATCH_DIR/counter\" 2>/dev/null || echo 100); n=$((n+1)); echo $n > \"$SBATCH_DIR/counter\"\n"
    "script=\"$SBATCH_DIR/job$n.sh\"; cat > \"$script\"\n"
    "array=; for a in \"$@\"; do case \"$a\" in --array=*) array=${a#--array=};; esac; done\n"
    "if [ -n \"$array\" ]; then\n"
    "  r=${array%%%*}; lo=${r%-*}; hi=${r#*-}; i=$lo\n"
    "  while [ $i -le $hi ]; do\n"
    "    SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash \"$script\" >\"$SBATCH_DIR/task$i.a\" 2>&1 &\n"
    "    SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash \"$script\" >\"$SBATCH_DIR/task$i.b\" 2>&1 &\n"
    "    i=$((i+1))\n"
    "  done\n"
    "  wait\n"
    "else\n"
    "  bash \"$script\" >\"$SBATCH_DIR/job$n.out\" 2>&1\n"
    "fi\n"
    "echo \"$n;fakecluster\"\n";

static void test_emit_and_run(void)
{
    fakes_install();
    char grid[4096], runs[4096], script[4096], law[4096], bin[4096];
    snprintf(grid, sizeof grid, "%s", tu_path("grid.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("runs.jsonl"));
    snprintf(script, sizeof script, "%s", tu_path("submit.sh"));
    snprintf(law, sizeof law, "%s", tu_path("law.json"));
    snprintf(bin, sizeof bin, "%s", tu_path("bin"));
    tu_write(grid, grid_json);
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_read(grid, &g, &e), QP_OK);
    CU_ASSERT_EQUAL(g.n, 2 * 2 * 2 * 4); /* per bits: f=0, f=1, f=0.5 x 2 schedules */

    char cmd[16384], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd,
             "sweep %s -o %s --law-out %s --emit slurm --script %s --slurm-cpus 4 --slurm-time 02:30:00 "
             "--slurm-max-parallel 8 --slurm-partition cpu",
             grid, runs, law, script);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, &out, &err), 0);
    free(out);
    free(err);
    char *s = tu_read(script, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char want[512];
    snprintf(want, sizeof want, "--array=0-%zu%%8 ", g.n - 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "#!/bin/bash\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--cpus-per-task=4 --time=02:30:00 --partition=cpu"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--only-index \"\\$SLURM_ARRAY_TASK_ID\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--dependency=afterany:$array_job"));
    snprintf(want, sizeof want, "--train-cmd '%s'", tu_path("fake-train.sh")); /* from QP_SWEEP_TRAIN_CMD */
    CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
    snprintf(want, sizeof want, "--fit-cmd '%s'", tu_path("fake-fit.sh"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--refit-only --law-out \"$LAW\" --report \"$REPORT\" --fit-form qat"));
    snprintf(want, sizeof want, "GRID='%s'", grid);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
    snprintf(want, sizeof want, "QATPLAN='%s'", QP_QATPLAN_EXE);
    if (!strstr(s, want)) fprintf(stderr, "script lacks %s:\n%s\n", want, s);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, want));
    free(s);

    /* bad Slurm options are refused */
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --emit slurm --slurm-time 'now; rm -rf x'", grid, runs);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 2);

    /* Run it against the fake sbatch. */
    snprintf(cmd, sizeof cmd, "mkdir -p %s", bin);
    CU_ASSERT_EQUAL(system(cmd), 0);
    char sb[4200];
    snprintf(sb, sizeof sb, "%s/sbatch", bin);
    tu_write(sb, fake_sbatch);
    snprintf(cmd, sizeof cmd, "chmod +x %s", sb);
    CU_ASSERT_EQUAL(system(cmd), 0);
    setenv("SBATCH_DIR", tu_tmpdir(), 1);
    setenv("SBATCH_LOG", tu_path("sbatch.log"), 1);
    setenv("FAKE_FIT_MIN", "4", 1);
    unlink(tu_path("calls.log"));
    snprintf(cmd, sizeof cmd, "PATH=%s:$PATH bash %s > %s 2>&1", bin, script, tu_path("submit.out"));
    CU_ASSERT_EQUAL(system(cmd), 0);
    char *so = tu_read(tu_path("submit.out"), NULL);
    CU_ASSERT_PTR_NOT_NULL(so && strstr(so, "submitted job array 101"));
    CU_ASSERT_PTR_NOT_NULL(so && strstr(so, "refit job 102"));
    free(so);
    char *log = tu_read(tu_path("sbatch.log"), NULL);
    CU_ASSERT_PTR_NOT_NULL(log && strstr(log, "--dependency=afterany:101 ")); /* the ";cluster" suffix is cut */
    free(log);
    /* each grid point recorded exactly once, though each task ran twice at once */
    char *t = tu_read(runs, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    size_t lines = 0;
    for (char *p = t; *p; p++) lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, g.n);
    for (size_t i = 0; i < g.n; i++) {
        char key[160];
        snprintf(key, sizeof key, "\"run_id\":\"%s\"", g.points[i].run_id);
        int n = 0;
        for (char *p = t; (p = strstr(p, key)); p += strlen(key)) n++;
        CU_ASSERT_EQUAL(n, 1);
    }
    free(t);
    /* each trainer ran once: the twin task found the run locked or recorded */
    char *calls = tu_read(tu_path("calls.log"), NULL);
    size_t ncalls = 0;
    for (char *p = calls; p && (p = strstr(p, "resume=")); p++) ncalls++;
    CU_ASSERT_EQUAL(ncalls, g.n);
    free(calls);
    /* the dependent refit wrote the law and the report */
    CU_ASSERT_EQUAL(access(law, F_OK), 0);
    char *rep = tu_read(tu_path("runs.report.txt"), NULL);
    CU_ASSERT_PTR_NOT_NULL(rep && strstr(rep, "predicted against observed"));
    free(rep);
    sweep_grid_free(&g);
}

/* s single-quoted for the shell, into out */
static void shq(char *out, size_t n, const char *s)
{
    size_t k = 0;
    out[k++] = '\'';
    for (; *s && k + 6 < n; s++) {
        if (*s == '\'') k += (size_t)snprintf(out + k, n - k, "'\\''");
        else out[k++] = *s;
    }
    out[k++] = '\'';
    out[k] = 0;
}

/* The script carries --train-cmd, the other run options and --slurm-arg lines, so a cluster
 * node whose environment lacks QP_SWEEP_TRAIN_CMD still runs the given trainer; a command
 * with spaces, quotes and $ reaches the task's shell as given. */
static void test_emit_carries_options(void)
{
    fakes_install();
    static const char *small =
        "{\"data\": \"corpus/x\", \"shapes\": [{\"layers\": 1, \"width\": 16, \"heads\": 2, \"context\": 32}],\n"
        " \"tokens\": [\"20K\", \"80K\"], \"bits\": [16]}\n";
    char grid[4096], runs[4096], script[4096], bin[4096], wrapper[4096], tagged[4096], cmdq[8192];
    snprintf(grid, sizeof grid, "%s", tu_path("small.json"));
    snprintf(runs, sizeof runs, "%s", tu_path("small.jsonl"));
    snprintf(script, sizeof script, "%s", tu_path("small-submit.sh"));
    snprintf(bin, sizeof bin, "%s", tu_path("bin"));
    tu_write(grid, small);
    /* a wrapper in a directory with a space, logging a tag with quotes and $ before the fake */
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' %s", tu_path("my dir"), bin);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(wrapper, sizeof wrapper, "%s/it's train.sh", tu_path("my dir"));
    snprintf(cmd, sizeof cmd, "#!/bin/sh\nprintf '%%s\\n' \"$TAG\" >> \"%s\"\nexec \"%s\" \"$@\"\n",
             tu_path("wrapper.log"), tu_path("fake-train.sh"));
    tu_write(wrapper, cmd);
    char wq[4200];
    shq(wq, sizeof wq, wrapper);
    snprintf(cmd, sizeof cmd, "chmod +x %s", wq);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(tagged, sizeof tagged, "env TAG='a \"b\" $c `d` \\e' %s", wq);
    shq(cmdq, sizeof cmdq, tagged);
    char sb[4200];
    snprintf(sb, sizeof sb, "%s/sbatch", bin);
    tu_write(sb, fake_sbatch);
    snprintf(cmd, sizeof cmd, "chmod +x %s", sb);
    CU_ASSERT_EQUAL(system(cmd), 0);

    snprintf(cmd, sizeof cmd,
             "sweep %s -o %s --emit slurm --script %s --train-cmd %s --no-fit --no-state --run-timeout 90 --threads 3 "
             "--slurm-arg --gres=gpu:1 --slurm-arg --account=abc",
             grid, runs, script, cmdq);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    char *s = tu_read(script, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "\n#SBATCH --gres=gpu:1\n#SBATCH --account=abc\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--train-cmd '"));
    CU_ASSERT_PTR_NOT_NULL(strstr(s, "--threads 3 --run-timeout 90 --no-state"));
    CU_ASSERT_PTR_NULL(strstr(s, "qatplan-refit")); /* --no-fit: no refit job */
    free(s);

    /* run it where the environment names no trainer: the task must still run the wrapper */
    unsetenv("QP_SWEEP_TRAIN_CMD");
    unsetenv("QP_SWEEP_FIT_CMD");
    setenv("SBATCH_DIR", tu_tmpdir(), 1);
    setenv("SBATCH_LOG", tu_path("small-sbatch.log"), 1);
    unlink(tu_path("counter"));
    snprintf(cmd, sizeof cmd, "PATH=%s:$PATH bash %s > %s 2>&1", bin, script, tu_path("small-submit.out"));
    CU_ASSERT_EQUAL(system(cmd), 0);
    char *log = tu_read(tu_path("wrapper.log"), NULL);
    if (!log) {
        char *o = tu_read(tu_path("task0.a"), NULL);
        fprintf(stderr, "no wrapper log; task 0 said:\n%s\n", o ? o : "(nothing)");
        free(o);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    size_t n = 0;
    for (char *p = log; (p = strstr(p, "a \"b\" $c `d` \\e\n")); p++) n++;
    CU_ASSERT_EQUAL(n, 2); /* two points; each twin task found its point locked or recorded */
    free(log);
    char *t = tu_read(runs, NULL);
    size_t lines = 0;
    for (char *p = t; p && *p; p++) lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 2);
    free(t);
    fakes_install(); /* restore the environment for the tests after this one */
}

/* A bad --slurm-arg is refused with a one-line error, before anything is written. */
static void test_bad_slurm_arg(void)
{
    char grid[4096], cmd[16384], *err = NULL;
    snprintf(grid, sizeof grid, "%s", tu_path("grid.json"));
    tu_write(grid, grid_json);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --emit slurm --script %s --slurm-arg gres=gpu:1", grid,
             tu_path("r.jsonl"), tu_path("bad.sh"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "--slurm-arg 'gres=gpu:1'"));
    free(err);
    snprintf(cmd, sizeof cmd, "sweep %s -o %s --emit slurm --script %s --slurm-arg \"$(printf '%%s\\n%%s' --gres=a '#SBATCH --x')\"", grid,
             tu_path("r.jsonl"), tu_path("bad.sh"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "newline"));
    free(err);
    CU_ASSERT_NOT_EQUAL(access(tu_path("bad.sh"), F_OK), 0);
}

/* The emitter itself: paths the job scripts cannot carry are refused. */
static void test_emit_refuses_bad_paths(void)
{
    sweep_grid g;
    qp_error e = {0};
    CU_ASSERT_EQUAL_FATAL(sweep_grid_parse(grid_json, "g", &g, &e), QP_OK);
    sweep_slurm_options so = {0};
    so.qatplan = "/usr/bin/qatplan";
    so.workdir = "/w";
    so.grid_path = "g$x.json";
    so.runs_path = "r.jsonl";
    so.law_out = "l.json";
    so.report_path = "r.txt";
    char *text = NULL;
    CU_ASSERT_EQUAL(sweep_emit_slurm(&g, &so, &text, &e), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "g$x.json"));
    so.grid_path = "g.json";
    so.workdir = "relative";
    CU_ASSERT_EQUAL(sweep_emit_slurm(&g, &so, &text, &e), QP_ERR_INPUT);
    so.workdir = "/w";
    CU_ASSERT_EQUAL_FATAL(sweep_emit_slurm(&g, &so, &text, &e), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "--array=0-31 ")); /* no throttle by default */
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "--cpus-per-task=2 --time=04:00:00 "));
    CU_ASSERT_PTR_NULL(strstr(text, "--progress-every")); /* the tasks' default */
    free(text);
    so.progress_every = "30";
    CU_ASSERT_EQUAL_FATAL(sweep_emit_slurm(&g, &so, &text, &e), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(text, " --progress-every 30"));
    free(text);
    sweep_grid_free(&g);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_emit_and_run);
    TU_ADD(s, test_emit_refuses_bad_paths);
    TU_ADD(s, test_emit_carries_options);
    TU_ADD(s, test_bad_slurm_arg);
}

int main(void) { return tu_main("sweep_slurm", add); }
