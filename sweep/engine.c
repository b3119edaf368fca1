/* The sweep engine: trainers as child processes (a crashing run cannot take the sweep
 * down), at most `jobs` at once, a per-run flock so concurrent sweeps over the same results
 * file never run a point twice, refits as a child process too, and a progress line. */
#include "sweep.h"
#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "law.h"

void sweep_options_init(sweep_options *o)
{
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->fit = 1;
    o->fit_form = DATA_LAW_QAT;
    o->self_exe = "/proc/self/exe";
    o->only_index = -1;
    o->only_trunk = -1;
    o->use_state = 1;
    o->progress_every = 60;
}

/* ---- signals ----------------------------------------------------------- */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

/* ---- paths ------------------------------------------------------------- */

typedef struct {
    char dir[4096]; /* RUNS.sweep: locks, logs, resumable states, the fit's input */
} workdir;

static qp_status workdir_make(workdir *w, const char *runs_path, qp_error *err)
{
    if (snprintf(w->dir, sizeof w->dir, "%s.sweep", runs_path) >= (int)sizeof w->dir)
        return qp_fail(err, QP_ERR_INPUT, "results path too long");
    if (mkdir(w->dir, 0777) != 0 && errno == ENOENT)
        return qp_fail(err, QP_ERR_IO, "%s: the results file's directory does not exist: create it first", runs_path);
    if (mkdir(w->dir, 0777) != 0 && errno != EEXIST)
        return qp_fail(err, QP_ERR_IO, "%s: cannot create the sweep's work directory: %s", w->dir, strerror(errno));
    return QP_OK;
}

static void wpath(const workdir *w, const char *id, const char *ext, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s%s", w->dir, id, ext);
}

/* ---- child processes --------------------------------------------------- */

/* Start `prefix args...` (prefix run by /bin/sh so it may hold quoting and options) or
 * `self sub args...`; stdout and stderr appended to log_path; keep_fd survives the exec (the
 * run's lock, so it is held while the trainer lives even if the sweep dies). A sweep killed
 * by SIGKILL takes its trainers with it (they save their state on SIGTERM), so a restarted
 * sweep never runs beside an orphan of the old one. */
static pid_t spawn(const char *prefix, const char *self, const char *sub, char **args, const char *log_path,
                   int keep_fd, qp_error *err)
{
    int n = 0;
    while (args[n]) n++;
    char **argv = calloc((size_t)n + 6, sizeof *argv);
    if (!argv) {
        qp_fail(err, QP_ERR_NOMEM, "out of memory");
        return -1;
    }
    char script[4096];
    int k = 0;
    if (prefix) {
        snprintf(script, sizeof script, "exec %s \"$@\"", prefix);
        argv[k++] = "/bin/sh";
        argv[k++] = "-c";
        argv[k++] = script;
        argv[k++] = (char *)"qatplan-sweep-child";
    } else {
        argv[k++] = (char *)self;
        argv[k++] = (char *)sub;
    }
    for (int i = 0; i < n; i++) argv[k++] = args[i];
    argv[k] = NULL;
    qp_spawn_opts so = {log_path, 1, keep_fd, 1, "qatplan sweep"};
    pid_t pid = qp_spawn(argv, &so, err);
    free(argv);
    return pid;
}

/* ---- progress ---------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int lock_fd;
    size_t point;    /* index into g->points (a point's job) */
    const sweep_point *p; /* the point, or the trunk's run */
    long trunk;      /* a trunk's job: its index in g->trunks; -1 = a point's */
    double t_start;
    double t_term;   /* when SIGTERM was sent for a timeout; 0 = not yet */
    int timed_out;
    long log_size;   /* of the run's log when last read for progress; -1 = never */
    int have_prog;
    sweep_run_progress prog; /* from the log's last step line */
} job;

typedef struct {
    const sweep_grid *g;
    const sweep_options *o;
    sweep_summary *sum;
    workdir w;
    double t0;
    sweep_eta_sample *hist;      /* runs recorded here, then (while the ETA is computed) those in flight */
    size_t n_hist;
    double todo_cost;            /* of runs not started yet */
    size_t finished_here;        /* runs that ended here (any outcome) */
    size_t to_run;               /* points pending when the sweep started */
    int bar_shown;
    double last_line;            /* when the last progress line was written (logs that are not a terminal) */
} progress;

/* A token's cost beyond its 6N FLOPs (attention over the context, norms, the byte softmax, the
 * data path), in parameters: the trainer's one-thread rates (233K, 186K, 86K, 61K tokens/s at
 * 7.5K, 21K, 68K, 117K parameters) follow 1 / (N + 30K) within 7%, while N alone made the ETA of
 * a sweep of small and larger models several times too long. */
#define SWEEP_TOKEN_OVERHEAD_PARAMS 30000.0

/* (N + the per-token overhead) x the tokens the run trains (a branch: from its branch point on). */
static double point_cost(const sweep_point *p)
{
    return (p->n_params + SWEEP_TOKEN_OVERHEAD_PARAMS) * (p->tokens - p->branch_tokens);
}

static void fmt_secs(double s, char *buf, size_t n)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "--");
        return;
    }
    long t = lround(s);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* A running trainer's progress: the last step line of its log, re-read when the log grew. */
