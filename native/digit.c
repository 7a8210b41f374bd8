/*
 * The digit pipeline in C: any grey/RGB/RGBA uint8 picture -> an MNIST-like digit.
 *
 * The definition is edge_rbmlp/digit_reference.py (its docstring lists the nine
 * steps); this file computes exactly the same integers, and tests compare the two
 * bit for bit on random pictures of odd sizes.  Everything past the first pass over
 * the picture runs on a work image of at most 96 pixels a side, so a 640x480 frame
 * costs one read of its pixels plus a few thousand operations; the crop (step 6)
 * reads only the digit's region again.
 *
 * Safety: the picture is addressed only through (rows, cols, channels, strides)
 * checked by rbm_digit_check; every buffer is sized from the work image's
 * dimensions (bounded by 96 and 64) or the crop's (bounded by 4 * box * 2), and
 * comes from one malloc that is freed before returning.  No global state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rbm_kernels.h"

#define WORK_SIDE 96
#define BACKGROUND_SIDE 64
#define CROP_SIDE_PER_BOX 4
#define PASSTHROUGH_BORDER 26
#define BLANK_PEAK 13
#define MIN_BACKGROUND_SIDE 16
#define MAX_BOX 64 /* the resize tables' size; MNIST-like models use 20 */
#define MAX_CROP (2 * CROP_SIDE_PER_BOX * MAX_BOX + 2)
#define RESIZE_WT_CAP (4 * MAX_CROP + 4 * MAX_BOX)

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* One row of the picture as uint8 grey (Pillow's luma; alpha over white). */
static void grey_row(const rbm_picture *p, int64_t y, int64_t x0, int64_t n, uint8_t *dst)
{
    const uint8_t *row = p->data + y * p->row_stride + x0 * p->col_stride;
    const int64_t cs = p->col_stride, ch = p->chan_stride;
    if (p->channels == 1) {
        if (cs == 1) {
            memcpy(dst, row, (size_t)n);
        } else {
            for (int64_t i = 0; i < n; i++)
                dst[i] = row[i * cs];
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *px = row + i * cs;
        uint32_t g = (19595u * px[0] + 38470u * px[ch] + 7471u * px[2 * ch] + 32768u) >> 16;
        if (p->channels == 4) {
            uint32_t a = px[3 * ch];
            g = (g * a + 255u * (255u - a) + 127u) / 255u;
        }
        dst[i] = (uint8_t)g;
    }
}

int rbm_digit_check(const rbm_picture *p)
{
    if (!p || !p->data)
        return -1;
    if (p->rows < 1 || p->cols < 1 || p->rows > (1 << 24) || p->cols > (1 << 24))
        return -1;
    if (p->channels != 1 && p->channels != 3 && p->channels != 4)
        return -1;
    if (p->row_stride < 0 || p->col_stride < 0 || p->chan_stride < 0)
        return -1;
    return 0;
}

/* Row y, columns [x0, x0 + n), as uint8 grey: the picture's own bytes when it is grey and
 * contiguous (no copy), else converted into line. */
static inline const uint8_t *grey_span(const rbm_picture *p, int64_t y, int64_t x0, int64_t n, uint8_t *line)
{
    if (p->channels == 1 && p->col_stride == 1)
        return p->data + y * p->row_stride + x0;
    grey_row(p, y, x0, n, line);
    return line;
}

/* Rounded block means of the picture rows [y0, y1) x cols [x0, x1), blocks of f x f,
 * into out[hh * ww] (int32); acc and line are scratch of (x1 - x0) entries. The f rows of a
 * block row are summed column by column first (a loop the compiler vectorizes), then f columns. */
static void block_mean_picture(const rbm_picture *p, int64_t y0, int64_t y1, int64_t x0, int64_t x1, int f,
                               int32_t *restrict out, uint32_t *restrict acc, uint8_t *restrict line)
{
    const int64_t w = x1 - x0;
    const int ww = (int)ceil_div(w, f), hh = (int)ceil_div(y1 - y0, f);
    if (f == 1) { /* every block is one pixel (pictures up to WORK_SIDE): no sums, no divisions */
        for (int64_t y = y0; y < y1; y++) {
            const uint8_t *restrict src = grey_span(p, y, x0, w, line);
            int32_t *restrict o = out + (y - y0) * w;
            for (int64_t x = 0; x < w; x++)
                o[x] = src[x];
        }
        return;
    }
    /* up to 257 rows of bytes fit a 16-bit column sum: half the memory traffic, twice the lanes */
    uint16_t *restrict acc16 = f <= 257 ? (uint16_t *)acc : NULL;
    for (int by = 0; by < hh; by++) {
        const int64_t ys = y0 + (int64_t)by * f, ye = ys + f < y1 ? ys + f : y1;
        if (acc16)
            memset(acc16, 0, sizeof(uint16_t) * (size_t)w);
        else
            memset(acc, 0, sizeof(uint32_t) * (size_t)w);
        for (int64_t y = ys; y < ye; y++) {
            const uint8_t *restrict src = grey_span(p, y, x0, w, line);
            if (acc16) {
                for (int64_t x = 0; x < w; x++)
                    acc16[x] = (uint16_t)(acc16[x] + src[x]);
            } else {
                for (int64_t x = 0; x < w; x++)
                    acc[x] += src[x];
            }
        }
        const uint32_t rows = (uint32_t)(ye - ys);
        int32_t *o = out + (int64_t)by * ww;
        for (int bx = 0; bx < ww; bx++) {
            const int64_t xs = (int64_t)bx * f;
            const int n = (int)(xs + f < w ? f : w - xs);
            uint32_t sum = 0;
            if (acc16) {
                const uint16_t *a16 = acc16 + xs;
                for (int k = 0; k < n; k++)
                    sum += a16[k];
            } else {
                const uint32_t *a32 = acc + xs;
                for (int k = 0; k < n; k++)
                    sum += a32[k];
            }
            const uint32_t count = rows * (uint32_t)n;
            o[bx] = (int32_t)((sum + count / 2) / count);
        }
    }
}

/* The same on an int32 image (the background map from the work image). */
static void block_mean_i32(const int32_t *a, int h, int w, int f, int32_t *out)
{
    const int hh = (int)ceil_div(h, f), ww = (int)ceil_div(w, f);
    for (int by = 0; by < hh; by++)
        for (int bx = 0; bx < ww; bx++) {
            int64_t s = 0;
            const int ye = imin(h, (by + 1) * f), xe = imin(w, (bx + 1) * f);
            for (int y = by * f; y < ye; y++)
                for (int x = bx * f; x < xe; x++)
                    s += a[(int64_t)y * w + x];
            const int64_t count = (int64_t)(ye - by * f) * (xe - bx * f);
            out[by * ww + bx] = (int32_t)((s + count / 2) / count);
        }
}

/* The order statistic of given rank of n values in [0, 255] from their histogram. */
static int hist_rank(const uint32_t *hist, int64_t rank)
{
    int64_t seen = 0;
    for (int v = 0; v < 256; v++) {
        seen += hist[v];
        if (seen > rank)
            return v;
    }
    return 255;
}

/* Values of the order statistic for an int32 image whose values are in [0, 255]. */
static int image_rank(const int32_t *a, int64_t n, int64_t rank)
{
    uint32_t hist[256] = {0};
    for (int64_t i = 0; i < n; i++)
        hist[a[i]]++;
    return hist_rank(hist, rank);
}

static int border_median(const int32_t *a, int h, int w)
{
    uint32_t hist[256] = {0};
    int64_t n = 0;
    if (h <= 2 || w <= 2) {
        for (int64_t i = 0; i < (int64_t)h * w; i++)
            hist[a[i]]++;
        n = (int64_t)h * w;
    } else {
        for (int x = 0; x < w; x++) {
            hist[a[x]]++;
            hist[a[(int64_t)(h - 1) * w + x]]++;
        }
        for (int y = 1; y < h - 1; y++) {
            hist[a[(int64_t)y * w]]++;
            hist[a[(int64_t)y * w + w - 1]]++;
        }
        n = 2 * (int64_t)w + 2 * (int64_t)(h - 2);
    }
    return hist_rank(hist, (n - 1) / 2);
}

/* A separable 3-tap filter (k0, k1, k0) with edge replication, rows then columns, exact in
 * integers: out = (sum + bias) / div (div a power of 2 or 9); tmp: h * w. */
static void filter3(const int32_t *a, int h, int w, int k0, int k1, int32_t bias, int32_t div, int32_t *out,
                    int32_t *tmp)
{
    for (int y = 0; y < h; y++) {
        const int32_t *r = a + (int64_t)y * w;
        int32_t *t = tmp + (int64_t)y * w;
        if (w == 1) {
            t[0] = (2 * k0 + k1) * r[0];
            continue;
        }
        t[0] = k0 * r[0] + k1 * r[0] + k0 * r[1];
        for (int x = 1; x < w - 1; x++)
            t[x] = k0 * r[x - 1] + k1 * r[x] + k0 * r[x + 1];
        t[w - 1] = k0 * r[w - 2] + k1 * r[w - 1] + k0 * r[w - 1];
    }
    for (int y = 0; y < h; y++) {
        const int32_t *up = tmp + (int64_t)(y > 0 ? y - 1 : 0) * w;
        const int32_t *mid = tmp + (int64_t)y * w;
        const int32_t *dn = tmp + (int64_t)(y < h - 1 ? y + 1 : h - 1) * w;
        int32_t *o = out + (int64_t)y * w;
        for (int x = 0; x < w; x++)
            o[x] = (k0 * up[x] + k1 * mid[x] + k0 * dn[x] + bias) / div;
    }
}

/* 3x3 [1 2 1] x [1 2 1] / 16 (edge replicated, rounded). */
static void smooth121(const int32_t *a, int h, int w, int32_t *out, int32_t *tmp)
{
    filter3(a, h, w, 1, 2, 8, 16, out, tmp);
}

/* Median of n values a[i * stride] in [0, 255]. */
static int strided_median(const int32_t *a, int64_t n, int64_t stride)
{
    uint32_t hist[256] = {0};
    for (int64_t i = 0; i < n; i++)
        hist[a[i * stride]]++;
    return hist_rank(hist, (n - 1) / 2);
}

/* The border's level tilted by the side medians' differences, subtracted; the larger extreme of
 * the smoothed rest is the ink (see the reference's is_dark_on_light). r, rs, tmp: h * w. */
static int is_dark_on_light(const int32_t *a, int h, int w, int b, int32_t *r, int32_t *rs, int32_t *tmp)
{
    const int top = strided_median(a, w, 1), bottom = strided_median(a + (int64_t)(h - 1) * w, w, 1);
    const int left = strided_median(a, h, w), right = strided_median(a + w - 1, h, w);
    /* the column tilts once (|tx| <= 2 * 255 * 128: int32), in rs before smooth121 writes it: a
     * 64-bit division per pixel is a library call on 32-bit ARM */
    int32_t *tx = rs;
    for (int x = 0; x < w; x++)
        tx[x] = w > 1 ? (int32_t)floor_div((int64_t)(right - left) * (2 * x - (w - 1)) * 128, w - 1) : 0;
    for (int y = 0; y < h; y++) {
        const int64_t ty = h > 1 ? floor_div((int64_t)(bottom - top) * (2 * y - (h - 1)) * 128, h - 1) : 0;
        const int64_t level = (int64_t)b * 256 + ty;
        const int32_t *ay = a + (int64_t)y * w;
        int32_t *ry = r + (int64_t)y * w;
        for (int x = 0; x < w; x++)
            ry[x] = (int32_t)((int64_t)ay[x] * 256 - (level + tx[x]));
    }
    smooth121(r, h, w, rs, tmp);
    int32_t lo = rs[0], hi = rs[0];
    for (int64_t i = 1; i < (int64_t)h * w; i++) {
        if (rs[i] < lo) lo = rs[i];
        if (rs[i] > hi) hi = rs[i];
    }
    return -lo > hi;
}

/* min (mode 0) or max (mode 1) over a k x k window clipped at the edges; tmp: h * w. */
#define WINDOW_PASS(OP)                                                                      \
    do {                                                                                     \
        for (int y = 0; y < h; y++) {                                                        \
            const int32_t *row = a + (int64_t)y * w;                                         \
            int32_t *t = tmp + (int64_t)y * w;                                               \
            for (int x = 0; x < w; x++) {                                                    \
                const int lo = x - r < 0 ? 0 : x - r, hi = x + r > w - 1 ? w - 1 : x + r;     \
                int32_t v = row[lo];                                                         \
                for (int xx = lo + 1; xx <= hi; xx++)                                        \
                    v = OP(v, row[xx]);                                                      \
                t[x] = v;                                                                    \
            }                                                                                \
        }                                                                                    \
        for (int y = 0; y < h; y++) {                                                        \
            const int lo = y - r < 0 ? 0 : y - r, hi = y + r > h - 1 ? h - 1 : y + r;         \
            int32_t *o = a + (int64_t)y * w;                                                 \
            memcpy(o, tmp + (int64_t)lo * w, sizeof(int32_t) * (size_t)w);                   \
            for (int yy = lo + 1; yy <= hi; yy++) {                                          \
                const int32_t *t = tmp + (int64_t)yy * w;                                    \
                for (int x = 0; x < w; x++)                                                  \
                    o[x] = OP(o[x], t[x]);                                                   \
            }                                                                                \
        }                                                                                    \
    } while (0)
#define MIN2(p, q) ((q) < (p) ? (q) : (p))
#define MAX2(p, q) ((q) > (p) ? (q) : (p))
static void window_filter(int32_t *a, int h, int w, int k, int mode, int32_t *tmp)
{
    const int r = k / 2;
    if (mode)
        WINDOW_PASS(MAX2);
    else
        WINDOW_PASS(MIN2);
}
#undef WINDOW_PASS

/* mean over a (2r+1) window clipped at the edges, rounded, rows then columns; tmp: h * w. */
static void box_blur(int32_t *a, int h, int w, int r, int32_t *tmp)
{
    for (int y = 0; y < h; y++) {
        const int32_t *row = a + (int64_t)y * w;
        int32_t *t = tmp + (int64_t)y * w;
        int32_t s = 0;
        for (int x = 0; x <= r && x < w; x++)
            s += row[x];
        for (int x = 0; x < w; x++) {
            const int lo = x - r < 0 ? 0 : x - r, hi = x + r > w - 1 ? w - 1 : x + r;
            const int cnt = hi - lo + 1;
            t[x] = (s + cnt / 2) / cnt;
            if (x + r + 1 < w)
                s += row[x + r + 1];
            if (x - r >= 0)
                s -= row[x - r];
        }
    }
    for (int x = 0; x < w; x++) {
        int32_t s = 0;
        for (int y = 0; y <= r && y < h; y++)
            s += tmp[(int64_t)y * w + x];
        for (int y = 0; y < h; y++) {
            const int lo = y - r < 0 ? 0 : y - r, hi = y + r > h - 1 ? h - 1 : y + r;
            const int cnt = hi - lo + 1;
            a[(int64_t)y * w + x] = (s + cnt / 2) / cnt;
            if (y + r + 1 < h)
                s += tmp[(int64_t)(y + r + 1) * w + x];
            if (y - r >= 0)
                s -= tmp[(int64_t)(y - r) * w + x];
        }
    }
}

/* Fixed-point (1/256) coordinate in the background map of a pixel centre given as
 * twice its frame coordinate, on a frame axis of `size` pixels and a map of `bsize`. */
static inline void bilinear_axis(int64_t centre2, int64_t size, int bsize, int *i0, int *i1, int *frac)
{
    int64_t num = floor_div(centre2 * bsize * 128, size) - 128;
    if (num < 0)
        num = 0;
    if (num > (int64_t)(bsize - 1) * 256)
        num = (int64_t)(bsize - 1) * 256;
    *i0 = (int)(num >> 8);
    *frac = (int)(num & 255);
    *i1 = imin(*i0 + 1, bsize - 1);
}

/* The background map s[bh x bw] at the centres of `count_y` x `count_x` blocks of `step`
 * frame pixels from (y0, x0) of an H x W frame, into out. */
static void bilinear_blocks(const int32_t *s, int bh, int bw, int64_t y0, int64_t x0, int count_y, int count_x,
                            int step, int64_t H, int64_t W, int32_t *out, int *xi0, int *xi1, int *xf)
{
    int32_t vrow[BACKGROUND_SIDE + 1];
    for (int x = 0; x < count_x; x++)
        bilinear_axis(2 * (x0 + (int64_t)x * step) + step, W, bw, &xi0[x], &xi1[x], &xf[x]);
    for (int y = 0; y < count_y; y++) {
        int y_0, y_1, fy;
        bilinear_axis(2 * (y0 + (int64_t)y * step) + step, H, bh, &y_0, &y_1, &fy);
        const int32_t *r0 = s + (int64_t)y_0 * bw, *r1 = s + (int64_t)y_1 * bw;
        /* (top (256 - fy) + bottom fy) expanded: the row blend first, exact in integers */
        for (int x = 0; x < bw; x++)
            vrow[x] = r0[x] * (256 - fy) + r1[x] * fy;
        int32_t *o = out + (int64_t)y * count_x;
        for (int x = 0; x < count_x; x++) {
            const int64_t fx = xf[x];
            o[x] = (int32_t)(((int64_t)vrow[xi0[x]] * (256 - fx) + (int64_t)vrow[xi1[x]] * fx + 32768) >> 16);
        }
    }
}

typedef struct {
    int64_t mass, count;
    int y0, y1, x0, x1;
    int frame; /* drawn around others: left out of the digit */
    int mark;  /* the label of its mark's first component (0: not yet taken) */
    /* for a mark's first component: the mark's mass, box and number of components */
    int64_t mark_mass;
    int my0, my1, mx0, mx1, mark_count;
} component;

#define GROUP_GAP_NUM 1 /* a component joins a mark within 1/3 of their union's longer side */
#define GROUP_GAP_DEN 3
#define GROUP_MIN_MASS 8 /* ... with at least 8 % of the mark's first component's mass */

/* Components 1..n gathered into marks (digit_reference.group_marks): returns the label of the
 * digit's mark (the first component of the heaviest mark) and sets *far. Every loop is bounded by
 * n: each pass either takes a component or ends the mark, so at most 2n passes of n steps. */
static int group_marks(component *comp, int n, int *far)
{
    for (int k = 1; k <= n; k++)
        comp[k].mark = comp[k].frame ? -1 : 0;
    int digit = 0;
    for (;;) {
        int seed = 0;
        for (int k = 1; k <= n; k++)
            if (comp[k].mark == 0 && (seed == 0 || comp[k].mass > comp[seed].mass))
                seed = k;
        if (seed == 0)
            break;
        component *s = &comp[seed];
        s->mark = seed;
        int y0 = s->y0, y1 = s->y1, x0 = s->x0, x1 = s->x1, count = 1;
        int64_t mass = s->mass;
        for (;;) {
            int best = 0, best_gap = 0;
            for (int k = 1; k <= n; k++) {
                const component *c = &comp[k];
                if (c->mark != 0)
                    continue;
                const int uh = imax(y1, c->y1) - imin(y0, c->y0) + 1;
                const int uw = imax(x1, c->x1) - imin(x0, c->x0) + 1;
                const int gap = imax(imax(imax(c->y0 - y1 - 1, y0 - c->y1 - 1), imax(c->x0 - x1 - 1, x0 - c->x1 - 1)), 0);
                const int inside = c->y0 >= y0 && c->y1 <= y1 && c->x0 >= x0 && c->x1 <= x1;
                const int near = (int64_t)gap * GROUP_GAP_DEN <= (int64_t)GROUP_GAP_NUM * imax(uh, uw) &&
                                 c->mass * 100 >= GROUP_MIN_MASS * s->mass;
                if ((near || inside) && (best == 0 || gap < best_gap)) {
                    best = k;
                    best_gap = gap;
                }
            }
            if (best == 0)
                break;
            component *c = &comp[best];
            c->mark = seed;
            y0 = imin(y0, c->y0);
            y1 = imax(y1, c->y1);
            x0 = imin(x0, c->x0);
            x1 = imax(x1, c->x1);
            mass += c->mass;
            count++;
        }
        s->mark_mass = mass;
        s->my0 = y0;
        s->my1 = y1;
        s->mx0 = x0;
        s->mx1 = x1;
        s->mark_count = count;
        if (digit == 0 || mass > comp[digit].mark_mass)
            digit = seed;
    }
    /* marks were started in order of mass (ties: the lowest label); the first heaviest is the digit:
     * a later mark replaced it above only when strictly heavier */
    *far = 0;
    if (digit == 0) /* only frames: impossible (the smallest box encloses nothing), never read comp[0] */
        return 0;
    int f = 0;
    const component *d = &comp[digit];
    for (int k = 1; k <= n; k++)
        if (k != digit && comp[k].mark == k && comp[k].mark_mass * 4 >= d->mark_mass)
            f++;
    if (d->mark_count > 1 && d->mx1 - d->mx0 > d->my1 - d->my0)
        f++;
    *far = f;
    return digit;
}

/* 8-connected components of mask (1 = ink) in raster order of their first pixel:
 * labels (0 = none) and per-component mass/box; stack: h * w entries. Returns n. */
static int label_components(const uint8_t *mask, const int32_t *m, int h, int w, int32_t *labels, int32_t *stack,
                            component *comp)
{
    int n = 0;
    memset(labels, 0, sizeof(int32_t) * (size_t)h * (size_t)w);
    for (int y0 = 0; y0 < h; y0++)
        for (int x0 = 0; x0 < w; x0++) {
            const int64_t i0 = (int64_t)y0 * w + x0;
            if (!mask[i0] || labels[i0])
                continue;
            n++;
            component *c = &comp[n];
            c->mass = 0;
            c->count = 0;
            c->frame = 0;
            c->y0 = c->y1 = y0;
            c->x0 = c->x1 = x0;
            labels[i0] = n;
            int64_t top = 0;
            stack[top++] = (int32_t)i0;
            while (top > 0) {
                const int32_t i = stack[--top];
                const int y = i / w, x = i % w;
                c->mass += m[i];
                c->count++;
                if (y < c->y0) c->y0 = y;
                if (y > c->y1) c->y1 = y;
                if (x < c->x0) c->x0 = x;
                if (x > c->x1) c->x1 = x;
                for (int yy = y - 1; yy <= y + 1; yy++) {
                    if (yy < 0 || yy >= h)
                        continue;
                    for (int xx = x - 1; xx <= x + 1; xx++) {
                        if (xx < 0 || xx >= w)
                            continue;
                        const int64_t j = (int64_t)yy * w + xx;
                        if (mask[j] && !labels[j]) {
                            labels[j] = n;
                            stack[top++] = (int32_t)j;
                        }
                    }
                }
            }
        }
    return n;
}

/* Integer triangle-filter weights from n inputs to m outputs: output j takes inputs
 * first[j] .. first[j] + taps[j] - 1 with weights wt[j * max_taps + t] summing to wsum[j]. */
typedef struct {
    int n, m, max_taps;
    int first[MAX_CROP];
    int taps[MAX_CROP];
    int64_t wsum[MAX_CROP];
} resize_plan;

static int resize_weights(int n, int m, resize_plan *pl, int64_t *wt, int wt_cap)
{
    const int64_t support = 2 * (int64_t)(m > n ? m : n);
    pl->n = n;
    pl->m = m;
    pl->max_taps = (int)(support / m) + 3;
    if ((int64_t)pl->max_taps * m > wt_cap)
        return -1;
    for (int j = 0; j < m; j++) {
        const int64_t c = (2 * (int64_t)j + 1) * n;
        /* weights are non-zero where |(2i+1) m - c| < support */
        int64_t lo = (c - support) / (2 * m) - 1, hi = (c + support) / (2 * m) + 1;
        if (lo < 0) lo = 0;
        if (hi > n - 1) hi = n - 1;
        int t = 0;
        int64_t ws = 0;
        pl->first[j] = -1;
        for (int64_t i = lo; i <= hi; i++) {
            int64_t d = (2 * i + 1) * m - c;
            if (d < 0) d = -d;
            const int64_t wgt = support - d;
            if (wgt > 0) {
                if (pl->first[j] < 0)
                    pl->first[j] = (int)i;
                wt[(int64_t)j * pl->max_taps + t++] = wgt;
                ws += wgt;
            } else if (pl->first[j] >= 0) {
                break;
            }
        }
        pl->taps[j] = t;
        pl->wsum[j] = ws;
    }
    return 0;
}

/* One line through a plan: in[n] (stride sin) -> out[m] (stride sout), rounded. */
static void resize_line(const resize_plan *pl, const int64_t *wt, const int32_t *in, int64_t sin, int32_t *out,
                        int64_t sout)
{
    for (int j = 0; j < pl->m; j++) {
        const int32_t *p = in + (int64_t)pl->first[j] * sin;
        const int64_t *wj = wt + (int64_t)j * pl->max_taps;
        int64_t s = 0;
        for (int t = 0; t < pl->taps[j]; t++)
            s += wj[t] * p[t * sin];
        out[(int64_t)j * sout] = (int32_t)((s + pl->wsum[j] / 2) / pl->wsum[j]);
    }
}

int rbm_digit_pipeline(const rbm_picture *p, int out_h, int out_w, int box, uint8_t *out, rbm_digit_info *info)
{
    if (rbm_digit_check(p) != 0 || !out || !info || out_h < 1 || out_w < 1 || out_h > 4096 || out_w > 4096 ||
        box < 1 || box > out_h || box > out_w || box > MAX_BOX)
        return -1;
    memset(info, 0, sizeof(*info));
    info->blank = 1;
    memset(out, 0, (size_t)out_h * (size_t)out_w);
    const int64_t H = p->rows, W = p->cols;
    const int f = (int)ceil_div(H > W ? H : W, WORK_SIDE);
    const int h = (int)ceil_div(H, f), w = (int)ceil_div(W, f);
    const int64_t hw = (int64_t)h * w;
    const int crop_max = 2 * CROP_SIDE_PER_BOX * box + 2; /* the crop's longer side is < 2 * 4 * box */
    /* ... and at most the picture's longer side (fc = 1 when that is under 4 * box). The four crop
     * buffers hold a ch x cw crop, a th x nw half-resized one (th <= crop side, nw <= box) or the
     * nh x nw result (<= box x box): cell^2 each. Sized so, a 28x28 picture needs about 100 KiB of
     * scratch, not 520: under glibc's mmap threshold (guard.bound_malloc's 256 KiB), so no mmap and
     * munmap and no fresh page faults per call. */
    const int64_t picture_side = H > W ? H : W;
    const int64_t crop_side = picture_side < crop_max ? picture_side : crop_max;
    const int64_t cell = crop_side > box ? crop_side : box;

    /* one allocation for everything: work images (int32 x 4 of h*w), mask and grown mask
     * (h*w bytes each), labels and stack (int32 h*w each), components (h*w + 1), the
     * picture line (W or crop width bytes), block accumulators, the crop (int32) and
     * its resize buffers, the bilinear tables */
    const int64_t line_len = W > 64 ? W : 64;
    const int64_t crop_px = cell * cell;
    size_t bytes = 0;
#define RESERVE(n) (bytes += (((size_t)(n)) + 15) & ~(size_t)15)
    RESERVE(sizeof(int32_t) * hw * 5);
    RESERVE(hw);
    RESERVE(hw);
    RESERVE(sizeof(int32_t) * hw * 2);
    RESERVE(sizeof(component) * (hw + 1));
    RESERVE(line_len);
    RESERVE(sizeof(uint32_t) * line_len);
    RESERVE(sizeof(int32_t) * crop_px * 4);
    RESERVE(sizeof(int) * (line_len + crop_max) * 3);
    RESERVE(sizeof(resize_plan));
    RESERVE(sizeof(int64_t) * RESIZE_WT_CAP);
#undef RESERVE
    uint8_t *mem = (uint8_t *)malloc(bytes);
    if (!mem)
        return -2;
    size_t off = 0;
#define TAKE(type, n) ((type *)(mem + (off += (((size_t)(n)) + 15) & ~(size_t)15) - ((((size_t)(n)) + 15) & ~(size_t)15)))
    int32_t *a = TAKE(int32_t, sizeof(int32_t) * hw * 5);
    int32_t *t1 = a + hw, *t2 = a + 2 * hw, *t3 = a + 3 * hw, *tmp = a + 4 * hw;
    uint8_t *mask = TAKE(uint8_t, hw);
    uint8_t *grown = TAKE(uint8_t, hw);
    int32_t *labels = TAKE(int32_t, sizeof(int32_t) * hw * 2);
    int32_t *stack = labels + hw;
    component *comp = TAKE(component, sizeof(component) * (hw + 1));
    uint8_t *line = TAKE(uint8_t, line_len);
    uint32_t *acc = TAKE(uint32_t, sizeof(uint32_t) * line_len);
    int32_t *crop = TAKE(int32_t, sizeof(int32_t) * crop_px * 4);
    int32_t *crop_bg = crop + crop_px, *rs = crop + 2 * crop_px, *crop_tmp = crop + 3 * crop_px;
    int *xi0 = TAKE(int, sizeof(int) * (line_len + crop_max) * 3);
    int *xi1 = xi0 + (line_len + crop_max), *xf = xi0 + 2 * (line_len + crop_max);
    resize_plan *plan = TAKE(resize_plan, sizeof(resize_plan));
    int64_t *wt = TAKE(int64_t, sizeof(int64_t) * RESIZE_WT_CAP);
#undef TAKE
    int rc = 0;

    /* 1. work image */
    block_mean_picture(p, 0, H, 0, W, f, a, acc, line);
    /* 2. polarity */
    int b = border_median(a, h, w);
    const int invert = is_dark_on_light(a, h, w, b, t1, t2, tmp);
    info->inverted = invert;
    if (invert) {
        for (int64_t i = 0; i < hw; i++)
            a[i] = 255 - a[i];
        b = 255 - b;
    }
    /* 3. pass-through */
    if (H == out_h && W == out_w && b < PASSTHROUGH_BORDER) {
        int peak = 0;
        for (int64_t y = 0; y < H; y++) {
            grey_row(p, y, 0, W, line);
            for (int64_t x = 0; x < W; x++) {
                const int v = invert ? 255 - line[x] : line[x];
                out[y * W + x] = (uint8_t)v;
                if (v > peak)
                    peak = v;
            }
        }
        info->passthrough = 1;
        info->blank = peak == 0;
        info->peak = peak;
        info->box[0] = 0;
        info->box[1] = 0;
        info->box[2] = (int)W;
        info->box[3] = (int)H;
        goto done;
    }
    /* 4. background */
    int32_t *s = NULL;
    int bh = 0, bw = 0;
    if (h >= MIN_BACKGROUND_SIDE && w >= MIN_BACKGROUND_SIDE) {
        const int f2 = (int)ceil_div(h > w ? h : w, BACKGROUND_SIDE);
        bh = (int)ceil_div(h, f2);
        bw = (int)ceil_div(w, f2);
        s = t3; /* bh * bw <= h * w */
        block_mean_i32(a, h, w, f2, s);
        int radius = (30 * (bh > bw ? bh : bw)) / 100 | 1;
        if (radius < 3)
            radius = 3;
        const int k = (radius < 31 ? radius : 31) | 1;
        window_filter(s, bh, bw, k, 0, t1);
        window_filter(s, bh, bw, k, 1, t1);
        const int r = k / 6 > 1 ? k / 6 : 1;
        box_blur(s, bh, bw, r, t1);
        box_blur(s, bh, bw, r, t1);
        bilinear_blocks(s, bh, bw, 0, 0, h, w, f, H, W, t2, xi0, xi1, xf);
    } else {
        for (int64_t i = 0; i < hw; i++)
            t2[i] = b;
    }
    for (int64_t i = 0; i < hw; i++) {
        const int32_t v = a[i] - t2[i];
        t2[i] = v > 0 ? v : 0; /* t2: foreground */
    }
    /* 5. digit region: a picture under 16 on both sides is taken whole (a digit fills it, and the
     * noise model's median would be the digit itself) */
    int gy0 = h, gy1 = -1, gx0 = w, gx1 = -1;
    if (h < MIN_BACKGROUND_SIDE && w < MIN_BACKGROUND_SIDE) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int64_t i = (int64_t)y * w + x;
                mask[i] = t2[i] > 0;
                if (mask[i]) {
                    gy0 = imin(gy0, y);
                    gy1 = imax(gy1, y);
                    gx0 = imin(gx0, x);
                    gx1 = imax(gx1, x);
                }
            }
        if (gy1 < 0)
            goto done;
        info->components = info->kept = 1;
        grown = mask;
    } else {
        /* 5. digit region */
        smooth121(t2, h, w, t1, tmp); /* t1: M */
        int peak_m = 0;
        for (int64_t i = 0; i < hw; i++)
            if (t1[i] > peak_m)
                peak_m = t1[i];
        const int med = image_rank(t1, hw, (hw - 1) / 2);
        {
            uint32_t hist[256] = {0};
            for (int64_t i = 0; i < hw; i++) {
                int d = t1[i] - med;
                hist[d < 0 ? -d : d]++;
            }
            const int mad = hist_rank(hist, (hw - 1) / 2);
            const int64_t noise = med + ((int64_t)mad * 8896 + 500) / 1000;
            const int64_t thr = (peak_m / 4) > noise ? (peak_m / 4) : noise;
            int any = 0;
            for (int64_t i = 0; i < hw; i++) {
                mask[i] = t1[i] > thr;
                any |= mask[i];
            }
            if (!any)
                goto done;
        }
        const int n = label_components(mask, t1, h, w, labels, stack, comp);
        info->components = n;
        /* frames drawn around the digit: hollow (<= 30 % of the box inked), enclosing >= 20 % of their mass */
        int frames = 0;
        for (int k = 1; k <= n; k++) {
            const component *c = &comp[k];
            if (c->count * 100 > 30 * (int64_t)(c->y1 - c->y0 + 1) * (c->x1 - c->x0 + 1))
                continue;
            int64_t inside = 0;
            for (int j = 1; j <= n; j++)
                if (j != k && comp[j].y0 > c->y0 && comp[j].y1 < c->y1 && comp[j].x0 > c->x0 && comp[j].x1 < c->x1)
                    inside += comp[j].mass;
            if (inside * 100 >= 20 * c->mass) {
                comp[k].frame = 1;
                frames++;
            }
        }
        info->frames = frames;
        int far = 0;
        const int digit = group_marks(comp, n, &far);
        int kept = 0;
        for (int k = 1; k <= n; k++)
            kept += comp[k].mark == digit;
        info->kept = kept;
        info->far = far;
        /* the kept components grown by one pixel (3x3 dilation, rows then columns) */
        for (int64_t i = 0; i < hw; i++)
            mask[i] = labels[i] != 0 && comp[labels[i]].mark == digit;
        for (int y = 0; y < h; y++) {
            const uint8_t *r = mask + (int64_t)y * w;
            uint8_t *g = grown + (int64_t)y * w;
            for (int x = 0; x < w; x++)
                g[x] = r[x] | (x > 0 ? r[x - 1] : 0) | (x < w - 1 ? r[x + 1] : 0);
        }
        for (int y = 0; y < h; y++) {
            const uint8_t *up = grown + (int64_t)(y > 0 ? y - 1 : y) * w, *mid = grown + (int64_t)y * w;
            const uint8_t *dn = grown + (int64_t)(y < h - 1 ? y + 1 : y) * w;
            uint8_t *o = mask + (int64_t)y * w; /* mask: the grown mask from here on */
            for (int x = 0; x < w; x++) {
                o[x] = up[x] | mid[x] | dn[x];
                if (o[x]) {
                    gy0 = imin(gy0, y);
                    gy1 = imax(gy1, y);
                    gx0 = imin(gx0, x);
                    gx1 = imax(gx1, x);
                }
            }
        }
        grown = mask;
    }
    /* 6. crop at frame resolution */
    const int64_t Y0 = (int64_t)gy0 * f, Y1 = ((int64_t)gy1 + 1) * f < H ? ((int64_t)gy1 + 1) * f : H;
    const int64_t X0 = (int64_t)gx0 * f, X1 = ((int64_t)gx1 + 1) * f < W ? ((int64_t)gx1 + 1) * f : W;
    info->box[0] = (int)X0;
    info->box[1] = (int)Y0;
    info->box[2] = (int)(X1 - X0);
    info->box[3] = (int)(Y1 - Y0);
    const int64_t L = (Y1 - Y0) > (X1 - X0) ? (Y1 - Y0) : (X1 - X0);
    int64_t fc = L / (CROP_SIDE_PER_BOX * box);
    if (fc < 1)
        fc = 1;
    const int ch = (int)ceil_div(Y1 - Y0, fc), cw = (int)ceil_div(X1 - X0, fc);
    if ((int64_t)ch * cw > crop_px || cw > line_len + crop_max) { /* cannot happen: L / fc < 8 * box */
        rc = -3;
        goto done;
    }
    block_mean_picture(p, Y0, Y1, X0, X1, (int)fc, crop, acc, line);
    if (s) {
        bilinear_blocks(s, bh, bw, Y0, X0, ch, cw, (int)fc, H, W, crop_bg, xi0, xi1, xf);
    } else {
        for (int64_t i = 0; i < (int64_t)ch * cw; i++)
            crop_bg[i] = b;
    }
    for (int x = 0; x < cw; x++) {
        int64_t mx = (X0 + (int64_t)x * fc + fc / 2) / f;
        xi0[x] = (int)(mx > w - 1 ? w - 1 : mx);
    }
    for (int y = 0; y < ch; y++) {
        int64_t my = (Y0 + (int64_t)y * fc + fc / 2) / f;
        if (my > h - 1)
            my = h - 1;
        for (int x = 0; x < cw; x++) {
            const int64_t mx = xi0[x];
            const int64_t i = (int64_t)y * cw + x;
            int32_t v = invert ? 255 - crop[i] : crop[i];
            v -= crop_bg[i];
            if (!grown[my * w + mx] || v < 0)
                v = 0;
            crop[i] = v;
        }
    }
    if ((ch > cw ? ch : cw) >= 2 * box) {
        /* reduced at least 2x later: smoothing keeps sensor noise from stretching the tight box */
        smooth121(crop, ch, cw, rs, crop_tmp);
        memcpy(crop, rs, sizeof(int32_t) * (size_t)ch * (size_t)cw);
    }
    int peak = 0;
    for (int64_t i = 0; i < (int64_t)ch * cw; i++)
        if (crop[i] > peak)
            peak = crop[i];
    info->peak = peak;
    if (peak < BLANK_PEAK)
        goto done;
    info->blank = 0;
    /* 7. normalize, threshold, tight box */
    int ty0 = ch, ty1 = -1, tx0 = cw, tx1 = -1;
    /* crop values are in [0, peak], peak <= 255: one division per level, not per pixel */
    int32_t scaled[256];
    for (int c = 0; c < 256; c++)
        scaled[c] = (c * 255 + peak / 2) / peak;
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++) {
            const int64_t i = (int64_t)y * cw + x;
            const int32_t c = crop[i];
            int32_t v = c >= 0 && c < 256 ? scaled[c] : (c * 255 + peak / 2) / peak;
            if (v < 51)
                v = 0;
            crop[i] = v;
            if (v) {
                ty0 = imin(ty0, y);
                ty1 = imax(ty1, y);
                tx0 = imin(tx0, x);
                tx1 = imax(tx1, x);
            }
        }
    const int th = ty1 - ty0 + 1, tw = tx1 - tx0 + 1;
    const int tl = th > tw ? th : tw;
    const int nh = imax(1, (2 * th * box + tl) / (2 * tl));
    const int nw = imax(1, (2 * tw * box + tl) / (2 * tl));
    /* 8. resize: columns (into rs, th x nw), then rows (into crop_bg, nh x nw) */
    {
        if (resize_weights(tw, nw, plan, wt, RESIZE_WT_CAP) != 0) {
            rc = -1;
            goto done;
        }
        for (int y = 0; y < th; y++)
            resize_line(plan, wt, crop + (int64_t)(ty0 + y) * cw + tx0, 1, rs + (int64_t)y * nw, 1);
        if (resize_weights(th, nh, plan, wt, RESIZE_WT_CAP) != 0) {
            rc = -1;
            goto done;
        }
        for (int x = 0; x < nw; x++)
            resize_line(plan, wt, rs + x, nw, crop_bg + x, nw);
    }
    int dmax = 0;
    for (int64_t i = 0; i < (int64_t)nh * nw; i++)
        if (crop_bg[i] > dmax)
            dmax = crop_bg[i];
    int64_t total = 0, sy = 0, sx = 0;
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++) {
            int32_t *v = &crop_bg[(int64_t)y * nw + x];
            if (dmax > 0)
                *v = (*v * 255 + dmax / 2) / dmax;
            total += *v;
            sy += (int64_t)y * *v;
            sx += (int64_t)x * *v;
        }
    /* 9. centre of mass */
    int64_t top, left;
    if (total > 0) {
        top = floor_div((int64_t)out_h * total - 2 * sy + total, 2 * total);
        left = floor_div((int64_t)out_w * total - 2 * sx + total, 2 * total);
    } else {
        top = floor_div(out_h - nh + 1, 2);
        left = floor_div(out_w - nw + 1, 2);
    }
    if (top > out_h - nh) top = out_h - nh;
    if (top < 0) top = 0;
    if (left > out_w - nw) left = out_w - nw;
    if (left < 0) left = 0;
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw; x++)
            out[(top + y) * out_w + left + x] = (uint8_t)crop_bg[(int64_t)y * nw + x];
done:
    free(mem);
    return rc;
}
