// Element-wise layer kernels (activations, AdamW, sums of squares), avx2 build
// (see layers/elementwise_lanes.inc).
#include "../core/internal.h"
#if KL_X86
#define KL_VTARGET __attribute__((target("avx2,fma")))
#define KL_ELEMENTWISE_OPS kl_elementwise_ops_avx2
#include "../layers/elementwise_lanes.inc"
#endif
