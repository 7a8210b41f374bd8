/*
 * The forward pass of a packed model (edge_rbmlp/model_file.py) with one kernel
 * table.  One call runs a whole batch; every sample goes through the whole
 * network before the next one, so the scratch is a few KiB (on the stack for
 * every model of the paper's sizes; a model whose scratch exceeds
 * RBM_STACK_SCRATCH gets one heap block per call, never per sample).
 *
 * Nothing here writes global state: concurrent calls on one model are safe.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbm_kernels.h"

#define RBM_STACK_SCRATCH (48 * 1024)
#define RBM_TILE 4 /* samples per tile of the float shortcut (one weight pass per tile) */
#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

typedef struct scratch {
    uint64_t *bits_a, *bits_b;
    int32_t *acc;
    float *h, *s, *logits;
    uint8_t *pooled;
    void *tmp;
    float *hT, *sT, *xT; /* tiles: [RBM_TILE][width], [RBM_TILE][rows], [RBM_TILE][cols] */
    int32_t *accT;       /* [RBM_TILE][rows]: layer-0 accumulators of a tile (int8 input on +-1 bytes) */
    uint64_t *planes;    /* planes input mode: [input_bits][layer-0 words] */
} scratch;

/* P, and F on up to 2048 inputs, run the float shortcut as f32_mm on float inputs, in tiles */
static int uses_mm(const rbm_model *m)
{
    return m->shortcut == RBM_SHORTCUT_P || (m->shortcut == RBM_SHORTCUT_F && m->sc_cols <= 2048);
}

static size_t max_words(const rbm_model *m)
{
    int32_t w = 1;
    for (int32_t i = 0; i < m->n_layers; i++) {
        if (m->layers[i].words > w)
            w = m->layers[i].words;
        if (RBM_WORDS(m->layers[i].rows) > w)
            w = RBM_WORDS(m->layers[i].rows);
    }
    return (size_t)w;
}

static size_t max_rows(const rbm_model *m)
{
    int32_t r = 1;
    for (int32_t i = 0; i < m->n_layers; i++)
        if (m->layers[i].rows > r)
            r = m->layers[i].rows;
    if (m->sc_rows > r)
        r = m->sc_rows;
    return (size_t)r;
}

static size_t scratch_layout(const rbm_model *m, char *base, scratch *s)
{
    size_t off = 0, words = max_words(m), rows = max_rows(m);
#define TAKE(field, type, count)                                  \
    do {                                                          \
        if (s) s->field = (type *)(void *)(base + off);           \
        off += ALIGN64(sizeof(type) * (size_t)(count));           \
    } while (0)
    TAKE(bits_a, uint64_t, words);
    TAKE(bits_b, uint64_t, words);
    TAKE(acc, int32_t, rows);
    TAKE(h, float, rows);
    TAKE(s, float, rows);
    TAKE(logits, float, m->n_out);
    TAKE(pooled, uint8_t, (m->shortcut == RBM_SHORTCUT_P ? m->sc_cols : 1));
    TAKE(tmp, char, (m->shortcut == RBM_SHORTCUT_Q ? 2 * (size_t)m->sc_cols + 64 : 64));
    TAKE(hT, float, RBM_TILE * rows);
    TAKE(sT, float, RBM_TILE * rows);
    TAKE(xT, float, (uses_mm(m) ? RBM_TILE * (size_t)m->sc_cols : 1));
    TAKE(accT, int32_t, RBM_TILE * rows);
    TAKE(planes, uint64_t, (m->input_mode == RBM_INPUT_PLANES ? (size_t)m->input_bits * RBM_WORDS(m->n_inputs) : 1));
#undef TAKE
    return off;
}

#define FAIL(...)                               \
    do {                                        \
        if (err && errlen) snprintf(err, errlen, __VA_ARGS__); \
        return RBM_EINVAL;                      \
    } while (0)

