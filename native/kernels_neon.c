/*
 * NEON kernels: baseline ASIMD on aarch64 (ARMv8.0), so they run on every
 * Raspberry Pi core (Cortex-A53, A72, A76), and the same code on 32-bit ARM
 * (armhf: Cortex-A7 / Pi 2, and the ARMv8 cores under a 32-bit OS) where the CPU
 * has NEON.  Binary rows: veor + vcnt with the per-byte counts kept in vector
 * registers (vadd.8 for up to 31 steps, then one widening vpadal), reduced once
 * per row (the daBNN / LCE pattern).  kernels_neon_dotprod.c (aarch64 only)
 * reuses these and replaces the int8 kernels.
 *
 * 32-bit ARM: only this file is compiled for NEON (the pragma below is
 * -mfpu=neon for this translation unit; the rest of the build stays plain VFP,
 * runnable on an ARMv7 without NEON), and select.c hands this table out only
 * when AT_HWCAP reports HWCAP_NEON.  The AArch64-only intrinsics are replaced
 * by the shims below (nv_*), which compute exactly what the AArch64 ones do
 * (the float ones with the same pairwise order); multiply-accumulate is vmla
 * (unfused: ARMv7 NEON has no fused vfma without VFPv4, e.g. Cortex-A9).
 */
#if defined(__aarch64__) || defined(__arm__)
#if !defined(__aarch64__)
#pragma GCC target("fpu=neon")
#endif
#include <arm_neon.h>
#include <string.h>

#include "rbm_kernels.h"
#include "kernels_neon.h"
#include "kernels_table.h"

#if defined(__aarch64__)
#define nv_paddq_u8 vpaddq_u8
#define nv_paddq_u32 vpaddq_u32
#define nv_paddq_f32 vpaddq_f32
#define nv_addv_u8 vaddv_u8
#define nv_addvq_u32 vaddvq_u32
#define nv_addvq_s32 vaddvq_s32
#define nv_addvq_f32 vaddvq_f32
#define nv_mull_high_s8 vmull_high_s8
#define nv_movl_high_u16 vmovl_high_u16
#define nv_movl_high_s8 vmovl_high_s8
#define nv_addw_high_s16 vaddw_high_s16
#define nv_fmaq_f32 vfmaq_f32
#else
/* [a0+a1, a2+a3, ..., b0+b1, ...]: the AArch64 vpaddq from two 64-bit vpadd */
static inline uint8x16_t nv_paddq_u8(uint8x16_t a, uint8x16_t b)
{
    return vcombine_u8(vpadd_u8(vget_low_u8(a), vget_high_u8(a)), vpadd_u8(vget_low_u8(b), vget_high_u8(b)));
}
static inline uint32x4_t nv_paddq_u32(uint32x4_t a, uint32x4_t b)
{
    return vcombine_u32(vpadd_u32(vget_low_u32(a), vget_high_u32(a)), vpadd_u32(vget_low_u32(b), vget_high_u32(b)));
}
static inline float32x4_t nv_paddq_f32(float32x4_t a, float32x4_t b)
{
    return vcombine_f32(vpadd_f32(vget_low_f32(a), vget_high_f32(a)), vpadd_f32(vget_low_f32(b), vget_high_f32(b)));
}
/* the sum of the lanes; vaddv_u8 wraps mod 256 like the AArch64 one (callers sum at most 64) */
static inline uint8_t nv_addv_u8(uint8x8_t v)
{
    return (uint8_t)vget_lane_u64(vpaddl_u32(vpaddl_u16(vpaddl_u8(v))), 0);
}
static inline uint32_t nv_addvq_u32(uint32x4_t v)
{
    uint32x2_t p = vpadd_u32(vget_low_u32(v), vget_high_u32(v));
    return vget_lane_u32(vpadd_u32(p, p), 0);
}
static inline int32_t nv_addvq_s32(int32x4_t v)
{
    int32x2_t p = vpadd_s32(vget_low_s32(v), vget_high_s32(v));
    return vget_lane_s32(vpadd_s32(p, p), 0);
}
/* (a0 + a1) + (a2 + a3), the order of AArch64's faddp pair */
static inline float nv_addvq_f32(float32x4_t v)
{
    float32x2_t p = vpadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(vpadd_f32(p, p), 0);
}
static inline int16x8_t nv_mull_high_s8(int8x16_t a, int8x16_t b)
{
    return vmull_s8(vget_high_s8(a), vget_high_s8(b));
}
static inline uint32x4_t nv_movl_high_u16(uint16x8_t v)
{
    return vmovl_u16(vget_high_u16(v));
}
static inline int16x8_t nv_movl_high_s8(int8x16_t v)
{
    return vmovl_s8(vget_high_s8(v));
}
static inline int32x4_t nv_addw_high_s16(int32x4_t a, int16x8_t b)
{
    return vaddw_s16(a, vget_high_s16(b));
}
static inline float32x4_t nv_fmaq_f32(float32x4_t a, float32x4_t b, float32x4_t c)
{
    return vmlaq_f32(a, b, c);
}
#endif

