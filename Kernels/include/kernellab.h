// KernelLab C API: fused and unfused kernels, ISA dispatch, thread pool, buffers.
//
// Conventions
// - Every function that can fail returns a kl_status; kl_last_error() gives a
//   human-readable detail for the calling thread (empty string when none).
// - Tensors are fp32, contiguous, C order. Shapes are given in comments as
//   `// q: (B, H, Lq, d)`.
// - Kernels never allocate: the caller passes a workspace of at least
//   *_workspace_bytes() bytes (64-byte aligned). The workspace size is the
//   kernel's whole extra memory, so it is also its "peak extra bytes".
// - Threads are a parameter: every kernel runs on a kl_pool of T threads. The
//   unfused kernels give OpenBLAS the same T.
// - NaN policy: kernels do not scan their inputs; a NaN or Inf in an input
//   propagates to the outputs that depend on it.
#ifndef KERNELLAB_H
#define KERNELLAB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------- status ---

typedef enum {
    KL_OK = 0,
    KL_ERR_INVALID_ARGUMENT = 1,  // a null pointer, a non-positive size, a bad option
    KL_ERR_SHAPE = 2,             // shapes that do not agree
    KL_ERR_WORKSPACE = 3,         // workspace missing, too small or misaligned
    KL_ERR_ALLOC = 4,             // out of memory
    KL_ERR_UNSUPPORTED_ISA = 5,   // the requested ISA is not available on this CPU
    KL_ERR_THREADS = 6,           // thread creation or a bad thread count
} kl_status;

const char *kl_status_name(kl_status status);
/// Detail of the last error on the calling thread ("" when none).
const char *kl_last_error(void);

// ------------------------------------------------------------------- ISA ---

typedef enum {
    KL_ISA_SCALAR = 0,  // portable C, builds anywhere
    KL_ISA_AVX2 = 1,    // AVX2 + FMA
    KL_ISA_AVX512 = 2,  // AVX-512 F/VL/DQ/BW
    KL_ISA_COUNT = 3,
} kl_isa;

/// Chooses the ISA once: KERNELLAB_ISA=scalar|avx2|avx512 if set (an
/// unsupported or unknown value is KL_ERR_UNSUPPORTED_ISA), else the best the
/// CPU supports. Safe to call repeatedly; kernels call it themselves.
kl_status kl_init(void);
kl_isa kl_isa_active(void);
int kl_isa_supported(kl_isa isa);
/// Switches the active ISA (for measuring each path in one process).
kl_status kl_isa_set(kl_isa isa);
const char *kl_isa_name(kl_isa isa);
/// Parses "scalar", "avx2", "avx512". Returns KL_ERR_INVALID_ARGUMENT otherwise.
kl_status kl_isa_parse(const char *name, kl_isa *out);

// ---------------------------------------------------------------- system ---

/// CPU brand string from CPUID (or "unknown").
const char *kl_cpu_model(void);
/// Online logical CPUs.
int kl_cpu_count(void);
/// Configured NUMA nodes (1 when libnuma reports NUMA unavailable).
int kl_numa_nodes(void);
/// OpenBLAS build configuration and the core it selected, e.g.
/// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" and "Zen".
const char *kl_blas_config(void);
const char *kl_blas_core(void);
/// Cache size in bytes for level 1, 2, 3 (data/unified) from sysfs or sysconf, 0 if
/// unknown. KERNELLAB_L1_BYTES, KERNELLAB_L2_BYTES and KERNELLAB_LLC_BYTES=<bytes>
/// override levels 1, 2 and 3 (the cost models read them; the traffic validation
/// sets them to the simulated geometry).
size_t kl_cache_bytes(int level);

// --------------------------------------------------------------- buffers ---

/// 64-byte aligned allocation, placed on the calling thread's NUMA node when
/// libnuma is available. Returns NULL on failure. Free with kl_free(p, bytes).
void *kl_alloc(size_t bytes);
void kl_free(void *p, size_t bytes);

// ----------------------------------------------------------- thread pool ---

