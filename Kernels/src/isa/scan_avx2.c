// Selective-scan lane kernels, AVX2 + FMA build (a lane vector is two ymm).
#include "../core/internal.h"
#if KL_X86
#define KL_VTARGET __attribute__((target("avx2,fma")))
#define KL_SCAN_OPS kl_scan_ops_avx2
#define KL_SCAN_G 4       // 16 ymm: the states of 4 n, 16 lanes each, take 8
#define KL_SCAN_KEEP_A 0  // and A is read from L1 (a memory operand), not held
// Lanes in and out by the 8 x 8 ymm transpose: the portable 16 x 16 one
// splits into cross-register shuffles of two ymm halves.
#define KL_SCAN_TRANSPOSE kl_transpose_avx2
#define KL_SCAN_LANES_BY_TRANSPOSE 1
#include "../scan/scan_lanes.inc"
#endif
