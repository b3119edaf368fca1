/* Crash-safe file writes: temp file + fsync + rename for whole files (through symlinks;
 * devices and FIFOs written in place), single O_APPEND write under flock for lines; and the
 * checks commands run before any work: output equal to an input, output not writable. */
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

/* The file a write to `path` lands in: symlinks followed to their last link's target,
 * which may not exist yet (as the shell's `>` does). *target is malloc'ed; *exists says
 * whether it exists, with its stat in *sb. */
static qp_status resolve_target(const char *path, char **target, int *exists, struct stat *sb, qp_error *err)
{
    char *cur = strdup(path);
    if (!cur) return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
    for (int hops = 0; hops < 40; hops++) {
        if (lstat(cur, sb) != 0) {
            if (errno != ENOENT) {
                qp_status st = qp_fail(err, QP_ERR_IO, "%s: cannot inspect %s: %s", path, cur, strerror(errno));
                free(cur);
                return st;
            }
            *exists = 0;
            *target = cur;
            return QP_OK;
        }
        if (!S_ISLNK(sb->st_mode)) {
            *exists = 1;
            *target = cur;
            return QP_OK;
        }
        char link[4096];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0 || n == (ssize_t)sizeof link - 1) {
            qp_status st = qp_fail(err, QP_ERR_IO, "%s: cannot read the symlink %s", path, cur);
            free(cur);
            return st;
        }
        link[n] = '\0';
        /* a relative link is relative to the folder holding the link */
        const char *slash = strrchr(cur, '/');
        size_t dlen = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        char *next = malloc(dlen + (size_t)n + 1);
        if (!next) {
            free(cur);
            return qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
        }
        memcpy(next, cur, dlen);
        memcpy(next + dlen, link, (size_t)n + 1);
        free(cur);
        cur = next;
    }
    free(cur);
    return qp_fail(err, QP_ERR_IO, "%s: too many levels of symbolic links", path);
}

static const char *kind_name(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* Regular files are replaced through a temp file; character devices and FIFOs are written
 * in place; anything else would be destroyed or cannot hold a file's bytes. */
static qp_status check_kind(const char *path, const struct stat *sb, qp_error *err)
{
    if (S_ISREG(sb->st_mode) || S_ISCHR(sb->st_mode) || S_ISFIFO(sb->st_mode)) return QP_OK;
    return qp_fail(err, QP_ERR_IO,
                   "%s is %s: qatplan writes regular files, character devices (e.g. /dev/null) and FIFOs only; "
                   "give a file path",
                   path, kind_name(sb->st_mode));
}

/* mkstemp beside `target`: *tmp is malloc'ed, the descriptor is returned (-1 on error). */
static int temp_beside(const char *path, const char *target, char **tmp, qp_error *err)
{
    size_t n = strlen(target);
    *tmp = malloc(n + 16);
    if (!*tmp) {
        qp_fail(err, QP_ERR_NOMEM, "out of memory writing %s", path);
        return -1;
    }
    snprintf(*tmp, n + 16, "%s.tmpXXXXXX", target);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        qp_fail(err, QP_ERR_IO, "%s: cannot create a temporary file beside %s: %s", path, target, strerror(errno));
        free(*tmp);
        *tmp = NULL;
    }
    return fd;
}

/* The parts in order; a part without data is that many zero bytes. */
static qp_status write_parts(int fd, const qp_part *parts, size_t n, const char *path, qp_error *err)
{
    static const char zeros[65536];
    qp_status st = QP_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (parts[i].data) {
            st = write_all(fd, parts[i].data, parts[i].len, path, err);
            continue;
        }
        for (size_t left = parts[i].len; left && !st;) {
            size_t k = left < sizeof zeros ? left : sizeof zeros;
            st = write_all(fd, zeros, k, path, err);
            left -= k;
        }
    }
    return st;
}

