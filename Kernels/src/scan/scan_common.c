// Checks, tiles, cost model, per-thread partials and the public scan entry points.
#include "scan_common.h"
#include <string.h>

kl_status kl_scan_check(const kl_scan_params *p) {
    if (p == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "scan params are NULL");
    if (p->batch <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "batch must be > 0 (got %d)", p->batch);
    if (p->channels <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "channels must be > 0 (got %d)", p->channels);
    if (p->seq_len <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "seq_len must be > 0 (got %d)", p->seq_len);
    if (p->state <= 0 || p->state > 1024)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "state must be in 1...1024 (got %d)", p->state);
    if (p->groups <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "groups must be > 0 (got %d)", p->groups);
    if (p->channels % p->groups != 0)
        return kl_fail(KL_ERR_SHAPE, "channels (%d) must be divisible by groups (%d)", p->channels, p->groups);
    if (p->delta_softplus != 0 && p->delta_softplus != 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "delta_softplus must be 0 or 1");
    if (p->tiles && (p->tiles->chunk < 0 || p->tiles->chunk > 65536 || p->tiles->block_channels < 0 ||
                     p->tiles->block_channels > 4096))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "tiles must be chunk in 0...65536 and block_channels in 0...4096 (0: default), got %d/%d",
                       p->tiles->chunk, p->tiles->block_channels);
    if ((long)p->batch * p->channels * p->seq_len > (1L << 40))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "B*D*L is too large");
    return KL_OK;
}

// Defaults from a sweep on Zen 4 (B=1, D=1024, L=4096, N=16, 1 thread, with
// saved states; chunk/channels: backward ms): 16/64: 79.6, 32/64: 81.6,
// 64/64: 73.1, 64/16: 85.7, 128/64: 62-64, 256/64: 62.5, 512/64: 62.3.
// Per-chunk costs (saved-state loads, the (N, L) scatter of dB and dC) favour
// long chunks; past ~2048/N steps the (chunk, N, 16) buffers of the backward
// leave L2 with no further gain. 64 channels per backward item amortize the
// lane reductions of dB and dC over four lane blocks and still give 16 items
// at D = 1024.
void kl_scan_default_tiles(const kl_scan_params *p, kl_scan_tiles *out) {
    int n = p && p->state > 0 ? p->state : 16;
    int chunk = 2048 / n / 16 * 16;
    out->chunk = chunk < 32 ? 32 : chunk > 128 ? 128 : chunk;
    out->block_channels = 64;
}

void kl_scan_tiles_for(const kl_scan_params *p, int *chunk, int *block_channels) {
    kl_scan_tiles t;
    kl_scan_default_tiles(p, &t);
    int c = p->tiles ? p->tiles->chunk : 0, b = p->tiles ? p->tiles->block_channels : 0;
    *chunk = c > 0 ? c : t.chunk;
    *block_channels = b > 0 ? (int)kl_round_up((size_t)b, KL_SCAN_W) : t.block_channels;
}

size_t kl_scan_partials_bytes(const kl_scan_geom *g) {
    size_t bgnl = (size_t)g->B * g->G * g->N * g->L;
    return kl_round_up((size_t)g->D * g->N * 4, 64) + 2 * kl_round_up(bgnl * 4, 64) +
           2 * kl_round_up((size_t)g->D * 4, 64);
}

void kl_scan_partials_carve(const kl_scan_geom *g, char *base, kl_scan_partials *out) {
    size_t bgnl = (size_t)g->B * g->G * g->N * g->L;
    out->dA = (float *)base; base += kl_round_up((size_t)g->D * g->N * 4, 64);
    out->dB = (float *)base; base += kl_round_up(bgnl * 4, 64);
    out->dC = (float *)base; base += kl_round_up(bgnl * 4, 64);
    out->dD = (float *)base; base += kl_round_up((size_t)g->D * 4, 64);
    out->ddb = (float *)base;
}

void kl_scan_partials_zero(const kl_scan_geom *g, const kl_scan_partials *pt, int has_dd, int has_ddb) {
    size_t bgnl = (size_t)g->B * g->G * g->N * g->L;
    memset(pt->dA, 0, (size_t)g->D * g->N * 4);
    memset(pt->dB, 0, bgnl * 4);
    memset(pt->dC, 0, bgnl * 4);
    if (has_dd) memset(pt->dD, 0, (size_t)g->D * 4);
    if (has_ddb) memset(pt->ddb, 0, (size_t)g->D * 4);
}

