#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_begin(progress *p, const char *what, const char *unit, int quiet) {
    p->what = what;
    p->unit = unit;
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->start = progress_now();
    p->last = 0;
}

void progress_update(progress *p, size_t done, size_t total) {
    if (!p->enabled) return;
    double now = progress_now();
    if (now - p->last < 0.25 && done < total) return;
    p->last = now;
    double elapsed = now - p->start, rate = elapsed > 0 ? done / elapsed : 0;
    fprintf(stderr, "\r\033[K%s: %zu/%zu %s", p->what, done, total, p->unit);
    if (rate > 0) {
        fprintf(stderr, ", %.3g %s/s", rate, p->unit);
        if (done < total) fprintf(stderr, ", ETA %.0f s", (total - done) / rate);
    }
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->enabled) fprintf(stderr, "\r\033[K");
}
