// Element-wise layer kernels: activations (SiLU, GELU in its tanh form,
// softplus), the AdamW step and sums of squares (the global gradient norm).
// Checks, the split over the pool's threads and the cost models; the lanes
// are in elementwise_lanes.inc, compiled per ISA in src/isa.
#include "../core/internal.h"
#include <string.h>

typedef struct {
    const kl_elementwise_ops *ops;
    kl_activation kind;
    long n;
    const float *x, *dy;
    float *y;  // y (forward) or dx (backward)
    int backward, accumulate;
} act_ctx;

// Thread tid's slice [lo, hi) of n: contiguous, a multiple of 16 elements
// but the last, so every vector but the final tail is full.
static void slice(long n, int tid, int nthreads, long *lo, long *hi) {
    long blocks = (n + 15) / 16;
    *lo = blocks * tid / nthreads * 16;
    *hi = blocks * (tid + 1) / nthreads * 16;
    if (*hi > n) *hi = n;
}

static void act_worker(void *vctx, int tid, int nthreads) {
    act_ctx *c = vctx;
    long lo, hi;
    slice(c->n, tid, nthreads, &lo, &hi);
    if (hi <= lo) return;
    if (c->backward) c->ops->act_bwd(c->kind, hi - lo, c->x + lo, c->dy + lo, c->y + lo, c->accumulate);
    else c->ops->act_fwd(c->kind, hi - lo, c->x + lo, c->y + lo);
}

