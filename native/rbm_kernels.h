/*
 * edge-rbmlp native kernels: the public C interface.
 *
 * Bit order (edge_rbmlp/bits.py): element j of a row is bit (j % 64) of 64-bit
 * word j / 64, least significant bit first; padding bits past the row length
 * are 0 in weights and activations, so for two packed rows of n elements the
 * +-1 dot product is  n - 2 * popcount(x XOR w).
 *
 * A kernel table (struct rbm_kernels) holds one implementation of every
 * kernel.  kernels_portable.c is the plain C reference (the C definition of
 * correct); kernels_avx2.c (x86_64 AVX2 + POPCNT + FMA), kernels_neon.c
 * (aarch64 ASIMD, every Raspberry Pi core; 32-bit ARM with NEON) and kernels_neon_dotprod.c (ARMv8.2
 * dot product, Cortex-A76 / Pi 5) are the optimized variants.  select.c picks
 * one at run time from the CPU's features, or the one named by the
 * environment variable EDGE_RBMLP_KERNEL.  engine.c runs a whole model
 * (struct rbm_model) with one table.
 *
 * Every size is an int32_t >= 0; every function is reentrant (no globals
 * written) and allocation-free.
 */
#ifndef RBM_KERNELS_H
#define RBM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RBM_WORDS(n) (((n) + 63) / 64)

typedef struct rbm_kernels {
    const char *name;
    /* bits = pack(q[i] >= t) for i < n; t in [0, 256]; padding bits 0. */
    void (*pack_ge_u8)(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits);
    /* acc[o] = n - 2 * popcount(x XOR W[o]) for o < rows; W is [rows, words]. */
    void (*bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n,
                int32_t *acc);
    /* bits[o] = flip[o] ? acc[o] <= thr[o] : acc[o] >= thr[o]; padding bits 0. */
    void (*threshold_pack)(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows,
                           uint64_t *bits);
    /* acc[o] = sum_i q[i] * (bit i of W[o] ? +1 : -1), i < n (int8 input mode). */
    void (*u8_bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n,
                   int32_t *acc);
    /* acc[o] = sum_i W[o, i] * q[i] (int8 weights, uint8 input, int32 result).
     * rowsum[o] = sum_i W[o, i]; tmp has room for 2 * n + 64 bytes. */
    void (*s8u8_mv)(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q,
                    void *tmp, int32_t *acc);
    /* out[o] = bias[o] + sum_i W[o, i] * x[i] (float). */
    void (*f32_mv)(const float *W, int32_t rows, int32_t n, const float *x, const float *bias,
                   float *out);
    /* out[o] = bias[o] + sum_i W[o, i] * q[i] (float weights, uint8 input). */
    void (*f32u8_mv)(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias,
                     float *out);
    /* out[j] = max(q[j*pool .. j*pool + pool - 1]) for j < m. */
    void (*maxpool_u8)(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out);
    /* Sparse input: cnt[o] = number of idx[j] (j < k) with bit o of WT[idx[j]] set,
     * WT being the transposed first layer [n, twords], o < rows. */
    void (*sparse_bitcount)(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx,
                            int32_t k, int32_t *cnt);
    /* Sparse input: acc[o] = sum_j WTq[idx[j], o], WTq the transposed int8 shortcut [n, rows]. */
    void (*sparse_s8sum)(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc);
    /* out[t * rows + o] = bias[o] + sum_i W[o, i] * X[t * n + i] for t < T (float; a tile of
     * samples shares every weight load).  Each (o, t) is computed exactly as for T = 1, so a
     * sample's result does not depend on the batch it came in. */
    void (*f32_mm)(const float *W, int32_t rows, int32_t n, const float *X, int32_t T, const float *bias,
                   float *out);
    /* Optional (NULL when a variant has none): the int8 input layer on weights expanded to
     * +-1 int8 at load time, Wpm1 [rows, stride], for T samples q + t * q_stride:
     * acc[t * rows + o] = sum_i q_t[i] * Wpm1[o, i], i < n. */
    void (*u8_pm1_mv)(const int8_t *Wpm1, int32_t rows, int32_t stride, const uint8_t *q, int64_t q_stride,
                      int32_t T, int32_t n, int32_t *acc);
    /* Bit planes of the top k bits (1 <= k <= 8) of q (planes input mode): plane b < k of
     * planes [k, RBM_WORDS(n)] holds bit (8 - k + b) of every q[i], i < n; padding bits 0. */
    void (*pack_planes_u8)(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes);
    /* acc[o] = sum_i v_i * (bit i of W[o] ? +1 : -1) with v_i = sum_b 2^b * (bit i of plane b),
     *        = sum_{b < k} 2^b * (2 * popcount(P_b AND W[o]) - popcount(P_b)); W is [rows, words],
     * planes [k, words] (as pack_planes_u8 writes them). */
    void (*planes_bmv)(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k,
                       int32_t *acc);
} rbm_kernels;

