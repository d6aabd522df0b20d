/*
 * The probe of tests/real_spawn_diff.rs: reports, first thing in main and
 * before it changes anything, what a spawned child inherited. One
 * "key value" line each; bytes outside printable ASCII (and spaces and
 * backslashes) as \xNN, so a report compares byte for byte.
 *
 * The report goes to "<its own exe>.report.<its pid>": no env var, argv
 * entry or fd of its own, so everything it reports is the spawn's doing.
 * It is written only after everything was read.
 *
 * With PROBE_SPEAK in its environment it then writes one line to stdout
 * and one to stderr (for the output tests).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

extern char **environ;

static char out[1 << 20];
static size_t len;

static void put(const char *s, size_t n) {
    if (len + n < sizeof out) {
        memcpy(out + len, s, n);
        len += n;
    }
}

static void putf(const char *fmt, ...) {
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '\\')
            put((const char *)&c, 1);
        else
            putf("\\x%02x", c);
    }
}

static void put_str(const char *key, const char *s) {
    putf("%s ", key);
    put_escaped(s, strlen(s));
    put("\n", 1);
}

/* The whole of a small /proc file. */
static ssize_t slurp(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    return (ssize_t)got;
}

static void status_lines(void) {
    static const char *keys[] = {"SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm",
                                 "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"};
    static char status[16384];
    if (slurp("/proc/self/status", status, sizeof status) < 0) {
        putf("status unreadable\n");
        return;
    }
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t kl = strlen(keys[k]);
        for (char *line = status; line && *line;) {
            char *nl = strchr(line, '\n');
            if (strncmp(line, keys[k], kl) == 0 && line[kl] == ':') {
                char *v = line + kl + 1;
                while (*v == ' ' || *v == '\t')
                    v++;
                putf("%s ", keys[k]);
                put_escaped(v, nl ? (size_t)(nl - v) : strlen(v));
                put("\n", 1);
            }
            line = nl ? nl + 1 : NULL;
        }
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void fds(void) {
    static int list[4096];
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        putf("fds unreadable\n");
        return;
    }
    int own = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != own)
            list[n++] = fd;
    }
    closedir(d);
    qsort(list, (size_t)n, sizeof list[0], cmp_int);
    for (int i = 0; i < n; i++) {
        char path[64], target[4096], info[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%d", list[i]);
        ssize_t t = readlink(path, target, sizeof target - 1);
        target[t < 0 ? 0 : t] = 0;
        const char *flags = "?";
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", list[i]);
        if (slurp(path, info, sizeof info) > 0) {
            char *f = strstr(info, "flags:");
            if (f) {
                f += 6;
                while (*f == ' ' || *f == '\t')
                    f++;
                char *nl = strchr(f, '\n');
                if (nl)
                    *nl = 0;
                flags = f;
            }
        }
        int fdflags = fcntl(list[i], F_GETFD);
        putf("fd %d ", list[i]);
        put_escaped(target, strlen(target));
        putf(" flags=%s cloexec=%d\n", flags, fdflags < 0 ? -1 : (fdflags & FD_CLOEXEC) != 0);
    }
}

int main(int argc, char **argv) {
    putf("argc %d\n", argc);
    for (int i = 0; i < argc; i++) {
        putf("argv %d ", i);
        put_escaped(argv[i], strlen(argv[i]));
        put("\n", 1);
    }
    int speak = 0;
    for (int i = 0; environ[i]; i++) {
        putf("env %d ", i);
        put_escaped(environ[i], strlen(environ[i]));
        put("\n", 1);
        if (strncmp(environ[i], "PROBE_SPEAK=", 12) == 0)
            speak = 1;
    }
    static char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n < 0 ? 0 : n] = 0;
    static char exe[4096];
    memcpy(exe, buf, sizeof exe);
    put_str("exe", exe);
    put_str("cwd", getcwd(buf, sizeof buf) ? buf : "?");
    mode_t mask = umask(0);
    umask(mask);
    putf("umask %04o\n", (unsigned)mask);
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    putf("uid %u %u %u\ngid %u %u %u\n", ru, eu, su, rg, eg, sg);
    static gid_t groups[65536];
    int ng = getgroups(65536, groups);
    putf("groups");
    for (int i = 0; i < ng; i++)
        putf(" %u", groups[i]);
    putf("\n");
    putf("pid %d\nppid %d\npgid %d\nsid %d\n", getpid(), getppid(), getpgrp(), getsid(0));
    int sig = -1;
    prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
    putf("pdeathsig %d\n", sig);
    status_lines();
    if (slurp("/proc/self/cgroup", buf, sizeof buf) > 0) {
        for (char *line = buf; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            put_str("cgroup", line);
            line = nl ? nl + 1 : NULL;
        }
    }
    fds();
    putf("end\n");

    char report[4200];
    snprintf(report, sizeof report, "%s.report.%d", exe, getpid());
    int fd = open(report, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return 97;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, out + done, len - done);
        if (w <= 0)
            return 98;
        done += (size_t)w;
    }
    close(fd);
    if (speak) {
        static const char o[] = "probe-out\n", e[] = "probe-err\n";
        if (write(1, o, sizeof o - 1) < 0 || write(2, e, sizeof e - 1) < 0)
            return 0;
    }
    return 0;
}
