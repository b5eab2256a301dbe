/* fmap_file.c - the .fmap file: writer, reader, inspect, sorter.
 * Byte layout: docs/fmap.md (keep the two in step). */
#include "fmap_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- layout constants (docs/fmap.md) ---- */
static const uint8_t MAGIC[8] = {'A', 'P', 'X', 'F', 'M', 'A', 'P', 0x1a};
#define HEADER_FIXED 104                  /* bytes before the strings */
#define HEADER_MIN (HEADER_FIXED + 4)     /* + CRC */
#define HEADER_MAX (HEADER_MIN + (FMAP_NAME_MAX - 1) + (FMAP_TEXT_MAX - 1) + \
                    FMAP_MAX_KNOBS * (1 + (FMAP_NAME_MAX - 1) + 8))
#define FRAME_HEAD 32
#define END_SIZE 92
#define END_KINDS 8                       /* per-kind slots in the end frame */
#define TAG_FRAME 0x4d415246u             /* "FRAM" */
#define TAG_END 0x444e4546u               /* "FEND" */
#define REC_MAX 31                        /* varint 10 + attr 1 + 10 + 10 */
#define ATTR_KIND 0x0fu
#define ATTR_ONSET 0x10u
#define ATTR_UNTIL 0x20u

/* ---- little-endian helpers ---- */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}
/* Returns bytes used, 0 on truncation or overflow past 64 bits. */
static size_t get_varint(const uint8_t *p, size_t avail, uint64_t *v) {
    uint64_t x = 0;
    for (size_t i = 0; i < avail && i < 10; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == 9 && p[i] > 1) return 0;
        x |= b << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}
static uint32_t crc(uint32_t c, const uint8_t *p, size_t n) {
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = (uint32_t)crc32(c, p, chunk);
        p += chunk, n -= chunk;
    }
    return c;
}

void fmap_provenance_recorded(fmap_provenance *p, const char *source) {
    memset(p, 0, sizeof *p);
    p->origin = FMAP_RECORDED;
    snprintf(p->source, sizeof p->source, "%s", source ? source : "");
}

int fmap_fault_check(const fmap_fault *f, uint64_t cells, apx_error *err) {
    if (f->cell >= cells)
        return apx_fail(err, APX_EINPUT, "cell %llu outside the geometry (%llu cells)",
                        (unsigned long long)f->cell, (unsigned long long)cells);
    if (f->kind >= FAULT_KINDS)
        return apx_fail(err, APX_EINPUT, "cell %llu: unknown fault kind %u",
                        (unsigned long long)f->cell, f->kind);
    if (f->onset_ns >= f->until_ns)
        return apx_fail(err, APX_EINPUT, "cell %llu: onset %llu ns is not before until %llu ns",
                        (unsigned long long)f->cell, (unsigned long long)f->onset_ns,
                        (unsigned long long)f->until_ns);
    return APX_OK;
}

static int check_provenance(const fmap_provenance *p, apx_error *err) {
    if (p->origin != FMAP_GENERATED && p->origin != FMAP_RECORDED)
        return apx_fail(err, APX_EINPUT, "provenance: unknown origin %d", p->origin);
    if (p->n_knobs > FMAP_MAX_KNOBS)
        return apx_fail(err, APX_EINPUT, "provenance: %u knobs (at most %d)", p->n_knobs,
                        FMAP_MAX_KNOBS);
    if (!memchr(p->device, 0, sizeof p->device) || !memchr(p->source, 0, sizeof p->source))
        return apx_fail(err, APX_EINPUT, "provenance: unterminated device or source text");
    for (uint32_t i = 0; i < p->n_knobs; i++) {
        size_t len = strnlen(p->knob_name[i], FMAP_NAME_MAX);
        if (len == 0 || len == FMAP_NAME_MAX)
            return apx_fail(err, APX_EINPUT, "provenance: knob %u needs a name of 1..%d bytes", i,
                            FMAP_NAME_MAX - 1);
        if (!isfinite(p->knob_value[i]))
            return apx_fail(err, APX_EINPUT, "provenance: knob '%s' is not a finite number",
                            p->knob_name[i]);
    }
    if (p->origin == FMAP_GENERATED && !p->device[0])
        return apx_fail(err, APX_EINPUT, "provenance: a generated map names its device");
    return APX_OK;
}

/* ======================================================================
 * Writer
 * ==================================================================== */
struct fmap_writer {
    FILE *fp;
    int owns;                  /* fp opened here: close and rename at commit */
    char *path, *tmp;          /* final and temporary paths (owned files) */
    const char *name;          /* for errors */
    uint64_t cells;
    fmap_totals totals;
    int failed, any;
    uint64_t last;             /* last cell written (valid when any) */
    /* the frame being built */
    uint32_t n;
    uint64_t first, prev;
    uint8_t *payload;
    size_t used;
};

static int wwrite(fmap_writer *w, const void *p, size_t n, apx_error *err) {
    if (fwrite(p, 1, n, w->fp) != n) {
        w->failed = 1;
        return apx_fail(err, APX_EWORK, "writing %s: %s", w->name, strerror(errno));
    }
    return APX_OK;
}