typedef struct kl_pool kl_pool;
/// Creates a pool of `threads` workers (1 = run on the caller only). Workers
/// are pinned round-robin over the CPUs of the NUMA nodes (KERNELLAB_PIN=0
/// disables pinning).
kl_status kl_pool_create(int threads, kl_pool **out);
void kl_pool_destroy(kl_pool *pool);
int kl_pool_threads(const kl_pool *pool);
/// Runs fn(ctx, tid, nthreads) on every thread of the pool, the caller being
/// tid 0, and returns when all have finished.
void kl_pool_run(kl_pool *pool, void (*fn)(void *ctx, int tid, int nthreads), void *ctx);

// ------------------------------------------------------------ cost model ---

/// FLOPs and bytes of one kernel call. `flops` follows the kernel's stated
/// convention; the byte fields model the traffic across each cache boundary
/// (see each kernel). Each is one function of a capacity, the size of the cache
/// above that boundary: dram_bytes of the LLC (level 3), l3_bytes of the L2,
/// l2_bytes of the L1d, so l2_bytes >= l3_bytes >= dram_bytes >= min_bytes
/// whenever the cache sizes grow with the level.
typedef struct {
    double flops;
    double min_bytes;    // compulsory: read inputs once, write outputs once
    double dram_bytes;   // modelled DRAM traffic including re-reads and materialized tensors
    double exps;         // transcendental evaluations (exp/log), counted separately
    double l3_bytes;     // modelled L3 <-> L2 traffic: L2 misses (fetches) + L2 write-backs
    double l2_bytes;     // modelled L2 <-> L1 traffic: L1d misses + L1d write-backs (rougher)
} kl_cost;

typedef enum { KL_IMPL_FUSED = 0, KL_IMPL_UNFUSED = 1 } kl_impl;
typedef enum { KL_PASS_FORWARD = 0, KL_PASS_BACKWARD = 1 } kl_pass;

// -------------------------------------------------------------- attention ---

/// Tile sizes of the fused kernel (data, not code). Zero fields take the
/// active ISA's defaults (kl_attn_default_tiles).
typedef struct {
    int q_block;    // query rows per work item (forward) / per inner block (backward), 1...65536
    int kv_block;   // keys per tile, 1...4096 (rounded up to a multiple of 16)
} kl_attn_tiles;

/// Strides, in floats, of one (B, H, L, d) tensor's batch, head and row axes;
/// its last axis (d) is always contiguous. All three zero: the packed layout
/// (H L d, L d, d). Examples: (L H d, d, H d) is (B, L, H, d), the layout of a
/// projection's output; q, k and v read in place from a fused (B, L, 3, H, d)
/// projection are (3 L H d, d, 3 H d) at offsets 0, H d and 2 H d; a KV cache
/// of capacity C read at its current length is (H C d, C d, d).
typedef struct {
    long batch, head, row;
} kl_attn_strides;

/// The layouts of one call's tensors. A gradient has the layout of its
/// tensor: dq of q, dk of k, dv of v, dout of o. lse is always (B, H, Lq).
/// Within a tensor no two elements may share memory.
typedef struct {
    kl_attn_strides q, k, v, o;
} kl_attn_layout;

/// Shape and options of one attention call.
/// q: (B, H, Lq, d), k and v: (B, H, Lk, d), o: (B, H, Lq, d), lse: (B, H, Lq)
/// (each laid out as `layout` says; packed by default).
/// Query i is aligned to the end of the keys: its position is i' = i + Lk - Lq.
/// Key j is visible to query i iff
///   (!causal || j <= i') && (window[h] <= 0 || 0 <= i' - j < window[h]).
/// ALiBi adds -slope[h] * |i' - j| to the scaled score.
/// A query that sees no key gets o = 0 and lse = -inf (its gradients are 0).
typedef struct {
    int batch, heads, q_len, kv_len, head_dim;
    int causal;                   // 0 or 1
    float scale;                  // softmax scale; 0 means 1/sqrt(head_dim)
    const float *alibi_slopes;    // (H) or NULL
    const int32_t *windows;       // (H) or NULL; window[h] <= 0 is unlimited
    /// This call's tiles, or NULL for the defaults. Per call, not per process:
    /// the workspace sizes of the fused kernels follow them.
    const kl_attn_tiles *tiles;
    /// Strides of q, k, v, o and their gradients, or NULL for the packed layout.
    const kl_attn_layout *layout;
    /// Backward only: 1 adds the gradients into dq, dk and dv (tied weights,
    /// gradient accumulation, a gradient buffer shared by several uses);
    /// 0 overwrites them.
    int accumulate;
} kl_attn_params;