static qp_status write_in_place(const char *path, const char *target, const qp_part *parts, size_t n, qp_error *err)
{
    int fd = open(target, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return qp_fail(err, QP_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    qp_status st = write_parts(fd, parts, n, path, err);
    if (close(fd) != 0 && !st) st = qp_fail(err, QP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

qp_status qp_write_file_atomic(const char *path, const void *data, size_t len, qp_error *err)
{
    qp_part one = {data, len};
    return qp_write_file_atomic_parts(path, &one, 1, err);
}

qp_status qp_write_file_atomic_parts(const char *path, const qp_part *parts, size_t n, qp_error *err)
{
    char *target = NULL, *tmp = NULL;
    int exists = 0;
    struct stat sb;
    qp_status st = resolve_target(path, &target, &exists, &sb, err);
    if (st) return st;
    if (exists && (st = check_kind(path, &sb, err))) goto out;
    if (exists && !S_ISREG(sb.st_mode)) {
        st = write_in_place(path, target, parts, n, err);
        goto out;
    }
    int fd = temp_beside(path, target, &tmp, err);
    if (fd < 0) {
        st = err ? err->status : QP_ERR_IO;
        goto out;
    }
    st = write_parts(fd, parts, n, path, err);
    if (!st && fsync(fd) != 0)
        st = qp_fail(err, QP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    /* mkstemp makes 0600 files: keep the mode of the file replaced, else the usual one. */
    if (!st) {
        mode_t mask = umask(0);
        umask(mask);
        fchmod(fd, exists ? (sb.st_mode & 07777) : (0666 & ~mask));
    }
    if (close(fd) != 0 && !st)
        st = qp_fail(err, QP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, target) != 0)
        st = qp_fail(err, QP_ERR_IO, "%s: cannot rename the temporary file into place: %s", path,
                     strerror(errno));
    if (st) unlink(tmp);
out:
    free(tmp);
    free(target);
    return st;
}

qp_status qp_check_writable(const char *path, const char *what, int append, qp_error *err)
{
    char *target = NULL, *tmp = NULL;
    int exists = 0;
    struct stat sb;
    qp_status st = resolve_target(path, &target, &exists, &sb, err);
    if (!st && exists) st = check_kind(path, &sb, err);
    if (!st && exists && S_ISFIFO(sb.st_mode)) {
        /* opening a FIFO with no reader would hang or fail; the write itself will wait */
    } else if (!st && exists && (append || !S_ISREG(sb.st_mode))) {
        int fd = open(target, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) st = qp_fail(err, QP_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        else close(fd);
    } else if (!st) {
        int fd = temp_beside(path, target, &tmp, err);
        if (fd < 0) st = err ? err->status : QP_ERR_IO;
        else {
            close(fd);
            unlink(tmp);
        }
    }
    if (st && err) {
        size_t l = strlen(err->msg);
        snprintf(err->msg + l, sizeof err->msg - l, " (checked before starting%s%s)", what ? "; fix " : "",
                 what ? what : "");
    }
    free(tmp);
    free(target);
    return st;
}

/* Same file: same st_dev and st_ino when both exist; when neither exists, the same
 * realpath of the folder and the same name. Devices and FIFOs hold no data to lose: two
 * outputs to /dev/null are fine. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return S_ISREG(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea || eb) return 0;
    char *ca = NULL, *cb = NULL;
    int same = 0;
    for (int k = 0; k < 2; k++) {
        const char *p = k ? b : a;
        const char *slash = strrchr(p, '/');
        char *dir = slash ? strndup(p, (size_t)(slash - p) + (slash == p)) : strdup(".");
        char *real = dir ? realpath(dir, NULL) : NULL;
        const char *base = slash ? slash + 1 : p;
        char *c = real ? malloc(strlen(real) + strlen(base) + 2) : NULL;
        if (c) sprintf(c, "%s/%s", real, base);
        free(dir);
        free(real);
        if (k) cb = c;
        else ca = c;
    }
    same = ca && cb ? !strcmp(ca, cb) : !strcmp(a, b);
    free(ca);
    free(cb);
    return same;
}

qp_status qp_refuse_output_is_input(const qp_named_path *outputs, size_t n_out,
                                    const qp_named_path *inputs, size_t n_in, qp_error *err)
{
    for (size_t i = 0; i < n_out; i++) {
        const qp_named_path *o = &outputs[i];
        if (!o->path || qp_is_url(o->path)) continue;
        for (size_t j = 0; j < n_in; j++) {
            const qp_named_path *in = &inputs[j];
            if (!in->path || qp_is_url(in->path) || !same_file(o->path, in->path)) continue;
            return qp_fail(err, QP_ERR_USAGE,
                           "%s %s is the same file as the input %s %s: writing it would destroy that input; "
                           "give %s another path",
                           o->what, o->path, in->what, in->path, o->what);
        }
        for (size_t k = 0; k < i; k++) {
            const qp_named_path *p = &outputs[k];
            if (!p->path || qp_is_url(p->path) || !same_file(o->path, p->path)) continue;
            return qp_fail(err, QP_ERR_USAGE,
                           "%s %s is the same file as the output %s %s: one would overwrite the other; "
                           "give %s another path",
                           o->what, o->path, p->what, p->path, o->what);
        }
    }
    return QP_OK;
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
    /* fsync fails with EINVAL on /dev/null and FIFOs, which hold nothing to make durable */
    struct stat fs;
    int regular = fstat(fd, &fs) == 0 && S_ISREG(fs.st_mode);
    if (!st && regular && fsync(fd) != 0) st = qp_fail(err, QP_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    flock(fd, LOCK_UN);
    close(fd);
    free(buf);
    return st;
}

qp_status qp_read_file(const char *path, char **out, size_t *len, qp_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return qp_fail(err, QP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return qp_fail(err, QP_ERR_IO, "%s is a directory: give a file", path);
    }
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
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        return qp_fail(err, QP_ERR_IO, "%s: read error: %s", path, strerror(e));
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
