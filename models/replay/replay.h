/* replay.h - what a replay device holds, for tests and benchmarks.
 *
 * The device itself is used through models/device.h like any other (sim/
 * never includes this header). replay.c explains how it keeps memory
 * bounded: create reads each map once to check and hash it and keeps no
 * faults; prepare reads each map again and keeps only the faults that lie
 * on the used bits of the regions it is given. */
#ifndef APX_REPLAY_H
#define APX_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "../device.h"

typedef struct replay_stats {
    size_t maps;               /* chips: map c is chip c */
    uint64_t faults_in_maps;   /* every fault of every map, as the files hold them */
    int prepared;              /* prepare has succeeded at least once */
    size_t regions;            /* distinct non-empty regions of the last prepare */
    uint64_t faults_kept;      /* faults held in memory: those on the regions' used bits */
    uint64_t windows_kept;     /* time windows held (window 0, permanent, included) */
} replay_stats;

/* Fills st for a replay device; APX_EINPUT if d is another kind of device. */
int replay_device_stats(const device *d, replay_stats *st, apx_error *err);

#endif