kl_status kl_attn_check(const kl_attn_params *p);
/// The active ISA's tiles (kl_ops' blocking), which a call with tiles NULL uses.
void kl_attn_default_tiles(const kl_attn_params *p, kl_attn_tiles *out);

size_t kl_attn_fwd_workspace_bytes(const kl_attn_params *p, kl_impl impl, int threads);
size_t kl_attn_bwd_workspace_bytes(const kl_attn_params *p, kl_impl impl, int threads);

/// Forward: o = softmax(scale * q k^T + bias, masked) v and lse = logsumexp of each row.
kl_status kl_attn_fwd(const kl_attn_params *p, kl_impl impl,
                      const float *q, const float *k, const float *v,
                      float *o, float *lse,
                      void *workspace, size_t workspace_bytes, kl_pool *pool);

/// Backward: given o, lse from the forward and dout (B, H, Lq, d), writes
/// (or, with p->accumulate, adds into) dq (B, H, Lq, d), dk and dv (B, H, Lk, d).
/// dq, dk and dv may be disjoint views of one buffer (a fused dqkv).
kl_status kl_attn_bwd(const kl_attn_params *p, kl_impl impl,
                      const float *q, const float *k, const float *v,
                      const float *o, const float *lse, const float *dout,
                      float *dq, float *dk, float *dv,
                      void *workspace, size_t workspace_bytes, kl_pool *pool);

/// Cost model. FLOPs follow FlashAttention's convention: forward
/// 4*B*H*Lq*Lk*d, halved when causal (exact for Lq == Lk), backward 2.5x
/// forward. exps counts one exp per visible score (forward), two in the
/// backward (recomputed P and the rescale are counted as one each).
kl_status kl_attn_cost(const kl_attn_params *p, kl_impl impl, kl_pass pass, kl_cost *out);

/// Decoding: attention of a few new queries over a KV cache, all heads
/// (Kernels/src/attention/attention_decode.c). p is the call as kl_attn_fwd
/// would see it: q_len (<= KL_ATTN_DECODE_MAX_Q) new queries, kv_len keys in
/// the cache including theirs, the same masks, scale, ALiBi and windows.
///   q, o: (B, H, q_len, d);  lse: (B, H, q_len) or NULL;
///   k_cache, v_cache: (B, H, capacity, d), rows [0, kv_len) read, capacity >= kv_len.
/// With p->layout, q, o, k_cache and v_cache take its strides instead (those of
/// k and v then say where the cache's rows are; capacity bounds kv_len only).
/// Results equal kl_attn_fwd's on the first kv_len rows up to rounding; they
/// depend on the thread count (a head's keys are split over threads when the
/// heads do not fill them).
#define KL_ATTN_DECODE_MAX_Q 64
size_t kl_attn_decode_workspace_bytes(const kl_attn_params *p, long capacity, int threads);
kl_status kl_attn_decode(const kl_attn_params *p, long capacity, const float *q, const float *k_cache,
                         const float *v_cache, float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool);
/// FLOPs 4 d per visible (query, key) pair and one exp each (counted exactly);
/// bytes: the K and V rows any query sees, once, q, o and lse.
kl_status kl_attn_decode_cost(const kl_attn_params *p, long capacity, kl_cost *out);

// ------------------------------------------------------- selective scan ---

