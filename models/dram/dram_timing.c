/* dram_timing.c - timing parameters from YAML and the FR-FCFS controller.
 *
 * The controller does not tick. It serves requests one at a time in the
 * order FR-FCFS picks them (a row hit in the queue first, else the oldest)
 * and gives each command of a request the earliest cycle its constraints
 * allow. State is kept as "earliest next" cycles: per bank (next ACT, PRE,
 * column command), per bank group (tRRD_L, tCCD_L, tWTR_L), per rank
 * (tRRD_S, tCCD_S, tWTR_S, the four-ACT window) and per channel (the data
 * bus, the order of column commands). A request's PRE and ACT may go before
 * the column command of the request served just before it (bank
 * parallelism), but not before the request entered the queue, which is when
 * an earlier request's column command freed a slot. ACTs of a rank and
 * column commands of a channel issue in serving order. Refresh: when the
 * channel's last column command reaches a multiple of tREFI, every rank of
 * the channel precharges its open banks and refreshes.
 * docs/dram-timing-energy.md has the details and what is left out. */
#include "dram_timing.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ----------------------------------------------------------- */

/* The times of dram_timing, by YAML key (the key is also the name in
 * messages). */
static const struct {
    const char *key;
    size_t offset;
} time_fields[] = {
    {"tck", offsetof(dram_timing, tck)},       {"cl", offsetof(dram_timing, cl)},
    {"cwl", offsetof(dram_timing, cwl)},       {"trcd", offsetof(dram_timing, trcd)},
    {"trp", offsetof(dram_timing, trp)},       {"tras", offsetof(dram_timing, tras)},
    {"trc", offsetof(dram_timing, trc)},       {"tccd_s", offsetof(dram_timing, tccd_s)},
    {"tccd_l", offsetof(dram_timing, tccd_l)}, {"trrd_s", offsetof(dram_timing, trrd_s)},
    {"trrd_l", offsetof(dram_timing, trrd_l)}, {"tfaw", offsetof(dram_timing, tfaw)},
    {"trtp", offsetof(dram_timing, trtp)},     {"twr", offsetof(dram_timing, twr)},
    {"twtr_s", offsetof(dram_timing, twtr_s)}, {"twtr_l", offsetof(dram_timing, twtr_l)},
    {"trfc", offsetof(dram_timing, trfc)},     {"trefi", offsetof(dram_timing, trefi)},
};
#define N_TIME_FIELDS (sizeof time_fields / sizeof time_fields[0])

#define TCK_MIN_NS 0.1
#define TCK_MAX_NS 1000.0
#define TIME_MAX_NS 1e9

static double field_of(const dram_timing *t, size_t i) {
    return *(const double *)((const char *)t + time_fields[i].offset);
}

static double *field_ptr(dram_timing *t, size_t i) {
    return (double *)((char *)t + time_fields[i].offset);
}

/* The first thing wrong with t, as a message, and the key to blame; NULL if
 * nothing is wrong. One rule set for configs and operating points. */