int rbm_model_check(rbm_model *m, char *err, size_t errlen)
{
    if (!m)
        FAIL("no model");
    if (m->n_inputs < 1 || m->n_inputs > (1 << 20))
        FAIL("n_inputs %d out of range", m->n_inputs);
    if (m->input_mode != RBM_INPUT_SIGN && m->input_mode != RBM_INPUT_INT8 && m->input_mode != RBM_INPUT_PLANES)
        FAIL("bad input mode %d", m->input_mode);
    if (m->input_mode == RBM_INPUT_PLANES && (m->input_bits < 1 || m->input_bits > 8))
        FAIL("planes input mode with %d bits (1..8)", m->input_bits);
    if (m->binarize_threshold < 0 || m->binarize_threshold > 256)
        FAIL("binarize threshold %d out of [0, 256]", m->binarize_threshold);
    if (m->n_layers < 1 || m->n_layers > RBM_MAX_LAYERS)
        FAIL("%d layers (1..%d)", m->n_layers, RBM_MAX_LAYERS);
    int32_t n = m->n_inputs;
    for (int32_t i = 0; i < m->n_layers; i++) {
        rbm_layer *L = &m->layers[i];
        if (L->n != n)
            FAIL("layer %d takes %d inputs where %d are produced", i, L->n, n);
        if (L->rows < 1 || L->rows > (1 << 16))
            FAIL("layer %d width %d out of range", i, L->rows);
        if (L->words != RBM_WORDS(n))
            FAIL("layer %d has %d words per row, %d needed", i, L->words, RBM_WORDS(n));
        if (!L->weight)
            FAIL("layer %d has no weights", i);
        if (i < m->n_layers - 1) {
            if (!L->threshold || !L->flip)
                FAIL("layer %d has no thresholds", i);
        } else if (!L->scale || !L->shift) {
            FAIL("last layer has no scale/shift");
        }
        n = L->rows;
    }
    int32_t last = m->layers[m->n_layers - 1].rows;
    switch (m->shortcut) {
    case RBM_SHORTCUT_NONE:
        break;
    case RBM_SHORTCUT_F:
    case RBM_SHORTCUT_Q:
    case RBM_SHORTCUT_P:
        if (m->sc_rows != last)
            FAIL("shortcut has %d rows, the last layer %d", m->sc_rows, last);
        if (!m->sc_weight || !m->sc_bias)
            FAIL("shortcut tensors missing");
        if (m->shortcut == RBM_SHORTCUT_P) {
            if (m->pool < 1 || m->sc_cols != m->n_inputs / m->pool || m->sc_cols < 1)
                FAIL("P shortcut: %d columns for %d inputs pooled by %d", m->sc_cols, m->n_inputs, m->pool);
        } else if (m->sc_cols != m->n_inputs) {
            FAIL("shortcut has %d columns for %d inputs", m->sc_cols, m->n_inputs);
        }
        if (m->shortcut == RBM_SHORTCUT_Q) {
            if (!m->sc_scale || !m->sc_rowsum)
                FAIL("Q shortcut needs scale and row sums");
            /* 128 * 255 * 65536 < 2^31: no int32 overflow in the accumulation */
            if (m->sc_cols > 65536)
                FAIL("Q shortcut with %d inputs could overflow int32 accumulation (max 65536)", m->sc_cols);
        }
        break;
    default:
        FAIL("unknown shortcut kind %d", m->shortcut);
    }
    if (m->n_out < 1 || !m->out_weight || !m->out_bias)
        FAIL("output layer missing");
    if (m->w0t) {
        if (m->input_mode == RBM_INPUT_PLANES)
            FAIL("sparse (multi-hot) tables need the sign or int8 input mode");
        if (m->w0t_words != RBM_WORDS(m->layers[0].rows) || !m->w0_rowpop)
            FAIL("sparse tables inconsistent");
        if (m->shortcut == RBM_SHORTCUT_Q && !m->sct)
            FAIL("sparse Q shortcut table missing");
    }
    if (m->w0_pm1 && (m->input_mode != RBM_INPUT_INT8 || m->w0_pm1_stride < m->n_inputs))
        FAIL("expanded int8 layer 0 inconsistent (stride %d for %d inputs)", m->w0_pm1_stride, m->n_inputs);
    m->scratch_bytes = scratch_layout(m, NULL, NULL);
    return RBM_OK;
}

/* layer 0 accumulators from sparse indices (multi-hot inputs: active q = 1, others 0) */
static void sparse_layer0(const rbm_model *m, const rbm_kernels *K, const int32_t *idx, int32_t k,
                          int32_t *acc)
{
    const rbm_layer *L = &m->layers[0];
    K->sparse_bitcount(m->w0t, m->w0t_words, L->rows, idx, k, acc);
    if (m->input_mode == RBM_INPUT_INT8) {
        /* sum over active i of (+-1) = 2*cnt - k */
        for (int32_t o = 0; o < L->rows; o++)
            acc[o] = 2 * acc[o] - k;
    } else {
        /* x_i = a on active inputs, z elsewhere; sum_all w = 2*pop - n, sum_active w = 2*cnt - k */
        int32_t a = (1 >= m->binarize_threshold) ? 1 : -1;
        int32_t z = (0 >= m->binarize_threshold) ? 1 : -1;
        for (int32_t o = 0; o < L->rows; o++)
            acc[o] = z * (2 * m->w0_rowpop[o] - L->n) + (a - z) * (2 * acc[o] - k);
    }
}

