/* test_geometry.c - memory geometry and address mapping: hand-computed
 * addresses, round trips address <-> cell <-> index, bijectivity, and every
 * malformed geometry refused (YAML errors with file:line:col). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/geometry.h"
#include "../sim/config.h"
#include "tests.h"

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static geometry make(uint32_t ch, uint32_t ra, uint32_t bg, uint32_t ba, uint32_t ro,
                     uint32_t co, uint32_t bus, const char *mapping) {
    geometry g;
    memset(&g, 0, sizeof g);
    uint32_t c[GEO_FIELDS] = {ch, ra, bg, ba, ro, co};
    memcpy(g.count, c, sizeof c);
    g.bus_bits = bus;
    snprintf(g.mapping, sizeof g.mapping, "%s", mapping);
    return g;
}

/* ---- known values -------------------------------------------------------- */

static void test_default_is_ddr4_8gb_x8_rank(void) {
    geometry g;
    geometry_default(&g);
    CU_ASSERT_EQUAL(g.count[GEO_BG], 4);
    CU_ASSERT_EQUAL(g.count[GEO_BA], 4);
    CU_ASSERT_EQUAL(g.count[GEO_RO], 65536);
    CU_ASSERT_EQUAL(g.count[GEO_CO], 1024);
    CU_ASSERT_EQUAL(g.bus_bits, 64);
    CU_ASSERT_STRING_EQUAL(g.mapping, "RoBaBgCoCh");
    CU_ASSERT_EQUAL(geometry_bytes(&g), 8ull << 30);  /* 8 devices x 8 Gb */
    CU_ASSERT_EQUAL(geometry_cells(&g), 64ull << 30);
    /* byte offset 3 bits, column 10, bank group 2, bank 2, row 16 */
    CU_ASSERT_EQUAL(g.offset_bits, 3);
    CU_ASSERT_EQUAL(g.shift[GEO_CO], 3);
    CU_ASSERT_EQUAL(g.shift[GEO_BG], 13);
    CU_ASSERT_EQUAL(g.shift[GEO_BA], 15);
    CU_ASSERT_EQUAL(g.shift[GEO_RO], 17);
    CU_ASSERT_EQUAL(g.width[GEO_RO], 16);
    CU_ASSERT_EQUAL(g.width[GEO_CH], 0);

    geometry y;
    apx_error err = {0};
    CU_ASSERT_EQUAL(geometry_from_yaml(NULL, &y, &err), APX_OK);
    CU_ASSERT_TRUE(geometry_equal(&g, &y));
}

