// Selective-scan lane kernels, portable build (baseline vector unit only).
#include "../core/internal.h"
#define KL_VTARGET
#define KL_SCAN_OPS kl_scan_ops_scalar
#define KL_SCAN_TRANSPOSE kl_transpose_scalar
#include "../scan/scan_lanes.inc"
