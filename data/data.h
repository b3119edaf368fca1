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

/* ---- the run vocabulary: one owner for each concept (docs/design.md) ---- */

/* A Llama-style model's shape; the trainer's train_shape is this struct. */
typedef struct {
    int n_layer, d_model, n_head, n_kv_head, d_ff, context, vocab; /* 0 = unknown */
} data_model_shape;

/* All parameters of a shape (the law's N: embeddings counted once since tied) and those
 * outside the embedding (norm gains included). Quantizer step sizes excluded. The shape's
 * n_kv_head, d_ff and vocab must be filled in. */
double data_shape_params(const data_model_shape *s);
double data_shape_params_nonembed(const data_model_shape *s);

/* Bit widths: 1..8 are QAT widths; DATA_FP_BITS and above (16 or 32) are full precision. */
#define DATA_FP_BITS 16
int data_bits_valid(int bits); /* 1..8, 16 or 32 */
int data_bits_is_fp(int bits); /* bits >= DATA_FP_BITS */

/* The schedule a token split resolves to: fp-only for full precision or no QAT tokens,
 * qat-only for no FP tokens, else `chosen` when it is fused, classic otherwise. */
data_schedule data_schedule_resolve(int bits, double d_fp, double d_qat, data_schedule chosen);

/* Run groups: runs of the same N (within 2%) and D_total (within 5%) differ only in their
 * split, bit width, schedule or seed. */
#define DATA_GROUP_N_TOL 0.02
#define DATA_GROUP_D_TOL 0.05
int data_group_same(double n_a, double d_a, double n_b, double d_b);

/* The best QAT fraction of a group: f[0..n) distinct and ascending, y the mean log loss at
 * each. The parabola in (sqrt f, y) through the argmin and its two neighbours (the three
 * lowest-lying points at an edge); its vertex when convex, clamped to those points' range;
 * the argmin otherwise (docs/fitter.md). *f_argmin (may be NULL) gets the argmin; NAN when
 * n < 1. */
double data_best_fraction(const double *f, const double *y, int n, double *f_argmin);

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
    char precision[8];        /* "fp32", "bf16" (matrix products; master weights are fp32) */
    /* training method and its costs (optional: NAN / "" when not recorded; never written
     * non-finite) */
    char method[16];          /* "" = "qat" (records written before methods existed) */
    double lr_qat;            /* peak learning rate of the QAT phase */
    double loss_ptq;          /* validation loss quantized at the switch, before any QAT step */
    char init_checkpoint[65]; /* SHA-256 (hex) of the --init checkpoint; "" = none */
    char trunk[128];          /* a branch: the trunk's run id @ tokens it had trained; "" = none */
    double flops_fp, flops_qat; /* GEMM FLOPs counted per phase */
    double trainable_params_qat; /* most scalars trained at any QAT step */
    double wall_seconds_qat;  /* wall time of the QAT phase alone */
    double peak_rss_bytes;    /* the process's peak resident memory (getrusage) */
    double train_state_bytes; /* the trainer's own allocations (deterministic) */
    char gemm[48];            /* the matrix-product library and ISA: "onednn-2.6.3 avx512_core_bf16" */
    /* EfQAT (method "efqat"; NAN / "" otherwise) */
    double unfrozen_ratio;     /* --unfrozen: share of rows (lwpn: weights) asked to train */
    double unfrozen_ratio_eff; /* time average over the QAT steps of the freezable weights' unfrozen share */
    char freeze_mode[8];       /* "cwpl", "cwpn", "lwpn" */
    double refresh_tokens;     /* tokens between re-selections (cwpn, lwpn) */
    /* EfficientQAT (method blockap, e2eqp, efficientqat; NAN when not recorded) */
    double blockap_tokens, blockap_epochs, e2e_tokens; /* calibration tokens, epochs, E2E-QP tokens */
    double blockap_mse;       /* mean over blocks of the final validation MSE */
    double flops_blockap, flops_e2eqp; /* GEMM FLOPs of each phase */
    double storage_bits_per_weight; /* block linears: codes, FP16 scales, b-bit zero points */
    double train_state_bytes_blockap, train_state_bytes_e2eqp; /* allocations during each phase */
    double peak_rss_bytes_blockap; /* getrusage peak at the end of Block-AP */
} data_run;

