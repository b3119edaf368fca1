/* sweep.h: run a grid of training runs (model shapes x token budgets x bit widths x QAT
 * fractions x schedules x seeds) as subprocesses of `qatplan train`, skip the ones whose
 * record is already in the results file, refit the law as results come in, and write Slurm
 * job-array scripts for clusters. Public symbols are prefixed sweep_. Design: docs/sweep.md. */
#ifndef SWEEP_H
#define SWEEP_H

#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "qp.h"

#define SWEEP_GRID_SCHEMA "qatplan-grid-v1"
#define SWEEP_MAX_ARGS 64
/* Points one grid may expand to (counted before duplicates are dropped): far beyond any sweep
 * that can be trained, small enough that expanding and listing them takes well under a second. */
#define SWEEP_MAX_POINTS 100000
/* Shapes of a grid that name an external model by its parameter count. */
#define SWEEP_MAX_MODELS 64

/* An external model: a shape {"n_params": 125e6, "name": ..., "args": [...]} for a trainer
 * given by --train-cmd, which builds the model from its own arguments (docs/sweep.md). */
typedef struct {
    char name[40];          /* [A-Za-z0-9._-]; default "N" + the count ("N125M") */
    double n_params;        /* N as the trainer counts it (it records its own) */
    char *args[SWEEP_MAX_ARGS]; /* the trainer's own model options, verbatim, unchecked */
    int n_args;
} sweep_model;

/* Entries of a grid's "methods". */
#define SWEEP_MAX_METHODS 64

/* One entry of a grid's "methods": trainer settings ({"method": "efqat", "unfrozen": 0.05})
 * crossed with every other axis of the quantized points (docs/sweep.md). */
typedef struct {
    char name[40];              /* in the run id; "name" or the method and its position */
    char *args[SWEEP_MAX_ARGS]; /* "--unfrozen", "0.05", ...: checked against the trainer's table */
    int n_args;
} sweep_method;

/* ---- the grid ------------------------------------------------------------ */

/* One training run of the grid. */
typedef struct {
    int index;              /* position in the expanded grid, 0-based (Slurm's task id) */
    char run_id[96];        /* deterministic: readable settings + a hash of all of them */
    data_model_shape shape; /* n_kv_head, d_ff, vocab filled with the trainer's defaults */
    double n_params;        /* N: all parameters incl. the tied embedding, as the trainer counts */
    double tokens;          /* D_total requested, tokens (whole number) */
    int bits;               /* 1..8 QAT; 16/32 full precision */
    double fraction;        /* QAT fraction f in [0, 1]; 0 for full precision */
    data_schedule schedule; /* effective: classic|fused, fp-only (f = 0 or bits >= 16), qat-only (f = 1) */
    uint64_t seed;
    double lr;              /* peak learning rate of its shape ("lr" in the shape); NAN = the grid's */
    int model;              /* 0: qatplan's architecture (`shape`); k > 0: the grid's models[k - 1] */
    int method;             /* 0: none (full precision, or no "methods"); k > 0: the grid's methods[k - 1] */
    int trunk;              /* "trunks": 1 + the index of the trunk it branches from; 0 = none */
    double branch_tokens;   /* tokens its trunk has trained where it branches off (0 = none) */
} sweep_point;

/* A trunk of a grid with "trunks": true (docs/sweep.md, "Trunks and branches"): one FP run at
 * constant learning rate (after the --warmup-tokens warmup) that saves its state at every
 * branch point its points need; each point then trains only the rest of its own schedule. */
typedef struct {
    sweep_point p;          /* its run: run_id ("trunk-..."), shape, bits (the parameter layout),
                             * seed, lr; tokens = the last branch point */
    double *save_at;        /* tokens at which it saves a state for branches, ascending */
    int n_save;
} sweep_trunk;

/* "qat_lr_ratio" of one schedule: the QAT phase's peak learning rate as a multiple of the
 * point's --lr, for every fraction (`all`) or per fraction (docs/sweep.md). */
#define SWEEP_MAX_QAT_LR 64
typedef struct {
    double all;                       /* fractions not listed; 1 = the trainer's default */
    double frac[SWEEP_MAX_QAT_LR], ratio[SWEEP_MAX_QAT_LR];
    int n;
} sweep_qat_lr;

typedef struct {
    char data[1024];   /* trainer --data PREFIX (as written in the grid: relative to the cwd) */
    int batch;         /* sequences per step; 0 = trainer default */
    double lr;         /* peak learning rate; NAN = trainer default */
    int threads;       /* threads per trainer; 0 = cores / jobs */
    char *args[SWEEP_MAX_ARGS]; /* further trainer options, verbatim */
    int n_args;
    int has_quantized; /* some point has bits < 16 */
    sweep_model models[SWEEP_MAX_MODELS]; /* external models named by the shapes */
    int n_models;
    sweep_method methods[SWEEP_MAX_METHODS]; /* "methods", crossed with the quantized points */
    int n_methods;
    sweep_qat_lr qat_lr[2]; /* "qat_lr_ratio": [0] classic, [1] fused */
    char init[1024];   /* "init": --init FILE of the quantized points, "{seed}" replaced; "" = none */
    sweep_point *points;
    size_t n;
    int use_trunks;         /* the grid's "trunks": true */
    sweep_trunk *trunks;
    size_t n_trunks;
} sweep_grid;

