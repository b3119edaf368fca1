/* sha256.h: streaming SHA-256 (FIPS 180-4), internal to the data module. */
#ifndef DATA_SHA256_H
#define DATA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t nbytes;
    unsigned char buf[64];
    size_t nbuf;
} data_sha256_ctx;

void data_sha256_init(data_sha256_ctx *c);
void data_sha256_update(data_sha256_ctx *c, const void *data, size_t len);
void data_sha256_final(data_sha256_ctx *c, unsigned char out[32]);
void data_sha256_to_hex(const unsigned char d[32], char hex[65]);

#endif
