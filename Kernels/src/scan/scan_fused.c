// Fused selective scan: one pass over the sequence per block of 16 channels,
// the state (N, 16) held in registers by the lane kernels, inputs transposed
// chunk by chunk into time-major buffers (so every step reads one vector per
// input), nothing of size B*D*L*N ever written.
//
// Forward work item: (batch, block of 16 channels of one group).
// Backward work item: (batch, block of up to block_channels channels of one
// group). Pass 1 takes the state at every chunk start from the forward's saved
// states, or runs the forward again to make them (checkpoints: L/chunk x N x
// 16 floats per lane block, in the workspace). Pass 2 walks the
// chunks in reverse: it recomputes the chunk's states from its checkpoint,
// then walks the chunk backward. dA, dD, d(delta_bias) and the dB, dC sums
// over channels go to per-thread accumulators, summed at the end: no races.
#include "scan_common.h"
#include <string.h>

#define W KL_SCAN_W

// Channel blocks of W lanes never straddle a group, so all lanes share B and C.
typedef struct { int b, g, d0, nch; } block_t;

static inline block_t block_of(const kl_scan_geom *g, int item, int block_ch) {
    int per_group = (g->Dg + block_ch - 1) / block_ch;
    block_t k;
    k.b = item / (g->G * per_group);
    int r = item % (g->G * per_group);
    k.g = r / per_group;
    k.d0 = k.g * g->Dg + (r % per_group) * block_ch;
    k.nch = kl_min(block_ch, (k.g + 1) * g->Dg - k.d0);
    return k;
}

// dst (len, N) <- src (N, L) at l0: the ISA's tile transpose.
static void load_time_major(const kl_scan_ops *ops, float *dst, const float *src, long L, int N, int l0, int len) {
    ops->transpose(src + l0, N, len, L, dst, N);
}

// (N, W) lanes <- per-channel rows (nch, N) (A, h0, dlast); scaled by s.
static void load_state(float *dst, const float *src, int N, int nch, float s) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < W; c++) dst[n * W + c] = (src && c < nch) ? s * src[(long)c * N + n] : 0.0f;
}

static void load_vec(float *dst, const float *src, int nch) {
    for (int c = 0; c < W; c++) dst[c] = (src && c < nch) ? src[c] : 0.0f;
}

// ---------------------------------------------------------------- forward

typedef struct {
    kl_scan_geom g;
    const kl_scan_ops *ops;
    const kl_scan_inputs *in;
    float *out, *last, *saved;
    char *ws;
    size_t per_thread;
    int chunk, nchunks, items;
    _Atomic int next;
} fwd_ctx;

// saved: (B, D, nchunks, N) <- the (N, W) lanes state before chunk c.
static void save_state(float *saved, const float *h, long row, int nch, int nchunks, int c, int N) {
    for (int cc = 0; cc < nch; cc++) {
        float *dst = saved + ((row + cc) * nchunks + c) * N;
        for (int n = 0; n < N; n++) dst[n] = h[n * W + cc];
    }
}

typedef struct { float *A2, *h, *dt, *u, *z, *y, *B, *C, *Dv, *bias; } fwd_bufs;

static size_t fwd_layout(int N, int chunk, char *base, fwd_bufs *o) {
    size_t sz[10] = {
        (size_t)N * W, (size_t)N * W,                       // A2, h: (N, W)
        (size_t)chunk * W, (size_t)chunk * W,               // dt, u: (chunk, W)
        (size_t)chunk * W, (size_t)chunk * W,               // z, y
        (size_t)chunk * N, (size_t)chunk * N,               // B, C: (chunk, N)
        W, W,                                               // D, bias
    };
    float **slot[10] = {&o->A2, &o->h, &o->dt, &o->u, &o->z, &o->y, &o->B, &o->C, &o->Dv, &o->bias};
    size_t off = 0;
    for (int i = 0; i < 10; i++) {
        if (base) *slot[i] = (float *)(base + off);
        off += kl_round_up(sz[i] * sizeof(float), 64);
    }
    return off;
}

