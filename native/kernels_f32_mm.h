/*
 * Internal: the float matrix kernels' FMA chains, written once for every SIMD variant
 * (kernels_avx2.c and kernels_neon.c include this file once, after defining):
 *   MM_INL             qualifiers of the inline helpers (static inline, always_inline, target)
 *   MM_FN              qualifiers of the f32_mm function it defines
 *   MM_NAME            that function's name
 *   MM_VEC, MM_LANES   the float vector type and its number of lanes
 *   MM_ZERO()          a zero vector;  MM_LOAD(p): MM_LANES floats from p (unaligned)
 *   MM_FMA(a, w, x)    a + w * x, lane by lane
 *   MM_HSUM(a)         the sum of a's lanes (one fixed order)
 *   MM_HSUM4(a, s)     s[r] = the sum of a[r]'s lanes, r < 4 (may reduce in another order)
 *   MM_MV_NAME         the name of the f32_mv function it defines (qualified by MM_FN too)
 * and gets MM_NAME and MM_MV_NAME (the f32_mm and f32_mv kernels of rbm_kernels.h).
 *
 * One (row, sample) result is always one chain: MM_FMA over the first `full` floats in steps of
 * MM_LANES, MM_HSUM, the scalar tail, + bias (mm_finish), whatever the tile it was computed in, so a
 * sample's f32_mm result does not depend on the batch it came in.
 */