static void poll_job(const progress *pr, job *jb)
{
    char logp[4300];
    wpath(&pr->w, jb->p->run_id, ".log", logp, sizeof logp);
    struct stat sb;
    if (stat(logp, &sb) != 0 || (long)sb.st_size == jb->log_size) return;
    FILE *f = fopen(logp, "rb");
    if (!f) return;
    char buf[4096];
    long off = sb.st_size > (off_t)sizeof buf ? (long)sb.st_size - (long)sizeof buf : 0;
    size_t n = fseek(f, off, SEEK_SET) == 0 ? fread(buf, 1, sizeof buf, f) : 0;
    fclose(f);
    jb->log_size = (long)sb.st_size;
    if (sweep_parse_progress(buf, n, &jb->prog)) jb->have_prog = 1;
}

/* The runs in flight join the history for the estimate; progress from their logs. */
static double eta(progress *pr, job *jobs, int njobs, double *lo, double *hi)
{
    double now = qp_now();
    for (int i = 0; i < njobs; i++) {
        poll_job(pr, &jobs[i]);
        double work = point_cost(jobs[i].p);
        double frac = jobs[i].have_prog ? (double)jobs[i].prog.step / (double)jobs[i].prog.total : 0;
        pr->hist[pr->n_hist + (size_t)i] = (sweep_eta_sample){work * frac, work * (1 - frac), now - jobs[i].t_start};
    }
    size_t busy = pr->finished_here + (size_t)njobs; /* launched (not skipped) so far */
    size_t pending = pr->to_run > busy ? pr->to_run - busy : 0;
    return sweep_eta_estimate(pr->hist, pr->n_hist + (size_t)njobs, pr->todo_cost, pending, pr->o->jobs, lo, hi);
}

/* "12m03s (9m40s-15m10s)", the range only when it differs; "unknown" until measured. */
static void fmt_eta(progress *pr, job *jobs, int njobs, char *buf, size_t n)
{
    double lo, hi, mid = eta(pr, jobs, njobs, &lo, &hi);
    char a[32], b[32], c[32];
    if (!isfinite(mid)) {
        snprintf(buf, n, "unknown");
        return;
    }
    fmt_secs(mid, a, sizeof a);
    fmt_secs(lo, b, sizeof b);
    fmt_secs(hi, c, sizeof c);
    if (strcmp(b, c) == 0) snprintf(buf, n, "%s", a);
    else snprintf(buf, n, "%s (%s-%s)", a, b, c);
}

static void clear_bar(progress *pr)
{
    if (pr->o->log && pr->o->tty && pr->bar_shown) {
        fputs("\r\033[K", pr->o->log);
        pr->bar_shown = 0;
    }
}

static void draw_bar(progress *pr, job *jobs, int njobs)
{
    FILE *f = pr->o->log;
    if (!f || !pr->o->tty) return;
    size_t total = pr->to_run ? pr->to_run : 1;
    int width = 24, filled = (int)((double)pr->finished_here / (double)total * width + 0.5);
    char bar[64], el[32], et[96];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '-';
    bar[width] = 0;
    fmt_secs(qp_now() - pr->t0, el, sizeof el);
    fmt_eta(pr, jobs, njobs, et, sizeof et);
    fprintf(f, "\r\033[Ksweep [%s] %zu/%zu runs  %d running  %zu diverged  %zu failed  %s elapsed  ETA %s", bar,
            pr->finished_here, pr->to_run, njobs, pr->sum->diverged, pr->sum->failed, el, et);
    for (int i = 0; i < njobs; i++)
        if (jobs[i].have_prog)
            fprintf(f, "  | %s step %ld/%ld loss %.4f", jobs[i].p->run_id, jobs[i].prog.step,
                    jobs[i].prog.total, jobs[i].prog.loss);
    fflush(f);
    pr->bar_shown = 1;
}

/* A log that is not a terminal (a file, a Slurm output, a pipe) gets a plain line now and
 * then instead of the bar: the runs in flight with their step, loss and elapsed time. */
static void progress_line(progress *pr, job *jobs, int njobs)
{
    FILE *f = pr->o->log;
    double now = qp_now();
    if (!f || pr->o->tty || !(pr->o->progress_every > 0) || njobs == 0 || now - pr->last_line < pr->o->progress_every)
        return;
    pr->last_line = now;
    char el[32], et[96];
    fmt_secs(now - pr->t0, el, sizeof el);
    fmt_eta(pr, jobs, njobs, et, sizeof et);
    fprintf(f, "sweep: %zu/%zu runs, %d running, %s elapsed, ETA %s", pr->finished_here, pr->to_run, njobs, el, et);
    for (int i = 0; i < njobs; i++) {
        char rt[32];
        fmt_secs(now - jobs[i].t_start, rt, sizeof rt);
        fprintf(f, "; %s ", jobs[i].p->run_id);
        if (jobs[i].have_prog)
            fprintf(f, "step %ld/%ld loss %.4f (%s)", jobs[i].prog.step, jobs[i].prog.total, jobs[i].prog.loss, rt);
        else
            fprintf(f, "started %s ago", rt);
    }
    fputc('\n', f);
    fflush(f);
}

