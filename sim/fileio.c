#include "fileio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint8_t *apx_read_exact(int fd, size_t len, const char *path, apx_error *err) {
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        apx_fail(err, APX_EWORK, "%s: out of memory for %zu bytes", path, len);
        return NULL;
    }
    size_t got = 0;
    errno = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != len) {
        apx_fail(err, APX_EWORK, "%s: read %zu of %zu bytes: %s", path, got, len,
                 errno ? strerror(errno) : "file shrank while reading");
        free(buf);
        return NULL;
    }
    return buf;
}
