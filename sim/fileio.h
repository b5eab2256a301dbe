/* fileio.h - reading a whole, already validated file into memory. */
#ifndef APX_FILEIO_H
#define APX_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Reads exactly len bytes from fd (at its current offset) into a new buffer
 * (free with free()); the caller checked len against its limits first.
 * Retries interrupted reads. On a short read or an error returns NULL with
 * "PATH: read N of LEN bytes: reason" (APX_EWORK). fd stays open. */
uint8_t *apx_read_exact(int fd, size_t len, const char *path, apx_error *err);

#endif
