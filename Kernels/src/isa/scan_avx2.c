// Selective-scan lane kernels, AVX2 + FMA build (a lane vector is two ymm).
#include "../core/internal.h"
#if KL_X86
#define KL_SCAN_TARGET __attribute__((target("avx2,fma")))
#define KL_SCAN_OPS kl_scan_ops_avx2
#include "../scan/scan_lanes.inc"
#endif
