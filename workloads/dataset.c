/* dataset.c - the IDX reader (plain or gzip) and the Fashion-MNIST loader.
 *
 * Every count in a header is checked against limits and against the real
 * size of the data (file size for plain files, the gzip ISIZE trailer for
 * .gz) before anything is allocated, so a hostile header cannot make us
 * allocate more than the file could possibly hold. The whole stream is then
 * read to its end, which also makes zlib verify the gzip CRC. */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

/* Deflate cannot expand better than about 1032:1 (a 258-byte match in a
 * little over 2 bits); a header promising more than this much uncompressed
 * data per compressed byte is lying, whatever ISIZE says (ISIZE is only the
 * size mod 2^32). */
#define DEFLATE_MAX_RATIO 1040u

/* One open IDX file whose header has been read and checked. */
typedef struct idx_file {
    const char *path;
    const char *what;        /* "pixels" or "labels", for messages */
    gzFile gz;
    uint32_t dims[3];        /* n, rows, cols (labels: n only) */
    uint64_t header_bytes;
    uint64_t payload_bytes;  /* product of dims */
} idx_file;

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* What a read from a gzFile ran into. zlib's message lives in the gzFile,
 * so it is copied here before the file is closed. */
typedef struct gz_status {
    int zerr;       /* Z_OK; Z_BUF_ERROR: the compressed stream ended early;
                       anything else: corrupt data (bad CRC, length, codes) */
    char msg[160];  /* zlib's message without its "<fd:N>: " prefix, or "" */
} gz_status;

static int gz_corrupt(const gz_status *st) {
    return st->zerr != Z_OK && st->zerr != Z_BUF_ERROR;
}

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Reads up to n bytes, stopping early only at the end of the stream or on
 * an error (then recorded in *st). Returns the count read. A zlib error
 * discards the data decoded in the failing gzread call, which is fine: the
 * read fails either way. */
static uint64_t gz_read_full(gzFile gz, void *buf, uint64_t n, gz_status *st) {
    uint64_t got = 0;
    st->zerr = Z_OK;
    st->msg[0] = 0;
    while (got < n) {
        uint64_t want = n - got;
        unsigned chunk = want > (1u << 30) ? (1u << 30) : (unsigned)want;
        int r = gzread(gz, (unsigned char *)buf + got, chunk);
        if (r <= 0) {
            const char *m = gzerror(gz, &st->zerr);
            if (st->zerr == Z_ERRNO) m = strerror(errno);
            if (st->zerr != Z_OK && m) {
                const char *colon = m[0] == '<' ? strstr(m, ">: ") : NULL;
                snprintf(st->msg, sizeof st->msg, "%s", colon ? colon + 3 : m);
            }
            break;
        }
        got += (unsigned)r;
    }
    return got;
}

/* Opens path, checks magic and dimensions, and checks that the stored data
 * size equals header + payload. Nothing but the zlib stream is allocated. */
