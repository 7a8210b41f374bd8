/*
 * The machine's XNOR-popcount peak, one core: binary multiply-accumulates per second of
 * popcount(a XOR b) summed over two L1-resident bit vectors, in the fastest ways this CPU
 * offers (benchmarks/roofline.py compiles and runs this; numbers in G binary MACs/s).
 *   x86_64:  AVX2 Harley-Seal (carry-save adders over 16 vectors, vpshufb popcount of the
 *            top counter), AVX2 vpshufb per vector, scalar POPCNT with 4 accumulators;
 *   aarch64: NEON veor + vcnt with byte accumulators (the LCE/daBNN inner loop).
 * Build: cc -O3 -mavx2 -mpopcnt xnor_peak.c (x86_64) or cc -O3 xnor_peak.c (aarch64).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WORDS 1024 /* 8 KiB per vector: both stay in L1 */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef uint64_t (*fn_t)(const uint64_t *a, const uint64_t *b, size_t words);

#if defined(__x86_64__)
#include <immintrin.h>
static inline __m256i pc8(__m256i v)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                           _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
}
static inline __m256i pc64(__m256i v) { return _mm256_sad_epu8(pc8(v), _mm256_setzero_si256()); }
#define CSA(h, l, a, b, c)                                                       \
    do {                                                                         \
        __m256i u_ = _mm256_xor_si256(a, b);                                     \
        h = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u_, c));    \
        l = _mm256_xor_si256(u_, c);                                             \
    } while (0)
#define X(i) _mm256_xor_si256(_mm256_loadu_si256(A + (i)), _mm256_loadu_si256(B + (i)))

static uint64_t harley_seal(const uint64_t *a, const uint64_t *b, size_t words)
{
    const __m256i *A = (const __m256i *)a, *B = (const __m256i *)b;
    size_t n = words / 4;
    __m256i total = _mm256_setzero_si256(), ones = total, twos = total, fours = total, eights = total, sixteens;
    __m256i twosA, twosB, foursA, foursB, eightsA, eightsB;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        CSA(twosA, ones, ones, X(i), X(i + 1));
        CSA(twosB, ones, ones, X(i + 2), X(i + 3));
        CSA(foursA, twos, twos, twosA, twosB);
        CSA(twosA, ones, ones, X(i + 4), X(i + 5));
        CSA(twosB, ones, ones, X(i + 6), X(i + 7));
        CSA(foursB, twos, twos, twosA, twosB);
        CSA(eightsA, fours, fours, foursA, foursB);
        CSA(twosA, ones, ones, X(i + 8), X(i + 9));
        CSA(twosB, ones, ones, X(i + 10), X(i + 11));
        CSA(foursA, twos, twos, twosA, twosB);
        CSA(twosA, ones, ones, X(i + 12), X(i + 13));
        CSA(twosB, ones, ones, X(i + 14), X(i + 15));
        CSA(foursB, twos, twos, twosA, twosB);
        CSA(eightsB, fours, fours, foursA, foursB);
        CSA(sixteens, eights, eights, eightsA, eightsB);
        total = _mm256_add_epi64(total, pc64(sixteens));
    }
    total = _mm256_slli_epi64(total, 4);
    total = _mm256_add_epi64(total, _mm256_slli_epi64(pc64(eights), 3));
    total = _mm256_add_epi64(total, _mm256_slli_epi64(pc64(fours), 2));
    total = _mm256_add_epi64(total, _mm256_slli_epi64(pc64(twos), 1));
    total = _mm256_add_epi64(total, pc64(ones));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, total);
    return t[0] + t[1] + t[2] + t[3];
}

static uint64_t vpshufb(const uint64_t *a, const uint64_t *b, size_t words)
{
    const __m256i *A = (const __m256i *)a, *B = (const __m256i *)b;
    size_t n = words / 4;
    __m256i s = _mm256_setzero_si256();
    for (size_t i = 0; i < n;) {
        size_t end = i + 31 < n ? i + 31 : n;
        __m256i c0 = _mm256_setzero_si256(), c1 = c0;
        for (; i + 2 <= end; i += 2) {
            c0 = _mm256_add_epi8(c0, pc8(X(i)));
            c1 = _mm256_add_epi8(c1, pc8(X(i + 1)));
        }
        for (; i < end; i++)
            c0 = _mm256_add_epi8(c0, pc8(X(i)));
        s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_add_epi8(c0, c1), _mm256_setzero_si256()));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, s);
    return t[0] + t[1] + t[2] + t[3];
}

