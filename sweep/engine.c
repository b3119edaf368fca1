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
    o->use_state = 1;
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
    size_t point;    /* index into g->points */
    double t_start;
    double t_term;   /* when SIGTERM was sent for a timeout; 0 = not yet */
    int timed_out;
} job;

typedef struct {
    const sweep_grid *g;
    const sweep_options *o;
    sweep_summary *sum;
    workdir w;
    double t0;
    double done_cost, done_secs; /* cost units (N*D) and wall seconds of runs finished here */
    double sc, ss, scc, scs;     /* sums for the time model secs = a + b*cost */
    size_t n_timed;
    double todo_cost;            /* of runs not started yet */
    size_t finished_here;        /* runs that ended here (any outcome) */
    size_t to_run;               /* points pending when the sweep started */
    int bar_shown;
} progress;

static double point_cost(const sweep_point *p) { return p->n_params * p->tokens; }

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

/* A run's wall time as a + b * N * D: a is the fixed part (start, evaluation), b the
 * training. Least squares over the runs finished here; proportional (a = 0) until their
 * costs differ enough to tell a from b. */
static void time_model(const progress *pr, double *a, double *b)
{
    double n = (double)pr->n_timed;
    double var = pr->scc - pr->sc * pr->sc / n, cov = pr->scs - pr->sc * pr->ss / n;
    *a = 0;
    *b = pr->done_secs / pr->done_cost;
    if (n >= 3 && var > 1e-12 * pr->scc) {
        double bb = cov / var, aa = (pr->ss - bb * pr->sc) / n;
        if (bb > 0 && aa >= 0) *a = aa, *b = bb;
        else if (bb > 0) *a = 0, *b = pr->scs / pr->scc; /* through the origin */
    }
}

static double eta(const progress *pr, const job *jobs, int njobs)
{
    if (pr->done_cost <= 0 || pr->n_timed == 0) return NAN;
    double a, b;
    time_model(pr, &a, &b);
    size_t busy = pr->finished_here + (size_t)njobs; /* launched (not skipped) so far */
    size_t pending = pr->to_run > busy ? pr->to_run - busy : 0;
    double left = pr->todo_cost * b + a * (double)pending, now = qp_now();
    for (int i = 0; i < njobs; i++) {
        double r = a + point_cost(&pr->g->points[jobs[i].point]) * b - (now - jobs[i].t_start);
        if (r > 0) left += r;
    }
    int par = pr->o->jobs > 0 ? pr->o->jobs : 1;
    return left / par;
}

static void clear_bar(progress *pr)
{
    if (pr->o->log && pr->o->tty && pr->bar_shown) {
        fputs("\r\033[K", pr->o->log);
        pr->bar_shown = 0;
    }
}

