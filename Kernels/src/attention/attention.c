// Public attention entry points: argument checks, then fused or unfused.
#include "attention_common.h"

size_t kl_attn_fused_fwd_workspace(const kl_attn_params *p, int threads);
size_t kl_attn_fused_bwd_workspace(const kl_attn_params *p, int threads);
size_t kl_attn_unfused_workspace(const kl_attn_params *p, int backward);
kl_status kl_attn_fused_fwd(const kl_attn_params *, const float *, const float *, const float *,
                            float *, float *, void *, size_t, kl_pool *);
kl_status kl_attn_unfused_fwd(const kl_attn_params *, const float *, const float *, const float *,
                              float *, float *, void *, size_t, kl_pool *);
kl_status kl_attn_fused_bwd(const kl_attn_params *, const float *, const float *, const float *,
                            const float *, const float *, const float *, float *, float *, float *,
                            void *, size_t, kl_pool *);
kl_status kl_attn_unfused_bwd(const kl_attn_params *, const float *, const float *, const float *,
                              const float *, const float *, const float *, float *, float *, float *,
                              void *, size_t, kl_pool *);

size_t kl_attn_fwd_workspace_bytes(const kl_attn_params *p, kl_impl impl, int threads) {
    if (kl_attn_check(p) != KL_OK || threads < 1) return 0;
    return impl == KL_IMPL_FUSED ? kl_attn_fused_fwd_workspace(p, threads) : kl_attn_unfused_workspace(p, 0);
}

size_t kl_attn_bwd_workspace_bytes(const kl_attn_params *p, kl_impl impl, int threads) {
    if (kl_attn_check(p) != KL_OK || threads < 1) return 0;
    return impl == KL_IMPL_FUSED ? kl_attn_fused_bwd_workspace(p, threads) : kl_attn_unfused_workspace(p, 1);
}

static kl_status check_common(const kl_attn_params *p, kl_impl impl, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = kl_attn_check(p)) != KL_OK) return st;
    if (impl != KL_IMPL_FUSED && impl != KL_IMPL_UNFUSED)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "impl must be fused (0) or unfused (1), got %d", (int)impl);
    if (pool == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool is NULL");
    return KL_OK;
}

// A (B, H, L, d) view of one call: its base, strides and rows.
typedef struct { const char *name; const float *p; const kl_attn_strides *s; long L; } view_t;

// Outputs must not share memory with each other or with an input (views of
// one buffer may interleave: kl_attn_views_overlap decides by columns).
static kl_status check_outputs(const kl_attn_geom *g, const view_t *outs, int nout, const view_t *ins, int nin,
                               const float *lse, int lse_is_output) {
    size_t lse_bytes = (size_t)g->B * g->H * g->Lq * sizeof(float);
    for (int i = 0; i < nout; i++) {
        for (int j = i + 1; j < nout; j++)
            if (kl_attn_views_overlap(outs[i].p, outs[i].s, outs[i].L, outs[j].p, outs[j].s, outs[j].L, g->B, g->H, g->d))
                return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s and %s overlap", outs[i].name, outs[j].name);
        for (int j = 0; j < nin; j++)
            if (kl_attn_views_overlap(outs[i].p, outs[i].s, outs[i].L, ins[j].p, ins[j].s, ins[j].L, g->B, g->H, g->d))
                return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s overlaps the input %s", outs[i].name, ins[j].name);
        if (kl_attn_view_overlaps_array(outs[i].p, outs[i].s, outs[i].L, g->B, g->H, g->d, lse, lse_bytes))
            return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s overlaps lse", outs[i].name);
    }
    if (lse_is_output)
        for (int j = 0; j < nin; j++)
            if (kl_attn_view_overlaps_array(ins[j].p, ins[j].s, ins[j].L, g->B, g->H, g->d, lse, lse_bytes))
                return kl_fail(KL_ERR_INVALID_ARGUMENT, "lse overlaps the input %s", ins[j].name);
    return KL_OK;
}

#define KL_REQUIRE(ptr, name) \
    if ((ptr) == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s is NULL", name)

kl_status kl_attn_fwd(const kl_attn_params *p, kl_impl impl, const float *q, const float *k, const float *v,
                      float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = check_common(p, impl, pool);
    if (st != KL_OK) return st;
    KL_REQUIRE(q, "q"); KL_REQUIRE(k, "k"); KL_REQUIRE(v, "v"); KL_REQUIRE(o, "o"); KL_REQUIRE(lse, "lse");
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    view_t outs[1] = {{"o", o, &g.so, g.Lq}};
    view_t ins[3] = {{"q", q, &g.sq, g.Lq}, {"k", k, &g.sk, g.Lk}, {"v", v, &g.sv, g.Lk}};
    if ((st = check_outputs(&g, outs, 1, ins, 3, lse, 1)) != KL_OK) return st;
    kl_clear_error();
    return impl == KL_IMPL_FUSED ? kl_attn_fused_fwd(p, q, k, v, o, lse, ws, ws_bytes, pool)
                                 : kl_attn_unfused_fwd(p, q, k, v, o, lse, ws, ws_bytes, pool);
}

kl_status kl_attn_bwd(const kl_attn_params *p, kl_impl impl, const float *q, const float *k, const float *v,
                      const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv,
                      void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = check_common(p, impl, pool);
    if (st != KL_OK) return st;
    KL_REQUIRE(q, "q"); KL_REQUIRE(k, "k"); KL_REQUIRE(v, "v"); KL_REQUIRE(o, "o"); KL_REQUIRE(lse, "lse");
    KL_REQUIRE(dout, "dout"); KL_REQUIRE(dq, "dq"); KL_REQUIRE(dk, "dk"); KL_REQUIRE(dv, "dv");
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    view_t outs[3] = {{"dq", dq, &g.sq, g.Lq}, {"dk", dk, &g.sk, g.Lk}, {"dv", dv, &g.sv, g.Lk}};
    view_t ins[5] = {{"q", q, &g.sq, g.Lq}, {"k", k, &g.sk, g.Lk}, {"v", v, &g.sv, g.Lk},
                     {"o", o, &g.so, g.Lq}, {"dout", dout, &g.so, g.Lq}};
    if ((st = check_outputs(&g, outs, 3, ins, 5, lse, 0)) != KL_OK) return st;
    kl_clear_error();
    return impl == KL_IMPL_FUSED ? kl_attn_fused_bwd(p, q, k, v, o, lse, dout, dq, dk, dv, ws, ws_bytes, pool)
                                 : kl_attn_unfused_bwd(p, q, k, v, o, lse, dout, dq, dk, dv, ws, ws_bytes, pool);
}
