/* HTTP(S) downloads with libcurl: a locked FILE.part renamed into place when complete, resumed
 * (also by a later run, after a kill) with Range only on a 206 of the same version, whose
 * Content-Range starts where FILE.part ends; retries with exponential backoff on transient
 * failures (connection errors, stalls, 408/429/5xx), stall detection with the low-speed
 * options instead of one total timeout, an optional SHA-256 check, and SIGINT/SIGTERM
 * removing FILE.part. */
#include "data.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"

void data_fetch_options_init(data_fetch_options *o)
{
    memset(o, 0, sizeof *o);
    o->retries = 5;
    o->stall_seconds = 30;
    o->low_speed_bytes = 1;
    o->connect_timeout_s = 30;
    o->backoff_s = 1;
    o->backoff_max_s = 60;
    o->progress = -1;
}

/* Set by the SIGINT/SIGTERM handler data_fetch installs while it runs: the transfer aborts
 * through the progress callback and FILE.part is removed in the normal flow. */
static volatile sig_atomic_t fetch_signal;

static void on_fetch_signal(int sig) { fetch_signal = sig; }

#define PART_SCHEMA "qatplan-part-v1"

typedef struct {
    int fd; /* FILE.part, locked with flock while this fetch owns it */
    const char *part, *meta, *url;
    CURL *curl;
    char label[96];
    uint64_t have;        /* bytes in FILE.part */
    uint64_t resume_from; /* the Range start asked for in this attempt (0 = whole file) */
    int decided;          /* first body bytes of this attempt seen */
    int discard;          /* an error response: its body is not the file */
    int bad_range;        /* a 206 that does not continue our partial file */
    int io_error;
    /* validators of the latest response, and of the version FILE.part holds a prefix of */
    char etag[256], last_modified[128];
    char held_etag[256], held_lm[128];
    long long cr_start; /* Content-Range start, -1 if none */
    long retry_after;   /* seconds, -1 if none */
    /* stall detection: libcurl's low-speed check averages over its last ~5 s, so after a
     * burst it fires up to 5 s late; this check aborts when no byte came for stall_s. */
    double stall_s, t_activity;
    curl_off_t last_now;
    int stalled;
    /* progress */
    int progress;
    int printed;
    double total; /* expected size of the whole file, 0 = unknown */
    double t_last, t_start;
    uint64_t bytes_at_start;
} xfer;

static void trim_value(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user)
{
    xfer *x = user;
    size_t n = size * nitems;
    char line[512];
    size_t m = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, buf, m);
    line[m] = 0;
    if (!strncmp(line, "HTTP/", 5)) { /* a new response (after a redirect or 100-continue) */
        x->etag[0] = x->last_modified[0] = 0;
        x->cr_start = -1;
        x->retry_after = -1;
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon) return n;
    *colon = 0;
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    trim_value(v);
    if (!strcasecmp(line, "ETag")) snprintf(x->etag, sizeof x->etag, "%s", v);
    else if (!strcasecmp(line, "Last-Modified")) snprintf(x->last_modified, sizeof x->last_modified, "%s", v);
    else if (!strcasecmp(line, "Content-Range")) {
        unsigned long long a;
        if (sscanf(v, "bytes %llu-", &a) == 1) x->cr_start = (long long)a;
    } else if (!strcasecmp(line, "Retry-After")) {
        char *end;
        long s = strtol(v, &end, 10);
        if (end != v && s >= 0) x->retry_after = s;
    }
    return n;
}

/* A weak ETag (W/"...") promises an equivalent file, not the same bytes: no use for ranges. */
static int strong_etag(const char *e) { return e[0] && strncmp(e, "W/", 2) != 0; }

/* FILE.part can be continued only with a validator of the version it holds. */
static int resumable(const xfer *x) { return strong_etag(x->held_etag) || x->held_lm[0]; }

/* The latest response is the version FILE.part holds a prefix of. */
static int same_version(const xfer *x)
{
    if (strong_etag(x->held_etag) && strong_etag(x->etag)) return !strcmp(x->held_etag, x->etag);
    if (x->held_lm[0] && x->last_modified[0]) return !strcmp(x->held_lm, x->last_modified);
    return 0;
}