/* the chains of rows w0 .. w3 against one sample x */
MM_INL void mm_rows4(const float *w0, const float *w1, const float *w2, const float *w3, const float *x, int32_t full,
                     MM_VEC *a)
{
    MM_VEC a0 = MM_ZERO(), a1 = a0, a2 = a0, a3 = a0;
    for (int32_t i = 0; i < full; i += MM_LANES) {
        MM_VEC xv = MM_LOAD(x + i);
        a0 = MM_FMA(a0, MM_LOAD(w0 + i), xv);
        a1 = MM_FMA(a1, MM_LOAD(w1 + i), xv);
        a2 = MM_FMA(a2, MM_LOAD(w2 + i), xv);
        a3 = MM_FMA(a3, MM_LOAD(w3 + i), xv);
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* the chain of one row against one sample */
MM_INL MM_VEC mm_chain(const float *w, const float *x, int32_t full)
{
    MM_VEC a = MM_ZERO();
    for (int32_t i = 0; i < full; i += MM_LANES)
        a = MM_FMA(a, MM_LOAD(w + i), MM_LOAD(x + i));
    return a;
}

/* a chain's result: lane sum, scalar tail, + bias */
MM_INL float mm_finish(MM_VEC a, const float *w, const float *x, int32_t full, int32_t n, float bias)
{
    float s = MM_HSUM(a);
    for (int32_t i = full; i < n; i++)
        s += w[i] * x[i];
    return bias + s;
}

MM_FN void MM_NAME(const float *W, int32_t rows, int32_t n, const float *X, int32_t T, const float *bias, float *out)
{
    const int32_t full = n & ~(MM_LANES - 1);
    int32_t t = 0;
    /* 2 rows x 4 samples: 8 independent chains, each weight vector loaded once per tile */
    for (; t + 4 <= T; t += 4) {
        const float *x0 = X + (size_t)t * n, *x1 = x0 + n, *x2 = x1 + n, *x3 = x2 + n;
        float *o0 = out + (size_t)t * rows, *o1 = o0 + rows, *o2 = o1 + rows, *o3 = o2 + rows;
        int32_t o = 0;
        for (; o + 2 <= rows; o += 2) {
            const float *wa = W + (size_t)o * n, *wb = wa + n;
            MM_VEC a0 = MM_ZERO(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int32_t i = 0; i < full; i += MM_LANES) {
                MM_VEC va = MM_LOAD(wa + i), vb = MM_LOAD(wb + i);
                MM_VEC y0 = MM_LOAD(x0 + i), y1 = MM_LOAD(x1 + i), y2 = MM_LOAD(x2 + i), y3 = MM_LOAD(x3 + i);
                a0 = MM_FMA(a0, va, y0);
                a1 = MM_FMA(a1, va, y1);
                a2 = MM_FMA(a2, va, y2);
                a3 = MM_FMA(a3, va, y3);
                b0 = MM_FMA(b0, vb, y0);
                b1 = MM_FMA(b1, vb, y1);
                b2 = MM_FMA(b2, vb, y2);
                b3 = MM_FMA(b3, vb, y3);
            }
            o0[o] = mm_finish(a0, wa, x0, full, n, bias[o]);
            o1[o] = mm_finish(a1, wa, x1, full, n, bias[o]);
            o2[o] = mm_finish(a2, wa, x2, full, n, bias[o]);
            o3[o] = mm_finish(a3, wa, x3, full, n, bias[o]);
            o0[o + 1] = mm_finish(b0, wb, x0, full, n, bias[o + 1]);
            o1[o + 1] = mm_finish(b1, wb, x1, full, n, bias[o + 1]);
            o2[o + 1] = mm_finish(b2, wb, x2, full, n, bias[o + 1]);
            o3[o + 1] = mm_finish(b3, wb, x3, full, n, bias[o + 1]);
        }
        for (; o < rows; o++) { /* the odd last row against the 4 samples */
            const float *w = W + (size_t)o * n;
            MM_VEC a0 = MM_ZERO(), a1 = a0, a2 = a0, a3 = a0;
            for (int32_t i = 0; i < full; i += MM_LANES) {
                MM_VEC v = MM_LOAD(w + i);
                a0 = MM_FMA(a0, v, MM_LOAD(x0 + i));
                a1 = MM_FMA(a1, v, MM_LOAD(x1 + i));
                a2 = MM_FMA(a2, v, MM_LOAD(x2 + i));
                a3 = MM_FMA(a3, v, MM_LOAD(x3 + i));
            }
            o0[o] = mm_finish(a0, w, x0, full, n, bias[o]);
            o1[o] = mm_finish(a1, w, x1, full, n, bias[o]);
            o2[o] = mm_finish(a2, w, x2, full, n, bias[o]);
            o3[o] = mm_finish(a3, w, x3, full, n, bias[o]);
        }
    }
    /* the remaining samples one by one, 4 rows at a time (still one chain per (row, sample)) */
    for (; t < T; t++) {
        const float *x = X + (size_t)t * n;
        float *ot = out + (size_t)t * rows;
        int32_t o = 0;
        for (; o + 4 <= rows; o += 4) {
            const float *w0 = W + (size_t)o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
            MM_VEC a[4];
            mm_rows4(w0, w1, w2, w3, x, full, a);
            /* written out, not a loop over a[r]: the chains stay in registers */
            ot[o] = mm_finish(a[0], w0, x, full, n, bias[o]);
            ot[o + 1] = mm_finish(a[1], w1, x, full, n, bias[o + 1]);
            ot[o + 2] = mm_finish(a[2], w2, x, full, n, bias[o + 2]);
            ot[o + 3] = mm_finish(a[3], w3, x, full, n, bias[o + 3]);
        }
        for (; o < rows; o++) {
            const float *w = W + (size_t)o * n;
            ot[o] = mm_finish(mm_chain(w, x, full), w, x, full, n, bias[o]);
        }
    }
}

MM_FN void MM_MV_NAME(const float *W, int32_t rows, int32_t n, const float *x, const float *bias, float *out)
{
    const int32_t full = n & ~(MM_LANES - 1);
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        const float *w0 = W + (size_t)o * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        MM_VEC a[4];
        float s[4];
        mm_rows4(w0, w1, w2, w3, x, full, a);
        MM_HSUM4(a, s);
        for (int32_t i = full; i < n; i++) {
            s[0] += w0[i] * x[i];
            s[1] += w1[i] * x[i];
            s[2] += w2[i] * x[i];
            s[3] += w3[i] * x[i];
        }
        for (int r = 0; r < 4; r++)
            out[o + r] = bias[o + r] + s[r];
    }
    for (; o < rows; o++) {
        const float *w = W + (size_t)o * n;
        out[o] = mm_finish(mm_chain(w, x, full), w, x, full, n, bias[o]);
    }
}
