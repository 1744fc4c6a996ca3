// Element-wise activations (SiLU, GELU in its tanh form, softplus): checks,
// the split over the pool's threads, and the cost model. The lanes are in
// activation_lanes.inc, compiled per ISA in src/isa.
#include "../core/internal.h"

typedef struct {
    const kl_act_ops *ops;
    kl_activation kind;
    long n;
    const float *x, *dy;
    float *y;  // y (forward) or dx (backward)
    int backward, accumulate;
} act_ctx;

// Contiguous slices, each a multiple of 16 elements but the last, so every
// vector but the final tail is full.
static void act_worker(void *vctx, int tid, int nthreads) {
    act_ctx *c = vctx;
    long blocks = (c->n + 15) / 16;
    long lo = blocks * tid / nthreads * 16, hi = blocks * (tid + 1) / nthreads * 16;
    if (hi > c->n) hi = c->n;
    if (hi <= lo) return;
    if (c->backward) c->ops->bwd(c->kind, hi - lo, c->x + lo, c->dy + lo, c->y + lo, c->accumulate);
    else c->ops->fwd(c->kind, hi - lo, c->x + lo, c->y + lo);
}

static int act_overlap(const float *a, const float *b, long n) {
    return a != b && a < b + n && b < a + n;
}

static kl_status act_check(kl_activation kind, long n, const void *x, const void *out, kl_pool *pool) {
    if (kind != KL_ACT_SILU && kind != KL_ACT_GELU_TANH && kind != KL_ACT_SOFTPLUS)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: unknown kind %d", (int)kind);
    if (n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: n must be >= 0 (got %ld)", n);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: pool is NULL");
    if (n > 0 && (!x || !out)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: a tensor is NULL");
    return KL_OK;
}

kl_status kl_act_fwd(kl_activation kind, long n, const float *x, float *y, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = act_check(kind, n, x, y, pool)) != KL_OK) return st;
    if (act_overlap(x, y, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: y overlaps x (only y == x is allowed)");
    act_ctx c = {kl_act_ops_for(kl_isa_active()), kind, n, x, NULL, y, 0, 0};
    if (n > 0) kl_pool_run(pool, act_worker, &c);
    return KL_OK;
}

kl_status kl_act_bwd(kl_activation kind, long n, const float *x, const float *dy, float *dx, int accumulate,
                     kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = act_check(kind, n, x, dx, pool)) != KL_OK) return st;
    if (n > 0 && !dy) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dy is NULL");
    if (n > 0 && (act_overlap(dx, x, n) || dx == x)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dx overlaps x");
    if (act_overlap(dx, dy, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "activation: dx overlaps dy (only dx == dy is allowed)");
    act_ctx c = {kl_act_ops_for(kl_isa_active()), kind, n, x, dy, dx, 1, accumulate != 0};
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
    kl_status st = act_check(kind, n, out, out, (kl_pool *)out);
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
