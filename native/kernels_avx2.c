/*
 * x86_64 kernels: AVX2 (vpshufb nibble-table popcount, vpsadbw reduction),
 * POPCNT for row tails, FMA for the float layers.  Every function carries a
 * function-level target attribute, so this file compiles without -mavx2 and the
 * rest of the extension runs on any x86_64; select.c only hands this table out
 * when the CPU reports AVX2, POPCNT and FMA.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "rbm_kernels.h"
#include "kernels_table.h"

#define FN __attribute__((target("avx2,popcnt,fma"))) static
#define INL __attribute__((target("avx2,popcnt,fma"), always_inline)) static inline

INL __m256i popcnt8(__m256i v)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3,
                                         1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_and_si256(v, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

/* sums of the four 64-bit lanes of s0..s3 -> one vector [sum(s0), sum(s1), sum(s2), sum(s3)] */
INL __m256i hsum4_epi64(__m256i s0, __m256i s1, __m256i s2, __m256i s3)
{
    __m256i t01 = _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
    __m256i t23 = _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
    return _mm256_add_epi64(_mm256_permute2x128_si256(t01, t23, 0x20), _mm256_permute2x128_si256(t01, t23, 0x31));
}

INL int64_t hsum_epi64(__m256i s)
{
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return _mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1);
}

INL float hsum_ps(__m256 v)
{
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    return _mm_cvtss_f32(t);
}

/* 4 float vectors -> [sum(a0), sum(a1), sum(a2), sum(a3)] */
INL __m128 hsum4_ps(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* f32_mm and f32_mv (kernels_f32_mm.h): 8-lane FMA chains, hsum_ps */
#define MM_INL INL
#define MM_FN FN
#define MM_NAME f32_mm
#define MM_VEC __m256
#define MM_LANES 8
#define MM_ZERO() _mm256_setzero_ps()
#define MM_LOAD(p) _mm256_loadu_ps(p)
#define MM_FMA(a, w, x) _mm256_fmadd_ps(w, x, a)
#define MM_HSUM(a) hsum_ps(a)
#define MM_MV_NAME f32_mv
#define MM_HSUM4(a, s) _mm_storeu_ps(s, hsum4_ps(a[0], a[1], a[2], a[3]))
#include "kernels_f32_mm.h"

FN void pack_ge_u8(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits)
{
    int32_t words = RBM_WORDS(n);
    memset(bits, 0, (size_t)words * 8);
    if (t >= 256)
        return;
    int32_t i = 0;
    if (t > 0) {
        const __m256i tv = _mm256_set1_epi8((char)(uint8_t)t);
        for (; i + 32 <= n; i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + i));
            __m256i ge = _mm256_cmpeq_epi8(_mm256_max_epu8(v, tv), v);
            bits[i >> 6] |= (uint64_t)(uint32_t)_mm256_movemask_epi8(ge) << (i & 63);
        }
    }
    for (; i < n; i++)
        if ((int32_t)q[i] >= t)
            bits[i >> 6] |= 1ULL << (i & 63);
}