/* The record's training method: r->method, or "qat" when it has none. */
const char *data_run_method(const data_run *r);

/* Training methods of the QAT phase, as run records name them ("method"; absent = qat): full
 * QAT, EfQAT (row freezing), EfficientQAT's Block-AP and E2E-QP alone and together. The one
 * owner of the names: the trainer's --method, the fitter's and the planner's use these. */
typedef enum {
    DATA_METHOD_QAT = 0,
    DATA_METHOD_EFQAT,
    DATA_METHOD_BLOCKAP,
    DATA_METHOD_E2EQP,
    DATA_METHOD_EFFICIENTQAT,
    DATA_METHOD_COUNT_
} data_method;
#define DATA_METHOD_CHOICES "qat|efqat|blockap|e2eqp|efficientqat"
#define DATA_METHOD_LIST "qat, efqat, blockap, e2eqp or efficientqat"
const char *data_method_name(data_method m); /* "?" outside the enum */
/* QP_ERR_USAGE with "unknown training method 'x': use qat, ..." (callers may prefix the option). */
qp_status data_method_parse(const char *name, data_method *out, qp_error *err);

/* Defaults: optional numbers NAN, ints 0 (optimizer_reset -1), strings empty,
 * status ok, schedule classic. */
void data_run_init(data_run *r);
/* D_total = d_fp + d_qat. */
double data_run_tokens(const data_run *r);
/* 1 for a full-precision run (data_bits_is_fp). */
int data_run_is_fp(const data_run *r);
/* The QAT fraction D_qat / D_total; 0 for a full-precision run. */
double data_run_fraction(const data_run *r);
/* 1 when the two runs belong to one group (data_group_same). */
int data_run_same_group(const data_run *a, const data_run *b);
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
 * lines starting with '#' are skipped; a UTF-8 BOM at the start is skipped. Appends to `out`.
 * Refuses malformed lines. Only N, tokens (d_fp + d_qat, or tokens + qat_fraction), bits and
 * loss are required (other tools' names accepted, all missing ones named at once); schema,
 * run_id ("FILE:line-N"), schedule (data_schedule_resolve) and status (ok; diverged for a
 * non-finite loss) default (docs/formats.md). qatplan's own records round-trip exactly. */
qp_status data_runs_parse_jsonl(const char *text, const char *name, data_run_list *out,
                                qp_error *err);
/* Parse CSV or tab-separated text (the header line decides; a UTF-8 BOM is skipped) with a
 * header naming N, tokens (D_fp and D_qat, or total tokens and a QAT fraction), bits and
 * loss, under any of their accepted names (case-insensitive, docs/formats.md; optional:
 * run_id, schedule, seed, dataset, status, reason). One error names every missing column.
 * Counts take K/M/B/T suffixes ("125M"). bits 16 or 32 (fp16, bf16, fp32) = full precision.
 * A non-finite or empty loss, or a status other than ok, reads as a diverged or failed run
 * with a reason (the fitter excludes, counts and names it). */
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
    DATA_LAW_PENALTY,        /* the qat form's three penalty terms alone (11 coefficients, theta..rho):
                                composes with any full-precision law of the same units */
    DATA_LAW_EFFICIENCY,     /* eta_1 .. eta_8: a training method's QAT-token efficiency per bit
                                width against a qat law, L_m(N, D_fp, D_qat, B) =
                                L_qat(N, D_fp, eta_B D_qat, B); 0 = not fitted at that width;
                                prov.run_method names the method */
    DATA_LAW_FORM_COUNT_
} data_law_form;