static int write_header(fmap_writer *w, const geometry *g, const fmap_provenance *p,
                        apx_error *err) {
    uint8_t h[HEADER_MAX];
    memset(h, 0, sizeof h);
    size_t dlen = strlen(p->device), slen = strlen(p->source);
    memcpy(h, MAGIC, 8);
    put16(h + 8, FMAP_FILE_VERSION);
    put16(h + 10, 0);
    for (int i = 0; i < GEO_FIELDS; i++) put32(h + 16 + 4 * i, g->count[i]);
    put32(h + 40, g->bus_bits);
    memcpy(h + 44, g->mapping, strnlen(g->mapping, sizeof g->mapping));
    put32(h + 76, (uint32_t)p->origin);
    put64(h + 80, p->seed);
    put64(h + 88, p->chip);
    put32(h + 96, p->n_knobs);
    put16(h + 100, (uint16_t)dlen);
    put16(h + 102, (uint16_t)slen);
    size_t at = HEADER_FIXED;
    memcpy(h + at, p->device, dlen), at += dlen;
    memcpy(h + at, p->source, slen), at += slen;
    for (uint32_t i = 0; i < p->n_knobs; i++) {
        size_t len = strlen(p->knob_name[i]);
        h[at++] = (uint8_t)len;
        memcpy(h + at, p->knob_name[i], len), at += len;
        uint64_t bits;
        memcpy(&bits, &p->knob_value[i], 8);
        put64(h + at, bits), at += 8;
    }
    put32(h + 12, (uint32_t)(at + 4));
    put32(h + at, crc(0, h, at)), at += 4;
    return wwrite(w, h, at, err);
}

static int writer_start(fmap_writer *w, const geometry *g, const fmap_provenance *prov,
                        apx_error *err) {
    w->cells = geometry_cells(g);
    w->payload = malloc((size_t)FMAP_FRAME_MAX * REC_MAX);
    if (!w->payload) return apx_fail(err, APX_EWORK, "%s: out of memory", w->name);
    return write_header(w, g, prov, err);
}

static int check_inputs(const geometry *g, const fmap_provenance *prov, apx_error *err) {
    geometry copy = *g;
    if (geometry_init(&copy, err)) return apx_wrap(err, "fault-map geometry: ");
    return check_provenance(prov, err);
}

int fmap_writer_create_stream(fmap_writer **out, FILE *fp, const char *name, const geometry *g,
                              const fmap_provenance *prov, apx_error *err) {
    *out = NULL;
    int rc = check_inputs(g, prov, err);
    if (rc) return rc;
    fmap_writer *w = calloc(1, sizeof *w);
    if (!w) return apx_fail(err, APX_EWORK, "out of memory");
    w->fp = fp;
    w->name = name ? name : "fault map";
    if ((rc = writer_start(w, g, prov, err))) {
        free(w->payload);
        free(w);
        return rc;
    }
    *out = w;
    return APX_OK;
}

int fmap_writer_create(fmap_writer **out, const char *path, const geometry *g,
                       const fmap_provenance *prov, apx_error *err) {
    *out = NULL;
    int rc = check_inputs(g, prov, err);
    if (rc) return rc;
    fmap_writer *w = calloc(1, sizeof *w);
    size_t len = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(len + 5))) {
        if (w) free(w->path);
        free(w);
        return apx_fail(err, APX_EWORK, "out of memory");
    }
    memcpy(w->tmp, path, len);
    memcpy(w->tmp + len, ".tmp", 5);
    w->name = w->path;
    w->owns = 1;
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        rc = apx_fail(err, APX_EWORK, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w->path), free(w->tmp), free(w);
        return rc;
    }
    setvbuf(w->fp, NULL, _IOFBF, 1 << 20);
    if ((rc = writer_start(w, g, prov, err))) {
        fmap_writer_abort(w);
        return rc;
    }
    *out = w;
    return APX_OK;
}

static int flush_frame(fmap_writer *w, apx_error *err) {
    if (!w->n) return APX_OK;
    uint8_t h[FRAME_HEAD];
    put32(h, TAG_FRAME);
    put32(h + 4, w->n);
    put32(h + 8, (uint32_t)w->used);
    put64(h + 12, w->first);
    put64(h + 20, w->prev);
    uint32_t c = crc(crc(0, h, 28), w->payload, w->used);
    put32(h + 28, c);
    int rc = wwrite(w, h, sizeof h, err);
    if (!rc) rc = wwrite(w, w->payload, w->used, err);
    w->totals.frames++;
    w->n = 0;
    w->used = 0;
    return rc;
}