typedef struct {
    const kl_scan_geom *g;
    kl_scan_partials *all;
    int threads, has_dd, has_ddb;
} reduce_ctx;

static void add_range(float *dst, float *const *srcs, int nsrc, size_t n, int tid, int nt) {
    size_t per = (n + (size_t)nt - 1) / (size_t)nt, i0 = per * (size_t)tid, i1 = i0 + per < n ? i0 + per : n;
    for (int s = 0; s < nsrc; s++)
        for (size_t i = i0; i < i1; i++) dst[i] += srcs[s][i];
}

static void reduce_worker(void *vctx, int tid, int nt) {
    reduce_ctx *x = vctx;
    const kl_scan_geom *g = x->g;
    size_t bgnl = (size_t)g->B * g->G * g->N * g->L;
    float *src[KL_MAX_THREADS];
    int ns = x->threads - 1;
#define KL_REDUCE(field, count)                                   \
    for (int t = 1; t < x->threads; t++) src[t - 1] = x->all[t].field; \
    add_range(x->all[0].field, src, ns, count, tid, nt);
    KL_REDUCE(dA, (size_t)g->D * g->N);
    KL_REDUCE(dB, bgnl);
    KL_REDUCE(dC, bgnl);
    if (x->has_dd) { KL_REDUCE(dD, (size_t)g->D); }
    if (x->has_ddb) { KL_REDUCE(ddb, (size_t)g->D); }
#undef KL_REDUCE
}

void kl_scan_partials_reduce(const kl_scan_geom *g, kl_scan_partials *all, int threads,
                             int has_dd, int has_ddb, kl_pool *pool) {
    if (threads <= 1) return;
    reduce_ctx x = {g, all, threads, has_dd, has_ddb};
    kl_pool_run(pool, reduce_worker, &x);
}

// ---------------------------------------------------------------- cost ---
// FLOPs per (b, d, l, n), counting an exp as 1 op (exps are also reported
// separately, since exp throughput is its own ceiling):
//   forward: exp(dt A) 1 + dt*A 1 + h update 2 + y += C h 2 = 6, plus per
//   (b, d, l): dt*u 1, D*u 2, gate with z 5 (sigmoid counted as 1 exp + 2).
//   backward: recomputed forward 6 + reverse walk 12 per (b, d, l, n).
// Bytes (fp32): min_bytes reads u, delta, z (B, D, L), B, C (B, G, N, L), A,
// D, bias and h0 once and writes out and the last state once; the backward
// reads those plus dout and writes every gradient once.
// Traffic is one function, scan_traffic(cap), of the capacity of the cache
// above a boundary: dram_bytes = f(LLC), l3_bytes = f(L2), l2_bytes = f(L1d)
// (per-core L1 and L2: threads split the work by channel blocks or rows).
// Every figure starts from min_bytes plus the write-allocate fetch of every
// output line (plain stores to a line not in cache read it first). Then:
//   fused: the chunk buffers live in the cache above the boundary while they
//     fit. B and C of a (batch, group), 2 N L floats, are read by every channel
//     block of the group (16 channels forward, block_channels backward): re-read
//     once per extra block when they do not fit beside the chunk buffers.
//     Backward: the per-thread workspace (chunk buffers, checkpoints) is
//     fetched and written back once and the saved chunk states are read.
//     Every chunk touches its chunk buffers beside the chunk's slices of the
//     inputs and outputs (forward: u, delta, z, out of 16 channels and B, C;
//     backward: u, delta, z, dout, du, ddelta, dz of block_channels and B, C,
//     dB, dC); the part of that working set beyond 3/4 of cap is fetched and
//     written back again every chunk (LRU with set conflicts: the backward at
//     B=1 D=64 L=1024 N=16 uses 0.9 of a 1 MiB 8-way L2 and the simulation
//     shows the excess re-fetched). Validated at the LLC and L2. At L1 the
//     chunk buffers are re-fetched every chunk, and the backward's four
//     (chunk, N, 16) buffers of the reverse walk cost 12 passes per lane block
//     (each written and read once: fetch, write-back, fetch): a ROUGH estimate,
//     compared only with callgrind's D1 fetches (reports/traffic.md).
//   unfused: the three (B, D, L, N) tensors exp(dt A), dt B u and the states,
//     in passes of B*D*L*N floats: each written (fetch + write-back) and read
//     back, 9 passes in the forward, 11 in the backward (which reads them twice
//     more in its reverse walk); when all three fit only the fetch and
//     write-back remain (6). Validated at the LLC and L2. B and C of a
//     (batch, group) are read per (b, d) row (forward: B in the dt B u pass, C
//     in the y pass; backward: those twice and B, C, dB, dC in the reverse walk,
//     dB and dC also written back): when one (N, L) array does not fit, each
//     row reads them again (an estimate; in practice at L1 only).
// Checked against callgrind's cache simulation: make validate-traffic
// (reports/traffic.md).
typedef struct {
    double bdl, N, L, rows, groups_b;  // rows = B*D, groups_b = B*G
    double blocks_fwd, blocks_bwd;     // channel blocks per (b, g): 16 channels, block_channels
    double nchunks, chunk, bc;         // chunks over L, steps per chunk, channels per backward item
    double ws_fwd, ws_bwd;             // per-thread workspace bytes (one thread)
    double saved;                      // saved chunk-state bytes read by the backward
    double base;                       // min_bytes + write-allocate fetch of the outputs
    int bwd, unfused;
} scan_model;

