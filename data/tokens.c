/* Token files: a fixed 128-byte little-endian header, then n_tokens uint16 token ids.
 * Layout (docs/data.md, "Token files"):
 *   0  u32 magic DATA_TOKENS_MAGIC ("QTOK")   4  u32 version
 *   8  u32 header bytes (128)                 12 u32 vocab
 *   16 u64 n_tokens                           24 u64 n_docs (0 = not recorded)
 *   32 u64 FNV-1a 64 of the token bytes       40 char dataset[64], NUL-padded
 *   104..127 reserved, zero
 * The reader checks every field, the exact file size, the checksum and every token id,
 * so a truncated, foreign or corrupted file is refused instead of silently trained on. */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER_BYTES 128u
#define FIX " (regenerate it with 'qatplan data prepare')"

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* FNV-1a 64 over the stored (little-endian) bytes: cheap (about 1 ns/byte), and enough to
 * catch corruption; it is not meant to resist tampering (the manifest has SHA-256). */
static uint64_t fnv1a_tokens(const uint16_t *t, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++) {
        h = (h ^ (t[i] & 0xffu)) * 0x100000001b3ull;
        h = (h ^ (t[i] >> 8)) * 0x100000001b3ull;
    }
    return h;
}

uint64_t data_tokens_checksum(const uint16_t *tokens, uint64_t n) { return fnv1a_tokens(tokens, n); }

static int host_is_le(void)
{
    uint16_t x = 1;
    return *(unsigned char *)&x == 1;
}

qp_status data_tokens_write_docs(const char *path, const uint16_t *tokens, uint64_t n, uint32_t vocab,
                                 uint64_t n_docs, const char *dataset_id, qp_error *err)
{
    if (vocab == 0 || vocab > 65536)
        return qp_fail(err, QP_ERR_INPUT, "%s: vocabulary size %u is out of range 1..65536", path, vocab);
    if (dataset_id && strlen(dataset_id) >= 64)
        return qp_fail(err, QP_ERR_INPUT, "dataset id '%s' is longer than 63 characters: use a shorter --dataset-id",
                       dataset_id);
    for (uint64_t i = 0; i < n; i++)
        if (tokens[i] >= vocab)
            return qp_fail(err, QP_ERR_INPUT, "%s: token %llu has id %u >= vocabulary size %u", path,
                           (unsigned long long)i, tokens[i], vocab);
    if (n > (SIZE_MAX - HEADER_BYTES) / 2)
        return qp_fail(err, QP_ERR_INPUT, "%s: %llu tokens do not fit in memory", path, (unsigned long long)n);
    size_t len = HEADER_BYTES + (size_t)n * 2;
    unsigned char *buf = calloc(1, len);
    if (!buf) return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    put32(buf + 0, DATA_TOKENS_MAGIC);
    put32(buf + 4, DATA_TOKENS_VERSION);
    put32(buf + 8, HEADER_BYTES);
    put32(buf + 12, vocab);
    put64(buf + 16, n);
    put64(buf + 24, n_docs);
    put64(buf + 32, fnv1a_tokens(tokens, n));
    if (dataset_id) memcpy(buf + 40, dataset_id, strlen(dataset_id));
    unsigned char *p = buf + HEADER_BYTES;
    for (uint64_t i = 0; i < n; i++) {
        p[2 * i] = (unsigned char)(tokens[i] & 0xff);
        p[2 * i + 1] = (unsigned char)(tokens[i] >> 8);
    }
    qp_status st = qp_write_file_atomic(path, buf, len, err);
    free(buf);
    return st;
}

qp_status data_tokens_write(const char *path, const uint16_t *tokens, uint64_t n, uint32_t vocab,
                            const char *dataset_id, qp_error *err)
{
    return data_tokens_write_docs(path, tokens, n, vocab, 0, dataset_id, err);
}

