/* Downloads against a local misbehaving server (tests/http_server.py on 127.0.0.1):
 * plain, dropped mid-file (resume), no range support, wrong range, 500 then 200, 429,
 * 404, checksum mismatch, stalls; plus SHA-256 vectors and URL inputs for runs/laws. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data.h"
#include "fit.h"
#include "sha256.h"
#include "testutil.h"

static pid_t server_pid = -1;
static int server_port;
static char srv_dir[4096], srv_log[4096];
static unsigned char *blob; /* the served test file */
static size_t blob_len = 300 * 1024 + 7;

static void stop_server(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
}

/* The suite's time bound: stop the server too, then fail. */
static void on_alarm(int sig)
{
    (void)sig;
    if (server_pid > 0) kill(server_pid, SIGKILL);
    static const char msg[] = "test_fetch: time limit reached, stopping\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(124);
}

/* Start the server, read its port from its stdout (within 20 s). */
static int start_server(void)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        char script[4096];
        snprintf(script, sizeof script, "%s/tests/http_server.py", QP_SOURCE_DIR);
        execl("/usr/bin/python3", "python3", script, "--dir", srv_dir, "--log", srv_log, "--lifetime", "150",
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    server_pid = pid;
    atexit(stop_server);
    struct pollfd p = {fds[0], POLLIN, 0};
    char buf[32] = {0};
    if (poll(&p, 1, 20000) != 1 || read(fds[0], buf, sizeof buf - 1) <= 0) {
        close(fds[0]);
        return -1;
    }
    close(fds[0]);
    server_port = atoi(buf);
    return server_port > 0 ? 0 : -1;
}

static const char *url(const char *path)
{
    static char b[4][512];
    static int k;
    char *s = b[k++ % 4];
    snprintf(s, 512, "http://127.0.0.1:%d%s", server_port, path);
    return s;
}

static void fast_opts(data_fetch_options *o)
{
    data_fetch_options_init(o);
    o->progress = 0;
    o->backoff_s = 0.05;
    o->backoff_max_s = 0.2;
    o->stall_seconds = 5;
    o->connect_timeout_s = 5;
    o->retries = 3;
}

/* 1 when `path` holds exactly the served blob. */
static int same_as_blob(const char *path)
{
    char *t = NULL;
    size_t n = 0;
    qp_error err = {0};
    if (qp_read_file(path, &t, &n, &err)) return 0;
    int ok = n == blob_len && !memcmp(t, blob, n);
    free(t);
    return ok;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* No "NAME.tmp*" or "NAME.part*" leftovers in the test directory. */
static int no_temp_left(const char *name)
{
    DIR *d = opendir(tu_tmpdir());
    if (!d) return 0;
    struct dirent *e;
    int ok = 1;
    size_t n = strlen(name);
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, name, n) && (strstr(e->d_name + n, ".tmp") || strstr(e->d_name + n, ".part"))) ok = 0;
    closedir(d);
    return ok;
}

/* Requests the server logged for a path (count, and whether one carried `range`). */
static int log_count(const char *path, const char *needle)
{
    char *t = NULL;
    qp_error err = {0};
    if (qp_read_file(srv_log, &t, NULL, &err)) return 0;
    int c = 0;
    size_t pl = strlen(path);
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, path, pl) && line[pl] == ' ' && (!needle || strstr(line, needle))) c++;
    free(t);
    return c;
}

