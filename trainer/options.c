/* options.c: the trainer's options as one table: `qatplan train` parses its command line
 * through it, its help is generated from it, and the sweep builds and checks each run's
 * command line against it (sweep-owned options carry their grid field). A library of its own
 * (qp_train_options) so that the sweep needs none of the trainer's numerics. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "train.h"

#define OFF(field) offsetof(train_args, field)
#define INT(sec, name, arg, lo, hi, def, help, grid, field) \
    {sec, name, TRAIN_OPT_INT, arg, lo, hi, 0, NULL, def, help, grid, OFF(field), (int)sizeof(((train_args *)0)->field), 0}
#define REAL(sec, name, arg, lo, hi, open, def, help, grid, field) \
    {sec, name, TRAIN_OPT_REAL, arg, lo, hi, open, NULL, def, help, grid, OFF(field), 0, 0}
#define COUNT(sec, name, arg, def, help, grid, field) \
    {sec, name, TRAIN_OPT_COUNT, arg, 1, TRAIN_MAX_TOKENS, 0, NULL, def, help, grid, OFF(field), 0, 0}
/* a token count that may be 0 */
#define COUNT0(sec, name, arg, def, help, grid, field) \
    {sec, name, TRAIN_OPT_COUNT, arg, 0, TRAIN_MAX_TOKENS, 0, NULL, def, help, grid, OFF(field), 0, 0}
#define ENUM(sec, name, arg, choices, def, help, grid, field) \
    {sec, name, TRAIN_OPT_ENUM, arg, 0, 0, 0, choices, def, help, grid, OFF(field), 0, 0}
#define STR(sec, type, name, arg, def, help, grid, field) \
    {sec, name, type, arg, 0, 0, 0, NULL, def, help, grid, OFF(field), 0, 0}
#define FLAG(sec, name, help, grid, field, set) \
    {sec, name, TRAIN_OPT_FLAG, NULL, 0, 0, 0, NULL, NULL, help, grid, OFF(field), 0, set}