static uint64_t scalar_popcnt(const uint64_t *a, const uint64_t *b, size_t words)
{
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (size_t i = 0; i < words; i += 4) {
        c0 += (uint64_t)_mm_popcnt_u64(a[i] ^ b[i]);
        c1 += (uint64_t)_mm_popcnt_u64(a[i + 1] ^ b[i + 1]);
        c2 += (uint64_t)_mm_popcnt_u64(a[i + 2] ^ b[i + 2]);
        c3 += (uint64_t)_mm_popcnt_u64(a[i + 3] ^ b[i + 3]);
    }
    return c0 + c1 + c2 + c3;
}
static const struct { const char *name; fn_t fn; } METHODS[] = {
    {"avx2_harley_seal", harley_seal}, {"avx2_vpshufb", vpshufb}, {"scalar_popcnt", scalar_popcnt}, {0, 0}};
#elif defined(__aarch64__)
#include <arm_neon.h>
static uint64_t neon_cnt(const uint64_t *a, const uint64_t *b, size_t words)
{
    const uint8_t *A = (const uint8_t *)a, *B = (const uint8_t *)b;
    size_t n = words / 2;
    uint32x4_t s = vdupq_n_u32(0);
    for (size_t i = 0; i < n;) {
        size_t end = i + 31 < n ? i + 31 : n;
        uint8x16_t c0 = vdupq_n_u8(0), c1 = c0;
        for (; i + 2 <= end; i += 2) {
            c0 = vaddq_u8(c0, vcntq_u8(veorq_u8(vld1q_u8(A + 16 * i), vld1q_u8(B + 16 * i))));
            c1 = vaddq_u8(c1, vcntq_u8(veorq_u8(vld1q_u8(A + 16 * i + 16), vld1q_u8(B + 16 * i + 16))));
        }
        for (; i < end; i++)
            c0 = vaddq_u8(c0, vcntq_u8(veorq_u8(vld1q_u8(A + 16 * i), vld1q_u8(B + 16 * i))));
        s = vpadalq_u16(s, vpaddlq_u8(vaddq_u8(c0, c1)));
    }
    return vaddvq_u32(s);
}
static const struct { const char *name; fn_t fn; } METHODS[] = {{"neon_cnt", neon_cnt}, {0, 0}};
#else
static uint64_t plain(const uint64_t *a, const uint64_t *b, size_t words)
{
    uint64_t c = 0;
    for (size_t i = 0; i < words; i++)
        c += (uint64_t)__builtin_popcountll(a[i] ^ b[i]);
    return c;
}
static const struct { const char *name; fn_t fn; } METHODS[] = {{"builtin_popcount", plain}, {0, 0}};
#endif

int main(void)
{
    static uint64_t a[WORDS], b[WORDS];
    uint64_t x = 88172645463325252ULL, expect = 0;
    for (int i = 0; i < WORDS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17, a[i] = x;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17, b[i] = x;
        expect += (uint64_t)__builtin_popcountll(a[i] ^ b[i]);
    }
    printf("{");
    for (int m = 0; METHODS[m].name; m++) {
        volatile uint64_t sink = 0;
        if (METHODS[m].fn(a, b, WORDS) != expect) {
            fprintf(stderr, "%s gives a wrong count\n", METHODS[m].name);
            return 1;
        }
        double best = 1e30;
        for (int rep = 0; rep < 200; rep++) { /* best of many short runs: robust to a shared host */
            double t = now();
            for (int k = 0; k < 200; k++) {
                sink += METHODS[m].fn(a, b, WORDS);
                a[k & (WORDS - 1)] ^= 1; /* keep the compiler from hoisting the call */
            }
            double d = (now() - t) / 200;
            if (d < best)
                best = d;
        }
        printf("%s\"%s\": %.3f", m ? ", " : "", METHODS[m].name, WORDS * 64.0 / best / 1e9);
    }
    printf("}\n");
    return 0;
}
