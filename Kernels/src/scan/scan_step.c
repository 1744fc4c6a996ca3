// One step of the selective scan for decoding, the state updated in place:
//   delta' = softplus(delta + bias) (or delta + bias), per channel
//   h[n] = exp(delta' A[n]) h[n] + delta' B[n] u,  y = <C, h> + D u,  out = y silu(z)
// Channels go 16 at a time through the fused scan's own lane kernels for
// delta' and the gate (one time step of them), so a step rounds as one step of
// the fused forward does; the state update runs per channel over its N states
// (kl_scan_ops.step_block). Threads split the (batch, channel) rows.
// Cost per (b, d): 6 N FLOPs + N exps (as the fused forward's per-step count)
// plus the gate's; bytes: u, delta, z, out (B, D), B and C (B, G, N), A (D, N)
// once, and the state (B, D, N) read and written: the state and A dominate,
// 12 N bytes per channel against 6 N FLOPs (0.5 FLOP/byte: memory-bound).
#include "scan_common.h"
#include <string.h>

typedef struct {
    kl_scan_geom g;
    const kl_scan_ops *ops;
    const kl_scan_inputs *in;
    float *state, *out;
} step_ctx;

static void step_worker(void *vctx, int tid, int nthreads) {
    step_ctx *x = vctx;
    const kl_scan_geom *g = &x->g;
    const kl_scan_inputs *in = x->in;
    const int W = KL_SCAN_W, N = g->N;
    // Work items: blocks of 16 channels of one (batch, group).
    long blocks_per_group = (g->Dg + W - 1) / W, items = (long)g->B * g->G * blocks_per_group, lo, hi;
    kl_split(items, tid, nthreads, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        long bg = it / blocks_per_group;
        int b = (int)(bg / g->G), grp = (int)(bg % g->G);
        int c0 = grp * g->Dg + (int)(it % blocks_per_group) * W, nch = kl_min(W, (grp + 1) * g->Dg - c0);
        long row = (long)b * g->D + c0;
        float dt[KL_SCAN_W] = {0}, u[KL_SCAN_W] = {0}, z[KL_SCAN_W] = {0}, y[KL_SCAN_W] = {0};
        float bias[KL_SCAN_W] = {0}, D[KL_SCAN_W] = {0};
        size_t bytes = (size_t)nch * sizeof(float);
        memcpy(dt, in->delta + row, bytes);
        memcpy(u, in->u + row, bytes);
        if (in->z) memcpy(z, in->z + row, bytes);
        if (in->delta_bias) memcpy(bias, in->delta_bias + c0, bytes);
        if (in->D) memcpy(D, in->D + c0, bytes);
        x->ops->delta_prep(dt, 1, in->delta_bias ? bias : NULL, g->softplus);
        const float *Bv = in->B + ((long)b * g->G + grp) * N, *Cv = in->C + ((long)b * g->G + grp) * N;
        float du[KL_SCAN_W];
        for (int c = 0; c < KL_SCAN_W; c++) du[c] = dt[c] * u[c];
        x->ops->step_block(nch, N, dt, du, in->A + (long)c0 * N, Bv, Cv, x->state + row * N, y);
        x->ops->gate_fwd(y, u, in->z ? z : NULL, in->D ? D : NULL, 1);
        memcpy(x->out + row, y, bytes);
    }
}

kl_status kl_scan_step(const kl_scan_params *p, const kl_scan_inputs *in, float *state, float *out, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = kl_scan_check(p)) != KL_OK) return st;
    if (p->seq_len != 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "a scan step has seq_len 1 (got %d)", p->seq_len);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool is NULL");
    if (!in) return kl_fail(KL_ERR_INVALID_ARGUMENT, "inputs are NULL");
    if (!in->u || !in->delta || !in->A || !in->B || !in->C)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s is NULL",
                       !in->u ? "u" : !in->delta ? "delta" : !in->A ? "A" : !in->B ? "B" : "C");
    if (!state) return kl_fail(KL_ERR_INVALID_ARGUMENT, "state is NULL");
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "out is NULL");
    size_t bd = (size_t)p->batch * p->channels * sizeof(float), sb = bd * (size_t)p->state;
    size_t bgn = (size_t)p->batch * p->groups * p->state * sizeof(float), dn = (size_t)p->channels * p->state * sizeof(float);
    if (kl_overlap(state, sb, in->u, bd) || kl_overlap(state, sb, in->delta, bd) || kl_overlap(state, sb, in->z, bd) ||
        kl_overlap(state, sb, in->A, dn) || kl_overlap(state, sb, in->B, bgn) || kl_overlap(state, sb, in->C, bgn) ||
        kl_overlap(state, sb, out, bd))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "state overlaps an input or out");
    // out may be u, delta or z exactly (a block reads its inputs before it writes), never a shifted view.
    const float *same[3] = {in->u, in->delta, in->z};
    for (int i = 0; i < 3; i++)
        if (same[i] && same[i] != out && kl_overlap(out, bd, same[i], bd))
            return kl_fail(KL_ERR_INVALID_ARGUMENT, "out partly overlaps u, delta or z");
    if (kl_overlap(out, bd, in->A, dn) || kl_overlap(out, bd, in->B, bgn) || kl_overlap(out, bd, in->C, bgn))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "out overlaps A, B or C");
    kl_clear_error();
    step_ctx x = {.in = in, .state = state, .out = out};
    kl_scan_geom_init(p, &x.g);
    x.ops = kl_scan_ops_for(kl_isa_active());
    kl_pool_run(pool, step_worker, &x);
    return KL_OK;
}

kl_status kl_scan_step_cost(const kl_scan_params *p, kl_cost *out) {
    kl_status st = kl_scan_check(p);
    if (st != KL_OK) return st;
    if (p->seq_len != 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "a scan step has seq_len 1 (got %d)", p->seq_len);
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "out is NULL");
    double bd = (double)p->batch * p->channels, N = p->state, f = 4.0;
    memset(out, 0, sizeof *out);
    out->flops = bd * (6.0 * N + 8.0);
    out->exps = bd * N;
    out->min_bytes = f * (4.0 * bd + 2.0 * (double)p->batch * p->groups * N + (double)p->channels * (N + 2.0) + 2.0 * bd * N);
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;  // the state is read and written in place: no write-allocate
    return KL_OK;
}