static int part_reset(xfer *x)
{
    if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
        x->io_error = errno ? errno : EIO;
        return -1;
    }
    x->have = 0;
    return 0;
}

/* FILE.part.meta: the URL (as a hash) and the validators of the version in FILE.part. */
static int meta_write(xfer *x)
{
    char h[65], buf[1024];
    data_sha256_hex(x->url, strlen(x->url), h);
    int n = snprintf(buf, sizeof buf, "%s\nurl-sha256 %s\netag %s\nlast-modified %s\n", PART_SCHEMA, h,
                     strong_etag(x->held_etag) ? x->held_etag : "", x->held_lm);
    int fd = open(x->meta, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n) {
        x->io_error = errno ? errno : EIO;
        if (fd >= 0) close(fd);
        return -1;
    }
    return close(fd) == 0 ? 0 : (x->io_error = errno, -1);
}

/* Reads FILE.part.meta into held_*; 0 when it is whole and for this URL. */
static int meta_read(xfer *x)
{
    int fd = open(x->meta, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char h[65], want[160];
    data_sha256_hex(x->url, strlen(x->url), h);
    snprintf(want, sizeof want, "%s\nurl-sha256 %s\netag ", PART_SCHEMA, h);
    if (strncmp(buf, want, strlen(want))) return -1;
    char *e = buf + strlen(want), *nl = strchr(e, '\n');
    if (!nl || strncmp(nl + 1, "last-modified ", 14)) return -1;
    *nl = 0;
    char *lm = nl + 1 + 14, *end = strchr(lm, '\n');
    if (!end || end[1]) return -1; /* torn, or trailing bytes */
    *end = 0;
    snprintf(x->held_etag, sizeof x->held_etag, "%s", e);
    snprintf(x->held_lm, sizeof x->held_lm, "%s", lm);
    return 0;
}

/* A whole file starts (200): FILE.part starts over, and the meta names its version before
 * any byte of it is written. */
static int start_version(xfer *x)
{
    if (x->have > 0 && part_reset(x)) return -1;
    memcpy(x->held_etag, x->etag, sizeof x->held_etag);
    memcpy(x->held_lm, x->last_modified, sizeof x->held_lm);
    return meta_write(x);
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *user)
{
    xfer *x = user;
    size_t n = size * nitems;
    if (fetch_signal) return 0;
    if (!x->decided) {
        x->decided = 1;
        long code = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 300) x->discard = 1;
        else if (code == 206) {
            /* Only the rest of the version we hold, from where it ends, continues it. */
            if (x->resume_from == 0 || x->cr_start != (long long)x->resume_from || !same_version(x)) {
                x->bad_range = 1;
                return 0; /* aborts the transfer; the caller restarts from zero */
            }
        } else if (start_version(x) != 0) {
            return 0;
        }
    }
    if (x->discard) return n;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(x->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            x->io_error = errno ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    x->have += n;
    return n;
}

static void print_progress(xfer *x, double now)
{
    char a[32], b[32], r[32];
    double done = (double)x->have;
    double rate = (done - (double)x->bytes_at_start) / (now - x->t_start > 1e-3 ? now - x->t_start : 1e-3);
    qp_format_bytes(done, a, sizeof a);
    qp_format_bytes(rate, r, sizeof r);
    if (x->total > 0) {
        qp_format_bytes(x->total, b, sizeof b);
        fprintf(stderr, "\rqatplan: fetching %s  %s / %s  %3.0f%%  %s/s   ", x->label, a, b, 100.0 * done / x->total, r);
    } else {
        fprintf(stderr, "\rqatplan: fetching %s  %s  %s/s   ", x->label, a, r);
    }
    x->printed = 1;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    xfer *x = user;
    (void)ultotal;
    (void)ulnow;
    if (fetch_signal) return 1; /* CURLE_ABORTED_BY_CALLBACK */
    double now = qp_now();
    if (dlnow != x->last_now) {
        x->last_now = dlnow;
        x->t_activity = now;
    } else if (now - x->t_activity > x->stall_s) {
        x->stalled = 1;
        return 1;
    }
    if (dltotal > 0) x->total = (double)x->resume_from + (double)dltotal;
    if (!x->progress || x->discard || (dlnow == 0 && dltotal == 0)) return 0;
    if (now - x->t_last < 0.25) return 0;
    x->t_last = now;
    print_progress(x, now);
    return 0;
}

static int transient_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int transient_http(long code) { return code == 408 || code == 429 || (code >= 500 && code <= 599); }

/* Sleeps s seconds, or less when a signal asks the fetch to stop. */
static void sleep_seconds(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !fetch_signal) {
    }
}