FN void bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n, int32_t *acc)
{
    const int32_t chunks = words >> 2, tail = chunks * 4;
    const __m256i zero = _mm256_setzero_si256();
    int32_t o = 0;
    if (words <= 2) { /* short rows (e.g. 128 inputs): scalar POPCNT beats any vector reduction */
        const uint64_t x0 = x[0], x1 = words == 2 ? x[1] : 0;
        if (words == 2) {
            for (; o < rows; o++)
                acc[o] = n - 2 * (int32_t)(_mm_popcnt_u64(x0 ^ W[2 * (size_t)o]) + _mm_popcnt_u64(x1 ^ W[2 * (size_t)o + 1]));
        } else {
            for (; o < rows; o++)
                acc[o] = n - 2 * (int32_t)_mm_popcnt_u64(x0 ^ W[o]);
        }
        return;
    }
    for (; o + 4 <= rows; o += 4) {
        const uint64_t *w0 = W + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
        __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
        for (int32_t c = 0; c < chunks;) {
            int32_t end = c + 31 < chunks ? c + 31 : chunks; /* bytes hold up to 31 * 8 */
            __m256i b0 = zero, b1 = zero, b2 = zero, b3 = zero;
            for (; c < end; c++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 4 * c));
                b0 = _mm256_add_epi8(b0, popcnt8(_mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(w0 + 4 * c)))));
                b1 = _mm256_add_epi8(b1, popcnt8(_mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(w1 + 4 * c)))));
                b2 = _mm256_add_epi8(b2, popcnt8(_mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(w2 + 4 * c)))));
                b3 = _mm256_add_epi8(b3, popcnt8(_mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(w3 + 4 * c)))));
            }
            s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(b0, zero));
            s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(b1, zero));
            s2 = _mm256_add_epi64(s2, _mm256_sad_epu8(b2, zero));
            s3 = _mm256_add_epi64(s3, _mm256_sad_epu8(b3, zero));
        }
        int64_t c4[4];
        _mm256_storeu_si256((__m256i *)c4, hsum4_epi64(s0, s1, s2, s3));
        for (int32_t j = tail; j < words; j++) {
            uint64_t xj = x[j];
            c4[0] += _mm_popcnt_u64(xj ^ w0[j]);
            c4[1] += _mm_popcnt_u64(xj ^ w1[j]);
            c4[2] += _mm_popcnt_u64(xj ^ w2[j]);
            c4[3] += _mm_popcnt_u64(xj ^ w3[j]);
        }
        acc[o] = n - 2 * (int32_t)c4[0];
        acc[o + 1] = n - 2 * (int32_t)c4[1];
        acc[o + 2] = n - 2 * (int32_t)c4[2];
        acc[o + 3] = n - 2 * (int32_t)c4[3];
    }
    for (; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        __m256i s = zero;
        for (int32_t c = 0; c < chunks;) {
            int32_t end = c + 31 < chunks ? c + 31 : chunks;
            __m256i b = zero;
            for (; c < end; c++)
                b = _mm256_add_epi8(b, popcnt8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + 4 * c)),
                                                                _mm256_loadu_si256((const __m256i *)(w + 4 * c)))));
            s = _mm256_add_epi64(s, _mm256_sad_epu8(b, zero));
        }
        int64_t cnt = hsum_epi64(s);
        for (int32_t j = tail; j < words; j++)
            cnt += _mm_popcnt_u64(x[j] ^ w[j]);
        acc[o] = n - 2 * (int32_t)cnt;
    }
}

FN void threshold_pack(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows, uint64_t *bits)
{
    memset(bits, 0, (size_t)RBM_WORDS(rows) * 8);
    const __m256i zero = _mm256_setzero_si256();
    int32_t o = 0;
    for (; o + 8 <= rows; o += 8) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + o));
        __m256i t = _mm256_loadu_si256((const __m256i *)(thr + o));
        __m256i f = _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(flip + o))), zero);
        __m256i lt = _mm256_cmpgt_epi32(t, a); /* a < t: bit 0 unless flipped */
        __m256i gt = _mm256_cmpgt_epi32(a, t); /* a > t: bit 0 if flipped */
        __m256i off = _mm256_blendv_epi8(lt, gt, f);
        uint32_t m = (~(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(off))) & 0xFFu;
        bits[o >> 6] |= (uint64_t)m << (o & 63);
    }
    for (; o < rows; o++) {
        int on = flip[o] ? (acc[o] <= thr[o]) : (acc[o] >= thr[o]);
        if (on)
            bits[o >> 6] |= 1ULL << (o & 63);
    }
}

/* mask of the 32 weight bits at bit offset i (a multiple of 32) of a row: byte j = 0xFF when bit j is set */
INL __m256i bits32_mask(const uint64_t *w, int32_t i, __m256i shuf, __m256i sel)
{
    int32_t b32;
    memcpy(&b32, (const char *)w + (i >> 3), 4); /* little-endian: bits i..i+31 are these 4 bytes */
    __m256i m = _mm256_shuffle_epi8(_mm256_set1_epi32(b32), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(m, sel), sel);
}

