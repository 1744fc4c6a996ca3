// Unfused selective scan: the reference formulation, one pass per tensor op
// with every intermediate materialized in the workspace:
//   delta' (B, D, L);  dA = exp(delta' A), dBu = delta' B u: (B, D, L, N);
//   h = scan(dA, dBu): (B, D, L, N);  y = <h, C> + D u;  out = y silu(z).
// The backward recomputes those tensors, then walks them in reverse. Passes
// run over (b, d) rows on the pool; the forward passes use the same vector
// primitives as the fused kernel (exp, softplus, gate; a row of L values
// viewed as (L/16, 16)), so the comparison isolates data movement. The
// reverse walk is plain C. Workspace: O(B D L N).
#include "scan_common.h"
#include <string.h>

#define W KL_SCAN_W

typedef struct {
    kl_scan_geom g;
    const kl_ops *ops;
    const kl_scan_ops *sops;
    const kl_scan_inputs *in;
    const float *dout, *dlast;
    const kl_scan_grads *gr;
    float *out, *last, *saved;
    int nchunks, chunk;
    float *dtv, *ybuf, *dy, *dA, *dBu, *hs;   // materialized tensors
    kl_scan_partials part[KL_MAX_THREADS];
    int pass;
} unf_ctx;

static void fill(float *v, float x) { for (int c = 0; c < W; c++) v[c] = x; }

// Applies delta_prep to one row of L values (bias and softplus per channel).
static void row_delta_prep(const kl_scan_ops *s, float *row, int L, float bias, int has_bias, int softplus) {
    float bv[W], tail[W] = {0};
    fill(bv, bias);
    int full = L / W * W;
    s->delta_prep(row, L / W, has_bias ? bv : NULL, softplus);
    if (full < L) {
        memcpy(tail, row + full, (size_t)(L - full) * sizeof(float));
        s->delta_prep(tail, 1, has_bias ? bv : NULL, softplus);
        memcpy(row + full, tail, (size_t)(L - full) * sizeof(float));
    }
}