const char *data_law_form_name(data_law_form f);
qp_status data_law_form_parse(const char *name, data_law_form *out, qp_error *err);
int data_law_ncoef(data_law_form f);
const char *data_law_coef_name(data_law_form f, int i);
/* Index of coefficient `name` in form f, or -1. */
int data_law_coef_index(data_law_form f, const char *name);

/* What a law's loss is measured in. Losses of different units are never compared. */
typedef enum {
    DATA_UNITS_UNKNOWN = 0,   /* law files written before units were recorded */
    DATA_UNITS_NATS_PER_TOKEN,
    DATA_UNITS_NATS_PER_BYTE, /* byte-level models: a token is a byte */
    DATA_UNITS_COUNT_
} data_loss_units;

/* "unknown", "nats_per_token", "nats_per_byte" (the law file's spelling). */
const char *data_loss_units_name(data_loss_units u);
qp_status data_loss_units_parse(const char *name, data_loss_units *out, qp_error *err);

typedef struct {
    char source[512];     /* where the data came from ("built-in: ...", file names) */
    char method[256];     /* how it was fitted */
    char created[32];     /* UTC ISO 8601; "" for built-in laws */
    char code_version[64];
    int n_runs;           /* runs used in the fit (0 = not fitted by qatplan) */
    int n_excluded;       /* runs excluded (bad, diverged, duplicate) */
    char run_method[16];  /* training method of the QAT runs fitted ("" = unknown; JSON
                           * "run_method", since "method" names the fitting method) */
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
    data_loss_units units; /* of the loss (or, for a penalty, of the loss it adds to) */
    int vocab;             /* vocabulary size of the tokenizer; 0 = unknown */
    char tokenizer[64];    /* e.g. "GPT-2 BPE"; "" = unknown */
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
/* Token datasets (see docs/data.md, "Token files").                         */
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

/* The header alone (data_tokens_read_header checks it against the file size but reads
 * no tokens; data_tokens_read also verifies the checksum and every id). */
typedef struct {
    uint32_t version, header_bytes, vocab;
    uint64_t n_tokens;
    uint64_t n_docs;      /* documents in the file; 0 = not recorded */
    uint64_t checksum;    /* FNV-1a 64 of the token bytes as stored */
    uint64_t file_bytes;
    char dataset[64];
} data_tokens_header;

qp_status data_tokens_read_header(const char *path, data_tokens_header *out, qp_error *err);
/* data_tokens_write plus the number of documents recorded in the header. */
qp_status data_tokens_write_docs(const char *path, const uint16_t *tokens, uint64_t n, uint32_t vocab,
                                 uint64_t n_docs, const char *dataset_id, qp_error *err);
/* The header's checksum of n tokens. */
uint64_t data_tokens_checksum(const uint16_t *tokens, uint64_t n);

/* Foreign token files (docs/data.md, "Token shards from llm.c and nanoGPT"): an llm.c shard is
 * 256 little-endian int32 (magic 20240520, version 1, token count, zeros) then uint16 ids; a
 * raw file (nanoGPT's train.bin) is uint16 ids alone, so its vocabulary must be given. */
#define DATA_SHARD_MAGIC 20240520u
#define DATA_SHARD_VERSION 1
#define DATA_SHARD_HEADER_BYTES 1024u
#define DATA_GPT2_VOCAB 50257u
/* Any token file by content: a qatplan token file (QTOK), an llm.c shard, or, for a name ending
 * in .bin and vocab given, raw uint16 ids. vocab 0 = from the file (an llm.c shard: GPT-2's
 * 50257); a vocab given for a qatplan token file must match its header. Every id is checked
 * against the vocabulary. out->dataset is "llmc:NAME" or "raw:NAME" for the foreign formats. */
qp_status data_tokens_load(const char *path, uint32_t vocab, data_tokens *out, qp_error *err);

/* ======================================================================== */
/* Corpus preparation: text files -> byte-level train/validation token files. */
/* ======================================================================== */

#define DATA_CORPUS_SCHEMA "qatplan-corpus-v1"
#define DATA_EOD_TOKEN 0 /* byte 0 ends every document; text containing NUL is refused */

typedef struct {
    double val_frac;      /* share of tokens held out for validation, by whole documents (0.05) */
    uint64_t seed;        /* which documents are held out (1) */
    const char *dataset_id; /* header/manifest id; NULL = PREFIX's file name */
    size_t doc_bytes;     /* files larger than this are split into documents (262144) */
    size_t chunk_bytes;   /* target document size when splitting at blank lines (65536) */
    size_t min_doc_bytes; /* a chapter heading starts a new document past this size (4096) */
    const char *cache_dir; /* for http(s) inputs; NULL = default cache */
} data_prepare_options;

void data_prepare_options_init(data_prepare_options *o);

typedef struct {
    uint64_t train_docs, val_docs, train_tokens, val_tokens;
    int n_sources;
} data_prepare_result;

/* Reads the text inputs (files or http(s) URLs), splits them into documents, holds out
 * whole documents for validation and writes PREFIX.train.tok, PREFIX.val.tok and
 * PREFIX.manifest.json (each atomically). Deterministic for given inputs, order and seed. */
qp_status data_prepare(const char *prefix, const char *const *inputs, int n_inputs,
                       const data_prepare_options *o, data_prepare_result *res, qp_error *err);

/* Document boundaries of one text (see docs/data.md, "Documents"): writes up to `max`
 * end offsets into ends (ends[k] = one past the last byte of document k) and the count
 * into *n. Empty/whitespace-only documents are kept as boundaries; data_prepare drops them. */
qp_status data_split_documents(const char *text, size_t len, const data_prepare_options *o, size_t **ends,
                               size_t *n, qp_error *err);

/* ======================================================================== */
/* Downloads and checksums.                                                  */
/* ======================================================================== */

typedef struct {
    const char *sha256;        /* expected hex digest of the file, or NULL */
    int retries;               /* extra attempts after transient failures (5) */
    double stall_seconds;      /* abort an attempt that got no byte (or under low_speed_bytes/s) for this long (30) */
    long low_speed_bytes;      /* bytes per second that count as progress (1) */
    double connect_timeout_s;  /* per attempt (30) */
    double backoff_s;          /* first retry delay, doubled each retry (1) */
    double backoff_max_s;      /* cap on one delay (60) */
    int progress;              /* 1 = progress line on stderr, 0 = none; -1 = when stderr is a tty (-1) */
} data_fetch_options;

void data_fetch_options_init(data_fetch_options *o);
/* Download url (http or https) to out_path: OUT.part beside it (flock'ed: a second fetch
 * into the same path waits), renamed into place only after a complete, checked download.
 * Transient failures (connection errors, stalls, HTTP 408/429/5xx) are retried with
 * exponential backoff, resuming with a Range request when the server answers 206 for the
 * same version (ETag or Last-Modified; without one, from zero). A failure, or SIGINT/SIGTERM
 * during the download (QP_ERR_INTERRUPTED), leaves no file at out_path and no OUT.part; a
 * killed process leaves OUT.part and OUT.part.meta, which the next fetch of the same URL
 * into out_path resumes. */
qp_status data_fetch(const char *url, const char *out_path, const data_fetch_options *o, qp_error *err);
/* A local path for `path_or_url`: a copy of path for a file, or for an http(s) URL a fresh
 * download into cache_dir (NULL: $QATPLAN_CACHE, else $XDG_CACHE_HOME/qatplan, else
 * ~/.cache/qatplan). The cache file keeps the URL's file name. *local_path is malloc'ed. */
qp_status data_open_input(const char *path_or_url, const char *cache_dir, char **local_path, qp_error *err);

/* SHA-256 of a file as 64 lower-case hex digits plus NUL. */
qp_status data_sha256_file(const char *path, char hex[65], qp_error *err);
/* SHA-256 of a buffer, hex. */
void data_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