static const char *timing_problem(const dram_timing *t, char *msg, size_t size) {
    if (!(isfinite(t->tck) && t->tck >= TCK_MIN_NS && t->tck <= TCK_MAX_NS)) {
        snprintf(msg, size, "tck = %g ns must be between %g and %g", t->tck, TCK_MIN_NS,
                 TCK_MAX_NS);
        return "tck";
    }
    for (size_t i = 1; i < N_TIME_FIELDS; i++) {
        double v = field_of(t, i);
        if (!(isfinite(v) && v > 0 && v <= TIME_MAX_NS)) {
            snprintf(msg, size, "%s = %g ns must be positive and at most %g ns",
                     time_fields[i].key, v, TIME_MAX_NS);
            return time_fields[i].key;
        }
    }
    if (t->bl < 2 || t->bl > 32 || (t->bl & (t->bl - 1))) {
        snprintf(msg, size, "bl = %u must be a power of two from 2 to 32", t->bl);
        return "bl";
    }
    if (t->trc < t->tras + t->trp - t->tck / 2) {
        snprintf(msg, size,
                 "trc = %g ns is shorter than tras + trp = %g ns (a row stays open tRAS "
                 "and precharges for tRP before the bank's next ACT)",
                 t->trc, t->tras + t->trp);
        return "trc";
    }
    static const struct { const char *l, *s; size_t lo, so; } pairs[] = {
        {"tccd_l", "tccd_s", offsetof(dram_timing, tccd_l), offsetof(dram_timing, tccd_s)},
        {"trrd_l", "trrd_s", offsetof(dram_timing, trrd_l), offsetof(dram_timing, trrd_s)},
        {"twtr_l", "twtr_s", offsetof(dram_timing, twtr_l), offsetof(dram_timing, twtr_s)},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        double l = *(const double *)((const char *)t + pairs[i].lo);
        double s = *(const double *)((const char *)t + pairs[i].so);
        if (l < s) {
            snprintf(msg, size,
                     "%s = %g ns is shorter than %s = %g ns (the same bank group is "
                     "never faster than another)",
                     pairs[i].l, l, pairs[i].s, s);
            return pairs[i].l;
        }
    }
    if (t->trefi < 2 * t->trfc) {
        snprintf(msg, size, "trefi = %g ns must be at least twice trfc = %g ns", t->trefi,
                 t->trfc);
        return "trefi";
    }
    for (size_t i = 0; i < N_TIME_FIELDS; i++) {
        double v = field_of(t, i);
        if (strcmp(time_fields[i].key, "trefi") != 0 && v >= t->trefi) {
            snprintf(msg, size, "trefi = %g ns must be longer than %s = %g ns", t->trefi,
                     time_fields[i].key, v);
            return "trefi";
        }
    }
    return NULL;
}

int dram_timing_check(const dram_timing *t, apx_error *err) {
    char msg[256];
    if (timing_problem(t, msg, sizeof msg))
        return apx_fail(err, APX_EINPUT, "timing: %s", msg);
    return APX_OK;
}

int dram_timing_from_yaml(const cfg_node *node, dram_timing *t, apx_error *err) {
    static const char *const keys[] = {"tck",    "cl",     "cwl",    "trcd",   "trp",
                                       "tras",   "trc",    "tccd_s", "tccd_l", "trrd_s",
                                       "trrd_l", "tfaw",   "trtp",   "twr",    "twtr_s",
                                       "twtr_l", "trfc",   "trefi",  "bl",     NULL};
    if (cfg_expect_map(node, "timing", keys, err)) return err->code;
    dram_timing v;
    memset(&v, 0, sizeof v);
    for (size_t i = 0; i < N_TIME_FIELDS; i++) {
        double lo = i == 0 ? TCK_MIN_NS : 0, hi = i == 0 ? TCK_MAX_NS : TIME_MAX_NS;
        if (cfg_get_double(node, time_fields[i].key, 1, 0, lo, hi, field_ptr(&v, i), err))
            return err->code;
    }
    long long bl;
    if (cfg_get_int(node, "bl", 1, 0, 2, 32, &bl, err)) return err->code;
    v.bl = (unsigned)bl;
    char msg[256];
    const char *bad = timing_problem(&v, msg, sizeof msg);
    if (bad) return cfg_fail(cfg_find(node, bad), err, "timing: %s", msg);
    *t = v;
    return APX_OK;
}

uint64_t dram_ns_to_cycles(double ns, double tck) {
    double c = ceil(ns / tck - 1e-6);
    return c > 0 ? (uint64_t)c : 0;
}

/* ---- controller state ----------------------------------------------------- */

/* The timing in cycles. */
typedef struct cycles {
    uint64_t cl, cwl, rcd, rp, ras, rc, ccd_s, ccd_l, rrd_s, rrd_l, faw, rtp, wr, wtr_s,
        wtr_l, rfc, refi, burst;
} cycles;

#define ROW_CLOSED UINT32_MAX

/* Every time below is the earliest cycle the next such command may issue. */
typedef struct bank_state {
    uint32_t open_row;          /* ROW_CLOSED when precharged */
    uint64_t next_act, next_pre, next_col;
} bank_state;