static int idx_open(idx_file *f, const char *path, int labels, apx_error *err) {
    memset(f, 0, sizeof *f);
    f->path = path;
    f->what = labels ? "labels" : "pixels";
    const uint32_t want_magic = labels ? IDX_MAGIC_LABELS : IDX_MAGIC_IMAGES;
    const unsigned ndims = labels ? 1 : 3;
    const char *kind = labels ? "label" : "image";

    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return apx_fail(err, errno == ENOENT ? APX_EINPUT : APX_EWORK, "%s: cannot open: %s",
                        path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return apx_fail(err, APX_EINPUT, "%s: not a regular file", path);
    }
    uint64_t file_size = (uint64_t)st.st_size;

    /* A gzip member starts with 1f 8b and ends with CRC32 and ISIZE (RFC 1952). */
    unsigned char head[2] = {0, 0};
    int is_gzip = file_size >= 2 && pread(fd, head, 2, 0) == 2 && head[0] == 0x1f && head[1] == 0x8b;
    uint32_t isize = 0;
    if (is_gzip) {
        unsigned char tail[4];
        if (file_size < 18 || pread(fd, tail, 4, (off_t)(file_size - 4)) != 4) {
            close(fd);
            return apx_fail(err, APX_EINPUT,
                            "%s: truncated gzip file (%llu bytes, a gzip member has at least 18)",
                            path, (unsigned long long)file_size);
        }
        isize = le32(tail);
    }

    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return apx_fail(err, APX_EWORK, "%s: cannot open (zlib): out of memory", path);
    }
    gzbuffer(f->gz, 1u << 16);

    /* Header: magic, then ndims big-endian u32 dimensions. */
    unsigned char hdr[16];
    f->header_bytes = 4 + 4ull * ndims;
    gz_status zs;
    uint64_t got = gz_read_full(f->gz, hdr, 4, &zs);
    if (got < 4) {
        idx_close(f);
        if (gz_corrupt(&zs))
            return apx_fail(err, APX_EINPUT, "%s: corrupt gzip data (zlib: %s)", path, zs.msg);
        return apx_fail(err, APX_EINPUT, "%s: truncated: %llu of 4 bytes of IDX magic", path,
                        (unsigned long long)got);
    }
    uint32_t magic = be32(hdr);
    if (magic != want_magic) {
        idx_close(f);
        return apx_fail(err, APX_EINPUT, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)",
                        path, kind, magic, want_magic);
    }
    got = gz_read_full(f->gz, hdr + 4, 4ull * ndims, &zs);
    if (got < 4ull * ndims) {
        idx_close(f);
        if (gz_corrupt(&zs))
            return apx_fail(err, APX_EINPUT, "%s: corrupt gzip data (zlib: %s)", path, zs.msg);
        return apx_fail(err, APX_EINPUT,
                        "%s: truncated: header needs %u bytes of dimensions at byte 4, got %llu",
                        path, 4 * ndims, (unsigned long long)got);
    }
    static const char *dim_name[3] = {"item count", "rows", "columns"};
    uint64_t payload = 1;
    for (unsigned d = 0; d < ndims; d++) {
        uint32_t v = be32(hdr + 4 + 4 * d);
        uint32_t limit = d == 0 ? IDX_MAX_ITEMS : IDX_MAX_SIDE;
        if (v == 0 || v > limit) {
            idx_close(f);
            return apx_fail(err, APX_EINPUT, "%s: byte %u: %s %u is %s (limit %u)", path,
                            4 + 4 * d, dim_name[d], v, v ? "too large" : "zero", limit);
        }
        f->dims[d] = v;
        payload *= v;  /* <= 1e7 * 4096 * 4096 < 2^48: no overflow */
    }
    f->payload_bytes = payload;
    uint64_t total = f->header_bytes + payload;
    char shape[96];
    if (labels)
        snprintf(shape, sizeof shape, "%u labels", f->dims[0]);
    else
        snprintf(shape, sizeof shape, "%u images of %ux%u", f->dims[0], f->dims[1], f->dims[2]);

    if (!is_gzip) {
        if (gzdirect(f->gz) == 0) {
            /* zlib recognised a compressed stream we did not (should not happen). */
            idx_close(f);
            return apx_fail(err, APX_EINPUT, "%s: unrecognised compressed format", path);
        }
        if (file_size < total) {
            idx_close(f);
            return apx_fail(err, APX_EINPUT,
                            "%s: truncated: expected %llu bytes of %s, got %llu (%s)", path,
                            (unsigned long long)payload, f->what,
                            (unsigned long long)(file_size - f->header_bytes), shape);
        }
        if (file_size > total) {
            idx_close(f);
            return apx_fail(err, APX_EINPUT,
                            "%s: %llu bytes of trailing garbage after %llu bytes of %s (%s)", path,
                            (unsigned long long)(file_size - total), (unsigned long long)payload,
                            f->what, shape);
        }
    } else {
        if (total / DEFLATE_MAX_RATIO > file_size) {
            idx_close(f);
            return apx_fail(err, APX_EINPUT,
                            "%s: header promises %s (%llu bytes), more than %llu compressed bytes "
                            "can hold",
                            path, shape, (unsigned long long)total, (unsigned long long)file_size);
        }
        if ((uint32_t)total != isize) {
            idx_close(f);
            return apx_fail(err, APX_EINPUT,
                            "%s: size mismatch: header promises %s (%llu bytes uncompressed), but "
                            "the gzip trailer (ISIZE) says %u bytes mod 2^32 (truncated or corrupt "
                            "file?)",
                            path, shape, (unsigned long long)total, isize);
        }
    }
    return APX_OK;
}

