/* bench_data: throughput of the data path, each as a ratio to a reference measured in the
 * same run on the same bytes:
 *   SHA-256 (data_sha256_hex)            vs memcpy of the buffer
 *   token-file read (data_tokens_read)   vs fread of the same file (page cache warm)
 *   token-file write (data_tokens_write) vs qp_write_file_atomic of the same bytes
 *   data_prepare of text files           vs reading the same files (qp_read_file)
 * Usage: bench_data [MiB of text, default 16] [directory for files, default /tmp] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

static double best_of(int reps, double (*fn)(void *), void *arg)
{
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t = fn(arg);
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    unsigned char *buf, *dst;
    size_t n;
    const char *path, *raw_path;
    uint16_t *tok;
    const char **inputs;
    int n_inputs;
    const char *prefix;
} ctx;

static double t_memcpy(void *a)
{
    ctx *c = a;
    double t = qp_now();
    memcpy(c->dst, c->buf, c->n);
    t = qp_now() - t;
    if (c->dst[c->n / 2] != c->buf[c->n / 2]) abort();
    return t;
}

static double t_sha(void *a)
{
    ctx *c = a;
    char hex[65];
    double t = qp_now();
    data_sha256_hex(c->buf, c->n, hex);
    return qp_now() - t;
}

static double t_fread(void *a)
{
    ctx *c = a;
    double t = qp_now();
    FILE *f = fopen(c->path, "rb");
    size_t r = fread(c->dst, 1, 2 * c->n + 128, f);
    fclose(f);
    t = qp_now() - t;
    if (r != 2 * c->n + 128) abort();
    return t;
}

static double t_tokread(void *a)
{
    ctx *c = a;
    data_tokens d;
    qp_error err;
    double t = qp_now();
    if (data_tokens_read(c->path, &d, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    t = qp_now() - t;
    data_tokens_free(&d);
    return t;
}

static double t_rawwrite(void *a)
{
    ctx *c = a;
    qp_error err;
    double t = qp_now();
    if (qp_write_file_atomic(c->raw_path, c->dst, 2 * c->n + 128, &err)) exit(1);
    return qp_now() - t;
}

static double t_tokwrite(void *a)
{
    ctx *c = a;
    qp_error err;
    double t = qp_now();
    if (data_tokens_write(c->path, c->tok, c->n, 256, "bench", &err)) exit(1);
    return qp_now() - t;
}

static double t_readtexts(void *a)
{
    ctx *c = a;
    qp_error err;
    double t = qp_now();
    for (int i = 0; i < c->n_inputs; i++) {
        char *text;
        if (qp_read_file(c->inputs[i], &text, NULL, &err)) exit(1);
        free(text);
    }
    return qp_now() - t;
}

static double t_prepare(void *a)
{
    ctx *c = a;
    qp_error err;
    double t = qp_now();
    if (data_prepare(c->prefix, c->inputs, c->n_inputs, NULL, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return qp_now() - t;
}

int main(int argc, char **argv)
{
    double mib = argc > 1 ? atof(argv[1]) : 16;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    ctx c = {0};
    c.n = (size_t)(mib * 1048576);
    c.buf = malloc(c.n);
    c.dst = malloc(2 * c.n + 128);
    c.tok = malloc(c.n * sizeof *c.tok);
    if (!c.buf || !c.dst || !c.tok) return 1;
    /* English-like bytes: words from a small list, paragraphs every ~600 bytes. */
    static const char *words[] = {"the", "of", "and", "to", "in", "a", "that", "is", "was", "he",
                                  "for", "it", "with", "as", "his", "on", "be", "at", "by", "Congress"};
    uint64_t x = 1;
    size_t k = 0;
    while (k < c.n) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(x >> 33) % 20];
        for (; *w && k < c.n; w++) c.buf[k++] = (unsigned char)*w;
        if (k < c.n) c.buf[k++] = ((x >> 40) % 100 == 0) ? '\n' : ' ';
    }
    for (size_t i = 0; i < c.n; i++) c.tok[i] = c.buf[i];
    char path[4096], raw[4096], prefix[4096];
    snprintf(path, sizeof path, "%s/bench_data.%d.tok", dir, (int)getpid());
    snprintf(raw, sizeof raw, "%s/bench_data.%d.raw", dir, (int)getpid());
    snprintf(prefix, sizeof prefix, "%s/bench_data.%d.corpus", dir, (int)getpid());
    c.path = path;
    c.raw_path = raw;
    c.prefix = prefix;
    /* 64 text files of n/64 bytes each */
    c.n_inputs = 64;
    c.inputs = calloc(64, sizeof *c.inputs);
    for (int i = 0; i < 64; i++) {
        char *p = malloc(4200);
        snprintf(p, 4200, "%s/bench_data.%d.%02d.txt", dir, (int)getpid(), i);
        FILE *f = fopen(p, "wb");
        if (!f) return 1;
        fwrite(c.buf + (size_t)i * (c.n / 64), 1, c.n / 64, f);
        fclose(f);
        c.inputs[i] = p;
    }
    qp_error err;
    if (data_tokens_write(path, c.tok, c.n, 256, "bench", &err)) return 1;

    printf("bench_data: %.1f MiB of text (%zu byte tokens), best of 5, files in %s\n", mib, c.n, dir);
    double m = best_of(5, t_memcpy, &c), s = best_of(5, t_sha, &c);
    printf("  SHA-256            %7.1f MB/s   memcpy %8.1f MB/s   ratio %.3f\n", c.n / s / 1e6, c.n / m / 1e6, m / s);
    double fr = best_of(5, t_fread, &c), tr = best_of(5, t_tokread, &c);
    printf("  token file read    %7.1f MB/s   fread  %8.1f MB/s   ratio %.3f (checks size, FNV-1a, ids)\n",
           (2.0 * c.n) / tr / 1e6, (2.0 * c.n) / fr / 1e6, fr / tr);
    double rw = best_of(5, t_rawwrite, &c), tw = best_of(5, t_tokwrite, &c);
    printf("  token file write   %7.1f MB/s   atomic %8.1f MB/s   ratio %.3f (both fsync)\n",
           (2.0 * c.n) / tw / 1e6, (2.0 * c.n) / rw / 1e6, rw / tw);
    double rt = best_of(3, t_readtexts, &c), pp = best_of(3, t_prepare, &c);
    printf("  data prepare       %7.1f MB/s   read   %8.1f MB/s   ratio %.3f (text MB/s; 64 files)\n",
           c.n / pp / 1e6, c.n / rt / 1e6, rt / pp);

    unlink(path);
    unlink(raw);
    const char *sfx[] = {".train.tok", ".val.tok", ".manifest.json"};
    for (int i = 0; i < 3; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", prefix, sfx[i]);
        unlink(p);
    }
    for (int i = 0; i < 64; i++) {
        unlink(c.inputs[i]);
        free((void *)c.inputs[i]);
    }
    free(c.inputs);
    free(c.buf);
    free(c.dst);
    free(c.tok);
    return 0;
}
