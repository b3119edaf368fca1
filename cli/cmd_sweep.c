/* qatplan sweep: run a grid of trainings, refit the law as results come in, or write a Slurm
 * job array for it. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sweep.h"
#include "train.h"

static void sweep_help(FILE *f)
{
    fprintf(f,
            "usage: qatplan sweep GRID.json -o RUNS.jsonl [options]\n\n"
            "Runs every grid point (model shape x token budget x bits x QAT fraction x schedule x seed) whose\n"
            "record is not yet in RUNS.jsonl, each as a 'qatplan train' subprocess, and refits the law.\n"
            "Rerunning skips recorded runs; a killed sweep loses at most the runs in flight, which resume\n"
            "from their saved state. Grid format and design: docs/sweep.md.\n\n"
            "  -o, --output FILE       results file (JSONL run records); required\n"
            "  --jobs N                trainers at once (default 1)\n"
            "  --threads N             threads per trainer (default: the grid's train.threads, else cores/jobs)\n"
            "  --refit-every K         refit after every K finished runs (default 0: only at the end)\n"
            "  --law-out FILE          law file the refit writes (default: RUNS without .jsonl + .law.json)\n"
            "  --report FILE           sweep report: fit quality, predicted vs observed per run\n"
            "                          (default: RUNS without .jsonl + .report.txt)\n"
            "  --fit-form F            qat, chinchilla or fraction (default qat; chinchilla for FP-only grids)\n"
            "  --no-fit                do not refit\n"
            "  --run-timeout SECONDS   stop a run that takes longer (it counts as failed; default: none)\n"
            "  --no-state              do not keep resumable trainer state for interrupted runs\n"
            "  --dry-run               list the runs, which are recorded, and the trainer commands; run nothing\n"
            "  --only-index I          run grid point I only (0-based; what a Slurm array task does)\n"
            "  --only-trunk I          run trunk I only (\"trunks\" grids; what a Slurm trunk task does)\n"
            "  --refit-only            only refit from RUNS and write the law and the report\n"
            "  --emit slurm            write a Slurm job-array submission script instead of running\n"
            "  --script FILE           where --emit writes the script (default: stdout)\n"
            "  --slurm-cpus N          CPUs per array task (default 2; the trainer's --threads)\n"
            "  --slurm-time T          time limit per array task, [D-]HH:MM:SS (default 04:00:00)\n"
            "  --slurm-partition P     partition (default: the cluster's)\n"
            "  --slurm-max-parallel M  at most M tasks at once (array throttle %%M; default none)\n"
            "  --slurm-arg ARG         an sbatch option for both jobs, as an #SBATCH line (repeatable),\n"
            "                          e.g. --slurm-arg --gres=gpu:1 --slurm-arg --account=abc\n"
            "  --train-cmd CMD         trainer command prefix, run by /bin/sh (default: this qatplan's\n"
            "                          'train'; env QP_SWEEP_TRAIN_CMD)\n"
            "  --fit-cmd CMD           fitter command prefix (default: this qatplan's 'fit'; env QP_SWEEP_FIT_CMD)\n"
            "  --progress-every SECS   when stderr is not a terminal: a line with the runs in flight (step,\n"
            "                          loss) and the ETA every SECS seconds (default 60; 0 = none)\n"
            "  -q, --quiet             no progress output\n"
            "  -h, --help              this help\n\n"
            "exit status: 0 every run recorded (ok or diverged); 1 some run failed (no record) or the sweep\n"
            "was interrupted; 2 bad usage or grid.\n");
}

/* RUNS.jsonl -> RUNS + suffix */
static char *derived(const char *runs, const char *suffix)
{
    size_t n = strlen(runs);
    if (n > 6 && !strcmp(runs + n - 6, ".jsonl")) n -= 6;
    char *s = malloc(n + strlen(suffix) + 1);
    if (!s) return NULL;
    memcpy(s, runs, n);
    strcpy(s + n, suffix);
    return s;
}

