/* Slurm: a bash script that submits the grid as a job array (task i = grid point i, which
 * appends its record to the shared results file under flock) and the refit as a job that
 * depends on the whole array (afterany: it runs whatever the tasks' outcome). A grid with
 * trunks first submits them as an array of their own (task t = trunk t), and the points'
 * array depends on all of it with afterany: a branch whose trunk failed finds its state
 * missing and trains the trunk itself (docs/sweep.md, "Trunks and branches"). */
#include "sweep.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Single-quote s for the shell. */
static void sq(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

/* s single-quoted for the shell, inside an unquoted here-document: there \, $ and ` are
 * still special, so each is escaped once more; the job script then reads the plain quoting. */
static void sq_heredoc(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\\\''", f);
        else if (*s == '\\' || *s == '$' || *s == '`') fprintf(f, "\\%c", *s);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

/* #SBATCH ARG lines: sbatch reads them from the job script it is given on stdin. */
static void sbatch_lines(FILE *f, const sweep_slurm_options *so)
{
    for (size_t i = 0; i < so->n_sbatch_args; i++) {
        fputs("#SBATCH ", f);
        for (const char *s = so->sbatch_args[i]; *s; s++) {
            if (*s == '\\' || *s == '$' || *s == '`') fputc('\\', f);
            fputc(*s, f);
        }
        fputc('\n', f);
    }
}

/* A value the script cannot carry is refused here, with the option that gave it. */
static qp_status check_options(const sweep_slurm_options *so, qp_error *err)
{
    if (!so->qatplan || so->qatplan[0] != '/' || !so->workdir || so->workdir[0] != '/')
        return qp_fail(err, QP_ERR_INPUT, "the Slurm script needs absolute paths for qatplan and the work directory");
    const char *paths[] = {so->qatplan, so->workdir, so->grid_path, so->runs_path, so->law_out, so->report_path};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (!paths[i] || strpbrk(paths[i], "\"$`\\\n"))
            return qp_fail(err, QP_ERR_INPUT, "path '%s' holds a character the job scripts cannot carry (\", $, `, \\, newline): rename it",
                           paths[i] ? paths[i] : "(none)");
    for (const char *s = so->time_limit; s && *s; s++)
        if (!strchr("0123456789:-", *s))
            return qp_fail(err, QP_ERR_INPUT, "--slurm-time '%s': use Slurm's [D-]HH:MM:SS", so->time_limit);
    if (so->partition)
        for (const char *s = so->partition; *s; s++)
            if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == ','))
                return qp_fail(err, QP_ERR_INPUT, "--slurm-partition '%s': letters, digits, '_', '-' and ',' only", so->partition);
    /* a newline could end the here-document or the #SBATCH line early */
    if (so->train_cmd && strchr(so->train_cmd, '\n'))
        return qp_fail(err, QP_ERR_INPUT, "--train-cmd holds a newline, which the job script cannot carry: give it on one line");
    if (so->fit_cmd && strchr(so->fit_cmd, '\n'))
        return qp_fail(err, QP_ERR_INPUT, "--fit-cmd holds a newline, which the job script cannot carry: give it on one line");
    for (size_t i = 0; i < so->n_sbatch_args; i++) {
        const char *a = so->sbatch_args[i];
        if (strncmp(a, "--", 2) || !a[2] || strpbrk(a, "\n\r"))
            return qp_fail(err, QP_ERR_INPUT, "--slurm-arg '%s': give one long sbatch option on one line, e.g. --gres=gpu:1",
                           strpbrk(a, "\n\r") ? "(has a newline)" : a);
    }
    return QP_OK;
}

static void header(FILE *f, const sweep_grid *g, const sweep_slurm_options *so)
{
    fprintf(f, "#!/bin/bash\n");
    fprintf(f, "# Slurm submission of a qatplan sweep, written by qatplan %s.\n", qp_version());
    fprintf(f, "# Grid %s: %zu runs, one job-array task each (task i runs grid point i).\n", so->grid_path, g->n);
    if (g->n_trunks)
        fprintf(f, "# \"trunks\": %zu FP trunks run first, as an array of their own (task t runs trunk t); the\n"
                   "# runs' array waits for all of it (--dependency=afterany) and branches from their saved states.\n",
                g->n_trunks);
    fprintf(f, "# Every task appends its run record to the shared results file with a single write under\n"
               "# flock(2); a task whose record is already there does nothing, so resubmitting this\n"
               "# script only runs what is missing. The refit job waits for the whole array\n"
               "# (--dependency=afterany) and writes the law and the report.\n");
    fprintf(f, "# Submit with: bash THIS_FILE   (docs/sweep.md, \"Slurm\")\n");
    fprintf(f, "set -euo pipefail\n\n");
    const char *names[] = {"QATPLAN", "WORKDIR", "GRID", "RUNS", "LAW", "REPORT"};
    const char *vals[] = {so->qatplan, so->workdir, so->grid_path, so->runs_path, so->law_out, so->report_path};
    for (size_t i = 0; i < 6; i++) {
        fprintf(f, "%s=", names[i]);
        sq(f, vals[i]);
        fputc('\n', f);
    }
    fprintf(f, "LOGS=\"$RUNS.sweep/slurm\"\n\n");
    fprintf(f, "cd \"$WORKDIR\"\nmkdir -p \"$LOGS\"\n\n");
}