/* logits -> out: RBM_OUT_LOGITS [n_out], RBM_OUT_SOFTMAX [n_out], RBM_OUT_SIGMOID [2] = [1 - p, p] */
static void finish(float *lg, int32_t n_out, int32_t kind, float *out)
{
    if (kind == RBM_OUT_SIGMOID) {
        double p = 1.0 / (1.0 + exp(-(double)lg[0]));
        out[0] = (float)(1.0 - p);
        out[1] = (float)p;
    } else if (kind == RBM_OUT_SOFTMAX) {
        float mx = lg[0];
        for (int32_t o = 1; o < n_out; o++)
            mx = lg[o] > mx ? lg[o] : mx;
        double sum = 0.0;
        for (int32_t o = 0; o < n_out; o++) {
            lg[o] = expf(lg[o] - mx); /* one exp per class, in place */
            sum += lg[o];
        }
        float inv = (float)(1.0 / sum);
        for (int32_t o = 0; o < n_out; o++)
            out[o] = lg[o] * inv;
    } else {
        memcpy(out, lg, (size_t)n_out * sizeof(float));
    }
}

int32_t rbm_output_width(const rbm_model *m, int32_t kind)
{
    return kind == RBM_OUT_SIGMOID ? 2 : m->n_out;
}

/* the binary layers of one sample: h[width] = scale * acc + shift of the last layer */
static int uses_pm1(const rbm_model *m, const rbm_kernels *K)
{
    return m->input_mode == RBM_INPUT_INT8 && m->w0_pm1 && K->u8_pm1_mv;
}

/* acc0: layer-0 accumulators already computed for this sample (a tile), or NULL */
static void hidden_one(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, const int32_t *idx, int32_t k,
                       const scratch *S, float *h, const int32_t *acc0)
{
    const rbm_layer *L0 = &m->layers[0];
    int32_t *acc = S->acc;
    const int32_t *cur = acc;
    uint64_t *x = S->bits_a, *y = S->bits_b;
    if (acc0) {
        cur = acc0;
    } else if (q) {
        if (m->input_mode == RBM_INPUT_SIGN) {
            K->pack_ge_u8(q, L0->n, m->binarize_threshold, x);
            K->bmv(L0->weight, L0->rows, L0->words, x, L0->n, acc);
        } else if (m->input_mode == RBM_INPUT_PLANES) {
            K->pack_planes_u8(q, L0->n, m->input_bits, S->planes);
            K->planes_bmv(L0->weight, L0->rows, L0->words, S->planes, m->input_bits, acc);
        } else if (uses_pm1(m, K)) {
            K->u8_pm1_mv(m->w0_pm1, L0->rows, m->w0_pm1_stride, q, L0->n, 1, L0->n, acc);
        } else {
            K->u8_bmv(L0->weight, L0->rows, L0->words, q, L0->n, acc);
        }
    } else {
        sparse_layer0(m, K, idx, k, acc);
    }
    int32_t T = m->n_layers;
    for (int32_t i = 0; i < T; i++) {
        const rbm_layer *L = &m->layers[i];
        if (i > 0) {
            K->bmv(L->weight, L->rows, L->words, x, L->n, acc);
            cur = acc;
        }
        if (i < T - 1) {
            K->threshold_pack(cur, L->threshold, L->flip, L->rows, y);
            uint64_t *t = x;
            x = y;
            y = t;
        } else {
            for (int32_t o = 0; o < L->rows; o++)
                h[o] = (float)cur[o] * L->scale[o] + L->shift[o];
        }
    }
}

