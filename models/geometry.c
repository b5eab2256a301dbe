/* geometry.c - memory shape, cell indices and the address mapping.
 *
 * Every count is a power of two, so a byte address is a concatenation of bit
 * fields: from the least significant end, the byte offset within the bus
 * word (offset_bits), then the fields of the mapping string from its last
 * name to its first. Fields of count 1 take no bits wherever they appear.
 * Cell indices concatenate the same fields in the fixed channel-major order
 * (channel, rank, bank group, bank, row, column, bit). Both directions are
 * therefore shifts and masks. */
#include "geometry.h"

#include <stdio.h>
#include <string.h>

/* Field names in enum order: as Ramulator 2 spells them in mapping strings,
 * and as the YAML keys spell the counts. */
static const char *const field_abbrev[GEO_FIELDS] = {"Ch", "Ra", "Bg", "Ba", "Ro", "Co"};
static const char *const field_key[GEO_FIELDS] = {"channels", "ranks", "bankgroups",
                                                  "banks",    "rows",  "columns"};

/* Total size limit: cells (bits) below 2^62, so byte addresses and cell
 * indices fit in 64 bits with room to spare for arithmetic on them. */
#define GEO_MAX_CELL_BITS 62

static int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static unsigned log2u(uint64_t x) {
    unsigned n = 0;
    while (x > 1) x >>= 1, n++;
    return n;
}

void geometry_default(geometry *g) {
    /* DDR4 8Gb x8 (JESD79-4; ../shared/facts/dram.md §3.3-3.4, the DRAMsim3 and
     * DRAMPower DDR4 8Gb x8 memspecs): per device 4 bank groups x 4 banks,
     * 65536 rows (A0-A15) x 1024 columns of 8 bits = 8 Gb; a rank of eight x8
     * devices answers each column address with a 64-bit bus word, so one rank
     * is 8 GiB. Mapping RoBaBgCoCh (Ramulator 2's row-bank-bankgroup-column-
     * channel order; with one channel Ch takes no bits). */
    memset(g, 0, sizeof *g);
    g->count[GEO_CH] = 1;
    g->count[GEO_RA] = 1;
    g->count[GEO_BG] = 4;
    g->count[GEO_BA] = 4;
    g->count[GEO_RO] = 65536;
    g->count[GEO_CO] = 1024;
    g->bus_bits = 64;
    strcpy(g->mapping, "RoBaBgCoCh");
    apx_error ignored;
    geometry_init(g, &ignored);  /* cannot fail on these values */
}

int geometry_init(geometry *g, apx_error *err) {
    if (g->bus_bits != 8 && g->bus_bits != 16 && g->bus_bits != 32 && g->bus_bits != 64)
        return apx_fail(err, APX_EINPUT, "geometry: bus_bits = %u must be 8, 16, 32 or 64",
                        g->bus_bits);
    unsigned total = log2u(g->bus_bits);
    for (int f = 0; f < GEO_FIELDS; f++) {
        if (!is_pow2(g->count[f]))
            return apx_fail(err, APX_EINPUT, "geometry: %s = %u is not a power of two",
                            field_key[f], g->count[f]);
        total += log2u(g->count[f]);
    }
    if (total >= GEO_MAX_CELL_BITS)
        return apx_fail(err, APX_EINPUT,
                        "geometry: 2^%u cells is too large (at most 2^%d)", total,
                        GEO_MAX_CELL_BITS - 1);

    /* Parse the mapping into field order, most significant first. */
    size_t len = strnlen(g->mapping, sizeof g->mapping);
    if (len == sizeof g->mapping)
        return apx_fail(err, APX_EINPUT, "geometry: mapping is longer than %zu characters",
                        sizeof g->mapping - 1);
    int order[GEO_FIELDS], n = 0, seen[GEO_FIELDS] = {0};
    for (size_t i = 0; i < len; i += 2) {
        int found = -1;
        for (int f = 0; f < GEO_FIELDS && found < 0; f++)
            if (i + 1 < len && g->mapping[i] == field_abbrev[f][0] &&
                g->mapping[i + 1] == field_abbrev[f][1])
                found = f;
        if (found < 0)
            return apx_fail(err, APX_EINPUT,
                            "geometry: mapping '%s': unknown field '%.2s' at character %zu "
                            "(fields: Ch Ra Bg Ba Ro Co)",
                            g->mapping, g->mapping + i, i + 1);
        if (seen[found])
            return apx_fail(err, APX_EINPUT, "geometry: mapping '%s' names %s twice",
                            g->mapping, field_abbrev[found]);
        seen[found] = 1;
        order[n++] = found;
    }
    for (int f = 0; f < GEO_FIELDS; f++)
        if (!seen[f] && g->count[f] > 1)
            return apx_fail(err, APX_EINPUT,
                            "geometry: mapping '%s' lacks %s, but %s = %u (only fields of "
                            "count 1 may be left out)",
                            g->mapping, field_abbrev[f], field_key[f], g->count[f]);

    g->offset_bits = (uint8_t)log2u(g->bus_bits / 8);
    for (int f = 0; f < GEO_FIELDS; f++) g->shift[f] = 0, g->width[f] = 0;
    unsigned shift = g->offset_bits;
    for (int i = n - 1; i >= 0; i--) {
        int f = order[i];
        g->shift[f] = (uint8_t)shift;
        g->width[f] = (uint8_t)log2u(g->count[f]);
        shift += g->width[f];
    }
    return APX_OK;
}