static void fwd_worker(void *vctx, int tid, int nt) {
    fwd_ctx *x = vctx;
    const kl_scan_geom *g = &x->g;
    const kl_scan_inputs *in = x->in;
    const int N = g->N, L = g->L;
    fwd_bufs w;
    fwd_layout(N, x->chunk, x->ws + (size_t)tid * x->per_thread, &w);
    int item;
    while ((item = atomic_fetch_add(&x->next, 1)) < x->items) {
        block_t k = block_of(g, item, W);
        long row = (long)k.b * g->D + k.d0;  // first (b, d) row of (B, D, *) arrays
        load_state(w.A2, in->A + (long)k.d0 * N, N, k.nch, KL_LOG2E);
        load_state(w.h, in->h0 ? in->h0 + row * N : NULL, N, k.nch, 1.0f);
        load_vec(w.Dv, in->D ? in->D + k.d0 : NULL, k.nch);
        load_vec(w.bias, in->delta_bias ? in->delta_bias + k.d0 : NULL, k.nch);
        const float *Bg = in->B + ((long)k.b * g->G + k.g) * N * L, *Cg = in->C + ((long)k.b * g->G + k.g) * N * L;
        for (int l0 = 0; l0 < L; l0 += x->chunk) {
            int len = kl_min(x->chunk, L - l0);
            if (x->saved) save_state(x->saved, w.h, row, k.nch, x->nchunks, l0 / x->chunk, N);
            x->ops->load_lanes(w.u, in->u + row * L, L, k.nch, l0, len);
            x->ops->load_lanes(w.dt, in->delta + row * L, L, k.nch, l0, len);
            if (in->z) x->ops->load_lanes(w.z, in->z + row * L, L, k.nch, l0, len);
            load_time_major(x->ops, w.B, Bg, L, N, l0, len);
            load_time_major(x->ops, w.C, Cg, L, N, l0, len);
            x->ops->delta_prep(w.dt, len, in->delta_bias ? w.bias : NULL, g->softplus);
            kl_scan_fwd_chunk c = {len, N, w.A2, w.dt, w.u, w.B, w.C, w.h, w.y, NULL, NULL};
            x->ops->fwd_chunk(&c);
            x->ops->gate_fwd(w.y, w.u, in->z ? w.z : NULL, in->D ? w.Dv : NULL, len);
            x->ops->store_lanes(x->out + row * L, w.y, L, k.nch, l0, len);
        }
        for (int c = 0; c < k.nch; c++)
            for (int n = 0; n < N; n++) x->last[(row + c) * N + n] = w.h[n * W + c];
    }
    (void)nt;
}

size_t kl_scan_fused_fwd_workspace(const kl_scan_params *p, int threads) {
    int chunk, bc;
    kl_scan_tiles_for(p, &chunk, &bc);
    return (size_t)threads * fwd_layout(p->state, chunk, NULL, &(fwd_bufs){0});
}

kl_status kl_scan_fused_fwd(const kl_scan_params *p, const kl_scan_inputs *in, float *out, float *last,
                            float *saved, void *ws, size_t ws_bytes, kl_pool *pool) {
    fwd_ctx x;
    kl_scan_geom_init(p, &x.g);
    int bc, T = kl_pool_threads(pool);
    kl_scan_tiles_for(p, &x.chunk, &bc);
    size_t need = kl_scan_fused_fwd_workspace(p, T);
    kl_status st = kl_check_workspace(ws, ws_bytes, need);
    if (st != KL_OK) return st;
    x.ops = kl_scan_ops_for(kl_isa_active());
    x.in = in; x.out = out; x.last = last; x.saved = saved;
    x.nchunks = (x.g.L + x.chunk - 1) / x.chunk;
    x.ws = ws;
    x.per_thread = need / (size_t)T;
    x.items = x.g.B * x.g.G * ((x.g.Dg + W - 1) / W);
    atomic_init(&x.next, 0);
    kl_pool_run(pool, fwd_worker, &x);
    return KL_OK;
}

// --------------------------------------------------------------- backward

typedef struct {
    kl_scan_geom g;
    const kl_scan_ops *ops;
    const kl_scan_inputs *in;
    const float *dout, *dlast, *saved;
    const kl_scan_grads *gr;
    kl_scan_partials part[KL_MAX_THREADS];
    char *ws;
    size_t per_thread;
    int chunk, block_ch, nchunks, items;
} bwd_ctx;

typedef struct {
    float *A2, *A, *h, *dt, *raw, *u, *z, *y, *dout, *dy, *du, *ddt, *dz, *B, *C, *Dv, *bias, *dDv, *ddbv;
    float *hs, *as, *dBl, *dCl, *red;   // (chunk, N, W) x 4, reduction (chunk, N)
    float *ck, *carry, *dA;             // per lane block: checkpoints (nchunks, N, W), carry and dA (N, W)
} bwd_bufs;