const train_option train_options[] = {
    STR("data", TRAIN_OPT_PATH, "--data", "PREFIX", NULL,
        "token files PREFIX.train.tok and PREFIX.val.tok (qatplan data prepare); else llm.c shards "
        "PREFIX_train.bin and PREFIX_val.bin, or nanoGPT's PREFIX/train.bin and PREFIX/val.bin", "data", data),
    STR("data", TRAIN_OPT_PATH, "--train-tokens", "FILE", NULL,
        "training token file: qatplan's .tok, an llm.c .bin shard, or raw uint16 .bin with --vocab", NULL,
        train_tokens),
    STR("data", TRAIN_OPT_PATH, "--val-tokens", "FILE", NULL, "validation token file", NULL, val_tokens),
    STR("data", TRAIN_OPT_PATH, "--train-text", "FILE", NULL,
        "raw bytes as tokens (vocab 256) instead of a token file (quick experiments)", NULL, train_text),
    STR("data", TRAIN_OPT_PATH, "--val-text", "FILE", NULL, "likewise for validation", NULL, val_text),
    INT("data", "--vocab", "V", 2, 65536, "from the data",
        "vocabulary of .bin token files (llm.c shards: 50257, GPT-2); raw uint16 .bin needs it", NULL, vocab),
    STR("data", TRAIN_OPT_TEXT, "--dataset", "ID", "from the token file", "dataset id for the run record",
        NULL, dataset),
    INT("model", "--layers", "L", 1, 256, "2", "transformer blocks", "shapes[].layers", c.shape.n_layer),
    INT("model", "--width", "D", 2, 65536, "64", "model width (d_model)", "shapes[].width", c.shape.d_model),
    INT("model", "--heads", "H", 1, 4096, "2", "attention heads (must divide --width, even head size)",
        "shapes[].heads", c.shape.n_head),
    INT("model", "--kv-heads", "K", 1, 4096, "= heads", "key/value heads (grouped-query attention)",
        "shapes[].kv_heads", c.shape.n_kv_head),
    INT("model", "--ffn", "F", 1, 1 << 20, "multiple of 8 near 8/3 D", "feed-forward width",
        "shapes[].ffn", c.shape.d_ff),
    INT("model", "--context", "T", 2, 65536, "128", "sequence length, tokens",
        "shapes[].context", c.shape.context),
    COUNT("budget", "--tokens", "D", "1M", "training tokens, FP and QAT together (2M, 1.5B)",
          "tokens | tokens_per_param", c.tokens),
    REAL("budget", "--qat-fraction", "f", 0, 1, 0, "0.2",
         "share of the tokens trained with QAT; 0 = FP only (then quantized), 1 = QAT from scratch",
         "fractions", c.qat_fraction),
    STR("budget", TRAIN_OPT_PATH, "--init", "FILE", NULL,
        "start from this qatplan checkpoint's parameters and train only the QAT phase: --tokens are "
        "QAT tokens, --qat-fraction is ignored; the model options must match the checkpoint. A "
        "resumable state (a trunk's --save-at copy) instead: continue from its step with this run's "
        "own schedule (a branch; parameters, Adam moments and data position carried)", NULL,
        c.init_path),
    ENUM("method", "--method", "M", TRAIN_METHOD_CHOICES, "qat",
         "QAT phase: qat (every weight trains); efqat (partial update: the rows with the largest mean |w| "
         "train, the others keep frozen codes and train only their step sizes); EfficientQAT's blockap, "
         "e2eqp, or efficientqat (both in turn; asym quantizer, classic schedule or --init, --embed-bits 0)",
         NULL, method),
    REAL("method", "--unfrozen", "R", 0, 1, 0, "0.05",
         "efqat: share of each matrix's rows that train (lwpn: of all freezable weights); 1 = full QAT",
         NULL, c.unfrozen),
    ENUM("method", "--efqat-mode", "M", TRAIN_EFQAT_MODE_CHOICES, "cwpl",
         "efqat: rows selected once (cwpl), rows re-selected (cwpn), whole matrices re-selected (lwpn)",
         NULL, efqat_mode),
    INT("method", "--refresh", "STEPS", 1, 1099511627776.0, "64",
        "efqat cwpn/lwpn: steps between re-selections", NULL, c.refresh_steps),
    COUNT0("method", "--blockap-tokens", "D", "share of the QAT tokens / epochs",
          "Block-AP calibration tokens (whole context windows, sampled from the training data)", NULL,
          c.eq.blockap_tokens),
    INT("method", "--blockap-epochs", "E", 0, 1000, "2", "Block-AP epochs over the calibration windows",
        NULL, c.eq.blockap_epochs),
    REAL("method", "--blockap-share", "X", 0, 1, 0, "0.5",
         "efficientqat: share of the QAT tokens (--qat-fraction x --tokens) spent as Block-AP token passes "
         "(calibration tokens x epochs); the rest is E2E-QP", NULL, c.eq.blockap_share),
    REAL("method", "--blockap-weight-lr", "X", 0, 1, 1, "1e-5",
         "Block-AP learning rate of the weights and norm gains", NULL, c.eq.blockap_weight_lr),
    REAL("method", "--blockap-qparam-lr", "X", 0, 1, 1, "1e-4",
         "Block-AP learning rate of the step sizes and zero points", NULL, c.eq.blockap_qparam_lr),
    REAL("method", "--blockap-min-lr-factor", "X", 1, 1e6, 0, "20",
         "Block-AP cosine schedule ends at lr / X", NULL, c.eq.blockap_min_lr_factor),
    COUNT0("method", "--blockap-val-tokens", "D", "64 windows",
          "Block-AP validation tokens (the first windows of the validation data)", NULL, c.eq.blockap_val_tokens),
    COUNT0("method", "--e2e-tokens", "D", "the QAT tokens left after Block-AP",
          "E2E-QP training tokens", NULL, c.eq.e2e_tokens),
    REAL("method", "--e2e-lr", "X", 0, 1, 1, "2e-5", "E2E-QP peak learning rate of the step sizes", NULL,
         c.eq.e2e_lr),
    REAL("method", "--e2e-warmup-frac", "X", 0, 1, 0, "0.03", "E2E-QP warmup, fraction of its steps", NULL,
         c.eq.e2e_warmup_frac),
    REAL("method", "--e2e-grad-clip", "X", 0, 1e6, 0, "0.3", "E2E-QP gradient-norm clip (0 = none)", NULL,
         c.eq.e2e_grad_clip),
    INT("budget", "--batch", "B", 1, 1 << 20, "16", "sequences per step; tokens per step = B x context",
        "train.batch", c.batch),
    INT("quantization", "--bits", "B", 1, 32, "4", "weight bits: 1..8, or 16/32 = full precision",
        "bits", bits),
    ENUM("quantization", "--quantizer", "Q", "auto|binary|ternary|seq|lsq|asym", "auto",
         "auto: 1 binary, 2 seq, 3..8 lsq", NULL, quantizer),
    INT("quantization", "--group-size", "G", 0, 1 << 20, "0", "asym only: group length along the input, 0 = per row",
        NULL, c.quant.group_size),
    INT("quantization", "--embed-bits", "E", 0, 8, "0", "embeddings/head: 0 = full precision, 4..8 = LSQ per row",
        NULL, c.quant.embed_bits),
    ENUM("schedule and optimizer", "--schedule", "S", "classic|fused", "classic",
         "QAT after FP, or fused into the cooldown (f = 0 and f = 1: --qat-fraction)", "schedules", schedule),
    REAL("schedule and optimizer", "--lr", "X", 0, 1, 1, "3e-3", "peak learning rate",
         "lr | shapes[].lr", c.lr),
    REAL("schedule and optimizer", "--qat-lr", "X", 0, 1, 1, "= --lr",
         "peak learning rate of the QAT phase (its warmup, stable part and decay)", NULL, c.qat_lr),
    REAL("schedule and optimizer", "--qparam-lr-mult", "X", 0, 1000, 1, "1",
         "learning rate of quantizer step sizes and zero points, times the phase's", NULL, c.qparam_lr_mult),
    REAL("schedule and optimizer", "--warmup-frac", "X", 0, 1, 0, "0.05",
         "warmup (and classic QAT re-warmup), fraction of its phase", NULL, c.warmup_frac),
    COUNT("schedule and optimizer", "--warmup-tokens", "D", NULL,
          "FP warmup in tokens, whatever the run's length (instead of --warmup-frac, which then sets "
          "only the QAT re-warmup); trunk-and-branch sweeps need it", NULL, c.warmup_tokens),
    REAL("schedule and optimizer", "--decay-frac", "X", 0, 1, 0, "classic 0.2, fused 1.0",
         "decay length, fraction of its phase", NULL, c.decay_frac),
    ENUM("schedule and optimizer", "--decay-shape", "S", "linear|1-sqrt", "linear", "learning-rate decay shape",
         NULL, decay_shape),
    REAL("schedule and optimizer", "--min-lr-frac", "X", 0, 1, 0, "0",
         "learning rate at the end of a decay, fraction of --lr", NULL, c.min_lr_frac),
    REAL("schedule and optimizer", "--weight-decay", "X", 0, 10, 0, "0.1", "AdamW weight decay (betas 0.9, 0.95)",
         NULL, c.weight_decay),
    REAL("schedule and optimizer", "--grad-clip", "X", 0, 1e6, 0, "1.0", "global gradient-norm clip", NULL,
         c.grad_clip),
    FLAG("schedule and optimizer", "--reset-optimizer", "zero Adam's moments at the FP->QAT switch (default: keep)",
         NULL, c.reset_optimizer, 1),
    REAL("schedule and optimizer", "--diverge-loss", "X", 0, 1e6, 0, "3 ln V + 5",
         "training loss, nats/token, that marks the run diverged", NULL, c.diverge_loss),
    INT("schedule and optimizer", "--seed", "S", 0, TRAIN_SEED_MAX, "1", "random seed (initialisation, batches)",
        "seeds", c.seed),
    INT("schedule and optimizer", "--threads", "N", 1, 256, "2", "CPU threads", "train.threads (or cores / jobs)",
        c.threads),
    ENUM("device", "--device", "D", "cpu|cuda|auto", "auto",
         "auto: a CUDA GPU when this qatplan has the CUDA backend and one is found, else the CPU", NULL, device),
    ENUM("device", "--precision", "P", "fp32|bf16", "fp32",
         "bf16: bf16 matrix products (CPU: oneDNN's where built), fp32 accumulation, master weights and optimizer", NULL,
         precision),
    COUNT("evaluation and outputs", "--eval-tokens", "N", "65536", "validation tokens per evaluation", NULL,
          c.eval_tokens),
    STR("evaluation and outputs", TRAIN_OPT_TEXT, "--run-id", "ID", "generated", "run id in the record",
        "(a hash of the point)", run_id),
    STR("evaluation and outputs", TRAIN_OPT_PATH, "--runs-out", "FILE", "stdout",
        "append the run record (a JSON line) here", "(the sweep's results file)", runs_out),
    STR("evaluation and outputs", TRAIN_OPT_PATH, "--checkpoint", "FILE", NULL,
        "safetensors checkpoint of the final parameters", NULL, checkpoint),
    STR("evaluation and outputs", TRAIN_OPT_PATH, "--export-int", "FILE", NULL,
        "safetensors with the quantized weights as integers and their scales", NULL, export_int),
    STR("evaluation and outputs", TRAIN_OPT_PATH, "--state", "FILE", NULL,
        "resumable state: saved every --save-every, on SIGINT/SIGTERM and at the end; an existing "
        "FILE is continued only with --resume", "(one per run)", c.state_path),
    FLAG("evaluation and outputs", "--resume", "continue from --state FILE (refused if a setting differs)",
         "(set by the sweep)", c.resume, TRAIN_RESUME_ALWAYS),
    FLAG("evaluation and outputs", "--resume-if-exists",
         "continue from --state FILE when it exists, else start the run", NULL, c.resume, TRAIN_RESUME_IF_EXISTS),
    STR("evaluation and outputs", TRAIN_OPT_TEXT, "--save-at", "D,D,...", NULL,
        "also save the state, as STATE.atD, when D tokens are trained (a trunk's branch points, for "
        "--init); needs --state", "(set by the sweep for trunks)", c.save_at),
    STR("evaluation and outputs", TRAIN_OPT_INTERVAL, "--save-every", "N|TIME", "5m",
        "save the state every N steps or every TIME (600s, 10m, 2h); 0 = only at the end and on signals",
        NULL, c.save_every_steps),
    INT("evaluation and outputs", "--max-steps", "N", 1, 1099511627776.0, NULL,
        "stop after N steps in this process (state saved; for time slicing)", NULL, c.max_steps),
    STR("evaluation and outputs", TRAIN_OPT_BYTES, "--max-memory", "BYTES", "physical memory",
        "refuse a run that needs more, e.g. 16GiB", NULL, c.max_memory),
    FLAG("evaluation and outputs", "--quiet", "no progress output", NULL, quiet, 1),
    FLAG("evaluation and outputs", "--progress", "force the progress output", NULL, progress, 1),
};
const size_t train_options_count = sizeof train_options / sizeof train_options[0];