static double scan_traffic(const scan_model *m, double cap) {
    const double f = 4.0;
    double bytes = m->base, nl = m->N * m->L * f;  // one (N, L) array of a (batch, group)
    if (m->unfused) {
        double big = m->bdl * m->N * f;
        bytes += big * (3.0 * big > cap ? (m->bwd ? 11.0 : 9.0) : 6.0);
        if (nl > cap) bytes += m->rows * nl * (m->bwd ? 8.0 : 2.0);
        return bytes;
    }
    double ws = m->bwd ? m->ws_bwd : m->ws_fwd, blocks = m->bwd ? m->blocks_bwd : m->blocks_fwd;
    // B and C are read twice per block in the backward (checkpoints, reverse walk).
    if (2.0 * nl + ws > cap) bytes += m->groups_b * (blocks - 1.0) * 2.0 * nl * (m->bwd ? 2.0 : 1.0);
    // The backward's workspace is fetched and written back once; the saved states are read.
    if (m->bwd) bytes += 2.0 * ws + m->saved;
    // Each chunk touches the chunk buffers (the workspace less the backward's
    // checkpoints, touched once per chunk) beside the chunk's slice of the
    // (B, D, L) and (N, L) arrays. Whatever exceeds 3/4 of cap (an LRU cache
    // with set conflicts does not hold a working set up to its full size) is
    // fetched and written back again every chunk.
    double ck = m->bwd ? m->nchunks * m->N * m->bc * f : 0.0;
    double stream = m->bwd ? (7.0 * m->bc + 4.0 * m->N) * m->chunk * f : (4.0 * KL_SCAN_W + 2.0 * m->N) * m->chunk * f;
    double items = m->groups_b * blocks, rest = ws - ck;
    // Backward: the four (chunk, N, 16) buffers hs, as, dBl, dCl are walked per
    // lane block: hs and as written by the recompute and read by the reverse
    // walk, dBl and dCl written by it and read by the lane reduction. When they
    // do not fit, each write is a fetch and a write-back and each read a fetch:
    // 12 buffer passes per (item, chunk, lane block).
    double lanebuf = m->chunk * m->N * KL_SCAN_W * f;
    if (m->bwd && 4.0 * lanebuf > 0.75 * cap) {
        bytes += items * m->nchunks * (m->bc / KL_SCAN_W) * 12.0 * lanebuf;
        rest -= 4.0 * lanebuf;
    }
    double over = fmin(fmax(ws + stream - 0.75 * cap, 0.0), rest);
    return bytes + items * m->nchunks * 2.0 * over;
}

