/* npz.c - NumPy .npz archives (zip of .npy) and the BNN importer.
 *
 * Zip (PKWARE APPNOTE 6.3): the end of central directory record (EOCD) is
 * found by scanning back from the end for its signature with a comment
 * length that reaches exactly the end of the file. It names the central
 * directory; each central entry names its local header, which repeats the
 * name, method, flags and (unless flag bit 3, "sizes in a data descriptor",
 * is set) the CRC and sizes. numpy.savez always opens its entries with
 * force_zip64, so every local header carries sizes of 0xffffffff and the
 * real ones in a zip64 extra field (header id 0x0001); central entries use
 * zip64 fields only when a value does not fit in 32 bits. Everything an
 * entry claims is checked against the file at open: the data of each entry
 * lies between its local header and the central directory, entries do not
 * overlap, names are unique, and a DEFLATE entry's uncompressed size is at
 * most 1032 times its compressed size (DEFLATE's largest ratio) and at most
 * NPZ_MAX_ENTRY_BYTES, so no claimed size can make the reader allocate more
 * than the file could produce.
 *
 * .npy (numpy/lib/format.py): magic "\x93NUMPY", major and minor version
 * bytes, a header length (u16 in 1.0, u32 in 2.0 and 3.0), then a Python
 * dict literal with 'descr', 'fortran_order' and 'shape', padded with
 * spaces and ended by '\n'; then the data. The header is parsed by a small
 * recursive-descent reader of exactly that literal subset, never evaluated.
 *
 * The importer is at the end of the file (bnn_import_npz). */
#include "npz.h"

#include "../sim/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../sim/config.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define END_SIZE 22u
#define METHOD_STORED 0
#define METHOD_DEFLATED 8
#define FLAG_ENCRYPTED 0x0001u
#define FLAG_DESCRIPTOR 0x0008u
#define FLAG_STRONG_ENCRYPTION 0x0040u
#define DEFLATE_MAX_RATIO 1032u

/* ---- little-endian access ------------------------------------------------- */

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- the archive ----------------------------------------------------------- */

typedef struct npz_entry {
    char *name;            /* as stored, NUL-terminated */
    size_t key_len;        /* name without a final ".npy" */
    uint32_t method, flags, crc;
    uint64_t comp, uncomp; /* compressed and uncompressed sizes */
    uint64_t local;        /* offset of the local header */
    uint64_t data;         /* offset of the data */
} npz_entry;

struct npz {
    char *path;
    uint8_t *buf;
    size_t len;
    size_t n;
    npz_entry *e;
};

void npz_close(npz *z) {
    if (!z) return;
    for (size_t i = 0; i < z->n; i++) free(z->e[i].name);
    free(z->e);
    free(z->buf);
    free(z->path);
    free(z);
}

size_t npz_count(const npz *z) { return z->n; }
const char *npz_entry_name(const npz *z, size_t i) { return i < z->n ? z->e[i].name : NULL; }
const char *npz_path(const npz *z) { return z->path; }

/* The zip64 extended information field (id 0x0001) inside an extra field:
 * its values in APPNOTE order (uncompressed size, compressed size, local
 * header offset), of which only those whose 32-bit field is 0xffffffff are
 * present. Returns 0, or -1 if the extra field is malformed, -2 if the
 * zip64 field is missing or too short. */
static int zip64_values(const uint8_t *x, size_t n, int need_uncomp, int need_comp, int need_off,
                        uint64_t *uncomp, uint64_t *comp, uint64_t *off) {
    size_t p = 0;
    const uint8_t *z64 = NULL;
    size_t z64_len = 0;
    while (p + 4 <= n) {
        uint32_t id = le16(x + p), size = le16(x + p + 2);
        if (p + 4 + size > n) return -1;
        if (id == 1 && !z64) {
            z64 = x + p + 4;
            z64_len = size;
        }
        p += 4 + size;
    }
    if (p != n) return -1;
    size_t want = 8u * (size_t)(need_uncomp + need_comp + need_off);
    if (want == 0) return 0;
    if (!z64 || z64_len < want) return -2;
    size_t q = 0;
    if (need_uncomp) *uncomp = le64(z64 + q), q += 8;
    if (need_comp) *comp = le64(z64 + q), q += 8;
    if (need_off) *off = le64(z64 + q);
    return 0;
}

static int name_cmp(const void *a, const void *b) {
    const npz_entry *x = *(const npz_entry *const *)a, *y = *(const npz_entry *const *)b;
    return strcmp(x->name, y->name);
}
static int local_cmp(const void *a, const void *b) {
    const npz_entry *x = *(const npz_entry *const *)a, *y = *(const npz_entry *const *)b;
    return x->local < y->local ? -1 : x->local > y->local;
}

/* Checks an entry's local header against its central entry; sets e->data. */
static int check_local(const npz *z, npz_entry *e, uint64_t cd_offset, apx_error *err) {
    const char *fn = z->path;
    unsigned long long at = (unsigned long long)e->local;
    if (e->local + LOCAL_SIZE > cd_offset)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': local header at byte %llu lies beyond the start of the "
                        "central directory (byte %llu)",
                        fn, e->name, at, (unsigned long long)cd_offset);
    const uint8_t *h = z->buf + e->local;
    if (le32(h) != SIG_LOCAL)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): bad signature 0x%08x", fn,
                        e->name, at, le32(h));
    uint32_t flags = le16(h + 6), method = le16(h + 8), crc = le32(h + 14);
    uint64_t comp = le32(h + 18), uncomp = le32(h + 22);
    uint32_t nlen = le16(h + 26), xlen = le16(h + 28);
    if (e->local + LOCAL_SIZE + nlen + xlen > cd_offset)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): name and extra field run "
                        "into the central directory",
                        fn, e->name, at);
    if (flags != e->flags || method != e->method)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): flags 0x%04x and method %u "
                        "differ from the central directory's 0x%04x and %u",
                        fn, e->name, at, flags, method, e->flags, e->method);
    if (nlen != strlen(e->name) || memcmp(h + LOCAL_SIZE, e->name, nlen) != 0)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): the local name differs "
                        "from the central directory's",
                        fn, e->name, at);
    if (comp == 0xffffffffu || uncomp == 0xffffffffu) {
        /* a local zip64 field holds both sizes (APPNOTE 4.5.3) */
        if (zip64_values(h + LOCAL_SIZE + nlen, xlen, 1, 1, 0, &uncomp, &comp, NULL) != 0)
            return apx_fail(err, APX_EINPUT,
                            "%s: entry '%s' (local header at byte %llu): sizes of 0xffffffff "
                            "without a valid zip64 extra field",
                            fn, e->name, at);
    }
    int deferred = (flags & FLAG_DESCRIPTOR) != 0; /* 0 allowed: sizes follow the data */
    if (!(crc == e->crc || (deferred && crc == 0)))
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): CRC-32 %08x, the central "
                        "directory says %08x",
                        fn, e->name, at, crc, e->crc);
    if (!((comp == e->comp && uncomp == e->uncomp) || (deferred && comp == 0 && uncomp == 0)))
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (local header at byte %llu): sizes %llu/%llu "
                        "(compressed/uncompressed), the central directory says %llu/%llu",
                        fn, e->name, at, (unsigned long long)comp, (unsigned long long)uncomp,
                        (unsigned long long)e->comp, (unsigned long long)e->uncomp);
    e->data = e->local + LOCAL_SIZE + nlen + xlen;
    if (e->comp > cd_offset - e->data)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s' (data at byte %llu): %llu bytes of data run past the "
                        "start of the central directory (byte %llu)",
                        fn, e->name, (unsigned long long)e->data, (unsigned long long)e->comp,
                        (unsigned long long)cd_offset);
    return APX_OK;
}

