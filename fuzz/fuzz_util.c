/* fuzz_util.c: the fuzz targets' temporary directory and small helpers. */
#include "fuzz_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

static char tmpdir[4096];

char *fz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) fz_fail("out of memory copying a %zu-byte input", size);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz invariant broken: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* Remove what the targets left in the directory (one level: they write plain files), then it. */
static void remove_tmpdir(void)
{
    if (!tmpdir[0]) return;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmpdir);
    tmpdir[0] = '\0';
}

static const char *get_tmpdir(void)
{
    if (tmpdir[0]) return tmpdir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/qatplan-fuzz.XXXXXX", base);
    if (!mkdtemp(tmpdir)) fz_fail("cannot create a temporary directory in %s: %s", base, strerror(errno));
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *fz_temp_path(const char *name)
{
    static char paths[4][4400];
    static int k;
    char *p = paths[k++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", get_tmpdir(), name);
    return p;
}

const char *fz_write_temp(const char *name, const uint8_t *data, size_t size)
{
    const char *path = fz_temp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f) fz_fail("cannot write %s: %s", path, strerror(errno));
    int bad = size && fwrite(data, 1, size, f) != size;
    if (fclose(f) != 0 || bad) fz_fail("cannot write %s: %s", path, strerror(errno));
    return path;
}