kl_status kl_scan_cost(const kl_scan_params *p, kl_impl impl, kl_pass pass, kl_cost *out) {
    kl_status st = kl_scan_check(p);
    if (st != KL_OK) return st;
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cost output is NULL");
    double bdl = (double)p->batch * p->channels * p->seq_len, N = p->state;
    double bgnl = (double)p->batch * p->groups * p->state * p->seq_len;
    double dn = (double)p->channels * p->state, bdn = (double)p->batch * dn;
    int bwd = pass == KL_PASS_BACKWARD;
    double fwd_flops = bdl * (N * 6.0 + 3.0 + 5.0);
    out->flops = bwd ? fwd_flops + bdl * (N * 12.0 + 10.0) : fwd_flops;
    // exp(dt A) once per (b, d, l, n) (the backward stores the recomputed
    // decays instead of evaluating them again); softplus and sigmoid per (b, d, l).
    out->exps = bdl * N + bdl * 2.0;
    double in = (3 * bdl + 2 * bgnl + dn + 2.0 * p->channels + bdn) * 4.0;  // u delta z B C A D bias h0
    double fwd_out = (bdl + bdn) * 4.0;                                       // out, last state
    double grads = (3 * bdl + dn + 2 * bgnl + 2.0 * p->channels + bdn) * 4.0; // du ddelta dz dA dB dC dD dbias dh0
    out->min_bytes = bwd ? in + (bdl + bdn) * 4.0 + grads : in + fwd_out;     // + dout, dlast
    double outputs = bwd ? grads : fwd_out;  // write-allocate
    int chunk, bc;
    kl_scan_tiles_for(p, &chunk, &bc);
    double dg = (double)p->channels / p->groups;
    scan_model m = {
        .bdl = bdl, .N = N, .L = p->seq_len, .rows = (double)p->batch * p->channels,
        .groups_b = (double)p->batch * p->groups,
        .blocks_fwd = ceil(dg / KL_SCAN_W), .blocks_bwd = ceil(dg / bc),
        .nchunks = ceil((double)p->seq_len / chunk), .chunk = chunk, .bc = bc,
        .ws_fwd = (double)kl_scan_fwd_workspace_bytes(p, KL_IMPL_FUSED, 1),
        .ws_bwd = (double)kl_scan_bwd_workspace_bytes(p, KL_IMPL_FUSED, 1),
        .saved = (double)kl_scan_saved_count(p) * 4.0,
        .base = out->min_bytes + outputs, .bwd = bwd, .unfused = impl != KL_IMPL_FUSED,
    };
    // Unknown sizes fall back to common ones (32 KiB, 512 KiB, 8 MiB).
    double l1 = (double)kl_cache_bytes(1), l2 = (double)kl_cache_bytes(2), llc = (double)kl_cache_bytes(3);
    out->dram_bytes = scan_traffic(&m, llc > 0 ? llc : 8.0 * 1024 * 1024);
    out->l3_bytes = scan_traffic(&m, l2 > 0 ? l2 : 512.0 * 1024);
    out->l2_bytes = scan_traffic(&m, l1 > 0 ? l1 : 32.0 * 1024);
    return KL_OK;
}

// ------------------------------------------------------------- entry ---

size_t kl_scan_fused_fwd_workspace(const kl_scan_params *p, int threads);
size_t kl_scan_fused_bwd_workspace(const kl_scan_params *p, int threads);
size_t kl_scan_unfused_workspace(const kl_scan_params *p, int backward, int threads);
kl_status kl_scan_fused_fwd(const kl_scan_params *, const kl_scan_inputs *, float *, float *, float *, void *, size_t, kl_pool *);
kl_status kl_scan_unfused_fwd(const kl_scan_params *, const kl_scan_inputs *, float *, float *, float *, void *, size_t, kl_pool *);
kl_status kl_scan_fused_bwd(const kl_scan_params *, const kl_scan_inputs *, const float *, const float *,
                            const float *, const kl_scan_grads *, void *, size_t, kl_pool *);
kl_status kl_scan_unfused_bwd(const kl_scan_params *, const kl_scan_inputs *, const float *, const float *,
                              const kl_scan_grads *, void *, size_t, kl_pool *);

size_t kl_scan_fwd_workspace_bytes(const kl_scan_params *p, kl_impl impl, int threads) {
    if (kl_scan_check(p) != KL_OK || threads < 1) return 0;
    return impl == KL_IMPL_FUSED ? kl_scan_fused_fwd_workspace(p, threads) : kl_scan_unfused_workspace(p, 0, threads);
}