/* Parses central entry i at *pos (inside [.., cd_end)); advances *pos. */
static int parse_central(npz *z, size_t i, uint64_t *pos, uint64_t cd_end, apx_error *err) {
    const char *fn = z->path;
    unsigned long long at = (unsigned long long)*pos;
    if (*pos + CENTRAL_SIZE > cd_end)
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu (byte %llu) runs past the directory's "
                        "end (byte %llu)",
                        fn, i, at, (unsigned long long)cd_end);
    const uint8_t *c = z->buf + *pos;
    if (le32(c) != SIG_CENTRAL)
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu (byte %llu): bad signature 0x%08x", fn, i,
                        at, le32(c));
    npz_entry *e = &z->e[i];
    e->flags = le16(c + 8);
    e->method = le16(c + 10);
    e->crc = le32(c + 16);
    e->comp = le32(c + 20);
    e->uncomp = le32(c + 24);
    uint32_t nlen = le16(c + 28), xlen = le16(c + 30), clen = le16(c + 32);
    uint32_t disk = le16(c + 34);
    e->local = le32(c + 42);
    if (*pos + CENTRAL_SIZE + nlen + xlen + clen > cd_end)
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu (byte %llu): name, extra field and "
                        "comment run past the directory's end",
                        fn, i, at);
    if (nlen == 0 || nlen > NPZ_MAX_NAME || memchr(c + CENTRAL_SIZE, 0, nlen))
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu (byte %llu): a name must have 1..%u "
                        "bytes and no NUL (length %u)",
                        fn, i, at, NPZ_MAX_NAME, nlen);
    e->name = malloc(nlen + 1);
    if (!e->name) return apx_fail(err, APX_EWORK, "%s: out of memory", fn);
    memcpy(e->name, c + CENTRAL_SIZE, nlen);
    e->name[nlen] = 0;
    e->key_len = nlen > 4 && memcmp(e->name + nlen - 4, ".npy", 4) == 0 ? nlen - 4 : nlen;
    int need_u = e->uncomp == 0xffffffffu, need_c = e->comp == 0xffffffffu,
        need_o = e->local == 0xffffffffu;
    int z64 = zip64_values(c + CENTRAL_SIZE + nlen, xlen, need_u, need_c, need_o, &e->uncomp,
                           &e->comp, &e->local);
    if (z64 == -1)
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu ('%s', byte %llu): malformed extra field",
                        fn, i, e->name, at);
    if (z64 == -2)
        return apx_fail(err, APX_EINPUT,
                        "%s: central directory entry %zu ('%s', byte %llu): a field of "
                        "0xffffffff without its zip64 value",
                        fn, i, e->name, at);
    if (disk != 0)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': starts on disk %u (multi-disk archives are not "
                        "supported)",
                        fn, e->name, disk);
    if (e->flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION))
        return apx_fail(err, APX_EINPUT, "%s: entry '%s' is encrypted (not supported)", fn,
                        e->name);
    if (e->method != METHOD_STORED && e->method != METHOD_DEFLATED)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': compression method %u is not supported (0 stored and 8 "
                        "deflated are, as numpy writes)",
                        fn, e->name, e->method);
    if (e->method == METHOD_STORED && e->comp != e->uncomp)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': stored, but its sizes differ (%llu compressed, %llu "
                        "uncompressed)",
                        fn, e->name, (unsigned long long)e->comp, (unsigned long long)e->uncomp);
    if (e->method == METHOD_DEFLATED && e->uncomp / DEFLATE_MAX_RATIO > e->comp)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': %llu bytes cannot inflate to the %llu the directory "
                        "claims",
                        fn, e->name, (unsigned long long)e->comp, (unsigned long long)e->uncomp);
    if (e->uncomp > NPZ_MAX_ENTRY_BYTES)
        return apx_fail(err, APX_EINPUT,
                        "%s: entry '%s': %llu bytes uncompressed is more than the limit of %llu",
                        fn, e->name, (unsigned long long)e->uncomp,
                        (unsigned long long)NPZ_MAX_ENTRY_BYTES);
    *pos += CENTRAL_SIZE + nlen + xlen + clen;
    return APX_OK;
}

