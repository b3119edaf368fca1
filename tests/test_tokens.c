/* Token files: round trips, and every kind of damage refused with a message that says
 * how to fix it (regenerate with qatplan data prepare). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "testutil.h"

static void spit(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void test_roundtrip(void)
{
    qp_error err = {0};
    uint32_t vocabs[] = {256, 50257, 65536};
    for (int k = 0; k < 3; k++) {
        uint64_t n = 10007;
        uint16_t *t = malloc(n * sizeof *t);
        uint64_t x = 12345 + (uint64_t)k;
        for (uint64_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            t[i] = (uint16_t)((x >> 33) % vocabs[k]);
        }
        const char *p = tu_path("rt.tok");
        CU_ASSERT_EQUAL_FATAL(data_tokens_write_docs(p, t, n, vocabs[k], 7, "my-set", &err), QP_OK);
        struct stat sb;
        CU_ASSERT_EQUAL(stat(p, &sb), 0);
        CU_ASSERT_EQUAL((uint64_t)sb.st_size, 128 + 2 * n);
        data_tokens d;
        CU_ASSERT_EQUAL_FATAL(data_tokens_read(p, &d, &err), QP_OK);
        CU_ASSERT_EQUAL(d.vocab, vocabs[k]);
        CU_ASSERT_EQUAL(d.n_tokens, n);
        CU_ASSERT_STRING_EQUAL(d.dataset, "my-set");
        CU_ASSERT(!memcmp(d.tokens, t, n * sizeof *t));
        data_tokens_free(&d);
        data_tokens_header h;
        CU_ASSERT_EQUAL(data_tokens_read_header(p, &h, &err), QP_OK);
        CU_ASSERT_EQUAL(h.n_docs, 7);
        CU_ASSERT_EQUAL(h.checksum, data_tokens_checksum(t, n));
        CU_ASSERT_EQUAL(h.file_bytes, 128 + 2 * n);
        free(t);
    }
    /* empty file and no dataset id */
    CU_ASSERT_EQUAL(data_tokens_write(tu_path("empty.tok"), NULL, 0, 256, NULL, &err), QP_OK);
    data_tokens d;
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("empty.tok"), &d, &err), QP_OK);
    CU_ASSERT_EQUAL(d.n_tokens, 0);
    CU_ASSERT_STRING_EQUAL(d.dataset, "");
    data_tokens_free(&d);
    data_tokens_free(NULL);
}

static void test_layout_is_little_endian(void)
{
    qp_error err = {0};
    uint16_t t[2] = {0x0102, 0x00ff};
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(tu_path("le.tok"), t, 2, 1000, "x", &err), QP_OK);
    size_t n;
    unsigned char *b = (unsigned char *)tu_read(tu_path("le.tok"), &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(n, 132);
    const unsigned char magic[4] = {'Q', 'T', 'O', 'K'};
    CU_ASSERT(!memcmp(b, magic, 4));
    CU_ASSERT_EQUAL(b[4], 1);    /* version */
    CU_ASSERT_EQUAL(b[8], 128);  /* header bytes */
    CU_ASSERT_EQUAL(b[12], 0xe8); /* vocab 1000 = 0x3e8 */
    CU_ASSERT_EQUAL(b[13], 0x03);
    CU_ASSERT_EQUAL(b[16], 2);   /* n_tokens */
    CU_ASSERT_EQUAL(b[40], 'x');
    CU_ASSERT_EQUAL(b[128], 0x02);
    CU_ASSERT_EQUAL(b[129], 0x01);
    CU_ASSERT_EQUAL(b[130], 0xff);
    CU_ASSERT_EQUAL(b[131], 0x00);
    free(b);
}

static void test_writer_refuses(void)
{
    qp_error err = {0};
    uint16_t t[3] = {1, 256, 2};
    CU_ASSERT_EQUAL(data_tokens_write(tu_path("bad.tok"), t, 3, 256, "x", &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "256"));
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(tu_path("bad.tok"), &sb), 0);
    char longid[80];
    memset(longid, 'a', 79);
    longid[79] = 0;
    CU_ASSERT_EQUAL(data_tokens_write(tu_path("bad.tok"), t, 1, 256, longid, &err), QP_ERR_INPUT);
    CU_ASSERT_EQUAL(data_tokens_write(tu_path("bad.tok"), t, 1, 0, "x", &err), QP_ERR_INPUT);
}

typedef struct {
    const char *what;
    size_t off;      /* byte to change (SIZE_MAX: none) */
    unsigned char v; /* new value */
    int resize;      /* add (+1) or cut (-1) a byte at the end */
    qp_status want;
    const char *needle;
} damage;