int fmap_writer_add(fmap_writer *w, const fmap_fault *f, apx_error *err) {
    if (w->failed) return apx_fail(err, APX_EWORK, "%s: writer used after an error", w->name);
    int rc = fmap_fault_check(f, w->cells, err);
    if (rc) {
        w->failed = 1;
        return apx_wrap(err, "writing %s: ", w->name);
    }
    if (w->any && f->cell <= w->last) {
        w->failed = 1;
        return apx_fail(err, APX_EINPUT, "writing %s: cell %llu comes after cell %llu (cells must "
                        "strictly increase)", w->name, (unsigned long long)f->cell,
                        (unsigned long long)w->last);
    }
    uint8_t *p = w->payload + w->used;
    size_t k = 0;
    if (w->n) k += put_varint(p, f->cell - w->prev - 1);
    else w->first = f->cell;
    uint8_t attr = f->kind;
    if (f->onset_ns) attr |= ATTR_ONSET;
    if (f->until_ns != FMAP_FOREVER) attr |= ATTR_UNTIL;
    p[k++] = attr;
    if (f->onset_ns) k += put_varint(p + k, f->onset_ns);
    if (f->until_ns != FMAP_FOREVER) k += put_varint(p + k, f->until_ns);
    w->used += k;
    w->prev = w->last = f->cell;
    w->any = 1;
    w->n++;
    w->totals.faults++;
    w->totals.per_kind[f->kind]++;
    if (w->n == FMAP_FRAME_MAX) return flush_frame(w, err);
    return APX_OK;
}

static void writer_free(fmap_writer *w) {
    free(w->payload);
    free(w->path);
    free(w->tmp);
    free(w);
}

void fmap_writer_abort(fmap_writer *w) {
    if (!w) return;
    if (w->owns) {
        if (w->fp) fclose(w->fp);
        remove(w->tmp);
    }
    writer_free(w);
}

int fmap_writer_commit(fmap_writer *w, fmap_totals *totals, apx_error *err) {
    int rc = w->failed ? apx_fail(err, APX_EWORK, "%s: writer used after an error", w->name)
                       : flush_frame(w, err);
    if (!rc) {
        uint8_t e[END_SIZE];
        memset(e, 0, sizeof e);
        put32(e, TAG_END);
        put64(e + 8, w->totals.frames);
        put64(e + 16, w->totals.faults);
        for (int k = 0; k < FAULT_KINDS; k++) put64(e + 24 + 8 * k, w->totals.per_kind[k]);
        put32(e + 88, crc(0, e, 88));
        rc = wwrite(w, e, sizeof e, err);
    }
    if (!rc && fflush(w->fp) != 0)
        rc = apx_fail(err, APX_EWORK, "writing %s: %s", w->name, strerror(errno));
    if (w->owns) {
        if (!rc && fsync(fileno(w->fp)) != 0)
            rc = apx_fail(err, APX_EWORK, "writing %s: %s", w->name, strerror(errno));
        if (fclose(w->fp) != 0 && !rc)
            rc = apx_fail(err, APX_EWORK, "writing %s: %s", w->name, strerror(errno));
        w->fp = NULL;
        if (!rc && rename(w->tmp, w->path) != 0)
            rc = apx_fail(err, APX_EWORK, "renaming %s to %s: %s", w->tmp, w->path,
                          strerror(errno));
        if (rc) remove(w->tmp);
    }
    if (!rc && totals) *totals = w->totals;
    writer_free(w);
    return rc;
}

/* ======================================================================
 * Reader
 * ==================================================================== */
struct fmap_reader {
    FILE *fp;                  /* NULL when reading memory */
    const uint8_t *mem;
    uint64_t size, pos;        /* file size, next byte to read */
    char *name;
    geometry geo;
    uint64_t cells;
    fmap_provenance prov;
    fmap_totals totals;
    int done, failed;
    uint64_t last;             /* last cell of the previous frame (valid if totals.faults) */
    uint8_t *payload;
    size_t payload_cap;
    fmap_fault *faults;
    size_t faults_cap;
};

#define RFAIL(r, err, off, ...) reader_fail(r, err, off, __VA_ARGS__)

__attribute__((format(printf, 4, 5)))
static int reader_fail(fmap_reader *r, apx_error *err, uint64_t off, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->failed = 1;
    return apx_fail(err, APX_EINPUT, "fault map %s: byte %llu: %s", r->name,
                    (unsigned long long)off, msg);
}

/* Reads exactly n bytes at the current position (the caller has checked
 * that they lie inside the file). */
static int rread(fmap_reader *r, void *buf, size_t n, apx_error *err) {
    if (n > r->size - r->pos)
        return RFAIL(r, err, r->pos, "file ends after %llu bytes, %zu more expected (truncated)",
                     (unsigned long long)r->size, n);
    if (r->mem) {
        memcpy(buf, r->mem + r->pos, n);
    } else if (fread(buf, 1, n, r->fp) != n) {
        r->failed = 1;
        return apx_fail(err, ferror(r->fp) ? APX_EWORK : APX_EINPUT,
                        "fault map %s: byte %llu: %s", r->name, (unsigned long long)r->pos,
                        ferror(r->fp) ? strerror(errno) : "file shrank while being read");
    }
    r->pos += n;
    return APX_OK;
}

