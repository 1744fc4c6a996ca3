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

#define KL_REQUIRE(ptr, name) \
    if ((ptr) == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s is NULL", name)

kl_status kl_attn_fwd(const kl_attn_params *p, kl_impl impl, const float *q, const float *k, const float *v,
                      float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = check_common(p, impl, pool);
    if (st != KL_OK) return st;
    KL_REQUIRE(q, "q"); KL_REQUIRE(k, "k"); KL_REQUIRE(v, "v"); KL_REQUIRE(o, "o"); KL_REQUIRE(lse, "lse");
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
    kl_clear_error();
    return impl == KL_IMPL_FUSED ? kl_attn_fused_bwd(p, q, k, v, o, lse, dout, dq, dk, dv, ws, ws_bytes, pool)
                                 : kl_attn_unfused_bwd(p, q, k, v, o, lse, dout, dq, dk, dv, ws, ws_bytes, pool);
}