static kl_status act_kind_check(kl_activation kind, long n) {
    if (kind != KL_ACT_SILU && kind != KL_ACT_GELU_TANH && kind != KL_ACT_SOFTPLUS)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: unknown kind %d", (int)kind);
    if (n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: n must be >= 0 (got %ld)", n);
    return KL_OK;
}

static kl_status act_check(kl_activation kind, long n, const void *x, const void *out, kl_pool *pool) {
    kl_status st = act_kind_check(kind, n);
    if (st != KL_OK) return st;
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: pool is NULL");
    if (n > 0 && (!x || !out)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: a tensor is NULL");
    return KL_OK;
}

kl_status kl_act_fwd(kl_activation kind, long n, const float *x, float *y, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = act_check(kind, n, x, y, pool)) != KL_OK) return st;
    if (x != y && kl_overlap_n(x, y, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: y overlaps x (only y == x is allowed)");
    act_ctx c = {kl_elementwise_ops_for(kl_isa_active()), kind, n, x, NULL, y, 0, 0};
    if (n > 0) kl_pool_run(pool, act_worker, &c);
    return KL_OK;
}

kl_status kl_act_bwd(kl_activation kind, long n, const float *x, const float *dy, float *dx, int accumulate,
                     kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = act_check(kind, n, x, dx, pool)) != KL_OK) return st;
    if (n > 0 && !dy) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dy is NULL");
    if (kl_overlap_n(dx, x, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dx overlaps x");
    if (dx != dy && kl_overlap_n(dx, dy, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dx overlaps dy (only dx == dy is allowed)");
    act_ctx c = {kl_elementwise_ops_for(kl_isa_active()), kind, n, x, dy, dx, 1, accumulate != 0};
    if (n > 0) kl_pool_run(pool, act_worker, &c);
    return KL_OK;
}

// Per element, counting vector operations of the lanes (an exp as 1, a log
// as 1, a division as 1); exps counts exp and log evaluations:
//   silu      fwd: sigmoid (neg, exp, add, div) + mul = 5, 1 exp;  bwd: sigmoid + 4 + mul by dy = 9, 1 exp
//   gelu_tanh fwd: 3 for x^3 a + x, mul c, tanh (mul, exp, add, div, sub), 3 = 12, 1 exp
//             bwd: 15 for t, du and the product, + mul by dy = 19, 1 exp
//   softplus  fwd: abs, neg, exp, add, log, max, add, select = 8, 2 (exp, log);  bwd: sigmoid + mul = 5, 1 exp
// Accumulation adds one add per element.
kl_status kl_act_cost(kl_activation kind, long n, kl_pass pass, int accumulate, kl_cost *out) {
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation cost: out is NULL");
    kl_status st = act_kind_check(kind, n);
    if (st != KL_OK) return st;
    static const double ops[3][2] = {{5, 9}, {12, 19}, {8, 5}}, exps[3][2] = {{1, 1}, {1, 1}, {2, 1}};
    int b = pass == KL_PASS_BACKWARD;
    double e = (double)n;
    out->flops = e * (ops[kind][b] + (b && accumulate ? 1 : 0));
    out->exps = e * exps[kind][b];
    out->min_bytes = 4.0 * e * (b ? (accumulate ? 4 : 3) : 2);
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}

// ------------------------------------------------------------------ AdamW ---

typedef struct {
    const kl_elementwise_ops *ops;
    long n;
    float *p, *m, *v;
    const float *g;
    kl_adamw_lanes h;
} adamw_ctx;

static void adamw_worker(void *vctx, int tid, int nthreads) {
    adamw_ctx *c = vctx;
    long lo, hi;
    slice(c->n, tid, nthreads, &lo, &hi);
    if (hi > lo) c->ops->adamw(hi - lo, c->p + lo, c->g + lo, c->m + lo, c->v + lo, &c->h);
}

// The checks of an AdamW step (fused or not) and its lanes' hyperparameters.
static kl_status adamw_prepare(long n, const float *p, const float *g, const float *m, const float *v,
                               const kl_adamw_params *hp, long step, kl_pool *pool, kl_adamw_lanes *out) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if (n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: n must be >= 0 (got %ld)", n);
    if (!hp || !pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: %s is NULL", hp ? "pool" : "params");
    if (step < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: step must be >= 1 (got %ld)", step);
    if (!(hp->beta1 >= 0 && hp->beta1 < 1) || !(hp->beta2 >= 0 && hp->beta2 < 1))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: betas must be in [0, 1) (got %g, %g)", hp->beta1, hp->beta2);
    if (!(hp->eps > 0) || !(hp->lr >= 0) || !(hp->weight_decay >= 0) || !isfinite(hp->grad_scale))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: need eps > 0, lr >= 0, weight_decay >= 0, a finite grad_scale");
    if (n == 0) return KL_OK;
    if (!p || !g || !m || !v) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: a buffer is NULL");
    const float *bufs[4] = {p, g, m, v};
    static const char *const names[4] = {"p", "g", "m", "v"};
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++)
            if (kl_overlap_n(bufs[a], bufs[b], n))
                return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw: %s and %s overlap", names[a], names[b]);
    // Bias corrections in double: 1 - beta^t loses digits in float for small t.
    double c1 = 1.0 / (1.0 - pow((double)hp->beta1, (double)step)), c2 = 1.0 / (1.0 - pow((double)hp->beta2, (double)step));
    *out = (kl_adamw_lanes){hp->lr, hp->beta1, hp->beta2, hp->eps, hp->weight_decay, hp->grad_scale, (float)c1, (float)c2};
    return KL_OK;
}

kl_status kl_adamw(long n, float *p, const float *g, float *m, float *v, const kl_adamw_params *hp, long step,
                   kl_pool *pool) {
    adamw_ctx c = {NULL, n, p, m, v, g, {0}};
    kl_status st = adamw_prepare(n, p, g, m, v, hp, step, pool, &c.h);  // kl_init first, then the ISA
    if (st != KL_OK || n == 0) return st;
    c.ops = kl_elementwise_ops_for(kl_isa_active());
    kl_pool_run(pool, adamw_worker, &c);
    return KL_OK;
}

// The unfused twin: one pass over memory per update equation, as a framework
// without fusion runs them (plain loops; memory-bound, so the ISA does not
// matter at sizes past the caches):
//   1. m = b1 m + (1 - b1) s g          reads m, g; writes m
//   2. v = b2 v + (1 - b2) (s g)^2      reads v, g; writes v
//   3. p = (1 - lr wd) p                reads p; writes p
//   4. p -= lr c1 m / (sqrt(c2 v) + eps) reads p, m, v; writes p
// 48 bytes per parameter against the fused step's 28 (kl_adamw_unfused_cost).
typedef struct {
    long n;
    float *p, *m, *v;
    const float *g;
    kl_adamw_lanes h;
    int pass;
} adamw_unfused_ctx;

static void adamw_unfused_worker(void *vctx, int tid, int nthreads) {
    adamw_unfused_ctx *c = vctx;
    long lo, hi;
    slice(c->n, tid, nthreads, &lo, &hi);
    const kl_adamw_lanes h = c->h;
    float *restrict p = c->p, *restrict m = c->m, *restrict v = c->v;
    const float *restrict g = c->g;
    switch (c->pass) {
    case 0: for (long i = lo; i < hi; i++) m[i] = h.beta1 * m[i] + (1.0f - h.beta1) * (h.grad_scale * g[i]); break;
    case 1: for (long i = lo; i < hi; i++) { float gg = h.grad_scale * g[i]; v[i] = h.beta2 * v[i] + (1.0f - h.beta2) * gg * gg; } break;
    case 2: for (long i = lo; i < hi; i++) p[i] *= 1.0f - h.lr * h.weight_decay; break;
    default: for (long i = lo; i < hi; i++) p[i] -= h.lr * (m[i] * h.c1 / (sqrtf(v[i] * h.c2) + h.eps)); break;
    }
}

kl_status kl_adamw_unfused(long n, float *p, const float *g, float *m, float *v, const kl_adamw_params *hp, long step,
                           kl_pool *pool) {
    adamw_unfused_ctx c = {n, p, m, v, g, {0}, 0};
    kl_status st = adamw_prepare(n, p, g, m, v, hp, step, pool, &c.h);
    if (st != KL_OK || n == 0) return st;
    for (c.pass = 0; c.pass < 4; c.pass++) kl_pool_run(pool, adamw_unfused_worker, &c);
    return KL_OK;
}

kl_status kl_adamw_unfused_cost(long n, kl_cost *out) {
    kl_status st = kl_adamw_cost(n, out);
    if (st != KL_OK) return st;
    out->min_bytes = out->dram_bytes = out->l3_bytes = out->l2_bytes = 48.0 * (double)n;
    return KL_OK;
}

// Per parameter: 3 for g' and m, 4 for v, 7 for the update (a sqrt and a
// division counted as one each) = 14 FLOPs; p, g, m, v read and p, m, v
// written: 28 bytes, the whole cost of a memory-bound step.
kl_status kl_adamw_cost(long n, kl_cost *out) {
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw cost: out is NULL");
    if (n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "adamw cost: n must be >= 0 (got %ld)", n);
    out->flops = 14.0 * (double)n;
    out->exps = 0;
    out->min_bytes = out->dram_bytes = out->l3_bytes = out->l2_bytes = 28.0 * (double)n;
    return KL_OK;
}

// ------------------------------------------------------- sums of squares ---

typedef struct {
    const kl_elementwise_ops *ops;
    long n;
    const float *x;
    double partial[KL_MAX_THREADS];
} sumsq_ctx;

static void sumsq_worker(void *vctx, int tid, int nthreads) {
    sumsq_ctx *c = vctx;
    long lo, hi;
    slice(c->n, tid, nthreads, &lo, &hi);
    c->partial[tid] = hi > lo ? c->ops->sum_squares(hi - lo, c->x + lo) : 0.0;
}

kl_status kl_sum_squares(long n, const float *x, double *out, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if (n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "sum_squares: n must be >= 0 (got %ld)", n);
    if (!out || !pool || (n > 0 && !x)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "sum_squares: a pointer is NULL");
    *out = 0;
    if (n == 0) return KL_OK;
    sumsq_ctx c = {kl_elementwise_ops_for(kl_isa_active()), n, x, {0}};
    kl_pool_run(pool, sumsq_worker, &c);
    // Summed in thread order, so a given thread count gives the same bits every time.
    for (int t = 0; t < kl_pool_threads(pool); t++) *out += c.partial[t];
    return KL_OK;
}

// Cost of kl_sum_squares: a multiply and an add per float, each read once.
kl_status kl_sum_squares_cost(long n, kl_cost *c) {
    if (!c || n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "sum_squares cost: need out and n >= 0");
    c->flops = 2.0 * (double)n;
    c->exps = 0;
    c->min_bytes = c->dram_bytes = c->l3_bytes = c->l2_bytes = 4.0 * (double)n;
    return KL_OK;
}

// ------------------------------------------------------------ row norms ---

typedef struct {
    const kl_elementwise_ops *ops;
    int rms, d, accumulate;
    long rows;
    float eps;
    const float *x, *w, *b, *mean_in, *rstd_in, *dy;
    float *y, *mean, *rstd, *dx;
    float *parts;  // (threads, 2, d): this thread's dw, then db
} norm_ctx;


static void norm_fwd_worker(void *vctx, int tid, int nthreads) {
    norm_ctx *c = vctx;
    long lo, hi;
    kl_split(c->rows, tid, nthreads, &lo, &hi);
    if (hi > lo)
        c->ops->norm_fwd(c->rms, hi - lo, c->d, c->x + lo * c->d, c->w, c->b, c->eps, c->y + lo * c->d,
                         c->rms ? NULL : c->mean + lo, c->rstd + lo);
}

static void norm_bwd_worker(void *vctx, int tid, int nthreads) {
    norm_ctx *c = vctx;
    long lo, hi;
    kl_split(c->rows, tid, nthreads, &lo, &hi);
    float *dw = c->parts + (size_t)tid * 2 * c->d, *db = dw + c->d;
    memset(dw, 0, 2 * (size_t)c->d * sizeof(float));
    if (hi > lo)
        c->ops->norm_bwd(c->rms, hi - lo, c->d, c->x + lo * c->d, c->w, c->rms ? NULL : c->mean_in + lo, c->rstd_in + lo,
                         c->dy + lo * c->d, c->dx + lo * c->d, c->accumulate, dw, db);
}

static kl_status norm_check(long rows, int d, const void *x, const void *w, const void *y, kl_pool *pool) {
    if (rows < 0 || d < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: need rows >= 0 and d >= 1 (got %ld, %d)", rows, d);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: pool is NULL");
    if (rows > 0 && (!x || !w || !y)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: a tensor is NULL");
    return KL_OK;
}

static kl_status norm_fwd(int rms, long rows, int d, const float *x, const float *w, const float *b, float eps,
                          float *y, float *mean, float *rstd, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = norm_check(rows, d, x, w, y, pool)) != KL_OK) return st;
    if (!(eps > 0)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: eps must be > 0 (got %g)", eps);
    if (rows > 0 && (!rstd || (!rms && !mean))) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: mean or rstd is NULL");
    if (y != x && kl_overlap_n(y, x, rows * d))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: y overlaps x (only y == x is allowed)");
    norm_ctx c = {kl_elementwise_ops_for(kl_isa_active()), rms, d, 0, rows, eps, x, w, b, NULL, NULL, NULL, y, mean, rstd, NULL, NULL};
    if (rows > 0) kl_pool_run(pool, norm_fwd_worker, &c);
    return KL_OK;
}

kl_status kl_layernorm_fwd(long rows, int d, const float *x, const float *weight, const float *bias, float eps, float *y,
                           float *mean, float *rstd, kl_pool *pool) {
    return norm_fwd(0, rows, d, x, weight, bias, eps, y, mean, rstd, pool);
}

kl_status kl_rmsnorm_fwd(long rows, int d, const float *x, const float *weight, float eps, float *y, float *rstd,
                         kl_pool *pool) {
    return norm_fwd(1, rows, d, x, weight, NULL, eps, y, NULL, rstd, pool);
}

size_t kl_norm_bwd_workspace_bytes(int d, int threads) {
    return d < 1 || threads < 1 ? 0 : kl_round_up((size_t)threads * 2 * (size_t)d * sizeof(float), 64);
}

static kl_status norm_bwd(int rms, long rows, int d, const float *x, const float *w, const float *mean, const float *rstd,
                          const float *dy, float *dx, float *dw, float *db, int accumulate, void *ws, size_t ws_bytes,
                          kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = norm_check(rows, d, x, w, dx, pool)) != KL_OK) return st;
    if (!dw || (!rms && !db)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: a weight gradient is NULL");
    if (rows > 0 && (!dy || !rstd || (!rms && !mean))) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: dy, mean or rstd is NULL");
    if (kl_overlap_n(dx, x, rows * d)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: dx overlaps x");
    if (dx != dy && kl_overlap_n(dx, dy, rows * d))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm: dx overlaps dy (only dx == dy is allowed)");
    int T = kl_pool_threads(pool);
    if ((st = kl_check_workspace(ws, ws_bytes, kl_norm_bwd_workspace_bytes(d, T))) != KL_OK) return st;
    norm_ctx c = {kl_elementwise_ops_for(kl_isa_active()), rms, d, accumulate != 0, rows, 0, x, w, NULL, mean, rstd, dy,
                  NULL, NULL, NULL, dx, ws};
    if (rows > 0) kl_pool_run(pool, norm_bwd_worker, &c);
    // The partials in thread order: a given thread count gives the same bits.
    for (int k = 0; k < d; k++) {
        float sw = accumulate ? dw[k] : 0.0f, sb = (!rms && accumulate) ? db[k] : 0.0f;
        for (int t = 0; rows > 0 && t < T; t++) {
            sw += c.parts[(size_t)t * 2 * d + k];
            sb += c.parts[(size_t)t * 2 * d + d + k];
        }
        dw[k] = sw;
        if (!rms) db[k] = sb;
    }
    return KL_OK;
}

kl_status kl_layernorm_bwd(long rows, int d, const float *x, const float *weight, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dweight, float *dbias, int accumulate, void *ws,
                           size_t ws_bytes, kl_pool *pool) {
    return norm_bwd(0, rows, d, x, weight, mean, rstd, dy, dx, dweight, dbias, accumulate, ws, ws_bytes, pool);
}

kl_status kl_rmsnorm_bwd(long rows, int d, const float *x, const float *weight, const float *rstd, const float *dy,
                         float *dx, float *dweight, int accumulate, void *ws, size_t ws_bytes, kl_pool *pool) {
    return norm_bwd(1, rows, d, x, weight, NULL, rstd, dy, dx, dweight, NULL, accumulate, ws, ws_bytes, pool);
}

// Per element: LayerNorm forward 2 (sum) + 3 (squared deviation) + 4 (scale,
// weight, bias) = 9 FLOPs, RMSNorm 2 + 3 = 5 (the mean is skipped, no bias);
// backward 12 (LayerNorm) or 10. Bytes: x, y and the weights (forward);
// x, dy, dx, the weights and their gradients (backward; dx twice when
// accumulating). mean and rstd: 8 bytes per row.
kl_status kl_norm_cost(int rms, long rows, int d, kl_pass pass, int accumulate, kl_cost *out) {
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm cost: out is NULL");
    if (rows < 0 || d < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "norm cost: need rows >= 0 and d >= 1");
    double e = (double)rows * d, wb = (rms ? 1.0 : 2.0) * d * 4.0, stats = (double)rows * (rms ? 4.0 : 8.0);
    int b = pass == KL_PASS_BACKWARD;
    out->flops = e * (b ? (rms ? 10.0 : 12.0) : (rms ? 5.0 : 9.0));
    out->exps = 0;
    out->min_bytes = b ? 4.0 * e * (accumulate ? 4 : 3) + 2 * wb + stats : 8.0 * e + wb + stats;
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}

// ------------------------------------------------ softmax cross-entropy ---

typedef struct {
    const kl_elementwise_ops *ops;
    long rows;
    int V;
    const float *z, *mask;
    const int32_t *t;
    float scale;
    float *loss, *dz;
} xent_ctx;

static void xent_worker(void *vctx, int tid, int nthreads) {
    xent_ctx *c = vctx;
    long lo, hi;
    kl_split(c->rows, tid, nthreads, &lo, &hi);
    if (hi > lo)
        c->ops->xent_rows(hi - lo, c->V, c->z + lo * c->V, c->t + lo, c->mask ? c->mask + lo : NULL, c->scale,
                          c->loss ? c->loss + lo : NULL, c->dz ? c->dz + lo * c->V : NULL);
}

kl_status kl_cross_entropy(long rows, int V, const float *logits, const int32_t *targets, const float *mask,
                           float grad_scale, float *losses, float *dlogits, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if (rows < 0 || V < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: need rows >= 0 and V >= 1 (got %ld, %d)", rows, V);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: pool is NULL");
    if (rows == 0) return KL_OK;
    if (!logits || !targets) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: logits or targets is NULL");
    if (!losses && !dlogits) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: neither losses nor dlogits asked for");
    long n = rows * (long)V;
    if (dlogits != logits && kl_overlap_n(dlogits, logits, n))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: dlogits overlaps logits (only dlogits == logits is allowed)");
    // Every target a masked-in row reads must be a class: checked before any write.
    for (long r = 0; r < rows; r++)
        if ((!mask || mask[r] != 0.0f) && (targets[r] < 0 || targets[r] >= V))
            return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy: targets[%ld] = %d, expected 0 <= t < V = %d", r,
                           (int)targets[r], V);
    xent_ctx c = {kl_elementwise_ops_for(kl_isa_active()), rows, V, logits, mask, targets, grad_scale, losses, dlogits};
    kl_pool_run(pool, xent_worker, &c);
    return KL_OK;
}

// Per logit: 1 (max) + 3 (subtract, exp, add) for the loss, 1 more (the
// multiply by g / sum of the stored exps) for the gradient; one exp either
// way. Bytes: the logits once (a row of V <= 16K floats stays in L2 between
// the passes), dlogits written once; targets, mask and losses: 12 bytes per row.
kl_status kl_cross_entropy_cost(long rows, int V, int with_grad, kl_cost *out) {
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy cost: out is NULL");
    if (rows < 0 || V < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cross_entropy cost: need rows >= 0 and V >= 1");
    double e = (double)rows * V;
    out->flops = e * (with_grad ? 5.0 : 4.0);
    out->exps = e;
    out->min_bytes = 4.0 * e * (with_grad ? 2.0 : 1.0) + 12.0 * (double)rows;
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}

// -------------------------------------------------------------- LSTM cell ---

typedef struct {
    const kl_elementwise_ops *ops;
    long rows, H;
    const float *a, *cp, *c, *dh, *dcn;
    float *c_out, *h, *da, *dcp;
} lstm_ctx;

static void lstm_worker(void *vctx, int tid, int nthreads) {
    lstm_ctx *x = vctx;
    long lo, hi, H = x->H;
    kl_split(x->rows, tid, nthreads, &lo, &hi);
    if (hi <= lo) return;
    if (x->da)
        x->ops->lstm_bwd(hi - lo, H, x->a + lo * 4 * H, x->cp + lo * H, x->c + lo * H, x->dh + lo * H,
                         x->dcn ? x->dcn + lo * H : NULL, x->da + lo * 4 * H, x->dcp + lo * H);
    else
        x->ops->lstm_fwd(hi - lo, H, x->a + lo * 4 * H, x->cp + lo * H, x->c_out + lo * H, x->h + lo * H);
}

static kl_status lstm_check(long rows, long H, kl_pool *pool) {
    if (rows < 0 || H < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "lstm: need rows >= 0 and H >= 1 (got %ld, %ld)", rows, H);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "lstm: pool is NULL");
    return kl_init();
}

kl_status kl_lstm_cell_fwd(long rows, long H, const float *gates, const float *c_prev, float *c, float *h, kl_pool *pool) {
    kl_status st = lstm_check(rows, H, pool);
    if (st != KL_OK || rows == 0) return st;
    if (!gates || !c_prev || !c || !h) return kl_fail(KL_ERR_INVALID_ARGUMENT, "lstm: a tensor is NULL");
    lstm_ctx x = {kl_elementwise_ops_for(kl_isa_active()), rows, H, gates, c_prev, NULL, NULL, NULL, c, h, NULL, NULL};
    kl_pool_run(pool, lstm_worker, &x);
    return KL_OK;
}

kl_status kl_lstm_cell_bwd(long rows, long H, const float *gates, const float *c_prev, const float *c, const float *dh,
                           const float *dc_next, float *dgates, float *dc_prev, kl_pool *pool) {
    kl_status st = lstm_check(rows, H, pool);
    if (st != KL_OK || rows == 0) return st;
    if (!gates || !c_prev || !c || !dh || !dgates || !dc_prev) return kl_fail(KL_ERR_INVALID_ARGUMENT, "lstm: a tensor is NULL");
    lstm_ctx x = {kl_elementwise_ops_for(kl_isa_active()), rows, H, gates, c_prev, c, dh, dc_next, NULL, NULL, dgates, dc_prev};
    kl_pool_run(pool, lstm_worker, &x);
    return KL_OK;
}

// Per unit: forward 3 sigmoids and 2 tanh (an exp and a division each: 5
// exps) and 4 FLOPs of the state update; backward the same 5 exps again
// (recomputed, nothing saved but c) and about 20 FLOPs. Bytes: gates, c_prev
// read and c, h written (forward: 4H + H + 2H per row); gates, c_prev, c, dh,
// dc_next read and dgates, dc_prev written (backward).
kl_status kl_lstm_cell_cost(long rows, long H, kl_pass pass, kl_cost *out) {
    if (!out || rows < 0 || H < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "lstm cost: need out, rows >= 0, H >= 1");
    double u = (double)rows * H;
    int b = pass == KL_PASS_BACKWARD;
    out->exps = 5.0 * u;
    out->flops = u * (b ? 30.0 : 19.0);
    out->min_bytes = 4.0 * u * (b ? 4 + 1 + 1 + 1 + 1 + 4 + 1 : 4 + 1 + 2);
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}