static void draw_bar(progress *pr, const job *jobs, int njobs)
{
    FILE *f = pr->o->log;
    if (!f || !pr->o->tty) return;
    size_t total = pr->to_run ? pr->to_run : 1;
    int width = 24, filled = (int)((double)pr->finished_here / (double)total * width + 0.5);
    char bar[64], el[32], et[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '-';
    bar[width] = 0;
    fmt_secs(qp_now() - pr->t0, el, sizeof el);
    fmt_secs(eta(pr, jobs, njobs), et, sizeof et);
    fprintf(f, "\r\033[Ksweep [%s] %zu/%zu runs  %d running  %zu diverged  %zu failed  %s elapsed  ETA %s", bar,
            pr->finished_here, pr->to_run, njobs, pr->sum->diverged, pr->sum->failed, el, et);
    fflush(f);
    pr->bar_shown = 1;
}

static void say(progress *pr, const job *jobs, int njobs, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void say(progress *pr, const job *jobs, int njobs, const char *fmt, ...)
{
    FILE *f = pr->o->log;
    if (!f) return;
    clear_bar(pr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (!pr->o->tty) {
        char et[32];
        fmt_secs(eta(pr, jobs, njobs), et, sizeof et);
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

qp_status sweep_run(const sweep_grid *g, const sweep_options *o, sweep_summary *sum, qp_error *err)
{
    memset(sum, 0, sizeof *sum);
    progress pr = {0};
    pr.g = g;
    pr.o = o;
    pr.sum = sum;
    pr.t0 = qp_now();
    qp_status st = workdir_make(&pr.w, o->runs_path, err);
    if (st) return st;
    if (o->only_index >= 0 && (size_t)o->only_index >= g->n)
        return qp_fail(err, QP_ERR_INPUT, "--only-index %ld is outside the grid's 0..%zu", o->only_index, g->n - 1);

    sweep_results res;
    if ((st = sweep_results_read(o->runs_path, &res, err))) return st;
    sum->bad_lines = res.n_bad_lines;
    if (res.n_bad_lines && o->log)
        fprintf(o->log, "sweep: warning: %zu unreadable line(s) in %s ignored; first: %s\n", res.n_bad_lines,
                o->runs_path, res.first_bad_msg);
    size_t *todo = malloc((g->n ? g->n : 1) * sizeof *todo);
    if (!todo) {
        sweep_results_free(&res);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    size_t ntodo = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (o->only_index >= 0 && (long)i != o->only_index) continue;
        sum->total++;
        if (sweep_results_find(&res, g->points[i].run_id)) sum->done_before++;
        else {
            todo[ntodo++] = i;
            pr.todo_cost += point_cost(&g->points[i]);
        }
    }
    sweep_results_free(&res);
    pr.to_run = ntodo;
    int jobs_max = o->jobs > 0 ? o->jobs : 1;
    int threads = o->threads > 0 ? o->threads : g->threads > 0 ? g->threads : (cores() / jobs_max > 0 ? cores() / jobs_max : 1);
    if (threads > (int)train_option_find("--threads")->hi) threads = (int)train_option_find("--threads")->hi;
    if (o->log)
        fprintf(o->log, "sweep: %zu runs in the grid, %zu already recorded in %s, %zu to run (%d at once, %d thread%s each)\n",
                sum->total, sum->done_before, o->runs_path, ntodo, jobs_max, threads, threads == 1 ? "" : "s");

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    job *jobs = calloc((size_t)jobs_max, sizeof *jobs);
    if (!jobs) {
        free(todo);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    int njobs = 0;
    size_t next = 0, since_fit = 0;
    pid_t fit_pid = -1;
    size_t fit_used = 0;
    int fit_pending = 0;
    int do_fit = o->fit && o->law_out && o->only_index < 0;

    while (!st) {
        if (g_stop) break;
        /* launch */
        while (!st && !g_stop && njobs < jobs_max && next < ntodo) {
            const sweep_point *p = &g->points[todo[next]];
            pr.todo_cost -= point_cost(p);
            next++;
            int why = 0;
            int fd = claim(&pr.w, o, p, &why, err);
            if (fd == -2) {
                st = err && err->status ? err->status : QP_ERR_IO;
                break;
            }
            if (fd < 0) {
                pr.to_run--;
                if (why == 1) {
                    sum->busy++;
                    say(&pr, jobs, njobs, "skip  %s: another process is running it", p->run_id);
                } else {
                    sum->done_before++;
                    say(&pr, jobs, njobs, "skip  %s: recorded meanwhile by another process", p->run_id);
                }
                continue;
            }
            char statep[4300], logp[4300];
            wpath(&pr.w, p->run_id, ".state", statep, sizeof statep);
            wpath(&pr.w, p->run_id, ".log", logp, sizeof logp);
            int resume = o->use_state && access(statep, F_OK) == 0;
            char **args;
            if ((st = sweep_point_args(g, p, o->runs_path, o->use_state ? statep : NULL, resume, threads, &args, err))) {
                close(fd);
                break;
            }
            pid_t pid = spawn(o->train_cmd, o->self_exe, "train", args, logp, fd, err);
            sweep_argv_free(args);
            if (pid < 0) {
                close(fd);
                st = err && err->status ? err->status : QP_ERR_IO;
                break;
            }
            jobs[njobs++] = (job){pid, fd, todo[next - 1], qp_now(), 0, 0};
            sum->ran++;
            say(&pr, jobs, njobs, "start %s%s (N=%.3g, D=%.3g tokens)", p->run_id, resume ? " (resuming)" : "",
                p->n_params, p->tokens);
        }
        if (st) break;
        if (do_fit && fit_pending && fit_pid < 0 && (njobs > 0 || next < ntodo)) { /* else the final fit does it */
            qp_error fe = {0};
            fit_pid = start_fit(o, &pr.w, &fit_used, &fe);
            fit_pending = 0;
            if (fit_pid < 0) {
                sum->fits_failed++;
                snprintf(sum->fit_msg, sizeof sum->fit_msg, "cannot start the fit: %s", fe.msg);
            } else {
                say(&pr, jobs, njobs, "refit %s from %zu ok runs", o->law_out, fit_used);
            }
        }
        if (njobs == 0 && fit_pid < 0 && next >= ntodo) break;

        /* reap */
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid < 0 && errno == ECHILD) break;
        if (pid <= 0) {
            double now = qp_now();
            for (int i = 0; i < njobs; i++) {
                if (o->run_timeout > 0 && !jobs[i].t_term && now - jobs[i].t_start > o->run_timeout) {
                    kill(jobs[i].pid, SIGTERM);
                    jobs[i].t_term = now;
                    jobs[i].timed_out = 1;
                } else if (jobs[i].t_term && now - jobs[i].t_term > 10) {
                    kill(jobs[i].pid, SIGKILL);
                }
            }
            draw_bar(&pr, jobs, njobs);
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (pid == fit_pid) {
            fit_pid = -1;
            finish_fit(g, o, &pr.w, ws, fit_used, sum);
            if (sum->fit_msg[0]) say(&pr, jobs, njobs, "refit: %s", sum->fit_msg);
            else say(&pr, jobs, njobs, "refit: wrote %s%s%s", o->law_out, o->report_path ? " and " : "", o->report_path ? o->report_path : "");
            continue;
        }
        int j = -1;
        for (int i = 0; i < njobs; i++)
            if (jobs[i].pid == pid) j = i;
        if (j < 0) continue; /* not ours */
        job jb = jobs[j];
        jobs[j] = jobs[--njobs];
        const sweep_point *p = &g->points[jb.point];
        double secs = qp_now() - jb.t_start;
        char logp[4300], statep[4300], how[128], tail[400];
        wpath(&pr.w, p->run_id, ".log", logp, sizeof logp);
        wpath(&pr.w, p->run_id, ".state", statep, sizeof statep);
        sweep_results r2;
        const data_run *rec = NULL;
        if ((st = sweep_results_read(o->runs_path, &r2, err))) {
            close(jb.lock_fd);
            break;
        }
        rec = sweep_results_find(&r2, p->run_id);
        pr.finished_here++;
        if (rec) {
            double cst = point_cost(p);
            pr.done_cost += cst;
            pr.done_secs += secs;
            pr.sc += cst;
            pr.ss += secs;
            pr.scc += cst * cst;
            pr.scs += cst * secs;
            pr.n_timed++;
            unlink(statep); /* recorded: the resumable state is of no further use */
            if (rec->status == DATA_RUN_DIVERGED) {
                sum->diverged++;
                say(&pr, jobs, njobs, "diverged %s (%.0f s): %s", p->run_id, secs, rec->reason[0] ? rec->reason : "no reason given");
            } else {
                sum->ok++;
                say(&pr, jobs, njobs, "done  %s loss %.4f (%.0f s)", p->run_id, rec->loss, secs);
            }
            since_fit++;
            if (do_fit && o->refit_every > 0 && since_fit >= (size_t)o->refit_every) {
                fit_pending = 1;
                since_fit = 0;
            }
        } else {
            sum->failed++;
            qp_log_tail(logp, tail, sizeof tail);
            say(&pr, jobs, njobs, "FAILED %s after %.0f s: %s%s, no record; log %s: %s", p->run_id, secs,
                jb.timed_out ? "timed out, " : "", qp_wait_status_text(ws, how, sizeof how), logp, tail[0] ? tail : "(empty)");
        }
        sweep_results_free(&r2);
        close(jb.lock_fd); /* after the record is in: a claimer now sees it done */
    }

    /* Stopping (signal or error): the trainers save their state on SIGTERM. */
    if (njobs > 0 || fit_pid > 0) {
        for (int i = 0; i < njobs; i++) kill(jobs[i].pid, SIGTERM);
        if (fit_pid > 0) kill(fit_pid, SIGTERM);
        double t_kill = qp_now() + 30;
        while (njobs > 0 || fit_pid > 0) {
            int ws;
            pid_t pid = waitpid(-1, &ws, WNOHANG);
            if (pid < 0) break;
            if (pid == 0) {
                if (qp_now() > t_kill) {
                    for (int i = 0; i < njobs; i++) kill(jobs[i].pid, SIGKILL);
                    if (fit_pid > 0) kill(fit_pid, SIGKILL);
                }
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            if (pid == fit_pid) fit_pid = -1;
            for (int i = 0; i < njobs; i++)
                if (jobs[i].pid == pid) {
                    close(jobs[i].lock_fd);
                    jobs[i] = jobs[--njobs];
                    break;
                }
        }
    }
    clear_bar(&pr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(jobs);
    free(todo);
    if (!st && g_stop) {
        sum->interrupted = 1;
        return qp_fail(err, QP_ERR_INTERRUPTED,
                       "interrupted by signal %d: %zu runs finished here; rerun the same command to continue "
                       "(interrupted runs resume from their saved state)",
                       (int)g_stop, sum->ok + sum->diverged);
    }
    if (st) return st;
    struct stat law_sb, runs_sb;
    if (do_fit && sum->ran == 0 && stat(o->law_out, &law_sb) == 0 && stat(o->runs_path, &runs_sb) == 0 &&
        (law_sb.st_mtim.tv_sec > runs_sb.st_mtim.tv_sec ||
         (law_sb.st_mtim.tv_sec == runs_sb.st_mtim.tv_sec && law_sb.st_mtim.tv_nsec >= runs_sb.st_mtim.tv_nsec)) &&
        (!o->report_path || access(o->report_path, F_OK) == 0)) {
        /* nothing ran and the law is newer than every record: refitting would change nothing */
        if (o->log) fprintf(o->log, "sweep: %s is newer than %s: not refitted (--refit-only forces it)\n", o->law_out, o->runs_path);
        do_fit = 0;
    }
    if (do_fit) {
        size_t n_used = 0;
        qp_error fe = {0};
        if (o->log) fprintf(o->log, "sweep: final refit of %s\n", o->law_out);
        pid_t pid = start_fit(o, &pr.w, &n_used, &fe);
        if (pid < 0) {
            sum->fits_failed++;
            snprintf(sum->fit_msg, sizeof sum->fit_msg, "cannot start the fit: %s", fe.msg);
        } else {
            int ws;
            while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
            finish_fit(g, o, &pr.w, ws, n_used, sum);
        }
    }
    return QP_OK;
}
