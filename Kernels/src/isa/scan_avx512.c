// Selective-scan lane kernels, AVX-512 build (a lane vector is one zmm).
#include "../core/internal.h"
#if KL_X86
#define KL_VTARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2")))
#define KL_SCAN_OPS kl_scan_ops_avx512
#define KL_VSCALEF 1
#define KL_SCAN_TRANSPOSE kl_transpose_avx512
#include <immintrin.h>
#include "../scan/scan_lanes.inc"
#endif