const train_option *train_option_find(const char *name)
{
    for (size_t i = 0; i < train_options_count; i++)
        if (!strcmp(train_options[i].name, name)) return &train_options[i];
    return NULL;
}

const char *train_option_range(const train_option *o, char *buf, size_t n)
{
    switch (o->type) {
    case TRAIN_OPT_INT: snprintf(buf, n, "%.0f..%.0f", o->lo, o->hi); break;
    case TRAIN_OPT_COUNT: snprintf(buf, n, "%g to %g", o->lo, o->hi); break;
    case TRAIN_OPT_REAL: snprintf(buf, n, o->open ? "(%g, %g)" : "%g..%g", o->lo, o->hi); break;
    case TRAIN_OPT_ENUM: snprintf(buf, n, "%s", o->choices); break;
    default: snprintf(buf, n, "any"); break;
    }
    return buf;
}

/* "use a, b or c" for an enum's choices */
static qp_status bad_choice(const train_option *o, const char *v, qp_error *err)
{
    char use[256] = "";
    const char *c = o->choices;
    size_t k = 0;
    for (int i = 0; *c; i++) {
        size_t len = strcspn(c, "|");
        const char *sep = !i ? "" : c[len] ? ", " : " or ";
        k += (size_t)snprintf(use + k, sizeof use - k, "%s%.*s", sep, (int)len, c);
        c += len + (c[len] == '|');
        if (k >= sizeof use) break;
    }
    return qp_fail(err, QP_ERR_INPUT, "%s %s: use %s", o->name, v, use);
}

