/* error.h - one error value for the whole library.
 *
 * Library code never prints and never exits: it fills an apx_error and returns
 * its code. The command-line front end prints err.msg and exits with err.code,
 * which follows the exit statuses of docs/DESIGN.md. */
#ifndef APX_ERROR_H
#define APX_ERROR_H

enum {
    APX_OK = 0,
    APX_EWORK = 1,    /* failure during work (I/O, database, out of memory) */
    APX_EINPUT = 2,   /* bad input or usage: the caller can fix it */
    APX_EINTR = 130,  /* interrupted by a signal */
};

typedef struct apx_error {
    int code;
    char msg[1024];
} apx_error;

/* Sets err (if non-NULL) and returns code, so `return apx_fail(err, ...)` works. */
int apx_fail(apx_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends context ("reading model x.bnn: ") to an error already set. */
int apx_wrap(apx_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
