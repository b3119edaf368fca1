/* cmd_train.c: `qatplan train`: train one model and append its run record. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data.h"
#include "train.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: qatplan train --data PREFIX | --train-tokens FILE --val-tokens FILE\n"
"                     [model] [budget] [quantization] [optimizer] [outputs]\n"
"Trains a Llama-style byte-level model (FP, then QAT) and appends its run record.\n\n"
"data:\n"
"  --data PREFIX          token files PREFIX.train.tok and PREFIX.val.tok (qatplan data prepare)\n"
"  --train-tokens FILE    training token file;  --val-tokens FILE  validation token file\n"
"  --train-text FILE      raw bytes as tokens (vocab 256) instead of a token file;\n"
"  --val-text FILE        likewise for validation (quick experiments)\n"
"  --dataset ID           dataset id for the run record (default: from the token file)\n"
"model:\n"
"  --layers L  (2)   --width D  (64)   --heads H  (2)   --kv-heads (= heads)\n"
"  --ffn F     (multiple of 8 near 8/3 D)   --context T tokens (128)   vocabulary 256 (bytes)\n"
"budget (tokens; counts like 2M, 1.5B):\n"
"  --tokens D_total       training tokens, FP and QAT together (1M)\n"
"  --qat-fraction f       share of the tokens trained with QAT, 0..1 (0.2); 0 = FP only (the\n"
"                         final model is then quantized after training), 1 = QAT from scratch\n"
"  --batch B              sequences per step (16); tokens per step = B x context\n"
"quantization:\n"
"  --bits B               weight bits 1..8, or 16/32 = full precision (4)\n"
"  --quantizer Q          auto|binary|ternary|seq|lsq|asym (auto: 1 binary, 2 seq, 3..8 lsq)\n"
"  --group-size G         asym only: group length along the input, 0 = per row (0)\n"
"  --embed-bits E         embeddings/head: 0 = full precision, 4..8 = LSQ per row (0)\n"
"schedule and optimizer:\n"
"  --schedule S           classic|fused (classic)\n"
"  --lr X                 peak learning rate (3e-3)\n"
"  --warmup-frac X        warmup (and classic QAT re-warmup) as a fraction of its phase (0.05)\n"
"  --decay-frac X         decay length as a fraction of its phase (classic 0.2, fused 1.0)\n"
"  --decay-shape S        linear|1-sqrt (linear)\n"
"  --min-lr-frac X        learning rate at the end of a decay, fraction of --lr (0)\n"
"  --weight-decay X (0.1)  --grad-clip X (1.0, global norm)   AdamW betas 0.9, 0.95\n"
"  --reset-optimizer      zero Adam's moments at the FP->QAT switch (default: keep)\n"
"  --diverge-loss X       training loss (nats/token) that marks the run diverged (3 ln V + 5)\n"
"  --seed S (1)   --threads N (2)\n"
"device:\n"
"  --device D             cpu|cuda|auto (auto): auto uses a CUDA GPU when this qatplan has the\n"
"                         CUDA backend and one is found, else the CPU (with a note)\n"
"  --precision P          fp32|bf16 (fp32); bf16 (cuda only): bf16 matrix products, fp32\n"
"                         accumulation, fp32 master weights and optimizer\n");
    fprintf(f,
"evaluation and outputs:\n"
"  --eval-tokens N        validation tokens per evaluation (65536)\n"
"  --run-id ID            run id in the record (default: generated)\n"
"  --runs-out FILE        append the run record (JSON line) here; default: print it to stdout\n"
"  --checkpoint FILE      safetensors checkpoint of the final parameters\n"
"  --export-int FILE      safetensors with the quantized weights as integers and their scales\n"
"  --state FILE           resumable state: saved every --save-every, on SIGINT/SIGTERM and at\n"
"                         the end; an existing FILE is continued only with --resume\n"
"  --resume               continue from --state FILE (refused if a setting differs)\n"
"  --resume-if-exists     continue from --state FILE when it exists, else start the run\n"
"  --save-every N|TIME    save the state every N steps, or every TIME (600s, 10m, 2h); 0 = only\n"
"                         at the end and on signals (5m)\n"
"  --max-steps N          stop after N steps in this process (state saved; for time slicing)\n"
"  --max-memory BYTES     refuse a run that needs more, e.g. 16GiB (default: physical memory)\n"
"  --quiet | --progress   no progress output | force the progress output\n"
"A finished run's state holds its record: resuming it writes the record only where it is missing.\n"
"exit status: 0 finished and recorded; 3 diverged (record written, status diverged);\n"
"             2 bad input; 1 other failures, and a run stopped by a signal or --max-steps\n"
"docs/trainer.md describes the model, quantizers, schedules and file formats.\n");
}

static qp_status read_text(const char *path, uint16_t **out, uint64_t *n, qp_error *err)
{
    char *buf;
    size_t len;
    qp_status st = qp_read_file(path, &buf, &len, err);
    if (st) return st;
    uint16_t *t = malloc((len ? len : 1) * sizeof *t);
    if (!t) {
        free(buf);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
    }
    for (size_t i = 0; i < len; i++) t[i] = (unsigned char)buf[i];
    free(buf);
    *out = t;
    *n = len;
    return QP_OK;
}

static qp_status read_tokens(const char *path, data_tokens *t, qp_error *err)
{
    return data_tokens_read(path, t, err);
}

/* --save-every: a step count, or a time with a unit (s, m, h); 0 turns periodic saves off. */
static qp_status parse_save_every(const char *v, train_config *c, qp_error *err)
{
    size_t n = strlen(v);
    char unit = n ? v[n - 1] : 0;
    double mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    if (mult == 0) {
        long lv;
        qp_status st = qp_parse_long(v, "--save-every", 0, 1L << 40, &lv, err);
        if (st) return st;
        c->save_every_steps = lv;
        c->save_every_seconds = 0;
        return QP_OK;
    }
    char num[64];
    double x;
    snprintf(num, sizeof num, "%.*s", (int)(n - 1), v);
    if (n < 2 || n > sizeof num || qp_parse_real(num, "--save-every", 0, 1e9, &x, NULL) || x * mult > 1e9)
        return qp_fail(err, QP_ERR_INPUT, "--save-every '%s': use a step count (500), a time (600s, "
                                          "10m, 2h), or 0 for no periodic saves", v);
    c->save_every_steps = 0;
    c->save_every_seconds = x * mult;
    return QP_OK;
}