/// Tiles of the fused scan. Zero fields take the defaults (kl_scan_default_tiles).
typedef struct {
    int chunk;            // time steps per chunk (the backward checkpoints every chunk), 1...65536
    int block_channels;   // channels per backward work item, 1...4096 (rounded up to 16 lanes)
} kl_scan_tiles;

/// Mamba-1 selective scan.
///   u, delta, z: (B, D, L); A: (D, N); Bm, C: (B, G, N, L) (G = 1: (B, N, L));
///   D, delta_bias: (D); h0, last_state: (B, D, N); out: (B, D, L).
/// delta' = softplus(delta + delta_bias) if delta_softplus else delta + delta_bias
/// h_t = exp(delta'_t * A) * h_{t-1} + delta'_t * Bm_t * u_t      (per channel d, state n)
/// y_t = <C_t, h_t> + D * u_t;   out = y * silu(z) when z is given.
/// Channel d uses group d / (D / G).
typedef struct {
    int batch, channels, seq_len, state, groups;  // groups >= 1, channels % groups == 0
    int delta_softplus;                           // 0 or 1
    /// This call's tiles, or NULL for the defaults. Per call, not per process:
    /// workspace sizes and the layout of the saved chunk states follow them,
    /// so a backward given saved states takes the tiles of their forward.
    const kl_scan_tiles *tiles;
} kl_scan_params;

/// Inputs; D, z, delta_bias and h0 may be NULL (absent).
typedef struct {
    const float *u, *delta, *A, *B, *C;
    const float *D, *z, *delta_bias, *h0;
} kl_scan_inputs;

/// Gradients, shaped like their inputs. du, ddelta, dA, dB, dC are required;
/// dD, dz, ddelta_bias, dh0 are written when non-NULL (and must be non-NULL
/// when the matching input is given, except dh0 which is optional). For an
/// absent input the gradient written is zero; dh0 is the gradient with respect
/// to the initial state even when h0 is absent (a zero state). A successful
/// call leaves kl_last_error() empty.
typedef struct {
    float *du, *ddelta, *dA, *dB, *dC;
    float *dD, *dz, *ddelta_bias, *dh0;
} kl_scan_grads;

kl_status kl_scan_check(const kl_scan_params *p);
void kl_scan_default_tiles(const kl_scan_params *p, kl_scan_tiles *out);
size_t kl_scan_fwd_workspace_bytes(const kl_scan_params *p, kl_impl impl, int threads);
size_t kl_scan_bwd_workspace_bytes(const kl_scan_params *p, kl_impl impl, int threads);

/// Floats in the chunk-boundary states a forward can save for its backward:
/// (B, D, ceil(L / chunk), N), the state before every chunk (1/chunk of the
/// B*D*L*N states; FlashAttention saves lse for the same reason).
size_t kl_scan_saved_count(const kl_scan_params *p);

/// saved: NULL, or kl_scan_saved_count() floats to keep for kl_scan_bwd.
kl_status kl_scan_fwd(const kl_scan_params *p, kl_impl impl, const kl_scan_inputs *in,
                      float *out, float *last_state, float *saved,
                      void *workspace, size_t workspace_bytes, kl_pool *pool);

/// dout: (B, D, L); dlast: (B, D, N) or NULL (no gradient into the last state).
/// saved: the forward's chunk states (same tiles), or NULL: the fused backward
/// then runs the forward once more to make them. The unfused one ignores it.
kl_status kl_scan_bwd(const kl_scan_params *p, kl_impl impl, const kl_scan_inputs *in,
                      const float *dout, const float *dlast, const float *saved,
                      const kl_scan_grads *grads,
                      void *workspace, size_t workspace_bytes, kl_pool *pool);

/// Cost model (see Kernels/src/scan/scan.c for the conventions).
kl_status kl_scan_cost(const kl_scan_params *p, kl_impl impl, kl_pass pass, kl_cost *out);

