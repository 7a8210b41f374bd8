/*
 * aarch64 ARMv8.2 dot-product kernels (Cortex-A76, Raspberry Pi 5): the int8
 * input layer and the Q shortcut accumulate with vdotq (4 byte products per
 * 32-bit lane per instruction); every other kernel (the binary and bit-plane
 * ones included: AND/XOR + vcnt gains nothing from vdot) is the baseline NEON one.
 * Compiled for armv8.2-a+dotprod by a function-level target attribute only;
 * select.c hands this table out only when AT_HWCAP reports ASIMDDP.
 */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "rbm_kernels.h"
#include "kernels_table.h"
#include "kernels_neon.h"

#define FN __attribute__((target("arch=armv8.2-a+dotprod"))) static

static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};

FN void u8_bmv_dot(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n, int32_t *acc)
{
    const uint8x16_t bw = vld1q_u8(bit_weights);
    const uint8x16_t ones = vdupq_n_u8(1);
    const int32_t full = n & ~15;
    uint32_t total = 0;
    {
        uint32x4_t s = vdupq_n_u32(0);
        for (int32_t i = 0; i < full; i += 16)
            s = vdotq_u32(s, vld1q_u8(q + i), ones);
        total = vaddvq_u32(s);
        for (int32_t i = full; i < n; i++)
            total += q[i];
    }
    for (int32_t o = 0; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        uint32x4_t s = vdupq_n_u32(0);
        for (int32_t i = 0; i < full; i += 16) {
            uint32_t b = (uint32_t)(w[i >> 6] >> (i & 63));
            uint8x16_t bb = vcombine_u8(vdup_n_u8((uint8_t)b), vdup_n_u8((uint8_t)(b >> 8)));
            /* 0/1 per lane, dotted with q: the sum of q where the weight bit is 1 */
            uint8x16_t m = vandq_u8(vtstq_u8(bb, bw), ones);
            s = vdotq_u32(s, m, vld1q_u8(q + i));
        }
        uint32_t on = vaddvq_u32(s);
        for (int32_t i = full; i < n; i++)
            if ((w[i >> 6] >> (i & 63)) & 1)
                on += q[i];
        acc[o] = (int32_t)(2 * on - total);
    }
}

FN void s8u8_mv_dot(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q, void *tmp,
                    int32_t *acc)
{
    /* sum w*q = sum w*(q-128) + 128*sum w: signed dot products on q-128 */
    int8_t *qs = (int8_t *)(((uintptr_t)tmp + 15) & ~(uintptr_t)15);
    const int32_t full = n & ~15;
    const uint8x16_t bias = vdupq_n_u8(0x80);
    for (int32_t i = 0; i < full; i += 16)
        vst1q_s8(qs + i, vreinterpretq_s8_u8(veorq_u8(vld1q_u8(q + i), bias)));
    int32_t o = 0;
    for (; o + 2 <= rows; o += 2) {
        const int8_t *w0 = W + (size_t)o * n, *w1 = w0 + n;
        int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
        for (int32_t i = 0; i < full; i += 16) {
            int8x16_t qv = vld1q_s8(qs + i);
            s0 = vdotq_s32(s0, vld1q_s8(w0 + i), qv);
            s1 = vdotq_s32(s1, vld1q_s8(w1 + i), qv);
        }
        int32_t v0 = vaddvq_s32(s0), v1 = vaddvq_s32(s1);
        for (int32_t i = full; i < n; i++) {
            v0 += (int32_t)w0[i] * ((int32_t)q[i] - 128);
            v1 += (int32_t)w1[i] * ((int32_t)q[i] - 128);
        }
        acc[o] = v0 + 128 * rowsum[o];
        acc[o + 1] = v1 + 128 * rowsum[o + 1];
    }
    for (; o < rows; o++) {
        const int8_t *w = W + (size_t)o * n;
        int32x4_t s = vdupq_n_s32(0);
        for (int32_t i = 0; i < full; i += 16)
            s = vdotq_s32(s, vld1q_s8(w + i), vld1q_s8(qs + i));
        int32_t v = vaddvq_s32(s);
        for (int32_t i = full; i < n; i++)
            v += (int32_t)w[i] * ((int32_t)q[i] - 128);
        acc[o] = v + 128 * rowsum[o];
    }
}

/* the planes input layer is AND + vcnt, which the dot product does not speed up; u8_pm1_mv NULL: the
 * int8 input layer from the packed bits (no expanded copy) */
const rbm_kernels rbm_kernels_neon_dotprod = RBM_KERNEL_TABLE("neon_dotprod", rbm_neon_, u8_bmv_dot, s8u8_mv_dot, NULL);
#endif /* __aarch64__ */