/* Takes ownership of buf (malloc'ed, len bytes). */
static int npz_parse(uint8_t *buf, size_t len, const char *name, npz **out, apx_error *err) {
    npz *z = calloc(1, sizeof *z);
    char *path = strdup(name ? name : "(npz)");
    if (!z || !path) {
        free(z);
        free(path);
        free(buf);
        return apx_fail(err, APX_EWORK, "%s: out of memory", name ? name : "(npz)");
    }
    z->path = path;
    z->buf = buf;
    z->len = len;
    const char *fn = z->path;
    int rc = APX_OK;

    /* the end of central directory record */
    if (len < END_SIZE) {
        rc = apx_fail(err, APX_EINPUT, "%s: not a zip archive (.npz): %zu bytes is too short", fn,
                      len);
        goto fail;
    }
    size_t end = SIZE_MAX;
    size_t lowest = len - END_SIZE > 0xffff ? len - END_SIZE - 0xffff : 0;
    for (size_t p = len - END_SIZE + 1; p-- > lowest;)
        if (le32(buf + p) == SIG_END && le16(buf + p + 20) == len - p - END_SIZE) {
            end = p;
            break;
        }
    if (end == SIZE_MAX) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: not a zip archive (.npz): no end of central directory record", fn);
        goto fail;
    }
    const uint8_t *eo = buf + end;
    uint32_t disk = le16(eo + 4), cd_disk = le16(eo + 6);
    uint32_t n_disk = le16(eo + 8), n_total = le16(eo + 10);
    uint64_t cd_size = le32(eo + 12), cd_offset = le32(eo + 16);
    /* Saturated fields mean the real values are in a zip64 end record
     * (APPNOTE 4.4.1.4); a zip64 end record with valid 32-bit fields here
     * is simply not needed. */
    if (n_total == 0xffff || cd_size == 0xffffffffu || cd_offset == 0xffffffffu) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: end record at byte %zu: a zip64 end record (archives over 4 GiB or "
                      "65535 entries) is not supported",
                      fn, end);
        goto fail;
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_total) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: end record at byte %zu: a multi-disk archive (disk %u, directory on "
                      "disk %u, %u of %u entries) is not supported",
                      fn, end, disk, cd_disk, n_disk, n_total);
        goto fail;
    }
    if (cd_offset > end || cd_size > end - cd_offset) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: end record at byte %zu: central directory of %llu bytes at byte %llu "
                      "runs past the end record",
                      fn, end, (unsigned long long)cd_size, (unsigned long long)cd_offset);
        goto fail;
    }
    if ((uint64_t)n_total * CENTRAL_SIZE > cd_size) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: end record at byte %zu: %u entries cannot fit in a central directory "
                      "of %llu bytes",
                      fn, end, n_total, (unsigned long long)cd_size);
        goto fail;
    }

    /* the central directory */
    z->e = calloc(n_total ? n_total : 1, sizeof *z->e);
    if (!z->e) {
        rc = apx_fail(err, APX_EWORK, "%s: out of memory", fn);
        goto fail;
    }
    z->n = n_total;
    uint64_t pos = cd_offset, cd_end = cd_offset + cd_size;
    for (size_t i = 0; i < z->n; i++)
        if ((rc = parse_central(z, i, &pos, cd_end, err))) goto fail;
    if (pos != cd_end) {
        rc = apx_fail(err, APX_EINPUT,
                      "%s: central directory: %llu bytes after its %zu entries (byte %llu)", fn,
                      (unsigned long long)(cd_end - pos), z->n, (unsigned long long)pos);
        goto fail;
    }
    for (size_t i = 0; i < z->n; i++)
        if ((rc = check_local(z, &z->e[i], cd_offset, err))) goto fail;

    /* unique names, no overlapping entries */
    if (z->n > 1) {
        npz_entry **order = malloc(z->n * sizeof *order);
        if (!order) {
            rc = apx_fail(err, APX_EWORK, "%s: out of memory", fn);
            goto fail;
        }
        for (size_t i = 0; i < z->n; i++) order[i] = &z->e[i];
        qsort(order, z->n, sizeof *order, name_cmp);
        for (size_t i = 1; i < z->n && !rc; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0)
                rc = apx_fail(err, APX_EINPUT, "%s: entry '%s' appears twice", fn,
                              order[i]->name);
        qsort(order, z->n, sizeof *order, local_cmp);
        for (size_t i = 1; i < z->n && !rc; i++)
            if (order[i - 1]->data + order[i - 1]->comp > order[i]->local)
                rc = apx_fail(err, APX_EINPUT,
                              "%s: entries '%s' and '%s' overlap (byte %llu)", fn,
                              order[i - 1]->name, order[i]->name,
                              (unsigned long long)order[i]->local);
        free(order);
        if (rc) goto fail;
    }
    *out = z;
    return APX_OK;
fail:
    npz_close(z);
    return rc;
}

int npz_open_buffer(const void *buf, size_t len, const char *name, npz **out, apx_error *err) {
    const char *fn = name ? name : "(npz)";
    if ((uint64_t)len > NPZ_MAX_FILE_BYTES)
        return apx_fail(err, APX_EINPUT, "%s: %zu bytes is more than the %llu this reader handles",
                        fn, len, (unsigned long long)NPZ_MAX_FILE_BYTES);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return apx_fail(err, APX_EWORK, "%s: out of memory for %zu bytes", fn, len);
    if (len) memcpy(copy, buf, len);
    return npz_parse(copy, len, fn, out, err);
}