/* Before any work: no output may be the grid or another output (the results file is read
 * and appended to, so it counts as an output), and every output this mode writes ('d' dry
 * run, 'e' emit, 'r' refit only, 0 run) must be writable now, not after hours of training. */
static qp_status check_paths(const char *grid, const sweep_options *o, const char *script, int mode, qp_error *err)
{
    const qp_named_path in[] = {{grid, "grid"}};
    const qp_named_path out[] = {{o->runs_path, "-o"}, {o->law_out, "--law-out"},
                                 {o->report_path, "--report"}, {script, "--script"}};
    qp_status st = qp_refuse_output_is_input(out, 4, in, 1, err);
    if (st || mode == 'd') return st; /* a dry run writes nothing */
    if (mode == 'e') return script ? qp_check_writable(script, "--script", 0, err) : QP_OK;
    if (mode != 'r') st = qp_check_writable(o->runs_path, "-o", 1, err);
    int fits = mode == 'r' || (o->fit && o->only_index < 0 && o->only_trunk < 0);
    if (!st && fits) st = qp_check_writable(o->law_out, "--law-out", 0, err);
    if (!st && fits) st = qp_check_writable(o->report_path, "--report", 0, err);
    return st;
}

/* One trainer command line as the sweep would run it. */
static void print_cmd(const sweep_options *o, char **args, const char *k, const char *v)
{
    printf("      %s", o->train_cmd ? o->train_cmd : "qatplan train");
    for (char **a = args; *a; a++) printf(" %s", *a);
    if (k) printf(" %s %s", k, v);
    printf("\n");
}

/* A trunk-and-branch grid: its trunks, each with the command that trains it. */
static qp_status dry_run_trunks(const sweep_grid *g, const sweep_options *o, qp_error *err)
{
    for (size_t t = 0; t < g->n_trunks; t++) {
        const sweep_trunk *tr = &g->trunks[t];
        char sp[4400], out[4400];
        snprintf(sp, sizeof sp, "%s.sweep/%s.state", o->runs_path, tr->p.run_id);
        snprintf(out, sizeof out, "%s.sweep/trunks.jsonl", o->runs_path);
        printf("[trunk %zu] %-50s N=%-9.4g D=%-9.4g %d branch point%s\n", t, tr->p.run_id, tr->p.n_params, tr->p.tokens,
               tr->n_save, tr->n_save == 1 ? "" : "s");
        char **args;
        qp_status st = sweep_trunk_args(g, tr, out, sp, 0, o->threads > 0 ? o->threads : 1, &args,
                                        err);
        if (st) return st;
        print_cmd(o, args, NULL, NULL);
        sweep_argv_free(args);
    }
    return QP_OK;
}

static int dry_run(const sweep_grid *g, const sweep_options *o, qp_error *err)
{
    sweep_results res;
    qp_status st = sweep_results_read(o->runs_path, &res, err);
    if (st) return cli_report(st, err);
    size_t done = 0, pending = 0;
    double tok = 0, flops = 0;
    unsigned char *todo = calloc(g->n ? g->n : 1, 1);
    if (!todo) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if (!st && g->use_trunks) st = dry_run_trunks(g, o, err);
    for (size_t i = 0; i < g->n && !st; i++) {
        const sweep_point *p = &g->points[i];
        if (o->only_index >= 0 && (long)i != o->only_index) continue;
        const data_run *r = sweep_results_find(&res, p->run_id);
        printf("[%zu] %-56s N=%-9.4g D=%-9.4g %s\n", i, p->run_id, p->n_params, p->tokens,
               r ? (r->status == DATA_RUN_DIVERGED ? "recorded (diverged)" : "recorded") : "to run");
        if (r) {
            done++;
            continue;
        }
        pending++;
        todo[i] = 1;
        tok += p->tokens;
        flops += 6 * p->n_params * p->tokens;
        char **args, cp[4400];
        if ((st = sweep_point_args(g, p, o->runs_path, NULL, 0, o->threads > 0 ? o->threads : 1, &args, err))) break;
        if (p->trunk)
            snprintf(cp, sizeof cp, "%s.sweep/%s.state.at%.0f", o->runs_path, g->trunks[p->trunk - 1].p.run_id,
                     p->branch_tokens);
        print_cmd(o, args, p->trunk ? "--init" : NULL, cp);
        sweep_argv_free(args);
    }
    if (res.n_bad_lines) printf("warning: %zu unreadable line(s) in %s ignored; first: %s\n", res.n_bad_lines, o->runs_path, res.first_bad_msg);
    sweep_results_free(&res);
    if (!st) {
        printf("%zu runs: %zu recorded, %zu to run (%.4g training tokens, %.4g FLOPs at 6*N*D)\n", done + pending, done,
               pending, tok, flops);
        double shared, separate;
        sweep_trunk_tokens(g, todo, &shared, &separate);
        /* trunks whose copies are all saved already would not run again: an upper bound */
        if (g->use_trunks)
            printf("trunk-and-branch: %.0f tokens instead of %.0f (%zu trunk%s; %.1f%% saved)\n", shared, separate,
                   g->n_trunks, g->n_trunks == 1 ? "" : "s", separate > 0 ? 100.0 * (1 - shared / separate) : 0.0);
    }
    free(todo);
    return st ? cli_report(st, err) : 0;
}