/// One step of the scan (decoding), the state updated in place. p->seq_len
/// must be 1, so the layouts above read: u, delta, z, out: (B, D);
/// Bm, C: (B, G, N); state: (B, D, N), h_{t-1} in, h_t out. in->h0 is not
/// read (state is the initial state). out may be u, delta or z.
kl_status kl_scan_step(const kl_scan_params *p, const kl_scan_inputs *in, float *state, float *out, kl_pool *pool);
/// FLOPs and bytes of one step (see Kernels/src/scan/scan_step.c).
kl_status kl_scan_step_cost(const kl_scan_params *p, kl_cost *out);

// ------------------------------------------------- element-wise activations ---

typedef enum {
    KL_ACT_SILU = 0,       // x sigmoid(x)
    KL_ACT_GELU_TANH = 1,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    KL_ACT_SOFTPLUS = 2,   // log(1 + e^x), e^x below -15
} kl_activation;

/// y: (n) = f(x), on the pool's threads. y may be x (in place), but must not
/// otherwise overlap it.
kl_status kl_act_fwd(kl_activation kind, long n, const float *x, float *y, kl_pool *pool);
/// dx: (n) = dy * f'(x), or dx += dy * f'(x) when accumulate. dx may be dy;
/// it must not overlap x.
kl_status kl_act_bwd(kl_activation kind, long n, const float *x, const float *dy, float *dx, int accumulate,
                     kl_pool *pool);
/// FLOPs (the vector operations per element, exp and log counted once each
/// and also in `exps`), bytes: x and y once (forward); x, dy, dx once, dx
/// twice when accumulating (backward). Memory-bound at any size that leaves L2.
kl_status kl_act_cost(kl_activation kind, long n, kl_pass pass, int accumulate, kl_cost *out);

// ------------------------------------------------------------ row norms ---

/// LayerNorm over the last dimension: x, y: (rows, d); weight, bias: (d)
/// (bias may be NULL); mean, rstd: (rows), saved for the backward.
///   y = (x - mean) rstd weight + bias,  rstd = 1 / sqrt(var + eps)
/// y may be x (in place), but must not otherwise overlap it.
kl_status kl_layernorm_fwd(long rows, int d, const float *x, const float *weight, const float *bias, float eps, float *y,
                           float *mean, float *rstd, kl_pool *pool);
/// RMSNorm: y = x rstd weight, rstd = 1 / sqrt(mean(x^2) + eps); rstd: (rows).
kl_status kl_rmsnorm_fwd(long rows, int d, const float *x, const float *weight, float eps, float *y, float *rstd,
                         kl_pool *pool);
/// The backward's workspace: per-thread partial sums of the weight gradients.
size_t kl_norm_bwd_workspace_bytes(int d, int threads);
/// dx: (rows, d) (+)= the input gradient; dweight, dbias: (d) (+)= their
/// gradients (accumulate adds to all three). dx may be dy, never x.
kl_status kl_layernorm_bwd(long rows, int d, const float *x, const float *weight, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dweight, float *dbias, int accumulate, void *ws,
                           size_t ws_bytes, kl_pool *pool);
kl_status kl_rmsnorm_bwd(long rows, int d, const float *x, const float *weight, const float *rstd, const float *dy,
                         float *dx, float *dweight, int accumulate, void *ws, size_t ws_bytes, kl_pool *pool);
/// FLOPs and bytes of either norm (rms = 0: LayerNorm, 1: RMSNorm).
kl_status kl_norm_cost(int rms, long rows, int d, kl_pass pass, int accumulate, kl_cost *out);

// ------------------------------------------------ softmax cross-entropy ---

/// Masked softmax cross-entropy fused with its gradient. logits, dlogits:
/// (rows, V); targets, mask, losses: (rows). mask NULL counts every row; a
/// row with mask 0 gets loss 0 and a zero gradient (its target is not read).
///   losses[r] = mask[r] (logsumexp(logits[r]) - logits[r, t_r])
///   dlogits[r] = grad_scale mask[r] (softmax(logits[r]) - onehot(t_r))
/// (grad_scale = 1 / the number of counted rows gives the mean loss's
/// gradient). Either output may be NULL; dlogits may be logits (in place).
/// A counted row's target outside [0, V) is an error, found before any write.
kl_status kl_cross_entropy(long rows, int V, const float *logits, const int32_t *targets, const float *mask,
                           float grad_scale, float *losses, float *dlogits, kl_pool *pool);