static void unf_worker(void *vctx, int tid, int nt) {
    unf_ctx *x = vctx;
    const kl_scan_geom *g = &x->g;
    const kl_scan_inputs *in = x->in;
    const int N = g->N, L = g->L, rows = g->B * g->D;
    int per = (rows + nt - 1) / nt, r0 = tid * per, r1 = kl_min(rows, r0 + per);
    for (int r = r0; r < r1; r++) {
        int b = r / g->D, d = r % g->D, gi = d / g->Dg;
        const float *Bm = in->B + ((long)b * g->G + gi) * N * L, *Cm = in->C + ((long)b * g->G + gi) * N * L;
        const float *u = in->u + (long)r * L;
        float *dt = x->dtv + (long)r * L;
        float *dA = x->dA + (long)r * L * N, *dBu = x->dBu + (long)r * L * N, *hs = x->hs + (long)r * L * N;
        switch (x->pass) {
        case 0:  // delta' = softplus(delta + bias)
            memcpy(dt, in->delta + (long)r * L, (size_t)L * sizeof(float));
            row_delta_prep(x->sops, dt, L, in->delta_bias ? in->delta_bias[d] : 0.0f, in->delta_bias != NULL, g->softplus);
            break;
        case 1:  // dA = exp(delta' A), dBu = delta' B u
            for (int l = 0; l < L; l++) {
                float *a = dA + (long)l * N;
                for (int n = 0; n < N; n++) {
                    a[n] = in->A[(long)d * N + n];
                    dBu[(long)l * N + n] = dt[l] * Bm[(long)n * L + l] * u[l];
                }
                x->ops->exp2_scaled(a, N, dt[l] * KL_LOG2E, 0.0f, 0.0f, 0.0f);
            }
            break;
        case 2: {  // h_t = dA_t h_{t-1} + dBu_t
            const float *h0 = in->h0 ? in->h0 + (long)r * N : NULL;
            for (int n = 0; n < N; n++) hs[n] = dA[n] * (h0 ? h0[n] : 0.0f) + dBu[n];
            for (int l = 1; l < L; l++)
                for (int n = 0; n < N; n++)
                    hs[(long)l * N + n] = dA[(long)l * N + n] * hs[(long)(l - 1) * N + n] + dBu[(long)l * N + n];
            if (x->last) memcpy(x->last + (long)r * N, hs + (long)(L - 1) * N, (size_t)N * sizeof(float));
            if (x->saved)  // the state before each chunk, as the fused forward saves it
                for (int c = 0; c < x->nchunks; c++)
                    for (int n = 0; n < N; n++)
                        x->saved[((long)r * x->nchunks + c) * N + n] =
                            c == 0 ? (h0 ? h0[n] : 0.0f) : hs[((long)c * x->chunk - 1) * N + n];
            break;
        }
        case 3: {  // y = <h, C>; forward: out = (y + D u) silu(z)
            float *y = x->ybuf + (long)r * L;
            for (int l = 0; l < L; l++) {
                float s = 0.0f;
                for (int n = 0; n < N; n++) s += hs[(long)l * N + n] * Cm[(long)n * L + l];
                y[l] = s;
            }
            if (x->out) {
                float *o = x->out + (long)r * L;
                memcpy(o, y, (size_t)L * sizeof(float));
                float Dv[W], ot[W] = {0}, ut[W] = {0}, zt[W] = {0};
                fill(Dv, in->D ? in->D[d] : 0.0f);
                const float *z = in->z ? in->z + (long)r * L : NULL;
                int full = L / W * W;
                x->sops->gate_fwd(o, u, z, in->D ? Dv : NULL, L / W);
                if (full < L) {
                    int t = L - full;
                    memcpy(ot, o + full, t * sizeof(float));
                    memcpy(ut, u + full, t * sizeof(float));
                    if (z) memcpy(zt, z + full, t * sizeof(float));
                    x->sops->gate_fwd(ot, ut, z ? zt : NULL, in->D ? Dv : NULL, 1);
                    memcpy(o + full, ot, t * sizeof(float));
                }
            }
            break;
        }
        case 4: {  // backward: gate, then the reverse walk over the materialized tensors
            const kl_scan_grads *gr = x->gr;
            kl_scan_partials *pt = &x->part[tid];
            const float *y = x->ybuf + (long)r * L, *z = in->z ? in->z + (long)r * L : NULL;
            const float *dout = x->dout + (long)r * L;
            float *dy = x->dy + (long)r * L, *du = gr->du + (long)r * L, *ddt = gr->ddelta + (long)r * L;
            float *dz = in->z ? gr->dz + (long)r * L : NULL;
            float Dv = in->D ? in->D[d] : 0.0f, dDacc = 0.0f;
            for (int l = 0; l < L; l++) {  // scalar gate backward (see gate_bwd for the formulas)
                float g1 = dout[l];
                if (z) {
                    float s = 1.0f / (1.0f + expf(-z[l])), pre = y[l] + Dv * u[l];
                    dz[l] = g1 * pre * s * (1.0f + z[l] * (1.0f - s));
                    g1 *= z[l] * s;
                }
                dy[l] = g1;
                du[l] = Dv * g1;
                dDacc += g1 * u[l];
            }
            if (in->D) pt->dD[d] += dDacc;
            float G[1024];
            const float *dl = x->dlast ? x->dlast + (long)r * N : NULL;
            for (int n = 0; n < N; n++) G[n] = dl ? dl[n] : 0.0f;  // carry
            const float *h0 = in->h0 ? in->h0 + (long)r * N : NULL;
            float *dBg = pt->dB + ((long)b * g->G + gi) * N * L, *dCg = pt->dC + ((long)b * g->G + gi) * N * L;
            for (int l = L - 1; l >= 0; l--) {
                float tB = 0.0f, tA = 0.0f, dtl = dt[l];
                for (int n = 0; n < N; n++) {
                    long o = (long)l * N + n;
                    float hp = l > 0 ? hs[o - N] : (h0 ? h0[n] : 0.0f);
                    float Gn = Cm[(long)n * L + l] * dy[l] + G[n];
                    dBg[(long)n * L + l] += Gn * dtl * u[l];
                    dCg[(long)n * L + l] += dy[l] * hs[o];
                    tB += Gn * Bm[(long)n * L + l];
                    float dh = Gn * hp * dA[o];
                    tA += dh * in->A[(long)d * N + n];
                    pt->dA[(long)d * N + n] += dh * dtl;
                    G[n] = dA[o] * Gn;
                }
                ddt[l] = tB * u[l] + tA;
                du[l] += tB * dtl;
            }
            if (gr->dh0) memcpy(gr->dh0 + (long)r * N, G, (size_t)N * sizeof(float));
            if (g->softplus) {
                float bias = in->delta_bias ? in->delta_bias[d] : 0.0f;
                for (int l = 0; l < L; l++) {
                    float xr = in->delta[(long)r * L + l] + bias;
                    ddt[l] *= 1.0f / (1.0f + expf(-xr));
                }
            }
            if (in->delta_bias) {
                float s = 0.0f;
                for (int l = 0; l < L; l++) s += ddt[l];
                pt->ddb[d] += s;
            }
            break;
        }
        }
    }
}