#define NV_INLINE static inline __attribute__((always_inline))

/* rbm_neon_f32_mm and rbm_neon_f32_mv (kernels_f32_mm.h): 4-lane chains, pairwise lane sums */
#define MM_INL NV_INLINE
#define MM_FN
#define MM_NAME rbm_neon_f32_mm
#define MM_VEC float32x4_t
#define MM_LANES 4
#define MM_ZERO() vdupq_n_f32(0)
#define MM_LOAD(p) vld1q_f32(p)
#define MM_FMA(a, w, x) nv_fmaq_f32(a, w, x)
#define MM_HSUM(a) nv_addvq_f32(a)
#define MM_MV_NAME rbm_neon_f32_mv
#define MM_HSUM4(a, s) vst1q_f32(s, nv_paddq_f32(nv_paddq_f32(a[0], a[1]), nv_paddq_f32(a[2], a[3])))
#include "kernels_f32_mm.h"

static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};

/* 4 byte masks (0xFF / 0) of 16 lanes each -> one 64-bit word, lane i -> bit i */
static inline uint64_t movemask64(uint8x16_t m0, uint8x16_t m1, uint8x16_t m2, uint8x16_t m3)
{
    const uint8x16_t bw = vld1q_u8(bit_weights);
    uint8x16_t p1 = nv_paddq_u8(vandq_u8(m0, bw), vandq_u8(m1, bw));
    uint8x16_t p2 = nv_paddq_u8(vandq_u8(m2, bw), vandq_u8(m3, bw));
    uint8x16_t p3 = nv_paddq_u8(p1, p2);
    uint8x16_t p4 = nv_paddq_u8(p3, p3);
    return vgetq_lane_u64(vreinterpretq_u64_u8(p4), 0);
}

void rbm_neon_pack_ge_u8(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits)
{
    int32_t words = RBM_WORDS(n);
    memset(bits, 0, (size_t)words * 8);
    if (t >= 256)
        return;
    int32_t i = 0;
    if (t > 0) {
        const uint8x16_t tv = vdupq_n_u8((uint8_t)t);
        for (; i + 64 <= n; i += 64) {
            uint8x16_t m0 = vcgeq_u8(vld1q_u8(q + i), tv);
            uint8x16_t m1 = vcgeq_u8(vld1q_u8(q + i + 16), tv);
            uint8x16_t m2 = vcgeq_u8(vld1q_u8(q + i + 32), tv);
            uint8x16_t m3 = vcgeq_u8(vld1q_u8(q + i + 48), tv);
            bits[i >> 6] = movemask64(m0, m1, m2, m3);
        }
    }
    for (; i < n; i++)
        if ((int32_t)q[i] >= t)
            bits[i >> 6] |= 1ULL << (i & 63);
}

static inline uint32x4_t flush8(uint32x4_t s, uint8x16_t b)
{
    return vpadalq_u16(s, vpaddlq_u8(b));
}

/* The binary-row counts of bmv (x XOR w) and planes_bmv (plane AND w).  `and_op` is a constant at
 * every call site: always_inline folds it, so each caller gets the loop with its one instruction. */
