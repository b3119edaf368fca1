/* qatplan data prepare|info: text -> byte-level token files, and token-file headers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data.h"

static void data_help(FILE *f)
{
    fprintf(f,
            "usage: qatplan data prepare --out PREFIX [OPTIONS] TEXT...\n"
            "       qatplan data info FILE.tok...\n\n"
            "prepare: byte-level tokens (vocab 256, byte 0 ends each document) from plain-text files\n"
            "or http(s) URLs. Each file is a document; a file over --doc-bytes is split into documents\n"
            "at chapter headings and blank lines (docs/data.md). Validation is held out by whole\n"
            "documents. Writes PREFIX.train.tok, PREFIX.val.tok and PREFIX.manifest.json.\n"
            "  --out PREFIX        output prefix (required), e.g. data/corpus/default\n"
            "  --val-frac X        share of tokens held out for validation, 0 < X < 0.5 (default 0.05)\n"
            "  --seed S            which documents are held out (default 1)\n"
            "  --dataset-id ID     id recorded in the headers, 1-63 chars (default: PREFIX's file name)\n"
            "  --doc-bytes B       split files larger than B bytes (default 256KiB)\n"
            "  --chunk-bytes B     target size of split documents, cut at blank lines (default 64KiB)\n"
            "  --cache DIR         download cache for URL inputs (default $QATPLAN_CACHE or ~/.cache/qatplan)\n"
            "info: checks each token file (header, size, checksum, ids) and prints its header.\n");
}

static int bytes_opt(const char *s, const char *what, size_t *out)
{
    qp_error err = {0};
    double v;
    qp_status st = qp_parse_bytes(s, what, &v, &err);
    if (!st && (v < 1 || v > 1e15)) st = qp_fail(&err, QP_ERR_INPUT, "%s %s is out of range: use 1 byte to 1PB", what, s);
    if (!st && v != floor(v)) st = qp_fail(&err, QP_ERR_INPUT, "%s %s is not a whole number of bytes", what, s);
    if (st) return cli_report(st, &err);
    *out = (size_t)v;
    return 0;
}

/* Before reading any text: no output file may be one of the inputs or unwritable. */
static int check_paths(const char *prefix, const char **inputs, int n)
{
    qp_error err = {0};
    static const char *const ext[3] = {".train.tok", ".val.tok", ".manifest.json"};
    char *paths[3] = {0};
    qp_named_path out[3];
    qp_named_path *in = calloc((size_t)n + 1, sizeof *in);
    qp_status st = in ? QP_OK : qp_fail(&err, QP_ERR_NOMEM, "out of memory");
    for (int k = 0; !st && k < 3; k++) {
        size_t len = strlen(prefix) + strlen(ext[k]) + 1;
        if (!(paths[k] = malloc(len))) st = qp_fail(&err, QP_ERR_NOMEM, "out of memory");
        else snprintf(paths[k], len, "%s%s", prefix, ext[k]);
        out[k] = (qp_named_path){paths[k], "--out"};
    }
    for (int i = 0; !st && i < n; i++) in[i] = (qp_named_path){inputs[i], "text"};
    if (!st) st = qp_refuse_output_is_input(out, 3, in, (size_t)n, &err);
    for (int k = 0; !st && k < 3; k++) st = qp_check_writable(paths[k], "--out", 0, &err);
    for (int k = 0; k < 3; k++) free(paths[k]);
    free(in);
    return cli_report(st, &err);
}