int npz_open(const char *path, npz **out, apx_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return apx_fail(err, errno == ENOENT ? APX_EINPUT : APX_EWORK, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return apx_fail(err, APX_EINPUT, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > NPZ_MAX_FILE_BYTES) {
        close(fd);
        return apx_fail(err, APX_EINPUT, "%s: %lld bytes is more than the %llu this reader handles",
                        path, (long long)st.st_size, (unsigned long long)NPZ_MAX_FILE_BYTES);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = apx_read_exact(fd, len, path, err);
    close(fd);
    if (!buf) return err->code;
    return npz_parse(buf, len, path, out, err);
}

static const npz_entry *find_entry(const npz *z, const char *name) {
    size_t n = strlen(name);
    const npz_entry *exact = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const npz_entry *e = &z->e[i];
        if (e->key_len == n && e->key_len != strlen(e->name) && memcmp(e->name, name, n) == 0)
            return e; /* "name.npy" */
        if (!exact && strcmp(e->name, name) == 0) exact = e;
    }
    return exact;
}

const char *npz_nearest(const npz *z, const char *name) {
    const char *best = NULL;
    int best_d = 0;
    char key[NPZ_MAX_NAME + 1];
    for (size_t i = 0; i < z->n; i++) {
        memcpy(key, z->e[i].name, z->e[i].key_len);
        key[z->e[i].key_len] = 0;
        int d = cfg_edit_distance(name, key);
        if (!best || d < best_d) best = z->e[i].name, best_d = d;
    }
    size_t n = strlen(name);
    int limit = n / 3 > 2 ? (int)(n / 3) : 2;
    return best && best_d <= limit ? best : NULL;
}

/* ---- .npy ------------------------------------------------------------------- */

static const struct {
    const char *descr; /* without the byte-order character */
    int dtype;
    uint32_t size;
} dtypes[] = {
    {"b1", NPZ_BOOL, 1}, {"i1", NPZ_I8, 1},  {"u1", NPZ_U8, 1},   {"i2", NPZ_I16, 2},
    {"u2", NPZ_U16, 2},  {"i4", NPZ_I32, 4}, {"u4", NPZ_U32, 4},  {"i8", NPZ_I64, 8},
    {"u8", NPZ_U64, 8},  {"f4", NPZ_F32, 4}, {"f8", NPZ_F64, 8},
};

double npz_value(const npz_array *a, size_t i) {
    const uint8_t *p = a->data + i * a->item_size;
    switch (a->dtype) {
    case NPZ_BOOL: return p[0] != 0;
    case NPZ_I8: return (int8_t)p[0];
    case NPZ_U8: return p[0];
    case NPZ_I16: return (int16_t)le16(p);
    case NPZ_U16: return le16(p);
    case NPZ_I32: return (int32_t)le32(p);
    case NPZ_U32: return le32(p);
    case NPZ_I64: return (double)(int64_t)le64(p);
    case NPZ_U64: return (double)le64(p);
    case NPZ_F32: {
        uint32_t u = le32(p);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case NPZ_F64: {
        uint64_t u = le64(p);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
    return NAN;
}

void npz_array_free(npz_array *a) {
    if (!a) return;
    free(a->owner);
    memset(a, 0, sizeof *a);
}

/* The header dict, parsed from [s, s + n). */
typedef struct hparse {
    const char *s;
    size_t n, i;
    size_t base; /* byte offset of s in the .npy, for messages */
    const char *what;
    apx_error *err;
} hparse;

static int hp_fail(hparse *h, const char *msg) {
    return apx_fail(h->err, APX_EINPUT, "%s: .npy header (byte %zu): %s", h->what,
                    h->base + h->i, msg);
}
static void hp_ws(hparse *h) {
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n' ||
                           h->s[h->i] == '\r'))
        h->i++;
}
static int hp_peek(hparse *h) { return h->i < h->n ? (unsigned char)h->s[h->i] : -1; }

/* A quoted string without escapes, of at most cap - 1 bytes. */
static int hp_string(hparse *h, char *out, size_t cap) {
    int q = hp_peek(h);
    if (q != '\'' && q != '"') return hp_fail(h, "expected a quoted string");
    size_t start = ++h->i;
    while (h->i < h->n && h->s[h->i] != q) {
        unsigned char c = (unsigned char)h->s[h->i];
        if (c == '\\' || c < 0x20 || c > 0x7e) return hp_fail(h, "unexpected character in a string");
        h->i++;
    }
    if (h->i >= h->n) return hp_fail(h, "unterminated string");
    size_t len = h->i - start;
    if (len >= cap) return hp_fail(h, "string too long");
    memcpy(out, h->s + start, len);
    out[len] = 0;
    h->i++;
    return APX_OK;
}

static int hp_word(hparse *h, const char *w) {
    size_t n = strlen(w);
    if (h->n - h->i >= n && memcmp(h->s + h->i, w, n) == 0) {
        h->i += n;
        return 1;
    }
    return 0;
}

/* A tuple of non-negative integers: (), (5,), (3, 4), (3, 4,). */
static int hp_shape(hparse *h, npz_array *a) {
    if (hp_peek(h) != '(') return hp_fail(h, "'shape' is not a tuple");
    h->i++;
    a->ndim = 0;
    for (;;) {
        hp_ws(h);
        if (hp_peek(h) == ')') break;
        if (a->ndim == NPZ_MAX_DIMS) return hp_fail(h, "more than 8 dimensions");
        if (hp_peek(h) == '-') return hp_fail(h, "negative dimension");
        if (hp_peek(h) < '0' || hp_peek(h) > '9') return hp_fail(h, "expected a dimension");
        uint64_t v = 0;
        while (hp_peek(h) >= '0' && hp_peek(h) <= '9') {
            unsigned d = (unsigned)(hp_peek(h) - '0');
            if (v > (UINT64_MAX - d) / 10) return hp_fail(h, "dimension too large");
            v = v * 10 + d;
            h->i++;
        }
        if (hp_peek(h) == 'L') h->i++; /* Python 2 long */
        a->shape[a->ndim++] = v;
        hp_ws(h);
        if (hp_peek(h) == ',') {
            h->i++;
            continue;
        }
        if (hp_peek(h) != ')') return hp_fail(h, "expected ',' or ')' in 'shape'");
        if (a->ndim == 1) {
            /* (5) is the integer 5 in Python, not a tuple */
            return hp_fail(h, "'shape' is not a tuple");
        }
        break;
    }
    h->i++;
    return APX_OK;
}

static int hp_dict(hparse *h, npz_array *a) {
    char descr[16] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    hp_ws(h);
    if (hp_peek(h) != '{') return hp_fail(h, "expected a dict '{...}'");
    h->i++;
    for (;;) {
        hp_ws(h);
        if (hp_peek(h) == '}') break;
        char key[32];
        if (hp_string(h, key, sizeof key)) return APX_EINPUT;
        hp_ws(h);
        if (hp_peek(h) != ':') return hp_fail(h, "expected ':'");
        h->i++;
        hp_ws(h);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (hp_peek(h) != '\'' && hp_peek(h) != '"')
                return hp_fail(h, "'descr' is not a plain dtype string (structured arrays are not "
                                  "supported)");
            if (hp_string(h, descr, sizeof descr)) return APX_EINPUT;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (hp_word(h, "True"))
                fortran = 1;
            else if (!hp_word(h, "False"))
                return hp_fail(h, "'fortran_order' is not True or False");
            have_order = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (hp_shape(h, a)) return APX_EINPUT;
            have_shape = 1;
        } else {
            char msg[96];
            snprintf(msg, sizeof msg, "unexpected or repeated key '%s'", key);
            return hp_fail(h, msg);
        }
        hp_ws(h);
        if (hp_peek(h) == ',') {
            h->i++;
            continue;
        }
        if (hp_peek(h) != '}') return hp_fail(h, "expected ',' or '}'");
    }
    h->i++;
    hp_ws(h);
    if (h->i != h->n) return hp_fail(h, "unexpected text after the dict");
    if (!have_descr || !have_order || !have_shape)
        return hp_fail(h, !have_descr ? "no 'descr'" : !have_order ? "no 'fortran_order'"
                                                                   : "no 'shape'");
    if (fortran)
        return apx_fail(h->err, APX_EINPUT,
                        "%s: fortran_order True is not supported (save "
                        "numpy.ascontiguousarray(a) instead)",
                        h->what);
    /* dtype: byte order '<' (or '|' for single bytes) */
    char order = descr[0];
    const char *t = descr + 1;
    for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++) {
        if (strcmp(t, dtypes[k].descr) != 0) continue;
        if (order == '<' || (order == '|' && dtypes[k].size == 1)) {
            a->dtype = dtypes[k].dtype;
            a->item_size = dtypes[k].size;
            return APX_OK;
        }
        if (order == '>' || order == '=')
            return apx_fail(h->err, APX_EINPUT,
                            "%s: dtype '%s' is not little endian (save a.astype('<%s') instead)",
                            h->what, descr, t);
    }
    return apx_fail(h->err, APX_EINPUT,
                    "%s: dtype '%s' is not supported (bool, int8..int64, uint8..uint64, float32, "
                    "float64; little endian)",
                    h->what, descr);
}

