// Element-wise layer kernels (activations, AdamW, sums of squares), scalar build
// (see layers/elementwise_lanes.inc).
#include "../core/internal.h"
#define KL_VTARGET
#define KL_ELEMENTWISE_OPS kl_elementwise_ops_scalar
#include "../layers/elementwise_lanes.inc"