kl_status kl_cross_entropy_cost(long rows, int V, int with_grad, kl_cost *out);

// ------------------------------------------------- embedding, conv1d ---

/// out: (n, d) = table[ids]: (V, d) rows. An id outside [0, V) is an error.
kl_status kl_embedding_fwd(long n, int d, int V, const int32_t *ids, const float *table, float *out, kl_pool *pool);
/// dtable: (V, d) (+)= the scatter-add of dout: (n, d) rows at ids (rows no id
/// names are zeroed unless accumulate). Independent of the thread count.
kl_status kl_embedding_bwd(long n, int d, int V, const int32_t *ids, const float *dout, float *dtable, int accumulate,
                           kl_pool *pool);
/// Causal depthwise conv1d with bias (Mamba's, K = 4): x, y: (B, D, L);
/// weight: (D, K), K <= 64; bias: (D) or NULL.
///   y[b, c, l] = bias[c] + sum_{k < K} weight[c, k] x[b, c, l - K + 1 + k]   (x = 0 before l = 0)
kl_status kl_conv1d_fwd(int B, int D, int L, int K, const float *x, const float *weight, const float *bias, float *y,
                        kl_pool *pool);
/// dx: (B, D, L), dweight: (D, K), dbias: (D) or NULL, each written (or
/// added to with accumulate).
kl_status kl_conv1d_bwd(int B, int D, int L, int K, const float *x, const float *weight, const float *dy, float *dx,
                        float *dweight, float *dbias, int accumulate, kl_pool *pool);
/// One conv1d step (decoding): x, y: (B, D), one new time step; state:
/// (B, D, K - 1), the last K - 1 inputs, oldest first (zeros before the
/// sequence starts), shifted in place to end with x. y may be x.
kl_status kl_conv1d_step(int B, int D, int K, const float *x, const float *weight, const float *bias, float *state,
                         float *y, kl_pool *pool);
/// Costs: the embedding moves rows (backward: n d adds); the conv does 2 K
/// FLOPs per output forward, 4 K backward.
kl_status kl_embedding_cost(long n, int d, kl_pass pass, kl_cost *out);
kl_status kl_conv1d_cost(int B, int D, int L, int K, kl_pass pass, kl_cost *out);

// ------------------------------------------------------------ LSTM cell ---

/// The fused LSTM cell: gates (rows, 4H), the pre-activations [i | f | g | o]
/// (the two projections' sum); c_prev, c, h: (rows, H).
///   c = sigmoid(f) c_prev + sigmoid(i) tanh(g);  h = sigmoid(o) tanh(c)
kl_status kl_lstm_cell_fwd(long rows, long H, const float *gates, const float *c_prev, float *c, float *h, kl_pool *pool);
/// From dh (rows, H) and dc_next (the gradient reaching c from the next step,
/// or NULL): dgates (rows, 4H) and dc_prev (rows, H), both written.
kl_status kl_lstm_cell_bwd(long rows, long H, const float *gates, const float *c_prev, const float *c, const float *dh,
                           const float *dc_next, float *dgates, float *dc_prev, kl_pool *pool);
/// 5 exps per unit each way (3 sigmoids, 2 tanh); FLOPs and bytes as the code states.
kl_status kl_lstm_cell_cost(long rows, long H, kl_pass pass, kl_cost *out);

// ------------------------------------------------- linear layer, layouts ---

/// Linear layer on kl_gemm (Kernels/src/layers/linear.c):
///   x: (rows, in); w: (out, in); b: (out) or NULL; y: (rows, out)
///   y = x w^T + b, or y += x w^T + b when accumulate (a residual add for free).
kl_status kl_linear_fwd(long rows, int in, int out, const float *x, const float *w, const float *b, float *y,
                        int accumulate, kl_pool *pool);
