/* test_dram_timing.c - the DRAM controller, energy model and cost op
 * (models/dram/dram_timing.h, dram_energy.h).
 *
 * Energy: per-command energies of a DDR4-2400 8Gb x8 device against the
 * hand computation of facts dram.md 3.4 (ACT+PRE 433 pJ, RD 368 pJ, REF
 * 86.9 nJ), times 8 devices; VDD scaling as (V/Vnom)^(1+exponent) with VPP
 * unscaled. Timing: every expected cycle count is worked out by hand in the
 * test from the constraints (tRCD, CL, tCCD_L, tRAS, tRP, tRC, tRTP, tRRD,
 * tFAW, tWR, tWTR, tRFC/tREFI), so a missing or misapplied constraint
 * changes the number. FR-FCFS against FCFS, refresh counts and the PREs
 * they force, rank accounting, repeatability. YAML readers: each refusal
 * names file:line:col. Cost op: burst counting and collapse, per-inference
 * division, consistency of the items, and refusals that leave out alone.
 *
 * Parameters: DDR4-2400 8Gb x8 as in facts dram.md 3.3 (umd-memsys/DRAMsim3,
 * configs/DDR4_8Gb_x8_2400.ini, and the JEDEC DDR4-2400U 17-17-17 preset of
 * CMU-SAFARI/ramulator2): tCK 0.833 ns (facts write 0.83; 0.833 is the
 * 1200 MHz period), every other time as cycles x 0.833 ns. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/device.h"
#include "../models/dram/dram_energy.h"
#include "../models/dram/dram_timing.h"
#include "../models/geometry.h"
#include "../sim/config.h"
#include "tests.h"

#define TCK 0.833

static double ns(double cycles) { return cycles * TCK; }

/* Hand-checked cycle counts below use these. */
enum { CL = 17, CWL = 16, RCD = 17, RP = 17, RAS = 39, RC = 56, CCD_S = 4, CCD_L = 6,
       RRD_S = 4, RRD_L = 6, FAW = 26, RTP = 9, WR = 18, WTR_S = 3, WTR_L = 9, RFC = 420,
       REFI = 9360, BURST = 4 };

static dram_timing ddr4(void) {
    return (dram_timing){.tck = TCK,        .cl = ns(CL),         .cwl = ns(CWL),
                         .trcd = ns(RCD),   .trp = ns(RP),        .tras = ns(RAS),
                         .trc = ns(RC),     .tccd_s = ns(CCD_S),  .tccd_l = ns(CCD_L),
                         .trrd_s = ns(RRD_S), .trrd_l = ns(RRD_L), .tfaw = ns(FAW),
                         .trtp = ns(RTP),   .twr = ns(WR),        .twtr_s = ns(WTR_S),
                         .twtr_l = ns(WTR_L), .trfc = ns(RFC),    .trefi = ns(REFI),
                         .bl = 8};
}

/* facts 3.3: IDD values of DRAMsim3's DDR4_8Gb_x8_2400.ini; IPP0 3.0 mA at
 * VPP 2.5 V; IPP3N not given (0). */
static dram_power ddr4_power(void) {
    return (dram_power){.vdd = 1.2, .vpp = 2.5, .idd0 = 48, .idd2n = 34, .idd3n = 43,
                        .idd4r = 135, .idd4w = 123, .idd5b = 250, .ipp0 = 3.0, .ipp3n = 0,
                        .devices = 8, .current_exponent = 1};
}

static uint64_t addr_of(const geometry *g, uint32_t ch, uint32_t ra, uint32_t bg, uint32_t ba,
                        uint32_t row, uint32_t col) {
    cell c = {.f = {ch, ra, bg, ba, row, col}, .bit = 0};
    uint64_t a;
    unsigned bit;
    geometry_cell_to_addr(g, &c, &a, &bit);
    return a;
}

/* A read (or write) of bank (bg, ba), row, column in the default rank. */
static dram_request rq(const geometry *g, uint32_t bg, uint32_t ba, uint32_t row, uint32_t col,
                       int is_write) {
    return (dram_request){.addr = addr_of(g, 0, 0, bg, ba, row, col), .is_write = is_write};
}

