#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int apx_fail(apx_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int apx_wrap(apx_error *err, const char *fmt, ...) {
    if (!err) return APX_EWORK;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Shift the message right and put the prefix in front, cutting the end
     * of the old message if the two do not fit. */
    size_t plen = strlen(prefix), mlen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen + mlen > sizeof err->msg - 1) mlen = sizeof err->msg - 1 - plen;
    memmove(err->msg + plen, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + mlen] = 0;
    return err->code ? err->code : APX_EWORK;
}
