// Element-wise activations, avx2 build (see layers/activation_lanes.inc).
#include "../core/internal.h"
#if KL_X86
#define KL_VTARGET __attribute__((target("avx2,fma")))
#define KL_ACT_OPS kl_act_ops_avx2
#include "../layers/activation_lanes.inc"
#endif
