// Run-time ISA dispatch: chosen once from the CPU's features, or forced by
// KERNELLAB_ISA=scalar|avx2|avx512. KERNELLAB_ISA_MAX=scalar|avx2 makes the
// lab treat the CPU as one without the ISAs above it (supported lists,
// machine ids, baselines and tests all follow), so an AVX2-only or a
// scalar-only host can be reproduced on a wider CPU.
#include "internal.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int kl_active_isa = KL_ISA_SCALAR;
static kl_status kl_init_status = KL_OK;
static char kl_init_detail[256];
static pthread_once_t kl_once = PTHREAD_ONCE_INIT;

static const char *const kl_isa_names[KL_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *kl_isa_name(kl_isa isa) {
    return (isa >= 0 && isa < KL_ISA_COUNT) ? kl_isa_names[isa] : "unknown";
}

kl_status kl_isa_parse(const char *name, kl_isa *out) {
    if (name == NULL || out == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "ISA name is NULL");
    for (int i = 0; i < KL_ISA_COUNT; i++)
        if (strcmp(name, kl_isa_names[i]) == 0) { *out = (kl_isa)i; return KL_OK; }
    return kl_fail(KL_ERR_INVALID_ARGUMENT, "unknown ISA '%s' (expected scalar, avx2 or avx512)", name);
}

static int kl_isa_cap = KL_ISA_COUNT - 1;
static pthread_once_t kl_cap_once = PTHREAD_ONCE_INIT;

// An unknown KERNELLAB_ISA_MAX caps nothing here; kl_init reports it.
static void kl_cap_init(void) {
    const char *env = getenv("KERNELLAB_ISA_MAX");
    kl_isa cap;
    if (env != NULL && env[0] != 0 && kl_isa_parse(env, &cap) == KL_OK) kl_isa_cap = cap;
}

int kl_isa_supported(kl_isa isa) {
    pthread_once(&kl_cap_once, kl_cap_init);
    if ((int)isa > kl_isa_cap) return 0;
    switch (isa) {
    case KL_ISA_SCALAR: return 1;
#if KL_X86
    // __builtin_cpu_supports also checks that the OS saves the vector state (XCR0).
    case KL_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KL_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

const kl_ops *kl_ops_for(kl_isa isa) {
    switch (isa) {
    case KL_ISA_SCALAR: return &kl_ops_scalar;
#if KL_X86
    case KL_ISA_AVX2: return &kl_ops_avx2;
    case KL_ISA_AVX512: return &kl_ops_avx512;
#endif
    default: return NULL;
    }
}

static void kl_init_once(void) {
#if KL_X86
    __builtin_cpu_init();
#endif
    kl_isa best = KL_ISA_SCALAR;
    for (int i = KL_ISA_COUNT - 1; i >= 0; i--)
        if (kl_isa_supported((kl_isa)i) && kl_ops_for((kl_isa)i)) { best = (kl_isa)i; break; }
    const char *cap = getenv("KERNELLAB_ISA_MAX");
    kl_isa parsed;
    if (cap != NULL && cap[0] != 0 && kl_isa_parse(cap, &parsed) != KL_OK) {
        kl_init_status = KL_ERR_UNSUPPORTED_ISA;
        snprintf(kl_init_detail, sizeof kl_init_detail,
                 "KERNELLAB_ISA_MAX='%s' is not an ISA (expected scalar, avx2 or avx512)", cap);
    }
    const char *env = getenv("KERNELLAB_ISA");
    if (kl_init_status == KL_OK && env != NULL && env[0] != 0) {
        kl_isa want;
        if (kl_isa_parse(env, &want) != KL_OK) {
            kl_init_status = KL_ERR_UNSUPPORTED_ISA;
            snprintf(kl_init_detail, sizeof kl_init_detail,
                     "KERNELLAB_ISA='%s' is not an ISA (expected scalar, avx2 or avx512)", env);
        } else if (!kl_isa_supported(want) || !kl_ops_for(want)) {
            kl_init_status = KL_ERR_UNSUPPORTED_ISA;
            snprintf(kl_init_detail, sizeof kl_init_detail,
                     "KERNELLAB_ISA=%s is not supported by this CPU (best available: %s)", env,
                     kl_isa_name(best));
        } else {
            best = want;
        }
    }
    atomic_store(&kl_active_isa, best);
}

kl_status kl_init(void) {
    pthread_once(&kl_once, kl_init_once);
    if (kl_init_status != KL_OK) return kl_fail(kl_init_status, "%s", kl_init_detail);
    return KL_OK;
}

kl_isa kl_isa_active(void) {
    pthread_once(&kl_once, kl_init_once);
    return (kl_isa)atomic_load(&kl_active_isa);
}

kl_status kl_isa_set(kl_isa isa) {
    pthread_once(&kl_once, kl_init_once);
    if (isa < 0 || isa >= KL_ISA_COUNT) return kl_fail(KL_ERR_INVALID_ARGUMENT, "ISA %d is out of range", (int)isa);
    if (!kl_isa_supported(isa) || !kl_ops_for(isa))
        return kl_fail(KL_ERR_UNSUPPORTED_ISA, "ISA %s is not supported by this CPU", kl_isa_name(isa));
    atomic_store(&kl_active_isa, isa);
    // An explicit choice supersedes a bad KERNELLAB_ISA.
    kl_init_status = KL_OK;
    return KL_OK;
}

const kl_ops *kl_ops_active(void) { return kl_ops_for(kl_isa_active()); }

const kl_elementwise_ops *kl_elementwise_ops_for(kl_isa isa) {
    switch (isa) {
    case KL_ISA_SCALAR: return &kl_elementwise_ops_scalar;
#if KL_X86
    case KL_ISA_AVX2: return &kl_elementwise_ops_avx2;
    case KL_ISA_AVX512: return &kl_elementwise_ops_avx512;
#endif
    default: return NULL;
    }
}

const kl_scan_ops *kl_scan_ops_for(kl_isa isa) {
    switch (isa) {
    case KL_ISA_SCALAR: return &kl_scan_ops_scalar;
#if KL_X86
    case KL_ISA_AVX2: return &kl_scan_ops_avx2;
    case KL_ISA_AVX512: return &kl_scan_ops_avx512;
#endif
    default: return NULL;
    }
}