/* The options every task passes to the sweep, as the local sweep would have them. */
static void task_options(FILE *f, const sweep_slurm_options *so, int cpus)
{
    if (so->threads > 0) fprintf(f, "--threads %d", so->threads);
    else fprintf(f, "--threads \"\\${SLURM_CPUS_PER_TASK:-%d}\"", cpus);
    if (so->run_timeout > 0) fprintf(f, " --run-timeout %.17g", so->run_timeout);
    if (so->progress_every) fprintf(f, " --progress-every %.17g", atof(so->progress_every));
    if (so->no_state) fprintf(f, " --no-state");
    if (so->train_cmd) {
        fprintf(f, " --train-cmd ");
        sq_heredoc(f, so->train_cmd);
    }
}

/* One job array of `tasks` tasks in shell variable `var`: task i runs `qatplan sweep ... OPT i`
 * with the options of the local sweep; `dep`: the job it waits for (afterany), or NULL;
 * `log`: the name of its output files under $LOGS; `note`: a comment after the job id line. */
static void job_array(FILE *f, const sweep_slurm_options *so, int cpus, const char *tl, const char *var,
                      const char *name, size_t tasks, const char *dep, const char *log, const char *opt,
                      const char *note)
{
    fprintf(f, "%s=$(sbatch --parsable --job-name=%s --array=0-%zu", var, name, tasks - 1);
    if (so->max_parallel > 0) fprintf(f, "%%%d", so->max_parallel);
    if (dep) fprintf(f, " --dependency=afterany:$%s", dep);
    fprintf(f, " \\\n    --cpus-per-task=%d --time=%s", cpus, tl);
    if (so->partition) fprintf(f, " --partition=%s", so->partition);
    fprintf(f, " \\\n    --output=\"$LOGS/%s%%A_%%a.out\" <<EOF\n", log);
    fprintf(f, "#!/bin/bash\n");
    sbatch_lines(f, so);
    fprintf(f, "cd \"$WORKDIR\"\n");
    fprintf(f, "exec \"$QATPLAN\" sweep \"$GRID\" -o \"$RUNS\" %s \"\\$SLURM_ARRAY_TASK_ID\" ", opt);
    task_options(f, so, cpus);
    fprintf(f, "\nEOF\n)\n");
    fprintf(f, "%s=${%s%%%%;*}%s\n\n", var, var, note);
}

/* The array job: task i runs grid point i, after the trunks' array (task t runs trunk t and
 * saves its branch points' states) when the grid has trunks. */
static void array_job(FILE *f, const sweep_grid *g, const sweep_slurm_options *so, int cpus, const char *tl)
{
    fprintf(f, "# The job scripts are given on stdin; variables are expanded now, at submission.\n");
    if (g->n_trunks)
        job_array(f, so, cpus, tl, "trunk_job", "qatplan-trunks", g->n_trunks, NULL, "trunk_", "--only-trunk", "");
    job_array(f, so, cpus, tl, "array_job", "qatplan-sweep", g->n, g->n_trunks ? "trunk_job" : NULL, "", "--only-index",
              "  # --parsable prints JOBID[;CLUSTER]");
}

static void refit_job(FILE *f, const sweep_slurm_options *so, int cpus)
{
    fprintf(f, "refit_job=$(sbatch --parsable --job-name=qatplan-refit --dependency=afterany:$array_job \\\n"
               "    --cpus-per-task=%d --time=01:00:00", cpus);
    if (so->partition) fprintf(f, " --partition=%s", so->partition);
    fprintf(f, " --output=\"$LOGS/refit_%%j.out\" <<EOF\n");
    fprintf(f, "#!/bin/bash\n");
    sbatch_lines(f, so);
    fprintf(f, "cd \"$WORKDIR\"\n");
    fprintf(f, "exec \"$QATPLAN\" sweep \"$GRID\" -o \"$RUNS\" --refit-only --law-out \"$LAW\" --report \"$REPORT\" "
               "--fit-form %s",
            data_law_form_name(so->fit_form));
    if (so->fit_cmd) {
        fprintf(f, " --fit-cmd ");
        sq_heredoc(f, so->fit_cmd);
    }
    fprintf(f, "\nEOF\n)\n");
    fprintf(f, "refit_job=${refit_job%%%%;*}\n\n");
}

qp_status sweep_emit_slurm(const sweep_grid *g, const sweep_slurm_options *so, char **script, qp_error *err)
{
    if (g->n == 0) return qp_fail(err, QP_ERR_INPUT, "the grid has no runs");
    qp_status st = check_options(so, err);
    if (st) return st;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int cpus = so->cpus_per_task > 0 ? so->cpus_per_task : 2;
    const char *tl = so->time_limit && so->time_limit[0] ? so->time_limit : "04:00:00";
    header(f, g, so);
    array_job(f, g, so, cpus, tl);
    if (so->no_fit) {
        fprintf(f, "echo \"qatplan sweep: submitted job array $array_job (%zu tasks); no refit (--no-fit)\"\n", g->n);
        fprintf(f, "echo \"results: $RUNS  logs: $LOGS\"\n");
    } else {
        refit_job(f, so, cpus);
        fprintf(f, "echo \"qatplan sweep: submitted job array $array_job (%zu tasks) and refit job $refit_job\"\n", g->n);
        fprintf(f, "echo \"results: $RUNS  law: $LAW  report: $REPORT  logs: $LOGS\"\n");
    }
    fclose(f);
    *script = text;
    return QP_OK;
}
