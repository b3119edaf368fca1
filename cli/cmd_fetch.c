/* qatplan fetch URL -o FILE: a checked, resumable, retried download. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data.h"

static void fetch_help(FILE *f)
{
    fprintf(f, "usage: qatplan fetch URL -o FILE [--sha256 HEX] [--retries N] [--timeout S] [--quiet]\n\n"
               "Downloads an http(s) URL to FILE through FILE.part, renamed into place only when\n"
               "complete (and, with --sha256, checked). Transient failures (connection errors, stalls,\n"
               "HTTP 408/429/5xx) are retried with exponential backoff (1 s, 2 s, 4 s, ... up to 60 s),\n"
               "resuming with a Range request when the server supports it and names the file's version\n"
               "(ETag or Last-Modified). Ctrl-C or SIGTERM removes FILE.part; after a kill, the next\n"
               "fetch into FILE resumes it if the server still has the same version.\n"
               "  -o, --out FILE   where to write (required)\n"
               "  --sha256 HEX     expected SHA-256 of the file (64 hex digits); mismatch = error, no file\n"
               "  --retries N      extra attempts after a transient failure (default 5)\n"
               "  --timeout S      stall timeout in seconds: an attempt that receives nothing for S\n"
               "                   seconds is aborted and retried (default 30)\n"
               "  --quiet          no progress line (it is shown only on a terminal anyway)\n");
}

int cmd_fetch(int argc, char **argv)
{
    data_fetch_options o;
    data_fetch_options_init(&o);
    const char *url = NULL, *out = NULL;
    qp_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fetch_help(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.progress = 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--sha256") || !strcmp(a, "--retries") ||
                   !strcmp(a, "--timeout")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "qatplan: %s needs a value: see 'qatplan fetch --help'\n", a);
                return 2;
            }
            const char *v = argv[++i];
            qp_status st = QP_OK;
            if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--sha256")) o.sha256 = v;
            else if (!strcmp(a, "--retries")) {
                long r;
                st = qp_parse_long(v, "--retries", 0, 100, &r, &err);
                o.retries = (int)r;
            } else st = qp_parse_real(v, "--timeout (seconds)", 1, 86400, &o.stall_seconds, &err);
            if (st) return cli_report(st, &err);
        } else if (a[0] == '-') {
            fprintf(stderr, "qatplan: unknown option '%s' for 'fetch': see 'qatplan fetch --help'\n", a);
            return 2;
        } else if (!url) {
            url = a;
        } else {
            fprintf(stderr, "qatplan: fetch takes one URL ('%s' is a second one)\n", a);
            return 2;
        }
    }
    if (!url || !out) {
        fprintf(stderr, "qatplan: fetch needs a URL and -o FILE: qatplan fetch URL -o FILE\n");
        return 2;
    }
    qp_status st = data_fetch(url, out, &o, &err);
    if (st) return cli_report(st, &err);
    if (o.progress) fprintf(stderr, "qatplan: wrote %s%s\n", out, o.sha256 ? " (SHA-256 verified)" : "");
    return 0;
}