NV_INLINE uint8x16_t nv_bitop(uint8x16_t x, uint8x16_t w, const int and_op)
{
    return and_op ? vandq_u8(x, w) : veorq_u8(x, w);
}

NV_INLINE uint32_t popcount_word(uint64_t x)
{
    return nv_addv_u8(vcnt_u8(vcreate_u8(x)));
}

NV_INLINE uint32_t popcount_op(uint64_t x, uint64_t w, const int and_op)
{
    return popcount_word(and_op ? x & w : x ^ w);
}

/* [popcount(x OP w0), .., popcount(x OP w3)] over `words` 64-bit words: 128-bit chunks with the
 * per-byte counts in registers for up to 31 steps (31 * 8 < 256), one widening flush, the odd last
 * word on its own */
NV_INLINE uint32x4_t count4(const uint64_t *x, const uint64_t *w0, const uint64_t *w1, const uint64_t *w2,
                            const uint64_t *w3, int32_t words, const int and_op)
{
    const int32_t chunks = words >> 1, tail = chunks * 2;
    const uint8_t *xb = (const uint8_t *)x;
    uint32x4_t s0 = vdupq_n_u32(0), s1 = s0, s2 = s0, s3 = s0;
    for (int32_t c = 0; c < chunks;) {
        int32_t end = c + 31 < chunks ? c + 31 : chunks;
        uint8x16_t b0 = vdupq_n_u8(0), b1 = b0, b2 = b0, b3 = b0;
        for (; c < end; c++) {
            uint8x16_t xv = vld1q_u8(xb + 16 * c);
            b0 = vaddq_u8(b0, vcntq_u8(nv_bitop(xv, vld1q_u8((const uint8_t *)(w0 + 2 * c)), and_op)));
            b1 = vaddq_u8(b1, vcntq_u8(nv_bitop(xv, vld1q_u8((const uint8_t *)(w1 + 2 * c)), and_op)));
            b2 = vaddq_u8(b2, vcntq_u8(nv_bitop(xv, vld1q_u8((const uint8_t *)(w2 + 2 * c)), and_op)));
            b3 = vaddq_u8(b3, vcntq_u8(nv_bitop(xv, vld1q_u8((const uint8_t *)(w3 + 2 * c)), and_op)));
        }
        s0 = flush8(s0, b0);
        s1 = flush8(s1, b1);
        s2 = flush8(s2, b2);
        s3 = flush8(s3, b3);
    }
    uint32x4_t t = nv_paddq_u32(nv_paddq_u32(s0, s1), nv_paddq_u32(s2, s3));
    if (tail < words) {
        uint64_t xt = x[tail];
        uint32_t tc[4] = {popcount_op(xt, w0[tail], and_op), popcount_op(xt, w1[tail], and_op),
                          popcount_op(xt, w2[tail], and_op), popcount_op(xt, w3[tail], and_op)};
        t = vaddq_u32(t, vld1q_u32(tc));
    }
    return t;
}

/* popcount(x OP w) over `words` words, one row */
NV_INLINE uint32_t count1(const uint64_t *x, const uint64_t *w, int32_t words, const int and_op)
{
    const int32_t chunks = words >> 1, tail = chunks * 2;
    const uint8_t *xb = (const uint8_t *)x;
    uint32x4_t s = vdupq_n_u32(0);
    for (int32_t c = 0; c < chunks;) {
        int32_t end = c + 31 < chunks ? c + 31 : chunks;
        uint8x16_t b = vdupq_n_u8(0);
        for (; c < end; c++)
            b = vaddq_u8(b, vcntq_u8(nv_bitop(vld1q_u8(xb + 16 * c), vld1q_u8((const uint8_t *)(w + 2 * c)), and_op)));
        s = flush8(s, b);
    }
    uint32_t cnt = nv_addvq_u32(s);
    if (tail < words)
        cnt += popcount_op(x[tail], w[tail], and_op);
    return cnt;
}