/* Parses the .npy in buf; a->data points into buf. */
static int npy_view(const uint8_t *buf, size_t len, const char *what, npz_array *a,
                    apx_error *err) {
    memset(a, 0, sizeof *a);
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return apx_fail(err, APX_EINPUT, "%s: not a .npy array (%s)", what,
                        len < 10 ? "too short" : "bad magic");
    uint32_t major = buf[6], minor = buf[7];
    if (major < 1 || major > 3 || minor != 0)
        return apx_fail(err, APX_EINPUT,
                        "%s: byte 6: .npy format version %u.%u (1.0, 2.0 and 3.0 are read)", what,
                        major, minor);
    size_t start = major == 1 ? 10 : 12;
    if (len < start)
        return apx_fail(err, APX_EINPUT, "%s: .npy truncated in its preamble", what);
    uint64_t hlen = major == 1 ? le16(buf + 8) : le32(buf + 8);
    if (hlen > len - start)
        return apx_fail(err, APX_EINPUT,
                        "%s: byte 8: .npy header of %llu bytes runs past the end (%zu bytes)",
                        what, (unsigned long long)hlen, len);
    hparse h = {(const char *)buf + start, (size_t)hlen, 0, start, what, err};
    if (hp_dict(&h, a)) return APX_EINPUT;
    size_t data_off = start + (size_t)hlen, data_len = len - data_off;
    uint64_t count = 1;
    int overflow = 0;
    for (uint32_t d = 0; d < a->ndim; d++) {
        if (a->shape[d] && count > UINT64_MAX / a->shape[d]) overflow = 1;
        count *= a->shape[d];
    }
    if (overflow || count > data_len / a->item_size || count * a->item_size != data_len) {
        char shape[8 * 24] = "(";
        for (uint32_t d = 0; d < a->ndim; d++) {
            size_t n = strlen(shape);
            snprintf(shape + n, sizeof shape - n, "%s%llu", d ? ", " : "",
                     (unsigned long long)a->shape[d]);
        }
        strncat(shape, a->ndim == 1 ? ",)" : ")", sizeof shape - strlen(shape) - 1);
        return apx_fail(err, APX_EINPUT,
                        "%s: shape %s of %u-byte elements does not match the %zu bytes of data",
                        what, shape, a->item_size, data_len);
    }
    a->count = (size_t)count;
    a->data = buf + data_off;
    return APX_OK;
}

int npy_parse(const uint8_t *buf, size_t len, const char *what, npz_array *out, apx_error *err) {
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return apx_fail(err, APX_EWORK, "%s: out of memory", what);
    if (len) memcpy(copy, buf, len);
    npz_array a;
    int rc = npy_view(copy, len, what, &a, err);
    if (rc) {
        free(copy);
        return rc;
    }
    a.owner = copy;
    *out = a;
    return APX_OK;
}

int npz_read_array(npz *z, const char *name, npz_array *out, apx_error *err) {
    const npz_entry *e = find_entry(z, name);
    if (!e) return apx_fail(err, APX_EINPUT, "%s: no array '%s'", z->path, name);
    char what[NPZ_MAX_NAME + 512];
    snprintf(what, sizeof what, "%s: '%s'", z->path, e->name);
    uint8_t *block = malloc(e->uncomp ? (size_t)e->uncomp : 1);
    if (!block)
        return apx_fail(err, APX_EWORK, "%s: out of memory for %llu bytes", what,
                        (unsigned long long)e->uncomp);
    const uint8_t *src = z->buf + e->data;
    int rc = APX_OK;
    if (e->method == METHOD_STORED) {
        memcpy(block, src, (size_t)e->comp);
    } else {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) {
            free(block);
            return apx_fail(err, APX_EWORK, "%s: zlib: cannot start inflating", what);
        }
        zs.next_in = (Bytef *)(uintptr_t)src;
        zs.avail_in = (uInt)e->comp;
        zs.next_out = block;
        zs.avail_out = (uInt)e->uncomp;
        int r = inflate(&zs, Z_FINISH);
        if (r == Z_STREAM_END && zs.avail_in != 0)
            rc = apx_fail(err, APX_EINPUT, "%s: %u bytes after the end of the deflate stream",
                          what, zs.avail_in);
        else if (r == Z_STREAM_END && zs.total_out != e->uncomp)
            rc = apx_fail(err, APX_EINPUT, "%s: inflates to %lu bytes, the directory says %llu",
                          what, zs.total_out, (unsigned long long)e->uncomp);
        else if (r == Z_BUF_ERROR && zs.avail_out == 0)
            rc = apx_fail(err, APX_EINPUT,
                          "%s: inflates to more than the %llu bytes the directory says", what,
                          (unsigned long long)e->uncomp);
        else if (r == Z_BUF_ERROR)
            rc = apx_fail(err, APX_EINPUT, "%s: the deflate stream is truncated", what);
        else if (r != Z_STREAM_END)
            rc = apx_fail(err, APX_EINPUT, "%s: corrupt deflate data (%s)", what,
                          zs.msg ? zs.msg : "zlib error");
        inflateEnd(&zs);
    }
    if (rc == APX_OK) {
        uint32_t crc = (uint32_t)crc32_z(0L, block, (size_t)e->uncomp);
        if (crc != e->crc)
            rc = apx_fail(err, APX_EINPUT,
                          "%s: CRC-32 mismatch: the data give %08x, the directory says %08x "
                          "(archive corrupt)",
                          what, crc, e->crc);
    }
    npz_array a;
    if (rc == APX_OK) rc = npy_view(block, (size_t)e->uncomp, what, &a, err);
    if (rc) {
        free(block);
        return rc;
    }
    a.owner = block;
    *out = a;
    return APX_OK;
}

/* ---- the importer ------------------------------------------------------------ */

/* The limits of bnn_create_layers (workloads/bnn.c) and of the .bnn format,
 * checked here first so that the message names the manifest position. */
#define IMPORT_MAX_INPUT (1u << 25) /* input values, H x W x C */
#define IMPORT_MAX_MAP (1ull << 28) /* bits of a conv output map before pooling */

/* Activation shape between layers, HWC (after a dense layer 1 x 1 x out). */
typedef struct shape3 {
    uint32_t h, w, c;
} shape3;

typedef struct imp_layer {
    const cfg_node *node;     /* the layer's mapping */
    const cfg_node *wnode;    /* the scalar naming its weight */
    int conv;
    uint32_t pool, out;
    shape3 in;                /* the input it reads */
    npz_array w;
} imp_layer;

typedef struct importer {
    npz *z;
    int keras;                /* layout: 0 pytorch (OIHW, OUT x IN, CHW flatten), 1 keras */
    int zero_plus;            /* sign_of_zero: 1 if 0 binarises to +1 (Larq) */
    double eps;               /* default batch-norm epsilon */
    uint32_t n;
    imp_layer *layers;
} importer;

static void format_shape(const npz_array *a, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, "(");
    for (uint32_t d = 0; d < a->ndim && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)a->shape[d]);
    if (n < cap) snprintf(out + n, cap - n, a->ndim == 1 ? ",)" : ")");
}

/* Reads the array that the scalar `at` names; errors point at `at`. */
static int read_named(importer *im, const cfg_node *at, uint32_t l, const char *role,
                      npz_array *a, apx_error *err) {
    const char *name = at->scalar;
    if (!find_entry(im->z, name)) {
        const char *near = npz_nearest(im->z, name);
        if (near) {
            size_t k = strlen(near);
            int kl = (int)(k > 4 && strcmp(near + k - 4, ".npy") == 0 ? k - 4 : k);
            return cfg_fail(at, err, "layer %u %s: array '%s' is not in %s; did you mean '%.*s'?",
                            l, role, name, npz_path(im->z), kl, near);
        }
        return cfg_fail(at, err, "layer %u %s: array '%s' is not in %s", l, role, name,
                        npz_path(im->z));
    }
    apx_error inner = {0};
    int rc = npz_read_array(im->z, name, a, &inner);
    if (rc) {
        cfg_fail(at, err, "layer %u %s: array '%s': %s", l, role, name, inner.msg);
        if (err) err->code = rc;
        return rc;
    }
    return APX_OK;
}