static void say(progress *pr, job *jobs, int njobs, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void say(progress *pr, job *jobs, int njobs, const char *fmt, ...)
{
    FILE *f = pr->o->log;
    if (!f) return;
    clear_bar(pr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (!pr->o->tty) {
        char et[96];
        fmt_eta(pr, jobs, njobs, et, sizeof et);
        fprintf(f, "  [%zu/%zu, ETA %s]", pr->finished_here, pr->to_run, et);
    }
    fputc('\n', f);
    fflush(f);
    draw_bar(pr, jobs, njobs);
}

/* ---- refit ------------------------------------------------------------- */

static void fit_input_path(const workdir *w, char *buf, size_t n) { snprintf(buf, n, "%s/fit-input.jsonl", w->dir); }

/* The fit gets only whole, valid records: a torn line in the shared file must not stop it. */
static qp_status write_fit_input(const sweep_results *res, const char *path, size_t *n_used, qp_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    *n_used = 0;
    for (size_t i = 0; i < res->runs.n; i++) {
        char *line = data_run_to_json(&res->runs.runs[i]);
        if (!line) {
            fclose(m);
            free(text);
            return qp_fail(err, QP_ERR_NOMEM, "out of memory");
        }
        fprintf(m, "%s\n", line);
        free(line);
        if (res->runs.runs[i].status == DATA_RUN_OK) (*n_used)++;
    }
    fclose(m);
    qp_status st = qp_write_file_atomic(path, text ? text : "", len, err);
    free(text);
    return st;
}

static pid_t start_fit(const sweep_options *o, const workdir *w, size_t *n_used, qp_error *err)
{
    sweep_results res;
    qp_status st = sweep_results_read(o->runs_path, &res, err);
    if (st) return -1;
    char in[4200], rep[4200], logp[4200];
    fit_input_path(w, in, sizeof in);
    st = write_fit_input(&res, in, n_used, err);
    sweep_results_free(&res);
    if (st) return -1;
    snprintf(rep, sizeof rep, "%s/fit-report.txt", w->dir);
    snprintf(logp, sizeof logp, "%s/fit.log", w->dir);
    unlink(logp); /* the log of the latest fit only */
    char *args[] = {in, "-o", (char *)o->law_out, "--form", (char *)data_law_form_name(o->fit_form), "--report", rep, NULL};
    return spawn(o->fit_cmd, o->self_exe, "fit", args, logp, -1, err);
}

/* After a fit ends: read the law (if the fit made one) and write the report. */
static void finish_fit(const sweep_grid *g, const sweep_options *o, const workdir *w, int wstatus, size_t n_used,
                       sweep_summary *sum)
{
    char logp[4200], tail[400], how[128];
    snprintf(logp, sizeof logp, "%s/fit.log", w->dir);
    data_law law;
    int have = 0;
    qp_error e = {0};
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
        if (data_law_read(o->law_out, &law, &e) == QP_OK) {
            have = 1;
            sum->fits_ok++;
            sum->fit_msg[0] = 0;
        } else {
            sum->fits_failed++;
            snprintf(sum->fit_msg, sizeof sum->fit_msg, "the fitter exited 0 but its law is unreadable: %s", e.msg);
        }
    } else {
        sum->fits_failed++;
        qp_log_tail(logp, tail, sizeof tail);
        snprintf(sum->fit_msg, sizeof sum->fit_msg, "no law from %zu ok runs yet (fitter %s: %s)", n_used,
                 qp_wait_status_text(wstatus, how, sizeof how), tail[0] ? tail : "no message");
    }
    if (o->report_path) {
        sweep_results res;
        if (sweep_results_read(o->runs_path, &res, &e) == QP_OK) {
            sweep_write_report(o->report_path, g, &res, have ? &law : NULL, sum->fit_msg, &e);
            sweep_results_free(&res);
        }
    }
    if (have) data_law_free(&law);
}

qp_status sweep_refit(const sweep_grid *g, const sweep_options *o, sweep_summary *sum, qp_error *err)
{
    workdir w;
    qp_status st = workdir_make(&w, o->runs_path, err);
    if (st) return st;
    size_t n_used = 0;
    pid_t pid = start_fit(o, &w, &n_used, err);
    if (pid < 0) return err && err->status ? err->status : QP_ERR_IO;
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return qp_fail(err, QP_ERR_IO, "waiting for the fitter: %s", strerror(errno));
    finish_fit(g, o, &w, ws, n_used, sum);
    if (sum->fit_msg[0]) return qp_fail(err, QP_ERR_UNIDENTIFIED, "%s", sum->fit_msg);
    return QP_OK;
}

/* ---- the run loop ------------------------------------------------------ */

static int cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Try to take point i: its lock (another process may be running it) and a fresh look at the
 * results file (it may have finished since we read it). Returns the locked fd, -1 when the
 * point is not ours to run (*why says busy or done), -2 on error. */
static int claim(const workdir *w, const sweep_options *o, const sweep_point *p, int *why, qp_error *err)
{
    char lp[4300];
    wpath(w, p->run_id, ".lock", lp, sizeof lp);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        qp_fail(err, QP_ERR_IO, "%s: cannot open the run's lock file: %s", lp, strerror(errno));
        return -2;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        *why = 1; /* busy */
        return -1;
    }
    sweep_results res;
    if (sweep_results_read(o->runs_path, &res, err)) {
        close(fd);
        return -2;
    }
    int done = sweep_results_find(&res, p->run_id) != NULL;
    sweep_results_free(&res);
    if (done) {
        close(fd);
        *why = 2;
        return -1;
    }
    return fd;
}

