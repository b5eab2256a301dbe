/* progress.h - a one-line progress report on a terminal.
 *
 * Long work (sweeps, training, evaluation) reports done/total, the rate and
 * an ETA on stderr, rewriting one line at most a few times a second. When
 * stderr is not a terminal (a pipe, CI, a log file) it prints nothing. */
#ifndef APX_PROGRESS_H
#define APX_PROGRESS_H

#include <stddef.h>

typedef struct progress {
    const char *what;     /* "sweep quickstart" */
    const char *unit;     /* "jobs" */
    int enabled;          /* stderr is a terminal and not quiet */
    double start, last;   /* seconds (monotonic) */
} progress;

void progress_begin(progress *p, const char *what, const char *unit, int quiet);
void progress_update(progress *p, size_t done, size_t total);
/* Clears the line (if one was drawn). */
void progress_end(progress *p);

/* Monotonic seconds. */
double progress_now(void);

#endif