static int valid_hex64(const char *s)
{
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* The URL's file name, without query or fragment, for the progress line. */
static void url_label(const char *url, char *out, size_t n)
{
    size_t end = strcspn(url, "?#");
    const char *s = url;
    for (size_t i = 0; i < end; i++)
        if (url[i] == '/') s = url + i + 1;
    size_t len = (size_t)(url + end - s);
    if (len == 0) s = url, len = end;
    snprintf(out, n, "%.*s", (int)(len < n - 1 ? len : n - 1), s);
}

static qp_status interrupted(qp_error *err, const char *out_path)
{
    return qp_fail(err, QP_ERR_INTERRUPTED, "%s: download interrupted by %s; nothing was written and the partial "
                   "file was removed", out_path, fetch_signal == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Opens and locks FILE.part (created if missing). Another fetch into the same FILE holds the
 * lock until it has renamed or removed its .part: wait for it, then open afresh if the file
 * locked is no longer the one at that path. O_NOFOLLOW: a planted symlink is not written
 * through. */
static qp_status part_open(xfer *x, const char *out_path, qp_error *err)
{
    for (int waited = 0;;) {
        int fd = open(x->part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return qp_fail(err, QP_ERR_IO, "%s: cannot create %s beside it: %s", out_path, x->part, strerror(errno));
        struct stat a, b;
        if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode)) {
            close(fd);
            return qp_fail(err, QP_ERR_IO, "%s is not a regular file: remove it", x->part);
        }
        while (flock(fd, LOCK_EX | (waited ? 0 : LOCK_NB)) != 0) {
            int e = errno;
            if (e == EWOULDBLOCK && !waited) {
                waited = 1;
                if (x->progress)
                    fprintf(stderr, "qatplan: %s is locked by another download into %s; waiting for it\n", x->part,
                            out_path);
            } else if (e != EINTR || fetch_signal) {
                close(fd);
                return fetch_signal ? qp_fail(err, QP_ERR_INTERRUPTED, "%s: interrupted while waiting for another "
                                              "download into it", out_path)
                                    : qp_fail(err, QP_ERR_IO, "%s: cannot lock %s: %s", out_path, x->part, strerror(e));
            }
        }
        if (lstat(x->part, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            x->fd = fd;
            return QP_OK;
        }
        close(fd); /* the other fetch renamed or removed the file we waited on */
    }
}

/* Where this fetch starts: the end of FILE.part when its meta names this URL and a validator
 * (the request then asks for the rest of that version only), else zero. */
static qp_status part_resume_point(xfer *x, const char *out_path, qp_error *err)
{
    struct stat sb;
    if (fstat(x->fd, &sb) != 0)
        return qp_fail(err, QP_ERR_IO, "%s: cannot stat %s: %s", out_path, x->part, strerror(errno));
    struct stat mb;
    if (sb.st_size > 0 && lstat(x->meta, &mb) != 0 && errno == ENOENT) {
        /* Ours always has its meta before its first byte: this file is someone else's. */
        close(x->fd);
        x->fd = -1; /* so that it is not removed either */
        return qp_fail(err, QP_ERR_INPUT, "%s already exists and is not a download in progress (%lld bytes, no %s): "
                       "move it away or choose another -o", x->part, (long long)sb.st_size, x->meta);
    }
    if (sb.st_size > 0 && meta_read(x) == 0 && resumable(x)) {
        x->have = (uint64_t)sb.st_size;
        if (lseek(x->fd, 0, SEEK_END) < 0)
            return qp_fail(err, QP_ERR_IO, "%s: cannot seek in %s: %s", out_path, x->part, strerror(errno));
        if (x->progress)
            fprintf(stderr, "qatplan: resuming %s from %llu bytes in %s\n", x->label, (unsigned long long)x->have,
                    x->part);
        return QP_OK;
    }
    x->held_etag[0] = x->held_lm[0] = 0; /* bytes of an unknown version, if any: start over */
    if (part_reset(x)) return qp_fail(err, QP_ERR_IO, "%s: cannot reset %s: %s", out_path, x->part, strerror(x->io_error));
    return QP_OK;
}

/* One request: the whole file, or (when FILE.part holds a prefix of a known version) the
 * rest of it with If-Range, so that a changed file comes whole (200) instead of spliced. */
static CURLcode attempt_once(CURL *curl, xfer *x, const char *url, const data_fetch_options *opt, char *errbuf,
                             const char *useragent)
{
    curl_easy_reset(curl);
    errbuf[0] = 0;
    x->decided = x->discard = x->bad_range = x->io_error = x->stalled = 0;
    x->stall_s = opt->stall_seconds;
    x->last_now = 0;
    x->t_activity = x->t_start = qp_now();
    x->cr_start = -1;
    x->resume_from = x->have;
    x->t_last = 0;
    x->bytes_at_start = x->have;
    char validator[300] = "", range[48];
    if (x->have > 0)
        snprintf(validator, sizeof validator, "If-Range: %s", strong_etag(x->held_etag) ? x->held_etag : x->held_lm);
    struct curl_slist *hdrs = validator[0] ? curl_slist_append(NULL, validator) : NULL;
    snprintf(range, sizeof range, "%llu-", (unsigned long long)x->have);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, useragent);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(opt->connect_timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, opt->low_speed_bytes);
    long stall = (long)(opt->stall_seconds + 0.5);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, stall < 1 ? 1L : stall);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    if (x->have > 0) curl_easy_setopt(curl, CURLOPT_RANGE, range);
    if (hdrs) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(hdrs);
    return rc;
}

/* How one attempt ended. */
enum { ATT_DONE, ATT_RETRY, ATT_FAIL };

static int attempt_outcome(xfer *x, CURLcode rc, long code, const char *url, const char *out_path,
                           const data_fetch_options *opt, const char *errbuf, char *last, size_t nlast,
                           qp_status *st, qp_error *err)
{
    if (x->io_error) {
        *st = qp_fail(err, QP_ERR_IO, "%s: cannot write the download: %s", out_path, strerror(x->io_error));
        return ATT_FAIL;
    }
    /* 416 to a resume: the server's file is not longer than our partial one (it changed
     * or shrank), so start over like for a wrong range. */
    if (code == 416 && x->resume_from > 0) x->bad_range = 1;
    if (x->bad_range) {
        /* A 206 we did not ask for, for the wrong offset or of another version: start over. */
        if (part_reset(x)) {
            *st = qp_fail(err, QP_ERR_IO, "%s: cannot reset %s", out_path, x->part);
            return ATT_FAIL;
        }
        snprintf(last, nlast, "%s: the server answered a range request with the wrong range or version", url);
        return ATT_RETRY;
    }
    if (code >= 400 || (rc == CURLE_OK && code >= 300)) {
        if (transient_http(code)) {
            snprintf(last, nlast, "%s: HTTP %ld from the server", url, code);
            return ATT_RETRY;
        }
        *st = qp_fail(err, QP_ERR_NETWORK, "%s: HTTP %ld%s: check the URL", url, code,
                      code == 404 ? " (not found)" : code == 403 ? " (forbidden)" : code == 401 ? " (unauthorized)" : "");
        return ATT_FAIL;
    }
    if (rc == CURLE_OK) {
        if (code != 200 && code != 206 && code != 0) {
            *st = qp_fail(err, QP_ERR_NETWORK, "%s: unexpected HTTP %ld: expected 200 with the file", url, code);
            return ATT_FAIL;
        }
        /* An empty 200 wrote no byte, so nothing reset FILE.part yet. */
        if (!x->decided && code != 206 && start_version(x)) {
            *st = qp_fail(err, QP_ERR_IO, "%s: cannot write the download: %s", out_path, strerror(x->io_error));
            return ATT_FAIL;
        }
        last[0] = 0;
        if (x->progress) {
            if (x->total <= 0) x->total = (double)x->have;
            print_progress(x, qp_now());
        }
        return ATT_DONE;
    }
    if (transient_curl(rc) || (rc == CURLE_ABORTED_BY_CALLBACK && x->stalled)) {
        if (x->stalled || (rc == CURLE_OPERATION_TIMEDOUT && code))
            snprintf(last, nlast, "%s: stalled (no progress for %g s) after %llu bytes", url, opt->stall_seconds,
                     (unsigned long long)x->have);
        else
            snprintf(last, nlast, "%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return ATT_RETRY;
    }
    *st = qp_fail(err, QP_ERR_NETWORK, "%s: %s: check the URL", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
    return ATT_FAIL;
}

/* The attempts, with exponential backoff between them, until the file is in FILE.part. */
static qp_status transfer(xfer *x, const char *url, const char *out_path, const data_fetch_options *opt,
                          qp_error *err)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return qp_fail(err, QP_ERR_NETWORK, "libcurl failed to initialise");
    CURL *curl = curl_easy_init();
    x->curl = curl;
    qp_status st = curl ? QP_OK : qp_fail(err, QP_ERR_NOMEM, "libcurl could not create a handle");
    char errbuf[CURL_ERROR_SIZE], useragent[96], last[512] = "";
    snprintf(useragent, sizeof useragent, "qatplan/%s", qp_version());
    int attempts = 0;
    for (int attempt = 0; !st && attempt <= opt->retries && !fetch_signal; attempt++) {
        attempts = attempt + 1;
        if (attempt > 0) {
            double d = opt->backoff_s;
            for (int k = 1; k < attempt && d < opt->backoff_max_s; k++) d *= 2;
            if (x->retry_after > 0 && (double)x->retry_after > d) d = (double)x->retry_after;
            if (d > opt->backoff_max_s) d = opt->backoff_max_s;
            if (x->printed) {
                fputc('\n', stderr);
                x->printed = 0;
            }
            if (x->progress) fprintf(stderr, "qatplan: %s; retrying in %.1f s\n", last, d);
            sleep_seconds(d);
            if (fetch_signal) break;
        }
        /* Bytes of a version without a validator cannot be continued safely: the server may
         * have changed the file in between, and a Range request would splice two versions. */
        if (x->have > 0 && !resumable(x) && part_reset(x)) {
            st = qp_fail(err, QP_ERR_IO, "%s: cannot reset %s", out_path, x->part);
            break;
        }
        CURLcode rc = attempt_once(curl, x, url, opt, errbuf, useragent);
        if (fetch_signal) break;
        long code = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        int how = attempt_outcome(x, rc, code, url, out_path, opt, errbuf, last, sizeof last, &st, err);
        if (how != ATT_RETRY) break;
    }
    if (x->printed) fputc('\n', stderr);
    if (!st && fetch_signal) st = interrupted(err, out_path);
    else if (!st && last[0])
        st = qp_fail(err, QP_ERR_NETWORK, "%s (gave up after %d attempt%s): check the network or try later, or "
                     "raise --retries/--timeout", last, attempts, attempts == 1 ? "" : "s");
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return st;
}

/* The whole file is in FILE.part: flush it, check it, rename it into place. */
static qp_status part_finish(xfer *x, const char *url, const char *out_path, const data_fetch_options *opt,
                             qp_error *err)
{
    if (fsync(x->fd) != 0) return qp_fail(err, QP_ERR_IO, "%s: cannot flush the download: %s", out_path, strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(x->fd, 0666 & ~mask) != 0)
        return qp_fail(err, QP_ERR_IO, "%s: cannot set the download's mode: %s", out_path, strerror(errno));
    if (opt->sha256) {
        char got[65];
        qp_status st = data_sha256_file(x->part, got, err);
        if (st) return st;
        if (strcasecmp(got, opt->sha256))
            return qp_fail(err, QP_ERR_CHECKSUM,
                           "%s: SHA-256 mismatch: expected %s, got %s; the download is corrupt or the checksum is "
                           "wrong (nothing was written to %s)",
                           url, opt->sha256, got, out_path);
    }
    if (fetch_signal) return interrupted(err, out_path);
    if (rename(x->part, out_path) != 0)
        return qp_fail(err, QP_ERR_IO, "%s: cannot rename the download into place: %s", out_path, strerror(errno));
    return QP_OK;
}

/* SIGINT and SIGTERM set fetch_signal while a fetch runs (unless the process ignores them). */
static void catch_signals(struct sigaction old[2])
{
    static const int sigs[2] = {SIGINT, SIGTERM};
    fetch_signal = 0;
    for (int i = 0; i < 2; i++) {
        sigaction(sigs[i], NULL, &old[i]);
        if (old[i].sa_handler == SIG_IGN && !(old[i].sa_flags & SA_SIGINFO)) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fetch_signal; /* no SA_RESTART: a wait for the lock returns EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* Puts the caller's handlers back; a caller with its own handler also gets the signal. */
static void release_signals(const struct sigaction old[2])
{
    static const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) sigaction(sigs[i], &old[i], NULL);
    int sig = fetch_signal;
    for (int i = 0; i < 2; i++)
        if (sig == sigs[i] && ((old[i].sa_flags & SA_SIGINFO) ||
                               (old[i].sa_handler != SIG_DFL && old[i].sa_handler != SIG_IGN)))
            raise(sig);
}

qp_status data_fetch(const char *url, const char *out_path, const data_fetch_options *opt, qp_error *err)
{
    data_fetch_options defaults;
    if (!opt) {
        data_fetch_options_init(&defaults);
        opt = &defaults;
    }
    if (!qp_is_url(url))
        return qp_fail(err, QP_ERR_INPUT, "'%s' is not an http:// or https:// URL", url);
    if (opt->sha256 && !valid_hex64(opt->sha256))
        return qp_fail(err, QP_ERR_INPUT, "--sha256 '%s' is not 64 hex digits: give the file's SHA-256 (sha256sum)",
                       opt->sha256);
    if (opt->retries < 0 || !(opt->stall_seconds > 0) || !(opt->connect_timeout_s > 0) || opt->low_speed_bytes < 1)
        return qp_fail(err, QP_ERR_INPUT, "download options out of range: retries >= 0, timeouts > 0");

    size_t n = strlen(out_path) + 16;
    char *part = malloc(n), *meta = malloc(n);
    if (!part || !meta) {
        free(part);
        free(meta);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    snprintf(part, n, "%s.part", out_path);
    snprintf(meta, n, "%s.part.meta", out_path);
    xfer x;
    memset(&x, 0, sizeof x);
    x.fd = -1;
    x.part = part;
    x.meta = meta;
    x.url = url;
    url_label(url, x.label, sizeof x.label);
    x.progress = opt->progress < 0 ? isatty(STDERR_FILENO) : opt->progress;
    struct sigaction old[2];
    catch_signals(old);
    qp_status st = part_open(&x, out_path, err);
    if (!st) st = part_resume_point(&x, out_path, err);
    if (!st) st = transfer(&x, url, out_path, opt, err);
    if (!st) st = part_finish(&x, url, out_path, opt, err);
    if (x.fd >= 0) {
        /* Still holding the lock: a fetch waiting for it sees the final state. Only a killed
         * process leaves FILE.part (and its meta) behind, for the next fetch to resume. */
        if (st) unlink(part);
        unlink(meta);
        close(x.fd);
    }
    release_signals(old);
    free(part);
    free(meta);
    return st;
}

/* Creates the missing directories of `dir`; the last one private (0700). */
static qp_status mkdir_p(const char *dir, qp_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return qp_fail(err, QP_ERR_INPUT, "cache directory path is too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, c ? 0777 : 0700) != 0 && errno != EEXIST)
                return qp_fail(err, QP_ERR_IO, "%s: cannot create the download cache directory: %s (set "
                               "QATPLAN_CACHE to a writable directory)", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return QP_OK;
}

/* The cache must be this user's own directory that nobody else can write: whoever can write
 * there can plant or swap the files that commands then read as run records, laws or corpora
 * (or a FILE.part that a download would resume from). lstat: a symlink is refused, not
 * followed. */
static qp_status check_cache_dir(const char *dir, qp_error *err)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0)
        return qp_fail(err, QP_ERR_IO, "%s: cannot inspect the download cache directory: %s", dir, strerror(errno));
    if (S_ISLNK(sb.st_mode))
        return qp_fail(err, QP_ERR_INPUT, "%s: the download cache is a symbolic link, which is not followed: set "
                       "QATPLAN_CACHE to the directory itself", dir);
    if (!S_ISDIR(sb.st_mode))
        return qp_fail(err, QP_ERR_INPUT, "%s: the download cache is not a directory: set QATPLAN_CACHE to a "
                       "directory of your own", dir);
    if (sb.st_uid != geteuid())
        return qp_fail(err, QP_ERR_INPUT, "%s: the download cache belongs to user id %lu, not to you (%lu): set "
                       "QATPLAN_CACHE to a directory of your own", dir, (unsigned long)sb.st_uid,
                       (unsigned long)geteuid());
    if (sb.st_mode & (S_IWGRP | S_IWOTH))
        return qp_fail(err, QP_ERR_INPUT, "%s: the download cache is writable by %s (mode %03o): run 'chmod go-w %s' "
                       "or set QATPLAN_CACHE to a private directory", dir,
                       sb.st_mode & S_IWOTH ? "everyone" : "its group", (unsigned)(sb.st_mode & 0777), dir);
    return QP_OK;
}

qp_status data_open_input(const char *path_or_url, const char *cache_dir, char **local_path, qp_error *err)
{
    *local_path = NULL;
    if (!qp_is_url(path_or_url)) {
        *local_path = strdup(path_or_url);
        return *local_path ? QP_OK : qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    char dir[4096];
    const char *env;
    if (cache_dir) snprintf(dir, sizeof dir, "%s", cache_dir);
    else if ((env = getenv("QATPLAN_CACHE")) && *env) snprintf(dir, sizeof dir, "%s", env);
    else if ((env = getenv("XDG_CACHE_HOME")) && *env) snprintf(dir, sizeof dir, "%s/qatplan", env);
    else if ((env = getenv("HOME")) && *env) snprintf(dir, sizeof dir, "%s/.cache/qatplan", env);
    else snprintf(dir, sizeof dir, "/tmp/qatplan-cache-%lu", (unsigned long)geteuid()); /* one per user */
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/';) dir[--n] = 0; /* "link/" would follow the link */
    qp_status st = mkdir_p(dir, err);
    if (!st) st = check_cache_dir(dir, err);
    if (st) return st;
    /* <first 12 hex of sha256(url)>-<the URL's file name>: distinct URLs never collide and
     * the extension (.csv, .jsonl, .json) that readers look at survives. */
    char h[65];
    data_sha256_hex(path_or_url, strlen(path_or_url), h);
    char name[128];
    const char *p = strstr(path_or_url, "://") + 3;
    const char *slash = strchr(p, '/');
    const char *base = "download";
    size_t blen = strlen(base);
    if (slash) {
        size_t end = strcspn(slash, "?#");
        const char *last = slash;
        for (const char *q = slash; q < slash + end; q++)
            if (*q == '/') last = q;
        if (slash + end > last + 1) {
            base = last + 1;
            blen = (size_t)(slash + end - base);
        }
    }
    if (blen > 80) blen = 80;
    size_t k = (size_t)snprintf(name, sizeof name, "%.12s-", h);
    for (size_t i = 0; i < blen && k + 1 < sizeof name; i++) {
        char c = base[i];
        name[k++] = (isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_') ? c : '_';
    }
    name[k] = 0;
    size_t len = strlen(dir) + strlen(name) + 2;
    char *local = malloc(len);
    if (!local) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    snprintf(local, len, "%s/%s", dir, name);
    data_fetch_options o;
    data_fetch_options_init(&o);
    st = data_fetch(path_or_url, local, &o, err);
    if (st) {
        free(local);
        return st;
    }
    *local_path = local;
    return QP_OK;
}
