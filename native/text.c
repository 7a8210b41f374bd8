/*
 * Raw text -> active vocabulary indices, in C, for ASCII text: the same result as
 * edge_rbmlp/text.py (tokenizer "edge-rbmlp-words" v1) gives for ASCII input, where NFKC
 * normalization is the identity, lower case is A-Z -> a-z and the token class [^\W_] is
 * [a-z0-9]:
 *   1. every HTML tag <[^<>]{0,200}> becomes a space (leftmost, non-overlapping);
 *   2. tokens are maximal runs of [a-z0-9]+ ('[a-z0-9]+)* (inner apostrophes kept);
 *   3. tokens found in the vocabulary give their indices, sorted and unique.
 * Text with any byte >= 0x80 returns RBM_ENONASCII: the caller uses the Python tokenizer.
 */
#include <stdlib.h>
#include <string.h>

#include "rbm_kernels.h"

/* ASCII character table: 0 for separators, else the lower-case character ([a-z0-9]) */
static const unsigned char ALNUM_LOWER[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 0, 0, 0, 0, 0, 0,
    0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0, 0, 0, 0, 0,
    0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0, 0, 0, 0, 0,
};

static inline int is_alnum(unsigned char c)
{
    return c < 128 && ALNUM_LOWER[c] != 0;
}

static inline unsigned char lower(unsigned char c)
{
    return (c < 128 && ALNUM_LOWER[c]) ? ALNUM_LOWER[c] : c;
}

static inline uint64_t fnv_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * 0x100000001b3ULL;
}
#define FNV_INIT 0xcbf29ce484222325ULL

int rbm_vocab_init(rbm_vocab *v, const char *blob, const int64_t *offsets, int32_t n, int32_t *table,
                   int64_t capacity)
{
    if (!v || n < 0 || !offsets || !table || capacity < 2 * (int64_t)n || capacity < 2 ||
        (capacity & (capacity - 1)))
        return RBM_EINVAL;
    v->blob = blob;
    v->offsets = offsets;
    v->n = n;
    v->table = table;
    v->mask = (uint64_t)capacity - 1;
    for (int64_t i = 0; i < capacity; i++)
        table[i] = -1;
    for (int32_t w = 0; w < n; w++) {
        int64_t lo = offsets[w], hi = offsets[w + 1];
        if (hi < lo)
            return RBM_EINVAL;
        uint64_t h = FNV_INIT;
        for (int64_t i = lo; i < hi; i++)
            h = fnv_step(h, (unsigned char)blob[i]);
        uint64_t slot = h & v->mask;
        while (table[slot] >= 0)
            slot = (slot + 1) & v->mask;
        table[slot] = w;
    }
    return RBM_OK;
}

/* index of the lower-cased token text[lo, hi), or -1 */
static int32_t vocab_find(const rbm_vocab *v, const unsigned char *text, int64_t lo, int64_t hi, uint64_t h)
{
    uint64_t slot = h & v->mask;
    int64_t len = hi - lo;
    for (;;) {
        int32_t w = v->table[slot];
        if (w < 0)
            return -1;
        int64_t wlo = v->offsets[w], wlen = v->offsets[w + 1] - wlo;
        if (wlen == len) {
            const unsigned char *word = (const unsigned char *)v->blob + wlo;
            int64_t i = 0;
            while (i < len && word[i] == lower(text[lo + i]))
                i++;
            if (i == len)
                return w;
        }
        slot = (slot + 1) & v->mask;
    }
}

/* length of an HTML tag <[^<>]{0,200}> starting at text[p] == '<', or 0 */
static inline int64_t tag_length(const unsigned char *t, int64_t p, int64_t len)
{
    int64_t j = p + 1, k = 0;
    while (j < len && k <= 200 && t[j] != '<' && t[j] != '>') {
        j++;
        k++;
    }
    if (j < len && k <= 200 && t[j] == '>')
        return j - p + 1;
    return 0;
}

int32_t rbm_text_indices_ascii(const rbm_vocab *v, const char *text_, int64_t len, uint64_t *bitmap,
                               int32_t *idx, int32_t idx_capacity)
{
    const unsigned char *t = (const unsigned char *)text_;
    for (int64_t i = 0; i < len; i++)
        if (t[i] >= 0x80)
            return RBM_ENONASCII;
    int32_t words = RBM_WORDS(v->n);
    memset(bitmap, 0, (size_t)words * 8);
    int64_t p = 0;
    while (p < len) {
        unsigned char c = t[p];
        if (c == '<') {
            int64_t tl = tag_length(t, p, len);
            p += tl ? tl : 1;
            continue;
        }
        if (!is_alnum(c)) {
            p++;
            continue;
        }
        /* a token: [a-z0-9]+ ('[a-z0-9]+)* */
        int64_t lo = p;
        uint64_t h = FNV_INIT;
        for (;;) {
            while (p < len && is_alnum(t[p]))
                h = fnv_step(h, lower(t[p++]));
            if (p + 1 < len && t[p] == '\'' && is_alnum(t[p + 1])) {
                h = fnv_step(h, '\'');
                p++;
                continue;
            }
            break;
        }
        int32_t w = vocab_find(v, t, lo, p, h);
        if (w >= 0)
            bitmap[w >> 6] |= 1ULL << (w & 63);
    }
    int32_t k = 0;
    for (int32_t wd = 0; wd < words; wd++) {
        uint64_t b = bitmap[wd];
        while (b) {
            if (k >= idx_capacity)
                return RBM_EINVAL;
            idx[k++] = wd * 64 + __builtin_ctzll(b);
            b &= b - 1;
        }
    }
    return k;
}

#define TEXT_STACK_IDX 4096
#define TEXT_STACK_WORDS 1024

int rbm_predict_text_ascii(const rbm_model *m, const rbm_kernels *K, const rbm_vocab *v, const char *text,
                           int64_t len, float *out, int32_t kind, int32_t *n_active)
{
    if (!m || !K || !v || (len > 0 && !text) || !out || v->n != m->n_inputs)
        return RBM_EINVAL;
    int32_t words = RBM_WORDS(v->n);
    /* at most one active word per 2 characters (a token and a separator), and at most n */
    int64_t cap64 = len / 2 + 1 < v->n ? len / 2 + 1 : v->n;
    int32_t cap = (int32_t)cap64;
    int32_t idx_stack[TEXT_STACK_IDX];
    uint64_t bm_stack[TEXT_STACK_WORDS];
    int32_t *idx = idx_stack;
    uint64_t *bm = bm_stack;
    void *heap_idx = NULL, *heap_bm = NULL;
    if (cap > TEXT_STACK_IDX)
        idx = heap_idx = malloc((size_t)cap * sizeof(int32_t));
    if (words > TEXT_STACK_WORDS)
        bm = heap_bm = malloc((size_t)words * 8);
    int rc;
    if (!idx || !bm) {
        rc = RBM_ENOMEM;
    } else {
        int32_t k = rbm_text_indices_ascii(v, text, len, bm, idx, cap);
        if (k < 0) {
            rc = k;
        } else {
            int64_t offsets[2] = {0, k};
            if (n_active)
                *n_active = k;
            rc = rbm_forward_sparse(m, K, idx, offsets, 1, out, kind);
        }
    }
    free(heap_idx);
    free(heap_bm);
    return rc;
}