static void zero_worker(void *vctx, int tid, int nt) {
    unf_ctx *x = vctx;
    kl_scan_partials_zero(&x->g, &x->part[tid], x->gr->dD != NULL, x->gr->ddelta_bias != NULL);
    (void)nt;
}

size_t kl_scan_unfused_workspace(const kl_scan_params *p, int backward, int threads) {
    kl_scan_geom g;
    kl_scan_geom_init(p, &g);
    size_t bdl = (size_t)g.B * g.D * g.L, big = kl_round_up(bdl * g.N * 4, 64), row = kl_round_up(bdl * 4, 64);
    size_t s = 3 * big + 2 * row;  // dA, dBu, hs; delta', y
    if (backward) s += row + (size_t)(threads - 1) * kl_scan_partials_bytes(&g);  // dy; partials
    return s;
}

static void carve(unf_ctx *x, char *ws) {
    size_t bdl = (size_t)x->g.B * x->g.D * x->g.L;
    size_t big = kl_round_up(bdl * x->g.N * 4, 64), row = kl_round_up(bdl * 4, 64);
    x->dA = (float *)ws; ws += big;
    x->dBu = (float *)ws; ws += big;
    x->hs = (float *)ws; ws += big;
    x->dtv = (float *)ws; ws += row;
    x->ybuf = (float *)ws; ws += row;
    x->dy = (float *)ws;
}

static void run_passes(unf_ctx *x, int upto, kl_pool *pool) {
    for (x->pass = 0; x->pass <= upto; x->pass++) kl_pool_run(pool, unf_worker, x);
}

kl_status kl_scan_unfused_fwd(const kl_scan_params *p, const kl_scan_inputs *in, float *out, float *last,
                              float *saved, void *ws, size_t ws_bytes, kl_pool *pool) {
    int T = kl_pool_threads(pool);
    kl_status st = kl_check_workspace(ws, ws_bytes, kl_scan_unfused_workspace(p, 0, T));
    if (st != KL_OK) return st;
    unf_ctx ctx = {0};
    kl_scan_geom_init(p, &ctx.g);
    ctx.ops = kl_ops_active();
    ctx.sops = kl_scan_ops_for(kl_isa_active());
    ctx.in = in; ctx.out = out; ctx.last = last; ctx.saved = saved;
    int bc;
    kl_scan_tiles_for(p, &ctx.chunk, &bc);
    ctx.nchunks = (ctx.g.L + ctx.chunk - 1) / ctx.chunk;
    carve(&ctx, ws);
    run_passes(&ctx, 3, pool);
    return KL_OK;
}

kl_status kl_scan_unfused_bwd(const kl_scan_params *p, const kl_scan_inputs *in, const float *dout,
                              const float *dlast, const kl_scan_grads *gr, void *ws, size_t ws_bytes,
                              kl_pool *pool) {
    int T = kl_pool_threads(pool);
    kl_status st = kl_check_workspace(ws, ws_bytes, kl_scan_unfused_workspace(p, 1, T));
    if (st != KL_OK) return st;
    if (p->state > 1024) return kl_fail(KL_ERR_INVALID_ARGUMENT, "unfused backward supports state <= 1024");
    unf_ctx ctx = {0};
    kl_scan_geom_init(p, &ctx.g);
    ctx.ops = kl_ops_active();
    ctx.sops = kl_scan_ops_for(kl_isa_active());
    ctx.in = in; ctx.dout = dout; ctx.dlast = dlast; ctx.gr = gr;
    carve(&ctx, ws);
    ctx.part[0] = (kl_scan_partials){gr->dA, gr->dB, gr->dC, gr->dD, gr->ddelta_bias};
    char *pbase = (char *)ctx.dy + kl_round_up((size_t)ctx.g.B * ctx.g.D * ctx.g.L * 4, 64);
    for (int t = 1; t < T; t++)
        kl_scan_partials_carve(&ctx.g, pbase + (size_t)(t - 1) * kl_scan_partials_bytes(&ctx.g), &ctx.part[t]);
    kl_pool_run(pool, zero_worker, &ctx);
    run_passes(&ctx, 4, pool);  // recompute (0-3, y kept, no out), then backward (4)
    kl_scan_partials_reduce(&ctx.g, ctx.part, T, gr->dD != NULL, gr->ddelta_bias != NULL, pool);
    return KL_OK;
}
