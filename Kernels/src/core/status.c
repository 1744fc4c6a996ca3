// Status names and the per-thread error detail.
#include "internal.h"
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char kl_error_detail[512];

const char *kl_status_name(kl_status status) {
    switch (status) {
    case KL_OK: return "ok";
    case KL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KL_ERR_SHAPE: return "shape mismatch";
    case KL_ERR_WORKSPACE: return "bad workspace";
    case KL_ERR_ALLOC: return "out of memory";
    case KL_ERR_UNSUPPORTED_ISA: return "unsupported ISA";
    case KL_ERR_THREADS: return "thread error";
    }
    return "unknown status";
}

const char *kl_last_error(void) { return kl_error_detail; }

void kl_clear_error(void) { kl_error_detail[0] = 0; }

kl_status kl_fail(kl_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kl_error_detail, sizeof kl_error_detail, fmt, ap);
    va_end(ap);
    return status;
}

kl_status kl_check_workspace(const void *ws, size_t have, size_t need) {
    if (need == 0) return KL_OK;
    if (ws == NULL)
        return kl_fail(KL_ERR_WORKSPACE, "workspace is NULL; %zu bytes are needed", need);
    if (have < need)
        return kl_fail(KL_ERR_WORKSPACE, "workspace has %zu bytes; %zu are needed", have, need);
    if (((uintptr_t)ws & 63) != 0)
        return kl_fail(KL_ERR_WORKSPACE, "workspace must be 64-byte aligned");
    return KL_OK;
}
