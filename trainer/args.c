/* args.c: from `qatplan train`'s options to a run: the command line parsed through the
 * options table (options.c), then the policy (data source, device, bf16, bit widths,
 * quantizer, run id, output paths) that used to live in the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train.h"

void train_args_default(train_args *a)
{
    memset(a, 0, sizeof *a);
    train_config_default(&a->c);
    a->bits = 4;
    a->quantizer = "auto";
    a->schedule = "classic";
    a->decay_shape = "linear";
    a->device = "auto";
    a->precision = "fp32";
}

qp_status train_args_parse(train_args *a, int argc, char **argv, qp_error *err)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            a->help = 1;
            return QP_OK;
        }
        const train_option *o = train_option_find(argv[i]);
        if (!o)
            return qp_fail(err, QP_ERR_USAGE, "unknown option '%s' for train: see 'qatplan train --help'",
                           argv[i]);
        const char *v = NULL;
        if (o->type != TRAIN_OPT_FLAG) {
            if (i + 1 >= argc)
                return qp_fail(err, QP_ERR_USAGE, "%s needs a value: see 'qatplan train --help'", argv[i]);
            v = argv[++i];
        }
        qp_status st = train_option_value(o, v, (char *)a + o->off, err);
        if (st) return st;
    }
    return QP_OK;
}

/* --device: auto takes a CUDA GPU when this build has the backend and one is found. */
static qp_status resolve_device(train_args *a, qp_error *err)
{
    if (!strcmp(a->device, "cpu")) return QP_OK;
    char why[256];
    int have_cuda = !strcmp(train_backends(), "cpu+cuda");
    int gpus = train_cuda_devices(why, sizeof why);
    if (!strcmp(a->device, "cuda") && !have_cuda)
        return qp_fail(err, QP_ERR_INPUT, "--device cuda: this qatplan was not built with CUDA; use --device cpu");
    if (!strcmp(a->device, "cuda") && gpus < 1)
        return qp_fail(err, QP_ERR_INPUT, "--device cuda: no CUDA GPU found (%s): use --device cpu", why);
    if (gpus > 0) a->c.device = TRAIN_DEVICE_CUDA;
    else if (have_cuda && !a->quiet)
        fprintf(stderr, "qatplan: note: --device auto: no CUDA GPU found (%s); training on the CPU\n", why);
    return QP_OK;
}

/* One data source, both files of it. */
static qp_status check_sources(const train_args *a, qp_error *err)
{
    int n_src = (a->data != NULL) + (a->train_tokens || a->val_tokens) + (a->train_text || a->val_text);
    if (n_src != 1)
        return qp_fail(err, QP_ERR_USAGE, "give the data once: --data PREFIX, or --train-tokens FILE "
                                          "--val-tokens FILE, or --train-text FILE --val-text FILE");
    if (!a->train_tokens != !a->val_tokens || !a->train_text != !a->val_text)
        return qp_fail(err, QP_ERR_USAGE, "training and validation data go together: give both files");
    return QP_OK;
}

qp_status train_args_resolve(train_args *a, qp_error *err)
{
    train_config *c = &a->c;
    c->precision = !strcmp(a->precision, "bf16") ? TRAIN_PREC_BF16 : TRAIN_PREC_FP32;
    c->schedule = !strcmp(a->schedule, "fused") ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
    c->decay_sqrt = !strcmp(a->decay_shape, "1-sqrt");
    qp_status st = resolve_device(a, err);
    if (st) return st;
    if (!data_bits_valid(a->bits))
        return qp_fail(err, QP_ERR_INPUT, "--bits %d: use 1..8 for QAT, or 16/32 for full precision", a->bits);
    c->quant.bits = a->bits;
    if ((st = train_quantizer_parse(a->quantizer, a->bits, &c->quant.kind, err))) return st;
    if ((st = check_sources(a, err))) return st;
    if (c->resume && !c->state_path)
        return qp_fail(err, QP_ERR_USAGE, "%s needs --state FILE",
                       c->resume == TRAIN_RESUME_ALWAYS ? "--resume" : "--resume-if-exists");
    c->progress = a->quiet ? 0 : isatty(2) ? 2 : 1; /* 2: the one-line terminal progress */
    return QP_OK;
}

void train_default_run_id(const train_config *c, long pid, char *buf, size_t n)
{
    snprintf(buf, n, "L%d-D%d-f%g-b%d-%s-s%llu-%ld", c->shape.n_layer, c->shape.d_model, c->qat_fraction,
             c->quant.bits, train_quantizer_name(c->quant.kind), (unsigned long long)c->seed, pid);
}

/* No output may be a data file or another output (the state is read on --resume and
 * rewritten, so it counts as an output), and each must be writable now. */