static int read_header(fmap_reader *r, apx_error *err) {
    uint8_t h[HEADER_MAX];
    if (r->size < HEADER_MIN)
        return RFAIL(r, err, 0, "%llu bytes is too short for a fault map (header alone is %d)",
                     (unsigned long long)r->size, HEADER_MIN);
    int rc = rread(r, h, HEADER_FIXED, err);
    if (rc) return rc;
    if (memcmp(h, MAGIC, 8)) return RFAIL(r, err, 0, "not a fault map (wrong magic)");
    unsigned version = get16(h + 8), flags = get16(h + 10);
    if (version != FMAP_FILE_VERSION)
        return RFAIL(r, err, 8, "format version %u, this apxsim reads version %d", version,
                     FMAP_FILE_VERSION);
    if (flags) return RFAIL(r, err, 10, "unknown flags 0x%04x", flags);
    uint32_t hsize = get32(h + 12);
    if (hsize < HEADER_MIN || hsize > HEADER_MAX)
        return RFAIL(r, err, 12, "header size %u outside %d..%d", hsize, HEADER_MIN, HEADER_MAX);
    if (hsize > r->size)
        return RFAIL(r, err, 12, "header size %u is beyond the end of the file (%llu bytes)",
                     hsize, (unsigned long long)r->size);
    if ((rc = rread(r, h + HEADER_FIXED, hsize - HEADER_FIXED, err))) return rc;
    uint32_t want = get32(h + hsize - 4), got = crc(0, h, hsize - 4);
    if (want != got)
        return RFAIL(r, err, hsize - 4, "header CRC32 %08x does not match its bytes (%08x): "
                     "corrupt", want, got);
    /* geometry */
    memset(&r->geo, 0, sizeof r->geo);
    for (int i = 0; i < GEO_FIELDS; i++) r->geo.count[i] = get32(h + 16 + 4 * i);
    r->geo.bus_bits = get32(h + 40);
    const uint8_t *map = h + 44;
    const uint8_t *nul = memchr(map, 0, 32);
    if (!nul) return RFAIL(r, err, 44, "mapping is not NUL-terminated within 32 bytes");
    for (const uint8_t *q = nul; q < map + 32; q++)
        if (*q) return RFAIL(r, err, (uint64_t)(q - h), "mapping padding is not zero");
    memcpy(r->geo.mapping, map, 32);
    apx_error gerr;
    if (geometry_init(&r->geo, &gerr))
        return RFAIL(r, err, 16, "bad geometry: %s", gerr.msg);
    r->cells = geometry_cells(&r->geo);
    /* provenance */
    fmap_provenance *p = &r->prov;
    memset(p, 0, sizeof *p);
    p->origin = (int)get32(h + 76);
    if (p->origin != FMAP_GENERATED && p->origin != FMAP_RECORDED)
        return RFAIL(r, err, 76, "unknown origin %d (1 generated, 2 recorded)", p->origin);
    p->seed = get64(h + 80);
    p->chip = get64(h + 88);
    p->n_knobs = get32(h + 96);
    if (p->n_knobs > FMAP_MAX_KNOBS)
        return RFAIL(r, err, 96, "%u knobs (at most %d)", p->n_knobs, FMAP_MAX_KNOBS);
    unsigned dlen = get16(h + 100), slen = get16(h + 102);
    if (dlen >= FMAP_NAME_MAX)
        return RFAIL(r, err, 100, "device name of %u bytes (at most %d)", dlen, FMAP_NAME_MAX - 1);
    if (slen >= FMAP_TEXT_MAX)
        return RFAIL(r, err, 102, "source text of %u bytes (at most %d)", slen, FMAP_TEXT_MAX - 1);
    size_t at = HEADER_FIXED, end = hsize - 4;
    if (dlen + slen > end - at)
        return RFAIL(r, err, 100, "device and source text run past the header");
    if (memchr(h + at, 0, dlen) || memchr(h + at + dlen, 0, slen))
        return RFAIL(r, err, at, "NUL byte inside the device or source text");
    memcpy(p->device, h + at, dlen), at += dlen;
    memcpy(p->source, h + at, slen), at += slen;
    for (uint32_t i = 0; i < p->n_knobs; i++) {
        if (at >= end) return RFAIL(r, err, at, "knob %u runs past the header", i);
        unsigned len = h[at];
        if (len == 0 || len >= FMAP_NAME_MAX)
            return RFAIL(r, err, at, "knob %u: name of %u bytes (1..%d)", i, len,
                         FMAP_NAME_MAX - 1);
        if (1 + len + 8 > end - at) return RFAIL(r, err, at, "knob %u runs past the header", i);
        if (memchr(h + at + 1, 0, len)) return RFAIL(r, err, at, "knob %u: NUL in its name", i);
        memcpy(p->knob_name[i], h + at + 1, len);
        uint64_t bits = get64(h + at + 1 + len);
        memcpy(&p->knob_value[i], &bits, 8);
        if (!isfinite(p->knob_value[i]))
            return RFAIL(r, err, at + 1 + len, "knob '%s' is not a finite number",
                         p->knob_name[i]);
        at += 1 + len + 8;
    }
    if (at != end)
        return RFAIL(r, err, at, "header has %zu unexplained bytes before its CRC", end - at);
    if (p->origin == FMAP_GENERATED && !p->device[0])
        return RFAIL(r, err, 100, "a generated map must name its device");
    return APX_OK;
}

static int reader_new(fmap_reader **out, const char *name, apx_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->name = strdup(name ? name : "(memory)"))) {
        free(*out);
        *out = NULL;
        return apx_fail(err, APX_EWORK, "out of memory");
    }
    return APX_OK;
}

