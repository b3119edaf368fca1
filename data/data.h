/* data.h: qatplan's data module: run records, law files, token datasets, downloads.
 * Formats are documented in docs/formats.md. Public symbols are prefixed data_. */
#ifndef DATA_H
#define DATA_H

#include <stddef.h>
#include <stdint.h>

#include "qp.h"

/* ======================================================================== */
/* Run records: one JSON object per line, one per training run.              */
/* ======================================================================== */

#define DATA_RUN_SCHEMA "qatplan-run-v1"

typedef enum {
    DATA_SCHED_CLASSIC = 0, /* FP with its own decay, then QAT with re-warmup and decay */
    DATA_SCHED_FUSED,       /* FP warmup+stable, QAT starts at peak LR, decay during QAT */
    DATA_SCHED_FP_ONLY,     /* f = 0: no QAT tokens (the final model is quantized after training) */
    DATA_SCHED_QAT_ONLY,    /* f = 1: QAT from scratch */
    DATA_SCHED_COUNT_
} data_schedule;

typedef enum { DATA_RUN_OK = 0, DATA_RUN_DIVERGED, DATA_RUN_FAILED, DATA_RUN_STATUS_COUNT_ } data_run_status;

const char *data_schedule_name(data_schedule s);
qp_status data_schedule_parse(const char *name, data_schedule *out, qp_error *err);
const char *data_run_status_name(data_run_status s);

typedef struct {
    int n_layer, d_model, n_head, n_kv_head, d_ff, context, vocab; /* 0 = unknown */
} data_model_shape;

/* Optional real-valued fields hold NAN when not recorded; the writer omits them and the
 * reader leaves them NAN. `loss` is always written: a non-finite loss (diverged run) is
 * written explicitly as the string "NaN", "Infinity" or "-Infinity", never as null. */
typedef struct {
    char run_id[96];
    data_model_shape shape;
    double n_params;          /* N: all parameters, embeddings included (the law's N) */
    double n_params_nonembed; /* parameters outside the embedding/head; NAN if unknown */
    double d_fp;              /* tokens trained in full precision */
    double d_qat;             /* tokens trained with quantization-aware training */
    int bits;                 /* QAT weight bit width; 16 or 32 = full precision */
    char quantizer[24];       /* "binary", "ternary", "seq", "lsq", "asym", "none" */
    int embed_bits;           /* bit width of embeddings/head; 0 = full precision */
    int group_size;           /* quantizer group size along the input; 0 = per row */
    data_schedule schedule;
    double loss;              /* final validation loss of the quantized model, nats/token */
    double loss_fp_switch;    /* FP validation loss at the FP->QAT switch; NAN if no FP phase */
    double val_bpb;           /* final validation bits per byte; NAN if unknown */
    uint64_t seed;
    char dataset[96];
    data_run_status status;
    char reason[256];         /* why a run diverged or failed; empty when ok */
    double wall_seconds;      /* NAN if unknown */
    char code_version[64];
    /* training settings (optional: NAN / 0 / "" when unknown) */
    double lr_peak;
    double batch_tokens;
    double decay_frac;        /* decay length as a fraction of the phase it decays */
    char decay_shape[16];     /* "linear" or "1-sqrt" */
    int optimizer_reset;      /* -1 unknown, 0 kept, 1 reset at the FP->QAT switch */
    char device[16];          /* "cpu", "cuda" */
} data_run;

/* Defaults: optional numbers NAN, ints 0 (optimizer_reset -1), strings empty,
 * status ok, schedule classic. */
void data_run_init(data_run *r);
/* D_total = d_fp + d_qat. */
double data_run_tokens(const data_run *r);
/* 1 when bits >= 16 (a full-precision run). */
int data_run_is_fp(const data_run *r);
/* Structural check (positive N, non-negative tokens, bits in 1..32, schedule consistent
 * with the token split). Returns QP_ERR_INPUT with a message on failure. */
qp_status data_run_validate(const data_run *r, qp_error *err);

typedef struct {
    data_run *runs;
    size_t n, cap;
} data_run_list;

void data_run_list_init(data_run_list *l);
void data_run_list_free(data_run_list *l); /* safe on NULL and on an initialised empty list */
qp_status data_run_list_push(data_run_list *l, const data_run *r, qp_error *err);

/* One run record as a single-line JSON object (malloc'ed, no trailing newline). */
char *data_run_to_json(const data_run *r);
/* Append one run record as one whole line (see qp_append_line). */
qp_status data_run_append(const char *path, const data_run *r, qp_error *err);
/* Parse JSONL text. `name` is used in messages ("runs.jsonl:12: ..."). Blank lines and
 * lines starting with '#' are skipped. Appends to `out`. Refuses malformed lines. */
