// Machine facts: CPU model, CPUs, NUMA nodes, caches, OpenBLAS configuration.
#include "internal.h"
#include <cblas.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if KL_X86
#include <cpuid.h>
#endif

const char *kl_cpu_model(void) {
    static char model[49];
    static int done;
    if (done) return model;
    strcpy(model, "unknown");
#if KL_X86
    unsigned int regs[12];
    if (__get_cpuid(0x80000000u, &regs[0], &regs[1], &regs[2], &regs[3]) && regs[0] >= 0x80000004u) {
        for (unsigned int i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        memcpy(model, regs, 48);
        model[48] = 0;
        // Trim the padding some CPUs put around the brand string.
        char *s = model;
        while (*s == ' ') s++;
        memmove(model, s, strlen(s) + 1);
        for (size_t n = strlen(model); n > 0 && model[n - 1] == ' '; n--) model[n - 1] = 0;
    }
#endif
    done = 1;
    return model;
}

int kl_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int kl_numa_nodes(void) {
    if (numa_available() < 0) return 1;
    int n = numa_num_configured_nodes();
    return n > 0 ? n : 1;
}

const char *kl_blas_config(void) { return openblas_get_config(); }
const char *kl_blas_core(void) { return openblas_get_corename(); }

void kl_blas_threads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }

// Cache sizes from sysfs (what the kernel derived from the cache topology);
// sysconf as the fallback. In VMs glibc's sysconf can misreport (seen here:
// an L3 of 320 MiB where sysfs and lscpu say 32 MiB).
static size_t kl_cache_sysfs(int level) {
    for (int idx = 0; idx < 8; idx++) {
        char path[96], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        FILE *f = fopen(path, "r");
        if (!f) break;
        int lv = 0;
        if (fscanf(f, "%d", &lv) != 1) lv = 0;
        fclose(f);
        if (lv != level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        if (!(f = fopen(path, "r"))) continue;
        int is_instruction = fgets(buf, sizeof buf, f) && strncmp(buf, "Instruction", 11) == 0;
        fclose(f);
        if (is_instruction) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        if (!(f = fopen(path, "r"))) continue;
        size_t kib = 0;
        char unit = 0;
        int got = fscanf(f, "%zu%c", &kib, &unit);
        fclose(f);
        if (got >= 1) return unit == 'M' ? kib << 20 : kib << 10;
    }
    return 0;
}

size_t kl_cache_bytes(int level) {
    // KERNELLAB_{L1,L2,LLC}_BYTES override a level (the traffic validation
    // simulates its own cache sizes under valgrind and hands them to the model).
    static const char *const overrides[] = {"KERNELLAB_L1_BYTES", "KERNELLAB_L2_BYTES", "KERNELLAB_LLC_BYTES"};
    if (level < 1 || level > 3) return 0;
    const char *env = getenv(overrides[level - 1]);
    if (env && *env) {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (end && *end == 0 && v > 0) return (size_t)v;
    }
    // The hardware's sizes are read once per level: every cost model call asks
    // for all three, and sysfs means up to two dozen file opens each time.
    static _Atomic long long known[3] = {-1, -1, -1};
    long long size = atomic_load(&known[level - 1]);
    if (size >= 0) return (size_t)size;
    size = (long long)kl_cache_sysfs(level);
    if (size == 0) {
        long v = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
        size = v > 0 ? v : 0;
    }
    atomic_store(&known[level - 1], size);
    return (size_t)size;
}

kl_status kl_sgemm(int m, int n, int k, const float *a, const float *b, float *c, int threads) {
    if (m <= 0 || n <= 0 || k <= 0)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "sgemm sizes must be positive (m=%d n=%d k=%d)", m, n, k);
    if (!a || !b || !c) return kl_fail(KL_ERR_INVALID_ARGUMENT, "sgemm operand is NULL");
    if (threads < 1) return kl_fail(KL_ERR_THREADS, "threads must be >= 1 (got %d)", threads);
    kl_blas_threads(threads);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    return KL_OK;
}