/* --threads and --slurm-cpus become the trainer's --threads: its range, from its table. */
static qp_status parse_threads(const char *v, const char *what, int *out, qp_error *err)
{
    const train_option *t = train_option_find("--threads");
    long n;
    qp_status st = qp_parse_long(v, what, (long)t->lo, (long)t->hi, &n, err);
    if (!st) *out = (int)n;
    return st;
}

/* --emit slurm: the job-array script, to --script or stdout. */
static int emit_slurm(const sweep_grid *g, const sweep_options *o, sweep_slurm_options *so, const char *grid_path,
                      const char *script, int quiet, qp_error *err)
{
    char exe[PATH_MAX], cwd[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || !getcwd(cwd, sizeof cwd))
        return cli_report(qp_fail(err, QP_ERR_IO, "cannot find this program's path or the current directory"), err);
    exe[n] = 0;
    so->qatplan = exe;
    so->workdir = cwd;
    so->grid_path = grid_path;
    so->runs_path = o->runs_path;
    so->law_out = o->law_out;
    so->report_path = o->report_path;
    so->fit_form = o->fit_form;
    /* the jobs run what this sweep would run here: a node need not share this environment */
    so->train_cmd = o->train_cmd;
    so->fit_cmd = o->fit_cmd;
    so->threads = o->threads;
    so->run_timeout = o->run_timeout;
    so->no_state = !o->use_state;
    so->no_fit = !o->fit;
    char *text = NULL;
    qp_status st = sweep_emit_slurm(g, so, &text, err);
    if (!st && script) st = qp_write_file_atomic(script, text, strlen(text), err);
    else if (!st) fputs(text, stdout);
    if (!st && script && !quiet)
        fprintf(stderr, "qatplan: wrote %s (%zu array tasks); submit with: bash %s\n", script, g->n, script);
    free(text);
    return cli_report(st, err);
}