FN void u8_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n, int32_t *acc)
{
    const __m256i zero = _mm256_setzero_si256();
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                          3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const int32_t full = n & ~31;
    /* total of q, for acc = 2 * (sum of q where the bit is 1) - total */
    int64_t total = 0;
    {
        __m256i s = zero;
        for (int32_t i = 0; i < full; i += 32)
            s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(q + i)), zero));
        total = hsum_epi64(s);
        for (int32_t i = full; i < n; i++)
            total += q[i];
    }
    int32_t o = 0;
    /* 4 rows per pass: one load of each q chunk serves four rows */
    for (; o + 4 <= rows; o += 4) {
        const uint64_t *w0 = W + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
        __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
        for (int32_t i = 0; i < full; i += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
            s0 = _mm256_add_epi64(s0, _mm256_sad_epu8(_mm256_and_si256(bits32_mask(w0, i, shuf, sel), qv), zero));
            s1 = _mm256_add_epi64(s1, _mm256_sad_epu8(_mm256_and_si256(bits32_mask(w1, i, shuf, sel), qv), zero));
            s2 = _mm256_add_epi64(s2, _mm256_sad_epu8(_mm256_and_si256(bits32_mask(w2, i, shuf, sel), qv), zero));
            s3 = _mm256_add_epi64(s3, _mm256_sad_epu8(_mm256_and_si256(bits32_mask(w3, i, shuf, sel), qv), zero));
        }
        int64_t on[4];
        _mm256_storeu_si256((__m256i *)on, hsum4_epi64(s0, s1, s2, s3));
        for (int32_t i = full; i < n; i++) {
            int64_t qi = q[i];
            on[0] += ((w0[i >> 6] >> (i & 63)) & 1) ? qi : 0;
            on[1] += ((w1[i >> 6] >> (i & 63)) & 1) ? qi : 0;
            on[2] += ((w2[i >> 6] >> (i & 63)) & 1) ? qi : 0;
            on[3] += ((w3[i >> 6] >> (i & 63)) & 1) ? qi : 0;
        }
        for (int r = 0; r < 4; r++)
            acc[o + r] = (int32_t)(2 * on[r] - total);
    }
    for (; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        __m256i s = zero;
        for (int32_t i = 0; i < full; i += 32) {
            __m256i v = _mm256_and_si256(bits32_mask(w, i, shuf, sel), _mm256_loadu_si256((const __m256i *)(q + i)));
            s = _mm256_add_epi64(s, _mm256_sad_epu8(v, zero));
        }
        int64_t on = hsum_epi64(s);
        for (int32_t i = full; i < n; i++)
            if ((w[i >> 6] >> (i & 63)) & 1)
                on += q[i];
        acc[o] = (int32_t)(2 * on - total);
    }
}

FN void s8u8_mv(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q, void *tmp,
                int32_t *acc)
{
    (void)rowsum;
    /* widen q to int16 once, then vpmaddwd with the sign-extended weights */
    int16_t *q16 = (int16_t *)(((uintptr_t)tmp + 31) & ~(uintptr_t)31);
    const int32_t full = n & ~15;
    for (int32_t i = 0; i < full; i += 16)
        _mm256_store_si256((__m256i *)(q16 + i), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(q + i))));
    for (int32_t o = 0; o < rows; o++) {
        const int8_t *w = W + (size_t)o * n;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        int32_t i = 0;
        for (; i + 32 <= full; i += 32) {
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + i)));
            __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + i + 16)));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(w0, _mm256_load_si256((const __m256i *)(q16 + i))));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(w1, _mm256_load_si256((const __m256i *)(q16 + i + 16))));
        }
        for (; i < full; i += 16) {
            __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + i)));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(w0, _mm256_load_si256((const __m256i *)(q16 + i))));
        }
        __m256i s = _mm256_add_epi32(s0, s1);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        int32_t v = _mm_cvtsi128_si32(t);
        for (; i < n; i++)
            v += (int32_t)w[i] * (int32_t)q[i];
        acc[o] = v;
    }
}

INL __m256 load8_u8_ps(const uint8_t *q)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

/* 8 rows per block: eight independent FMA chains hide the FMA latency, one u8->float
 * conversion of the input serves eight rows */