typedef struct group_state {    /* one bank group of one rank */
    uint64_t next_act, next_col, next_rd;      /* tRRD_L, tCCD_L, tWTR_L */
} group_state;

typedef struct rank_state {
    uint64_t next_act, next_col, next_rd;      /* tRRD_S, tCCD_S, tWTR_S */
    uint64_t faw[4];            /* ACT times + tFAW of the last four ACTs, oldest at faw_at */
    unsigned faw_at;
    int active;                 /* a bank is open */
    uint64_t active_since, active_cycles;
} rank_state;

typedef struct channel_state {
    uint64_t next_col;          /* column commands issue in serving order */
    uint64_t data_free;         /* first cycle the data bus is free */
    uint64_t clock;             /* cycle of the last column command */
    uint64_t next_ref;          /* the next multiple of tREFI to refresh at */
    uint64_t end;               /* last data beat */
} channel_state;

/* A queued request, decoded. */
typedef struct queued {
    uint32_t bank, group, rank;  /* flat indices into the state arrays */
    uint32_t row;
    int is_write;
    uint64_t enter;              /* cycle the request entered the queue */
} queued;

typedef struct controller {
    cycles cy;
    const geometry *geo;
    uint32_t channels, ranks, groups, banks;  /* ranks per channel, per rank, per group */
    bank_state *bank;
    group_state *group;
    rank_state *rank;
    channel_state *channel;
    dram_counts n;
} controller;

static inline uint64_t max2(uint64_t a, uint64_t b) { return a > b ? a : b; }

static void to_cycles(const dram_timing *t, cycles *c) {
    double k = t->tck;
    *c = (cycles){
        .cl = dram_ns_to_cycles(t->cl, k),         .cwl = dram_ns_to_cycles(t->cwl, k),
        .rcd = dram_ns_to_cycles(t->trcd, k),      .rp = dram_ns_to_cycles(t->trp, k),
        .ras = dram_ns_to_cycles(t->tras, k),      .rc = dram_ns_to_cycles(t->trc, k),
        .ccd_s = dram_ns_to_cycles(t->tccd_s, k),  .ccd_l = dram_ns_to_cycles(t->tccd_l, k),
        .rrd_s = dram_ns_to_cycles(t->trrd_s, k),  .rrd_l = dram_ns_to_cycles(t->trrd_l, k),
        .faw = dram_ns_to_cycles(t->tfaw, k),      .rtp = dram_ns_to_cycles(t->trtp, k),
        .wr = dram_ns_to_cycles(t->twr, k),        .wtr_s = dram_ns_to_cycles(t->twtr_s, k),
        .wtr_l = dram_ns_to_cycles(t->twtr_l, k),  .rfc = dram_ns_to_cycles(t->trfc, k),
        .refi = dram_ns_to_cycles(t->trefi, k),    .burst = t->bl / 2,
    };
}

static int controller_init(controller *c, const dram_timing *t, const geometry *geo,
                           apx_error *err) {
    memset(c, 0, sizeof *c);
    to_cycles(t, &c->cy);
    c->geo = geo;
    c->channels = geo->count[GEO_CH];
    c->ranks = geo->count[GEO_RA];
    c->groups = geo->count[GEO_BG];
    c->banks = geo->count[GEO_BA];
    uint64_t ranks = (uint64_t)c->channels * c->ranks;
    uint64_t groups = ranks * c->groups, banks = groups * c->banks;
    if (banks > DRAM_TIMING_MAX_BANKS)
        return apx_fail(err, APX_EINPUT,
                        "dram timing: the geometry has %llu banks (channels x ranks x bank "
                        "groups x banks); the controller models at most %u",
                        (unsigned long long)banks, DRAM_TIMING_MAX_BANKS);
    c->bank = malloc(banks * sizeof *c->bank);
    c->group = calloc(groups, sizeof *c->group);
    c->rank = calloc(ranks, sizeof *c->rank);
    c->channel = calloc(c->channels, sizeof *c->channel);
    if (!c->bank || !c->group || !c->rank || !c->channel)
        return apx_fail(err, APX_EWORK, "dram timing: out of memory");
    for (uint64_t b = 0; b < banks; b++) c->bank[b] = (bank_state){.open_row = ROW_CLOSED};
    for (uint32_t ch = 0; ch < c->channels; ch++) c->channel[ch].next_ref = c->cy.refi;
    return APX_OK;
}