/* A scalar naming an array: a non-empty string. */
static int array_name_node(const cfg_node *map, const char *key, int required,
                           const cfg_node **out, apx_error *err) {
    const cfg_node *n = cfg_find(map, key);
    *out = NULL;
    if (!n) return required ? cfg_fail(map, err, "missing '%s' (an array name)", key) : APX_OK;
    if (n->kind != CFG_SCALAR || !n->scalar || !*n->scalar)
        return cfg_fail(n, err, "'%s' must name an array in the .npz", key);
    *out = n;
    return APX_OK;
}

static int check_finite(const npz_array *a, const cfg_node *at, uint32_t l, const char *role,
                        apx_error *err) {
    if (a->dtype != NPZ_F32 && a->dtype != NPZ_F64) return APX_OK;
    for (size_t i = 0; i < a->count; i++) {
        double v = npz_value(a, i);
        if (!isfinite(v))
            return cfg_fail(at, err, "layer %u %s: array '%s' element %zu is %g (not finite)", l,
                            role, at->scalar, i, v);
    }
    return APX_OK;
}

/* Reads layer l's weight and checks its shape against the input shape. */
static int read_weight(importer *im, uint32_t l, apx_error *err) {
    imp_layer *L = &im->layers[l];
    int rc = read_named(im, L->wnode, l, "weight", &L->w, err);
    if (rc) return rc;
    if ((rc = check_finite(&L->w, L->wnode, l, "weight", err))) return rc;
    const uint64_t *s = L->w.shape;
    uint64_t vol = (uint64_t)L->in.h * L->in.w * L->in.c;
    uint64_t out = 0;
    int ok;
    char want[96];
    if (L->conv) {
        ok = L->w.ndim == 4 && (im->keras ? s[0] == 3 && s[1] == 3 && s[2] == L->in.c
                                          : s[1] == L->in.c && s[2] == 3 && s[3] == 3);
        out = L->w.ndim == 4 ? s[im->keras ? 3 : 0] : 0;
        snprintf(want, sizeof want, im->keras ? "(3, 3, %u, N)" : "(N, %u, 3, 3)", L->in.c);
    } else {
        ok = L->w.ndim == 2 && s[im->keras ? 0 : 1] == vol;
        out = L->w.ndim == 2 ? s[im->keras ? 1 : 0] : 0;
        snprintf(want, sizeof want, im->keras ? "(%llu, N)" : "(N, %llu)",
                 (unsigned long long)vol);
    }
    char got[8 * 24];
    format_shape(&L->w, got, sizeof got);
    if (!ok)
        return cfg_fail(L->wnode, err,
                        "layer %u weight '%s' has shape %s, expected %s: the layer's input is "
                        "%ux%ux%u (H x W x C) from %s",
                        l, L->wnode->scalar, got, want, L->in.h, L->in.w, L->in.c,
                        l == 0 ? "the manifest's input" : "the previous layer");
    if (out == 0 || out > BNN_MAX_WIDTH)
        return cfg_fail(L->wnode, err, "layer %u weight '%s' has shape %s: %llu outputs is "
                                       "outside 1..%u",
                        l, L->wnode->scalar, got, (unsigned long long)out, BNN_MAX_WIDTH);
    L->out = (uint32_t)out;
    return APX_OK;
}

/* Copies layer l's binarised weights into the model, permuting to
 * apxsim's order: conv bit (kh*3 + kw)*C + c; dense column (h*W + w)*C + c
 * of an H x W x C input, which PyTorch flattens as c*H*W + h*W + w. */
static void fill_weights(const importer *im, uint32_t l, bnn_model *m) {
    const imp_layer *L = &im->layers[l];
    const uint32_t H = L->in.h, W = L->in.w, C = L->in.c, out = L->out;
    const bnn_layer *B = &m->layers[l];
    for (uint32_t o = 0; o < out; o++) {
        for (uint32_t j = 0; j < B->in; j++) {
            size_t src;
            if (L->conv) {
                uint32_t tap = j / C, c = j % C, kh = tap / 3, kw = tap % 3;
                src = im->keras ? ((size_t)tap * C + c) * out + o
                                : (((size_t)o * C + c) * 3 + kh) * 3 + kw;
            } else {
                uint32_t c = j % C, pos = j / C, h = pos / W, w = pos % W;
                size_t col = im->keras ? j : ((size_t)c * H + h) * W + w;
                src = im->keras ? col * out + o : (size_t)o * B->in + col;
            }
            double v = npz_value(&L->w, src);
            bnn_weight_set(m, l, o, j, v > 0 || (im->zero_plus && v == 0));
        }
    }
}

/* The batch-norm arrays of hidden layer l, folded into thresholds. */
static int fold_layer(importer *im, uint32_t l, bnn_model *m, double input_scale,
                      apx_error *err) {
    imp_layer *L = &im->layers[l];
    bnn_layer *B = &m->layers[l];
    const cfg_node *bn = cfg_find(L->node, "bn");
    static const char *const roles[4] = {"gamma", "beta", "mean", "var"};
    static const char *const torch_suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    static const char *const keras_suffix[4] = {"gamma", "beta", "moving_mean",
                                                "moving_variance"};
    static const char *const bn_keys[] = {"gamma", "beta", "mean", "var", "eps", NULL};
    npz_array arr[4];
    int have[4] = {0, 0, 0, 0};
    memset(arr, 0, sizeof arr);
    double eps = im->eps;
    int rc = APX_OK;
    cfg_node synth[4]; /* prefix form: the names it implies, at the prefix's position */
    char names[4][NPZ_MAX_NAME + 32];
    const cfg_node *at[4] = {NULL, NULL, NULL, NULL};
    if (bn->kind == CFG_SCALAR) {
        if (!bn->scalar || !*bn->scalar)
            return cfg_fail(bn, err, "'bn' must be an array name prefix or a mapping");
        for (int k = 0; k < 4; k++) {
            snprintf(names[k], sizeof names[k], "%s.%s", bn->scalar,
                     (im->keras ? keras_suffix : torch_suffix)[k]);
            synth[k] = *bn;
            synth[k].scalar = names[k];
            at[k] = &synth[k];
        }
    } else {
        if ((rc = cfg_expect_map(bn, "bn", bn_keys, err))) return rc;
        for (int k = 0; k < 4; k++)
            if ((rc = array_name_node(bn, roles[k], k >= 2, &at[k], err))) return rc;
        if ((rc = cfg_get_double(bn, "eps", 0, im->eps, 0, 1, &eps, err))) return rc;
    }
    for (int k = 0; k < 4 && !rc; k++) {
        if (!at[k]) continue;
        char role[16];
        snprintf(role, sizeof role, "bn %s", roles[k]);
        if ((rc = read_named(im, at[k], l, role, &arr[k], err))) break;
        have[k] = 1;
        char got[8 * 24];
        format_shape(&arr[k], got, sizeof got);
        if (arr[k].ndim != 1 || arr[k].shape[0] != L->out)
            rc = cfg_fail(at[k], err, "layer %u %s: array '%s' has shape %s, expected (%u,)", l,
                          role, at[k]->scalar, got, L->out);
        else
            rc = check_finite(&arr[k], at[k], l, role, err);
    }
    for (uint32_t i = 0; i < L->out && !rc; i++) {
        double g = have[0] ? npz_value(&arr[0], i) : 1.0;
        double b = have[1] ? npz_value(&arr[1], i) : 0.0;
        double mu = npz_value(&arr[2], i), var = npz_value(&arr[3], i);
        if (!(var >= 0) || !(var + eps > 0)) {
            rc = cfg_fail(at[3], err,
                          "layer %u bn var: array '%s' element %u is %g: var + eps must be > 0 "
                          "with var >= 0",
                          l, at[3]->scalar, i, var);
            break;
        }
        /* the largest |a| of the integer pre-activation */
        double max_abs_a = (double)B->in * (B->kind == BNN_DENSE_U8 || B->kind == BNN_CONV_U8 ? 255 : 1);
        int32_t t;
        int8_t d;
        if (!im->zero_plus) {
            bnn_fold_bn(g, b, mu, var, eps, input_scale, max_abs_a, &t, &d);
        } else {
            /* fires iff BN >= 0, the complement of -BN > 0 (negation is exact) */
            bnn_fold_bn(-g, -b, mu, var, eps, input_scale, max_abs_a, &t, &d);
            if (d > 0)
                t = t + 1, d = -1; /* a <= t  <=>  a < t + 1 */
            else
                t = t - 1, d = 1;  /* a >= t  <=>  a > t - 1 */
        }
        B->threshold[i] = t;
        B->direction[i] = d;
    }
    for (int k = 0; k < 4; k++) npz_array_free(&arr[k]);
    return rc;
}