void rbm_neon_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n, int32_t *acc)
{
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const uint64_t *w0 = W + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
        uint32x4_t t = count4(x, w0, w1, w2, w3, words, 0);
        vst1q_s32(acc + o, vsubq_s32(vdupq_n_s32(n), vshlq_n_s32(vreinterpretq_s32_u32(t), 1)));
    }
    for (; o < rows; o++)
        acc[o] = n - 2 * (int32_t)count1(x, W + (size_t)o * words, words, 0);
}

void rbm_neon_threshold_pack(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows,
                             uint64_t *bits)
{
    int32_t words = RBM_WORDS(rows);
    for (int32_t w = 0; w < words; w++) {
        uint64_t v = 0;
        int32_t end = (w + 1) * 64 < rows ? (w + 1) * 64 : rows;
        for (int32_t o = w * 64; o < end; o++) {
            uint64_t on = flip[o] ? (acc[o] <= thr[o]) : (acc[o] >= thr[o]);
            v |= on << (o & 63);
        }
        bits[w] = v;
    }
}

void rbm_neon_u8_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n, int32_t *acc)
{
    const uint8x16_t bw = vld1q_u8(bit_weights);
    const int32_t full = n & ~15;
    uint32_t total = 0;
    {
        uint32x4_t s = vdupq_n_u32(0);
        for (int32_t i = 0; i < full; i += 16)
            s = vpadalq_u16(s, vpaddlq_u8(vld1q_u8(q + i)));
        total = nv_addvq_u32(s);
        for (int32_t i = full; i < n; i++)
            total += q[i];
    }
    for (int32_t o = 0; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        uint32x4_t s = vdupq_n_u32(0);
        for (int32_t i = 0; i < full;) {
            int32_t end = i + 64 * 16 < full ? i + 64 * 16 : full; /* u16 lanes: 64 steps of <= 510 */
            uint16x8_t h = vdupq_n_u16(0);
            for (; i < end; i += 16) {
                uint32_t b = (uint32_t)(w[i >> 6] >> (i & 63));
                uint8x16_t bb = vcombine_u8(vdup_n_u8((uint8_t)b), vdup_n_u8((uint8_t)(b >> 8)));
                uint8x16_t m = vtstq_u8(bb, bw);
                h = vpadalq_u8(h, vandq_u8(m, vld1q_u8(q + i)));
            }
            s = vpadalq_u16(s, h);
        }
        uint32_t on = nv_addvq_u32(s);
        for (int32_t i = full; i < n; i++)
            if ((w[i >> 6] >> (i & 63)) & 1)
                on += q[i];
        acc[o] = (int32_t)(2 * on - total);
    }
}

void rbm_neon_s8u8_mv(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q,
                      void *tmp, int32_t *acc)
{
    /* sum w*q = sum w*(q-128) + 128*sum w; q-128 fits int8, every product fits int16 */
    int8_t *qs = (int8_t *)(((uintptr_t)tmp + 15) & ~(uintptr_t)15);
    const int32_t full = n & ~15;
    const uint8x16_t bias = vdupq_n_u8(0x80);
    for (int32_t i = 0; i < full; i += 16)
        vst1q_s8(qs + i, vreinterpretq_s8_u8(veorq_u8(vld1q_u8(q + i), bias)));
    for (int32_t o = 0; o < rows; o++) {
        const int8_t *w = W + (size_t)o * n;
        int32x4_t s = vdupq_n_s32(0);
        for (int32_t i = 0; i < full; i += 16) {
            int8x16_t wv = vld1q_s8(w + i), qv = vld1q_s8(qs + i);
            s = vpadalq_s16(s, vmull_s8(vget_low_s8(wv), vget_low_s8(qv)));
            s = vpadalq_s16(s, nv_mull_high_s8(wv, qv));
        }
        int32_t v = nv_addvq_s32(s);
        for (int32_t i = full; i < n; i++)
            v += (int32_t)w[i] * ((int32_t)q[i] - 128);
        acc[o] = v + 128 * rowsum[o];
    }
}