/* Grid file (JSON, schema qatplan-grid-v1; docs/sweep.md). Duplicate points (e.g. f = 0 under
 * two schedules, which is the same fp-only run) are kept once. A grid of more than
 * SWEEP_MAX_POINTS points is refused, with the count, before it is expanded. */
qp_status sweep_grid_parse(const char *json, const char *name, sweep_grid *g, qp_error *err);
qp_status sweep_grid_read(const char *path, sweep_grid *g, qp_error *err);
void sweep_grid_free(sweep_grid *g); /* safe on NULL */
/* QP_OK unless the grid names an external model and there is no --train-cmd to build it. */
qp_status sweep_grid_check_trainer(const sweep_grid *g, const char *train_cmd, qp_error *err);

/* All parameters of a shape (tied embedding counted once), the trainer's count. Fills the
 * defaults n_kv_head = n_head, d_ff = multiple of 8 near 8/3 d_model, vocab = 256. */
double sweep_shape_params(data_model_shape *s);

/* The point's QAT peak as a multiple of its --lr: 1 for points without an FP-then-QAT phase
 * (full precision, fp-only, qat-only) and where the grid gives none. */
double sweep_point_qat_lr_ratio(const sweep_grid *g, const sweep_point *p);

/* The trainer options for one point (after the command prefix), NULL-terminated, malloc'ed
 * strings in a malloc'ed array; free with sweep_argv_free. */
qp_status sweep_point_args(const sweep_grid *g, const sweep_point *p, const char *runs_path,
                           const char *state_path, int resume, int threads, char ***out,
                           qp_error *err);
void sweep_argv_free(char **argv);
/* Group the points of a "trunks" grid into trunks: points with the same model, seed, data,
 * batch, learning rate, options and parameter layout (bits 1..8 one, 16/32 another) share
 * one; qat-only points (no FP phase) run alone. Checks with the trainer's own schedule
 * (config.c) that every branch's learning rate up to its branch point is the trunk's. */
qp_status sweep_trunks_plan(sweep_grid *g, const char *name, qp_error *err);
/* The trainer options of trunk t (as sweep_point_args, plus --qat-fraction 0 --decay-frac 0
 * --save-at ...). */
qp_status sweep_trunk_args(const sweep_grid *g, const sweep_trunk *t, const char *runs_path, const char *state_path,
                           int resume, int threads, char ***out, qp_error *err);
/* Where trunk t's state (state_path) keeps its copy for branches at `tokens`: the trainer's
 * --save-at name, STATE.atD. */
void sweep_trunk_copy_path(const char *state_path, double tokens, char *buf, size_t n);
/* Tokens a sweep trains for the given points (NULL: all of the grid; include[i] != 0 selects
 * point i): *separate when each is trained alone, *shared with trunks (each needed trunk
 * once, each branch from its branch point on). */
void sweep_trunk_tokens(const sweep_grid *g, const unsigned char *include, double *shared, double *separate);

/* ---- the results file ---------------------------------------------------- */

typedef struct {
    data_run_list runs;   /* every parseable record, in file order */
    size_t n_bad_lines;   /* torn or malformed lines, ignored */
    long first_bad_line;  /* line number of the first one (0 = none) */
    char first_bad_msg[512];
    /* run_id -> the record that counts: a hash set built by sweep_results_read (slots hold
     * index + 1, 0 = empty), so that looking up every point of a large grid is linear;
     * sweep_results_find scans instead if `runs` changed since (index_n != runs.n). */
    uint32_t *index;
    size_t index_mask, index_n;
} sweep_results;

/* Read a results file line by line, tolerating torn and malformed lines (counted). A missing
 * file is an empty result. */
qp_status sweep_results_read(const char *path, sweep_results *out, qp_error *err);
void sweep_results_free(sweep_results *r); /* safe on NULL */
/* The record of run_id that counts (the last with status ok or diverged), or NULL. */
const data_run *sweep_results_find(const sweep_results *r, const char *run_id);

/* ---- running ------------------------------------------------------------- */