static void test_sha256_vectors(void)
{
    char hex[65];
    data_sha256_hex("", 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    data_sha256_hex("abc", 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    data_sha256_hex(m, strlen(m), hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven pieces to exercise the block buffering */
    data_sha256_ctx c;
    data_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, step = 1;
    while (left) {
        size_t k = step < left ? step : left;
        if (k > sizeof a) k = sizeof a;
        data_sha256_update(&c, a, k);
        left -= k;
        step = step * 3 % 1000 + 1;
    }
    unsigned char d[32];
    data_sha256_final(&c, d);
    data_sha256_to_hex(d, hex);
    CU_ASSERT_STRING_EQUAL(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* 55/56/64-byte boundaries of the padding (reference values from sha256sum) */
    char b64[64];
    memset(b64, 'a', 64);
    data_sha256_hex(b64, 55, hex);
    CU_ASSERT_STRING_EQUAL(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    data_sha256_hex(b64, 56, hex);
    CU_ASSERT_STRING_EQUAL(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    data_sha256_hex(b64, 64, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

static void test_plain(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("plain.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT(no_temp_left("plain.bin"));
}

static void test_drop_resumes_with_range(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("drop.bin");
    CU_ASSERT_EQUAL_FATAL(data_fetch(url("/drop/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    /* The second request asked for the rest only and got 206: a resume, not a restart. */
    char want[64];
    snprintf(want, sizeof want, "range=bytes=%zu- code=206", blob_len / 2);
    CU_ASSERT_EQUAL(log_count("/drop/blob.bin", want), 1);
    CU_ASSERT_EQUAL(log_count("/drop/blob.bin", NULL), 2);
}

static void test_drop_without_range_support_restarts(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("norange.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/dropnorange/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out)); /* the 200 after a Range request replaced the partial file */
}

static void test_wrong_range_restarts(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("wrongrange.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/wrongrange/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT_EQUAL(log_count("/wrongrange/blob.bin", NULL), 3);
}

static void test_416_restarts(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("r416.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/range416/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT_EQUAL(log_count("/range416/blob.bin", "code=416"), 1);
}

static void test_500_then_200(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("flaky.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/flaky/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT_EQUAL(log_count("/flaky/blob.bin", "code=500"), 1);
    CU_ASSERT_EQUAL(log_count("/flaky/blob.bin", "code=200"), 1);
    /* Without retries the 500 is the answer. */
    o.retries = 0;
    const char *out2 = tu_path("flaky0.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/flaky/blob.bin?k=0"), out2, &o, &err), QP_ERR_NETWORK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "HTTP 500"));
    CU_ASSERT(!file_exists(out2));
    CU_ASSERT(no_temp_left("flaky0.bin"));
}

static void test_429_honours_retry_after(void)
{
    data_fetch_options o;
    fast_opts(&o);
    o.backoff_max_s = 2;
    qp_error err = {0};
    const char *out = tu_path("busy.bin");
    double t0 = qp_now();
    CU_ASSERT_EQUAL(data_fetch(url("/busy/blob.bin"), out, &o, &err), QP_OK);
    double dt = qp_now() - t0;
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT(dt >= 0.9 && dt < 10); /* waited the server's Retry-After: 1, not the 0.05 s backoff */
}

static void test_404(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("missing.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/ok/no-such-file"), out, &o, &err), QP_ERR_NETWORK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "404"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "check the URL"));
    CU_ASSERT(!file_exists(out));
    CU_ASSERT(no_temp_left("missing.bin"));
    CU_ASSERT_EQUAL(log_count("/ok/no-such-file", NULL), 1); /* a 404 is not retried */
}

static void test_checksum(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    char good[65];
    data_sha256_hex(blob, blob_len, good);
    const char *out = tu_path("sum.bin");
    o.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin?k=sum"), out, &o, &err), QP_ERR_CHECKSUM);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, good));
    CU_ASSERT(!file_exists(out));
    CU_ASSERT(no_temp_left("sum.bin"));
    /* Upper-case hex of the right digest passes. */
    char upper[65];
    for (int i = 0; i < 65; i++) upper[i] = (char)(good[i] >= 'a' && good[i] <= 'f' ? good[i] - 32 : good[i]);
    o.sha256 = upper;
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin?k=sum2"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    o.sha256 = "abc";
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin"), tu_path("sum3.bin"), &o, &err), QP_ERR_INPUT);
    CU_ASSERT(!file_exists(tu_path("sum3.bin")));
}

static void test_stall_detected_in_time(void)
{
    data_fetch_options o;
    fast_opts(&o);
    o.stall_seconds = 1;
    o.retries = 0;
    qp_error err = {0};
    const char *out = tu_path("stall.bin");
    double t0 = qp_now();
    CU_ASSERT_EQUAL(data_fetch(url("/stallforever/blob.bin"), out, &o, &err), QP_ERR_NETWORK);
    double dt = qp_now() - t0;
    CU_ASSERT(dt < 4.0); /* 1 s stall limit; curl checks once a second */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "stalled"));
    CU_ASSERT(!file_exists(out));
    CU_ASSERT(no_temp_left("stall.bin"));
}

static void test_stall_then_resume(void)
{
    data_fetch_options o;
    fast_opts(&o);
    o.stall_seconds = 1;
    qp_error err = {0};
    const char *out = tu_path("stall2.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/stall/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    char want[64];
    snprintf(want, sizeof want, "range=bytes=%zu- code=206", blob_len / 4);
    CU_ASSERT_EQUAL(log_count("/stall/blob.bin", want), 1);
}

static void test_connection_refused(void)
{
    data_fetch_options o;
    fast_opts(&o);
    o.retries = 1;
    qp_error err = {0};
    const char *out = tu_path("refused.bin");
    /* Port 1 on loopback: nothing listens there. */
    CU_ASSERT_EQUAL(data_fetch("http://127.0.0.1:1/x", out, &o, &err), QP_ERR_NETWORK);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "2 attempts"));
    CU_ASSERT(!file_exists(out));
    CU_ASSERT_EQUAL(data_fetch("ftp://127.0.0.1/x", out, &o, &err), QP_ERR_INPUT);
}

static void test_cli(void)
{
    char *out = NULL, *errs = NULL, args[1024], good[65];
    data_sha256_hex(blob, blob_len, good);
    snprintf(args, sizeof args, "fetch %s -o %s --sha256 %s --retries 2", url("/drop/blob.bin?k=cli"),
             tu_path("cli.bin"), good);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &errs), 0);
    CU_ASSERT(same_as_blob(tu_path("cli.bin")));
    free(out);
    free(errs);
    snprintf(args, sizeof args, "fetch %s -o %s", url("/ok/nothing-here"), tu_path("cli404.bin"));
    CU_ASSERT_EQUAL(tu_run_qatplan(args, &out, &errs), 1);
    CU_ASSERT_PTR_NOT_NULL(errs && strstr(errs, "404"));
    CU_ASSERT(!file_exists(tu_path("cli404.bin")));
    free(out);
    free(errs);
    CU_ASSERT_EQUAL(tu_run_qatplan("fetch http://127.0.0.1:1/x", NULL, NULL), 2); /* no -o */
}

/* `qatplan fetch U -o OUT` as a child process (SIGINT and SIGTERM at their defaults, as from
 * a terminal), its stderr in OUT.err. */
static pid_t spawn_fetch(const char *u, const char *out)
{
    pid_t pid = fork();
    if (pid == 0) {
        char e[4096];
        snprintf(e, sizeof e, "%s.err", out);
        int fd = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execl(QP_QATPLAN_EXE, "qatplan", "fetch", u, "-o", out, "--retries", "1", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static long long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static const char *with_suffix(const char *out, const char *suffix)
{
    static char b[4][4096];
    static int k;
    char *s = b[k++ % 4];
    snprintf(s, 4096, "%s%s", out, suffix);
    return s;
}

/* Waits (up to 15 s) until OUT.part holds at least `bytes`; 1 if it did. */
static int wait_part(const char *out, long long bytes)
{
    for (int i = 0; i < 1500; i++) {
        if (file_size(with_suffix(out, ".part")) >= bytes) return 1;
        usleep(10000);
    }
    return 0;
}

/* SIGKILL a fetch of u into out once OUT.part holds `bytes`; returns the size of OUT.part. */
static long long killed_fetch(const char *u, const char *out, long long bytes)
{
    pid_t pid = spawn_fetch(u, out);
    CU_ASSERT_FATAL(pid > 0);
    int got = wait_part(out, bytes);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CU_ASSERT(got);
    CU_ASSERT(file_exists(with_suffix(out, ".part.meta")));
    long long k = file_size(with_suffix(out, ".part"));
    CU_ASSERT(k >= bytes && k < (long long)blob_len);
    return k;
}

/* Ctrl-C or a SIGTERM while the body trickles in: the command stops at once, says so, and
 * leaves neither the file nor FILE.part. */
static void test_signal_removes_part(void)
{
    const int sigs[2] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "/slow/blob.bin?k=sig%d", i);
        const char *out = tu_path(i ? "int.bin" : "term.bin");
        pid_t pid = spawn_fetch(url(path), out);
        CU_ASSERT_FATAL(pid > 0);
        CU_ASSERT(wait_part(out, 24 * 1024));
        double t0 = qp_now();
        kill(pid, sigs[i]);
        int ws = 0;
        waitpid(pid, &ws, 0);
        CU_ASSERT(qp_now() - t0 < 3); /* the ~1.9 s transfer was not finished first */
        CU_ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 1);
        char *e = tu_read(with_suffix(out, ".err"), NULL);
        CU_ASSERT_PTR_NOT_NULL(e && strstr(e, i ? "interrupted by SIGINT" : "interrupted by SIGTERM"));
        free(e);
        CU_ASSERT(!file_exists(out));
        CU_ASSERT(!file_exists(with_suffix(out, ".part")));
        CU_ASSERT(!file_exists(with_suffix(out, ".part.meta")));
        CU_ASSERT(no_temp_left(i ? "int.bin" : "term.bin"));
    }
}

/* After a SIGKILL, FILE.part stays; the next fetch asks for the rest only (Range from its
 * end, same ETag) and the result is the file, byte for byte. A .part of another URL is not
 * continued. */
static void test_killed_fetch_resumes(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("killed.bin");
    long long k = killed_fetch(url("/slow1/blob.bin?k=kill"), out, 64 * 1024);
    CU_ASSERT(!file_exists(out));
    CU_ASSERT_EQUAL_FATAL(data_fetch(url("/slow1/blob.bin?k=kill"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    char want[80];
    snprintf(want, sizeof want, "range=bytes=%lld- code=206", k);
    CU_ASSERT_EQUAL(log_count("/slow1/blob.bin?k=kill", want), 1);
    CU_ASSERT_EQUAL(log_count("/slow1/blob.bin?k=kill", NULL), 2);
    CU_ASSERT(no_temp_left("killed.bin"));
    /* the same through the CLI */
    const char *out2 = tu_path("killed2.bin");
    k = killed_fetch(url("/slow1/blob.bin?k=kill2"), out2, 32 * 1024);
    char args[1024];
    snprintf(args, sizeof args, "fetch %s -o %s", url("/slow1/blob.bin?k=kill2"), out2);
    CU_ASSERT_EQUAL(tu_run_qatplan(args, NULL, NULL), 0);
    CU_ASSERT(same_as_blob(out2));
    snprintf(want, sizeof want, "range=bytes=%lld- code=206", k);
    CU_ASSERT_EQUAL(log_count("/slow1/blob.bin?k=kill2", want), 1);
    CU_ASSERT(no_temp_left("killed2.bin"));
    /* another URL into the same file starts from zero */
    killed_fetch(url("/slow1/blob.bin?k=kill3"), out2, 32 * 1024);
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin?k=other"), out2, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out2));
    CU_ASSERT_EQUAL(log_count("/ok/blob.bin?k=other", "range=- code=200"), 1);
    CU_ASSERT(no_temp_left("killed2.bin"));
    /* a FILE.part that is not a download of ours (no meta) is neither used nor removed */
    const char *mine = tu_path("mine.bin.part");
    tu_write(mine, "the user's own file\n");
    CU_ASSERT_EQUAL(data_fetch(url("/ok/blob.bin?k=mine"), tu_path("mine.bin"), &o, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "is not a download in progress"));
    char *t = tu_read(mine, NULL);
    CU_ASSERT(t && !strcmp(t, "the user's own file\n"));
    free(t);
    CU_ASSERT(!file_exists(tu_path("mine.bin")));
    CU_ASSERT_EQUAL(log_count("/ok/blob.bin?k=mine", NULL), 0);
}

/* Without an ETag or Last-Modified the server's file may have changed between two requests,
 * and a Range request would splice two versions: restart from zero, in one run and across
 * runs. */
static void test_no_validator_restarts(void)
{
    data_fetch_options o;
    fast_opts(&o);
    qp_error err = {0};
    const char *out = tu_path("nov.bin");
    CU_ASSERT_EQUAL(data_fetch(url("/dropnov/blob.bin"), out, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT_EQUAL(log_count("/dropnov/blob.bin", "range=- code=200"), 2);
    CU_ASSERT_EQUAL(log_count("/dropnov/blob.bin", NULL), 2);

    const char *out2 = tu_path("nov2.bin");
    killed_fetch(url("/slownov/blob.bin?k=nov"), out2, 32 * 1024);
    CU_ASSERT_EQUAL(data_fetch(url("/slownov/blob.bin?k=nov"), out2, &o, &err), QP_OK);
    CU_ASSERT(same_as_blob(out2));
    CU_ASSERT_EQUAL(log_count("/slownov/blob.bin?k=nov", "range=- code=200"), 2);
    CU_ASSERT_EQUAL(log_count("/slownov/blob.bin?k=nov", NULL), 2);
    CU_ASSERT(no_temp_left("nov2.bin"));
}

/* The file changed on the server between the killed fetch and the next one, and the server
 * answers the range request anyway (ignoring If-Range) with the new version's validator:
 * the 206 is refused and the new version fetched whole, never spliced onto the old prefix. */
static void test_changed_version_restarts(void)
{
    unsigned char *v2 = malloc(blob_len);
    for (size_t i = 0; i < blob_len; i++) v2[i] = blob[i] ^ 0x5a;
    const char *paths[2] = {"/changed/blob.bin", "/changedlm/blob.bin"}; /* by ETag, by Last-Modified */
    for (int i = 0; i < 2; i++) {
        data_fetch_options o;
        fast_opts(&o);
        qp_error err = {0};
        const char *out = tu_path(i ? "changedlm.bin" : "changed.bin");
        long long k = killed_fetch(url(paths[i]), out, 32 * 1024);
        CU_ASSERT_EQUAL_FATAL(data_fetch(url(paths[i]), out, &o, &err), QP_OK);
        size_t n = 0;
        char *t = tu_read(out, &n);
        CU_ASSERT(t && n == blob_len && !memcmp(t, v2, n));
        free(t);
        char want[80];
        snprintf(want, sizeof want, "range=bytes=%lld- code=206", k);
        CU_ASSERT_EQUAL(log_count(paths[i], want), 1);             /* the sloppy 206, refused */
        CU_ASSERT_EQUAL(log_count(paths[i], "range=- code=200"), 2); /* the killed one, the restart */
        CU_ASSERT(no_temp_left(i ? "changedlm.bin" : "changed.bin"));
    }
    free(v2);
}

/* Two fetches into the same file at once: FILE.part is locked, the second waits for the
 * first, and both end with the whole file. */
static void test_concurrent_fetches(void)
{
    const char *out = tu_path("conc.bin");
    pid_t a = spawn_fetch(url("/slow/blob.bin?k=conc"), out);
    CU_ASSERT(wait_part(out, 1));
    pid_t b = spawn_fetch(url("/slow/blob.bin?k=conc"), out);
    int wa = 0, wb = 0;
    waitpid(a, &wa, 0);
    CU_ASSERT(WIFEXITED(wa) && WEXITSTATUS(wa) == 0);
    CU_ASSERT(same_as_blob(out));
    waitpid(b, &wb, 0);
    CU_ASSERT(WIFEXITED(wb) && WEXITSTATUS(wb) == 0);
    CU_ASSERT(same_as_blob(out));
    CU_ASSERT_EQUAL(log_count("/slow/blob.bin?k=conc", "range=- code=200"), 2);
    CU_ASSERT(no_temp_left("conc.bin"));
}

static void test_url_inputs(void)
{
    qp_error err = {0};
    char cache[4096];
    snprintf(cache, sizeof cache, "%s/cache", tu_tmpdir());
    setenv("QATPLAN_CACHE", cache, 1);
    char *local = NULL;
    CU_ASSERT_EQUAL(data_open_input("some/file.csv", NULL, &local, &err), QP_OK);
    CU_ASSERT_STRING_EQUAL(local, "some/file.csv");
    free(local);
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=open"), NULL, &local, &err), QP_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(local);
    CU_ASSERT(!strncmp(local, cache, strlen(cache)));
    CU_ASSERT(same_as_blob(local));
    free(local);

    /* run records over http: the .csv extension survives into the cache file name */
    char p[4096];
    snprintf(p, sizeof p, "%s/runs.csv", srv_dir);
    tu_write(p, "N,D_fp,D_qat,bits,loss\n1e8,2e9,0,16,3.10\n1e8,1.5e9,5e8,4,3.25\n");
    data_run_list l;
    data_run_list_init(&l);
    CU_ASSERT_EQUAL(data_runs_read(url("/ok/runs.csv"), &l, &err), QP_OK);
    CU_ASSERT_EQUAL(l.n, 2);
    if (l.n == 2) CU_ASSERT_DOUBLE_EQUAL(l.runs[1].loss, 3.25, 1e-12);
    /* the same runs as JSONL, plotted from URLs (plot reads JSONL its own, lenient way) */
    snprintf(p, sizeof p, "%s/runs.jsonl", srv_dir);
    for (size_t i = 0; i < l.n; i++) CU_ASSERT_EQUAL(data_run_append(p, &l.runs[i], &err), QP_OK);
    data_run_list_free(&l);
    data_law fp_law;
    law_builtin_chinchilla(&fp_law);
    snprintf(p, sizeof p, "%s/fp.law.json", srv_dir);
    CU_ASSERT_EQUAL(data_law_write(p, &fp_law, &err), QP_OK);
    data_law_free(&fp_law);
    char cmd[8192], svg[4096];
    snprintf(svg, sizeof svg, "%s", tu_path("url-residuals.svg"));
    /* url() rotates four buffers, so two calls may share one format */
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", url("/ok/runs.jsonl"),
             url("/ok/fp.law.json"), svg);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    CU_ASSERT_EQUAL(access(svg, R_OK), 0);
    snprintf(cmd, sizeof cmd, "plot residuals --runs %s --law %s -o %s", url("/ok/nope.jsonl"),
             url("/ok/fp.law.json"), svg);
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, NULL, NULL), 0);
    data_run_list_init(&l);
    CU_ASSERT_EQUAL(data_runs_read(url("/ok/nope.csv"), &l, &err), QP_ERR_NETWORK);
    data_run_list_free(&l);

    /* a law over http */
    data_law law, back;
    law_builtin_chinchilla(&law);
    snprintf(p, sizeof p, "%s/law.json", srv_dir);
    CU_ASSERT_EQUAL_FATAL(data_law_write(p, &law, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_law_read(url("/flaky/law.json"), &back, &err), QP_OK);
    for (int i = 0; i < data_law_ncoef(law.form); i++) CU_ASSERT_DOUBLE_EQUAL(back.coef[i], law.coef[i], 1e-12);
    data_law_free(&back);
    data_law_free(&law);

    /* a corpus over http: two text documents */
    snprintf(p, sizeof p, "%s/a.txt", srv_dir);
    tu_write(p, "The first document, served over http.\n");
    snprintf(p, sizeof p, "%s/b.txt", srv_dir);
    tu_write(p, "The second one, also over http, a little longer than the first.\n");
    const char *in[2] = {url("/ok/a.txt"), url("/ok/b.txt")};
    data_prepare_result r;
    CU_ASSERT_EQUAL(data_prepare(tu_path("web"), in, 2, NULL, &r, &err), QP_OK);
    CU_ASSERT_EQUAL(r.train_docs + r.val_docs, 2);
    CU_ASSERT_EQUAL(r.train_tokens + r.val_tokens, (37 + 2) + (63 + 2)); /* trimmed text, newline, EOD */
    unsetenv("QATPLAN_CACHE");
}

/* The download cache must be the user's own, private directory: anyone who can write there
 * could plant the files commands read. Refused before anything is downloaded. */
static void test_cache_dir_checked(void)
{
    qp_error err = {0};
    char dir[4096], *local = NULL;
    /* a fresh cache is created private */
    snprintf(dir, sizeof dir, "%s/newcache/sub", tu_tmpdir());
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c0"), dir, &local, &err), QP_OK);
    CU_ASSERT(local && same_as_blob(local));
    free(local);
    struct stat sb;
    CU_ASSERT_EQUAL_FATAL(stat(dir, &sb), 0);
    CU_ASSERT_EQUAL(sb.st_mode & 077, 0);
    /* writable by everyone, or by the group: refused, nothing fetched */
    snprintf(dir, sizeof dir, "%s/sharedcache", tu_tmpdir());
    CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 01777), 0); /* like /tmp itself */
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c1"), dir, &local, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NULL(local);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "writable by everyone"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "chmod go-w"));
    CU_ASSERT_EQUAL(log_count("/ok/blob.bin?k=c1", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0770), 0);
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c1"), dir, &local, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "writable by its group"));
    /* through the CLI, from $QATPLAN_CACHE: exit non-zero with the message */
    char cmd[8192], *errs = NULL;
    snprintf(cmd, sizeof cmd, "law show %s", url("/ok/x.law.json"));
    setenv("QATPLAN_CACHE", dir, 1);
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, NULL, &errs), 0);
    CU_ASSERT_PTR_NOT_NULL(errs && strstr(errs, "writable by its group"));
    free(errs);
    unsetenv("QATPLAN_CACHE");
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0700), 0);
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c1"), dir, &local, &err), QP_OK);
    free(local);
    /* a symlink to it is not followed */
    char link[4096];
    snprintf(link, sizeof link, "%s/linkcache", tu_tmpdir());
    CU_ASSERT_EQUAL_FATAL(symlink(dir, link), 0);
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c2"), link, &local, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "symbolic link"));
    strcat(link, "/");
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c2"), link, &local, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "symbolic link"));
    /* another user's directory (as root: one given to nobody; else the root directory) */
    const char *other = "/";
    if (geteuid() == 0) {
        snprintf(dir, sizeof dir, "%s/otherscache", tu_tmpdir());
        CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0755), 0);
        CU_ASSERT_EQUAL_FATAL(chown(dir, 65534, 65534), 0);
        other = dir;
    }
    CU_ASSERT_EQUAL(data_open_input(url("/ok/blob.bin?k=c3"), other, &local, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not to you"));
    CU_ASSERT_EQUAL(log_count("/ok/blob.bin?k=c2", NULL) + log_count("/ok/blob.bin?k=c3", NULL), 0);
}

static void test_server_failed(void) { CU_FAIL("the local HTTP server (/usr/bin/python3) did not start"); }

static void add(CU_pSuite s)
{
    signal(SIGALRM, on_alarm);
    alarm(200); /* the whole suite is bounded even if a server misbehaves beyond design */
    snprintf(srv_dir, sizeof srv_dir, "%s/srv", tu_tmpdir());
    snprintf(srv_log, sizeof srv_log, "%s/requests.log", tu_tmpdir());
    mkdir(srv_dir, 0777);
    blob = malloc(blob_len);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < blob_len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        blob[i] = (unsigned char)(x >> 24);
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/blob.bin", srv_dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(blob, 1, blob_len, f);
        fclose(f);
    }
    TU_ADD(s, test_sha256_vectors);
    if (start_server() != 0) {
        fprintf(stderr, "test_fetch: could not start /usr/bin/python3 tests/http_server.py\n");
        TU_ADD(s, test_server_failed);
        return;
    }
    TU_ADD(s, test_plain);
    TU_ADD(s, test_drop_resumes_with_range);
    TU_ADD(s, test_drop_without_range_support_restarts);
    TU_ADD(s, test_wrong_range_restarts);
    TU_ADD(s, test_416_restarts);
    TU_ADD(s, test_500_then_200);
    TU_ADD(s, test_429_honours_retry_after);
    TU_ADD(s, test_404);
    TU_ADD(s, test_checksum);
    TU_ADD(s, test_stall_detected_in_time);
    TU_ADD(s, test_stall_then_resume);
    TU_ADD(s, test_connection_refused);
    TU_ADD(s, test_cli);
    TU_ADD(s, test_signal_removes_part);
    TU_ADD(s, test_killed_fetch_resumes);
    TU_ADD(s, test_no_validator_restarts);
    TU_ADD(s, test_changed_version_restarts);
    TU_ADD(s, test_concurrent_fetches);
    TU_ADD(s, test_url_inputs);
    TU_ADD(s, test_cache_dir_checked);
}

int main(void) { return tu_main("fetch", add); }