int fmap_reader_open(fmap_reader **out, const char *path, apx_error *err) {
    fmap_reader *r;
    int rc = reader_new(&r, path, err);
    *out = NULL;
    if (rc) return rc;
    r->fp = fopen(path, "rb");
    struct stat st;
    if (!r->fp || fstat(fileno(r->fp), &st) != 0) {
        rc = apx_fail(err, APX_EINPUT, "cannot open fault map %s: %s", path, strerror(errno));
        fmap_reader_close(r);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        fmap_reader_close(r);
        return apx_fail(err, APX_EINPUT, "fault map %s is not a regular file", path);
    }
    setvbuf(r->fp, NULL, _IOFBF, 1 << 18);
    r->size = (uint64_t)st.st_size;
    if ((rc = read_header(r, err))) {
        fmap_reader_close(r);
        return rc;
    }
    *out = r;
    return APX_OK;
}

int fmap_reader_open_mem(fmap_reader **out, const void *data, size_t len, const char *name,
                         apx_error *err) {
    fmap_reader *r;
    int rc = reader_new(&r, name, err);
    *out = NULL;
    if (rc) return rc;
    static const uint8_t none[1];
    r->mem = data ? data : none;
    r->size = data ? len : 0;
    if ((rc = read_header(r, err))) {
        fmap_reader_close(r);
        return rc;
    }
    *out = r;
    return APX_OK;
}

const geometry *fmap_reader_geometry(const fmap_reader *r) { return &r->geo; }
const fmap_provenance *fmap_reader_provenance(const fmap_reader *r) { return &r->prov; }
const fmap_totals *fmap_reader_totals(const fmap_reader *r) { return &r->totals; }

void fmap_reader_close(fmap_reader *r) {
    if (!r) return;
    if (r->fp) fclose(r->fp);
    free(r->name);
    free(r->payload);
    free(r->faults);
    free(r);
}

static int read_end(fmap_reader *r, const uint8_t *head, uint64_t off, apx_error *err) {
    uint8_t e[END_SIZE];
    memcpy(e, head, FRAME_HEAD);
    int rc = rread(r, e + FRAME_HEAD, END_SIZE - FRAME_HEAD, err);
    if (rc) return rc;
    uint32_t want = get32(e + 88), got = crc(0, e, 88);
    if (want != got)
        return RFAIL(r, err, off + 88, "end frame CRC32 %08x does not match its bytes (%08x)",
                     want, got);
    if (get32(e + 4)) return RFAIL(r, err, off + 4, "end frame: reserved field is not zero");
    uint64_t frames = get64(e + 8), faults = get64(e + 16);
    if (frames != r->totals.frames)
        return RFAIL(r, err, off + 8, "end frame counts %llu frames, the file holds %llu",
                     (unsigned long long)frames, (unsigned long long)r->totals.frames);
    if (faults != r->totals.faults)
        return RFAIL(r, err, off + 16, "end frame counts %llu faults, the frames hold %llu",
                     (unsigned long long)faults, (unsigned long long)r->totals.faults);
    for (int k = 0; k < END_KINDS; k++) {
        uint64_t have = k < FAULT_KINDS ? r->totals.per_kind[k] : 0, said = get64(e + 24 + 8 * k);
        if (have != said)
            return RFAIL(r, err, off + 24 + 8 * (uint64_t)k,
                         "end frame counts %llu faults of kind %d, the frames hold %llu",
                         (unsigned long long)said, k, (unsigned long long)have);
    }
    if (r->pos != r->size)
        return RFAIL(r, err, r->pos, "%llu bytes after the end frame",
                     (unsigned long long)(r->size - r->pos));
    r->done = 1;
    return APX_OK;
}