FN void f32u8_mv(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias, float *out)
{
    const int32_t full = n & ~7;
    int32_t o = 0;
    for (; o + 8 <= rows; o += 8) {
        const float *w = W + (size_t)o * n;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int32_t i = 0; i < full; i += 8) {
            __m256 xv = load8_u8_ps(q + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + (size_t)n + i), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 2 * (size_t)n + i), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 3 * (size_t)n + i), xv, a3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 4 * (size_t)n + i), xv, a4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 5 * (size_t)n + i), xv, a5);
            a6 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 6 * (size_t)n + i), xv, a6);
            a7 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 7 * (size_t)n + i), xv, a7);
        }
        float s[8];
        _mm_storeu_ps(s, hsum4_ps(a0, a1, a2, a3));
        _mm_storeu_ps(s + 4, hsum4_ps(a4, a5, a6, a7));
        for (int r = 0; r < 8; r++) {
            const float *wr = w + (size_t)r * n;
            for (int32_t i = full; i < n; i++)
                s[r] += wr[i] * (float)q[i];
            out[o + r] = bias[o + r] + s[r];
        }
    }
    for (; o < rows; o++) {
        const float *w = W + (size_t)o * n;
        __m256 a = _mm256_setzero_ps(), b = a;
        int32_t i = 0;
        for (; i + 16 <= full; i += 16) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), load8_u8_ps(q + i), a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), load8_u8_ps(q + i + 8), b);
        }
        for (; i < full; i += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), load8_u8_ps(q + i), a);
        float s = hsum_ps(_mm256_add_ps(a, b));
        for (i = full; i < n; i++)
            s += w[i] * (float)q[i];
        out[o] = bias[o] + s;
    }
}

FN void maxpool_u8(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out)
{
    int32_t j = 0;
    if (pool == 8) {
        /* 4 windows of 8 bytes per 32-byte load: max-reduce inside each 64-bit lane */
        for (; j + 4 <= m; j += 4) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(q + (size_t)j * 8));
            v = _mm256_max_epu8(v, _mm256_srli_epi64(v, 32));
            v = _mm256_max_epu8(v, _mm256_srli_epi64(v, 16));
            v = _mm256_max_epu8(v, _mm256_srli_epi64(v, 8));
            uint64_t l[4];
            _mm256_storeu_si256((__m256i *)l, v);
            out[j] = (uint8_t)l[0];
            out[j + 1] = (uint8_t)l[1];
            out[j + 2] = (uint8_t)l[2];
            out[j + 3] = (uint8_t)l[3];
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

FN void sparse_bitcount(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx, int32_t k,
                        int32_t *cnt)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int32_t o = 0;
    /* 32 rows per pass: four 8-lane int32 counters stay in registers over all indices */
    for (; o + 32 <= rows; o += 32) {
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
        for (int32_t j = 0; j < k; j++) {
            uint32_t b = (uint32_t)(WT[(size_t)idx[j] * twords + (o >> 6)] >> (o & 63));
            c0 = _mm256_sub_epi32(c0, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(b & 0xFF)), sel), sel));
            c1 = _mm256_sub_epi32(c1, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)((b >> 8) & 0xFF)), sel), sel));
            c2 = _mm256_sub_epi32(c2, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)((b >> 16) & 0xFF)), sel), sel));
            c3 = _mm256_sub_epi32(c3, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(b >> 24)), sel), sel));
        }
        _mm256_storeu_si256((__m256i *)(cnt + o), c0);
        _mm256_storeu_si256((__m256i *)(cnt + o + 8), c1);
        _mm256_storeu_si256((__m256i *)(cnt + o + 16), c2);
        _mm256_storeu_si256((__m256i *)(cnt + o + 24), c3);
    }
    for (; o + 8 <= rows; o += 8) {
        __m256i c = _mm256_setzero_si256();
        for (int32_t j = 0; j < k; j++) {
            uint32_t b = (uint32_t)(WT[(size_t)idx[j] * twords + (o >> 6)] >> (o & 63)) & 0xFF;
            c = _mm256_sub_epi32(c, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)b), sel), sel));
        }
        _mm256_storeu_si256((__m256i *)(cnt + o), c);
    }
    for (; o < rows; o++) {
        int32_t c = 0;
        for (int32_t j = 0; j < k; j++)
            c += (int32_t)((WT[(size_t)idx[j] * twords + (o >> 6)] >> (o & 63)) & 1);
        cnt[o] = c;
    }
}

FN void sparse_s8sum(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc)
{
    int32_t o = 0;
    for (; o + 16 <= rows; o += 16) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        for (int32_t j = 0; j < k; j++) {
            __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(WTq + (size_t)idx[j] * rows + o)));
            a0 = _mm256_add_epi32(a0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(w)));
            a1 = _mm256_add_epi32(a1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(w, 1)));
        }
        _mm256_storeu_si256((__m256i *)(acc + o), a0);
        _mm256_storeu_si256((__m256i *)(acc + o + 8), a1);
    }
    for (; o < rows; o++) {
        int32_t a = 0;
        for (int32_t j = 0; j < k; j++)
            a += WTq[(size_t)idx[j] * rows + o];
        acc[o] = a;
    }
}