int geometry_from_yaml(const cfg_node *node, geometry *g, apx_error *err) {
    geometry_default(g);
    if (!node) return APX_OK;
    static const char *const keys[] = {"channels", "ranks",   "bankgroups", "banks", "rows",
                                       "columns",  "bus_bits", "mapping",   NULL};
    if (cfg_expect_map(node, "geometry", keys, err)) return err->code;
    for (int f = 0; f < GEO_FIELDS; f++) {
        long long v;
        if (cfg_get_int(node, field_key[f], 0, g->count[f], 1, 1ll << 31, &v, err))
            return err->code;
        if (!is_pow2((uint64_t)v))
            return cfg_fail(cfg_find(node, field_key[f]), err,
                            "geometry: %s = %lld is not a power of two", field_key[f], v);
        g->count[f] = (uint32_t)v;
    }
    long long bus;
    if (cfg_get_int(node, "bus_bits", 0, g->bus_bits, 8, 64, &bus, err)) return err->code;
    if (bus != 8 && bus != 16 && bus != 32 && bus != 64)
        return cfg_fail(cfg_find(node, "bus_bits"), err,
                        "geometry: bus_bits = %lld must be 8, 16, 32 or 64", bus);
    g->bus_bits = (uint32_t)bus;
    const char *mapping;
    if (cfg_get_string(node, "mapping", 0, g->mapping, &mapping, err)) return err->code;
    const cfg_node *mapping_at = cfg_find(node, "mapping");
    if (strlen(mapping) >= sizeof g->mapping)
        return cfg_fail(mapping_at, err, "geometry: mapping is longer than %zu characters",
                        sizeof g->mapping - 1);
    memmove(g->mapping, mapping, strlen(mapping) + 1);
    apx_error inner;
    if (geometry_init(g, &inner))
        /* Counts were checked above, so what is left is the mapping or the
         * total size: point at the mapping if given, else at the section. */
        return cfg_fail(mapping_at ? mapping_at : node, err, "%s", inner.msg);
    return APX_OK;
}

uint64_t geometry_cells(const geometry *g) {
    uint64_t n = g->bus_bits;
    for (int f = 0; f < GEO_FIELDS; f++) n *= g->count[f];
    return n;
}

uint64_t geometry_bytes(const geometry *g) { return geometry_cells(g) / 8; }

/* Every count is a power of two (geometry_init checks it), so a cell index
 * is a packed bit field: shifts and masks instead of the divisions that
 * dominated replay time. */
static inline unsigned log2_u32(uint32_t pow2) { return (unsigned)__builtin_ctz(pow2); }

uint64_t geometry_cell_index(const geometry *g, const cell *c) {
    uint64_t idx = 0;
    for (int f = 0; f < GEO_FIELDS; f++) idx = idx << log2_u32(g->count[f]) | c->f[f];
    return idx << log2_u32(g->bus_bits) | c->bit;
}

void geometry_cell_at(const geometry *g, uint64_t index, cell *c) {
    c->bit = (uint32_t)(index & (g->bus_bits - 1));
    index >>= log2_u32(g->bus_bits);
    for (int f = GEO_FIELDS - 1; f >= 0; f--) {
        c->f[f] = (uint32_t)(index & (g->count[f] - 1));
        index >>= log2_u32(g->count[f]);
    }
}

int geometry_addr_to_cell(const geometry *g, uint64_t byte_addr, unsigned bit_in_byte, cell *c,
                          apx_error *err) {
    uint64_t bytes = geometry_bytes(g);
    if (byte_addr >= bytes)
        return apx_fail(err, APX_EINPUT,
                        "address 0x%llx is outside the memory (%llu bytes)",
                        (unsigned long long)byte_addr, (unsigned long long)bytes);
    if (bit_in_byte > 7)
        return apx_fail(err, APX_EINPUT, "bit %u within a byte (0..7 expected)", bit_in_byte);
    geometry_decode(g, byte_addr, bit_in_byte, c);
    return APX_OK;
}

void geometry_cell_to_addr(const geometry *g, const cell *c, uint64_t *byte_addr,
                           unsigned *bit_in_byte) {
    uint64_t a = c->bit / 8;
    for (int f = 0; f < GEO_FIELDS; f++) a |= (uint64_t)c->f[f] << g->shift[f];
    *byte_addr = a;
    *bit_in_byte = c->bit % 8;
}

int geometry_equal(const geometry *a, const geometry *b) {
    if (a->bus_bits != b->bus_bits) return 0;
    for (int f = 0; f < GEO_FIELDS; f++) {
        if (a->count[f] != b->count[f]) return 0;
        /* fields of count 1 take no address bits wherever the string puts them */
        if (a->count[f] > 1 && a->shift[f] != b->shift[f]) return 0;
    }
    return 1;
}