/// dx: (rows, in) = dy w (+= when accumulate_dx; NULL skips it);
/// dw: (out, in) += dy^T x;  db: (out) += column sums of dy (NULL skips).
/// The weight gradients always accumulate: zero them once per step.
kl_status kl_linear_bwd(long rows, int in, int out, const float *x, const float *w, const float *dy, float *dx,
                        float *dw, float *db, int accumulate_dx, kl_pool *pool);
/// The GEMMs' FLOPs and every operand's bytes once (an estimate, as kl_gemm_cost's).
kl_status kl_linear_cost(long rows, int in, int out, int with_bias, int with_dx, kl_pass pass, kl_cost *cost);

/// Heads in front of time: x: (B, T, P, H, e) -> y: (P, B, H, T, e). P = 3
/// splits a fused QKV projection into q, k, v (B, H, T, d); P = 2, H = D,
/// e = 1 turns Mamba's (B, T, 2, D) projection into x and z (B, D, T).
/// kl_heads_merge is the inverse (and each is the other's backward).
kl_status kl_heads_split(int B, int T, int P, int H, int e, const float *x, float *y, kl_pool *pool);
kl_status kl_heads_merge(int B, int T, int P, int H, int e, const float *x, float *y, kl_pool *pool);
/// Cost of a split or merge of n floats: 8 n bytes, no FLOPs.
kl_status kl_permute_cost(long n, kl_cost *out);

/// Rotary positions (GPT-NeoX's rotate_half on the first rot of d dims):
/// table: (T, rot/2, 2) (cos, sin) of (pos0 + t) base^(-2i/rot).
kl_status kl_rope_table(int T, int rot, float base, long pos0, float *table);
/// x: (rows, T, d), rotated in place; inverse = 1 rotates back (the backward).
kl_status kl_rope(long rows, int T, int d, int rot, const float *table, int inverse, float *x, kl_pool *pool);
/// The same on a strided x: (B, T, V, d) with strides (sb, st, sv) in floats
/// (d contiguous): V vectors per position, each rotated by its position t.
/// For q and k read in place from a (B, T, 3, H, d) projection: V = 2 H,
/// strides (3 T H d, 3 H d, d). kl_rope(rows, T, d, ...) is B = rows, V = 1.
kl_status kl_rope_strided(long B, int T, int V, long sb, long st, long sv, int d, int rot, const float *table,
                          int inverse, float *x, kl_pool *pool);
/// Cost of kl_rope either way: 3 FLOPs and 8 bytes per rotated float, plus the table.
kl_status kl_rope_cost(long rows, int T, int rot, kl_cost *out);

// ------------------------------------------------------------ optimizer ---

/// AdamW's hyperparameters. grad_scale multiplies every gradient first (the
/// factor of global-norm clipping, fused into the step; 1 for none).
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
} kl_adamw_params;

/// One AdamW step (decoupled weight decay, bias correction) over flat fp32
/// buffers p, g, m, v: (n), none overlapping. step t >= 1 counts this update:
///   g' = grad_scale g;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
///   p -= lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay p)
kl_status kl_adamw(long n, float *p, const float *g, float *m, float *v, const kl_adamw_params *hp, long step,
                   kl_pool *pool);
/// 14 FLOPs and 28 bytes (p, g, m, v read; p, m, v written) per parameter.
kl_status kl_adamw_cost(long n, kl_cost *out);
/// The unfused twin of kl_adamw (the same update and checks): four passes
/// over memory, one per update equation; 48 bytes per parameter.
kl_status kl_adamw_unfused(long n, float *p, const float *g, float *m, float *v, const kl_adamw_params *hp, long step,
                           kl_pool *pool);
kl_status kl_adamw_unfused_cost(long n, kl_cost *out);
/// *out = sum of x[i]^2 (in double by blocks; summed over the pool's threads in
/// a fixed order): the square of a global gradient norm, buffer by buffer.
kl_status kl_sum_squares(long n, const float *x, double *out, kl_pool *pool);
/// Cost of kl_sum_squares: 2 FLOPs and 4 bytes per float.
kl_status kl_sum_squares_cost(long n, kl_cost *out);