static int is_choice(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *c = choices; *c;) {
        size_t len = strcspn(c, "|");
        if (len == n && !strncmp(c, v, n)) return 1;
        c += len + (c[len] == '|');
    }
    return 0;
}

/* --save-every: a step count, or a time with a unit (s, m, h); 0 turns periodic saves off. */
static qp_status parse_interval(const char *v, long *steps, double *seconds, qp_error *err)
{
    size_t n = strlen(v);
    char unit = n ? v[n - 1] : 0;
    double mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    if (mult == 0) {
        long lv;
        qp_status st = qp_parse_long(v, "--save-every", 0, 1L << 40, &lv, err);
        if (st) return st;
        *steps = lv;
        *seconds = 0;
        return QP_OK;
    }
    char num[64];
    double x;
    snprintf(num, sizeof num, "%.*s", (int)(n - 1), v);
    if (n < 2 || n > sizeof num || qp_parse_real(num, "--save-every", 0, 1e9, &x, NULL) || x * mult > 1e9)
        return qp_fail(err, QP_ERR_INPUT, "--save-every '%s': use a step count (500), a time (600s, "
                                          "10m, 2h), or 0 for no periodic saves", v);
    *steps = 0;
    *seconds = x * mult;
    return QP_OK;
}

static qp_status parse_number(const train_option *o, const char *v, void *dst, qp_error *err)
{
    long lv;
    double dv;
    qp_status st;
    if (o->type == TRAIN_OPT_INT) {
        if ((st = qp_parse_long(v, o->name, (long)o->lo, (long)o->hi, &lv, err))) return st;
        if (dst && o->width == 4) *(int *)dst = (int)lv;
        else if (dst) memcpy(dst, &(int64_t){lv}, 8);
        return QP_OK;
    }
    if (o->type == TRAIN_OPT_COUNT) {
        if (o->lo == 0 && !strcmp(v, "0")) dv = 0; /* the counts that may be zero */
        else if ((st = qp_parse_count(v, o->name, &dv, err))) return st;
        if (!(dv >= o->lo && dv <= o->hi))
            return qp_fail(err, QP_ERR_INPUT, "%s %g: use %g to %g tokens", o->name, dv, o->lo, o->hi);
    } else {
        if ((st = qp_parse_real(v, o->name, o->lo, o->hi, &dv, err))) return st;
        if (o->open && !(dv > o->lo && dv < o->hi))
            return qp_fail(err, QP_ERR_INPUT, "%s %g: use a value in (%g, %g)", o->name, dv, o->lo, o->hi);
    }
    if (dst) *(double *)dst = dv;
    return QP_OK;
}