/* the float input of an f32_mm shortcut (P: pooled q, F: q) of one sample, as floats */
static void mm_input(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, const int32_t *idx, int32_t k,
                     const scratch *S, float *xf)
{
    int32_t cols = m->sc_cols;
    if (m->shortcut == RBM_SHORTCUT_P) {
        if (q) {
            K->maxpool_u8(q, cols, m->pool, S->pooled);
        } else {
            memset(S->pooled, 0, (size_t)cols);
            for (int32_t j = 0; j < k; j++) {
                int32_t c = idx[j] / m->pool;
                if (c < cols)
                    S->pooled[c] = 1;
            }
        }
        for (int32_t j = 0; j < cols; j++)
            xf[j] = (float)S->pooled[j];
    } else if (q) {
        for (int32_t j = 0; j < cols; j++)
            xf[j] = (float)q[j];
    } else {
        memset(xf, 0, (size_t)cols * sizeof(float));
        for (int32_t j = 0; j < k; j++)
            xf[idx[j]] = 1.0f;
    }
}

/* every shortcut but the f32_mm ones: s[rows] of one sample */
static void shortcut_one(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, const int32_t *idx, int32_t k,
                         const scratch *S, float *s)
{
    int32_t rows = m->sc_rows, cols = m->sc_cols;
    if (m->shortcut == RBM_SHORTCUT_F) {
        const float *W = (const float *)m->sc_weight;
        if (q) {
            K->f32u8_mv(W, rows, cols, q, m->sc_bias, s);
        } else {
            for (int32_t o = 0; o < rows; o++) {
                const float *w = W + (size_t)o * cols;
                float v = 0.0f;
                for (int32_t j = 0; j < k; j++)
                    v += w[idx[j]];
                s[o] = m->sc_bias[o] + v;
            }
        }
    } else if (m->shortcut == RBM_SHORTCUT_Q) {
        int32_t *iacc = S->acc; /* the layer accumulators are no longer needed */
        if (q)
            K->s8u8_mv((const int8_t *)m->sc_weight, m->sc_rowsum, rows, cols, q, S->tmp, iacc);
        else
            K->sparse_s8sum(m->sct, rows, idx, k, iacc);
        for (int32_t o = 0; o < rows; o++)
            s[o] = (float)iacc[o] * m->sc_scale[o] + m->sc_bias[o];
    }
}

static void output_one(const rbm_model *m, const rbm_kernels *K, float *h, const float *s, float *out,
                       int32_t kind, const scratch *S)
{
    int32_t width = m->layers[m->n_layers - 1].rows;
    if (s)
        for (int32_t o = 0; o < width; o++)
            h[o] = h[o] + s[o];
    K->f32_mv(m->out_weight, m->n_out, width, h, m->out_bias, S->logits);
    finish(S->logits, m->n_out, kind, out);
}

static void forward_one(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, const int32_t *idx,
                        int32_t k, float *out, int32_t kind, const scratch *S)
{
    hidden_one(m, K, q, idx, k, S, S->h, NULL);
    if (m->shortcut == RBM_SHORTCUT_NONE) {
        output_one(m, K, S->h, NULL, out, kind, S);
    } else if (uses_mm(m)) {
        mm_input(m, K, q, idx, k, S, S->xT);
        K->f32_mm((const float *)m->sc_weight, m->sc_rows, m->sc_cols, S->xT, 1, m->sc_bias, S->s);
        output_one(m, K, S->h, S->s, out, kind, S);
    } else {
        shortcut_one(m, K, q, idx, k, S, S->s);
        output_one(m, K, S->h, S->s, out, kind, S);
    }
}

/* a dense tile of T <= RBM_TILE samples: the int8 input layer (+-1 bytes) and the f32_mm
 * shortcut each make one pass over their weights for the whole tile */
static void forward_tile(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, int64_t row_stride, int32_t T,
                         float *out, int32_t out_width, int32_t kind, const scratch *S)
{
    int32_t width = m->layers[m->n_layers - 1].rows, rows0 = m->layers[0].rows;
    int pm1 = uses_pm1(m, K), mm = uses_mm(m);
    if (pm1)
        K->u8_pm1_mv(m->w0_pm1, rows0, m->w0_pm1_stride, q, row_stride, T, m->n_inputs, S->accT);
    for (int32_t t = 0; t < T; t++) {
        const uint8_t *qt = q + t * row_stride;
        hidden_one(m, K, qt, NULL, 0, S, S->hT + (size_t)t * width, pm1 ? S->accT + (size_t)t * rows0 : NULL);
        if (mm)
            mm_input(m, K, qt, NULL, 0, S, S->xT + (size_t)t * m->sc_cols);
        else if (m->shortcut != RBM_SHORTCUT_NONE)
            shortcut_one(m, K, qt, NULL, 0, S, S->sT + (size_t)t * m->sc_rows);
    }
    if (mm)
        K->f32_mm((const float *)m->sc_weight, m->sc_rows, m->sc_cols, S->xT, T, m->sc_bias, S->sT);
    for (int32_t t = 0; t < T; t++)
        output_one(m, K, S->hT + (size_t)t * width,
                   m->shortcut != RBM_SHORTCUT_NONE ? S->sT + (size_t)t * m->sc_rows : NULL,
                   out + (size_t)t * out_width, kind, S);
}

