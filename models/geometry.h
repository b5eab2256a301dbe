/* geometry.h - the shape of a memory and how byte addresses map onto it.
 *
 * A memory is channels x ranks x bank groups x banks x rows x columns of
 * bus words; a bus word is bus_bits wide (64 for a DDR rank of eight x8
 * devices) and is what one column address returns across the rank. A cell
 * is one bit: (channel, rank, bankgroup, bank, row, column, bit), bit
 * 0..bus_bits-1 within the bus word. Spatial correlation (weak bitlines,
 * wordlines) lives in cell coordinates; the address mapping decides which
 * bytes of a workload share them.
 *
 * Cell index: the cell's position in channel-major order (channel, rank,
 * bankgroup, bank, row, column, bit; bit fastest). Fault-map files store
 * sorted cell indices. Every field count must be a power of two.
 *
 * Address mapping: a string of field names, most significant first, as in
 * Ramulator 2: "RoBaBgCoCh" = row, bank, bank group, column, channel, then
 * (implicitly, least significant) the byte offset within the bus word. Ra
 * (rank) may appear; fields absent from the string must have count 1. The
 * byte address space is exactly the memory's size; addresses outside it are
 * refused. */
#ifndef APX_GEOMETRY_H
#define APX_GEOMETRY_H

#include <stdint.h>

#include "../sim/config.h"
#include "../sim/error.h"

enum geometry_field { GEO_CH, GEO_RA, GEO_BG, GEO_BA, GEO_RO, GEO_CO, GEO_FIELDS };

typedef struct geometry {
    uint32_t count[GEO_FIELDS];  /* channels, ranks, bankgroups, banks per group, rows, columns */
    uint32_t bus_bits;           /* bits per bus word: 8, 16, 32 or 64 */
    char mapping[32];            /* e.g. "RoBaBgCoCh" */
    /* derived by geometry_init: for each field, its shift and width in the
     * byte address */
    uint8_t shift[GEO_FIELDS], width[GEO_FIELDS];
    uint8_t offset_bits;         /* log2(bus_bits / 8) */
} geometry;

typedef struct cell {
    uint32_t f[GEO_FIELDS];      /* channel, rank, bankgroup, bank, row, column */
    uint32_t bit;                /* 0 .. bus_bits - 1 */
} cell;

/* Checks the counts (powers of two, total size below 2^62 bits) and parses
 * the mapping (every field with count > 1 must appear once; no unknown or
 * repeated names). Fills the derived fields. */
int geometry_init(geometry *g, apx_error *err);

/* Reads a geometry from YAML:
 *   {channels, ranks, bankgroups, banks, rows, columns, bus_bits, mapping}
 * with defaults of a DDR4 8Gb x8 rank (1 channel, 1 rank, 4 bank groups,
 * 4 banks, 65536 rows, 1024 columns, 64-bit bus, "RoBaBgCoCh"). */
int geometry_from_yaml(const cfg_node *node, geometry *g, apx_error *err);

/* A DDR4-style default as above (docs/fmap.md cites it). */
void geometry_default(geometry *g);

uint64_t geometry_bytes(const geometry *g);
uint64_t geometry_cells(const geometry *g);

uint64_t geometry_cell_index(const geometry *g, const cell *c);
void geometry_cell_at(const geometry *g, uint64_t index, cell *c);

/* Byte address + bit within the byte (0..7) <-> cell, through the mapping.
 * geometry_addr_to_cell returns APX_EINPUT for an address outside the memory;
 * geometry_decode is its unchecked form for hot loops whose addresses are
 * known to lie inside the memory. */
static inline void geometry_decode(const geometry *g, uint64_t byte_addr, unsigned bit_in_byte,
                                   cell *c) {
    for (int f = 0; f < GEO_FIELDS; f++)
        c->f[f] = (uint32_t)((byte_addr >> g->shift[f]) & ((1ull << g->width[f]) - 1));
    c->bit = (uint32_t)((byte_addr & ((1ull << g->offset_bits) - 1)) * 8 + bit_in_byte);
}

int geometry_addr_to_cell(const geometry *g, uint64_t byte_addr, unsigned bit_in_byte,
                          cell *c, apx_error *err);
void geometry_cell_to_addr(const geometry *g, const cell *c, uint64_t *byte_addr,
                           unsigned *bit_in_byte);

/* Whether two geometries describe the same memory and mapping. */
int geometry_equal(const geometry *a, const geometry *b);

#endif
