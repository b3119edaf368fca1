/* child.c: the one child-process runner (sweep trainers and fits, gnuplot), the last line of
 * a child's log, and a wait with a time limit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qp.h"

pid_t qp_spawn(char *const argv[], const qp_spawn_opts *o, qp_error *err)
{
    int logfd = open(o->log_path, O_WRONLY | O_CREAT | O_CLOEXEC | (o->log_append ? O_APPEND : O_TRUNC), 0666);
    if (logfd < 0) {
        qp_fail(err, QP_ERR_IO, "%s: cannot open the log: %s", o->log_path, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        qp_fail(err, QP_ERR_IO, "cannot start %s: %s", argv[0], strerror(errno));
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        if (o->die_with_parent) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(1);
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        if (o->keep_fd >= 0) fcntl(o->keep_fd, F_SETFD, 0);
        execv(argv[0], argv);
        dprintf(2, "%s: cannot run %s: %s\n", o->who ? o->who : "qatplan", argv[0], strerror(errno));
        _exit(127);
    }
    close(logfd);
    return pid;
}

qp_status qp_wait_limit(pid_t pid, double limit_s, int *wstatus, int *timed_out, qp_error *err)
{
    double t0 = qp_now();
    *timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, wstatus, WNOHANG);
        if (r == pid) return QP_OK;
        if (r < 0 && errno != EINTR) return qp_fail(err, QP_ERR_IO, "waiting for a child process: %s", strerror(errno));
        if (!*timed_out && limit_s > 0 && qp_now() - t0 > limit_s) {
            kill(pid, SIGKILL);
            *timed_out = 1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void qp_log_tail(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    char *text;
    if (qp_read_file(path, &text, NULL, NULL)) return;
    size_t len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = 0;
    char *start = strrchr(text, '\n');
    start = start ? start + 1 : text;
    char *cr = strrchr(start, '\r'); /* progress lines redrawn with \r: keep the last */
    if (cr) start = cr + 1;
    snprintf(buf, n, "%s", start);
    free(text);
}

const char *qp_wait_status_text(int wstatus, char *buf, size_t n)
{
    if (WIFEXITED(wstatus)) snprintf(buf, n, "exit status %d", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus)) snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(wstatus), strsignal(WTERMSIG(wstatus)));
    else snprintf(buf, n, "ended abnormally");
    return buf;
}