static char *scratch_base(const rbm_model *m, uint64_t *stack, void **heap)
{
    *heap = NULL;
    if (m->scratch_bytes + 64 <= RBM_STACK_SCRATCH)
        return (char *)(((uintptr_t)stack + 63) & ~(uintptr_t)63);
    *heap = malloc(m->scratch_bytes + 64);
    if (!*heap)
        return NULL;
    return (char *)(((uintptr_t)*heap + 63) & ~(uintptr_t)63);
}

static int bad_kind(const rbm_model *m, int32_t kind)
{
    if (kind == RBM_OUT_LOGITS || kind == RBM_OUT_SOFTMAX)
        return 0;
    return !(kind == RBM_OUT_SIGMOID && m->n_out == 1);
}

/* One call's batch loop with its scratch (on the stack, or one heap block for a large model): the
 * sparse samples idx / offsets when `sparse`, else dense inputs q (rows of row_stride bytes). */
static int run_batch(const rbm_model *m, const rbm_kernels *K, int sparse, const uint8_t *q, int64_t row_stride,
                     const int32_t *idx, const int64_t *offsets, int64_t batch, float *out, int32_t kind)
{
    uint64_t stack[RBM_STACK_SCRATCH / 8];
    void *heap;
    char *base = scratch_base(m, stack, &heap);
    if (!base)
        return RBM_ENOMEM;
    scratch S;
    scratch_layout(m, base, &S);
    int32_t ow = rbm_output_width(m, kind);
    if (sparse) {
        for (int64_t b = 0; b < batch; b++)
            forward_one(m, K, NULL, idx + offsets[b], (int32_t)(offsets[b + 1] - offsets[b]), out + b * ow, kind, &S);
    } else if ((uses_mm(m) || uses_pm1(m, K)) && batch > 1) {
        for (int64_t b = 0; b < batch; b += RBM_TILE) {
            int32_t T = batch - b < RBM_TILE ? (int32_t)(batch - b) : RBM_TILE;
            forward_tile(m, K, q + b * row_stride, row_stride, T, out + b * ow, ow, kind, &S);
        }
    } else {
        for (int64_t b = 0; b < batch; b++)
            forward_one(m, K, q + b * row_stride, NULL, 0, out + b * ow, kind, &S);
    }
    free(heap);
    return RBM_OK;
}

int rbm_forward(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, int64_t batch,
                int64_t row_stride, float *out, int32_t kind)
{
    if (!m || !K || batch < 0 || (batch > 0 && (!q || !out)) || row_stride < m->n_inputs || bad_kind(m, kind))
        return RBM_EINVAL;
    if (m->scratch_bytes == 0)
        return RBM_EINVAL; /* rbm_model_check was not run */
    return run_batch(m, K, 0, q, row_stride, NULL, NULL, batch, out, kind);
}

int rbm_forward_sparse(const rbm_model *m, const rbm_kernels *K, const int32_t *idx,
                       const int64_t *offsets, int64_t batch, float *out, int32_t kind)
{
    if (!m || !K || batch < 0 || !offsets || (batch > 0 && !out) || bad_kind(m, kind))
        return RBM_EINVAL;
    if (m->scratch_bytes == 0)
        return RBM_EINVAL;
    if (!m->w0t)
        return RBM_ENOSPARSE;
    /* validate every index before computing anything */
    if (offsets[0] != 0)
        return RBM_EINDEX;
    for (int64_t b = 0; b < batch; b++) {
        int64_t lo = offsets[b], hi = offsets[b + 1];
        if (hi < lo || hi - lo > m->n_inputs)
            return RBM_EINDEX;
        int32_t prev = -1;
        for (int64_t j = lo; j < hi; j++) {
            if (idx[j] <= prev || idx[j] >= m->n_inputs)
                return RBM_EINDEX;
            prev = idx[j];
        }
    }
    return run_batch(m, K, 1, NULL, 0, idx, offsets, batch, out, kind);
}
