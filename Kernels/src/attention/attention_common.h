// Geometry shared by the fused and unfused attention kernels: masks as key
// ranges, ALiBi, tiles.
#ifndef KL_ATTENTION_COMMON_H
#define KL_ATTENTION_COMMON_H
#include "../core/internal.h"

typedef struct {
    int B, H, Lq, Lk, d;
    int causal;
    int off;                // query i sits at key position i' = i + off, off = Lk - Lq
    float scale;
    const float *slopes;    // (H) or NULL
    const int32_t *windows; // (H) or NULL
} kl_attn_geom;

void kl_attn_geom_init(const kl_attn_params *p, kl_attn_geom *g);
/// The call's tiles: p->tiles where given (zero fields: the defaults).
void kl_attn_tiles_for(const kl_attn_params *p, int *q_block, int *kv_block);

/// Keys visible to query i of head h form one contiguous range [*lo, *hi)
/// (causal and window masks only cut a prefix and a suffix). Empty: lo >= hi.
static inline void kl_attn_range(const kl_attn_geom *g, int h, int i, int *lo, int *hi) {
    long ip = (long)i + g->off;
    long l = 0, u = g->Lk;
    if (g->causal && ip + 1 < u) u = ip + 1;
    int w = g->windows ? g->windows[h] : 0;
    if (w > 0) {
        if (ip + 1 < u) u = ip + 1;
        if (ip - w + 1 > l) l = ip - w + 1;
    }
    if (u < l) u = l;
    *lo = (int)l;
    *hi = (int)u;
}

/// The same range relative to the key tile [j0, j0 + nc), clipped to it.
static inline void kl_attn_tile_range(const kl_attn_geom *g, int h, int i, int j0, int nc, int *lo, int *hi) {
    kl_attn_range(g, h, i, lo, hi);
    *lo = *lo - j0 > 0 ? *lo - j0 : 0;
    *hi = *hi - j0 < nc ? *hi - j0 : nc;
}

static inline float kl_attn_slope(const kl_attn_geom *g, int h) { return g->slopes ? g->slopes[h] : 0.0f; }

#endif