static size_t bwd_layout(int N, int chunk, int nchunks, int nsub, char *base, bwd_bufs *o) {
    size_t cw = (size_t)chunk * W, cnw = (size_t)chunk * N * W, nw = (size_t)N * W;
    struct { float **p; size_t n; } f[] = {
        {&o->A2, nw * nsub}, {&o->A, nw * nsub}, {&o->h, nw},
        {&o->dt, cw}, {&o->raw, cw}, {&o->u, cw}, {&o->z, cw}, {&o->y, cw}, {&o->dout, cw},
        {&o->dy, cw}, {&o->du, cw}, {&o->ddt, cw}, {&o->dz, cw},
        {&o->B, (size_t)chunk * N}, {&o->C, (size_t)chunk * N},
        {&o->Dv, (size_t)W * nsub}, {&o->bias, (size_t)W * nsub}, {&o->dDv, W}, {&o->ddbv, W},
        {&o->hs, cnw}, {&o->as, cnw}, {&o->dBl, cnw}, {&o->dCl, cnw}, {&o->red, (size_t)chunk * N},
        {&o->ck, (size_t)nchunks * nw * nsub}, {&o->carry, nw * nsub}, {&o->dA, nw * nsub},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (base) *f[i].p = (float *)(base + off);
        off += kl_round_up(f[i].n * sizeof(float), 64);
    }
    return off;
}

// Pass 1: checkpoints. ck[(s * nchunks + c) * N * W] = state before chunk c of lane block s.
static void bwd_checkpoints(bwd_ctx *x, bwd_bufs *w, block_t k, int nsub) {
    const kl_scan_geom *g = &x->g;
    const kl_scan_inputs *in = x->in;
    const int N = g->N, L = g->L, nw = N * W;
    const float *Bg = in->B + ((long)k.b * g->G + k.g) * N * L, *Cg = in->C + ((long)k.b * g->G + k.g) * N * L;
    for (int s = 0; s < nsub; s++) {
        int nch = kl_min(W, k.nch - s * W);
        long row = (long)k.b * g->D + k.d0 + s * W;
        load_state(w->ck + (long)s * x->nchunks * nw, in->h0 ? in->h0 + row * N : NULL, N, nch, 1.0f);
    }
    for (int c = 0; c + 1 < x->nchunks; c++) {
        int l0 = c * x->chunk, len = x->chunk;
        load_time_major(x->ops, w->B, Bg, L, N, l0, len);
        load_time_major(x->ops, w->C, Cg, L, N, l0, len);
        for (int s = 0; s < nsub; s++) {
            int nch = kl_min(W, k.nch - s * W);
            long row = (long)k.b * g->D + k.d0 + s * W;
            float *ck = w->ck + (long)s * x->nchunks * nw;
            memcpy(ck + (long)(c + 1) * nw, ck + (long)c * nw, (size_t)nw * sizeof(float));
            x->ops->load_lanes(w->u, in->u + row * L, L, nch, l0, len);
            x->ops->load_lanes(w->dt, in->delta + row * L, L, nch, l0, len);
            x->ops->delta_prep(w->dt, len, in->delta_bias ? w->bias + s * W : NULL, g->softplus);
            kl_scan_fwd_chunk fc = {len, N, w->A2 + (long)s * nw, w->dt, w->u, w->B, w->C,
                                    ck + (long)(c + 1) * nw, NULL, NULL, NULL};  // states only
            x->ops->fwd_chunk(&fc);
        }
    }
}