// ------------------------------------------------------------- ceilings ---

typedef enum { KL_BW_READ = 0, KL_BW_COPY = 1, KL_BW_TRIAD = 2 } kl_bw_kernel;

/// Result of one timed ceiling run: the slowest thread's wall time bounds the
/// run (all threads start together), `amount` is FLOPs, exps or bytes in total.
typedef struct {
    double seconds;
    double amount;
} kl_ceiling_run;

/// Peak FLOP/s kernel: every pool thread runs `iters` iterations of
/// independent FMA chains (16 zmm or 12 ymm accumulators; scalar: 8 chains of
/// separate multiply and add, since the scalar build has no FMA instruction).
kl_status kl_ceiling_flops(kl_isa isa, long iters, kl_pool *pool, kl_ceiling_run *out);

/// exp throughput: every thread evaluates 2^x `iters` times over an
/// L1-resident buffer of 4096 floats with the ISA's vector exp (the one the
/// attention softmax uses).
kl_status kl_ceiling_exp(kl_isa isa, long iters, kl_pool *pool, kl_ceiling_run *out);

/// Memory bandwidth: every thread owns `bytes_per_thread` of arrays (NUMA
/// local, first touched by that thread) and runs the kernel over them `iters`
/// times. STREAM's byte counts: read 4 B/element, copy 8, triad 12 per element
/// (per float; write-allocate traffic not counted). `node` >= 0 places the
/// arrays on that NUMA node instead (remote bandwidth), -1 = local.
kl_status kl_ceiling_bandwidth(kl_isa isa, kl_bw_kernel kernel, size_t bytes_per_thread, long iters,
                               int node, kl_pool *pool, kl_ceiling_run *out);

/// Independent STREAM-style triad (cross-check of the DRAM triad above):
/// a[i] = b[i] + s * c[i] as a plain C loop (no intrinsics, baseline ISA),
/// three arrays of `array_bytes` each (0 = 4x the last-level cache, STREAM's
/// rule) shared by the pool's threads in static slices and first touched by
/// them, each pass timed on the caller fork/join included. Runs `trials`
/// passes (>= 2), discards the first and reports the fastest of the rest:
/// its seconds and 12 bytes per element (STREAM's count; write-allocate not
/// counted).
kl_status kl_ceiling_stream_triad_check(size_t array_bytes, int trials, kl_pool *pool, kl_ceiling_run *out);

// ------------------------------------------------------------------ BLAS ---

/// C (m x n) = A (m x k) B (k x n), row-major, through OpenBLAS with `threads`
/// threads. The in-run reference for every GFLOP/s figure.
kl_status kl_sgemm(int m, int n, int k, const float *a, const float *b, float *c, int threads);

typedef enum { KL_NO_TRANS = 0, KL_TRANS = 1 } kl_trans;

/// General matrix multiply (Kernels/src/gemm/gemm.c), row-major:
///   c: (m, n) = alpha op(a) op(b) + beta c
///   op(a): (m, k), a stored (m, k) (KL_NO_TRANS) or (k, m) (KL_TRANS), row stride lda;
///   op(b): (k, n), b stored (k, n) or (n, k), row stride ldb; c row stride ldc.
/// beta = 0 overwrites c without reading it; beta = 1 accumulates. Sizes may
/// be 0. c must not overlap a or b. OpenBLAS runs it on the pool's thread count.
kl_status kl_gemm(kl_trans ta, kl_trans tb, int m, int n, int k, float alpha, const float *a, long lda,
                  const float *b, long ldb, float beta, float *c, long ldc, kl_pool *pool);
/// FLOPs 2 m n k; bytes: a, b and c once (c twice when beta != 0).
kl_status kl_gemm_cost(int m, int n, int k, float beta, kl_cost *out);

#ifdef __cplusplus
}
#endif
#endif
