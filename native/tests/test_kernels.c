/*
 * Stand-alone check of every kernel variant this CPU runs against the portable
 * C kernels (integer kernels bit for bit), on a grid of awkward sizes and on
 * random shapes, with random contents (no Python needed; handy under qemu):
 *   cc -O2 -Inative native/STAR.c -lm -o /tmp/tk && /tmp/tk
 *   aarch64-linux-gnu-gcc -O2 -Inative native/STAR.c -lm -o /tmp/tka &&
 *     qemu-aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu /tmp/tka
 * (STAR = *; every .c file of native/, this one included).
 * Exit status 0 when everything agrees (float kernels to a relative 1e-4).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbm_kernels.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define RANDOM_SHAPES 60

static int failures = 0;
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            failures++;                                    \
            if (failures < 20) {                           \
                printf("FAIL: " __VA_ARGS__);              \
                printf("\n");                              \
            }                                              \
        }                                                  \
    } while (0)

static void fill_bits(uint64_t *w, int32_t rows, int32_t n)
{
    int32_t words = RBM_WORDS(n);
    for (int32_t o = 0; o < rows; o++)
        for (int32_t j = 0; j < words; j++) {
            uint64_t v = rnd();
            if (j == words - 1 && (n & 63))
                v &= (1ULL << (n & 63)) - 1;
            w[(size_t)o * words + j] = v;
        }
}

static int feq(float a, float b)
{
    return fabsf(a - b) <= 1e-4f * (1.0f + fabsf(a) + fabsf(b));
}

static void test_variant(const rbm_kernels *K)
{
    const rbm_kernels *P = &rbm_kernels_portable;
    static const int32_t sizes[] = {1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 88, 127, 128, 130, 200, 257, 784, 1000, 2100};
    const int ns = (int)(sizeof sizes / sizeof sizes[0]);
    int checked = 0;
    /* the grid of awkward sizes, then random shapes (a third of them one off a multiple of 64) */
    int32_t shape_n[256], shape_rows[256];
    int nshapes = 0;
    for (int a = 0; a < ns; a++)
        for (int b = 0; b < ns; b += 3) {
            shape_n[nshapes] = sizes[a];
            shape_rows[nshapes++] = sizes[b] > 300 ? 37 : sizes[b];
        }
    for (int r = 0; r < RANDOM_SHAPES; r++) {
        int32_t n = 1 + (int32_t)(rnd() % 2200);
        if (r % 3 == 0)
            n = (n / 64) * 64 + (int32_t)(rnd() % 3) - 1;
        shape_n[nshapes] = n < 1 ? 1 : n;
        shape_rows[nshapes++] = 1 + (int32_t)(rnd() % 70);
    }
    for (int si = 0; si < nshapes; si++) {
            int32_t n = shape_n[si], rows = shape_rows[si];
            int32_t words = RBM_WORDS(n);
            uint64_t *W = malloc((size_t)rows * words * 8), *x = malloc((size_t)words * 8 + 8);
            uint64_t *b1 = calloc((size_t)words + 1, 8), *b2 = calloc((size_t)words + 1, 8);
            int32_t *a1 = malloc((size_t)rows * 4), *a2 = malloc((size_t)rows * 4), *thr = malloc((size_t)rows * 4);
            uint8_t *flip = malloc((size_t)rows), *q = malloc((size_t)n), *p1 = malloc((size_t)n), *p2 = malloc((size_t)n);
            int8_t *W8 = malloc((size_t)rows * n);
            int32_t *rowsum = malloc((size_t)rows * 4);
            float *Wf = malloc((size_t)rows * n * 4), *xf = malloc((size_t)n * 4), *bias = malloc((size_t)rows * 4);
            float *f1 = malloc((size_t)rows * 4), *f2 = malloc((size_t)rows * 4);
            void *tmp = malloc(2 * (size_t)n + 64);
            fill_bits(W, rows, n);
            fill_bits(x, 1, n);
            int mode = si % 3;
            for (int32_t i = 0; i < n; i++)
                q[i] = mode == 0 ? (uint8_t)rnd() : (mode == 1 ? 255 : (uint8_t)(rnd() & 1));
            for (int32_t o = 0; o < rows; o++) {
                thr[o] = (int32_t)(rnd() % (2 * (uint64_t)n + 1)) - n;
                flip[o] = rnd() & 1;
                bias[o] = (float)((int64_t)(rnd() % 2001) - 1000) / 1000.0f;
                rowsum[o] = 0;
                for (int32_t i = 0; i < n; i++) {
                    W8[(size_t)o * n + i] = (int8_t)rnd();
                    rowsum[o] += W8[(size_t)o * n + i];
                    Wf[(size_t)o * n + i] = (float)((int64_t)(rnd() % 2001) - 1000) / 1000.0f;
                }
            }
            for (int32_t i = 0; i < n; i++)
                xf[i] = (float)((int64_t)(rnd() % 2001) - 1000) / 1000.0f;
            static const int32_t ts[] = {0, 1, 2, 127, 128, 129, 255, 256};
            for (int t = 0; t < 8; t++) {
                memset(b1, 0xAB, (size_t)words * 8);
                memset(b2, 0xCD, (size_t)words * 8);
                P->pack_ge_u8(q, n, ts[t], b1);
                K->pack_ge_u8(q, n, ts[t], b2);
                CHECK(!memcmp(b1, b2, (size_t)words * 8), "%s pack_ge_u8 n=%d t=%d", K->name, n, ts[t]);
            }
            P->bmv(W, rows, words, x, n, a1);
            K->bmv(W, rows, words, x, n, a2);
            CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s bmv n=%d rows=%d", K->name, n, rows);
            {
                int32_t rw = RBM_WORDS(rows);
                uint64_t *t1 = malloc((size_t)rw * 8), *t2 = malloc((size_t)rw * 8);
                memset(t2, 0xEE, (size_t)rw * 8);
                P->threshold_pack(a1, thr, flip, rows, t1);
                K->threshold_pack(a1, thr, flip, rows, t2);
                CHECK(!memcmp(t1, t2, (size_t)rw * 8), "%s threshold_pack rows=%d", K->name, rows);
                free(t1);
                free(t2);
            }
            P->u8_bmv(W, rows, words, q, n, a1);
            K->u8_bmv(W, rows, words, q, n, a2);
            CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s u8_bmv n=%d rows=%d", K->name, n, rows);
            /* planes input mode: packing against portable, the layer against the plain sum of
             * v_i * (+-1) (v = q >> (8 - k)) for every k, on q of every pattern and on random bytes */
            {
                uint64_t *P1 = malloc((size_t)8 * words * 8), *P2 = malloc((size_t)8 * words * 8);
                uint8_t *qr = malloc((size_t)n);
                for (int32_t i = 0; i < n; i++)
                    qr[i] = (uint8_t)rnd();
                for (int src = 0; src < 2; src++) {
                    const uint8_t *qq = src ? qr : q;
                    for (int32_t k = 1; k <= 8; k++) {
                        memset(P1, 0xAB, (size_t)8 * words * 8);
                        memset(P2, 0xCD, (size_t)8 * words * 8);
                        P->pack_planes_u8(qq, n, k, P1);
                        K->pack_planes_u8(qq, n, k, P2);
                        CHECK(!memcmp(P1, P2, (size_t)k * words * 8), "%s pack_planes_u8 n=%d k=%d", K->name, n, k);
                        for (int32_t o = 0; o < rows; o++) {
                            int32_t s = 0;
                            for (int32_t i = 0; i < n; i++) {
                                int32_t v = qq[i] >> (8 - k);
                                s += ((W[(size_t)o * words + (i >> 6)] >> (i & 63)) & 1) ? v : -v;
                            }
                            a1[o] = s;
                        }
                        memset(a2, 0x5A, (size_t)rows * 4);
                        K->planes_bmv(W, rows, words, P1, k, a2);
                        CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s planes_bmv n=%d rows=%d k=%d", K->name, n, rows, k);
                    }
                }
                free(P1);
                free(P2);
                free(qr);
            }
            if (K->u8_pm1_mv) {
                /* +-1 int8 expansion of W, row stride n + 5 */
                int8_t *Wp = malloc((size_t)rows * (n + 5));
                for (int32_t o = 0; o < rows; o++)
                    for (int32_t i = 0; i < n + 5; i++)
                        Wp[(size_t)o * (n + 5) + i] =
                            i < n ? (((W[(size_t)o * words + (i >> 6)] >> (i & 63)) & 1) ? 1 : -1) : 0;
                P->u8_bmv(W, rows, words, q, n, a1);
                K->u8_pm1_mv(Wp, rows, n + 5, q, n, 1, n, a2);
                CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s u8_pm1_mv n=%d rows=%d", K->name, n, rows);
                /* three samples (a pair and a single), rows of stride n + 3 */
                uint8_t *Q3 = malloc((size_t)3 * (n + 3));
                int32_t *r1 = malloc((size_t)3 * rows * 4), *r2 = malloc((size_t)3 * rows * 4);
                for (int32_t i = 0; i < 3 * (n + 3); i++)
                    Q3[i] = (uint8_t)rnd();
                for (int t = 0; t < 3; t++)
                    P->u8_bmv(W, rows, words, Q3 + (size_t)t * (n + 3), n, r1 + (size_t)t * rows);
                K->u8_pm1_mv(Wp, rows, n + 5, Q3, n + 3, 3, n, r2);
                CHECK(!memcmp(r1, r2, (size_t)3 * rows * 4), "%s u8_pm1_mv T=3 n=%d rows=%d", K->name, n, rows);
                free(Q3);
                free(r1);
                free(r2);
                free(Wp);
            }
            P->s8u8_mv(W8, rowsum, rows, n, q, tmp, a1);
            K->s8u8_mv(W8, rowsum, rows, n, q, tmp, a2);
            CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s s8u8_mv n=%d rows=%d", K->name, n, rows);
            P->f32_mv(Wf, rows, n, xf, bias, f1);
            K->f32_mv(Wf, rows, n, xf, bias, f2);
            for (int32_t o = 0; o < rows; o++)
                CHECK(feq(f1[o], f2[o]), "%s f32_mv n=%d rows=%d o=%d %g %g", K->name, n, rows, o, f1[o], f2[o]);
            {
                /* f32_mm: against portable, and every sample exactly as with T = 1 */
                float *X = malloc((size_t)5 * n * 4), *m1 = malloc((size_t)5 * rows * 4), *m2 = malloc((size_t)5 * rows * 4);
                for (int32_t i = 0; i < 5 * n; i++)
                    X[i] = (float)((int64_t)(rnd() % 2001) - 1000) / 1000.0f;
                P->f32_mm(Wf, rows, n, X, 5, bias, m1);
                K->f32_mm(Wf, rows, n, X, 5, bias, m2);
                for (int32_t i = 0; i < 5 * rows; i++)
                    CHECK(feq(m1[i], m2[i]), "%s f32_mm n=%d rows=%d i=%d", K->name, n, rows, i);
                for (int32_t t = 0; t < 5; t++) {
                    K->f32_mm(Wf, rows, n, X + (size_t)t * n, 1, bias, f2);
                    CHECK(!memcmp(f2, m2 + (size_t)t * rows, (size_t)rows * 4), "%s f32_mm T-invariance n=%d rows=%d",
                          K->name, n, rows);
                }
                free(X);
                free(m1);
                free(m2);
            }
            P->f32u8_mv(Wf, rows, n, q, bias, f1);
            K->f32u8_mv(Wf, rows, n, q, bias, f2);
            for (int32_t o = 0; o < rows; o++)
                CHECK(feq(f1[o] / 255.0f, f2[o] / 255.0f), "%s f32u8_mv n=%d rows=%d o=%d %g %g", K->name, n, rows, o,
                      f1[o], f2[o]);
            static const int32_t pools[] = {1, 3, 8, 9};
            for (int pi = 0; pi < 4; pi++) {
                int32_t m = n / pools[pi];
                P->maxpool_u8(q, m, pools[pi], p1);
                K->maxpool_u8(q, m, pools[pi], p2);
                CHECK(!memcmp(p1, p2, (size_t)m), "%s maxpool n=%d pool=%d", K->name, n, pools[pi]);
            }
            /* sparse: WT [n, RBM_WORDS(rows)], WTq [n, rows] */
            {
                int32_t tw = RBM_WORDS(rows);
                uint64_t *WT = malloc((size_t)n * tw * 8);
                fill_bits(WT, n, rows);
                int32_t *idx = malloc((size_t)n * 4), k = 0;
                for (int32_t i = 0; i < n; i++)
                    if (rnd() % 4 == 0 || mode == 1)
                        idx[k++] = i;
                P->sparse_bitcount(WT, tw, rows, idx, k, a1);
                K->sparse_bitcount(WT, tw, rows, idx, k, a2);
                CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s sparse_bitcount n=%d rows=%d k=%d", K->name, n, rows, k);
                int8_t *WTq = malloc((size_t)n * rows);
                for (size_t i = 0; i < (size_t)n * rows; i++)
                    WTq[i] = (int8_t)rnd();
                P->sparse_s8sum(WTq, rows, idx, k, a1);
                K->sparse_s8sum(WTq, rows, idx, k, a2);
                CHECK(!memcmp(a1, a2, (size_t)rows * 4), "%s sparse_s8sum n=%d rows=%d k=%d", K->name, n, rows, k);
                free(WT);
                free(idx);
                free(WTq);
            }
            checked++;
            free(W); free(x); free(b1); free(b2); free(a1); free(a2); free(thr); free(flip); free(q); free(p1);
            free(p2); free(W8); free(rowsum); free(Wf); free(xf); free(bias); free(f1); free(f2); free(tmp);
        }
    printf("%s: %d shapes checked against portable\n", K->name, checked);
}

int main(void)
{
    for (int i = 0; rbm_variant_names[i]; i++) {
        const rbm_kernels *K = NULL;
        int st = rbm_variant_lookup(rbm_variant_names[i], &K);
        if (st != RBM_VARIANT_OK) {
            printf("%s: skipped (status %d: needs %s)\n", rbm_variant_names[i], st,
                   rbm_variant_requirement(rbm_variant_names[i]));
            continue;
        }
        test_variant(K);
    }
    printf("best: %s\n", rbm_best_kernels()->name);
    printf(failures ? "FAILED (%d)\n" : "OK\n", failures);
    return failures != 0;
}