size_t kl_scan_bwd_workspace_bytes(const kl_scan_params *p, kl_impl impl, int threads) {
    if (kl_scan_check(p) != KL_OK || threads < 1) return 0;
    return impl == KL_IMPL_FUSED ? kl_scan_fused_bwd_workspace(p, threads) : kl_scan_unfused_workspace(p, 1, threads);
}

static kl_status check_inputs(const kl_scan_params *p, kl_impl impl, const kl_scan_inputs *in, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = kl_scan_check(p)) != KL_OK) return st;
    if (impl != KL_IMPL_FUSED && impl != KL_IMPL_UNFUSED)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "impl must be fused (0) or unfused (1), got %d", (int)impl);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool is NULL");
    if (!in) return kl_fail(KL_ERR_INVALID_ARGUMENT, "inputs are NULL");
    if (!in->u) return kl_fail(KL_ERR_INVALID_ARGUMENT, "u is NULL");
    if (!in->delta) return kl_fail(KL_ERR_INVALID_ARGUMENT, "delta is NULL");
    if (!in->A) return kl_fail(KL_ERR_INVALID_ARGUMENT, "A is NULL");
    if (!in->B) return kl_fail(KL_ERR_INVALID_ARGUMENT, "B is NULL");
    if (!in->C) return kl_fail(KL_ERR_INVALID_ARGUMENT, "C is NULL");
    return KL_OK;
}

size_t kl_scan_saved_count(const kl_scan_params *p) {
    if (kl_scan_check(p) != KL_OK) return 0;
    int chunk, bc;
    kl_scan_tiles_for(p, &chunk, &bc);
    return (size_t)p->batch * p->channels * (size_t)((p->seq_len + chunk - 1) / chunk) * p->state;
}

kl_status kl_scan_fwd(const kl_scan_params *p, kl_impl impl, const kl_scan_inputs *in, float *out,
                      float *last_state, float *saved, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = check_inputs(p, impl, in, pool);
    if (st != KL_OK) return st;
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "out is NULL");
    if (!last_state) return kl_fail(KL_ERR_INVALID_ARGUMENT, "last_state is NULL");
    kl_clear_error();
    return impl == KL_IMPL_FUSED ? kl_scan_fused_fwd(p, in, out, last_state, saved, ws, ws_bytes, pool)
                                 : kl_scan_unfused_fwd(p, in, out, last_state, saved, ws, ws_bytes, pool);
}

kl_status kl_scan_bwd(const kl_scan_params *p, kl_impl impl, const kl_scan_inputs *in, const float *dout,
                      const float *dlast, const float *saved, const kl_scan_grads *gr, void *ws,
                      size_t ws_bytes, kl_pool *pool) {
    kl_status st = check_inputs(p, impl, in, pool);
    if (st != KL_OK) return st;
    if (!dout) return kl_fail(KL_ERR_INVALID_ARGUMENT, "dout is NULL");
    if (!gr) return kl_fail(KL_ERR_INVALID_ARGUMENT, "grads are NULL");
    if (!gr->du || !gr->ddelta || !gr->dA || !gr->dB || !gr->dC)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "du, ddelta, dA, dB and dC are required");
    if (in->D && !gr->dD) return kl_fail(KL_ERR_INVALID_ARGUMENT, "D is given, so dD is required");
    if (in->z && !gr->dz) return kl_fail(KL_ERR_INVALID_ARGUMENT, "z is given, so dz is required");
    if (in->delta_bias && !gr->ddelta_bias)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "delta_bias is given, so ddelta_bias is required");
    kl_clear_error();
    // A gradient buffer for an absent input is written too: with zeros.
    if (!in->z && gr->dz) memset(gr->dz, 0, (size_t)p->batch * p->channels * p->seq_len * sizeof(float));
    return impl == KL_IMPL_FUSED ? kl_scan_fused_bwd(p, in, dout, dlast, saved, gr, ws, ws_bytes, pool)
                                 : kl_scan_unfused_bwd(p, in, dout, dlast, gr, ws, ws_bytes, pool);
}