int fmap_reader_next(fmap_reader *r, const fmap_fault **faults, size_t *n, apx_error *err) {
    *faults = NULL;
    *n = 0;
    if (r->failed) return apx_fail(err, APX_EINPUT, "fault map %s: reader used after an error",
                                   r->name);
    if (r->done) return APX_OK;
    uint64_t off = r->pos;
    uint8_t h[FRAME_HEAD];
    if (r->size - r->pos < FRAME_HEAD)
        return RFAIL(r, err, off, "file ends without its end frame (truncated)");
    int rc = rread(r, h, FRAME_HEAD, err);
    if (rc) return rc;
    uint32_t tag = get32(h);
    if (tag == TAG_END) return read_end(r, h, off, err);
    if (tag != TAG_FRAME) return RFAIL(r, err, off, "not a frame (tag %08x)", tag);
    uint32_t count = get32(h + 4), bytes = get32(h + 8);
    uint64_t first = get64(h + 12), last = get64(h + 20);
    if (count == 0 || count > FMAP_FRAME_MAX)
        return RFAIL(r, err, off + 4, "frame of %u faults (1..%d)", count, FMAP_FRAME_MAX);
    if (bytes < 2ull * count - 1 || bytes > (uint64_t)REC_MAX * count)
        return RFAIL(r, err, off + 8, "frame of %u faults cannot take %u bytes", count, bytes);
    if (bytes > r->size - r->pos)
        return RFAIL(r, err, off + 8, "frame of %u bytes runs past the end of the file "
                     "(truncated)", bytes);
    if (first > last || last >= r->cells)
        return RFAIL(r, err, off + 12, "frame cells %llu..%llu outside the geometry (%llu cells)",
                     (unsigned long long)first, (unsigned long long)last,
                     (unsigned long long)r->cells);
    if (r->totals.faults && first <= r->last)
        return RFAIL(r, err, off + 12, "frame starts at cell %llu, not after %llu (cells must "
                     "strictly increase)", (unsigned long long)first,
                     (unsigned long long)r->last);
    if (last - first < count - 1)
        return RFAIL(r, err, off + 12, "%u distinct cells cannot fit in %llu..%llu", count,
                     (unsigned long long)first, (unsigned long long)last);
    if (bytes > r->payload_cap) {
        uint8_t *p = realloc(r->payload, bytes);
        if (!p) return apx_fail(err, APX_EWORK, "fault map %s: out of memory", r->name);
        r->payload = p, r->payload_cap = bytes;
    }
    if (count > r->faults_cap) {
        fmap_fault *f = realloc(r->faults, count * sizeof *f);
        if (!f) return apx_fail(err, APX_EWORK, "fault map %s: out of memory", r->name);
        r->faults = f, r->faults_cap = count;
    }
    if ((rc = rread(r, r->payload, bytes, err))) return rc;
    uint32_t want = get32(h + 28), got = crc(crc(0, h, 28), r->payload, bytes);
    if (want != got)
        return RFAIL(r, err, off + 28, "frame CRC32 %08x does not match its bytes (%08x): "
                     "corrupt", want, got);
    /* A frame whose CRC matches can still be hostile (a CRC is no
     * signature): every field is still checked. */
    const uint8_t *p = r->payload;
    size_t at = 0;
    uint64_t cell = first;
    uint64_t pay = off + FRAME_HEAD;
    for (uint32_t i = 0; i < count; i++) {
        fmap_fault *f = &r->faults[i];
        if (i) {
            uint64_t d;
            size_t k = get_varint(p + at, bytes - at, &d);
            if (!k) return RFAIL(r, err, pay + at, "fault %u: bad cell delta", i);
            at += k;
            if (d >= last - cell)
                return RFAIL(r, err, pay + at - k, "fault %u: cell passes the frame's last %llu",
                             i, (unsigned long long)last);
            cell += d + 1;
        }
        if (at >= bytes) return RFAIL(r, err, pay + at, "fault %u: frame ends early", i);
        uint8_t attr = p[at++];
        if ((attr & ATTR_KIND) >= FAULT_KINDS || (attr & ~(ATTR_KIND | ATTR_ONSET | ATTR_UNTIL)))
            return RFAIL(r, err, pay + at - 1, "fault %u: bad attribute byte 0x%02x", i, attr);
        f->cell = cell;
        f->kind = attr & ATTR_KIND;
        f->onset_ns = 0;
        f->until_ns = FMAP_FOREVER;
        if (attr & ATTR_ONSET) {
            size_t k = get_varint(p + at, bytes - at, &f->onset_ns);
            if (!k) return RFAIL(r, err, pay + at, "fault %u: bad onset", i);
            at += k;
        }
        if (attr & ATTR_UNTIL) {
            size_t k = get_varint(p + at, bytes - at, &f->until_ns);
            if (!k) return RFAIL(r, err, pay + at, "fault %u: bad until", i);
            at += k;
        }
        if (f->onset_ns >= f->until_ns)
            return RFAIL(r, err, pay + at, "fault %u (cell %llu): onset %llu ns not before until "
                         "%llu ns", i, (unsigned long long)cell,
                         (unsigned long long)f->onset_ns, (unsigned long long)f->until_ns);
        r->totals.per_kind[f->kind]++;
    }
    if (cell != last)
        return RFAIL(r, err, off + 20, "frame says its last cell is %llu, its faults end at %llu",
                     (unsigned long long)last, (unsigned long long)cell);
    if (at != bytes)
        return RFAIL(r, err, pay + at, "%zu unused bytes at the end of the frame", bytes - at);
    r->totals.frames++;
    r->totals.faults += count;
    r->last = last;
    *faults = r->faults;
    *n = count;
    return APX_OK;
}

int fmap_file_check(const char *path, fmap_totals *totals, apx_error *err) {
    fmap_reader *r;
    int rc = fmap_reader_open(&r, path, err);
    if (rc) return rc;
    const fmap_fault *f;
    size_t n;
    do rc = fmap_reader_next(r, &f, &n, err);
    while (!rc && n);
    if (!rc && totals) *totals = r->totals;
    fmap_reader_close(r);
    return rc;
}

/* ======================================================================
 * Inspect
 * ==================================================================== */
static void hist_init(fmap_hist *h, uint64_t range, uint32_t bins) {
    memset(h, 0, sizeof *h);
    h->range = range;
    h->bins = range < bins ? (uint32_t)range : bins;
    h->width = range / h->bins;  /* both powers of two */
}

