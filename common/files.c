/* Crash-safe file writes: temp file + fsync + rename for whole files, single
 * O_APPEND write under flock for lines. */
#include "qp.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static qp_status write_all(int fd, const char *p, size_t len, const char *path, qp_error *err)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return qp_fail(err, QP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return QP_OK;
}

qp_status qp_write_file_atomic(const char *path, const void *data, size_t len, qp_error *err)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    snprintf(tmp, n + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        qp_status st = qp_fail(err, QP_ERR_IO, "%s: cannot create a temporary file beside it: %s",
                               path, strerror(errno));
        free(tmp);
        return st;
    }
    qp_status st = write_all(fd, data, len, path, err);
    if (!st && fsync(fd) != 0)
        st = qp_fail(err, QP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    /* mkstemp makes 0600 files; results are meant to be shared like any other output. */
    if (!st) {
        mode_t mask = umask(0);
        umask(mask);
        fchmod(fd, 0666 & ~mask);
    }
    if (close(fd) != 0 && !st)
        st = qp_fail(err, QP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = qp_fail(err, QP_ERR_IO, "%s: cannot rename the temporary file into place: %s", path,
                     strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

qp_status qp_append_line(const char *path, const char *line, qp_error *err)
{
    size_t len = strlen(line);
    int need_nl = len == 0 || line[len - 1] != '\n';
    char *buf = malloc(len + 2);
    if (!buf) return qp_fail(err, QP_ERR_NOMEM, "out of memory appending to %s", path);
    memcpy(buf, line, len);
    if (need_nl) buf[len++] = '\n';
    /* O_RDWR, not O_WRONLY: the torn-line check below reads the last byte. */
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        free(buf);
        return qp_fail(err, QP_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    }
    qp_status st = QP_OK;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            st = qp_fail(err, QP_ERR_IO, "%s: cannot lock: %s", path, strerror(errno));
            break;
        }
    }
    if (!st) {
        /* A file whose last line was cut off by someone else's crash would glue our line
         * onto it: start on a fresh line in that case. */
        struct stat sb;
        if (fstat(fd, &sb) == 0 && sb.st_size > 0) {
            char last = '\n';
            if (pread(fd, &last, 1, sb.st_size - 1) == 1 && last != '\n')
                st = write_all(fd, "\n", 1, path, err);
        }
    }
    if (!st) st = write_all(fd, buf, len, path, err);
    if (!st && fsync(fd) != 0) st = qp_fail(err, QP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    flock(fd, LOCK_UN);
    close(fd);
    free(buf);
    return st;
}

qp_status qp_read_file(const char *path, char **out, size_t *len, qp_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return qp_fail(err, QP_ERR_NOMEM, "out of memory reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return qp_fail(err, QP_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return QP_OK;
}

int qp_is_url(const char *s)
{
    return s && (!strncasecmp(s, "http://", 7) || !strncasecmp(s, "https://", 8));
}