static dram_counts run(const dram_timing *t, const geometry *g, const dram_request *r,
                       size_t n, unsigned depth) {
    dram_counts c;
    memset(&c, 0, sizeof c);
    apx_error err = {0};
    int rc = dram_timing_run(t, g, r, n, depth, &c, &err);
    if (rc) fprintf(stderr, "\n  dram_timing_run: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, APX_OK);
    return c;
}

/* Invariants every run keeps. */
static void check_consistent(const dram_counts *c, size_t n) {
    CU_ASSERT_EQUAL(c->rd + c->wr, n);
    CU_ASSERT_EQUAL(c->row_hits + c->row_misses + c->row_conflicts, n);
    CU_ASSERT_EQUAL(c->act, c->row_misses + c->row_conflicts);
    CU_ASSERT(c->pre >= c->row_conflicts);
    CU_ASSERT(c->cycles_active <= c->rank_cycles);
    CU_ASSERT_DOUBLE_EQUAL(c->time_ns, (double)c->cycles * TCK, 1e-6);
}

/* ---- energy ----------------------------------------------------------------- */

static dram_energy energy(const dram_counts *c, double vdd, double exponent) {
    dram_power p = ddr4_power();
    p.current_exponent = exponent;
    dram_timing t = ddr4();
    dram_energy e;
    dram_energy_of(&p, &t, c, vdd, &e);
    return e;
}

static void test_energy_hand_computation(void) {
    /* facts 3.4, per x8 device, mA x V x ns = pJ:
     *   ACT = 1.2 (48 - 43) 39 x 0.833            = 194.9 pJ
     *   PRE = 1.2 (48 - 34) (56 - 39) x 0.833     = 237.9 pJ  -> ACT + PRE = 433 pJ
     *   RD  = 1.2 (135 - 43) 4 x 0.833            = 367.9 pJ
     *   WR  = 1.2 (123 - 43) 4 x 0.833            = 319.9 pJ
     *   REF = 1.2 (250 - 43) 420 x 0.833          = 86.9 nJ */
    dram_counts c = {.act = 1, .pre = 1, .rd = 1, .wr = 1, .ref = 1};
    dram_energy e = energy(&c, 1.2, 1);
    CU_ASSERT(fabs((e.act + e.pre) / 8 - 433) < 1);
    CU_ASSERT(fabs(e.act / 8 - 194.9) < 0.1);
    CU_ASSERT(fabs(e.rd / 8 - 368) < 1);
    CU_ASSERT(fabs(e.wr / 8 - 320) < 1);
    CU_ASSERT(fabs(e.ref / 8 - 86.9e3) < 50);
    /* the rank: 8 devices; a 64-B row-miss read = ACT + RD + PRE = 6.41 nJ */
    CU_ASSERT(fabs(e.act + e.pre + e.rd - 6.41e3) < 10);
    /* no cycles: no background and no VPP standby; VPP ACT term with IPP3N
     * left out (an upper bound): 2.5 x 3.0 x 39 x 0.833 x 8 = 1949 pJ */
    CU_ASSERT_DOUBLE_EQUAL(e.background, 0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(e.vpp, 2.5 * 3.0 * ns(39) * 8, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(e.total, e.act + e.pre + e.rd + e.wr + e.ref + e.vpp, 1e-6);

    /* background: 1000 cycles, 400 of them with a bank open, at 51.6 mW
     * active and 40.8 mW precharged per device (facts 3.4):
     * (51.6 x 400 + 40.8 x 600) x 0.833 x 8 = 299.6 nJ */
    dram_counts b = {.cycles = 1000, .cycles_active = 400, .rank_cycles = 1000};
    e = energy(&b, 1.2, 1);
    CU_ASSERT(fabs(e.background - (51.6 * 400 + 40.8 * 600) * TCK * 8) < 1);
    /* rank_cycles 0 is read as cycles (one rank); two ranks double the base */
    b.rank_cycles = 0;
    CU_ASSERT_DOUBLE_EQUAL(energy(&b, 1.2, 1).background, e.background, 1e-6);
    b.rank_cycles = 2000;
    CU_ASSERT_DOUBLE_EQUAL(energy(&b, 1.2, 1).background,
                           1.2 * (43 * 400 + 34 * 1600) * TCK * 8, 1e-6);

    /* with IPP3N given: ACT pays IPP0 - IPP3N, standby IPP3N over every cycle */
    dram_power p = ddr4_power();
    p.ipp3n = 1.0;
    dram_timing t = ddr4();
    dram_counts v = {.act = 3, .cycles = 1000, .cycles_active = 400, .rank_cycles = 1000};
    dram_energy_of(&p, &t, &v, 1.2, &e);
    CU_ASSERT_DOUBLE_EQUAL(e.vpp, 8 * 2.5 * ((3.0 - 1.0) * ns(39) * 3 + 1.0 * 1000 * TCK),
                           1e-6);
}

static void test_energy_vdd_scaling(void) {
    dram_counts c = {.act = 5, .pre = 4, .rd = 100, .ref = 2, .cycles = 5000,
                     .cycles_active = 3000, .rank_cycles = 5000};
    dram_energy nom = energy(&c, 1.2, 1), low = energy(&c, 1.1, 1), half = energy(&c, 1.1, 0.5);
    double sq = (1.1 / 1.2) * (1.1 / 1.2), e15 = pow(1.1 / 1.2, 1.5);
    double parts_nom[] = {nom.act, nom.pre, nom.rd, nom.ref, nom.background};
    double parts_low[] = {low.act, low.pre, low.rd, low.ref, low.background};
    double parts_half[] = {half.act, half.pre, half.rd, half.ref, half.background};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT(parts_nom[i] > 0);
        CU_ASSERT_DOUBLE_EQUAL(parts_low[i] / parts_nom[i], sq, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(parts_half[i] / parts_nom[i], e15, 1e-12);
    }
    /* 1.2 -> 1.1 V is -16.0 % with the VDD^2 law (facts 3.5) */
    CU_ASSERT(fabs((1 - sq) * 100 - 16.0) < 0.05);
    /* VPP is not scaled */
    CU_ASSERT(nom.vpp > 0);
    CU_ASSERT_DOUBLE_EQUAL(low.vpp, nom.vpp, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(half.vpp, nom.vpp, 1e-9);
}

/* ---- rounding and timing ---------------------------------------------------- */

static void test_ns_to_cycles(void) {
    CU_ASSERT_EQUAL(dram_ns_to_cycles(ns(17), TCK), 17);   /* not 18 by float noise */
    CU_ASSERT_EQUAL(dram_ns_to_cycles(ns(420), TCK), 420);
    CU_ASSERT_EQUAL(dram_ns_to_cycles(14.0, TCK), 17);     /* 16.8 up */
    CU_ASSERT_EQUAL(dram_ns_to_cycles(14.2, TCK), 18);     /* 17.05 up */
    CU_ASSERT_EQUAL(dram_ns_to_cycles(10.0, TCK), 13);     /* 12.005 up */
    CU_ASSERT_EQUAL(dram_ns_to_cycles(350.0, TCK), 421);   /* 420.17 up */
}

/* n bursts of one row: one ACT, then row hits. The column commands are
 * tCCD_L apart (same bank group), the data follows CL later. */
static void test_one_row_stream(void) {
    geometry g;
    geometry_default(&g);
    enum { N = 64 };
    dram_request r[N];
    for (int i = 0; i < N; i++) r[i] = rq(&g, 1, 2, 77, (uint32_t)(8 * i), 0);
    dram_timing t = ddr4();
    dram_counts c = run(&t, &g, r, N, 32);
    check_consistent(&c, N);
    CU_ASSERT_EQUAL(c.act, 1);
    CU_ASSERT_EQUAL(c.pre, 0);                /* open page: no closing PRE */
    CU_ASSERT_EQUAL(c.row_misses, 1);
    CU_ASSERT_EQUAL(c.row_hits, N - 1);
    CU_ASSERT_EQUAL(c.ref, 0);
    /* ACT 0, RD at tRCD, then every tCCD_L; last data beat CL + BL/2 later */
    CU_ASSERT_EQUAL(c.cycles, RCD + CL + (N - 1) * CCD_L + BURST);   /* 416 */
    CU_ASSERT_EQUAL(c.cycles_active, c.cycles);  /* the bank is open from cycle 0 */
    CU_ASSERT_EQUAL(c.rank_cycles, c.cycles);

    /* with tCCD_L = BL/2 the data bus is the limit: tRCD + CL + n BL/2 */
    t.tccd_l = t.tccd_s = ns(BURST);
    c = run(&t, &g, r, N, 32);
    CU_ASSERT_EQUAL(c.cycles, RCD + CL + N * BURST);                /* 290 */

    /* ns are rounded up to cycles: tRCD 14.2 ns is 18 cycles */
    t.trcd = 14.2;
    c = run(&t, &g, r, N, 32);
    CU_ASSERT_EQUAL(c.cycles, 18 + CL + N * BURST);
}

/* Two rows of one bank: the second needs PRE (after tRAS and tRTP) and ACT
 * (after tRP and tRC). */
static void test_same_bank_two_rows(void) {
    geometry g;
    geometry_default(&g);
    dram_request r[2] = {rq(&g, 0, 0, 5, 0, 0), rq(&g, 0, 0, 6, 0, 0)};
    dram_timing t = ddr4();
    dram_counts c = run(&t, &g, r, 2, 32);
    check_consistent(&c, 2);
    CU_ASSERT_EQUAL(c.act, 2);
    CU_ASSERT_EQUAL(c.pre, 1);
    CU_ASSERT_EQUAL(c.row_misses, 1);
    CU_ASSERT_EQUAL(c.row_conflicts, 1);
    /* ACT 0, RD 17, PRE max(tRAS 39, 17 + tRTP 9) = 39, ACT max(39 + tRP, tRC)
     * = 56, RD 73, data to 73 + 17 + 4 = 94 */
    CU_ASSERT_EQUAL(c.cycles, RC + RCD + CL + BURST);
    CU_ASSERT_EQUAL(c.cycles, 94);

    t.trc = ns(70);  /* tRC binds: ACT at 70 */
    CU_ASSERT_EQUAL(run(&t, &g, r, 2, 32).cycles, 70 + RCD + CL + BURST);
    t = ddr4();
    t.trtp = ns(30);  /* tRTP binds: PRE at 17 + 30 = 47, ACT 64 */
    CU_ASSERT_EQUAL(run(&t, &g, r, 2, 32).cycles, RCD + 30 + RP + RCD + CL + BURST);
    t = ddr4();
    t.trp = ns(20);   /* tRP: PRE at 39, ACT at 59 (tRC = 59 too) */
    t.trc = ns(RAS + 20);
    CU_ASSERT_EQUAL(run(&t, &g, r, 2, 32).cycles, RAS + 20 + RCD + CL + BURST);
}

/* Five ACTs to different banks at once: tRRD_S apart, the fifth waits for
 * the four-ACT window. */
static void test_faw_spreads_acts(void) {
    geometry g;
    geometry_default(&g);
    dram_request r[5] = {rq(&g, 0, 0, 1, 0, 0), rq(&g, 1, 0, 1, 0, 0), rq(&g, 2, 0, 1, 0, 0),
                         rq(&g, 3, 0, 1, 0, 0), rq(&g, 0, 1, 1, 0, 0)};
    dram_timing t = ddr4();
    dram_counts c = run(&t, &g, r, 5, 32);
    check_consistent(&c, 5);
    CU_ASSERT_EQUAL(c.act, 5);
    /* ACTs 0, 4, 8, 12, then max(12 + tRRD_S, 0 + tFAW) = 26; its RD at 43
     * (the data bus is free from 50 - CL = 33) */
    CU_ASSERT_EQUAL(c.cycles, FAW + RCD + CL + BURST);   /* 64 */

    t.tfaw = ns(4);  /* no window: the fifth ACT at 16, RD 33, after the 4th data */
    CU_ASSERT_EQUAL(run(&t, &g, r, 5, 32).cycles, 3 * RRD_S + RCD + CL + 2 * BURST);   /* 54 */

    t = ddr4();
    t.trrd_s = t.trrd_l = ns(8);  /* tRRD binds over tFAW: ACTs 0, 8, 16, 24, 32 */
    CU_ASSERT_EQUAL(run(&t, &g, r, 5, 32).cycles, 32 + RCD + CL + BURST);   /* 70 */
}

/* A queued row hit goes before an older request that needs another row. */
static void test_frfcfs_hit_first(void) {
    geometry g;
    geometry_default(&g);
    dram_request r[3] = {rq(&g, 2, 1, 10, 0, 0), rq(&g, 2, 1, 11, 0, 0),
                         rq(&g, 2, 1, 10, 8, 0)};
    dram_timing t = ddr4();
    dram_counts fr = run(&t, &g, r, 3, 32);
    check_consistent(&fr, 3);
    CU_ASSERT_EQUAL(fr.row_hits, 1);       /* row 10, row 10, then row 11 */
    CU_ASSERT_EQUAL(fr.row_conflicts, 1);
    CU_ASSERT_EQUAL(fr.act, 2);
    CU_ASSERT_EQUAL(fr.pre, 1);
    /* ACT 0, RD 17, RD 23 (tCCD_L), PRE max(39, 23 + 9), ACT 56, RD 73 */
    CU_ASSERT_EQUAL(fr.cycles, RC + RCD + CL + BURST);

    dram_counts fcfs = run(&t, &g, r, 3, 1);  /* a queue of one is FCFS */
    check_consistent(&fcfs, 3);
    CU_ASSERT_EQUAL(fcfs.row_hits, 0);
    CU_ASSERT_EQUAL(fcfs.row_conflicts, 2);
    CU_ASSERT_EQUAL(fcfs.act, 3);
    CU_ASSERT_EQUAL(fcfs.pre, 2);
    CU_ASSERT_EQUAL(fcfs.cycles, 2 * RC + RCD + CL + BURST);
}

/* Writes: tWTR_L/S from the end of the write data to a read, tWR to PRE. */
static void test_write_recovery(void) {
    geometry g;
    geometry_default(&g);
    dram_timing t = ddr4();
    /* WR at 17, data 33..37; RD same bank group at 37 + tWTR_L */
    dram_request same[2] = {rq(&g, 0, 0, 3, 0, 1), rq(&g, 0, 0, 3, 8, 0)};
    dram_counts c = run(&t, &g, same, 2, 32);
    check_consistent(&c, 2);
    CU_ASSERT_EQUAL(c.wr, 1);
    CU_ASSERT_EQUAL(c.cycles, RCD + CWL + BURST + WTR_L + CL + BURST);   /* 67 */
    /* other bank group (ACT at 4): 37 + tWTR_S = 40 */
    dram_request other[2] = {rq(&g, 0, 0, 3, 0, 1), rq(&g, 1, 0, 3, 0, 0)};
    CU_ASSERT_EQUAL(run(&t, &g, other, 2, 32).cycles,
                    RCD + CWL + BURST + WTR_S + CL + BURST);              /* 61 */
    /* another row of the written bank: PRE at 37 + tWR = 55, ACT 72, RD 89 */
    dram_request conflict[2] = {rq(&g, 0, 0, 3, 0, 1), rq(&g, 0, 0, 4, 0, 0)};
    CU_ASSERT_EQUAL(run(&t, &g, conflict, 2, 32).cycles,
                    RCD + CWL + BURST + WR + RP + RCD + CL + BURST);      /* 110 */
}

/* tRCD matters where every request waits for its row: a queue of one,
 * each request a new row of the next of 16 banks. The first 16 are misses
 * (ACT when the previous RD issued, RD tRCD later); the rest conflicts (PRE,
 * tRP, ACT, tRCD, RD). */
static void test_trcd_reduction(void) {
    geometry g;
    geometry_default(&g);
    enum { N = 64 };
    dram_request r[N];
    for (uint32_t k = 0; k < N; k++) r[k] = rq(&g, k % 4, (k / 4) % 4, k, 0, 0);
    dram_timing nominal = ddr4(), fast;
    dram_timing_at(&nominal, 10.0, nominal.trp, nominal.tras, 64, &fast);
    CU_ASSERT_EQUAL(dram_ns_to_cycles(fast.trcd, TCK), 13);
    dram_counts slow_c = run(&nominal, &g, r, N, 1);
    dram_counts fast_c = run(&fast, &g, r, N, 1);
    check_consistent(&slow_c, N);
    CU_ASSERT_EQUAL(slow_c.row_misses, 16);
    CU_ASSERT_EQUAL(slow_c.row_conflicts, N - 16);
    CU_ASSERT_EQUAL(slow_c.cycles, 16 * RCD + (N - 16) * (RP + RCD) + CL + BURST);   /* 1925 */
    CU_ASSERT_EQUAL(fast_c.cycles, 16 * 13 + (N - 16) * (RP + 13) + CL + BURST);     /* 1669 */
    /* with a deep queue the ACTs overlap, but a shorter tRCD still helps */
    CU_ASSERT(run(&fast, &g, r, N, 32).cycles < run(&nominal, &g, r, N, 32).cycles);
}

/* A long stream of one burst: refreshes at every multiple of tREFI, each
 * closing the open row (a PRE, then a miss and an ACT after tRFC). */
static void test_refresh(void) {
    geometry g;
    geometry_default(&g);
    enum { N = 6000 };
    dram_request *r = malloc(N * sizeof *r);
    for (int i = 0; i < N; i++) r[i] = rq(&g, 3, 3, 1234, 16, 0);
    dram_timing t = ddr4();
    dram_counts c = run(&t, &g, r, N, 32);
    check_consistent(&c, N);
    CU_ASSERT(c.ref >= 3);
    CU_ASSERT_EQUAL(c.ref, c.cycles / REFI);
    CU_ASSERT_EQUAL(c.pre, c.ref);
    CU_ASSERT_EQUAL(c.act, 1 + c.ref);
    CU_ASSERT_EQUAL(c.row_misses, 1 + c.ref);
    CU_ASSERT_EQUAL(c.row_hits, N - 1 - c.ref);
    /* each refresh costs tRFC plus the PRE/ACT around it */
    dram_timing never = t;
    never.trefi = 1e9;
    dram_counts base = run(&never, &g, r, N, 32);
    CU_ASSERT_EQUAL(base.ref, 0);
    CU_ASSERT_EQUAL(base.cycles, RCD + CL + (N - 1) * CCD_L + BURST);
    uint64_t extra = c.cycles - base.cycles;
    CU_ASSERT(extra >= c.ref * (uint64_t)(RFC + RP + RCD));
    CU_ASSERT(extra <= c.ref * (uint64_t)(RFC + RAS + RP + RCD + CL));
    /* the rank is precharged from each PRE until the ACT after tRFC */
    CU_ASSERT(c.cycles - c.cycles_active >= c.ref * (uint64_t)(RP + RFC));

    /* two ranks: both refresh, the idle one never counts as active */
    geometry g2;
    geometry_default(&g2);
    g2.count[GEO_RA] = 2;
    strcpy(g2.mapping, "RoRaBaBgCoCh");
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g2, &err), APX_OK);
    for (int i = 0; i < N; i++) r[i].addr = addr_of(&g2, 0, 0, 3, 3, 1234, 16);
    dram_counts two = run(&t, &g2, r, N, 32);
    CU_ASSERT_EQUAL(two.cycles, c.cycles);
    CU_ASSERT_EQUAL(two.ref, 2 * (c.cycles / REFI));
    CU_ASSERT_EQUAL(two.rank_cycles, 2 * two.cycles);
    CU_ASSERT_EQUAL(two.cycles_active, c.cycles_active);
    free(r);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A random mix of reads and writes over two channels and two ranks: the
 * same counts on every run, and the invariants hold. */
static void test_repeatable(void) {
    geometry g;
    geometry_default(&g);
    g.count[GEO_CH] = 2;
    g.count[GEO_RA] = 2;
    g.count[GEO_RO] = 256;
    strcpy(g.mapping, "RoRaBaBgChCo");
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&g, &err), APX_OK);
    enum { N = 20000 };
    dram_request *r = malloc(N * sizeof *r);
    uint64_t s = 42, bytes = geometry_bytes(&g);
    for (int i = 0; i < N; i++) {
        /* runs of sequential bursts from random places: some locality */
        uint64_t x = splitmix(&s);
        r[i].addr = (i % 8 && i) ? (r[i - 1].addr + 64) % bytes : (x % bytes) & ~63ull;
        r[i].is_write = (x >> 60) == 0;
    }
    dram_timing t = ddr4();
    dram_counts a = run(&t, &g, r, N, 32), b = run(&t, &g, r, N, 32);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof a), 0);
    check_consistent(&a, N);
    CU_ASSERT(a.wr > 0 && a.row_hits > 0 && a.row_conflicts > 0);
    CU_ASSERT_EQUAL(a.ref, 4 * (a.cycles / REFI));
    CU_ASSERT_EQUAL(a.rank_cycles, 4 * a.cycles);
    /* two channels work in parallel: faster than the same stream on one */
    for (int i = 0; i < N; i++) r[i].addr &= ~(uint64_t)(1u << 13);  /* Ch bit -> 0 */
    dram_counts one = run(&t, &g, r, N, 32);
    CU_ASSERT(one.cycles > a.cycles);
    free(r);
}

