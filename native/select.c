/*
 * Run-time choice of the kernel variant from the CPU's features, so one build
 * (one wheel) serves every CPU of an architecture: __builtin_cpu_supports on
 * x86_64, getauxval(AT_HWCAP) on aarch64 (HWCAP_ASIMD, HWCAP_ASIMDDP) and on
 * 32-bit ARM (HWCAP_NEON: neon, else portable; neon_dotprod is AArch64 only).  The environment variable
 * EDGE_RBMLP_KERNEL is read by the Python layer (edge_rbmlp/native_engine.py),
 * which asks rbm_variant_lookup for the named variant and turns every non-OK
 * status into an error: forcing a variant this CPU cannot run never falls back.
 */
#include <string.h>

#include "rbm_kernels.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#if defined(__arm__) && !defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_NEON
#define HWCAP_NEON (1 << 12)
#endif
#endif

const char *const rbm_variant_names[] = {"portable", "avx2", "neon", "neon_dotprod", NULL};

const char *rbm_variant_requirement(const char *name)
{
    if (!name)
        return "";
    if (!strcmp(name, "portable"))
        return "any CPU";
    if (!strcmp(name, "avx2"))
        return "x86_64 with AVX2, POPCNT and FMA";
    if (!strcmp(name, "neon"))
        return "aarch64 (ASIMD), or 32-bit ARM with NEON (e.g. Cortex-A7 / Raspberry Pi 2)";
    if (!strcmp(name, "neon_dotprod"))
        return "aarch64 with the ARMv8.2 dot-product extension (asimddp, e.g. Cortex-A76 / Raspberry Pi 5)";
    return "";
}

#if defined(__x86_64__)
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("fma");
}
#endif

#if defined(__arm__) && !defined(__aarch64__)
/* 32-bit ARM: NEON is optional on ARMv7 (Cortex-A7 and A9 have it, some SoCs leave it out) */
static int cpu_has_neon32(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_NEON) != 0;
#else
    return 0;
#endif
}
#endif

#if defined(__aarch64__)
static int cpu_has_asimd(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#else
    return 1;
#endif
}

static int cpu_has_dotprod(void)
{
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}
#endif

int rbm_variant_lookup(const char *name, const rbm_kernels **out)
{
    if (!name)
        return RBM_VARIANT_UNKNOWN;
    if (!strcmp(name, "portable")) {
        *out = &rbm_kernels_portable;
        return RBM_VARIANT_OK;
    }
    if (!strcmp(name, "avx2")) {
#if defined(__x86_64__)
        if (!cpu_has_avx2())
            return RBM_VARIANT_NO_CPU;
        *out = &rbm_kernels_avx2;
        return RBM_VARIANT_OK;
#else
        return RBM_VARIANT_OTHER_ARCH;
#endif
    }
    if (!strcmp(name, "neon") || !strcmp(name, "neon_dotprod")) {
#if defined(__aarch64__)
        if (!cpu_has_asimd())
            return RBM_VARIANT_NO_CPU;
        if (!strcmp(name, "neon")) {
            *out = &rbm_kernels_neon;
            return RBM_VARIANT_OK;
        }
        if (!cpu_has_dotprod())
            return RBM_VARIANT_NO_CPU;
        *out = &rbm_kernels_neon_dotprod;
        return RBM_VARIANT_OK;
#elif defined(__arm__)
        if (strcmp(name, "neon"))
            return RBM_VARIANT_OTHER_ARCH; /* the dot-product kernels are AArch64 code */
        if (!cpu_has_neon32())
            return RBM_VARIANT_NO_CPU;
        *out = &rbm_kernels_neon;
        return RBM_VARIANT_OK;
#else
        return RBM_VARIANT_OTHER_ARCH;
#endif
    }
    return RBM_VARIANT_UNKNOWN;
}

const rbm_kernels *rbm_best_kernels(void)
{
    const rbm_kernels *k = &rbm_kernels_portable;
    static const char *const order[] = {"neon_dotprod", "neon", "avx2", NULL};
    for (int i = 0; order[i]; i++) {
        const rbm_kernels *c;
        if (rbm_variant_lookup(order[i], &c) == RBM_VARIANT_OK)
            return c;
    }
    return k;
}