/* -- kernel variants and their selection (select.c) ------------------------ */
extern const rbm_kernels rbm_kernels_portable;
#if defined(__x86_64__)
extern const rbm_kernels rbm_kernels_avx2;
#endif
#if defined(__aarch64__) || defined(__arm__)
extern const rbm_kernels rbm_kernels_neon;
#endif
#if defined(__aarch64__)
extern const rbm_kernels rbm_kernels_neon_dotprod;
#endif

#define RBM_VARIANT_OK 0
#define RBM_VARIANT_UNKNOWN (-1)      /* no such variant name */
#define RBM_VARIANT_OTHER_ARCH (-2)   /* exists, but not for this CPU architecture */
#define RBM_VARIANT_NO_CPU (-3)       /* this CPU lacks the instructions it needs */

/* Names of every variant, NULL-terminated. */
extern const char *const rbm_variant_names[];
/* Status of a variant on this machine; on success *out is its table. */
int rbm_variant_lookup(const char *name, const rbm_kernels **out);
/* The best variant this CPU runs. */
const rbm_kernels *rbm_best_kernels(void);
/* What a variant needs (for error messages), e.g. "x86_64 with AVX2, POPCNT and FMA". */
const char *rbm_variant_requirement(const char *name);

/* -- a whole model (engine.c) ------------------------------------------------ */
#define RBM_MAX_LAYERS 64
#define RBM_SHORTCUT_NONE 0
#define RBM_SHORTCUT_F 1
#define RBM_SHORTCUT_Q 2
#define RBM_SHORTCUT_P 3
#define RBM_INPUT_SIGN 0
#define RBM_INPUT_INT8 1
#define RBM_INPUT_PLANES 2           /* layer 0 on v = q >> (8 - input_bits), as bit planes */

typedef struct rbm_layer {
    const uint64_t *weight; /* [rows, words] */
    int32_t rows, n, words;
    const int32_t *threshold; /* [rows], every layer but the last */
    const uint8_t *flip;      /* [rows] */
    const float *scale;       /* [rows], last layer */
    const float *shift;       /* [rows] */
} rbm_layer;

typedef struct rbm_model {
    int32_t n_inputs;
    int32_t input_mode;          /* RBM_INPUT_* */
    int32_t binarize_threshold;  /* sign mode: bit = q >= this */
    int32_t input_bits;          /* planes mode: bits per input, 1..8 (ignored otherwise) */
    int32_t n_layers;
    rbm_layer layers[RBM_MAX_LAYERS];
    int32_t shortcut;            /* RBM_SHORTCUT_* */
    const void *sc_weight;       /* F/P: float [rows, cols]; Q: int8 [rows, cols] */
    const float *sc_scale;       /* Q */
    const float *sc_bias;
    const int32_t *sc_rowsum;    /* Q: sum of each weight row */
    int32_t sc_rows, sc_cols, pool;
    const float *out_weight;     /* [n_out, last width] */
    const float *out_bias;
    int32_t n_out;
    /* sparse (multi-hot) input path, optional (NULL when absent) */
    const uint64_t *w0t;         /* [n_inputs, w0t_words]: transposed layer 0 bits */
    int32_t w0t_words;
    const int32_t *w0_rowpop;    /* [layers[0].rows]: popcount of each layer-0 row */
    const int8_t *sct;           /* Q: [n_inputs, sc_rows] transposed shortcut */
    /* int8 input mode, optional: layer 0 as +-1 int8 [rows, w0_pm1_stride] (used by variants
     * that have u8_pm1_mv) */
    const int8_t *w0_pm1;
    int32_t w0_pm1_stride;
    /* filled by rbm_model_check */
    size_t scratch_bytes;
} rbm_model;

#define RBM_OK 0
#define RBM_EINVAL (-1)   /* inconsistent model or arguments */
#define RBM_ENOMEM (-2)
#define RBM_EINDEX (-3)   /* sparse indices out of range or not strictly increasing */
#define RBM_ENOSPARSE (-4) /* the model has no sparse tables */