/* Parse and check a header against the file size. */
static qp_status check_header(const char *path, const unsigned char *h, uint64_t file_size,
                              data_tokens_header *out, qp_error *err)
{
    uint32_t magic = get32(h);
    if (magic != DATA_TOKENS_MAGIC) {
        if (magic == __builtin_bswap32(DATA_TOKENS_MAGIC))
            return qp_fail(err, QP_ERR_PARSE, "%s: token file written big-endian, which qatplan does not read" FIX,
                           path);
        return qp_fail(err, QP_ERR_PARSE, "%s: not a qatplan token file (bad magic)" FIX, path);
    }
    out->version = get32(h + 4);
    if (out->version != DATA_TOKENS_VERSION)
        return qp_fail(err, QP_ERR_PARSE, "%s: token file version %u, this qatplan reads version %d" FIX, path,
                       out->version, DATA_TOKENS_VERSION);
    out->header_bytes = get32(h + 8);
    if (out->header_bytes != HEADER_BYTES)
        return qp_fail(err, QP_ERR_PARSE, "%s: token file header is %u bytes, expected %u" FIX, path,
                       out->header_bytes, HEADER_BYTES);
    out->vocab = get32(h + 12);
    if (out->vocab == 0 || out->vocab > 65536)
        return qp_fail(err, QP_ERR_PARSE, "%s: vocabulary size %u in the header is out of range 1..65536" FIX, path,
                       out->vocab);
    out->n_tokens = get64(h + 16);
    out->n_docs = get64(h + 24);
    out->checksum = get64(h + 32);
    memcpy(out->dataset, h + 40, 64);
    if (memchr(out->dataset, 0, 64) == NULL)
        return qp_fail(err, QP_ERR_PARSE, "%s: dataset id in the header is not NUL-terminated" FIX, path);
    for (unsigned i = 104; i < HEADER_BYTES; i++)
        if (h[i])
            return qp_fail(err, QP_ERR_PARSE, "%s: reserved header bytes are not zero" FIX, path);
    if (out->n_tokens > (UINT64_MAX - HEADER_BYTES) / 2 || HEADER_BYTES + 2 * out->n_tokens != file_size)
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: file is %llu bytes but its header promises %llu tokens (%llu bytes): truncated or "
                       "corrupt" FIX,
                       path, (unsigned long long)file_size, (unsigned long long)out->n_tokens,
                       (unsigned long long)(HEADER_BYTES + 2 * out->n_tokens));
    return QP_OK;
}

qp_status data_tokens_read_header(const char *path, data_tokens_header *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    unsigned char h[HEADER_BYTES];
    qp_status st = QP_OK;
    if (fstat(fileno(f), &sb) != 0) st = qp_fail(err, QP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = qp_fail(err, QP_ERR_IO, "%s is a directory: give a token file", path);
    else if ((uint64_t)sb.st_size < HEADER_BYTES || fread(h, 1, HEADER_BYTES, f) != HEADER_BYTES)
        st = qp_fail(err, QP_ERR_PARSE, "%s: too short for a token file header (%lld bytes)" FIX, path,
                     (long long)sb.st_size);
    else st = check_header(path, h, (uint64_t)sb.st_size, out, err);
    if (!st) out->file_bytes = (uint64_t)sb.st_size;
    fclose(f);
    return st;
}

qp_status data_tokens_read(const char *path, data_tokens *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    data_tokens_header h;
    qp_status st = data_tokens_read_header(path, &h, err);
    if (st) return st;
    if (h.n_tokens > SIZE_MAX / 2)
        return qp_fail(err, QP_ERR_NOMEM, "%s: %llu tokens do not fit in memory", path,
                       (unsigned long long)h.n_tokens);
    uint16_t *t = malloc(h.n_tokens ? (size_t)h.n_tokens * 2 : 1);
    if (!t) return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s (%llu tokens)", path,
                           (unsigned long long)h.n_tokens);
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(t);
        return qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fseek(f, HEADER_BYTES, SEEK_SET) != 0 || fread(t, 2, (size_t)h.n_tokens, f) != (size_t)h.n_tokens) {
        fclose(f);
        free(t);
        return qp_fail(err, QP_ERR_IO, "%s: short read of the token data (file changed while reading?)", path);
    }
    fclose(f);
    if (!host_is_le())
        for (uint64_t i = 0; i < h.n_tokens; i++) t[i] = (uint16_t)((t[i] >> 8) | (t[i] << 8));
    uint64_t sum = fnv1a_tokens(t, h.n_tokens);
    if (sum != h.checksum) {
        free(t);
        return qp_fail(err, QP_ERR_CHECKSUM, "%s: token data checksum mismatch (file corrupt)" FIX, path);
    }
    for (uint64_t i = 0; i < h.n_tokens; i++)
        if (t[i] >= h.vocab) {
            qp_status s = qp_fail(err, QP_ERR_PARSE, "%s: token %llu has id %u >= vocabulary size %u" FIX, path,
                                  (unsigned long long)i, t[i], h.vocab);
            free(t);
            return s;
        }
    out->vocab = h.vocab;
    out->n_tokens = h.n_tokens;
    out->tokens = t;
    memcpy(out->dataset, h.dataset, sizeof out->dataset);
    out->dataset[sizeof out->dataset - 1] = 0;
    return QP_OK;
}

void data_tokens_free(data_tokens *t)
{
    if (!t) return;
    free(t->tokens);
    t->tokens = NULL;
    t->n_tokens = 0;
}