/* The last layer's scale: a number, or an array with one value. */
static int read_scale(importer *im, uint32_t l, float *out, apx_error *err) {
    const cfg_node *n = cfg_find(im->layers[l].node, "scale");
    double s = 1.0;
    if (n) {
        if (n->kind != CFG_SCALAR || !n->scalar || !*n->scalar)
            return cfg_fail(n, err, "'scale' must be a number or the name of an array");
        char *end;
        errno = 0;
        double v = n->quoted ? 0 : strtod(n->scalar, &end);
        if (!n->quoted && end != n->scalar && *end == 0) {
            s = v;
        } else {
            npz_array a;
            int rc = read_named(im, n, l, "scale", &a, err);
            if (rc) return rc;
            if (a.count != 1) {
                char got[8 * 24];
                format_shape(&a, got, sizeof got);
                npz_array_free(&a);
                return cfg_fail(n, err, "layer %u scale: array '%s' has shape %s, expected one "
                                        "value",
                                l, n->scalar, got);
            }
            s = npz_value(&a, 0);
            npz_array_free(&a);
        }
    }
    float f = (float)s;
    if (!(isfinite(f) && f > 0))
        return n ? cfg_fail(n, err,
                            "layer %u scale %g: apxsim needs a finite scale > 0 (a negative "
                            "scale would turn the argmax into an argmin)",
                            l, s)
                 : APX_EINPUT;
    *out = f;
    return APX_OK;
}

/* Reads the layer list and every weight; fills im->layers and spec. */
static int read_layers(importer *im, const cfg_node *seq, shape3 input, bnn_layer_spec *spec,
                       apx_error *err) {
    static const char *const layer_keys[] = {"type", "weight", "pool", "bn", "scale", NULL};
    static const char *const types[] = {"dense", "conv", NULL};
    shape3 cur = input;
    int after_dense = 0;
    for (uint32_t l = 0; l < im->n; l++) {
        imp_layer *L = &im->layers[l];
        const cfg_node *node = seq->items[l];
        int last = l == im->n - 1, rc, type;
        long long pool;
        L->node = node;
        if ((rc = cfg_expect_map(node, "layer", layer_keys, err)) ||
            (rc = cfg_get_enum(node, "type", 1, 0, types, &type, err)) ||
            (rc = cfg_get_int(node, "pool", 0, 1, 1, 2, &pool, err)) ||
            (rc = array_name_node(node, "weight", 1, &L->wnode, err)))
            return rc;
        L->conv = type == 1;
        L->pool = (uint32_t)pool;
        L->in = cur;
        if (!L->conv && pool != 1)
            return cfg_fail(cfg_find(node, "pool"), err, "layer %u: pool is for conv layers", l);
        if (last && L->conv)
            return cfg_fail(node, err, "layer %u: the last layer must be dense (it gives the "
                                       "class scores)", l);
        if (L->conv && after_dense)
            return cfg_fail(node, err, "layer %u: a conv layer after a dense layer (convolutions "
                                       "come first)", l);
        if (last && cfg_find(node, "bn"))
            return cfg_fail(cfg_find(node, "bn"), err,
                            "layer %u: the last layer has no batch norm in apxsim (its integer "
                            "scores times a positive scale are the class scores)",
                            l);
        if (!last && !cfg_find(node, "bn"))
            return cfg_fail(node, err, "layer %u: missing 'bn' (every hidden layer ends in batch "
                                       "norm + sign)", l);
        if (!last && cfg_find(node, "scale"))
            return cfg_fail(cfg_find(node, "scale"), err,
                            "layer %u: 'scale' belongs to the last layer", l);
        if (L->conv && (cur.h < L->pool || cur.w < L->pool))
            return cfg_fail(cfg_find(node, "pool"), err,
                            "layer %u: a %ux%u input is too small for pool %u", l, cur.h, cur.w,
                            L->pool);
        if (!L->conv && (uint64_t)cur.h * cur.w * cur.c > BNN_MAX_WIDTH)
            return cfg_fail(node, err, "layer %u: a fan-in of %llu is more than %u", l,
                            (unsigned long long)cur.h * cur.w * cur.c, BNN_MAX_WIDTH);
        if (L->conv && 9ull * cur.c > BNN_MAX_WIDTH)
            return cfg_fail(node, err, "layer %u: a fan-in of 9 x %u is more than %u", l, cur.c,
                            BNN_MAX_WIDTH);
        if ((rc = read_weight(im, l, err))) return rc;
        if (L->conv) {
            if ((uint64_t)cur.h * cur.w * L->out > IMPORT_MAX_MAP)
                return cfg_fail(L->wnode, err,
                                "layer %u: output map %ux%ux%u has more than %llu values", l,
                                cur.h, cur.w, L->out, IMPORT_MAX_MAP);
            cur = (shape3){cur.h / L->pool, cur.w / L->pool, L->out};
        } else {
            cur = (shape3){1, 1, L->out};
            after_dense = 1;
        }
        spec[l].kind = last ? BNN_DENSE_OUT
                            : L->conv ? (l == 0 ? BNN_CONV_U8 : BNN_CONV_BIN)
                                      : (l == 0 ? BNN_DENSE_U8 : BNN_DENSE_BIN);
        spec[l].out = L->out;
        spec[l].pool = L->pool;
    }
    return APX_OK;
}