static int prepare(int argc, char **argv)
{
    data_prepare_options o;
    data_prepare_options_init(&o);
    const char *out = NULL;
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n = 0, rc = 0;
    qp_error err = {0};
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            data_help(stdout);
            free(inputs);
            return 0;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o") || !strcmp(a, "--val-frac") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--dataset-id") || !strcmp(a, "--doc-bytes") || !strcmp(a, "--chunk-bytes") ||
                   !strcmp(a, "--cache")) {
            if (!has_val) {
                fprintf(stderr, "qatplan: %s needs a value: see 'qatplan data --help'\n", a);
                rc = 2;
                break;
            }
            const char *v = argv[++i];
            qp_status st = QP_OK;
            if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v;
            else if (!strcmp(a, "--val-frac")) st = qp_parse_real(v, "--val-frac", 0, 0.5, &o.val_frac, &err);
            else if (!strcmp(a, "--seed")) {
                long s;
                st = qp_parse_long(v, "--seed", 0, 0x7fffffffffffffffL, &s, &err);
                o.seed = (uint64_t)s;
            } else if (!strcmp(a, "--dataset-id")) o.dataset_id = v;
            else if (!strcmp(a, "--doc-bytes")) rc = bytes_opt(v, "--doc-bytes", &o.doc_bytes);
            else if (!strcmp(a, "--chunk-bytes")) rc = bytes_opt(v, "--chunk-bytes", &o.chunk_bytes);
            else o.cache_dir = v;
            if (st) rc = cli_report(st, &err);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "qatplan: unknown option '%s' for 'data prepare': see 'qatplan data --help'\n", a);
            rc = 2;
        } else inputs[n++] = a;
    }
    if (!rc && !out) {
        fprintf(stderr, "qatplan: data prepare needs --out PREFIX (e.g. --out data/corpus/mine)\n");
        rc = 2;
    }
    if (!rc && n == 0) {
        fprintf(stderr, "qatplan: data prepare needs at least one text file\n");
        rc = 2;
    }
    if (!rc && o.min_doc_bytes > o.chunk_bytes) o.min_doc_bytes = o.chunk_bytes;
    if (!rc) rc = check_paths(out, inputs, n);
    if (!rc) {
        data_prepare_result r;
        qp_status st = data_prepare(out, inputs, n, &o, &r, &err);
        if (st) rc = cli_report(st, &err);
        else
            printf("%s.train.tok: %llu tokens in %llu documents\n"
                   "%s.val.tok: %llu tokens in %llu documents (%.2f%% of tokens)\n"
                   "%s.manifest.json: %d sources\n",
                   out, (unsigned long long)r.train_tokens, (unsigned long long)r.train_docs, out,
                   (unsigned long long)r.val_tokens, (unsigned long long)r.val_docs,
                   100.0 * (double)r.val_tokens / (double)(r.train_tokens + r.val_tokens), out, r.n_sources);
    }
    free(inputs);
    return rc;
}

static int info(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "qatplan: data info needs a token file: qatplan data info FILE.tok\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        qp_error err = {0};
        data_tokens_header h;
        data_tokens t;
        /* Full read: info also vouches for the checksum and the ids. */
        qp_status st = data_tokens_read_header(argv[i], &h, &err);
        if (!st) st = data_tokens_read(argv[i], &t, &err);
        if (st) return cli_report(st, &err);
        data_tokens_free(&t);
        char nb[32];
        printf("%s\n  format        qatplan token file v%u (header %u bytes, little-endian uint16 ids)\n"
               "  dataset       %s\n  vocab         %u\n  tokens        %llu (%s)\n"
               "  documents     %llu%s\n  checksum      %016llx (FNV-1a 64, verified)\n  file size     %llu bytes\n",
               argv[i], h.version, h.header_bytes, h.dataset[0] ? h.dataset : "(none)", h.vocab,
               (unsigned long long)h.n_tokens, qp_format_count((double)h.n_tokens, nb, sizeof nb),
               (unsigned long long)h.n_docs, h.n_docs ? "" : " (not recorded)", (unsigned long long)h.checksum,
               (unsigned long long)h.file_bytes);
    }
    return 0;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        data_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "prepare")) return prepare(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return info(argc - 1, argv + 1);
    fprintf(stderr, "qatplan: unknown data subcommand '%s': use 'qatplan data prepare' or 'qatplan data info'\n",
            argv[1]);
    return 2;
}
