#include "qp.h"

#include <stdarg.h>
#include <string.h>

const char *qp_strerror(qp_status s)
{
    switch (s) {
    case QP_OK: return "success";
    case QP_ERR_USAGE: return "bad command-line usage";
    case QP_ERR_INPUT: return "invalid input value";
    case QP_ERR_PARSE: return "malformed file";
    case QP_ERR_IO: return "file input/output error";
    case QP_ERR_NOMEM: return "out of memory";
    case QP_ERR_NUMERIC: return "numerical failure";
    case QP_ERR_UNIDENTIFIED: return "the data cannot identify the requested fit";
    case QP_ERR_NETWORK: return "network error";
    case QP_ERR_CHECKSUM: return "checksum mismatch";
    case QP_ERR_UNSUPPORTED: return "not supported in this build or on this machine";
    case QP_ERR_DIVERGED: return "training diverged";
    case QP_ERR_INTERRUPTED: return "interrupted";
    case QP_ERR_COUNT_: break;
    }
    return "unknown error";
}

qp_status qp_fail(qp_error *err, qp_status s, const char *fmt, ...)
{
    if (err) {
        err->status = s;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

void qp_error_prefix(qp_error *err, const char *fmt, ...)
{
    if (!err) return;
    char prefix[QP_ERRMSG_MAX], old[QP_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
}

void qp_error_clear(qp_error *err)
{
    if (!err) return;
    err->status = QP_OK;
    err->msg[0] = '\0';
}

int qp_exit_code(qp_status s)
{
    if (s == QP_OK) return 0;
    if (s == QP_ERR_USAGE || s == QP_ERR_INPUT) return 2;
    return 1;
}
