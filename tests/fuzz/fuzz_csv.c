/* fuzz_csv.c - libFuzzer harness for the CSV importer: parse into a sorter
 * (small runs, so spilling and merging run too) and drain into a .fmap
 * written to memory, which must then read back. Built by run.sh; spill
 * files go to $FUZZ_TMPDIR (default /tmp). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faultmaps/fmap_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char prefix[512];
    if (!prefix[0]) {
        const char *dir = getenv("FUZZ_TMPDIR");
        snprintf(prefix, sizeof prefix, "%s/csv-sort", dir && *dir ? dir : "/tmp");
    }
    geometry g;
    memset(&g, 0, sizeof g);
    uint32_t counts[GEO_FIELDS] = {2, 2, 2, 2, 64, 16};
    memcpy(g.count, counts, sizeof counts);
    g.bus_bits = 16;
    strcpy(g.mapping, "RoRaBgBaCoCh");
    apx_error err;
    if (geometry_init(&g, &err)) abort();
    FILE *in = size ? fmemopen((void *)data, size, "r") : fopen("/dev/null", "r");
    if (!in) return 0;
    fmap_sorter *s;
    if (fmap_sorter_create(&s, &g, prefix, 64, &err)) abort();
    int rc = fmap_csv_read(in, "fuzz.csv", &g, s, &err);
    fclose(in);
    if (rc == APX_OK) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        fmap_provenance p;
        fmap_provenance_recorded(&p, "fuzz");
        fmap_writer *w;
        if (!out || fmap_writer_create_stream(&w, out, "mem.fmap", &g, &p, &err)) abort();
        rc = fmap_sorter_drain(s, w, &err);
        if (rc) fmap_writer_abort(w);
        else if (fmap_writer_commit(w, NULL, &err)) abort();
        fclose(out);
        if (rc == APX_OK) {
            /* what the importer wrote must read back */
            fmap_reader *r;
            if (fmap_reader_open_mem(&r, buf, len, "mem.fmap", &err)) abort();
            const fmap_fault *f;
            size_t n;
            do
                if (fmap_reader_next(r, &f, &n, &err)) abort();
            while (n);
            fmap_reader_close(r);
        }
        free(buf);
    }
    fmap_sorter_free(s);
    return 0;
}