/* One sweep in progress: the points still to run, the trainers running, and the refit. */
typedef struct {
    const sweep_grid *g;
    const sweep_options *o;
    sweep_summary *sum;
    progress pr;
    size_t *todo, ntodo, next; /* points pending; `next` of them started (in order, but for
                                * branches waiting for their trunk) */
    unsigned char *started;    /* per todo entry */
    unsigned char *tstate;     /* per trunk: T_IDLE ... */
    job *jobs;
    int njobs, jobs_max, threads;
    int do_fit;         /* refits are wanted at all */
    pid_t fit_pid;      /* the running refit; -1 = none */
    size_t fit_used;    /* ok runs the running refit was given */
    int fit_pending;    /* refit_every runs have finished since the last refit */
    size_t since_fit;
} sweep_loop;

/* ---- the run loop: which points to run --------------------------------- */

/* ---- trunks ------------------------------------------------------------ */

enum { T_IDLE = 0, T_PENDING, T_RUNNING, T_DONE, T_FAILED, T_BUSY };

static void trunk_state_path(const workdir *w, const sweep_trunk *t, char *buf, size_t n)
{
    wpath(w, t->p.run_id, ".state", buf, n);
}

/* The trunk's saved state that point p starts from. */
static void branch_copy_path(const workdir *w, const sweep_grid *g, const sweep_point *p, char *buf, size_t n)
{
    char sp[4300];
    trunk_state_path(w, &g->trunks[p->trunk - 1], sp, sizeof sp);
    sweep_trunk_copy_path(sp, p->branch_tokens, buf, n);
}

/* Trunks to run: those whose copy some pending point lacks (with --only-trunk, that trunk
 * only, for any point of the grid not recorded). */
static qp_status plan_trunks(sweep_loop *L, const sweep_results *res, qp_error *err)
{
    const sweep_grid *g = L->g;
    if (!g->n_trunks) return QP_OK;
    if (!(L->tstate = calloc(g->n_trunks, 1))) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->n; i++) {
        const sweep_point *p = &g->points[i];
        char cp[4400];
        if (!p->trunk || L->tstate[p->trunk - 1] == T_PENDING) continue;
        if (L->o->only_trunk >= 0 ? p->trunk - 1 != L->o->only_trunk || sweep_results_find(res, p->run_id)
                                  : (L->o->only_index >= 0 && (long)i != L->o->only_index) ||
                                        sweep_results_find(res, p->run_id))
            continue;
        branch_copy_path(&L->pr.w, g, p, cp, sizeof cp);
        if (access(cp, F_OK) != 0) L->tstate[p->trunk - 1] = T_PENDING;
    }
    for (size_t t = 0; t < g->n_trunks; t++)
        if (L->tstate[t] == T_PENDING) {
            L->pr.to_run++;
            L->pr.todo_cost += point_cost(&g->trunks[t].p);
        }
    return QP_OK;
}

/* The points not in the results file yet (only --only-index's when given), and the header. */
static qp_status plan_todo(sweep_loop *L, qp_error *err)
{
    const sweep_grid *g = L->g;
    const sweep_options *o = L->o;
    sweep_summary *sum = L->sum;
    sweep_results res;
    qp_status st = sweep_results_read(o->runs_path, &res, err);
    if (st) return st;
    sum->bad_lines = res.n_bad_lines;
    if (res.n_bad_lines && o->log)
        fprintf(o->log, "sweep: warning: %zu unreadable line(s) in %s ignored; first: %s\n", res.n_bad_lines,
                o->runs_path, res.first_bad_msg);
    L->todo = malloc((g->n ? g->n : 1) * sizeof *L->todo);
    if (!L->todo) {
        sweep_results_free(&res);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < g->n; i++) {
        if ((o->only_index >= 0 && (long)i != o->only_index) || o->only_trunk >= 0) continue;
        sum->total++;
        if (sweep_results_find(&res, g->points[i].run_id)) sum->done_before++;
        else {
            L->todo[L->ntodo++] = i;
            L->pr.todo_cost += point_cost(&g->points[i]);
        }
    }
    L->pr.to_run = L->ntodo;
    if (!(L->started = calloc(L->ntodo ? L->ntodo : 1, 1))) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if (!st) st = plan_trunks(L, &res, err);
    sweep_results_free(&res);
    return st;
}

/* Threads per trainer: --threads, else the grid's, else the cores shared among the jobs. */
static int threads_per_run(const sweep_grid *g, const sweep_options *o, int jobs_max)
{
    int threads = o->threads > 0 ? o->threads : g->threads > 0 ? g->threads : (cores() / jobs_max > 0 ? cores() / jobs_max : 1);
    int hi = (int)train_option_find("--threads")->hi;
    return threads > hi ? hi : threads;
}

/* ---- the run loop: children -------------------------------------------- */

/* Two more options at the end of a NULL-terminated argv (sweep_argv_free frees all). */
static qp_status argv_add(char ***argv, const char *k, const char *v, qp_error *err)
{
    size_t n = 0;
    while ((*argv)[n]) n++;
    char **b = realloc(*argv, (n + 3) * sizeof *b);
    if (!b) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    *argv = b;
    b[n] = strdup(k);
    b[n + 1] = b[n] ? strdup(v) : NULL;
    b[n + 2] = NULL;
    return b[n] && b[n + 1] ? QP_OK : qp_fail(err, QP_ERR_NOMEM, "out of memory");
}