static void controller_free(controller *c) {
    free(c->bank);
    free(c->group);
    free(c->rank);
    free(c->channel);
}

/* Decodes a request into flat state indices; *channel gets its channel. */
static int decode(const controller *c, const dram_request *r, queued *q, uint32_t *channel,
                  apx_error *err) {
    cell at;
    if (geometry_addr_to_cell(c->geo, r->addr, 0, &at, err))
        return apx_wrap(err, "dram timing: ");
    uint32_t rank = at.f[GEO_CH] * c->ranks + at.f[GEO_RA];
    uint32_t group = rank * c->groups + at.f[GEO_BG];
    *q = (queued){.bank = group * c->banks + at.f[GEO_BA],
                  .group = group,
                  .rank = rank,
                  .row = at.f[GEO_RO],
                  .is_write = r->is_write != 0};
    *channel = at.f[GEO_CH];
    return APX_OK;
}

/* ---- refresh -------------------------------------------------------------- */

/* An all-bank REF of one rank due at `due`: PRE every open bank (counted),
 * then REF once every bank may take a command, then tRFC of blackout. Time
 * with a bank open counts as active up to the last PRE, but never past
 * `limit` (the end of the run, for refreshes after a channel's last
 * request). */
static void refresh_rank(controller *c, uint32_t rank, uint64_t due, uint64_t limit) {
    rank_state *rk = &c->rank[rank];
    bank_state *bank = c->bank + (uint64_t)rank * c->groups * c->banks;
    uint32_t n = c->groups * c->banks;
    uint64_t closed_at = due, ref_at = due;
    for (uint32_t b = 0; b < n; b++) {
        if (bank[b].open_row != ROW_CLOSED) {
            uint64_t pre = max2(due, bank[b].next_pre);
            c->n.pre++;
            closed_at = max2(closed_at, pre);
            ref_at = max2(ref_at, pre + c->cy.rp);
        }
        /* REF waits like an ACT: tRC after the bank's last ACT, tRFC after
         * the last REF */
        ref_at = max2(ref_at, bank[b].next_act);
    }
    if (rk->active) {
        uint64_t until = closed_at < limit ? closed_at : limit;
        if (until > rk->active_since) rk->active_cycles += until - rk->active_since;
        rk->active = 0;
    }
    for (uint32_t b = 0; b < n; b++) {
        bank[b].open_row = ROW_CLOSED;
        bank[b].next_act = max2(bank[b].next_act, ref_at + c->cy.rfc);
    }
    c->n.ref++;
}

/* Every rank of the channel refreshes at each multiple of tREFI up to
 * `upto`. */
static void refresh_upto(controller *c, uint32_t ch, uint64_t upto, uint64_t limit) {
    channel_state *cs = &c->channel[ch];
    while (cs->next_ref <= upto) {
        for (uint32_t r = 0; r < c->ranks; r++)
            refresh_rank(c, ch * c->ranks + r, cs->next_ref, limit);
        cs->next_ref += c->cy.refi;
    }
}

/* ---- serving one request -------------------------------------------------- */

/* Opens q's row at the earliest cycle from `from` on (after the PRE of a
 * conflict, or at the request's entry for a closed bank). */