static void test_hand_computed_robabgcoch(void) {
    /* 2 ch, 2 bg, 2 ba, 4 rows, 8 cols, 16-bit bus: address bits from the
     * bottom: offset 1, Ch 1, Co 3, Bg 1, Ba 1, Ro 2 = 9 bits = 512 bytes. */
    geometry g = make(2, 1, 2, 2, 4, 8, 16, "RoBaBgCoCh");
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    CU_ASSERT_EQUAL(geometry_bytes(&g), 512);
    /* 0x1A5 = 1 1010 0101b: offset 1, ch 0, co 001, bg 1, ba 0, ro 11b */
    cell c;
    CU_ASSERT_EQUAL_FATAL(geometry_addr_to_cell(&g, 0x1A5, 3, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.f[GEO_CH], 0);
    CU_ASSERT_EQUAL(c.f[GEO_RA], 0);
    CU_ASSERT_EQUAL(c.f[GEO_CO], 1);
    CU_ASSERT_EQUAL(c.f[GEO_BG], 1);
    CU_ASSERT_EQUAL(c.f[GEO_BA], 0);
    CU_ASSERT_EQUAL(c.f[GEO_RO], 3);
    CU_ASSERT_EQUAL(c.bit, 11);  /* byte 1 of the bus word, bit 3 */
    /* channel-major: ((((0*2+1)*2+0)*4+3)*8+1)*16+11 */
    CU_ASSERT_EQUAL(geometry_cell_index(&g, &c), 1435);
    /* flipping address bit 1 moves to channel 1, nothing else */
    CU_ASSERT_EQUAL_FATAL(geometry_addr_to_cell(&g, 0x1A7, 3, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.f[GEO_CH], 1);
    CU_ASSERT_EQUAL(c.f[GEO_CO], 1);
    CU_ASSERT_EQUAL(geometry_cell_index(&g, &c), 1435 + 2048);  /* 2048 cells per channel */
}

static void test_hand_computed_chrabaroco(void) {
    /* 2 ch, 2 ranks, 4 banks, 8 rows, 4 cols, 8-bit bus, no bank groups:
     * with this order the mapping is the identity on cell indices. */
    geometry g = make(2, 2, 1, 4, 8, 4, 8, "ChRaBaRoCo");
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    CU_ASSERT_EQUAL(g.offset_bits, 0);
    cell c;
    /* 0x1C6 = 1 1100 0110b: co 10b, ro 001b, ba 10b, ra 1, ch 1 */
    CU_ASSERT_EQUAL_FATAL(geometry_addr_to_cell(&g, 0x1C6, 5, &c, &err), APX_OK);
    CU_ASSERT_EQUAL(c.f[GEO_CO], 2);
    CU_ASSERT_EQUAL(c.f[GEO_RO], 1);
    CU_ASSERT_EQUAL(c.f[GEO_BA], 2);
    CU_ASSERT_EQUAL(c.f[GEO_RA], 1);
    CU_ASSERT_EQUAL(c.f[GEO_CH], 1);
    CU_ASSERT_EQUAL(c.f[GEO_BG], 0);
    CU_ASSERT_EQUAL(c.bit, 5);
    CU_ASSERT_EQUAL(geometry_cell_index(&g, &c), 0x1C6 * 8 + 5);
    uint64_t a;
    unsigned b;
    geometry_cell_to_addr(&g, &c, &a, &b);
    CU_ASSERT_EQUAL(a, 0x1C6);
    CU_ASSERT_EQUAL(b, 5);
}

/* ---- round trips ---------------------------------------------------------- */

static const struct {
    uint32_t ch, ra, bg, ba, ro, co, bus;
    const char *mapping;
} shapes[] = {
    {1, 1, 4, 4, 65536, 1024, 64, "RoBaBgCoCh"},
    {2, 2, 4, 4, 32768, 1024, 64, "RoBgBaRaCoCh"},
    {4, 2, 1, 8, 16384, 512, 32, "ChRaBaRoCo"},
    {2, 1, 2, 4, 128, 64, 16, "CoRoBaBgCh"},
    {1, 4, 4, 4, 4096, 256, 8, "RaBgBaRoCo"},
    {8, 1, 1, 1, 2, 2, 64, "ChRoCoBgBaRa"},  /* count-1 fields named anyway */
};

static void test_round_trips(void) {
    uint64_t s = 42;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        geometry g = make(shapes[k].ch, shapes[k].ra, shapes[k].bg, shapes[k].ba,
                          shapes[k].ro, shapes[k].co, shapes[k].bus, shapes[k].mapping);
        apx_error err = {0};
        CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
        uint64_t bytes = geometry_bytes(&g), cells = geometry_cells(&g);
        CU_ASSERT_EQUAL(cells, bytes * 8);
        int bad = 0;
        for (int i = 0; i < 20000; i++) {
            uint64_t addr = splitmix(&s) % bytes, a2, idx;
            unsigned bit = (unsigned)(splitmix(&s) % 8), b2;
            cell c, c2;
            if (geometry_addr_to_cell(&g, addr, bit, &c, &err)) bad++;
            for (int f = 0; f < GEO_FIELDS; f++) bad += c.f[f] >= g.count[f];
            bad += c.bit >= g.bus_bits;
            geometry_cell_to_addr(&g, &c, &a2, &b2);
            bad += a2 != addr || b2 != bit;
            idx = geometry_cell_index(&g, &c);
            bad += idx >= cells;
            geometry_cell_at(&g, idx, &c2);
            bad += memcmp(&c, &c2, sizeof c) != 0;
            /* and from a random index */
            idx = splitmix(&s) % cells;
            geometry_cell_at(&g, idx, &c2);
            bad += geometry_cell_index(&g, &c2) != idx;
            geometry_cell_to_addr(&g, &c2, &a2, &b2);
            if (geometry_addr_to_cell(&g, a2, b2, &c, &err)) bad++;
            bad += geometry_cell_index(&g, &c) != idx;
        }
        if (bad) fprintf(stderr, "\n  %s: %d mismatches\n", shapes[k].mapping, bad);
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* Every (address, bit) of a small memory lands on a distinct cell: the
 * mapping is a bijection, whatever the order of the fields. */
static void test_small_memory_is_a_bijection(void) {
    static const char *const maps[] = {"RoBaBgRaCoCh", "ChRaBgBaRoCo", "CoChRoRaBaBg"};
    for (size_t k = 0; k < 3; k++) {
        geometry g = make(2, 2, 2, 2, 4, 4, 16, maps[k]);
        apx_error err = {0};
        CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
        uint64_t cells = geometry_cells(&g);
        unsigned char *hit = calloc(cells, 1);
        int bad = 0;
        for (uint64_t a = 0; a < geometry_bytes(&g); a++)
            for (unsigned b = 0; b < 8; b++) {
                cell c;
                if (geometry_addr_to_cell(&g, a, b, &c, &err)) {
                    bad++;
                    continue;
                }
                uint64_t i = geometry_cell_index(&g, &c);
                if (i >= cells || hit[i]++) bad++;
            }
        CU_ASSERT_EQUAL(bad, 0);
        free(hit);
    }
}

static void test_outside_and_equality(void) {
    geometry g = make(1, 1, 2, 2, 8, 8, 64, "RoBaBgCoCh");
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    cell c;
    CU_ASSERT_EQUAL(geometry_addr_to_cell(&g, geometry_bytes(&g), 0, &c, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "outside the memory"));
    CU_ASSERT_EQUAL(geometry_addr_to_cell(&g, 0, 8, &c, &err), APX_EINPUT);

    geometry h = make(1, 1, 2, 2, 8, 8, 64, "RoBaBgCo");  /* Ch has count 1 */
    CU_ASSERT_EQUAL_FATAL(geometry_init(&h, &err), APX_OK);
    CU_ASSERT_TRUE(geometry_equal(&g, &h));
    h = make(1, 1, 2, 2, 8, 8, 64, "RoBgBaCoCh");  /* Ba and Bg swapped */
    CU_ASSERT_EQUAL_FATAL(geometry_init(&h, &err), APX_OK);
    CU_ASSERT_FALSE(geometry_equal(&g, &h));
    h = make(1, 1, 2, 2, 16, 8, 64, "RoBaBgCoCh");
    CU_ASSERT_EQUAL_FATAL(geometry_init(&h, &err), APX_OK);
    CU_ASSERT_FALSE(geometry_equal(&g, &h));
    h = make(1, 1, 2, 2, 8, 16, 32, "RoBaBgCoCh");  /* same size, other bus */
    CU_ASSERT_EQUAL_FATAL(geometry_init(&h, &err), APX_OK);
    CU_ASSERT_EQUAL(geometry_bytes(&g), geometry_bytes(&h));
    CU_ASSERT_FALSE(geometry_equal(&g, &h));
}

/* ---- refusals ------------------------------------------------------------- */

static void expect_init_error(geometry g, const char *want) {
    apx_error err = {0};
    CU_ASSERT_EQUAL(geometry_init(&g, &err), APX_EINPUT);
    if (!strstr(err.msg, want)) fprintf(stderr, "\n  got: %s\n  want: %s\n", err.msg, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
}

static void test_bad_geometries_refused(void) {
    expect_init_error(make(1, 1, 4, 4, 65536, 1000, 64, "RoBaBgCoCh"),
                      "columns = 1000 is not a power of two");
    expect_init_error(make(1, 1, 4, 0, 65536, 1024, 64, "RoBaBgCoCh"),
                      "banks = 0 is not a power of two");
    expect_init_error(make(1, 1, 4, 4, 65536, 1024, 48, "RoBaBgCoCh"), "bus_bits = 48");
}

static void test_bad_mappings_refused(void) {
    /* count-1 Ch may be absent (checked in test_outside_and_equality); here
     * every case is wrong */
    expect_init_error(make(2, 1, 4, 4, 1024, 1024, 64, "RoBaBgCo"), "lacks Ch");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, "RoBaBg"), "lacks Co");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, "RoRoBaBgCoCh"), "names Ro twice");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, "RoBaBgCoXy"), "unknown field 'Xy'");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, "robabgcoch"), "unknown field 'ro'");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, "RoBaBgCoC"), "unknown field 'C'");
    expect_init_error(make(1, 1, 4, 4, 1024, 1024, 64, ""), "lacks Bg");
    /* too large: 2^31 rows x 2^31 columns x 64 bits */
    expect_init_error(make(1, 1, 1, 1, 1u << 31, 1u << 31, 64, "RoCo"), "too large");
    /* a mapping that fills the field without a terminator */
    geometry g = make(1, 1, 4, 4, 1024, 1024, 64, "");
    memset(g.mapping, 'R', sizeof g.mapping);
    expect_init_error(g, "longer than");
}