/* ---- llm.c shards and raw uint16 files ------------------------------------------------ */

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* n uint16 ids from offset off of f, each checked against vocab. */
static qp_status read_ids(const char *path, FILE *f, long off, uint64_t n, uint32_t vocab, data_tokens *out,
                          qp_error *err)
{
    if (n > SIZE_MAX / 2)
        return qp_fail(err, QP_ERR_NOMEM, "%s: %llu tokens do not fit in memory", path, (unsigned long long)n);
    uint16_t *t = malloc(n ? (size_t)n * 2 : 1);
    if (!t) return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s (%llu tokens)", path, (unsigned long long)n);
    if (fseek(f, off, SEEK_SET) != 0 || fread(t, 2, (size_t)n, f) != (size_t)n) {
        free(t);
        return qp_fail(err, QP_ERR_IO, "%s: short read of the token data (file changed while reading?)", path);
    }
    if (!host_is_le())
        for (uint64_t i = 0; i < n; i++) t[i] = (uint16_t)((t[i] >> 8) | (t[i] << 8));
    for (uint64_t i = 0; i < n; i++)
        if (t[i] >= vocab) {
            qp_status s = qp_fail(err, QP_ERR_INPUT,
                                  "%s: token %llu has id %u >= vocabulary size %u: give the tokenizer's "
                                  "vocabulary size with --vocab",
                                  path, (unsigned long long)i, t[i], vocab);
            free(t);
            return s;
        }
    out->vocab = vocab;
    out->n_tokens = n;
    out->tokens = t;
    return QP_OK;
}

/* An llm.c shard whose 1024-byte header h has the shard magic. */
static qp_status read_shard(const char *path, FILE *f, const unsigned char *h, uint64_t size, uint32_t vocab,
                            data_tokens *out, qp_error *err)
{
    uint32_t version = get32(h + 4);
    if (version == 2)
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: llm.c shard version 2 holds uint32 token ids (e.g. Llama 3), which qatplan does not "
                       "train on (ids must fit 16 bits): use a version-1 (uint16, GPT-2 style) shard",
                       path);
    if (version != DATA_SHARD_VERSION)
        return qp_fail(err, QP_ERR_PARSE, "%s: llm.c shard version %u, qatplan reads version %d (uint16 ids): "
                                          "regenerate the shard with llm.c's GPT-2 tokenizer",
                       path, version, DATA_SHARD_VERSION);
    uint64_t n = get32(h + 8);
    if (DATA_SHARD_HEADER_BYTES + 2 * n != size)
        return qp_fail(err, QP_ERR_PARSE,
                       "%s: file is %llu bytes but its llm.c header promises %llu tokens (%llu bytes): truncated "
                       "or corrupt, regenerate it",
                       path, (unsigned long long)size, (unsigned long long)n,
                       (unsigned long long)(DATA_SHARD_HEADER_BYTES + 2 * n));
    qp_status st = read_ids(path, f, DATA_SHARD_HEADER_BYTES, n, vocab ? vocab : DATA_GPT2_VOCAB, out, err);
    if (!st) snprintf(out->dataset, sizeof out->dataset, "llmc:%.58s", base_name(path));
    return st;
}

static int ends_with(const char *s, const char *sfx)
{
    size_t n = strlen(s), m = strlen(sfx);
    return n >= m && !strcmp(s + n - m, sfx);
}

qp_status data_tokens_load(const char *path, uint32_t vocab, data_tokens *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    if (vocab > 65536)
        return qp_fail(err, QP_ERR_INPUT, "--vocab %u: token ids are 16 bits, use 2..65536", vocab);
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    unsigned char h[DATA_SHARD_HEADER_BYTES];
    size_t got = 0;
    qp_status st = QP_OK;
    if (fstat(fileno(f), &sb) != 0) st = qp_fail(err, QP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode)) st = qp_fail(err, QP_ERR_IO, "%s is a directory: give a token file", path);
    else got = fread(h, 1, sizeof h, f);
    uint64_t size = st ? 0 : (uint64_t)sb.st_size;
    int is_raw = ends_with(path, ".bin") && vocab;
    if (!st && got >= 4 && get32(h) == DATA_SHARD_MAGIC) {
        if (got < DATA_SHARD_HEADER_BYTES)
            st = qp_fail(err, QP_ERR_PARSE, "%s: too short for an llm.c shard header (%llu bytes): truncated, "
                                            "regenerate it", path, (unsigned long long)size);
        else st = read_shard(path, f, h, size, vocab, out, err);
    } else if (!st && (got < 4 || get32(h) != DATA_TOKENS_MAGIC) && ends_with(path, ".bin")) {
        if (!is_raw)
            st = qp_fail(err, QP_ERR_USAGE, "%s has no llm.c shard header (magic %u): for raw uint16 token ids "
                                            "(nanoGPT's train.bin) give the vocabulary size with --vocab V",
                         path, DATA_SHARD_MAGIC);
        else if (size % 2)
            st = qp_fail(err, QP_ERR_PARSE, "%s: %llu bytes is odd, so not raw uint16 token ids: truncated or "
                                            "another format", path, (unsigned long long)size);
        else if (!(st = read_ids(path, f, 0, size / 2, vocab, out, err)))
            snprintf(out->dataset, sizeof out->dataset, "raw:%.59s", base_name(path));
    } else if (!st) {
        fclose(f);
        f = NULL;
        st = data_tokens_read(path, out, err);
        if (!st && vocab && vocab != out->vocab) {
            st = qp_fail(err, QP_ERR_INPUT, "--vocab %u but %s records vocabulary %u: drop --vocab", vocab, path,
                         out->vocab);
            data_tokens_free(out);
        }
    }
    if (f) fclose(f);
    return st;
}
