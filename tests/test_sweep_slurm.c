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
    free(text);
    sweep_grid_free(&g);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_emit_and_run);
    TU_ADD(s, test_emit_refuses_bad_paths);
}

int main(void) { return tu_main("sweep_slurm", add); }
