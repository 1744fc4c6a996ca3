// Element-wise layer kernels (activations, AdamW, sums of squares), avx512 build
// (see layers/elementwise_lanes.inc).
#include "../core/internal.h"
#if KL_X86
#define KL_VTARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2")))
#define KL_VSCALEF 1
#include <immintrin.h>
#define KL_ELEMENTWISE_OPS kl_elementwise_ops_avx512
#include "../layers/elementwise_lanes.inc"
#endif