/* The model name when the manifest has none: the file name without its
 * directory and extension. */
static void default_name(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n >= cap) n = cap - 1;
    memcpy(out, base, n);
    out[n] = 0;
}

int bnn_import_npz(const char *manifest_path, const char *npz_path_override, bnn_model *out,
                   apx_error *err) {
    static const char *const top_keys[] = {"name",   "npz",    "layout", "sign_of_zero",
                                           "input",  "bn_eps", "layers", NULL};
    static const char *const input_keys[] = {"height", "width", "channels", "scale", NULL};
    static const char *const layouts[] = {"pytorch", "keras", NULL};
    struct stat st;
    if (stat(manifest_path, &st) != 0 && errno == ENOENT)
        return apx_fail(err, APX_EINPUT, "%s: cannot open: %s", manifest_path, strerror(errno));
    cfg_doc *doc = cfg_load_file(manifest_path, err);
    if (!doc) return err ? err->code : APX_EINPUT;
    const cfg_node *root = cfg_root(doc);
    importer im;
    memset(&im, 0, sizeof im);
    bnn_model m;
    memset(&m, 0, sizeof m);
    char *npz_file = NULL;
    int rc;
    const char *name = NULL, *npz_rel = NULL;
    long long sign_of_zero, height, width, channels;
    double input_scale;
    if ((rc = cfg_expect_map(root, "import manifest", top_keys, err)) ||
        (rc = cfg_get_string(root, "name", 0, NULL, &name, err)) ||
        (rc = cfg_get_string(root, "npz", npz_path_override == NULL, NULL, &npz_rel, err)) ||
        (rc = cfg_get_enum(root, "layout", 0, 0, layouts, &im.keras, err)) ||
        (rc = cfg_get_int(root, "sign_of_zero", 0, -1, -1, 1, &sign_of_zero, err)) ||
        (rc = cfg_get_double(root, "bn_eps", 0, im.keras ? 1e-3 : 1e-5, 0, 1, &im.eps, err)))
        goto out;
    if (sign_of_zero == 0) {
        rc = cfg_fail(cfg_find(root, "sign_of_zero"), err, "sign_of_zero must be -1 or +1");
        goto out;
    }
    im.zero_plus = sign_of_zero > 0;
    char model_name[sizeof m.name];
    if (name && strlen(name) >= sizeof model_name) {
        rc = cfg_fail(cfg_find(root, "name"), err, "name has %zu bytes, at most %zu fit",
                      strlen(name), sizeof model_name - 1);
        goto out;
    }
    if (name)
        snprintf(model_name, sizeof model_name, "%s", name);
    else
        default_name(manifest_path, model_name, sizeof model_name);

    const cfg_node *input = cfg_find(root, "input");
    if (!input) {
        rc = cfg_fail(root, err, "missing 'input' (height, width, channels, scale)");
        goto out;
    }
    if ((rc = cfg_expect_map(input, "input", input_keys, err)) ||
        (rc = cfg_get_int(input, "height", 1, 0, 1, BNN_MAX_WIDTH, &height, err)) ||
        (rc = cfg_get_int(input, "width", 1, 0, 1, BNN_MAX_WIDTH, &width, err)) ||
        (rc = cfg_get_int(input, "channels", 0, 1, 1, BNN_MAX_WIDTH, &channels, err)) ||
        (rc = cfg_get_double(input, "scale", 0, 255, 1e-30, 1e30, &input_scale, err)))
        goto out;
    if ((uint64_t)height * (uint64_t)width * (uint64_t)channels > IMPORT_MAX_INPUT) {
        rc = cfg_fail(input, err, "input %lldx%lldx%lld has more than %u values", height, width,
                      channels, IMPORT_MAX_INPUT);
        goto out;
    }
    const cfg_node *seq = cfg_find(root, "layers");
    if (!seq || seq->kind != CFG_SEQ || seq->n < 2 || seq->n > BNN_MAX_LAYERS) {
        rc = cfg_fail(seq ? seq : root, err, "'layers' must be a list of 2..%u layers",
                      BNN_MAX_LAYERS);
        goto out;
    }

    /* the .npz: relative to the manifest's folder */
    const char *npz_name = npz_path_override ? npz_path_override : npz_rel;
    const char *slash = strrchr(manifest_path, '/');
    size_t dir_len = (npz_path_override || npz_name[0] == '/' || !slash)
                         ? 0
                         : (size_t)(slash - manifest_path) + 1;
    npz_file = malloc(dir_len + strlen(npz_name) + 1);
    if (!npz_file) {
        rc = apx_fail(err, APX_EWORK, "out of memory");
        goto out;
    }
    memcpy(npz_file, manifest_path, dir_len);
    strcpy(npz_file + dir_len, npz_name);
    apx_error inner = {0};
    if ((rc = npz_open(npz_file, &im.z, &inner))) {
        if (npz_path_override) {
            if (err) *err = inner;
        } else {
            cfg_fail(cfg_find(root, "npz"), err, "%s", inner.msg); /* the position of 'npz' */
            if (err) err->code = rc;
        }
        goto out;
    }

    im.n = (uint32_t)seq->n;
    im.layers = calloc(im.n, sizeof *im.layers);
    if (!im.layers) {
        rc = apx_fail(err, APX_EWORK, "out of memory");
        goto out;
    }
    bnn_layer_spec spec[BNN_MAX_LAYERS];
    shape3 in = {(uint32_t)height, (uint32_t)width, (uint32_t)channels};
    if ((rc = read_layers(&im, seq, in, spec, err))) goto out;
    if ((rc = bnn_create_layers(&m, model_name, in.h, in.w, in.c, im.n, spec, err))) {
        apx_wrap(err, "%s: ", manifest_path);
        goto out;
    }
    for (uint32_t l = 0; l < im.n && !rc; l++) {
        fill_weights(&im, l, &m);
        npz_array_free(&im.layers[l].w);
        if (l + 1 < im.n)
            rc = fold_layer(&im, l, &m, l == 0 ? input_scale : 1.0, err);
        else
            rc = read_scale(&im, l, &m.layers[l].scale, err);
    }
    if (rc) goto out;
    *out = m;
    memset(&m, 0, sizeof m);
out:
    bnn_free(&m);
    if (im.layers)
        for (uint32_t l = 0; l < im.n; l++) npz_array_free(&im.layers[l].w);
    free(im.layers);
    npz_close(im.z);
    free(npz_file);
    cfg_free(doc);
    return rc;
}
