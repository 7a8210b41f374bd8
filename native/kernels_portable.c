/*
 * Portable C kernels: the reference implementation in C (the C definition of
 * correct).  Plain loops, no intrinsics, a SWAR popcount so the result does
 * not depend on compiler builtins; every optimized variant is tested against
 * these kernel by kernel (tests/test_native_kernels.py).
 */
#include <string.h>

#include "rbm_kernels.h"
#include "kernels_table.h"

static inline int32_t popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int32_t)((x * 0x0101010101010101ULL) >> 56);
}

static void pack_ge_u8(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits)
{
    int32_t words = RBM_WORDS(n);
    for (int32_t w = 0; w < words; w++)
        bits[w] = 0;
    for (int32_t i = 0; i < n; i++)
        if ((int32_t)q[i] >= t)
            bits[i >> 6] |= 1ULL << (i & 63);
}

static void bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n,
                int32_t *acc)
{
    for (int32_t o = 0; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        int32_t c = 0;
        for (int32_t j = 0; j < words; j++)
            c += popcount64(x[j] ^ w[j]);
        acc[o] = n - 2 * c;
    }
}

static void threshold_pack(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows,
                           uint64_t *bits)
{
    int32_t words = RBM_WORDS(rows);
    for (int32_t w = 0; w < words; w++)
        bits[w] = 0;
    for (int32_t o = 0; o < rows; o++) {
        int on = flip[o] ? (acc[o] <= thr[o]) : (acc[o] >= thr[o]);
        if (on)
            bits[o >> 6] |= 1ULL << (o & 63);
    }
}

static void u8_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n,
                   int32_t *acc)
{
    (void)words;
    for (int32_t o = 0; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        int32_t s = 0;
        for (int32_t i = 0; i < n; i++)
            s += ((w[i >> 6] >> (i & 63)) & 1) ? (int32_t)q[i] : -(int32_t)q[i];
        acc[o] = s;
    }
}

static void s8u8_mv(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q,
                    void *tmp, int32_t *acc)
{
    (void)rowsum;
    (void)tmp;
    for (int32_t o = 0; o < rows; o++) {
        const int8_t *w = W + (size_t)o * n;
        int32_t s = 0;
        for (int32_t i = 0; i < n; i++)
            s += (int32_t)w[i] * (int32_t)q[i];
        acc[o] = s;
    }
}

static void f32_mv(const float *W, int32_t rows, int32_t n, const float *x, const float *bias, float *out)
{
    for (int32_t o = 0; o < rows; o++) {
        const float *w = W + (size_t)o * n;
        float s = 0.0f;
        for (int32_t i = 0; i < n; i++)
            s += w[i] * x[i];
        out[o] = bias[o] + s;
    }
}

static void f32u8_mv(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias,
                     float *out)
{
    for (int32_t o = 0; o < rows; o++) {
        const float *w = W + (size_t)o * n;
        float s = 0.0f;
        for (int32_t i = 0; i < n; i++)
            s += w[i] * (float)q[i];
        out[o] = bias[o] + s;
    }
}

static void maxpool_u8(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out)
{
    for (int32_t j = 0; j < m; j++) {
        const uint8_t *p = q + (size_t)j * pool;
        uint8_t v = 0;
        for (int32_t i = 0; i < pool; i++)
            v = p[i] > v ? p[i] : v;
        out[j] = v;
    }
}

static void sparse_bitcount(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx,
                            int32_t k, int32_t *cnt)
{
    for (int32_t o = 0; o < rows; o++)
        cnt[o] = 0;
    for (int32_t j = 0; j < k; j++) {
        const uint64_t *b = WT + (size_t)idx[j] * twords;
        for (int32_t o = 0; o < rows; o++)
            cnt[o] += (int32_t)((b[o >> 6] >> (o & 63)) & 1);
    }
}

static void sparse_s8sum(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc)
{
    for (int32_t o = 0; o < rows; o++)
        acc[o] = 0;
    for (int32_t j = 0; j < k; j++) {
        const int8_t *w = WTq + (size_t)idx[j] * rows;
        for (int32_t o = 0; o < rows; o++)
            acc[o] += w[o];
    }
}

static void f32_mm(const float *W, int32_t rows, int32_t n, const float *X, int32_t T, const float *bias,
                   float *out)
{
    for (int32_t t = 0; t < T; t++)
        f32_mv(W, rows, n, X + (size_t)t * n, bias, out + (size_t)t * rows);
}

static void u8_pm1_mv(const int8_t *Wpm1, int32_t rows, int32_t stride, const uint8_t *Q, int64_t q_stride,
                      int32_t T, int32_t n, int32_t *acc)
{
    for (int32_t t = 0; t < T; t++) {
        const uint8_t *q = Q + t * q_stride;
        for (int32_t o = 0; o < rows; o++) {
            const int8_t *w = Wpm1 + (size_t)o * stride;
            int32_t s = 0;
            for (int32_t i = 0; i < n; i++)
                s += (int32_t)w[i] * (int32_t)q[i];
            acc[(size_t)t * rows + o] = s;
        }
    }
}

static void pack_planes_u8(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes)
{
    int32_t words = RBM_WORDS(n);
    for (int32_t w = 0; w < k * words; w++)
        planes[w] = 0;
    for (int32_t b = 0; b < k; b++) {
        uint64_t *p = planes + (size_t)b * words;
        int32_t bit = 8 - k + b;
        for (int32_t i = 0; i < n; i++)
            if ((q[i] >> bit) & 1)
                p[i >> 6] |= 1ULL << (i & 63);
    }
}

static void planes_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k,
                       int32_t *acc)
{
    int32_t total = 0; /* sum_b 2^b popcount(P_b) = sum_i v_i */
    for (int32_t b = 0; b < k; b++) {
        int32_t c = 0;
        for (int32_t j = 0; j < words; j++)
            c += popcount64(planes[(size_t)b * words + j]);
        total += c << b;
    }
    for (int32_t o = 0; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        int32_t on = 0; /* sum of v_i where the weight bit is 1 */
        for (int32_t b = 0; b < k; b++) {
            const uint64_t *p = planes + (size_t)b * words;
            int32_t c = 0;
            for (int32_t j = 0; j < words; j++)
                c += popcount64(p[j] & w[j]);
            on += c << b;
        }
        acc[o] = 2 * on - total;
    }
}

const rbm_kernels rbm_kernels_portable = RBM_KERNEL_TABLE("portable", , u8_bmv, s8u8_mv, u8_pm1_mv);
