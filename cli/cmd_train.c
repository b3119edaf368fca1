/* cmd_train.c: `qatplan train`: train one model and append its run record. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data.h"
#include "train.h"

/* With 2 cores, OpenMP's spinning threads and OpenBLAS's spinning workers fight over the
 * cores between matrix products (measured: 2-25x slower steps). Both libraries read their
 * settings when they load, so set them and re-exec once, unless the user chose. */
static void tune_threads_env(char **argv_full)
{
    if (getenv("QP_TRAIN_REEXEC")) return;
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY")) changed |= !setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) changed |= !setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    if (!changed) return;
    setenv("QP_TRAIN_REEXEC", "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", argv_full);
    /* exec failed: run anyway, only slower */
}

/* A resumed state whose run had finished: its record goes where it is missing, never twice
 * (a process killed between the final state and the record append left it out). */
static qp_status record_once(const data_run *rec, const char *runs_out, const char *state, qp_error *err)
{
    int have = 0;
    if (runs_out && access(runs_out, F_OK) == 0) {
        data_run_list l;
        data_run_list_init(&l);
        qp_status st = data_runs_read(runs_out, &l, err);
        for (size_t i = 0; !st && i < l.n; i++) have |= !strcmp(l.runs[i].run_id, rec->run_id);
        data_run_list_free(&l);
        if (st) return st;
    }
    if (have) {
        fprintf(stderr, "qatplan: %s: run %s finished earlier and is recorded in %s; nothing to do\n",
                state, rec->run_id, runs_out);
        return QP_OK;
    }
    qp_status st = QP_OK;
    if (runs_out) st = data_run_append(runs_out, rec, err);
    else {
        char *j = data_run_to_json(rec);
        if (j) printf("%s\n", j);
        else st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
        free(j);
    }
    if (!st)
        fprintf(stderr, "qatplan: %s: run %s finished earlier; its record was %s\n", state, rec->run_id,
                runs_out ? "missing and is now appended" : "printed again");
    return st;
}

/* The record of a run that ended (ok, diverged, or failed after it was set up): appended to
 * --runs-out, or printed. */
static qp_status write_record(const data_run *rec, const char *runs_out)
{
    qp_error e2 = {0};
    qp_status s2;
    if (runs_out) s2 = data_run_append(runs_out, rec, &e2);
    else {
        char *j = data_run_to_json(rec);
        s2 = j ? QP_OK : qp_fail(&e2, QP_ERR_NOMEM, "out of memory");
        if (j) printf("%s\n", j);
        free(j);
    }
    if (s2) fprintf(stderr, "qatplan: the run record could not be written: %s\n", e2.msg);
    return s2;
}

int cmd_train(int argc, char **argv)
{
    /* argv is main's argv + 1, so argv - 1 is the full command line */
    tune_threads_env(argv - 1);
    train_args a;
    train_args_default(&a);
    qp_error err = {0};
    qp_status st = train_args_parse(&a, argc - 1, argv + 1, &err);
    if (!st && a.help) {
        train_options_help(stdout);
        return 0;
    }
    if (!st) st = train_args_resolve(&a, &err);
    if (st) return cli_report(st, &err);
    train_inputs in;
    if ((st = train_inputs_load(&a, &in, &err))) goto out;
    train_install_signal_handlers();
    data_run rec;
    int finished_before = 0;
    st = train_run_job(&a.c, &in.d, a.checkpoint, a.export_int, &rec, &finished_before, &err);
    if (finished_before) {
        qp_status s2 = record_once(&rec, a.runs_out, a.c.state_path, &err);
        if (s2) st = s2;
    } else if (st == QP_OK || st == QP_ERR_DIVERGED || rec.status == DATA_RUN_FAILED) {
        if (rec.n_params > 0) {
            qp_status s2 = write_record(&rec, a.runs_out);
            if (s2 && !st) st = s2;
        }
        if (st == QP_OK && !a.quiet) {
            char ptq[64] = ""; /* the PTQ loss the QAT phase started from */
            if (isfinite(rec.loss_ptq)) snprintf(ptq, sizeof ptq, ", %.4f before QAT (loss_ptq)", rec.loss_ptq);
            fprintf(stderr, "final %s val loss %.4f nats/token (%.4f bits/byte)%s%s%s\n",
                    a.c.quant.kind == TRAIN_Q_NONE ? "FP" : "quantized", rec.loss, rec.val_bpb, ptq,
                    a.runs_out ? "; record appended to " : "", a.runs_out ? a.runs_out : "");
        }
    }
out:
    train_inputs_free(&in);
    if (st == QP_ERR_DIVERGED) {
        fprintf(stderr, "qatplan: %s\n", err.msg);
        return 3;
    }
    if (st == QP_ERR_INTERRUPTED) {
        fprintf(stderr, "qatplan: %s\n", err.msg);
        return 1;
    }
    return cli_report(st, &err);
}