INL int32_t hsum_epi32(__m256i a)
{
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return _mm_cvtsi128_si32(t);
}

/* one sample, 4 rows per q load */
FN void pm1_one(const int8_t *Wp, int32_t rows, int32_t stride, const uint8_t *q, int32_t n, int32_t *acc)
{
    const int32_t full = n & ~31;
    const __m256i ones = _mm256_set1_epi16(1);
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const int8_t *w0 = Wp + (size_t)o * stride, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t i = 0; i < full;) {
            int32_t end = i + 64 * 32 < full ? i + 64 * 32 : full; /* s16: 64 steps of pairs <= 510 */
            __m256i h0 = _mm256_setzero_si256(), h1 = h0, h2 = h0, h3 = h0;
            for (; i < end; i += 32) {
                __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
                h0 = _mm256_add_epi16(h0, _mm256_maddubs_epi16(qv, _mm256_loadu_si256((const __m256i *)(w0 + i))));
                h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(qv, _mm256_loadu_si256((const __m256i *)(w1 + i))));
                h2 = _mm256_add_epi16(h2, _mm256_maddubs_epi16(qv, _mm256_loadu_si256((const __m256i *)(w2 + i))));
                h3 = _mm256_add_epi16(h3, _mm256_maddubs_epi16(qv, _mm256_loadu_si256((const __m256i *)(w3 + i))));
            }
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(h0, ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(h1, ones));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(h2, ones));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(h3, ones));
        }
        int32_t v[4] = {hsum_epi32(a0), hsum_epi32(a1), hsum_epi32(a2), hsum_epi32(a3)};
        for (int32_t i = full; i < n; i++) {
            int32_t qi = q[i];
            v[0] += w0[i] * qi;
            v[1] += w1[i] * qi;
            v[2] += w2[i] * qi;
            v[3] += w3[i] * qi;
        }
        for (int r = 0; r < 4; r++)
            acc[o + r] = v[r];
    }
    for (; o < rows; o++) {
        const int8_t *w = Wp + (size_t)o * stride;
        __m256i a = _mm256_setzero_si256();
        for (int32_t i = 0; i < full;) {
            int32_t end = i + 64 * 32 < full ? i + 64 * 32 : full;
            __m256i h = _mm256_setzero_si256();
            for (; i < end; i += 32)
                h = _mm256_add_epi16(h, _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(q + i)),
                                                             _mm256_loadu_si256((const __m256i *)(w + i))));
            a = _mm256_add_epi32(a, _mm256_madd_epi16(h, ones));
        }
        int32_t v = hsum_epi32(a);
        for (int32_t i = full; i < n; i++)
            v += (int32_t)w[i] * (int32_t)q[i];
        acc[o] = v;
    }
}