static void test_reader_refuses_damage(void)
{
    qp_error err = {0};
    uint16_t t[64];
    for (int i = 0; i < 64; i++) t[i] = (uint16_t)(i * 3);
    const char *good = tu_path("good.tok");
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(good, t, 64, 256, "set", &err), QP_OK);
    size_t n;
    unsigned char *orig = (unsigned char *)tu_read(good, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
    const damage cases[] = {
        {"bad magic", 0, 'X', 0, QP_ERR_PARSE, "bad magic"},
        {"version 2", 4, 2, 0, QP_ERR_PARSE, "version 2"},
        {"header size", 8, 64, 0, QP_ERR_PARSE, "header is 64 bytes"},
        {"vocab 0", 13, 0, 0, QP_ERR_PARSE, "out of range"},
        {"n_tokens +1", 16, 65, 0, QP_ERR_PARSE, "truncated or corrupt"},
        {"extra byte", SIZE_MAX, 0, 1, QP_ERR_PARSE, "truncated or corrupt"},
        {"cut byte", SIZE_MAX, 0, -1, QP_ERR_PARSE, "truncated or corrupt"},
        {"reserved", 120, 1, 0, QP_ERR_PARSE, "reserved"},
        {"flipped token", 128 + 10, 0x55, 0, QP_ERR_CHECKSUM, "checksum"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char *b = malloc(n + 1);
        memcpy(b, orig, n);
        size_t len = n;
        if (cases[k].off != SIZE_MAX) b[cases[k].off] = cases[k].v;
        if (cases[k].resize > 0) b[len++] = 0;
        if (cases[k].resize < 0) len--;
        spit(tu_path("dam.tok"), b, len);
        free(b);
        data_tokens d;
        qp_status st = data_tokens_read(tu_path("dam.tok"), &d, &err);
        if (st != cases[k].want || !strstr(err.msg, cases[k].needle) || !strstr(err.msg, "qatplan data prepare"))
            fprintf(stderr, "case '%s': status %d, message '%s'\n", cases[k].what, st, err.msg);
        CU_ASSERT_EQUAL(st, cases[k].want);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, cases[k].needle));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "qatplan data prepare"));
        CU_ASSERT_PTR_NULL(d.tokens);
    }
    /* dataset id with no terminating NUL */
    unsigned char *b = malloc(n);
    memcpy(b, orig, n);
    memset(b + 40, 'z', 64);
    spit(tu_path("dam.tok"), b, n);
    data_tokens d;
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("dam.tok"), &d, &err), QP_ERR_PARSE);
    /* an id >= vocab with a matching checksum: the id check itself must catch it */
    memcpy(b, orig, n);
    t[5] = 300;
    b[128 + 10] = 300 & 0xff;
    b[128 + 11] = 300 >> 8;
    put64(b + 32, data_tokens_checksum(t, 64));
    spit(tu_path("dam.tok"), b, n);
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("dam.tok"), &d, &err), QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "id 300 >= vocabulary size 256"));
    /* too short for a header; missing file */
    spit(tu_path("dam.tok"), b, 50);
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("dam.tok"), &d, &err), QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "too short"));
    CU_ASSERT_EQUAL(data_tokens_read(tu_path("no-such.tok"), &d, &err), QP_ERR_IO);
    free(b);
    free(orig);
}

static void test_cli_info(void)
{
    qp_error err = {0};
    uint16_t t[5] = {'h', 'e', 'l', 'l', 'o'};
    CU_ASSERT_EQUAL_FATAL(data_tokens_write_docs(tu_path("info.tok"), t, 5, 256, 1, "tiny", &err), QP_OK);
    char args[4200], *out = NULL, *e = NULL;
    snprintf(args, sizeof args, "data info %s", tu_path("info.tok"));
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "tiny"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "tokens        5"));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "vocab         256"));
    free(out);
    free(e);
    spit(tu_path("junk.tok"), (const unsigned char *)"not a token file at all, just some text........................"
                                                      "..................................................................",
         130);
    snprintf(args, sizeof args, "data info %s", tu_path("junk.tok"));
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &e), 1);
    CU_ASSERT_PTR_NOT_NULL(e && strstr(e, "qatplan data prepare"));
    free(out);
    free(e);
}

/* An llm.c shard: 256 little-endian int32 (magic, version, count), then n uint16 ids. */
static void write_shard(const char *path, uint32_t magic, uint32_t version, uint32_t count, const uint16_t *t,
                        size_t n)
{
    unsigned char *b = calloc(1, 1024 + 2 * n);
    uint32_t h[3] = {magic, version, count};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 4; i++) b[4 * k + i] = (unsigned char)(h[k] >> (8 * i));
    for (size_t i = 0; i < n; i++) {
        b[1024 + 2 * i] = (unsigned char)(t[i] & 0xff);
        b[1024 + 2 * i + 1] = (unsigned char)(t[i] >> 8);
    }
    spit(path, b, 1024 + 2 * n);
    free(b);
}

