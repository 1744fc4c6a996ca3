// Shared pieces of the fused and unfused selective scans.
#ifndef KL_SCAN_COMMON_H
#define KL_SCAN_COMMON_H
#include "../core/internal.h"

/// The call's tiles (p->tiles, zero fields: the defaults): time steps per
/// chunk, channels per backward work item.
void kl_scan_tiles_for(const kl_scan_params *p, int *chunk, int *block_channels);

/// Fixed facts of one call.
typedef struct {
    int B, D, L, N, G, Dg;   // Dg = channels per group
    int softplus;
} kl_scan_geom;

static inline void kl_scan_geom_init(const kl_scan_params *p, kl_scan_geom *g) {
    g->B = p->batch; g->D = p->channels; g->L = p->seq_len; g->N = p->state;
    g->G = p->groups; g->Dg = p->channels / p->groups; g->softplus = p->delta_softplus;
}

/// Per-thread accumulators of the backward: thread 0 accumulates straight into
/// the outputs; the others into workspace partials summed at the end.
typedef struct { float *dA, *dB, *dC, *dD, *ddb; } kl_scan_partials;

size_t kl_scan_partials_bytes(const kl_scan_geom *g);
void kl_scan_partials_carve(const kl_scan_geom *g, char *base, kl_scan_partials *out);
/// Zeroes the accumulators of one thread.
void kl_scan_partials_zero(const kl_scan_geom *g, const kl_scan_partials *pt, int has_dd, int has_ddb);
/// Adds threads 1..T-1 into the outputs (thread 0's partials), split over the pool.
void kl_scan_partials_reduce(const kl_scan_geom *g, kl_scan_partials *all, int threads,
                             int has_dd, int has_ddb, kl_pool *pool);

#endif