/* two samples, 4 rows: each weight vector loaded once for both */
FN void pm1_two(const int8_t *Wp, int32_t rows, int32_t stride, const uint8_t *qa, const uint8_t *qb, int32_t n,
                int32_t *acca, int32_t *accb)
{
    const int32_t full = n & ~31;
    const __m256i ones = _mm256_set1_epi16(1);
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const int8_t *w0 = Wp + (size_t)o * stride, *w1 = w0 + stride, *w2 = w1 + stride, *w3 = w2 + stride;
        __m256i a[8];
        for (int r = 0; r < 8; r++)
            a[r] = _mm256_setzero_si256();
        for (int32_t i = 0; i < full;) {
            int32_t end = i + 64 * 32 < full ? i + 64 * 32 : full;
            __m256i h0 = _mm256_setzero_si256(), h1 = h0, h2 = h0, h3 = h0, g0 = h0, g1 = h0, g2 = h0, g3 = h0;
            for (; i < end; i += 32) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(qa + i));
                __m256i y = _mm256_loadu_si256((const __m256i *)(qb + i));
                __m256i v0 = _mm256_loadu_si256((const __m256i *)(w0 + i));
                __m256i v1 = _mm256_loadu_si256((const __m256i *)(w1 + i));
                h0 = _mm256_add_epi16(h0, _mm256_maddubs_epi16(x, v0));
                g0 = _mm256_add_epi16(g0, _mm256_maddubs_epi16(y, v0));
                h1 = _mm256_add_epi16(h1, _mm256_maddubs_epi16(x, v1));
                g1 = _mm256_add_epi16(g1, _mm256_maddubs_epi16(y, v1));
                __m256i v2 = _mm256_loadu_si256((const __m256i *)(w2 + i));
                __m256i v3 = _mm256_loadu_si256((const __m256i *)(w3 + i));
                h2 = _mm256_add_epi16(h2, _mm256_maddubs_epi16(x, v2));
                g2 = _mm256_add_epi16(g2, _mm256_maddubs_epi16(y, v2));
                h3 = _mm256_add_epi16(h3, _mm256_maddubs_epi16(x, v3));
                g3 = _mm256_add_epi16(g3, _mm256_maddubs_epi16(y, v3));
            }
            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(h0, ones));
            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(h1, ones));
            a[2] = _mm256_add_epi32(a[2], _mm256_madd_epi16(h2, ones));
            a[3] = _mm256_add_epi32(a[3], _mm256_madd_epi16(h3, ones));
            a[4] = _mm256_add_epi32(a[4], _mm256_madd_epi16(g0, ones));
            a[5] = _mm256_add_epi32(a[5], _mm256_madd_epi16(g1, ones));
            a[6] = _mm256_add_epi32(a[6], _mm256_madd_epi16(g2, ones));
            a[7] = _mm256_add_epi32(a[7], _mm256_madd_epi16(g3, ones));
        }
        const int8_t *wr[4] = {w0, w1, w2, w3};
        for (int r = 0; r < 4; r++) {
            int32_t va = hsum_epi32(a[r]), vb = hsum_epi32(a[4 + r]);
            for (int32_t i = full; i < n; i++) {
                va += wr[r][i] * (int32_t)qa[i];
                vb += wr[r][i] * (int32_t)qb[i];
            }
            acca[o + r] = va;
            accb[o + r] = vb;
        }
    }
    if (o < rows) {
        int32_t tmpa[4], tmpb[4];
        pm1_one(Wp + (size_t)o * stride, rows - o, stride, qa, n, tmpa);
        pm1_one(Wp + (size_t)o * stride, rows - o, stride, qb, n, tmpb);
        for (int32_t r = 0; r < rows - o; r++) {
            acca[o + r] = tmpa[r];
            accb[o + r] = tmpb[r];
        }
    }
}

/* int8 input layer on +-1 int8 weights: vpmaddubsw (u8 q x s8 w, pairs <= 510) summed in s16
 * for up to 64 steps, widened with vpmaddwd; samples in pairs share every weight load */
FN void u8_pm1_mv(const int8_t *Wp, int32_t rows, int32_t stride, const uint8_t *Q, int64_t q_stride, int32_t T,
                  int32_t n, int32_t *acc)
{
    int32_t t = 0;
    for (; t + 2 <= T; t += 2)
        pm1_two(Wp, rows, stride, Q + t * q_stride, Q + (t + 1) * q_stride, n, acc + (size_t)t * rows,
                acc + (size_t)(t + 1) * rows);
    for (; t < T; t++)
        pm1_one(Wp, rows, stride, Q + t * q_stride, n, acc + (size_t)t * rows);
}

FN void pack_planes_u8(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes)
{
    int32_t words = RBM_WORDS(n);
    memset(planes, 0, (size_t)k * words * 8);
    int32_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + i));
        for (int32_t b = 0; b < k; b++) {
            /* bit (8 - k + b) of every byte to its top bit: a 16-bit shift left by k - 1 - b <= 7
             * takes each byte's top bit from the same byte, so movemask reads the plane */
            __m256i s = _mm256_sll_epi16(v, _mm_cvtsi32_si128(k - 1 - b));
            planes[(size_t)b * words + (i >> 6)] |= (uint64_t)(uint32_t)_mm256_movemask_epi8(s) << (i & 63);
        }
    }
    for (; i < n; i++)
        for (int32_t b = 0; b < k; b++)
            if ((q[i] >> (8 - k + b)) & 1)
                planes[(size_t)b * words + (i >> 6)] |= 1ULL << (i & 63);
}

