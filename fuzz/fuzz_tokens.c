/* fuzz_tokens: token files, data_tokens_read_header and data_tokens_read (data/tokens.c), which
 * read from a path: the input is written to a temporary file; and data_tokens_load, which also
 * takes llm.c shards and raw uint16 .bin files (vocabulary from the file or given). Each input is read twice: as it
 * is, and with the header's checksum set to the one of its token bytes, so that mutations reach
 * the checks behind the checksum (the token ids) instead of stopping at the mismatch. An
 * accepted file holds exactly the tokens its header promises, each below the vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fuzz_util.h"

#define HEADER 128

static void read_one(const uint8_t *data, size_t size)
{
    const char *path = fz_write_temp("fuzz.tok", data, size);
    qp_error e = {0};
    data_tokens_header h;
    qp_status hs = data_tokens_read_header(path, &h, &e);
    if (!hs && h.file_bytes != size) fz_fail("header read: %llu file bytes, the file has %zu",
                                             (unsigned long long)h.file_bytes, size);
    data_tokens t;
    qp_status st = data_tokens_read(path, &t, &e);
    if (!st) {
        if (hs) fz_fail("the tokens read but the header alone does not");
        if (t.n_tokens != h.n_tokens || HEADER + 2 * t.n_tokens != size)
            fz_fail("%llu tokens read from a %zu-byte file", (unsigned long long)t.n_tokens, size);
        for (uint64_t i = 0; i < t.n_tokens; i++)
            if (t.tokens[i] >= t.vocab) fz_fail("token %llu = %u >= vocabulary %u", (unsigned long long)i,
                                                t.tokens[i], t.vocab);
        if (!memchr(t.dataset, 0, sizeof t.dataset)) fz_fail("the dataset id is not NUL-terminated");
    } else if (!e.msg[0]) {
        fz_fail("a refused token file has no message");
    }
    data_tokens_free(&t);
}

/* Any token file by content, as a .bin: whatever is accepted holds ids below its vocabulary. */
static void load_one(const uint8_t *data, size_t size, uint32_t vocab)
{
    const char *path = fz_write_temp("fuzz.bin", data, size);
    qp_error e = {0};
    data_tokens t;
    qp_status st = data_tokens_load(path, vocab, &t, &e);
    if (!st) {
        if (vocab && t.vocab != vocab) fz_fail("vocabulary %u given, %u loaded", vocab, t.vocab);
        if (t.n_tokens && !t.tokens) fz_fail("%llu tokens without storage", (unsigned long long)t.n_tokens);
        for (uint64_t i = 0; i < t.n_tokens; i++)
            if (t.tokens[i] >= t.vocab) fz_fail("token %llu = %u >= vocabulary %u", (unsigned long long)i,
                                                t.tokens[i], t.vocab);
        if (!memchr(t.dataset, 0, sizeof t.dataset)) fz_fail("the dataset id is not NUL-terminated");
        data_tokens_free(&t);
    } else if (!e.msg[0]) {
        fz_fail("a refused .bin file has no message");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_one(data, size);
    load_one(data, size, 0);
    load_one(data, size, 300);
    if (size < HEADER || (size - HEADER) % 2) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) fz_fail("out of memory");
    memcpy(fixed, data, size);
    size_t n = (size - HEADER) / 2;
    uint16_t *tok = malloc(n ? n * 2 : 1);
    if (!tok) fz_fail("out of memory");
    for (size_t i = 0; i < n; i++) tok[i] = (uint16_t)(fixed[HEADER + 2 * i] | fixed[HEADER + 2 * i + 1] << 8);
    uint64_t sum = data_tokens_checksum(tok, n);
    for (int i = 0; i < 8; i++) fixed[32 + i] = (uint8_t)(sum >> (8 * i));
    read_one(fixed, size);
    free(tok);
    free(fixed);
    return 0;
}