/* Start trunk t (its lock held; another process running it: its branches are skipped). */
static qp_status launch_trunk(sweep_loop *L, size_t t, qp_error *err)
{
    const sweep_trunk *tr = &L->g->trunks[t];
    char lp[4300], statep[4300], logp[4300], out[4300];
    wpath(&L->pr.w, tr->p.run_id, ".lock", lp, sizeof lp);
    trunk_state_path(&L->pr.w, tr, statep, sizeof statep);
    wpath(&L->pr.w, tr->p.run_id, ".log", logp, sizeof logp);
    wpath(&L->pr.w, "trunks", ".jsonl", out, sizeof out); /* trunk records: not the grid's results */
    L->pr.todo_cost -= point_cost(&tr->p);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return qp_fail(err, QP_ERR_IO, "%s: cannot open the trunk's lock file: %s", lp, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        L->tstate[t] = T_BUSY;
        L->pr.to_run--;
        say(&L->pr, L->jobs, L->njobs, "skip  trunk %s: another process is running it (its branches wait for it)",
            tr->p.run_id);
        return QP_OK;
    }
    int resume = access(statep, F_OK) == 0; /* a trunk always keeps its state: the branches need its copies */
    char **args;
    qp_status st = sweep_trunk_args(L->g, tr, out, statep, resume, L->threads, &args, err);
    pid_t pid = st ? -1 : spawn(L->o->train_cmd, L->o->self_exe, "train", args, logp, fd, err);
    if (!st) sweep_argv_free(args);
    if (pid < 0) {
        close(fd);
        return err && err->status ? err->status : QP_ERR_IO;
    }
    L->jobs[L->njobs++] = (job){pid, fd, 0, &tr->p, (long)t, qp_now(), 0, 0, -1, 0, {0, 0, 0}};
    L->tstate[t] = T_RUNNING;
    L->sum->trunks_ran++;
    L->sum->tokens_trained += tr->p.tokens;
    say(&L->pr, L->jobs, L->njobs, "start trunk %s%s (N=%.3g, D=%.3g tokens, %d branch point%s)", tr->p.run_id,
        resume ? " (resuming)" : "", tr->p.n_params, tr->p.tokens, tr->n_save, tr->n_save == 1 ? "" : "s");
    return QP_OK;
}

/* The next todo entry that may start: not started, its trunk (if any) no longer pending or
 * running. Trunks go first. Returns 0 when nothing can start now. */
static int next_ready(sweep_loop *L, long *trunk, size_t *entry)
{
    for (size_t t = 0; t < L->g->n_trunks; t++)
        if (L->tstate[t] == T_PENDING) {
            *trunk = (long)t;
            return 1;
        }
    *trunk = -1;
    for (size_t e = 0; e < L->ntodo; e++) {
        const sweep_point *p = &L->g->points[L->todo[e]];
        if (L->started[e] || (p->trunk && L->tstate[p->trunk - 1] == T_RUNNING)) continue;
        *entry = e;
        return 1;
    }
    return 0;
}

/* A branch whose trunk failed or is another process's: counted, not started. */
static int branch_blocked(sweep_loop *L, const sweep_point *p)
{
    int ts = p->trunk ? L->tstate[p->trunk - 1] : T_IDLE;
    if (ts != T_FAILED && ts != T_BUSY) return 0;
    const char *tid = L->g->trunks[p->trunk - 1].p.run_id;
    if (ts == T_BUSY) {
        L->pr.to_run--;
        L->sum->busy++;
        say(&L->pr, L->jobs, L->njobs, "skip  %s: another process is running its trunk %s", p->run_id, tid);
    } else {
        L->pr.finished_here++;
        L->sum->failed++;
        say(&L->pr, L->jobs, L->njobs, "FAILED %s: its trunk %s failed (log %s/%s.log)", p->run_id, tid, L->pr.w.dir, tid);
    }
    return 1;
}

/* Start trainers until jobs_max run or nothing can start; trunks first, each branch after its
 * trunk; points another process holds or has recorded meanwhile are skipped. */
static qp_status launch_runs(sweep_loop *L, qp_error *err)
{
    const sweep_options *o = L->o;
    long t;
    size_t e = 0;
    while (!g_stop && L->njobs < L->jobs_max && next_ready(L, &t, &e)) {
        qp_status st;
        if (t >= 0) {
            if ((st = launch_trunk(L, (size_t)t, err))) return st;
            continue;
        }
        const sweep_point *p = &L->g->points[L->todo[e]];
        L->pr.todo_cost -= point_cost(p);
        L->started[e] = 1;
        L->next++;
        if (branch_blocked(L, p)) continue;
        int why = 0;
        int fd = claim(&L->pr.w, o, p, &why, err);
        if (fd == -2) return err && err->status ? err->status : QP_ERR_IO;
        if (fd < 0) {
            L->pr.to_run--;
            if (why == 1) {
                L->sum->busy++;
                say(&L->pr, L->jobs, L->njobs, "skip  %s: another process is running it", p->run_id);
            } else {
                L->sum->done_before++;
                say(&L->pr, L->jobs, L->njobs, "skip  %s: recorded meanwhile by another process", p->run_id);
            }
            continue;
        }
        char statep[4300], logp[4300], cp[4400];
        wpath(&L->pr.w, p->run_id, ".state", statep, sizeof statep);
        wpath(&L->pr.w, p->run_id, ".log", logp, sizeof logp);
        int resume = o->use_state && access(statep, F_OK) == 0;
        char **args;
        st = sweep_point_args(L->g, p, o->runs_path, o->use_state ? statep : NULL, resume, L->threads, &args, err);
        if (!st && p->trunk) {
            branch_copy_path(&L->pr.w, L->g, p, cp, sizeof cp);
            if ((st = argv_add(&args, "--init", cp, err))) sweep_argv_free(args);
        }
        if (st) {
            close(fd);
            return st;
        }
        pid_t pid = spawn(o->train_cmd, o->self_exe, "train", args, logp, fd, err);
        sweep_argv_free(args);
        if (pid < 0) {
            close(fd);
            return err && err->status ? err->status : QP_ERR_IO;
        }
        L->jobs[L->njobs++] = (job){pid, fd, L->todo[e], p, -1, qp_now(), 0, 0, -1, 0, {0, 0, 0}};
        L->sum->ran++;
        L->sum->tokens_trained += p->tokens - p->branch_tokens;
        L->sum->tokens_separate += p->tokens;
        say(&L->pr, L->jobs, L->njobs, "start %s%s (N=%.3g, D=%.3g tokens%s%s)", p->run_id, resume ? " (resuming)" : "",
            p->n_params, p->tokens, p->trunk ? ", branching from " : "",
            p->trunk ? L->g->trunks[p->trunk - 1].p.run_id : "");
    }
    return QP_OK;
}