static void activate(controller *c, const queued *q, uint64_t from) {
    const cycles *cy = &c->cy;
    bank_state *bk = &c->bank[q->bank];
    group_state *gr = &c->group[q->group];
    rank_state *rk = &c->rank[q->rank];
    uint64_t act = max2(max2(from, bk->next_act), max2(rk->next_act, gr->next_act));
    act = max2(act, rk->faw[rk->faw_at]);
    rk->faw[rk->faw_at] = act + cy->faw;
    rk->faw_at = (rk->faw_at + 1) % 4;
    rk->next_act = act + cy->rrd_s;
    gr->next_act = act + cy->rrd_l;
    bk->open_row = q->row;
    bk->next_col = act + cy->rcd;
    bk->next_pre = act + cy->ras;
    bk->next_act = act + cy->rc;
    if (!rk->active) {
        rk->active = 1;
        rk->active_since = act;
    }
    c->n.act++;
}

/* Issues q's column command (after PRE/ACT if needed); returns its cycle,
 * which is when q leaves the queue and the next request may enter. */
static uint64_t serve(controller *c, channel_state *cs, const queued *q) {
    const cycles *cy = &c->cy;
    bank_state *bk = &c->bank[q->bank];
    group_state *gr = &c->group[q->group];
    rank_state *rk = &c->rank[q->rank];

    if (bk->open_row == q->row) {
        c->n.row_hits++;
    } else if (bk->open_row == ROW_CLOSED) {
        c->n.row_misses++;
        activate(c, q, q->enter);
    } else {
        c->n.row_conflicts++;
        uint64_t pre = max2(q->enter, bk->next_pre);
        c->n.pre++;
        activate(c, q, pre + cy->rp);
    }

    uint64_t col = max2(max2(q->enter, bk->next_col), max2(cs->next_col, rk->next_col));
    col = max2(col, gr->next_col);
    uint64_t latency = q->is_write ? cy->cwl : cy->cl;
    if (cs->data_free > latency) col = max2(col, cs->data_free - latency);
    if (!q->is_write) col = max2(col, max2(rk->next_rd, gr->next_rd));
    uint64_t data_end = col + latency + cy->burst;

    cs->next_col = col + 1;
    cs->clock = col;
    cs->data_free = data_end;
    cs->end = max2(cs->end, data_end);
    rk->next_col = col + cy->ccd_s;
    gr->next_col = col + cy->ccd_l;
    if (q->is_write) {
        /* write recovery and write-to-read count from the end of the data */
        bk->next_pre = max2(bk->next_pre, data_end + cy->wr);
        rk->next_rd = max2(rk->next_rd, data_end + cy->wtr_s);
        gr->next_rd = max2(gr->next_rd, data_end + cy->wtr_l);
        c->n.wr++;
    } else {
        bk->next_pre = max2(bk->next_pre, col + cy->rtp);
        c->n.rd++;
    }
    return col;
}

/* FR-FCFS: the oldest queued row hit, else the oldest request. */
static size_t pick(const controller *c, const queued *queue, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (c->bank[queue[i].bank].open_row == queue[i].row) return i;
    return 0;
}

/* ---- the run -------------------------------------------------------------- */

/* The requests of one channel in trace order: a linked list through `next`
 * (NULL when there is one channel: then it is every request, in order). */
typedef struct cursor {
    const uint32_t *next;
    size_t at, n;
} cursor;

static int cursor_more(const cursor *k) { return k->at < k->n; }

static size_t cursor_take(cursor *k) {
    size_t i = k->at;
    k->at = k->next ? k->next[i] : i + 1;
    return i;
}

/* Serves every request of one channel. */
static int run_channel(controller *c, uint32_t ch, const dram_request *req, cursor *k,
                       queued *queue, size_t depth, apx_error *err) {
    channel_state *cs = &c->channel[ch];
    size_t len = 0;
    uint32_t on;
    while (len < depth && cursor_more(k)) {
        if (decode(c, &req[cursor_take(k)], &queue[len], &on, err)) return err->code;
        queue[len++].enter = 0;
    }
    while (len > 0) {
        refresh_upto(c, ch, cs->clock, UINT64_MAX);
        size_t i = pick(c, queue, len);
        uint64_t left = serve(c, cs, &queue[i]);
        memmove(&queue[i], &queue[i + 1], (len - i - 1) * sizeof *queue);
        len--;
        if (cursor_more(k)) {
            if (decode(c, &req[cursor_take(k)], &queue[len], &on, err)) return err->code;
            queue[len++].enter = left;
        }
    }
    return APX_OK;
}

