/* fuzz_diva.c - libFuzzer harness for the DIVA raw-record importer (text
 * records from memory into a sorter). Built by run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "faultmaps/fmap_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char prefix[512];
    if (!prefix[0]) {
        const char *dir = getenv("FUZZ_TMPDIR");
        snprintf(prefix, sizeof prefix, "%s/diva-sort", dir && *dir ? dir : "/tmp");
    }
    geometry g;
    fmap_diva_geometry(&g);
    apx_error err;
    fmap_sorter *s;
    if (fmap_sorter_create(&s, &g, prefix, 0, &err)) abort();
    fmap_diva_stats st;
    if (fmap_diva_read_mem((const char *)data, size, "fuzz.txt", &g, s, &st, &err) == APX_OK &&
        (st.faults != st.sum_n || st.second_rank > st.records))
        abort();
    fmap_sorter_free(s);
    return 0;
}
