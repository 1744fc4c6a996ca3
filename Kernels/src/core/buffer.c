// 64-byte aligned, NUMA-local buffers.
#include "internal.h"
#include <numa.h>
#include <stdlib.h>

// numa_alloc_local returns page-aligned memory placed on the caller's node;
// without NUMA support we fall back to aligned_alloc (first touch places it).
void *kl_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (numa_available() >= 0) return numa_alloc_local(bytes);
    return aligned_alloc(64, kl_round_up(bytes, 64));
}

void kl_free(void *p, size_t bytes) {
    if (p == NULL) return;
    if (bytes == 0) bytes = 64;
    if (numa_available() >= 0) numa_free(p, bytes);
    else free(p);
}