/* Links every request to the next one of its channel; head[ch] is the first
 * (n when the channel has none). */
static int link_channels(const controller *c, const dram_request *req, size_t n,
                         uint32_t *next, size_t *head, apx_error *err) {
    size_t *last = malloc(c->channels * sizeof *last);
    if (!last) return apx_fail(err, APX_EWORK, "dram timing: out of memory");
    for (uint32_t ch = 0; ch < c->channels; ch++) head[ch] = last[ch] = n;
    for (size_t i = 0; i < n; i++) {
        queued q;
        uint32_t ch = 0;
        if (decode(c, &req[i], &q, &ch, err)) {
            free(last);
            return err->code;
        }
        if (last[ch] == n) head[ch] = i;
        else next[last[ch]] = (uint32_t)i;
        last[ch] = i;
        next[i] = (uint32_t)n;
    }
    free(last);
    return APX_OK;
}

static int run_all(controller *c, const dram_request *req, size_t n, size_t depth,
                   apx_error *err) {
    queued *queue = malloc(depth * sizeof *queue);
    uint32_t *next = NULL;
    size_t *head = NULL;
    int rc = APX_OK;
    if (!queue) rc = apx_fail(err, APX_EWORK, "dram timing: out of memory");
    if (!rc && c->channels > 1) {
        next = malloc((n ? n : 1) * sizeof *next);
        head = malloc(c->channels * sizeof *head);
        if (!next || !head) rc = apx_fail(err, APX_EWORK, "dram timing: out of memory");
        else rc = link_channels(c, req, n, next, head, err);
    }
    for (uint32_t ch = 0; ch < c->channels && !rc; ch++) {
        cursor k = {.next = next, .at = next ? head[ch] : 0, .n = n};
        rc = run_channel(c, ch, req, &k, queue, depth, err);
    }
    free(queue);
    free(next);
    free(head);
    return rc;
}

/* After the last request: refreshes up to the end of the run on every
 * channel, and the open time of ranks still active at the end. */
static void finish(controller *c) {
    uint64_t end = 0;
    for (uint32_t ch = 0; ch < c->channels; ch++) end = max2(end, c->channel[ch].end);
    for (uint32_t ch = 0; ch < c->channels; ch++) refresh_upto(c, ch, end, end);
    uint64_t ranks = (uint64_t)c->channels * c->ranks;
    for (uint64_t r = 0; r < ranks; r++) {
        rank_state *rk = &c->rank[r];
        if (rk->active && end > rk->active_since) rk->active_cycles += end - rk->active_since;
        c->n.cycles_active += rk->active_cycles;
    }
    c->n.cycles = end;
    c->n.rank_cycles = end * ranks;
}

int dram_timing_run(const dram_timing *t, const geometry *geo, const dram_request *req,
                    size_t n, unsigned queue_depth, dram_counts *out, apx_error *err) {
    if (dram_timing_check(t, err)) return err->code;
    if (n > DRAM_TIMING_MAX_REQUESTS)
        return apx_fail(err, APX_EINPUT,
                        "dram timing: %zu requests; a run takes at most %u (%u MiB of "
                        "64-byte bursts)",
                        n, DRAM_TIMING_MAX_REQUESTS, DRAM_TIMING_MAX_REQUESTS >> 14);
    if (queue_depth < 1 || queue_depth > DRAM_TIMING_MAX_QUEUE)
        return apx_fail(err, APX_EINPUT, "dram timing: queue depth %u must be from 1 to %u",
                        queue_depth, DRAM_TIMING_MAX_QUEUE);
    controller c;
    int rc = controller_init(&c, t, geo, err);
    if (!rc) rc = run_all(&c, req, n, queue_depth, err);
    if (!rc) {
        finish(&c);
        c.n.time_ns = (double)c.n.cycles * t->tck;
        *out = c.n;
    }
    controller_free(&c);
    return rc;
}