FN void planes_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k, int32_t *acc)
{
    const int32_t chunks = words >> 2, tail = chunks * 4;
    const __m256i zero = _mm256_setzero_si256();
    int64_t total = 0; /* sum_i v_i */
    for (int32_t b = 0; b < k; b++)
        for (int32_t j = 0; j < words; j++)
            total += (int64_t)_mm_popcnt_u64(planes[(size_t)b * words + j]) << b;
    int32_t o = 0;
    /* 4 rows per pass; per plane b the byte counts of AND are summed (vpsadbw) and weighted by 2^b */
    for (; o + 4 <= rows; o += 4) {
        const uint64_t *w0 = W + (size_t)o * words, *w1 = w0 + words, *w2 = w1 + words, *w3 = w2 + words;
        __m256i s0 = zero, s1 = zero, s2 = zero, s3 = zero;
        int64_t t[4] = {0, 0, 0, 0};
        for (int32_t b = 0; b < k; b++) {
            const uint64_t *x = planes + (size_t)b * words;
            const __m128i sh = _mm_cvtsi32_si128(b);
            for (int32_t c = 0; c < chunks;) {
                int32_t end = c + 31 < chunks ? c + 31 : chunks; /* bytes hold up to 31 * 8 */
                __m256i b0 = zero, b1 = zero, b2 = zero, b3 = zero;
                for (; c < end; c++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 4 * c));
                    b0 = _mm256_add_epi8(b0, popcnt8(_mm256_and_si256(xv, _mm256_loadu_si256((const __m256i *)(w0 + 4 * c)))));
                    b1 = _mm256_add_epi8(b1, popcnt8(_mm256_and_si256(xv, _mm256_loadu_si256((const __m256i *)(w1 + 4 * c)))));
                    b2 = _mm256_add_epi8(b2, popcnt8(_mm256_and_si256(xv, _mm256_loadu_si256((const __m256i *)(w2 + 4 * c)))));
                    b3 = _mm256_add_epi8(b3, popcnt8(_mm256_and_si256(xv, _mm256_loadu_si256((const __m256i *)(w3 + 4 * c)))));
                }
                s0 = _mm256_add_epi64(s0, _mm256_sll_epi64(_mm256_sad_epu8(b0, zero), sh));
                s1 = _mm256_add_epi64(s1, _mm256_sll_epi64(_mm256_sad_epu8(b1, zero), sh));
                s2 = _mm256_add_epi64(s2, _mm256_sll_epi64(_mm256_sad_epu8(b2, zero), sh));
                s3 = _mm256_add_epi64(s3, _mm256_sll_epi64(_mm256_sad_epu8(b3, zero), sh));
            }
            for (int32_t j = tail; j < words; j++) {
                uint64_t xj = x[j];
                t[0] += (int64_t)_mm_popcnt_u64(xj & w0[j]) << b;
                t[1] += (int64_t)_mm_popcnt_u64(xj & w1[j]) << b;
                t[2] += (int64_t)_mm_popcnt_u64(xj & w2[j]) << b;
                t[3] += (int64_t)_mm_popcnt_u64(xj & w3[j]) << b;
            }
        }
        int64_t c4[4];
        _mm256_storeu_si256((__m256i *)c4, hsum4_epi64(s0, s1, s2, s3));
        for (int r = 0; r < 4; r++)
            acc[o + r] = (int32_t)(2 * (c4[r] + t[r]) - total);
    }
    for (; o < rows; o++) {
        const uint64_t *w = W + (size_t)o * words;
        __m256i s = zero;
        int64_t on = 0;
        for (int32_t b = 0; b < k; b++) {
            const uint64_t *x = planes + (size_t)b * words;
            const __m128i sh = _mm_cvtsi32_si128(b);
            for (int32_t c = 0; c < chunks;) {
                int32_t end = c + 31 < chunks ? c + 31 : chunks;
                __m256i bb = zero;
                for (; c < end; c++)
                    bb = _mm256_add_epi8(bb, popcnt8(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + 4 * c)),
                                                                      _mm256_loadu_si256((const __m256i *)(w + 4 * c)))));
                s = _mm256_add_epi64(s, _mm256_sll_epi64(_mm256_sad_epu8(bb, zero), sh));
            }
            for (int32_t j = tail; j < words; j++)
                on += (int64_t)_mm_popcnt_u64(x[j] & w[j]) << b;
        }
        on += hsum_epi64(s);
        acc[o] = (int32_t)(2 * on - total);
    }
}

const rbm_kernels rbm_kernels_avx2 = RBM_KERNEL_TABLE("avx2", , u8_bmv, s8u8_mv, u8_pm1_mv);
#endif /* __x86_64__ */