/* Reads the payload: the first `keep` bytes into dst, the rest is read and
 * discarded (so truncation, trailing data and the gzip CRC are still
 * checked). */
static int idx_read_payload(idx_file *f, uint8_t *dst, uint64_t keep, apx_error *err) {
    gz_status zs;
    uint64_t got = gz_read_full(f->gz, dst, keep, &zs);
    if (got == keep && keep < f->payload_bytes) {
        unsigned char scratch[1 << 14];
        while (got < f->payload_bytes) {
            uint64_t want = f->payload_bytes - got;
            if (want > sizeof scratch) want = sizeof scratch;
            uint64_t r = gz_read_full(f->gz, scratch, want, &zs);
            got += r;
            if (r < want) break;
        }
    }
    if (got < f->payload_bytes) {
        if (gz_corrupt(&zs))
            return apx_fail(err, APX_EINPUT,
                            "%s: corrupt gzip data in the %s after byte %llu of them (zlib: %s)",
                            f->path, f->what, (unsigned long long)got, zs.msg);
        return apx_fail(err, APX_EINPUT, "%s: truncated: expected %llu bytes of %s, got %llu%s%s%s",
                        f->path, (unsigned long long)f->payload_bytes, f->what,
                        (unsigned long long)got, zs.msg[0] ? " (zlib: " : "", zs.msg,
                        zs.msg[0] ? ")" : "");
    }
    /* The stream must end here; reading on also lets zlib check the CRC. */
    unsigned char extra;
    if (gz_read_full(f->gz, &extra, 1, &zs) > 0)
        return apx_fail(err, APX_EINPUT, "%s: trailing garbage after %llu bytes of %s", f->path,
                        (unsigned long long)f->payload_bytes, f->what);
    if (zs.zerr != Z_OK)
        return apx_fail(err, APX_EINPUT, "%s: corrupt gzip data after the %s (zlib: %s)",
                        f->path, f->what, zs.msg);
    return APX_OK;
}