int fmap_inspect_reader(fmap_reader *r, uint32_t bins, fmap_stats *st, apx_error *err) {
    if (bins == 0 || bins > FMAP_HIST_MAX || (bins & (bins - 1)))
        return apx_fail(err, APX_EINPUT, "histogram bins must be a power of two in 1..%d, got %u",
                        FMAP_HIST_MAX, bins);
    memset(st, 0, sizeof *st);
    const geometry *g = &r->geo;
    st->geo = *g;
    st->prov = r->prov;
    st->cells = r->cells;
    uint64_t banks = (uint64_t)g->count[GEO_CH] * g->count[GEO_RA] * g->count[GEO_BG] *
                     g->count[GEO_BA];
    hist_init(&st->hist[FMAP_AXIS_BANK], banks, bins);
    hist_init(&st->hist[FMAP_AXIS_ROW], g->count[GEO_RO], bins);
    hist_init(&st->hist[FMAP_AXIS_COLUMN], g->count[GEO_CO], bins);
    hist_init(&st->hist[FMAP_AXIS_BIT], g->bus_bits, bins);
    const fmap_fault *f;
    size_t n;
    int rc;
    while (!(rc = fmap_reader_next(r, &f, &n, err)) && n) {
        if (!st->totals.faults && n) st->first_cell = f[0].cell;
        st->last_cell = f[n - 1].cell;
        if (n > st->max_frame) st->max_frame = n;
        for (size_t i = 0; i < n; i++) {
            cell c;
            geometry_cell_at(g, f[i].cell, &c);
            uint64_t bank = ((uint64_t)(c.f[GEO_CH] * g->count[GEO_RA] + c.f[GEO_RA]) *
                                 g->count[GEO_BG] + c.f[GEO_BG]) * g->count[GEO_BA] + c.f[GEO_BA];
            uint64_t v[FMAP_AXES] = {bank, c.f[GEO_RO], c.f[GEO_CO], c.bit};
            for (int a = 0; a < FMAP_AXES; a++) st->hist[a].count[v[a] / st->hist[a].width]++;
            st->permanent += f[i].onset_ns == 0 && f[i].until_ns == FMAP_FOREVER;
        }
        st->totals = r->totals;
    }
    if (rc) return rc;
    st->totals = r->totals;
    st->ber = st->cells ? (double)st->totals.faults / (double)st->cells : 0;
    return APX_OK;
}

int fmap_inspect(const char *path, uint32_t bins, fmap_stats *st, apx_error *err) {
    fmap_reader *r;
    int rc = fmap_reader_open(&r, path, err);
    if (rc) return rc;
    rc = fmap_inspect_reader(r, bins, st, err);
    fmap_reader_close(r);
    return rc;
}

/* ======================================================================
 * Sorter: sorted runs spilled as .fmap files, merged at most MERGE_FANIN
 * at a time.
 * ==================================================================== */
#define DEFAULT_RUN (1u << 20)
#define MERGE_FANIN 16

struct fmap_sorter {
    geometry geo;
    uint64_t cells;
    char *prefix;
    size_t run_max, n, cap;
    fmap_fault *buf;
    char **runs;               /* spill file paths, oldest first */
    size_t n_runs, runs_cap;
    unsigned next_id;
};

int fmap_sorter_create(fmap_sorter **out, const geometry *g, const char *spill_prefix,
                       size_t run_faults, apx_error *err) {
    *out = NULL;
    geometry copy = *g;
    if (geometry_init(&copy, err)) return apx_wrap(err, "sorter geometry: ");
    fmap_sorter *s = calloc(1, sizeof *s);
    if (!s || !(s->prefix = strdup(spill_prefix ? spill_prefix : "fmap-sort"))) {
        free(s);
        return apx_fail(err, APX_EWORK, "out of memory");
    }
    s->geo = copy;
    s->cells = geometry_cells(&copy);
    s->run_max = run_faults ? run_faults : DEFAULT_RUN;
    *out = s;
    return APX_OK;
}

void fmap_sorter_free(fmap_sorter *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_runs; i++) {
        remove(s->runs[i]);
        free(s->runs[i]);
    }
    free(s->runs);
    free(s->buf);
    free(s->prefix);
    free(s);
}

static int cmp_fault(const void *a, const void *b) {
    uint64_t x = ((const fmap_fault *)a)->cell, y = ((const fmap_fault *)b)->cell;
    return (x > y) - (x < y);
}

static int duplicate(const fmap_sorter *s, uint64_t index, apx_error *err) {
    cell c;
    geometry_cell_at(&s->geo, index, &c);
    return apx_fail(err, APX_EINPUT,
                    "two faults on one cell: channel %u rank %u bankgroup %u bank %u row %u "
                    "column %u bit %u (cell %llu)", c.f[GEO_CH], c.f[GEO_RA], c.f[GEO_BG],
                    c.f[GEO_BA], c.f[GEO_RO], c.f[GEO_CO], c.bit, (unsigned long long)index);
}

/* Sorts the buffer and checks it for duplicates. */
static int sort_buffer(fmap_sorter *s, apx_error *err) {
    if (s->n > 1) qsort(s->buf, s->n, sizeof *s->buf, cmp_fault);
    for (size_t i = 1; i < s->n; i++)
        if (s->buf[i].cell == s->buf[i - 1].cell) return duplicate(s, s->buf[i].cell, err);
    return APX_OK;
}