static qp_status check_paths(const train_args *a, const char *train, const char *val, qp_error *err)
{
    const qp_named_path in[] = {{train, "training data"}, {val, "validation data"}};
    const qp_named_path out[] = {{a->runs_out, "--runs-out"}, {a->checkpoint, "--checkpoint"},
                                 {a->export_int, "--export-int"}, {a->c.state_path, "--state"}};
    qp_status st = qp_refuse_output_is_input(out, 4, in, 2, err);
    for (int i = 0; !st && i < 4; i++)
        if (out[i].path) st = qp_check_writable(out[i].path, out[i].what, i == 0, err);
    return st;
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

static qp_status load_tokens(train_args *a, train_inputs *in, qp_error *err)
{
    qp_status st;
    uint32_t v = (uint32_t)a->vocab;
    if ((st = data_tokens_load(in->train_path, v, &in->tt, err)) || (st = data_tokens_load(in->val_path, v, &in->tv, err)))
        return st;
    in->d = (train_data){in->tt.tokens, in->tt.n_tokens, in->tv.tokens, in->tv.n_tokens, in->tt.vocab};
    if (in->tt.vocab != in->tv.vocab)
        return qp_fail(err, QP_ERR_INPUT, "%s has vocabulary %u but %s %u: prepare them together", in->train_path,
                       in->tt.vocab, in->val_path, in->tv.vocab);
    a->c.shape.vocab = (int)in->tt.vocab;
    snprintf(in->dataset, sizeof in->dataset, "%s", in->tt.dataset);
    return QP_OK;
}

static qp_status load_text(train_args *a, train_inputs *in, qp_error *err)
{
    qp_status st;
    if ((st = read_text(a->train_text, &in->xt, &in->d.n_train, err)) ||
        (st = read_text(a->val_text, &in->xv, &in->d.n_val, err)))
        return st;
    in->d.train = in->xt;
    in->d.val = in->xv;
    in->d.vocab = 256;
    const char *b = strrchr(a->train_text, '/');
    snprintf(in->dataset, sizeof in->dataset, "text:%s", b ? b + 1 : a->train_text);
    return QP_OK;
}

/* --data PREFIX: qatplan's PREFIX.train.tok first; else, when there, llm.c's PREFIX_train.bin
 * or nanoGPT's PREFIX/train.bin (with their val files); else the .tok names, so that the error
 * names the files `qatplan data prepare` writes. */
static void data_paths(const char *prefix, train_inputs *in)
{
    static const char *const sfx[3][2] = {
        {".train.tok", ".val.tok"}, {"_train.bin", "_val.bin"}, {"/train.bin", "/val.bin"}};
    for (int k = 0; k < 3; k++) {
        snprintf(in->train_path, sizeof in->train_path, "%s%s", prefix, sfx[k][0]);
        snprintf(in->val_path, sizeof in->val_path, "%s%s", prefix, sfx[k][1]);
        if (access(in->train_path, F_OK) == 0) return;
    }
    snprintf(in->train_path, sizeof in->train_path, "%s%s", prefix, sfx[0][0]);
    snprintf(in->val_path, sizeof in->val_path, "%s%s", prefix, sfx[0][1]);
}

qp_status train_inputs_load(train_args *a, train_inputs *in, qp_error *err)
{
    memset(in, 0, sizeof *in);
    int tok = a->data || a->train_tokens;
    if (!tok && a->vocab)
        return qp_fail(err, QP_ERR_USAGE, "--vocab applies to token files; raw text is bytes (vocabulary 256): "
                                          "drop --vocab");
    if (a->data) data_paths(a->data, in);
    else if (tok) {
        snprintf(in->train_path, sizeof in->train_path, "%s", a->train_tokens);
        snprintf(in->val_path, sizeof in->val_path, "%s", a->val_tokens);
    }
    qp_status st = check_paths(a, tok ? in->train_path : a->train_text, tok ? in->val_path : a->val_text, err);
    if (!st) st = tok ? load_tokens(a, in, err) : load_text(a, in, err);
    if (st) return st;
    a->c.dataset = a->dataset ? a->dataset : in->dataset;
    a->c.run_id_auto = !a->run_id || !a->run_id[0];
    if (a->c.run_id_auto) train_default_run_id(&a->c, (long)getpid(), in->run_id, sizeof in->run_id);
    else snprintf(in->run_id, sizeof in->run_id, "%s", a->run_id);
    a->c.run_id = in->run_id;
    return QP_OK;
}

void train_inputs_free(train_inputs *in)
{
    if (!in) return;
    data_tokens_free(&in->tt);
    data_tokens_free(&in->tv);
    free(in->xt);
    free(in->xv);
    memset(in, 0, sizeof *in);
}