static int need(int i, int argc, char **argv)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "qatplan: %s needs a value: see 'qatplan train --help'\n", argv[i]);
        return 0;
    }
    return 1;
}

/* Before reading data or training: no output may be a data file or another output (the
 * state is read on --resume and rewritten, so it counts as an output), and each must be
 * writable now, not after the run. */
static qp_status check_paths(const char *train, const char *val, const char *runs_out, const char *ckpt,
                             const char *exp, const char *state, qp_error *err)
{
    const qp_named_path in[] = {{train, "training data"}, {val, "validation data"}};
    const qp_named_path out[] = {{runs_out, "--runs-out"}, {ckpt, "--checkpoint"}, {exp, "--export-int"},
                                 {state, "--state"}};
    qp_status st = qp_refuse_output_is_input(out, 4, in, 2, err);
    for (int i = 0; !st && i < 4; i++)
        if (out[i].path) st = qp_check_writable(out[i].path, out[i].what, i == 0, err);
    return st;
}

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

int cmd_train(int argc, char **argv)
{
    /* argv is main's argv + 1, so argv - 1 is the full command line */
    tune_threads_env(argv - 1);
    train_config c;
    train_config_default(&c);
    qp_error err = {0};
    qp_status st = QP_OK;
    const char *data_prefix = NULL, *train_tok = NULL, *val_tok = NULL, *train_txt = NULL,
               *val_txt = NULL, *runs_out = NULL, *ckpt = NULL, *exp = NULL, *qname = "auto",
               *device = "auto", *precision = "fp32", *dataset = NULL;
    char run_id[96] = "";
    int bits = 4, quiet = 0, force_progress = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long lv;
        double dv;
#define LONGOPT(name, lo, hi, dst)                                                                 \
    if (!strcmp(a, name)) {                                                                        \
        if (!need(i, argc, argv)) return 2;                                                        \
        if ((st = qp_parse_long(argv[++i], name, lo, hi, &lv, &err))) return cli_report(st, &err); \
        dst = (int)lv;                                                                             \
        continue;                                                                                  \
    }
#define REALOPT(name, lo, hi, dst)                                                                 \
    if (!strcmp(a, name)) {                                                                        \
        if (!need(i, argc, argv)) return 2;                                                        \
        if ((st = qp_parse_real(argv[++i], name, lo, hi, &dv, &err))) return cli_report(st, &err); \
        dst = dv;                                                                                  \
        continue;                                                                                  \
    }
#define STROPT(name, dst)                                                                          \
    if (!strcmp(a, name)) {                                                                        \
        if (!need(i, argc, argv)) return 2;                                                        \
        dst = argv[++i];                                                                           \
        continue;                                                                                  \
    }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        STROPT("--data", data_prefix)
        STROPT("--train-tokens", train_tok)
        STROPT("--val-tokens", val_tok)
        STROPT("--train-text", train_txt)
        STROPT("--val-text", val_txt)
        STROPT("--dataset", dataset)
        LONGOPT("--layers", 1, 256, c.shape.n_layer)
        LONGOPT("--width", 2, 65536, c.shape.d_model)
        LONGOPT("--heads", 1, 4096, c.shape.n_head)
        LONGOPT("--kv-heads", 1, 4096, c.shape.n_kv_head)
        LONGOPT("--ffn", 1, 1 << 20, c.shape.d_ff)
        LONGOPT("--context", 2, 65536, c.shape.context)
        if (!strcmp(a, "--tokens")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = qp_parse_count(argv[++i], "--tokens", &c.tokens, &err))) return cli_report(st, &err);
            continue;
        }
        REALOPT("--qat-fraction", 0, 1, c.qat_fraction)
        LONGOPT("--bits", 1, 32, bits)
        STROPT("--quantizer", qname)
        LONGOPT("--group-size", 0, 1 << 20, c.quant.group_size)
        LONGOPT("--embed-bits", 0, 8, c.quant.embed_bits)
        if (!strcmp(a, "--schedule")) {
            if (!need(i, argc, argv)) return 2;
            const char *v = argv[++i];
            if (!strcmp(v, "classic")) c.schedule = DATA_SCHED_CLASSIC;
            else if (!strcmp(v, "fused")) c.schedule = DATA_SCHED_FUSED;
            else {
                fprintf(stderr, "qatplan: --schedule %s: use classic or fused (f = 0 and f = 1 are set "
                                "with --qat-fraction)\n", v);
                return 2;
            }
            continue;
        }
        LONGOPT("--batch", 1, 1 << 20, c.batch)
        REALOPT("--lr", 0, 1, c.lr)
        REALOPT("--warmup-frac", 0, 1, c.warmup_frac)
        REALOPT("--decay-frac", 0, 1, c.decay_frac)
        REALOPT("--min-lr-frac", 0, 1, c.min_lr_frac)
        REALOPT("--weight-decay", 0, 10, c.weight_decay)
        REALOPT("--grad-clip", 0, 1e6, c.grad_clip)
        REALOPT("--diverge-loss", 0, 1e6, c.diverge_loss)
        if (!strcmp(a, "--decay-shape")) {
            if (!need(i, argc, argv)) return 2;
            const char *v = argv[++i];
            if (!strcmp(v, "linear")) c.decay_sqrt = 0;
            else if (!strcmp(v, "1-sqrt")) c.decay_sqrt = 1;
            else {
                fprintf(stderr, "qatplan: --decay-shape %s: use linear or 1-sqrt\n", v);
                return 2;
            }
            continue;
        }
        if (!strcmp(a, "--reset-optimizer")) { c.reset_optimizer = 1; continue; }
        if (!strcmp(a, "--seed")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = qp_parse_long(argv[++i], "--seed", 0, 2147483647L, &lv, &err))) return cli_report(st, &err);
            c.seed = (uint64_t)lv;
            continue;
        }
        LONGOPT("--threads", 1, 256, c.threads)
        if (!strcmp(a, "--eval-tokens")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = qp_parse_count(argv[++i], "--eval-tokens", &c.eval_tokens, &err))) return cli_report(st, &err);
            continue;
        }
        if (!strcmp(a, "--run-id")) {
            if (!need(i, argc, argv)) return 2;
            snprintf(run_id, sizeof run_id, "%s", argv[++i]);
            continue;
        }
        STROPT("--runs-out", runs_out)
        STROPT("--checkpoint", ckpt)
        STROPT("--export-int", exp)
        STROPT("--state", c.state_path)
        if (!strcmp(a, "--resume")) { c.resume = TRAIN_RESUME_ALWAYS; continue; }
        if (!strcmp(a, "--resume-if-exists")) { c.resume = TRAIN_RESUME_IF_EXISTS; continue; }
        if (!strcmp(a, "--save-every")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = parse_save_every(argv[++i], &c, &err))) return cli_report(st, &err);
            continue;
        }
        if (!strcmp(a, "--max-memory")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = qp_parse_bytes(argv[++i], "--max-memory", &c.max_memory, &err))) return cli_report(st, &err);
            continue;
        }
        if (!strcmp(a, "--max-steps")) {
            if (!need(i, argc, argv)) return 2;
            if ((st = qp_parse_long(argv[++i], "--max-steps", 1, 1L << 40, &lv, &err))) return cli_report(st, &err);
            c.max_steps = lv;
            continue;
        }
        STROPT("--device", device)
        STROPT("--precision", precision)
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--progress")) { force_progress = 1; continue; }
        fprintf(stderr, "qatplan: unknown option '%s' for train: see 'qatplan train --help'\n", a);
        return 2;
    }
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto")) {
        fprintf(stderr, "qatplan: --device %s: use cpu, cuda or auto\n", device);
        return 2;
    }
    if (!strcmp(precision, "bf16")) c.precision = TRAIN_PREC_BF16;
    else if (strcmp(precision, "fp32")) {
        fprintf(stderr, "qatplan: --precision %s: use fp32 or bf16\n", precision);
        return 2;
    }
    if (strcmp(device, "cpu")) {
        char why[256];
        int have_cuda = !strcmp(train_backends(), "cpu+cuda");
        int gpus = train_cuda_devices(why, sizeof why);
        if (!strcmp(device, "cuda") && !have_cuda) {
            fprintf(stderr, "qatplan: --device cuda: this qatplan was not built with CUDA; use "
                            "--device cpu\n");
            return 2;
        }
        if (!strcmp(device, "cuda") && gpus < 1) {
            fprintf(stderr, "qatplan: --device cuda: no CUDA GPU found (%s): use --device cpu\n", why);
            return 2;
        }
        if (gpus > 0) c.device = TRAIN_DEVICE_CUDA;
        else if (have_cuda && !quiet)
            fprintf(stderr, "qatplan: note: --device auto: no CUDA GPU found (%s); training on the CPU\n",
                    why);
    }
    if (c.precision == TRAIN_PREC_BF16 && c.device != TRAIN_DEVICE_CUDA) {
        fprintf(stderr, "qatplan: --precision bf16 runs only on a CUDA GPU (%s); use --precision fp32\n",
                !strcmp(device, "cpu") ? "--device cpu was given" : "none was found");
        return 2;
    }
    if (!data_bits_valid(bits)) {
        fprintf(stderr, "qatplan: --bits %d: use 1..8 for QAT, or 16/32 for full precision\n", bits);
        return 2;
    }
    c.quant.bits = bits;
    if ((st = train_quantizer_parse(qname, bits, &c.quant.kind, &err))) return cli_report(st, &err);
    int n_src = (data_prefix != NULL) + (train_tok || val_tok) + (train_txt || val_txt);
    if (n_src != 1) {
        fprintf(stderr, "qatplan: give the data once: --data PREFIX, or --train-tokens FILE "
                        "--val-tokens FILE, or --train-text FILE --val-text FILE\n");
        return 2;
    }
    if ((train_tok && !val_tok) || (!train_tok && val_tok) || (train_txt && !val_txt) ||
        (!train_txt && val_txt)) {
        fprintf(stderr, "qatplan: training and validation data go together: give both files\n");
        return 2;
    }
    if (c.resume && !c.state_path) {
        fprintf(stderr, "qatplan: %s needs --state FILE\n",
                c.resume == TRAIN_RESUME_ALWAYS ? "--resume" : "--resume-if-exists");
        return 2;
    }

    train_data d = {0};
    data_tokens tt = {0}, tv = {0};
    uint16_t *xt = NULL, *xv = NULL;
    char ds[96] = "";
    if (data_prefix) {
        char pt[4096], pv[4096];
        snprintf(pt, sizeof pt, "%s.train.tok", data_prefix);
        snprintf(pv, sizeof pv, "%s.val.tok", data_prefix);
        train_tok = strdup(pt);
        val_tok = strdup(pv);
    }
    if ((st = check_paths(train_tok ? train_tok : train_txt, train_tok ? val_tok : val_txt, runs_out, ckpt, exp,
                          c.state_path, &err)))
        goto out;
    if (train_tok) {
        if ((st = read_tokens(train_tok, &tt, &err)) || (st = read_tokens(val_tok, &tv, &err))) goto out;
        d = (train_data){tt.tokens, tt.n_tokens, tv.tokens, tv.n_tokens, tt.vocab};
        if (tt.vocab != tv.vocab) {
            st = qp_fail(&err, QP_ERR_INPUT, "%s has vocabulary %u but %s %u: prepare them together",
                         train_tok, tt.vocab, val_tok, tv.vocab);
            goto out;
        }
        c.shape.vocab = (int)tt.vocab;
        snprintf(ds, sizeof ds, "%s", tt.dataset);
    } else {
        if ((st = read_text(train_txt, &xt, &d.n_train, &err)) || (st = read_text(val_txt, &xv, &d.n_val, &err)))
            goto out;
        d.train = xt;
        d.val = xv;
        d.vocab = 256;
        const char *b = strrchr(train_txt, '/');
        snprintf(ds, sizeof ds, "text:%s", b ? b + 1 : train_txt);
    }
    c.dataset = dataset ? dataset : ds;
    c.run_id_auto = !run_id[0];
    if (!run_id[0])
        snprintf(run_id, sizeof run_id, "L%d-D%d-f%g-b%d-%s-s%llu-%ld", c.shape.n_layer,
                 c.shape.d_model, c.qat_fraction, bits, train_quantizer_name(c.quant.kind),
                 (unsigned long long)c.seed, (long)getpid());
    c.run_id = run_id;
    c.progress = quiet ? 0 : (isatty(2) ? 2 : 1);
    if (force_progress && !quiet) c.progress = isatty(2) ? 2 : 1;
    train_install_signal_handlers();
    data_run rec;
    int finished_before = 0;
    st = train_run_job(&c, &d, ckpt, exp, &rec, &finished_before, &err);
    if (finished_before) {
        qp_status s2 = record_once(&rec, runs_out, c.state_path, &err);
        if (s2) st = s2;
    } else if (st == QP_OK || st == QP_ERR_DIVERGED || rec.status == DATA_RUN_FAILED) {
        if (rec.n_params > 0) {
            qp_error e2 = {0};
            qp_status s2;
            if (runs_out) s2 = data_run_append(runs_out, &rec, &e2);
            else {
                char *j = data_run_to_json(&rec);
                s2 = j ? QP_OK : QP_ERR_NOMEM;
                if (j) printf("%s\n", j);
                free(j);
            }
            if (s2) {
                fprintf(stderr, "qatplan: the run record could not be written: %s\n", e2.msg);
                if (!st) st = s2;
            }
        }
        if (st == QP_OK && !quiet)
            fprintf(stderr, "final %s val loss %.4f nats/token (%.4f bits/byte)%s%s\n",
                    c.quant.kind == TRAIN_Q_NONE ? "FP" : "quantized", rec.loss, rec.val_bpb,
                    runs_out ? "; record appended to " : "", runs_out ? runs_out : "");
    }
out:
    if (data_prefix) {
        free((void *)train_tok);
        free((void *)val_tok);
    }
    data_tokens_free(&tt);
    data_tokens_free(&tv);
    free(xt);
    free(xv);
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
