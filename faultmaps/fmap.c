#include "fmap.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[FAULT_KINDS] = {"flip", "stuck0", "stuck1", "dd0", "dd1"};

const char *fault_kind_name(unsigned kind) { return kind < FAULT_KINDS ? kind_names[kind] : "?"; }

int fault_kind_parse(const char *name) {
    for (int k = 0; k < FAULT_KINDS; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

void fmap_init(fmap *m, uint64_t region_bits) {
    m->region_bits = region_bits;
    m->n = m->cap = 0;
    m->bit = NULL;
    m->kind = NULL;
}

void fmap_free(fmap *m) {
    free(m->bit);
    free(m->kind);
    fmap_init(m, 0);
}

void fmap_reset(fmap *m, uint64_t region_bits) {
    m->region_bits = region_bits;
    m->n = 0;
}

int fmap_push(fmap *m, uint64_t bit, uint8_t kind, apx_error *err) {
    if (bit >= m->region_bits || (m->n && bit <= m->bit[m->n - 1]) || kind >= FAULT_KINDS)
        return apx_fail(err, APX_EWORK,
                        "fault map: bad fault %llu (kind %u) after %zu faults in a region of "
                        "%llu bits",
                        (unsigned long long)bit, kind, m->n,
                        (unsigned long long)m->region_bits);
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        uint64_t *b = realloc(m->bit, cap * sizeof *b);
        if (!b) return apx_fail(err, APX_EWORK, "fault map: out of memory");
        m->bit = b;
        uint8_t *k = realloc(m->kind, cap);
        if (!k) return apx_fail(err, APX_EWORK, "fault map: out of memory");
        m->kind = k;
        m->cap = cap;
    }
    m->bit[m->n] = bit;
    m->kind[m->n] = kind;
    m->n++;
    return APX_OK;
}

int fmap_check(const fmap *m, apx_error *err) {
    for (size_t i = 0; i < m->n; i++) {
        if (m->bit[i] >= m->region_bits)
            return apx_fail(err, APX_EINPUT, "fault %zu: bit %llu outside the region (%llu bits)",
                            i, (unsigned long long)m->bit[i],
                            (unsigned long long)m->region_bits);
        if (i && m->bit[i] <= m->bit[i - 1])
            return apx_fail(err, APX_EINPUT, "fault %zu: bit %llu not after %llu", i,
                            (unsigned long long)m->bit[i], (unsigned long long)m->bit[i - 1]);
        if (m->kind[i] >= FAULT_KINDS)
            return apx_fail(err, APX_EINPUT, "fault %zu: unknown kind %u", i, m->kind[i]);
    }
    return APX_OK;
}

uint64_t fmap_apply(const fmap *m, const fmap_layout *where) {
    uint64_t changed = 0;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t row = m->bit[i] / where->cols, col = m->bit[i] % where->cols;
        uint64_t *w = &where->base[row * where->stride_words + col / 64];
        uint64_t mask = 1ull << (col % 64), before = *w;
        switch (m->kind[i]) {
        case FAULT_FLIP: *w ^= mask; break;
        case FAULT_STUCK0: *w &= ~mask; break;
        case FAULT_STUCK1: *w |= mask; break;
        case FAULT_DD0: if (!(before & mask)) *w |= mask; break;
        case FAULT_DD1: if (before & mask) *w &= ~mask; break;
        }
        changed += *w != before;
    }
    return changed;
}