static int new_run(fmap_sorter *s, fmap_writer **w, char **path_out, apx_error *err) {
    *w = NULL;
    *path_out = NULL;
    if (s->n_runs == s->runs_cap) {
        size_t cap = s->runs_cap ? 2 * s->runs_cap : 8;
        char **r = realloc(s->runs, cap * sizeof *r);
        if (!r) return apx_fail(err, APX_EWORK, "out of memory");
        s->runs = r, s->runs_cap = cap;
    }
    size_t len = strlen(s->prefix) + 32;
    char *path = malloc(len);
    if (!path) return apx_fail(err, APX_EWORK, "out of memory");
    snprintf(path, len, "%s.%u.run", s->prefix, s->next_id++);
    fmap_provenance prov;
    fmap_provenance_recorded(&prov, "sort run");
    int rc = fmap_writer_create(w, path, &s->geo, &prov, err);
    if (rc) {
        free(path);
        return rc;
    }
    *path_out = path;
    return APX_OK;
}

static int spill(fmap_sorter *s, apx_error *err) {
    int rc = sort_buffer(s, err);
    if (rc) return rc;
    fmap_writer *w;
    char *path;
    if ((rc = new_run(s, &w, &path, err))) return rc;
    for (size_t i = 0; i < s->n && !rc; i++) rc = fmap_writer_add(w, &s->buf[i], err);
    if (rc) {
        fmap_writer_abort(w);
        free(path);
        return rc;
    }
    if ((rc = fmap_writer_commit(w, NULL, err))) {
        free(path);
        return rc;
    }
    s->runs[s->n_runs++] = path;
    s->n = 0;
    return APX_OK;
}

int fmap_sorter_add(fmap_sorter *s, const fmap_fault *f, apx_error *err) {
    int rc = fmap_fault_check(f, s->cells, err);
    if (rc) return rc;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        if (cap > s->run_max) cap = s->run_max;
        fmap_fault *b = realloc(s->buf, cap * sizeof *b);
        if (!b) return apx_fail(err, APX_EWORK, "out of memory");
        s->buf = b, s->cap = cap;
    }
    s->buf[s->n++] = *f;
    if (s->n == s->run_max) return spill(s, err);
    return APX_OK;
}

/* One merge input: a run file being read. */
typedef struct run_cursor {
    fmap_reader *r;
    const fmap_fault *f;
    size_t n, i;
} run_cursor;

static int cursor_fill(run_cursor *c, apx_error *err) {
    if (c->i < c->n) return APX_OK;
    c->i = 0;
    return fmap_reader_next(c->r, &c->f, &c->n, err);
}

/* Merges runs[from .. from + k) into w. */
static int merge_runs(fmap_sorter *s, size_t from, size_t k, fmap_writer *w, apx_error *err) {
    run_cursor cur[MERGE_FANIN];
    memset(cur, 0, sizeof cur);
    int rc = APX_OK;
    for (size_t j = 0; j < k && !rc; j++) {
        rc = fmap_reader_open(&cur[j].r, s->runs[from + j], err);
        if (!rc) rc = cursor_fill(&cur[j], err);
    }
    int any = 0;
    uint64_t last = 0;
    while (!rc) {
        size_t best = k;
        for (size_t j = 0; j < k; j++)
            if (cur[j].i < cur[j].n && (best == k || cur[j].f[cur[j].i].cell <
                                                     cur[best].f[cur[best].i].cell))
                best = j;
        if (best == k) break;
        const fmap_fault *f = &cur[best].f[cur[best].i++];
        if (any && f->cell == last) {
            rc = duplicate(s, f->cell, err);
            break;
        }
        any = 1;
        last = f->cell;
        rc = fmap_writer_add(w, f, err);
        if (!rc) rc = cursor_fill(&cur[best], err);
    }
    for (size_t j = 0; j < k; j++) fmap_reader_close(cur[j].r);
    return rc;
}

int fmap_sorter_drain(fmap_sorter *s, fmap_writer *w, apx_error *err) {
    int rc;
    if (!s->n_runs) {
        if ((rc = sort_buffer(s, err))) return rc;
        for (size_t i = 0; i < s->n; i++)
            if ((rc = fmap_writer_add(w, &s->buf[i], err))) return rc;
        s->n = 0;
        return APX_OK;
    }
    if (s->n && (rc = spill(s, err))) return rc;
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
    /* Merge the oldest MERGE_FANIN runs into a new one until few are left. */
    while (s->n_runs > MERGE_FANIN) {
        fmap_writer *mw;
        char *path;
        if ((rc = new_run(s, &mw, &path, err))) return rc;
        rc = merge_runs(s, 0, MERGE_FANIN, mw, err);
        if (rc) {
            fmap_writer_abort(mw);
            free(path);
            return rc;
        }
        if ((rc = fmap_writer_commit(mw, NULL, err))) {
            free(path);
            return rc;
        }
        for (size_t i = 0; i < MERGE_FANIN; i++) {
            remove(s->runs[i]);
            free(s->runs[i]);
        }
        memmove(s->runs, s->runs + MERGE_FANIN, (s->n_runs - MERGE_FANIN) * sizeof *s->runs);
        s->n_runs -= MERGE_FANIN;
        s->runs[s->n_runs++] = path;
    }
    return merge_runs(s, 0, s->n_runs, w, err);
}