/* Run the missing points, then the summary; exit 1 when some run failed without a record. */
static int run_all(const sweep_grid *g, const sweep_options *o, int quiet, qp_error *err)
{
    sweep_summary sum;
    qp_status st = sweep_run(g, o, &sum, err);
    if (!quiet && (!st || st == QP_ERR_INTERRUPTED)) {
        fprintf(stderr, "sweep: %zu runs: %zu recorded before, %zu ok, %zu diverged, %zu failed", sum.total,
                sum.done_before, sum.ok, sum.diverged, sum.failed);
        if (sum.busy) fprintf(stderr, ", %zu run by another process", sum.busy);
        fprintf(stderr, "\n");
        if (g->use_trunks)
            fprintf(stderr, "sweep: trunk-and-branch: %zu trunk%s run (%zu failed); trained %.0f tokens instead of %.0f\n",
                    sum.trunks_ran, sum.trunks_ran == 1 ? "" : "s", sum.trunks_failed, sum.tokens_trained,
                    sum.tokens_separate);
        if (o->fit && o->only_index < 0 && o->only_trunk < 0 && !st) {
            if (sum.fit_msg[0]) fprintf(stderr, "sweep: law not refitted: %s\n", sum.fit_msg);
            else fprintf(stderr, "sweep: law %s, report %s\n", o->law_out, o->report_path);
        }
    }
    int rc = cli_report(st, err);
    if (!rc && sum.failed) {
        fprintf(stderr, "qatplan: %zu run(s) failed without a record (logs in %s.sweep/); rerun the same command to retry them\n",
                sum.failed, o->runs_path);
        rc = 1;
    }
    if (!rc && sum.trunks_failed) {
        fprintf(stderr, "qatplan: %zu trunk(s) failed (logs in %s.sweep/); rerun the same command to retry them\n",
                sum.trunks_failed, o->runs_path);
        rc = 1;
    }
    return rc;
}

/* The law form a sweep refits: chinchilla, qat or fraction (a penalty is fitted afterwards). */
static qp_status parse_fit_form(const char *s, data_law_form *form, qp_error *err)
{
    qp_status st = data_law_form_parse(s, form, err);
    if (!st && (*form == DATA_LAW_PENALTY || *form == DATA_LAW_EFFICIENCY))
        st = qp_fail(err, QP_ERR_USAGE, "a sweep refits chinchilla, qat or fraction laws; fit a %s law afterwards "
                                        "with 'qatplan fit --form %s RUNS'", data_law_form_name(*form),
                     data_law_form_name(*form));
    return st;
}

/* One `--slurm-arg`: a long sbatch option on one line, into args[*n] (room for max). */
static qp_status add_slurm_arg(const char **args, size_t *n, size_t max, const char *arg, qp_error *err)
{
    if (*n == max)
        return qp_fail(err, QP_ERR_USAGE, "more than %zu --slurm-arg options: put the rest in the script by hand", max);
    if (strncmp(arg, "--", 2) || !arg[2] || strpbrk(arg, "\n\r"))
        return qp_fail(err, QP_ERR_USAGE,
                       "--slurm-arg '%s': give one long sbatch option on one line, e.g. --slurm-arg --gres=gpu:1",
                       strpbrk(arg, "\n\r") ? "(has a newline)" : arg);
    args[(*n)++] = arg;
    return QP_OK;
}

/* What the command line asked for, before the grid is read. */
typedef struct {
    sweep_options o;
    sweep_slurm_options so;
    const char *sargs[64];
    const char *emit, *script, *law, *report, *grid_path;
    int dry, refit_only, quiet, form_given, help;
} sweep_cli;