static void bwd_worker(void *vctx, int tid, int nthreads) {
    bwd_ctx *x = vctx;
    const kl_scan_geom *g = &x->g;
    const kl_scan_inputs *in = x->in;
    const kl_scan_grads *gr = x->gr;
    const kl_scan_ops *ops = x->ops;
    const int N = g->N, L = g->L, nw = N * W, nsub_max = x->block_ch / W;
    bwd_bufs w;
    bwd_layout(N, x->chunk, x->nchunks, nsub_max, x->ws + (size_t)tid * x->per_thread, &w);
    kl_scan_partials *pt = &x->part[tid];
    kl_scan_partials_zero(g, pt, gr->dD != NULL, gr->ddelta_bias != NULL);
    // A fixed share of the items per thread (not a shared counter): each
    // thread's partial sums then cover the same items in every run, so the
    // reduced dA, dB, dC, dD are the same bits for a given thread count.
    long first = (long)x->items * tid / nthreads, end = (long)x->items * (tid + 1) / nthreads;
    for (long item = first; item < end; item++) {
        block_t k = block_of(g, (int)item, x->block_ch);
        int nsub = (k.nch + W - 1) / W;
        for (int s = 0; s < nsub; s++) {
            int nch = kl_min(W, k.nch - s * W), d0 = k.d0 + s * W;
            long row = (long)k.b * g->D + d0;
            load_state(w.A2 + (long)s * nw, in->A + (long)d0 * N, N, nch, KL_LOG2E);
            load_state(w.A + (long)s * nw, in->A + (long)d0 * N, N, nch, 1.0f);
            load_vec(w.Dv + s * W, in->D ? in->D + d0 : NULL, nch);
            load_vec(w.bias + s * W, in->delta_bias ? in->delta_bias + d0 : NULL, nch);
            load_state(w.carry + (long)s * nw, x->dlast ? x->dlast + row * N : NULL, N, nch, 1.0f);
            memset(w.dA + (long)s * nw, 0, (size_t)nw * sizeof(float));
        }
        if (x->saved) {  // the forward's chunk states: (B, D, nchunks, N) -> (nchunks, N, W) per lane block
            for (int s = 0; s < nsub; s++) {
                int nch = kl_min(W, k.nch - s * W);
                long row = (long)k.b * g->D + k.d0 + s * W;
                for (int c = 0; c < x->nchunks; c++)
                    for (int n = 0; n < N; n++)
                        for (int cc = 0; cc < W; cc++)
                            w.ck[((long)s * x->nchunks + c) * nw + n * W + cc] =
                                cc < nch ? x->saved[((row + cc) * x->nchunks + c) * N + n] : 0.0f;
            }
        } else {
            bwd_checkpoints(x, &w, k, nsub);
        }
        const float *Bg = in->B + ((long)k.b * g->G + k.g) * N * L, *Cg = in->C + ((long)k.b * g->G + k.g) * N * L;
        float *dBg = pt->dB + ((long)k.b * g->G + k.g) * N * L, *dCg = pt->dC + ((long)k.b * g->G + k.g) * N * L;
        for (int c = x->nchunks - 1; c >= 0; c--) {
            int l0 = c * x->chunk, len = kl_min(x->chunk, L - l0);
            load_time_major(x->ops, w.B, Bg, L, N, l0, len);
            load_time_major(x->ops, w.C, Cg, L, N, l0, len);
            memset(w.dBl, 0, (size_t)len * nw * sizeof(float));
            memset(w.dCl, 0, (size_t)len * nw * sizeof(float));
            for (int s = 0; s < nsub; s++) {
                int nch = kl_min(W, k.nch - s * W), d0 = k.d0 + s * W;
                long row = (long)k.b * g->D + d0;
                const float *bias = in->delta_bias ? w.bias + s * W : NULL;
                x->ops->load_lanes(w.u, in->u + row * L, L, nch, l0, len);
                x->ops->load_lanes(w.raw, in->delta + row * L, L, nch, l0, len);
                memcpy(w.dt, w.raw, (size_t)len * W * sizeof(float));
                ops->delta_prep(w.dt, len, bias, g->softplus);
                if (in->z) x->ops->load_lanes(w.z, in->z + row * L, L, nch, l0, len);
                x->ops->load_lanes(w.dout, x->dout + row * L, L, nch, l0, len);
                // Recompute the chunk from its checkpoint, keeping h_t and exp(dt_t A).
                memcpy(w.h, w.ck + ((long)s * x->nchunks + c) * nw, (size_t)nw * sizeof(float));
                kl_scan_fwd_chunk fc = {len, N, w.A2 + (long)s * nw, w.dt, w.u, w.B, w.C, w.h, w.y, w.hs, w.as};
                ops->fwd_chunk(&fc);
                memset(w.dDv, 0, W * sizeof(float));
                ops->gate_bwd(w.dout, w.y, w.u, in->z ? w.z : NULL, in->D ? w.Dv + s * W : NULL,
                              w.dy, w.du, in->z ? w.dz : NULL, in->D ? w.dDv : NULL, len);
                kl_scan_bwd_chunk bc = {len, N, w.A + (long)s * nw, w.dt, w.u, w.B, w.C, w.hs, w.as,
                                        w.ck + ((long)s * x->nchunks + c) * nw, w.dy, w.carry + (long)s * nw,
                                        w.ddt, w.du, w.dA + (long)s * nw, w.dBl, w.dCl};
                ops->bwd_chunk(&bc);
                ops->delta_grad(w.ddt, w.raw, len, bias, g->softplus);
                x->ops->store_lanes(gr->du + row * L, w.du, L, nch, l0, len);
                x->ops->store_lanes(gr->ddelta + row * L, w.ddt, L, nch, l0, len);
                if (in->z) x->ops->store_lanes(gr->dz + row * L, w.dz, L, nch, l0, len);
                for (int cc = 0; cc < nch; cc++) {
                    if (in->D) pt->dD[d0 + cc] += w.dDv[cc];
                    if (in->delta_bias) {
                        float sum = 0.0f;
                        for (int l = 0; l < len; l++) sum += w.ddt[l * W + cc];
                        pt->ddb[d0 + cc] += sum;
                    }
                }
            }
            // Sum the lanes (channels) of dB, dC and add them, transposed, to (N, L).
            ops->lane_sum(w.dBl, len * N, w.red);
            for (int n = 0; n < N; n++)
                for (int l = 0; l < len; l++) dBg[(long)n * L + l0 + l] += w.red[l * N + n];
            ops->lane_sum(w.dCl, len * N, w.red);
            for (int n = 0; n < N; n++)
                for (int l = 0; l < len; l++) dCg[(long)n * L + l0 + l] += w.red[l * N + n];
        }
        for (int s = 0; s < nsub; s++) {
            int nch = kl_min(W, k.nch - s * W), d0 = k.d0 + s * W;
            long row = (long)k.b * g->D + d0;
            for (int cc = 0; cc < nch; cc++)
                for (int n = 0; n < N; n++) {
                    pt->dA[(long)(d0 + cc) * N + n] += w.dA[(long)s * nw + n * W + cc];
                    if (gr->dh0) gr->dh0[(row + cc) * N + n] = w.carry[(long)s * nw + n * W + cc];
                }
        }
    }
}

