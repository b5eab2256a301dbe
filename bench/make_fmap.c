/* make_fmap.c - writes a large synthetic .fmap for the replay benchmark
 * (bench/replay_10m.sh builds and runs it).
 *
 *   make_fmap OUT.fmap [FAULTS]      (default 10,000,000)
 *
 * The geometry is geometry_default (one DDR4 8Gb x8 rank, 8 GiB, mapping
 * RoBaBgCoCh). Fault i lies at a pseudo-random cell of the i-th of FAULTS
 * equal slices of the cell space, so cells strictly increase and spread
 * evenly over the whole memory (a BER of FAULTS / 2^36). Kinds cycle through
 * all five; one fault in seven has a finite time window, so the map holds
 * many distinct windows. Deterministic: the same arguments give the same
 * bytes. */
#include <stdio.h>
#include <stdlib.h>

#include "faultmaps/fmap_file.h"
#include "models/geometry.h"

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s OUT.fmap [FAULTS]\n", argv[0]);
        return 2;
    }
    unsigned long long n = argc == 3 ? strtoull(argv[2], NULL, 10) : 10000000ull;
    geometry g;
    geometry_default(&g);
    uint64_t cells = geometry_cells(&g);
    if (n == 0 || n > cells) {
        fprintf(stderr, "FAULTS must be 1 to %llu\n", (unsigned long long)cells);
        return 2;
    }
    uint64_t slice = cells / n, s = 0x9e3779b97f4a7c15ull;
    apx_error err = {0};
    fmap_provenance prov;
    fmap_provenance_recorded(&prov, "bench/make_fmap.c");
    fmap_writer *w;
    if (fmap_writer_create(&w, argv[1], &g, &prov, &err)) goto fail;
    for (uint64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;  /* xorshift64 */
        fmap_fault f = {i * slice + s % slice, 0, FMAP_FOREVER, (uint8_t)(i % FAULT_KINDS)};
        if (i % 7 == 3) {
            f.onset_ns = (i % 1000) * 1000000ull;
            f.until_ns = f.onset_ns + 1000000000ull;
        }
        if (fmap_writer_add(w, &f, &err)) {
            fmap_writer_abort(w);
            goto fail;
        }
    }
    fmap_totals t;
    if (fmap_writer_commit(w, &t, &err)) goto fail;
    printf("%s: %llu faults in %llu frames\n", argv[1], (unsigned long long)t.faults,
           (unsigned long long)t.frames);
    return 0;
fail:
    fprintf(stderr, "make_fmap: %s\n", err.msg);
    return 1;
}