int idx_load(const char *images_path, const char *labels_path, uint32_t n_classes,
             uint32_t limit, dataset *out, apx_error *err) {
    if (n_classes == 0 || n_classes > 256)
        return apx_fail(err, APX_EINPUT, "idx_load: n_classes %u outside 1..256", n_classes);
    idx_file im, lb;
    int rc = idx_open(&im, images_path, 0, err);
    if (rc) return rc;
    rc = idx_open(&lb, labels_path, 1, err);
    if (rc) {
        idx_close(&im);
        return rc;
    }
    if (im.dims[0] != lb.dims[0]) {
        rc = apx_fail(err, APX_EINPUT, "%s has %u images but %s has %u labels", images_path,
                      im.dims[0], labels_path, lb.dims[0]);
        goto fail_files;
    }

    uint32_t n = im.dims[0];
    uint32_t keep = limit > 0 && limit < n ? limit : n;
    uint64_t image_bytes = (uint64_t)im.dims[1] * im.dims[2];
    uint64_t keep_bytes = (uint64_t)keep * image_bytes;
    if (keep_bytes > SIZE_MAX) {
        rc = apx_fail(err, APX_EWORK, "%s: %llu bytes of pixels do not fit in memory",
                      images_path, (unsigned long long)keep_bytes);
        goto fail_files;
    }
    /* Labels are read whole (all are validated), pixels only as far as kept. */
    uint8_t *pixels = malloc((size_t)keep_bytes);
    uint8_t *labels = malloc(n);
    if (!pixels || !labels) {
        free(pixels);
        free(labels);
        rc = apx_fail(err, APX_EWORK, "%s: out of memory for %u images of %ux%u", images_path,
                      keep, im.dims[1], im.dims[2]);
        goto fail_files;
    }
    rc = idx_read_payload(&lb, labels, n, err);
    if (rc == APX_OK) {
        for (uint32_t i = 0; i < n; i++)
            if (labels[i] >= n_classes) {
                rc = apx_fail(err, APX_EINPUT,
                              "%s: sample %u (byte %llu): label %u, expected < %u", labels_path,
                              i, (unsigned long long)(lb.header_bytes + i), labels[i], n_classes);
                break;
            }
    }
    if (rc == APX_OK) rc = idx_read_payload(&im, pixels, keep_bytes, err);
    idx_close(&im);
    idx_close(&lb);
    if (rc) {
        free(pixels);
        free(labels);
        return rc;
    }
    if (keep < n) {
        uint8_t *shrunk = realloc(labels, keep);
        if (shrunk) labels = shrunk;
    }
    out->n = keep;
    out->rows = im.dims[1];
    out->cols = im.dims[2];
    out->n_classes = n_classes;
    out->pixels = pixels;
    out->labels = labels;
    return APX_OK;

fail_files:
    idx_close(&im);
    idx_close(&lb);
    return rc;
}

const char *fmnist_dir(const char *dir) {
    if (dir && *dir) return dir;
    const char *env = getenv(FMNIST_ENV);
    if (env && *env) return env;
    return FMNIST_DEFAULT_DIR;
}

/* The split's IDX pair in d, named as Fashion-MNIST's. */
static int load_split(const char *d, const char *split, uint32_t n_classes, uint32_t limit,
                      int is_fmnist, dataset *out, apx_error *err) {
    const char *prefix;
    if (split && strcmp(split, "train") == 0)
        prefix = "train";
    else if (split && strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return apx_fail(err, APX_EINPUT,
                        "Fashion-MNIST: unknown split '%s' (expected \"train\" or \"test\")",
                        split ? split : "(null)");
    char images[4096], labels[4096];
    int a = snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", d, prefix);
    int b = snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", d, prefix);
    if (a < 0 || b < 0 || (size_t)a >= sizeof images || (size_t)b >= sizeof labels)
        return apx_fail(err, APX_EINPUT, "Fashion-MNIST: directory name too long: %s", d);
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode) || stat(images, &st) != 0 ||
        stat(labels, &st) != 0) {
        if (is_fmnist)
            return apx_fail(err, APX_EINPUT,
                            "Fashion-MNIST not found in %s: install the Debian package "
                            "dataset-fashion-mnist (scripts/setup does) or set %s=/path/to/dir",
                            d, FMNIST_ENV);
        return apx_fail(err, APX_EINPUT, "no %s and %s in %s", strrchr(images, '/') + 1,
                        strrchr(labels, '/') + 1, d);
    }
    int rc = idx_load(images, labels, n_classes, limit, out, err);
    if (rc) return apx_wrap(err, "%s %s split: ", is_fmnist ? "Fashion-MNIST" : d, split);
    return APX_OK;
}

int fmnist_load(const char *dir, const char *split, uint32_t limit, dataset *out,
                apx_error *err) {
    return load_split(fmnist_dir(dir), split, 10, limit, 1, out, err);
}

int idx_dir_load(const char *dir, const char *split, uint32_t n_classes, uint32_t limit,
                 dataset *out, apx_error *err) {
    return load_split(fmnist_dir(dir), split, n_classes, limit, !dir, out, err);
}

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