/* Foreign formats: what is read, and that each bad file is refused naming problem and fix. */
static void test_shards(void)
{
    qp_error err = {0};
    uint16_t t[100];
    for (int i = 0; i < 100; i++) t[i] = (uint16_t)(i * 500); /* up to 49500 < 50257 */
    const char *p = tu_path("s_train.bin");
    data_tokens d;
    write_shard(p, DATA_SHARD_MAGIC, 1, 100, t, 100);
    CU_ASSERT_EQUAL_FATAL(data_tokens_load(p, 0, &d, &err), QP_OK);
    CU_ASSERT_EQUAL(d.vocab, DATA_GPT2_VOCAB);
    CU_ASSERT_EQUAL(d.n_tokens, 100);
    CU_ASSERT(d.tokens && !memcmp(d.tokens, t, sizeof t));
    CU_ASSERT_STRING_EQUAL(d.dataset, "llmc:s_train.bin");
    data_tokens_free(&d);
    CU_ASSERT_EQUAL(data_tokens_load(p, 60000, &d, &err), QP_OK); /* --vocab wins */
    CU_ASSERT_EQUAL(d.vocab, 60000);
    data_tokens_free(&d);
    /* id >= vocab: the first bad id and its position */
    CU_ASSERT_EQUAL(data_tokens_load(p, 1000, &d, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "token 2 has id 1000 >= vocabulary size 1000"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--vocab"));
    CU_ASSERT_PTR_NULL(d.tokens);
    const struct {
        uint32_t magic, version, count;
        size_t n;
        const char *needle;
    } bad[] = {
        {DATA_SHARD_MAGIC + 1, 1, 100, 100, "no llm.c shard header"},
        {DATA_SHARD_MAGIC, 2, 100, 100, "uint32 token ids"},
        {DATA_SHARD_MAGIC, 3, 100, 100, "version 3"},
        {DATA_SHARD_MAGIC, 1, 101, 100, "truncated or corrupt"},
        {DATA_SHARD_MAGIC, 1, 100, 99, "truncated or corrupt"},
    };
    const char *fix[] = {"--vocab V", "version-1", "regenerate", "regenerate", "regenerate"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_shard(tu_path("bad.bin"), bad[k].magic, bad[k].version, bad[k].count, t, bad[k].n);
        CU_ASSERT_NOT_EQUAL(data_tokens_load(tu_path("bad.bin"), 0, &d, &err), QP_OK);
        if (!strstr(err.msg, bad[k].needle)) fprintf(stderr, "case %zu: '%s'\n", k, err.msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, bad[k].needle));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, fix[k]));
        CU_ASSERT_PTR_NULL(d.tokens);
    }
    /* a header cut short */
    const unsigned char sh[8] = {DATA_SHARD_MAGIC & 0xff, (DATA_SHARD_MAGIC >> 8) & 0xff,
                                 (DATA_SHARD_MAGIC >> 16) & 0xff, DATA_SHARD_MAGIC >> 24, 1, 0, 0, 0};
    spit(tu_path("short.bin"), sh, 8);
    CU_ASSERT_EQUAL(data_tokens_load(tu_path("short.bin"), 0, &d, &err), QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "too short for an llm.c shard header"));
}

static void test_raw_bin(void)
{
    qp_error err = {0};
    const unsigned char raw[6] = {1, 0, 0x2c, 0x01, 7, 0}; /* ids 1, 300, 7 */
    const char *p = tu_path("train.bin");
    spit(p, raw, 6);
    data_tokens d;
    CU_ASSERT_EQUAL(data_tokens_load(p, 0, &d, &err), QP_ERR_USAGE); /* no header, no --vocab */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "give the vocabulary size with --vocab V"));
    CU_ASSERT_EQUAL_FATAL(data_tokens_load(p, 512, &d, &err), QP_OK);
    CU_ASSERT_EQUAL(d.vocab, 512);
    CU_ASSERT_EQUAL(d.n_tokens, 3);
    CU_ASSERT(d.tokens && d.tokens[0] == 1 && d.tokens[1] == 300 && d.tokens[2] == 7);
    CU_ASSERT_STRING_EQUAL(d.dataset, "raw:train.bin");
    data_tokens_free(&d);
    CU_ASSERT_EQUAL(data_tokens_load(p, 300, &d, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "token 1 has id 300 >= vocabulary size 300"));
    spit(p, raw, 5);
    CU_ASSERT_EQUAL(data_tokens_load(p, 512, &d, &err), QP_ERR_PARSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "is odd"));
    CU_ASSERT_EQUAL(data_tokens_load(p, 70000, &d, &err), QP_ERR_INPUT);
    /* a qatplan token file still reads through the loader; a contradicting --vocab is refused */
    uint16_t t[2] = {3, 4};
    CU_ASSERT_EQUAL_FATAL(data_tokens_write(tu_path("q.tok"), t, 2, 256, "q", &err), QP_OK);
    CU_ASSERT_EQUAL(data_tokens_load(tu_path("q.tok"), 0, &d, &err), QP_OK);
    CU_ASSERT_EQUAL(d.vocab, 256);
    data_tokens_free(&d);
    CU_ASSERT_EQUAL(data_tokens_load(tu_path("q.tok"), 512, &d, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "drop --vocab"));
    CU_ASSERT_PTR_NULL(d.tokens);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_roundtrip);
    TU_ADD(s, test_layout_is_little_endian);
    TU_ADD(s, test_writer_refuses);
    TU_ADD(s, test_reader_refuses_damage);
    TU_ADD(s, test_cli_info);
    TU_ADD(s, test_shards);
    TU_ADD(s, test_raw_bin);
}

int main(void) { return tu_main("tokens", add); }