void rbm_neon_f32u8_mv(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias, float *out)
{
    const int32_t full = n & ~7;
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const float *w0 = W + (size_t)o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t i = 0; i < full; i += 8) {
            uint16x8_t q16 = vmovl_u8(vld1_u8(q + i));
            float32x4_t lo = vcvtq_f32_u32(vmovl_u16(vget_low_u16(q16)));
            float32x4_t hi = vcvtq_f32_u32(nv_movl_high_u16(q16));
            a0 = nv_fmaq_f32(nv_fmaq_f32(a0, vld1q_f32(w0 + i), lo), vld1q_f32(w0 + i + 4), hi);
            a1 = nv_fmaq_f32(nv_fmaq_f32(a1, vld1q_f32(w1 + i), lo), vld1q_f32(w1 + i + 4), hi);
            a2 = nv_fmaq_f32(nv_fmaq_f32(a2, vld1q_f32(w2 + i), lo), vld1q_f32(w2 + i + 4), hi);
            a3 = nv_fmaq_f32(nv_fmaq_f32(a3, vld1q_f32(w3 + i), lo), vld1q_f32(w3 + i + 4), hi);
        }
        float32x4_t t = nv_paddq_f32(nv_paddq_f32(a0, a1), nv_paddq_f32(a2, a3));
        float s[4];
        vst1q_f32(s, t);
        for (int32_t i = full; i < n; i++) {
            float xi = (float)q[i];
            s[0] += w0[i] * xi;
            s[1] += w1[i] * xi;
            s[2] += w2[i] * xi;
            s[3] += w3[i] * xi;
        }
        for (int r = 0; r < 4; r++)
            out[o + r] = bias[o + r] + s[r];
    }
    for (; o < rows; o++) {
        const float *w = W + (size_t)o * n;
        float32x4_t a = vdupq_n_f32(0);
        for (int32_t i = 0; i < full; i += 8) {
            uint16x8_t q16 = vmovl_u8(vld1_u8(q + i));
            a = nv_fmaq_f32(a, vld1q_f32(w + i), vcvtq_f32_u32(vmovl_u16(vget_low_u16(q16))));
            a = nv_fmaq_f32(a, vld1q_f32(w + i + 4), vcvtq_f32_u32(nv_movl_high_u16(q16)));
        }
        float s = nv_addvq_f32(a);
        for (int32_t i = full; i < n; i++)
            s += w[i] * (float)q[i];
        out[o] = bias[o] + s;
    }
}

void rbm_neon_maxpool_u8(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out)
{
    int32_t j = 0;
    if (pool == 8) {
        for (; j + 2 <= m; j += 2) {
            uint8x16_t v = vld1q_u8(q + (size_t)j * 8);
            uint8x8_t p = vpmax_u8(vget_low_u8(v), vget_high_u8(v)); /* pairs */
            p = vpmax_u8(p, p);
            p = vpmax_u8(p, p); /* lane 0: window j, lane 1: window j+1 */
            out[j] = vget_lane_u8(p, 0);
            out[j + 1] = vget_lane_u8(p, 1);
        }
    }
    for (; j < m; j++) {
        const uint8_t *p = q + (size_t)j * pool;
        uint8_t v = 0;
        for (int32_t i = 0; i < pool; i++)
            v = p[i] > v ? p[i] : v;
        out[j] = v;
    }
}

void rbm_neon_sparse_bitcount(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx, int32_t k,
                              int32_t *cnt)
{
    const uint8x16_t bw = vld1q_u8(bit_weights);
    int32_t o = 0;
    /* 16 rows per pass: byte counters (vtst gives -1 per set bit) flushed into int32 */
    for (; o + 16 <= rows; o += 16) {
        int32x4_t c0 = vdupq_n_s32(0), c1 = c0, c2 = c0, c3 = c0;
        for (int32_t j = 0; j < k;) {
            int32_t end = j + 127 < k ? j + 127 : k;
            int8x16_t b = vdupq_n_s8(0);
            for (; j < end; j++) {
                uint32_t v = (uint32_t)(WT[(size_t)idx[j] * twords + (o >> 6)] >> (o & 63));
                uint8x16_t bb = vcombine_u8(vdup_n_u8((uint8_t)v), vdup_n_u8((uint8_t)(v >> 8)));
                b = vsubq_s8(b, vreinterpretq_s8_u8(vtstq_u8(bb, bw)));
            }
            int16x8_t lo = vmovl_s8(vget_low_s8(b)), hi = nv_movl_high_s8(b);
            c0 = vaddw_s16(c0, vget_low_s16(lo));
            c1 = nv_addw_high_s16(c1, lo);
            c2 = vaddw_s16(c2, vget_low_s16(hi));
            c3 = nv_addw_high_s16(c3, hi);
        }
        vst1q_s32(cnt + o, c0);
        vst1q_s32(cnt + o + 4, c1);
        vst1q_s32(cnt + o + 8, c2);
        vst1q_s32(cnt + o + 12, c3);
    }
    for (; o < rows; o++) {
        int32_t c = 0;
        for (int32_t j = 0; j < k; j++)
            c += (int32_t)((WT[(size_t)idx[j] * twords + (o >> 6)] >> (o & 63)) & 1);
        cnt[o] = c;
    }
}

