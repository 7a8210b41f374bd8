/* Internal: the baseline NEON kernels, shared by the neon and neon_dotprod tables. */
#ifndef RBM_KERNELS_NEON_H
#define RBM_KERNELS_NEON_H
#include "rbm_kernels.h"
void rbm_neon_pack_ge_u8(const uint8_t *q, int32_t n, int32_t t, uint64_t *bits);
void rbm_neon_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *x, int32_t n, int32_t *acc);
void rbm_neon_threshold_pack(const int32_t *acc, const int32_t *thr, const uint8_t *flip, int32_t rows,
                             uint64_t *bits);
void rbm_neon_u8_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint8_t *q, int32_t n, int32_t *acc);
void rbm_neon_s8u8_mv(const int8_t *W, const int32_t *rowsum, int32_t rows, int32_t n, const uint8_t *q,
                      void *tmp, int32_t *acc);
void rbm_neon_f32_mv(const float *W, int32_t rows, int32_t n, const float *x, const float *bias, float *out);
void rbm_neon_f32u8_mv(const float *W, int32_t rows, int32_t n, const uint8_t *q, const float *bias, float *out);
void rbm_neon_maxpool_u8(const uint8_t *q, int32_t m, int32_t pool, uint8_t *out);
void rbm_neon_sparse_bitcount(const uint64_t *WT, int32_t twords, int32_t rows, const int32_t *idx, int32_t k,
                              int32_t *cnt);
void rbm_neon_sparse_s8sum(const int8_t *WTq, int32_t rows, const int32_t *idx, int32_t k, int32_t *acc);
void rbm_neon_f32_mm(const float *W, int32_t rows, int32_t n, const float *X, int32_t T, const float *bias,
                     float *out);
void rbm_neon_pack_planes_u8(const uint8_t *q, int32_t n, int32_t k, uint64_t *planes);
void rbm_neon_planes_bmv(const uint64_t *W, int32_t rows, int32_t words, const uint64_t *planes, int32_t k,
                         int32_t *acc);
#endif
