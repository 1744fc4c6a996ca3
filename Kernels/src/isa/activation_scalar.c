// Element-wise activations, scalar build (see layers/activation_lanes.inc).
#include "../core/internal.h"
#define KL_VTARGET
#define KL_ACT_OPS kl_act_ops_scalar
#include "../layers/activation_lanes.inc"