qp_status data_runs_parse_jsonl(const char *text, const char *name, data_run_list *out,
                                qp_error *err);
/* Parse CSV with a header naming at least N, D_fp, D_qat, bits, loss (case-insensitive;
 * optional: run_id, schedule, seed, dataset, status). bits 16 or 32 = full precision. */
qp_status data_runs_parse_csv(const char *text, const char *name, data_run_list *out,
                              qp_error *err);
/* Read a run-record file, JSONL or CSV (by extension .csv, else by content). */
qp_status data_runs_read(const char *path, data_run_list *out, qp_error *err);

/* ======================================================================== */
/* Law files (JSON): a loss-law form, its coefficients by name, provenance.  */
/* ======================================================================== */

#define DATA_LAW_SCHEMA "qatplan-law-v1"
#define DATA_LAW_MAX_COEF 16

typedef enum {
    DATA_LAW_CHINCHILLA = 0, /* E, A, B, alpha, beta: full-precision loss */
    DATA_LAW_QAT,            /* Chinchilla part + three QAT penalty terms (16 coefficients) */
    DATA_LAW_FRACTION,       /* a: f_hat = exp(-a / ln S_total) */
    DATA_LAW_FORM_COUNT_
} data_law_form;

const char *data_law_form_name(data_law_form f);
qp_status data_law_form_parse(const char *name, data_law_form *out, qp_error *err);
int data_law_ncoef(data_law_form f);
const char *data_law_coef_name(data_law_form f, int i);
/* Index of coefficient `name` in form f, or -1. */
int data_law_coef_index(data_law_form f, const char *name);

typedef struct {
    char source[512];     /* where the data came from ("built-in: ...", file names) */
    char method[256];     /* how it was fitted */
    char created[32];     /* UTC ISO 8601; "" for built-in laws */
    char code_version[64];
    int n_runs;           /* runs used in the fit (0 = not fitted by qatplan) */
    int n_excluded;       /* runs excluded (bad, diverged, duplicate) */
    double n_min, n_max;  /* range of N (all parameters) fitted on; NAN if unknown */
    double d_min, d_max;  /* range of D_total (tokens) fitted on; NAN if unknown */
    double s_min, s_max;  /* range of S_total fitted on; NAN if unknown */
    int bits[16];         /* bit widths present in the fit data */
    int n_bits;
    /* fit quality; NAN when not available */
    double rmse_log, mae_log, r2, huber_objective, loo_rmse_log;
    int starts, starts_at_best;
} data_law_provenance;

typedef struct {
    data_law_form form;
    double coef[DATA_LAW_MAX_COEF];
    /* Bootstrap: confidence interval per coefficient and the raw samples (row-major,
     * n_samples x ncoef). has_interval = 0 and samples = NULL when not bootstrapped. */
    int has_interval;
    double ci_level;      /* e.g. 0.95 */
    double ci_lo[DATA_LAW_MAX_COEF], ci_hi[DATA_LAW_MAX_COEF];
    int n_samples;
    double *samples;
    data_law_provenance prov;
} data_law;

/* Zeroes the law, sets the form and NAN provenance ranges. */
void data_law_init(data_law *law, data_law_form form);
void data_law_free(data_law *law); /* frees samples; safe on NULL */
/* Deep copy (samples included). */
qp_status data_law_copy(data_law *dst, const data_law *src, qp_error *err);
/* Refuses non-finite coefficients, intervals or samples. */
qp_status data_law_validate(const data_law *law, qp_error *err);
/* Pretty-printed JSON (malloc'ed), or NULL with err set when the law holds a non-finite value. */
char *data_law_to_json(const data_law *law, qp_error *err);
qp_status data_law_parse(const char *json, const char *name, data_law *out, qp_error *err);
qp_status data_law_read(const char *path, data_law *out, qp_error *err);
qp_status data_law_write(const char *path, const data_law *law, qp_error *err);

/* ======================================================================== */
/* Token datasets (see docs/formats.md, "Token files").                      */
/* ======================================================================== */

#define DATA_TOKENS_MAGIC 0x4b4f5451u /* "QTOK" little-endian */
#define DATA_TOKENS_VERSION 1

typedef struct {
    uint32_t vocab;       /* vocabulary size (256 for bytes) */
    uint64_t n_tokens;
    uint16_t *tokens;     /* n_tokens token ids, each < vocab */
    char dataset[64];     /* dataset id recorded in the header */
} data_tokens;

qp_status data_tokens_read(const char *path, data_tokens *out, qp_error *err);
qp_status data_tokens_write(const char *path, const uint16_t *tokens, uint64_t n, uint32_t vocab,
                            const char *dataset_id, qp_error *err);
void data_tokens_free(data_tokens *t); /* safe on NULL */

#endif