typedef struct {
    const char *runs_path;   /* results file (JSONL); records are appended by the trainers */
    int jobs;                /* trainers at once (default 1) */
    int threads;             /* threads per trainer; 0 = grid's, else cores / jobs */
    int refit_every;         /* refit after every K finished runs; 0 = only at the end */
    int fit;                 /* 0 = never refit */
    const char *law_out;     /* law file the refit writes */
    const char *report_path; /* sweep report (text) */
    data_law_form fit_form;
    const char *train_cmd;   /* command prefix for the trainer, run by /bin/sh; NULL = self train */
    const char *fit_cmd;     /* command prefix for the fitter; NULL = self fit */
    const char *self_exe;    /* the qatplan binary (default /proc/self/exe) */
    double run_timeout;      /* seconds; a run still going is stopped and counts failed; 0 = none */
    long only_index;         /* run only this grid point (Slurm task); -1 = all */
    long only_trunk;         /* run only this trunk (Slurm trunk task); -1 = all */
    int use_state;           /* pass --state/--resume so an interrupted run continues (default 1) */
    FILE *log;               /* progress and per-run lines; NULL = quiet */
    int tty;                 /* log is a terminal: progress bar instead of plain lines */
    double progress_every;   /* not a terminal: a progress line (runs in flight, step, loss, ETA)
                              * every this many seconds while runs are in flight; 0 = none (default 60) */
} sweep_options;

void sweep_options_init(sweep_options *o);

typedef struct {
    size_t total;          /* grid points considered (1 with only_index) */
    size_t done_before;    /* already recorded when the sweep started */
    size_t ran;            /* trainers started */
    size_t ok, diverged, failed;
    size_t busy;           /* skipped: another process holds the run's lock */
    size_t bad_lines;      /* torn/malformed lines in the results file */
    int fits_ok, fits_failed;
    char fit_msg[512];     /* why the last fit did not produce a law ("" if it did) */
    int interrupted;       /* stopped by SIGINT/SIGTERM */
    size_t trunks_ran, trunks_failed;
    double tokens_trained;  /* tokens of the trainers started (trunks once, branches from their branch point) */
    double tokens_separate; /* what the same points would have trained each alone */
} sweep_summary;

/* Run the missing points. Returns QP_OK even when some runs failed (see the summary);
 * QP_ERR_INTERRUPTED when stopped by a signal. */
qp_status sweep_run(const sweep_grid *g, const sweep_options *o, sweep_summary *sum, qp_error *err);

/* A run's progress as its trainer last logged it: the last "step S/T <phase> loss L" line of
 * `text`. Returns 1 when one was found. */
typedef struct {
    long step, total;
    double loss;
} sweep_run_progress;
int sweep_parse_progress(const char *text, size_t len, sweep_run_progress *p);

/* One run for the ETA, in work units (N*D): done so far, left to do, wall seconds so far. */
typedef struct {
    double done, left, secs;
} sweep_eta_sample;

/* Seconds until the sweep ends: the work left (the samples' plus `pending`, the work of
 * `n_pending` runs not started) over the measured aggregate rate, with `slots` runs at once.
 * *lo and *hi from the fastest and slowest measured run. NAN when nothing is measured yet. */
double sweep_eta_estimate(const sweep_eta_sample *s, size_t n, double pending, size_t n_pending, int slots,
                          double *lo, double *hi);

/* Refit once now (blocking) and write the report. QP_ERR_UNIDENTIFIED with a message when
 * the fitter could not produce a law from the records (e.g. too few runs yet). */
qp_status sweep_refit(const sweep_grid *g, const sweep_options *o, sweep_summary *sum, qp_error *err);

/* The report: sweep progress, the law's fit quality, predicted against observed per run.
 * `law` may be NULL (no law yet). Written atomically. */
qp_status sweep_write_report(const char *path, const sweep_grid *g, const sweep_results *res,
                             const data_law *law, const char *fit_msg, qp_error *err);

/* ---- Slurm --------------------------------------------------------------- */

typedef struct {
    const char *qatplan;    /* absolute path of the qatplan binary */
    const char *workdir;    /* directory the jobs cd into (absolute) */
    const char *grid_path, *runs_path, *law_out, *report_path;
    int cpus_per_task;      /* default 2 */
    const char *time_limit; /* per array task, default "04:00:00" */
    const char *partition;  /* NULL = cluster default */
    int max_parallel;       /* array throttle %M; 0 = none */
    data_law_form fit_form;
    /* What the jobs must run as the local sweep would (a cluster node need not share this
     * shell's environment): */
    const char *train_cmd;  /* --train-cmd for the array tasks; NULL = qatplan's own trainer */
    const char *fit_cmd;    /* --fit-cmd for the refit job; NULL = qatplan's own fitter */
    int threads;            /* fixed --threads; 0 = the task's SLURM_CPUS_PER_TASK */
    double run_timeout;     /* --run-timeout for the tasks; 0 = none */
    const char *progress_every; /* --progress-every for the tasks, as given; NULL = their default */
    int no_state;           /* pass --no-state to the tasks */
    int no_fit;             /* no refit job */
    const char *const *sbatch_args; /* extra sbatch options ("--gres=gpu:1"), as #SBATCH lines of both jobs */
    size_t n_sbatch_args;
} sweep_slurm_options;

/* A bash script that submits the job array (task i = grid point i) and the dependent refit
 * job. malloc'ed text. */
qp_status sweep_emit_slurm(const sweep_grid *g, const sweep_slurm_options *so, char **script,
                           qp_error *err);

#endif
