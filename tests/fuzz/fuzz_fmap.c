/* fuzz_fmap.c - libFuzzer harness for the .fmap reader (and inspect, which
 * decodes every cell of every frame into coordinates). Built by run.sh. */
#include <stdint.h>
#include <stdlib.h>

#include "faultmaps/fmap_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fmap_reader *r;
    apx_error err;
    if (fmap_reader_open_mem(&r, data, size, "fuzz.fmap", &err)) return 0;
    static fmap_stats st;
    if (fmap_inspect_reader(r, 16, &st, &err) == APX_OK) {
        /* a map that reads must be consistent with its own totals */
        uint64_t sum = 0;
        for (int k = 0; k < FAULT_KINDS; k++) sum += st.totals.per_kind[k];
        if (sum != st.totals.faults || st.totals.faults > st.cells) abort();
    }
    fmap_reader_close(r);
    return 0;
}