static qp_status sweep_parse_args(int argc, char **argv, sweep_cli *a, qp_error *err)
{
    enum { O_JOBS = 256, O_THREADS, O_REFIT, O_LAW, O_REPORT, O_FORM, O_NOFIT, O_TIMEOUT, O_PROGRESS, O_NOSTATE, O_DRY, O_ONLY,
           O_REFIT_ONLY, O_EMIT, O_SCRIPT, O_SCPUS, O_STIME, O_SPART, O_SMAX, O_TRAIN, O_FIT, O_SARG, O_ONLY_TRUNK };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},  {"jobs", required_argument, 0, O_JOBS},
        {"threads", required_argument, 0, O_THREADS}, {"refit-every", required_argument, 0, O_REFIT},
        {"law-out", required_argument, 0, O_LAW}, {"report", required_argument, 0, O_REPORT},
        {"fit-form", required_argument, 0, O_FORM}, {"no-fit", no_argument, 0, O_NOFIT},
        {"run-timeout", required_argument, 0, O_TIMEOUT},
        {"progress-every", required_argument, 0, O_PROGRESS}, {"no-state", no_argument, 0, O_NOSTATE},
        {"dry-run", no_argument, 0, O_DRY},     {"only-index", required_argument, 0, O_ONLY},
        {"only-trunk", required_argument, 0, O_ONLY_TRUNK},
        {"refit-only", no_argument, 0, O_REFIT_ONLY}, {"emit", required_argument, 0, O_EMIT},
        {"script", required_argument, 0, O_SCRIPT}, {"slurm-cpus", required_argument, 0, O_SCPUS},
        {"slurm-time", required_argument, 0, O_STIME}, {"slurm-partition", required_argument, 0, O_SPART},
        {"slurm-max-parallel", required_argument, 0, O_SMAX}, {"train-cmd", required_argument, 0, O_TRAIN},
        {"fit-cmd", required_argument, 0, O_FIT}, {"slurm-arg", required_argument, 0, O_SARG},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    sweep_options *o = &a->o;
    sweep_slurm_options *so = &a->so;
    qp_status st = QP_OK;
    long v;
    optind = 1;
    opterr = 0;
    int c;
    while (!st && !a->help && (c = getopt_long(argc, argv, ":o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o->runs_path = optarg; break;
        case O_JOBS: st = qp_parse_long(optarg, "--jobs", 1, 1024, &v, err); o->jobs = (int)v; break;
        case O_THREADS: st = parse_threads(optarg, "--threads", &o->threads, err); break;
        case O_REFIT: st = qp_parse_long(optarg, "--refit-every", 0, LONG_MAX, &v, err); o->refit_every = (int)(v > 1 << 30 ? 1 << 30 : v); break;
        case O_LAW: a->law = optarg; break;
        case O_REPORT: a->report = optarg; break;
        case O_FORM: st = parse_fit_form(optarg, &o->fit_form, err), a->form_given = 1; break;
        case O_NOFIT: o->fit = 0; break;
        case O_TIMEOUT: st = qp_parse_real(optarg, "--run-timeout (seconds)", 1e-3, 1e9, &o->run_timeout, err); break;
        case O_PROGRESS:
            st = qp_parse_real(optarg, "--progress-every (seconds)", 0, 1e9, &o->progress_every, err);
            so->progress_every = optarg; /* parsed: a plain number, safe in the script */
            break;
        case O_NOSTATE: o->use_state = 0; break;
        case O_DRY: a->dry = 1; break;
        case O_ONLY: st = qp_parse_long(optarg, "--only-index", 0, 1L << 30, &o->only_index, err); break;
        case O_ONLY_TRUNK: st = qp_parse_long(optarg, "--only-trunk", 0, 1L << 30, &o->only_trunk, err); break;
        case O_REFIT_ONLY: a->refit_only = 1; break;
        case O_EMIT:
            a->emit = optarg;
            if (strcmp(a->emit, "slurm")) st = qp_fail(err, QP_ERR_USAGE, "--emit %s: only 'slurm' is supported", a->emit);
            break;
        case O_SCRIPT: a->script = optarg; break;
        case O_SCPUS: st = parse_threads(optarg, "--slurm-cpus", &so->cpus_per_task, err); break;
        case O_STIME: so->time_limit = optarg; break;
        case O_SPART: so->partition = optarg; break;
        case O_SMAX: st = qp_parse_long(optarg, "--slurm-max-parallel", 1, 1 << 20, &v, err); so->max_parallel = (int)v; break;
        case O_TRAIN: o->train_cmd = optarg[0] ? optarg : NULL; break;
        case O_FIT: o->fit_cmd = optarg[0] ? optarg : NULL; break;
        case O_SARG: st = add_slurm_arg(a->sargs, &so->n_sbatch_args, sizeof a->sargs / sizeof a->sargs[0], optarg, err); break;
        case 'q': a->quiet = 1; break;
        case 'h': a->help = 1; break;
        case ':': st = qp_fail(err, QP_ERR_USAGE, "option '%s' needs a value: see 'qatplan sweep --help'", argv[optind - 1]); break;
        default: st = qp_fail(err, QP_ERR_USAGE, "unknown option '%s': see 'qatplan sweep --help'", argv[optind - 1]); break;
        }
    }
    if (st || a->help) return st;
    if (optind >= argc) return qp_fail(err, QP_ERR_USAGE, "no grid: give GRID.json (format in docs/sweep.md)");
    if (optind + 1 < argc) return qp_fail(err, QP_ERR_USAGE, "unexpected argument '%s': give one grid file", argv[optind + 1]);
    a->grid_path = argv[optind];
    if (!o->runs_path) return qp_fail(err, QP_ERR_USAGE, "no results file: give -o RUNS.jsonl");
    if (a->refit_only + a->dry + (a->emit != NULL) > 1)
        return qp_fail(err, QP_ERR_USAGE, "--dry-run, --refit-only and --emit exclude each other");
    if (a->refit_only && o->only_index >= 0)
        return qp_fail(err, QP_ERR_USAGE, "--refit-only and --only-index exclude each other");
    if (o->only_trunk >= 0 && (o->only_index >= 0 || a->refit_only))
        return qp_fail(err, QP_ERR_USAGE, "--only-trunk excludes --only-index and --refit-only");
    return QP_OK;
}