/* Checks every size and pointer of the model; sets scratch_bytes.  Returns RBM_OK or
 * RBM_EINVAL with a message in err. */
int rbm_model_check(rbm_model *m, char *err, size_t errlen);

/* What the forward functions write per sample: the logits [n_out], softmax
 * probabilities [n_out], or for one sigmoid unit [1 - p, p] (2 values). */
#define RBM_OUT_LOGITS 0
#define RBM_OUT_SOFTMAX 1
#define RBM_OUT_SIGMOID 2
int32_t rbm_output_width(const rbm_model *m, int32_t kind);

/* `batch` dense inputs q [batch, row_stride >= n_inputs] -> out [batch, rbm_output_width]. */
int rbm_forward(const rbm_model *m, const rbm_kernels *K, const uint8_t *q, int64_t batch,
                int64_t row_stride, float *out, int32_t kind);

/* `batch` multi-hot inputs given as sorted unique active indices: sample b has
 * indices idx[offsets[b] .. offsets[b+1]-1]; offsets[0] must be 0. */
int rbm_forward_sparse(const rbm_model *m, const rbm_kernels *K, const int32_t *idx,
                       const int64_t *offsets, int64_t batch, float *out, int32_t kind);

/* -- raw ASCII text -> vocabulary indices (text.c) --------------------------------- */
#define RBM_ENONASCII (-5) /* the text has bytes >= 0x80: use the Python tokenizer */

typedef struct rbm_vocab {
    const char *blob;        /* the words, concatenated (UTF-8) */
    const int64_t *offsets;  /* word w is blob[offsets[w] .. offsets[w+1]) */
    int32_t n;
    int32_t *table;          /* open-addressing hash table of word indices, -1 = empty */
    uint64_t mask;           /* capacity - 1 (capacity a power of 2 >= 2n) */
} rbm_vocab;

int rbm_vocab_init(rbm_vocab *v, const char *blob, const int64_t *offsets, int32_t n, int32_t *table,
                   int64_t capacity);
/* Sorted unique indices of the vocabulary words in ASCII text (the rules of
 * edge_rbmlp/text.py); bitmap has RBM_WORDS(v->n) words of scratch.  Returns the
 * count, RBM_ENONASCII, or RBM_EINVAL when more than idx_capacity words are found. */
int32_t rbm_text_indices_ascii(const rbm_vocab *v, const char *text, int64_t len, uint64_t *bitmap,
                               int32_t *idx, int32_t idx_capacity);
/* Tokenize ASCII text and run the sparse forward pass of one sample. */
int rbm_predict_text_ascii(const rbm_model *m, const rbm_kernels *K, const rbm_vocab *v, const char *text,
                           int64_t len, float *out, int32_t kind, int32_t *n_active);

/* -- the digit pipeline (digit.c; defined by edge_rbmlp/digit_reference.py) --------- */
typedef struct rbm_picture {
    const uint8_t *data;     /* pixel (y, x), channel c at data[y*row_stride + x*col_stride + c*chan_stride] */
    int64_t rows, cols;
    int32_t channels;        /* 1 grey, 3 RGB, 4 RGBA (alpha composited over white) */
    int64_t row_stride, col_stride, chan_stride;  /* in bytes, >= 0 */
} rbm_picture;

typedef struct rbm_digit_info {
    int32_t blank;           /* no digit: the output is all zero */
    int32_t inverted;        /* a dark digit on a light background */
    int32_t passthrough;     /* already an MNIST-like frame of the output size */
    int32_t components;      /* ink components found */
    int32_t kept;            /* of which joined into the digit */
    int32_t far;             /* not joined, with >= 25 % of the digit's mass (another digit, a letter's part) */
    int32_t frames;          /* hollow components drawn around others (a box around the digit), left out */
    int32_t box[4];          /* the digit's region in picture pixels: x, y, w, h */
    int32_t peak;            /* the crop's peak contrast (0..255) */
} rbm_digit_info;

/* 0 when the picture's description is usable (sizes >= 1, channels 1/3/4, strides >= 0). */
int rbm_digit_check(const rbm_picture *p);
/* The picture -> out[out_h * out_w] (light digit on black, fitted into box x box, centred
 * by mass; box <= 64). 0 on success, -1 on invalid arguments, -2 when memory is exhausted. */
int rbm_digit_pipeline(const rbm_picture *p, int out_h, int out_w, int box, uint8_t *out, rbm_digit_info *info);

#ifdef __cplusplus
}
#endif
#endif