qp_status train_option_value(const train_option *o, const char *v, void *dst, qp_error *err)
{
    switch (o->type) {
    case TRAIN_OPT_INT:
    case TRAIN_OPT_COUNT:
    case TRAIN_OPT_REAL: return parse_number(o, v, dst, err);
    case TRAIN_OPT_ENUM:
        if (!is_choice(o->choices, v)) return bad_choice(o, v, err);
        break;
    case TRAIN_OPT_BYTES: {
        double b;
        qp_status st = qp_parse_bytes(v, o->name, &b, err);
        if (!st && dst) *(double *)dst = b;
        return st;
    }
    case TRAIN_OPT_INTERVAL: {
        long steps = 0;
        double secs = 0;
        qp_status st = parse_interval(v, &steps, &secs, err);
        if (!st && dst) {
            train_config *c = (train_config *)((char *)dst - offsetof(train_config, save_every_steps));
            c->save_every_steps = steps;
            c->save_every_seconds = secs;
        }
        return st;
    }
    case TRAIN_OPT_FLAG:
        if (dst) *(int *)dst = o->set;
        return QP_OK;
    default: break;
    }
    if (dst) *(const char **)dst = v;
    return QP_OK;
}

qp_status train_option_check(const char *name, const char *value, qp_error *err)
{
    const train_option *o = train_option_find(name);
    if (!o) return qp_fail(err, QP_ERR_USAGE, "unknown option '%s' for train: see 'qatplan train --help'", name);
    return train_option_value(o, value, NULL, err);
}