/* The grid read and checked: a dry run, a Slurm script, a refit or the sweep itself. */
static int sweep_dispatch(sweep_cli *a, sweep_grid *g, qp_error *err)
{
    sweep_options *o = &a->o;
    /* a refit needs no trainer; everything else needs one that can build the grid's models */
    qp_status st = a->refit_only ? QP_OK : sweep_grid_check_trainer(g, o->train_cmd, err);
    if (st) return cli_report(st, err);
    if (!a->form_given && !g->has_quantized) o->fit_form = DATA_LAW_CHINCHILLA;
    o->log = a->quiet ? NULL : stderr;
    o->tty = !a->quiet && isatty(2);
    if (a->dry) return dry_run(g, o, err);
    if (a->emit) return emit_slurm(g, o, &a->so, a->grid_path, a->script, a->quiet, err);
    if (a->refit_only) {
        sweep_summary sum = {0};
        st = sweep_refit(g, o, &sum, err);
        if (!st && !a->quiet) fprintf(stderr, "qatplan: wrote %s and %s\n", o->law_out, o->report_path);
        return cli_report(st, err);
    }
    return run_all(g, o, a->quiet, err);
}

int cmd_sweep(int argc, char **argv)
{
    sweep_cli a = {0};
    sweep_options_init(&a.o);
    a.o.train_cmd = getenv("QP_SWEEP_TRAIN_CMD");
    a.o.fit_cmd = getenv("QP_SWEEP_FIT_CMD");
    if (a.o.train_cmd && !a.o.train_cmd[0]) a.o.train_cmd = NULL;
    if (a.o.fit_cmd && !a.o.fit_cmd[0]) a.o.fit_cmd = NULL;
    a.so.cpus_per_task = 2;
    a.so.sbatch_args = a.sargs;
    qp_error err = {0};
    qp_status st = sweep_parse_args(argc, argv, &a, &err);
    if (a.help && !st) {
        sweep_help(stdout);
        return 0;
    }
    if (st) return cli_report(st, &err);
    char *law_d = a.law ? NULL : derived(a.o.runs_path, ".law.json");
    char *rep_d = a.report ? NULL : derived(a.o.runs_path, ".report.txt");
    a.o.law_out = a.law ? a.law : law_d;
    a.o.report_path = a.report ? a.report : rep_d;
    int rc;
    sweep_grid g;
    if (!a.o.law_out || !a.o.report_path) {
        rc = cli_report(qp_fail(&err, QP_ERR_NOMEM, "out of memory"), &err);
    } else if ((st = check_paths(a.grid_path, &a.o, a.script, a.dry ? 'd' : a.emit ? 'e' : a.refit_only ? 'r' : 0, &err)) ||
               (st = sweep_grid_read(a.grid_path, &g, &err))) {
        rc = cli_report(st, &err);
    } else {
        rc = sweep_dispatch(&a, &g, &err);
        sweep_grid_free(&g);
    }
    free(law_d);
    free(rep_d);
    return rc;
}