/* --run-timeout: SIGTERM when a run's time is up, SIGKILL 10 s later. */
static void enforce_timeouts(sweep_loop *L)
{
    double now = qp_now();
    for (int i = 0; i < L->njobs; i++) {
        job *jb = &L->jobs[i];
        if (L->o->run_timeout > 0 && !jb->t_term && now - jb->t_start > L->o->run_timeout) {
            kill(jb->pid, SIGTERM);
            jb->t_term = now;
            jb->timed_out = 1;
        } else if (jb->t_term && now - jb->t_term > 10) {
            kill(jb->pid, SIGKILL);
        }
    }
}

/* Stopping (signal or error): the trainers save their state on SIGTERM; SIGKILL after 30 s. */
static void stop_children(sweep_loop *L)
{
    if (L->njobs == 0 && L->fit_pid <= 0) return;
    for (int i = 0; i < L->njobs; i++) kill(L->jobs[i].pid, SIGTERM);
    if (L->fit_pid > 0) kill(L->fit_pid, SIGTERM);
    double t_kill = qp_now() + 30;
    while (L->njobs > 0 || L->fit_pid > 0) {
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid < 0) break;
        if (pid == 0) {
            if (qp_now() > t_kill) {
                for (int i = 0; i < L->njobs; i++) kill(L->jobs[i].pid, SIGKILL);
                if (L->fit_pid > 0) kill(L->fit_pid, SIGKILL);
            }
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (pid == L->fit_pid) L->fit_pid = -1;
        for (int i = 0; i < L->njobs; i++)
            if (L->jobs[i].pid == pid) {
                close(L->jobs[i].lock_fd);
                L->jobs[i] = L->jobs[--L->njobs];
                break;
            }
    }
}

/* ---- the run loop: progress -------------------------------------------- */

/* A recorded run's work and wall time feed the measured rate behind the ETA. */
static void progress_timed(progress *pr, double cost, double secs)
{
    pr->hist[pr->n_hist++] = (sweep_eta_sample){cost, 0, secs};
}

/* What a finished trainer left: a record (ok or diverged) or none (failed), said and counted. */
static void report_run(sweep_loop *L, const job *jb, const data_run *rec, int ws, double secs)
{
    const sweep_point *p = jb->p;
    sweep_summary *sum = L->sum;
    if (!rec) {
        char logp[4300], how[128], tail[400];
        wpath(&L->pr.w, p->run_id, ".log", logp, sizeof logp);
        sum->failed++;
        qp_log_tail(logp, tail, sizeof tail);
        say(&L->pr, L->jobs, L->njobs, "FAILED %s after %.0f s: %s%s, no record; log %s: %s", p->run_id, secs,
            jb->timed_out ? "timed out, " : "", qp_wait_status_text(ws, how, sizeof how), logp, tail[0] ? tail : "(empty)");
        return;
    }
    if (rec->status == DATA_RUN_DIVERGED) {
        sum->diverged++;
        say(&L->pr, L->jobs, L->njobs, "diverged %s (%.0f s): %s", p->run_id, secs, rec->reason[0] ? rec->reason : "no reason given");
    } else {
        sum->ok++;
        say(&L->pr, L->jobs, L->njobs, "done  %s loss %.4f (%.0f s)", p->run_id, rec->loss, secs);
    }
}

/* ---- the run loop: refit ----------------------------------------------- */

/* Points not started yet, or trunks still to start. */
static int work_left(const sweep_loop *L)
{
    for (size_t t = 0; t < L->g->n_trunks; t++)
        if (L->tstate[t] == T_PENDING) return 1;
    return L->next < L->ntodo;
}

/* A refit after every refit_every recorded runs, while runs are still to come (the last one
 * is the final refit's). A refit that cannot start is counted, not fatal. */
static void refit_if_due(sweep_loop *L)
{
    if (!(L->do_fit && L->fit_pending && L->fit_pid < 0 && (L->njobs > 0 || work_left(L)))) return;
    qp_error fe = {0};
    L->fit_pid = start_fit(L->o, &L->pr.w, &L->fit_used, &fe);
    L->fit_pending = 0;
    if (L->fit_pid < 0) {
        L->sum->fits_failed++;
        snprintf(L->sum->fit_msg, sizeof L->sum->fit_msg, "cannot start the fit: %s", fe.msg);
    } else {
        say(&L->pr, L->jobs, L->njobs, "refit %s from %zu ok runs", L->o->law_out, L->fit_used);
    }
}