/* ---- YAML ----------------------------------------------------------------- */

/* Reads `text` (whose root holds `geometry:`) as "g.yaml". */
static int from_yaml(const char *text, geometry *g, apx_error *err) {
    memset(err, 0, sizeof *err);
    cfg_doc *doc = cfg_load_string(text, strlen(text), "g.yaml", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    int rc = geometry_from_yaml(cfg_find(cfg_root(doc), "geometry"), g, err);
    cfg_free(doc);
    return rc;
}

static void expect_yaml_error(const char *text, const char *want) {
    geometry g;
    apx_error err;
    CU_ASSERT_EQUAL(from_yaml(text, &g, &err), APX_EINPUT);
    if (strncmp(err.msg, want, strlen(want)) != 0)
        fprintf(stderr, "\n  got:  %s\n  want: %s...\n", err.msg, want);
    CU_ASSERT_EQUAL(strncmp(err.msg, want, strlen(want)), 0);
}

static void test_yaml(void) {
    geometry g, want;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(from_yaml("geometry:\n"
                                    "  channels: 2\n"
                                    "  ranks: 2\n"
                                    "  rows: 32768\n"
                                    "  mapping: RoBgBaRaCoCh\n",
                                    &g, &err),
                          APX_OK);
    want = make(2, 2, 4, 4, 32768, 1024, 64, "RoBgBaRaCoCh");  /* the rest defaulted */
    CU_ASSERT_EQUAL_FATAL(geometry_init(&want, &err), APX_OK);
    CU_ASSERT_TRUE(geometry_equal(&g, &want));
    CU_ASSERT_STRING_EQUAL(g.mapping, "RoBgBaRaCoCh");

    expect_yaml_error("geometry:\n  rows: 1000\n",
                      "g.yaml:2:9: geometry: rows = 1000 is not a power of two");
    expect_yaml_error("geometry:\n  rows: 0\n", "g.yaml:2:9:");
    expect_yaml_error("geometry:\n  bus_bits: 24\n",
                      "g.yaml:2:13: geometry: bus_bits = 24 must be 8, 16, 32 or 64");
    expect_yaml_error("geometry:\n  rowz: 1024\n", "g.yaml:2:3: unknown key 'rowz'");
    /* the default mapping names Ch, so two channels need no new mapping */
    CU_ASSERT_EQUAL(from_yaml("geometry:\n  channels: 2\n", &g, &err), APX_OK);
    CU_ASSERT_EQUAL(geometry_bytes(&g), 16ull << 30);
    expect_yaml_error("geometry:\n  ranks: 2\n", "g.yaml:2:3: geometry: mapping 'RoBaBgCoCh' lacks Ra");
    expect_yaml_error("geometry:\n  mapping: RoBaBgCoCoCh\n",
                      "g.yaml:2:12: geometry: mapping 'RoBaBgCoCoCh' names Co twice");
    expect_yaml_error("geometry:\n  mapping: RoBaBgCoQq\n", "g.yaml:2:12: geometry: mapping");
    expect_yaml_error("geometry:\n  mapping: RoBaBgCoChRoBaBgCoChRoBaBgCoChRoBa\n",
                      "g.yaml:2:12: geometry: mapping is longer than 31");
    expect_yaml_error("geometry:\n  rows: 2147483648\n  columns: 2147483648\n",
                      "g.yaml:2:3: geometry: 2^72 cells is too large");
    expect_yaml_error("geometry: [1, 2]\n", "g.yaml:1:11: geometry must be a mapping");
}

void add_geometry_suite(void) {
    TEST_SUITE("geometry", {"default is a DDR4 8Gb x8 rank", test_default_is_ddr4_8gb_x8_rank},
               {"hand-computed RoBaBgCoCh", test_hand_computed_robabgcoch},
               {"hand-computed ChRaBaRoCo", test_hand_computed_chrabaroco},
               {"round trips", test_round_trips},
               {"small memory is a bijection", test_small_memory_is_a_bijection},
               {"outside addresses and equality", test_outside_and_equality},
               {"bad counts refused", test_bad_geometries_refused},
               {"bad mappings refused", test_bad_mappings_refused},
               {"YAML and its errors", test_yaml});
}