qp_status train_option_check_number(const char *name, double v, const char *where, qp_error *err)
{
    const train_option *o = train_option_find(name);
    if (!o || !o->grid || !(o->type == TRAIN_OPT_INT || o->type == TRAIN_OPT_COUNT || o->type == TRAIN_OPT_REAL))
        return qp_fail(err, QP_ERR_INPUT, "%s: %s is not a numeric option the sweep sets", where, name);
    int in = o->open ? v > o->lo && v < o->hi : v >= o->lo && v <= o->hi;
    if (o->type == TRAIN_OPT_INT && v != floor(v)) in = 0;
    if (in) return QP_OK;
    char r[64], val[64];
    snprintf(val, sizeof val, o->type == TRAIN_OPT_REAL || v != floor(v) || fabs(v) > 1e300 ? "%g" : "%.0f", v);
    return qp_fail(err, QP_ERR_INPUT, "%s %s is outside the trainer's range %s%s (qatplan train %s)", where, val,
                   train_option_range(o, r, sizeof r), o->type == TRAIN_OPT_INT ? ", whole numbers" : "", o->name);
}

/* "  --name ARG   help [range; default] *", wrapped at 100 columns under the help column */
static void help_line(FILE *f, const train_option *o)
{
    char head[64], r[64], text[512];
    snprintf(head, sizeof head, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    int ranged = o->type == TRAIN_OPT_INT || o->type == TRAIN_OPT_REAL || o->type == TRAIN_OPT_ENUM;
    size_t k = (size_t)snprintf(text, sizeof text, "%s", o->help);
    if (ranged || o->def)
        k += (size_t)snprintf(text + k, sizeof text - k, " [%s%s%s%s]", ranged ? train_option_range(o, r, sizeof r) : "",
                              ranged && o->def ? "; " : "", o->def ? "default " : "", o->def ? o->def : "");
    if (o->grid && k < sizeof text) snprintf(text + k, sizeof text - k, " *");
    enum { COL = 27, WIDTH = 100 };
    fprintf(f, "  %-24s ", head);
    const char *p = text;
    while (*p) {
        size_t len = strlen(p), cut = len;
        if (len > WIDTH - COL) {
            cut = WIDTH - COL;
            while (cut > 0 && p[cut] != ' ') cut--;
            if (cut == 0) cut = len;
        }
        fprintf(f, "%.*s\n", (int)cut, p);
        p += cut;
        while (*p == ' ') p++;
        if (*p) fprintf(f, "%*s", COL, "");
    }
}

void train_options_help(FILE *f)
{
    fprintf(f, "usage: qatplan train --data PREFIX | --train-tokens FILE --val-tokens FILE\n"
               "                     [model] [budget] [quantization] [optimizer] [outputs]\n"
               "Trains a Llama-style model (FP, then QAT) and appends its run record.\n"
               "[range; default]; * = set by 'qatplan sweep' from the grid on every run.\n");
    const char *sec = "";
    for (size_t i = 0; i < train_options_count; i++) {
        const train_option *o = &train_options[i];
        if (strcmp(o->section, sec)) fprintf(f, "%s:\n", sec = o->section);
        help_line(f, o);
    }
    fprintf(f, "A finished run's state holds its record: resuming it writes the record only where it is missing.\n"
               "exit status: 0 finished and recorded; 3 diverged (record written, status diverged);\n"
               "             2 bad input; 1 other failures, and a run stopped by a signal or --max-steps\n"
               "docs/trainer.md describes the model, quantizers, schedules and file formats.\n");
}