void rbm_neon_sparse_s8sum(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc)
{
    int32_t o = 0;
    for (; o + 8 <= rows; o += 8) {
        int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
        for (int32_t j = 0; j < k; j++) {
            int16x8_t w = vmovl_s8(vld1_s8(WTq + (size_t)idx[j] * rows + o));
            a0 = vaddw_s16(a0, vget_low_s16(w));
            a1 = nv_addw_high_s16(a1, w);
        }
        vst1q_s32(acc + o, a0);
        vst1q_s32(acc + o + 4, a1);
    }
    for (; o < rows; o++) {
        int32_t a = 0;
        for (int32_t j = 0; j < k; j++)
            a += WTq[(size_t)idx[j] * rows + o];
        acc[o] = a;
    }
}

void rbm_neon_pack_planes_u8(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes)
{
    int32_t words = RBM_WORDS(n);
    memset(planes, 0, (size_t)k * words * 8);
    int32_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint8x16_t v0 = vld1q_u8(q + i), v1 = vld1q_u8(q + i + 16), v2 = vld1q_u8(q + i + 32), v3 = vld1q_u8(q + i + 48);
        for (int32_t b = 0; b < k; b++) {
            const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << (8 - k + b)));
            planes[(size_t)b * words + (i >> 6)] =
                movemask64(vtstq_u8(v0, bit), vtstq_u8(v1, bit), vtstq_u8(v2, bit), vtstq_u8(v3, bit));
        }
    }
    for (; i < n; i++)
        for (int32_t b = 0; b < k; b++)
            if ((q[i] >> (8 - k + b)) & 1)
                planes[(size_t)b * words + (i >> 6)] |= 1ULL << (i & 63);
}

void rbm_neon_planes_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k,
                         int32_t *acc)
{
    int32_t total = 0; /* sum_i v_i */
    for (int32_t b = 0; b < k; b++)
        for (int32_t j = 0; j < words; j++)
            total += (int32_t)popcount_word(planes[(size_t)b * words + j]) << b;
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const uint64_t *w0 = W + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
        uint32x4_t on = vdupq_n_u32(0); /* [row o .. o+3]: sum of v_i where the weight bit is 1 */
        for (int32_t b = 0; b < k; b++)
            on = vaddq_u32(on, vshlq_u32(count4(planes + (size_t)b * words, w0, w1, w2, w3, words, 1), vdupq_n_s32(b)));
        vst1q_s32(acc + o, vsubq_s32(vshlq_n_s32(vreinterpretq_s32_u32(on), 1), vdupq_n_s32(total)));
    }
    for (; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        uint32_t on = 0;
        for (int32_t b = 0; b < k; b++)
            on += count1(planes + (size_t)b * words, w, words, 1) << b;
        acc[o] = 2 * (int32_t)on - total;
    }
}

/* u8_pm1_mv NULL: the int8 input layer from the packed bits (no expanded copy) */
const rbm_kernels rbm_kernels_neon = RBM_KERNEL_TABLE("neon", rbm_neon_, rbm_neon_u8_bmv, rbm_neon_s8u8_mv, NULL);
#endif /* __aarch64__ || __arm__ */