static size_t bwd_per_thread(const kl_scan_params *p, int *chunk, int *bc, int *nchunks) {
    kl_scan_tiles_for(p, chunk, bc);
    *nchunks = (p->seq_len + *chunk - 1) / *chunk;
    return bwd_layout(p->state, *chunk, *nchunks, *bc / W, NULL, &(bwd_bufs){0});
}

size_t kl_scan_fused_bwd_workspace(const kl_scan_params *p, int threads) {
    int chunk, bc, nchunks;
    kl_scan_geom g;
    kl_scan_geom_init(p, &g);
    return (size_t)threads * bwd_per_thread(p, &chunk, &bc, &nchunks) +
           (size_t)(threads - 1) * kl_scan_partials_bytes(&g);
}

kl_status kl_scan_fused_bwd(const kl_scan_params *p, const kl_scan_inputs *in, const float *dout,
                            const float *dlast, const float *saved, const kl_scan_grads *gr, void *ws,
                            size_t ws_bytes, kl_pool *pool) {
    int T = kl_pool_threads(pool);
    size_t need = kl_scan_fused_bwd_workspace(p, T);
    kl_status st = kl_check_workspace(ws, ws_bytes, need);
    if (st != KL_OK) return st;
    bwd_ctx ctx, *x = &ctx;
    kl_scan_geom_init(p, &x->g);
    x->ops = kl_scan_ops_for(kl_isa_active());
    x->in = in; x->dout = dout; x->dlast = dlast; x->saved = saved; x->gr = gr;
    x->ws = ws;
    x->per_thread = bwd_per_thread(p, &x->chunk, &x->block_ch, &x->nchunks);
    x->items = x->g.B * x->g.G * ((x->g.Dg + x->block_ch - 1) / x->block_ch);
    x->part[0] = (kl_scan_partials){gr->dA, gr->dB, gr->dC, gr->dD, gr->ddelta_bias};
    char *pbase = (char *)ws + (size_t)T * x->per_thread;
    for (int t = 1; t < T; t++)
        kl_scan_partials_carve(&x->g, pbase + (size_t)(t - 1) * kl_scan_partials_bytes(&x->g), &x->part[t]);
    kl_pool_run(pool, bwd_worker, x);
    kl_scan_partials_reduce(&x->g, x->part, T, gr->dD != NULL, gr->ddelta_bias != NULL, pool);
    return KL_OK;
}
