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
    kl_attn_strides sq, sk, sv, so;  // the layout, defaults filled in (dq, dk, dv, dout: as q, k, v, o)
    int accumulate;
} kl_attn_geom;

kl_status kl_attn_check_layout(const kl_attn_params *p);
/// kv_rows: the rows per head of k and v in their packed default (Lk; a
/// decoding cache's capacity).
void kl_attn_geom_init_rows(const kl_attn_params *p, long kv_rows, kl_attn_geom *g);
static inline void kl_attn_geom_init(const kl_attn_params *p, kl_attn_geom *g) { kl_attn_geom_init_rows(p, p->kv_len, g); }

/// Offset, in floats, of head bh = b H + h of a tensor with strides s.
static inline long kl_attn_head(const kl_attn_strides *s, int bh, int H) {
    return (long)(bh / H) * s->batch + (long)(bh % H) * s->head;
}

/// Whether two (B, H, L, d) views, a with La rows and b with Lb, may share
/// memory. Exact for views on one row grid (same row stride, batch strides
/// multiples of it, each view's heads within a row): the q, k, v columns of a
/// fused projection are disjoint. Otherwise compares address ranges.
int kl_attn_views_overlap(const float *a, const kl_attn_strides *sa, long La, const float *b,
                          const kl_attn_strides *sb, long Lb, int B, int H, int d);
/// Overlap of a view with a packed array of n floats.
int kl_attn_view_overlaps_array(const float *a, const kl_attn_strides *sa, long La, int B, int H, int d,
                                const void *b, size_t bbytes);
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