static void refit_count_run(sweep_loop *L)
{
    L->since_fit++;
    if (L->do_fit && L->o->refit_every > 0 && L->since_fit >= (size_t)L->o->refit_every) {
        L->fit_pending = 1;
        L->since_fit = 0;
    }
}

static void refit_reaped(sweep_loop *L, int ws)
{
    const sweep_options *o = L->o;
    L->fit_pid = -1;
    finish_fit(L->g, o, &L->pr.w, ws, L->fit_used, L->sum);
    if (L->sum->fit_msg[0]) say(&L->pr, L->jobs, L->njobs, "refit: %s", L->sum->fit_msg);
    else say(&L->pr, L->jobs, L->njobs, "refit: wrote %s%s%s", o->law_out, o->report_path ? " and " : "", o->report_path ? o->report_path : "");
}

/* Nothing ran and the law is newer than every record (and the report exists): refitting
 * would change nothing. */
static int law_up_to_date(const sweep_options *o, const sweep_summary *sum)
{
    struct stat law_sb, runs_sb;
    return sum->ran == 0 && stat(o->law_out, &law_sb) == 0 && stat(o->runs_path, &runs_sb) == 0 &&
           (law_sb.st_mtim.tv_sec > runs_sb.st_mtim.tv_sec ||
            (law_sb.st_mtim.tv_sec == runs_sb.st_mtim.tv_sec && law_sb.st_mtim.tv_nsec >= runs_sb.st_mtim.tv_nsec)) &&
           (!o->report_path || access(o->report_path, F_OK) == 0);
}

/* The refit at the end, waited for; its failure is in sum, not an error of the sweep. */
static void final_refit(const sweep_grid *g, const sweep_options *o, const workdir *w, sweep_summary *sum)
{
    if (law_up_to_date(o, sum)) {
        if (o->log) fprintf(o->log, "sweep: %s is newer than %s: not refitted (--refit-only forces it)\n", o->law_out, o->runs_path);
        return;
    }
    size_t n_used = 0;
    qp_error fe = {0};
    if (o->log) fprintf(o->log, "sweep: final refit of %s\n", o->law_out);
    pid_t pid = start_fit(o, w, &n_used, &fe);
    if (pid < 0) {
        sum->fits_failed++;
        snprintf(sum->fit_msg, sizeof sum->fit_msg, "cannot start the fit: %s", fe.msg);
    } else {
        int ws;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
        finish_fit(g, o, w, ws, n_used, sum);
    }
}

/* ---- the run loop ------------------------------------------------------ */

/* A trunk ended: done when it exited 0 with every copy its branches need saved; its own state
 * is then of no further use (the copies are). */
static void trunk_reaped(sweep_loop *L, const job *jb, int ws, double secs)
{
    const sweep_trunk *tr = &L->g->trunks[jb->trunk];
    char statep[4300], cp[4400], logp[4300], how[128], tail[400];
    trunk_state_path(&L->pr.w, tr, statep, sizeof statep);
    int missing = 0;
    for (int i = 0; i < tr->n_save && !missing; i++) {
        sweep_trunk_copy_path(statep, tr->save_at[i], cp, sizeof cp);
        missing = access(cp, F_OK) != 0;
    }
    L->pr.finished_here++;
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && !missing) {
        L->tstate[jb->trunk] = T_DONE;
        unlink(statep);
        progress_timed(&L->pr, point_cost(&tr->p), secs);
        say(&L->pr, L->jobs, L->njobs, "done  trunk %s (%.0f s): %d branch point%s saved", tr->p.run_id, secs, tr->n_save,
            tr->n_save == 1 ? "" : "s");
        return;
    }
    L->tstate[jb->trunk] = T_FAILED;
    L->sum->trunks_failed++;
    wpath(&L->pr.w, tr->p.run_id, ".log", logp, sizeof logp);
    qp_log_tail(logp, tail, sizeof tail);
    say(&L->pr, L->jobs, L->njobs, "FAILED trunk %s after %.0f s: %s%s%s; log %s: %s", tr->p.run_id, secs,
        jb->timed_out ? "timed out, " : "", qp_wait_status_text(ws, how, sizeof how),
        missing ? ", a branch state is missing (delete its .state to retrain it)" : "", logp, tail[0] ? tail : "(empty)");
}

/* A branch is recorded: its trunk's copy goes once no point of the grid still needs it. */
static void release_copy(sweep_loop *L, const sweep_point *p, const sweep_results *res)
{
    for (size_t i = 0; i < L->g->n; i++) {
        const sweep_point *q = &L->g->points[i];
        if (q->trunk == p->trunk && q->branch_tokens == p->branch_tokens && !sweep_results_find(res, q->run_id)) return;
    }
    char cp[4400];
    branch_copy_path(&L->pr.w, L->g, p, cp, sizeof cp);
    unlink(cp);
}