static void test_run_refuses(void) {
    geometry g;
    geometry_default(&g);
    dram_timing t = ddr4();
    dram_request r[1] = {{.addr = geometry_bytes(&g), .is_write = 0}};
    dram_counts c = {.act = 12345};
    apx_error err = {0};
    CU_ASSERT_EQUAL(dram_timing_run(&t, &g, r, 1, 32, &c, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "outside the memory"));
    CU_ASSERT_EQUAL(c.act, 12345);  /* unchanged */
    r[0].addr = 0;
    CU_ASSERT_EQUAL(dram_timing_run(&t, &g, r, 1, 0, &c, &err), APX_EINPUT);
    CU_ASSERT_EQUAL(dram_timing_run(&t, &g, r, DRAM_TIMING_MAX_REQUESTS + (size_t)1, 32, &c,
                                    &err),
                    APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at most"));
    t.trefi = ns(RFC) * 1.5;  /* refreshing most of the time */
    CU_ASSERT_EQUAL(dram_timing_run(&t, &g, r, 1, 32, &c, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "twice trfc"));
    t = ddr4();
    t.trcd = NAN;
    CU_ASSERT_EQUAL(dram_timing_run(&t, &g, r, 1, 32, &c, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trcd"));
    CU_ASSERT_EQUAL(c.act, 12345);
}

/* ---- YAML readers ------------------------------------------------------------ */

/* The key lines of a valid timing mapping (line i + 2 of the document). */
static const char *const timing_lines[] = {
    "  tck: 0.833",   "  cl: 14.161",   "  cwl: 13.328",  "  trcd: 14.161", "  trp: 14.161",
    "  tras: 32.487", "  trc: 46.648",  "  tccd_s: 3.332", "  tccd_l: 4.998", "  trrd_s: 3.332",
    "  trrd_l: 4.998", "  tfaw: 21.658", "  trtp: 7.497",  "  twr: 14.994",  "  twtr_s: 2.499",
    "  twtr_l: 7.497", "  trfc: 349.86", "  trefi: 7796.88", "  bl: 8",
};
#define N_TIMING_LINES (sizeof timing_lines / sizeof timing_lines[0])

/* A `timing:` document with line `replace` (0-based) replaced by `with`
 * (NULL: dropped). */
static char *timing_doc(int replace, const char *with) {
    char *s = malloc(4096);
    strcpy(s, "timing:\n");
    for (int i = 0; i < (int)N_TIMING_LINES; i++) {
        const char *line = i == replace ? with : timing_lines[i];
        if (!line) continue;
        strcat(s, line);
        strcat(s, "\n");
    }
    return s;
}

static int read_timing(const char *text, dram_timing *t, apx_error *err) {
    memset(err, 0, sizeof *err);
    cfg_doc *doc = cfg_load_string(text, strlen(text), "dram.yaml", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    int rc = dram_timing_from_yaml(cfg_find(cfg_root(doc), "timing"), t, err);
    cfg_free(doc);
    return rc;
}

static int line_of(const char *key) {
    for (int i = 0; i < (int)N_TIMING_LINES; i++)
        if (strncmp(timing_lines[i] + 2, key, strlen(key)) == 0 &&
            timing_lines[i][2 + strlen(key)] == ':')
            return i;
    return -1;
}

/* Reading fails with APX_EINPUT and a message that starts with `where` and
 * contains `what`. */
static void expect_timing_error(int replace, const char *with, const char *where,
                                const char *what) {
    char *text = timing_doc(replace, with);
    dram_timing t = {.tck = -7};
    apx_error err;
    CU_ASSERT_EQUAL(read_timing(text, &t, &err), APX_EINPUT);
    if (strncmp(err.msg, where, strlen(where)) != 0 || !strstr(err.msg, what))
        fprintf(stderr, "\n  got: %s\n  want: %s ... %s\n", err.msg, where, what);
    CU_ASSERT_EQUAL(strncmp(err.msg, where, strlen(where)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what));
    CU_ASSERT_EQUAL(t.tck, -7);  /* unchanged */
    free(text);
}

static void test_timing_yaml(void) {
    char *text = timing_doc(-1, NULL);
    dram_timing t;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(read_timing(text, &t, &err), APX_OK);
    free(text);
    CU_ASSERT_DOUBLE_EQUAL(t.tck, 0.833, 0);
    CU_ASSERT_DOUBLE_EQUAL(t.trc, 46.648, 0);
    CU_ASSERT_DOUBLE_EQUAL(t.trefi, 7796.88, 0);
    CU_ASSERT_EQUAL(t.bl, 8);
    /* the same cycles as the struct the other tests use */
    dram_timing ref = ddr4();
    double got[] = {t.cl, t.cwl, t.trcd, t.trp, t.tras, t.trc, t.tccd_s, t.tccd_l, t.trrd_s,
                    t.trrd_l, t.tfaw, t.trtp, t.twr, t.twtr_s, t.twtr_l, t.trfc, t.trefi};
    double want[] = {ref.cl, ref.cwl, ref.trcd, ref.trp, ref.tras, ref.trc,
                     ref.tccd_s, ref.tccd_l, ref.trrd_s, ref.trrd_l, ref.tfaw, ref.trtp,
                     ref.twr, ref.twtr_s, ref.twtr_l, ref.trfc, ref.trefi};
    for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
        CU_ASSERT_EQUAL(dram_ns_to_cycles(got[i], TCK), dram_ns_to_cycles(want[i], TCK));

    char where[64];
    /* missing key: points at the mapping */
    expect_timing_error(line_of("trfc"), NULL, "dram.yaml:2:3:", "missing required key 'trfc'");
    /* unknown key, with a suggestion */
    int l = line_of("trcd");
    snprintf(where, sizeof where, "dram.yaml:%d:3:", l + 2);
    expect_timing_error(l, "  trcdd: 14.161", where, "did you mean 'trcd'?");
    /* negative */
    l = line_of("trp");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  trp: -1", where, "'trp'");
    /* zero */
    expect_timing_error(l, "  trp: 0", where, "trp = 0 ns must be positive");
    /* inconsistent: tRC < tRAS + tRP */
    l = line_of("trc");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  trc: 40", where, "trc = 40 ns is shorter than tras + trp");
    /* but a printed value short by less than half a clock is accepted */
    text = timing_doc(l, "  trc: 46.5");
    CU_ASSERT_EQUAL(read_timing(text, &t, &err), APX_OK);
    free(text);
    /* same bank group faster than another */
    l = line_of("tccd_l");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  tccd_l: 2", where, "tccd_l = 2 ns is shorter than tccd_s");
    /* refresh interval */
    l = line_of("trefi");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  trefi: 500", where, "at least twice trfc");
    /* burst length */
    l = line_of("bl");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  bl: 6", where, "power of two");
    expect_timing_error(l, "  bl: 8.5", where, "'bl'");
    /* not a number, not finite */
    l = line_of("tck");
    snprintf(where, sizeof where, "dram.yaml:%d:", l + 2);
    expect_timing_error(l, "  tck: fast", where, "'tck'");
    expect_timing_error(l, "  tck: .inf", where, "finite");
    expect_timing_error(l, "  tck: 0", where, "'tck'");
    /* not a mapping */
    text = strdup("timing: [1, 2]\n");
    CU_ASSERT_EQUAL(read_timing(text, &t, &err), APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "dram.yaml:1:"));
    free(text);
}

static const char *const power_text = "power:\n"
                                      "  vdd: 1.2\n"
                                      "  vpp: 2.5\n"
                                      "  idd0: 48\n"
                                      "  idd2n: 34\n"
                                      "  idd3n: 43\n"
                                      "  idd4r: 135\n"
                                      "  idd4w: 123\n"
                                      "  idd5b: 250\n"
                                      "  ipp0: 3.0\n"
                                      "  devices: 8\n";

static int read_power(const char *text, dram_power *p, apx_error *err) {
    memset(err, 0, sizeof *err);
    cfg_doc *doc = cfg_load_string(text, strlen(text), "dram.yaml", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    int rc = dram_power_from_yaml(cfg_find(cfg_root(doc), "power"), p, err);
    cfg_free(doc);
    return rc;
}

/* power_text with `from` replaced by `to`; the read must fail with a
 * message starting with `where` and holding `what`. */
static void expect_power_error(const char *from, const char *to, const char *where,
                               const char *what) {
    char text[1024];
    const char *at = strstr(power_text, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - power_text), power_text, to,
             at + strlen(from));
    dram_power p = {.vdd = -7};
    apx_error err;
    CU_ASSERT_EQUAL(read_power(text, &p, &err), APX_EINPUT);
    if (strncmp(err.msg, where, strlen(where)) != 0 || !strstr(err.msg, what))
        fprintf(stderr, "\n  got: %s\n  want: %s ... %s\n", err.msg, where, what);
    CU_ASSERT_EQUAL(strncmp(err.msg, where, strlen(where)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what));
    CU_ASSERT_DOUBLE_EQUAL(p.vdd, -7, 0);
}

static void test_power_yaml(void) {
    dram_power p;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(read_power(power_text, &p, &err), APX_OK);
    dram_power w = ddr4_power();
    double got[] = {p.vdd, p.vpp, p.idd0, p.idd2n, p.idd3n, p.idd4r, p.idd4w, p.idd5b,
                    p.ipp0, p.ipp3n, p.current_exponent};
    double want[] = {w.vdd, w.vpp, w.idd0, w.idd2n, w.idd3n, w.idd4r, w.idd4w, w.idd5b,
                     w.ipp0, w.ipp3n, w.current_exponent};  /* defaults: ipp3n 0, exponent 1 */
    for (size_t i = 0; i < sizeof got / sizeof got[0]; i++)
        CU_ASSERT_DOUBLE_EQUAL(got[i], want[i], 0);
    CU_ASSERT_EQUAL(p.devices, 8);

    expect_power_error("  devices: 8\n", "", "dram.yaml:2:3:", "missing required key 'devices'");
    expect_power_error("  idd5b:", "  idd5ab:", "dram.yaml:9:3:", "did you mean 'idd5b'?");
    expect_power_error("  idd2n: 34", "  idd2n: -34", "dram.yaml:5:", "'idd2n'");
    expect_power_error("  idd0: 48", "  idd0: 40", "dram.yaml:4:", "idd0 = 40 mA must exceed idd3n");
    expect_power_error("  idd3n: 43", "  idd3n: 30", "dram.yaml:6:", "below idd2n");
    expect_power_error("  vpp: 2.5\n", "", "dram.yaml:9:", "ipp0 is given but vpp is not");
    expect_power_error("  ipp0: 3.0\n", "", "dram.yaml:3:", "vpp is given but ipp0 is not");
    expect_power_error("  ipp0: 3.0\n", "  ipp0: 3.0\n  ipp3n: 4\n", "dram.yaml:11:",
                       "ipp3n = 4 mA exceeds ipp0");
    expect_power_error("  devices: 8", "  devices: 0", "dram.yaml:11:", "'devices'");
    expect_power_error("  devices: 8", "  devices: 8\n  current_exponent: 9", "dram.yaml:12:",
                       "'current_exponent'");
}

/* ---- the cost op ------------------------------------------------------------- */

static int cost(const device_region *r, size_t n, uint32_t batch, device_cost *out,
                apx_error *err) {
    dram_power p = ddr4_power();
    dram_timing t = ddr4();
    return dram_cost_of(&p, &t, 1.2, t.trcd, t.trp, t.tras, 64, r, n, batch, out, err);
}

static double item(const device_cost *c, const char *name) {
    for (int i = 0; i < c->n_items; i++)
        if (strcmp(c->item[i].name, name) == 0) return c->item[i].value;
    CU_FAIL("missing cost item");
    return NAN;
}

static void test_cost_small_region(void) {
    geometry g;
    geometry_default(&g);
    /* 10 rows of 1000 bits in 128-byte rows from an odd address: bytes
     * [4136, 5416) touch bursts 64 .. 84 = 21 bursts. The second region
     * starts in burst 84 and ends there (read once); the third is 3 rows
     * of 64 bytes in another bank: bursts at 1 MiB / 64 .. +2. */
    device_region r[3] = {
        {.id = 0, .rows = 10, .cols = 1000, .base_addr = 4136, .row_stride = 128, .geo = &g},
        {.id = 1, .rows = 2, .cols = 64, .base_addr = 5416, .row_stride = 8, .geo = &g},
        {.id = 2, .rows = 3, .cols = 512, .base_addr = 1 << 20, .row_stride = 64, .geo = &g},
    };
    device_cost one, two;
    apx_error err = {0};
    CU_ASSERT_EQUAL_FATAL(cost(r, 3, 1, &one, &err), APX_OK);
    CU_ASSERT_EQUAL_FATAL(cost(r, 3, 2, &two, &err), APX_OK);
    CU_ASSERT_EQUAL(one.n_items, 14);
    CU_ASSERT_DOUBLE_EQUAL(item(&one, "rd"), 21 + 3, 0);
    double act = item(&one, "act"), hits = item(&one, "row_hits");
    double misses = item(&one, "row_misses"), conflicts = item(&one, "row_conflicts");
    CU_ASSERT_DOUBLE_EQUAL(act, misses + conflicts, 0);
    CU_ASSERT_DOUBLE_EQUAL(hits + misses + conflicts, 24, 0);
    /* 4136 .. 5431 lies in row 0 of bank group 0, bank 0 (8 KiB per bank
     * row); 1 MiB is row 8 of the same bank: one miss, one conflict */
    CU_ASSERT_DOUBLE_EQUAL(misses, 1, 0);
    CU_ASSERT_DOUBLE_EQUAL(conflicts, 1, 0);
    CU_ASSERT_DOUBLE_EQUAL(item(&one, "pre"), 1, 0);
    CU_ASSERT_DOUBLE_EQUAL(item(&one, "ref"), 0, 0);
    /* RD energy: 24 x 8 devices x 1.2 (135 - 43) 4 x 0.833 */
    CU_ASSERT_DOUBLE_EQUAL(item(&one, "energy_rd_pj"), 24 * 8 * 1.2 * 92 * ns(4), 1e-6);
    double sum = 0;
    const char *parts[] = {"energy_act_pj", "energy_pre_pj", "energy_rd_pj", "energy_ref_pj",
                           "energy_background_pj", "energy_vpp_pj"};
    for (int i = 0; i < 6; i++) sum += item(&one, parts[i]);
    CU_ASSERT_DOUBLE_EQUAL(sum, one.energy_pj, 1e-9 * one.energy_pj);
    CU_ASSERT_DOUBLE_EQUAL(one.latency_ns, item(&one, "cycles") * TCK, 1e-9);
    /* a batch shares the stream: every per-inference number halves */
    CU_ASSERT_DOUBLE_EQUAL(two.energy_pj, one.energy_pj / 2, 1e-12 * one.energy_pj);
    CU_ASSERT_DOUBLE_EQUAL(two.latency_ns, one.latency_ns / 2, 1e-12);
    for (int i = 0; i < one.n_items; i++) {
        CU_ASSERT_STRING_EQUAL(two.item[i].name, one.item[i].name);
        CU_ASSERT_DOUBLE_EQUAL(two.item[i].value, one.item[i].value / 2,
                               1e-12 * (1 + one.item[i].value));
    }
    /* a lower VDD costs less energy and the same time */
    dram_power p = ddr4_power();
    dram_timing t = ddr4();
    device_cost low;
    CU_ASSERT_EQUAL_FATAL(
        dram_cost_of(&p, &t, 1.1, t.trcd, t.trp, t.tras, 64, r, 3, 1, &low, &err), APX_OK);
    CU_ASSERT(low.energy_pj < one.energy_pj);
    CU_ASSERT_DOUBLE_EQUAL(low.latency_ns, one.latency_ns, 0);
    /* no regions: nothing to read */
    device_cost none;
    CU_ASSERT_EQUAL(cost(NULL, 0, 1, &none, &err), APX_OK);
    CU_ASSERT_DOUBLE_EQUAL(none.energy_pj, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(item(&none, "rd"), 0, 0);
}

static void expect_cost_error(const device_region *r, size_t n, uint32_t batch,
                              const char *what) {
    device_cost out = {.energy_pj = -7};
    apx_error err = {0};
    CU_ASSERT_EQUAL(cost(r, n, batch, &out, &err), APX_EINPUT);
    if (!strstr(err.msg, what)) fprintf(stderr, "\n  got: %s\n  want: %s\n", err.msg, what);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, what));
    CU_ASSERT_DOUBLE_EQUAL(out.energy_pj, -7, 0);
    CU_ASSERT_EQUAL(out.n_items, 0);
}

static void test_cost_refuses(void) {
    geometry g;
    geometry_default(&g);
    uint64_t bytes = geometry_bytes(&g);
    device_region r = {.id = 4, .rows = 10, .cols = 1000, .base_addr = 0, .row_stride = 128,
                       .geo = &g};
    expect_cost_error(&r, 1, 0, "batch");
    device_region bad = r;
    bad.base_addr = bytes - 1000;
    expect_cost_error(&bad, 1, 1, "do not fit in the memory");
    bad = r;
    bad.rows = UINT64_MAX / 64;  /* rows x stride overflows */
    expect_cost_error(&bad, 1, 1, "do not fit in the memory");
    bad = r;
    bad.row_stride = 64;
    expect_cost_error(&bad, 1, 1, "row stride 64 bytes is shorter than a row of 1000 bits");
    bad = r;
    bad.rows = DRAM_TIMING_MAX_REQUESTS / 2 + 1;  /* 2 bursts a row: 2 over the cap */
    expect_cost_error(&bad, 1, 1, "at most");
    bad = r;
    bad.geo = NULL;
    expect_cost_error(&bad, 1, 1, "no geometry");
    /* two regions in different memories */
    geometry other = g;
    other.count[GEO_RO] = 1024;
    apx_error err;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&other, &err), APX_OK);
    device_region two[2] = {r, r};
    two[1].geo = &other;
    expect_cost_error(two, 2, 1, "another geometry");
    /* a mapping that splits a burst across channels */
    geometry split = g;
    split.count[GEO_CH] = 2;
    CU_ASSERT_EQUAL_FATAL(geometry_init(&split, &err), APX_OK);
    bad = r;
    bad.geo = &split;
    expect_cost_error(&bad, 1, 1, "RoBaBgChCo");
    /* an operating point the controller refuses: trefw 1 ms -> tREFI 122 ns */
    dram_power p = ddr4_power();
    dram_timing t = ddr4();
    device_cost out = {.energy_pj = -7};
    CU_ASSERT_EQUAL(dram_cost_of(&p, &t, 1.2, t.trcd, t.trp, t.tras, 1, &r, 1, 1, &out, &err),
                    APX_EINPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trefw 1 ms"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "trefi"));
    CU_ASSERT_EQUAL(dram_cost_of(&p, &t, -1, t.trcd, t.trp, t.tras, 64, &r, 1, 1, &out, &err),
                    APX_EINPUT);
    CU_ASSERT_EQUAL(dram_cost_of(&p, &t, 1.2, -3, t.trp, t.tras, 64, &r, 1, 1, &out, &err),
                    APX_EINPUT);
    CU_ASSERT_DOUBLE_EQUAL(out.energy_pj, -7, 0);
}

void add_dram_timing_suite(void) {
    TEST_SUITE("dram_timing",
               {"energy of known commands by hand", test_energy_hand_computation},
               {"energy scales with VDD^(1+exponent), VPP not", test_energy_vdd_scaling},
               {"ns to cycles rounds up", test_ns_to_cycles},
               {"one row: one ACT, then tCCD-spaced hits", test_one_row_stream},
               {"two rows of a bank: tRAS, tRTP, tRP, tRC", test_same_bank_two_rows},
               {"five ACTs: tRRD and tFAW", test_faw_spreads_acts},
               {"FR-FCFS serves a queued hit first", test_frfcfs_hit_first},
               {"writes: tWTR_L/S and tWR", test_write_recovery},
               {"a shorter tRCD shortens a miss-heavy trace", test_trcd_reduction},
               {"refresh every tREFI with its PREs and tRFC", test_refresh},
               {"repeatable, consistent, channels in parallel", test_repeatable},
               {"run refuses bad input and changes nothing", test_run_refuses},
               {"timing YAML: values and positioned errors", test_timing_yaml},
               {"power YAML: values and positioned errors", test_power_yaml},
               {"cost of small regions", test_cost_small_region},
               {"cost refuses bad regions and points", test_cost_refuses});
}