/* Trainer `pid` ended with `ws`: look for its record, count it, free its slot and lock. */
static qp_status run_reaped(sweep_loop *L, pid_t pid, int ws, qp_error *err)
{
    int j = -1;
    for (int i = 0; i < L->njobs; i++)
        if (L->jobs[i].pid == pid) j = i;
    if (j < 0) return QP_OK; /* not ours */
    job jb = L->jobs[j];
    L->jobs[j] = L->jobs[--L->njobs];
    if (jb.trunk >= 0) {
        trunk_reaped(L, &jb, ws, qp_now() - jb.t_start);
        close(jb.lock_fd);
        return QP_OK;
    }
    const sweep_point *p = jb.p;
    double secs = qp_now() - jb.t_start;
    sweep_results r2;
    qp_status st = sweep_results_read(L->o->runs_path, &r2, err);
    if (st) {
        close(jb.lock_fd);
        return st;
    }
    const data_run *rec = sweep_results_find(&r2, p->run_id);
    L->pr.finished_here++;
    if (rec) {
        char statep[4300];
        wpath(&L->pr.w, p->run_id, ".state", statep, sizeof statep);
        progress_timed(&L->pr, point_cost(p), secs);
        unlink(statep); /* recorded: the resumable state is of no further use */
        if (p->trunk) release_copy(L, p, &r2);
    }
    report_run(L, &jb, rec, ws, secs);
    if (rec) refit_count_run(L);
    sweep_results_free(&r2);
    close(jb.lock_fd); /* after the record is in: a claimer now sees it done */
    return QP_OK;
}

/* Launch, refit when due, reap; until every point ran, a signal came or an error. */
static qp_status run_loop(sweep_loop *L, qp_error *err)
{
    qp_status st = QP_OK;
    while (!st && !g_stop) {
        if ((st = launch_runs(L, err))) break;
        refit_if_due(L);
        if (L->njobs == 0 && L->fit_pid < 0 && !work_left(L)) break;
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid < 0 && errno == ECHILD) break;
        if (pid <= 0) {
            enforce_timeouts(L);
            draw_bar(&L->pr, L->jobs, L->njobs);
            progress_line(&L->pr, L->jobs, L->njobs);
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } else if (pid == L->fit_pid) {
            refit_reaped(L, ws);
        } else {
            st = run_reaped(L, pid, ws, err);
        }
    }
    return st;
}

qp_status sweep_run(const sweep_grid *g, const sweep_options *o, sweep_summary *sum, qp_error *err)
{
    memset(sum, 0, sizeof *sum);
    sweep_loop L = {.g = g, .o = o, .sum = sum, .fit_pid = -1};
    L.pr.g = g;
    L.pr.o = o;
    L.pr.sum = sum;
    L.pr.t0 = L.pr.last_line = qp_now();
    qp_status st = sweep_grid_check_trainer(g, o->train_cmd, err);
    if (st || (st = workdir_make(&L.pr.w, o->runs_path, err))) return st;
    if (o->only_index >= 0 && (size_t)o->only_index >= g->n)
        return qp_fail(err, QP_ERR_INPUT, "--only-index %ld is outside the grid's 0..%zu", o->only_index, g->n - 1);
    if (o->only_trunk >= 0 && (size_t)o->only_trunk >= g->n_trunks)
        return qp_fail(err, QP_ERR_INPUT, "--only-trunk %ld: the grid has %zu trunk%s%s", o->only_trunk, g->n_trunks,
                       g->n_trunks == 1 ? "" : "s", g->use_trunks ? "" : " (it does not set \"trunks\": true)");
    if ((st = plan_todo(&L, err))) {
        free(L.todo);
        free(L.started);
        free(L.tstate);
        return st;
    }
    L.jobs_max = o->jobs > 0 ? o->jobs : 1;
    L.threads = threads_per_run(g, o, L.jobs_max);
    size_t n_trunks = 0;
    for (size_t t = 0; t < g->n_trunks; t++) n_trunks += L.tstate[t] == T_PENDING;
    if (o->log) {
        fprintf(o->log, "sweep: %zu runs in the grid, %zu already recorded in %s, %zu to run", sum->total, sum->done_before,
                o->runs_path, L.ntodo);
        if (g->use_trunks) fprintf(o->log, " and %zu trunk%s", n_trunks, n_trunks == 1 ? "" : "s");
        fprintf(o->log, " (%d at once, %d thread%s each)\n", L.jobs_max, L.threads, L.threads == 1 ? "" : "s");
    }

    L.jobs = calloc((size_t)L.jobs_max, sizeof *L.jobs);
    /* each run and trunk recorded once, plus those in flight */
    L.pr.hist = calloc(L.ntodo + n_trunks + (size_t)L.jobs_max, sizeof *L.pr.hist);
    if (!L.jobs || !L.pr.hist) {
        free(L.jobs);
        free(L.pr.hist);
        free(L.todo);
        free(L.started);
        free(L.tstate);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    L.do_fit = o->fit && o->law_out && o->only_index < 0 && o->only_trunk < 0;
    st = run_loop(&L, err);
    stop_children(&L);
    clear_bar(&L.pr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(L.jobs);
    free(L.pr.hist);
    free(L.todo);
    free(L.started);
    free(L.tstate);
    if (!st && g_stop) {
        sum->interrupted = 1;
        return qp_fail(err, QP_ERR_INTERRUPTED,
                       "interrupted by signal %d: %zu runs finished here; rerun the same command to continue "
                       "(interrupted runs resume from their saved state)",
                       (int)g_stop, sum->ok + sum->diverged);
    }
    if (st) return st;
    if (L.do_fit) final_refit(g, o, &L.pr.w, sum);
    return QP_OK;
}
