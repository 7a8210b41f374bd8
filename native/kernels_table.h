/* Internal: one kernel table from its functions' names.  P is the name prefix of the variant's
 * functions (empty for the files that name them plainly); the int8 kernels, which the NEON
 * dot-product table replaces, are given on their own; U8_PM1_MV may be NULL (optional kernel). */
#ifndef RBM_KERNELS_TABLE_H
#define RBM_KERNELS_TABLE_H
#define RBM_KERNEL_TABLE(NAME, P, U8_BMV, S8U8_MV, U8_PM1_MV)                                      \
    {                                                                                              \
        .name = NAME, .pack_ge_u8 = P##pack_ge_u8, .bmv = P##bmv, .threshold_pack = P##threshold_pack, \
        .u8_bmv = U8_BMV, .s8u8_mv = S8U8_MV, .f32_mv = P##f32_mv, .f32u8_mv = P##f32u8_mv,        \
        .maxpool_u8 = P##maxpool_u8, .sparse_bitcount = P##sparse_bitcount,                        \
        .sparse_s8sum = P##sparse_s8sum, .f32_mm = P##f32_mm, .u8_pm1_mv = U8_PM1_MV,              \
        .pack_planes_u8 = P##pack_planes_u8, .planes_bmv = P##planes_bmv,                          \
    }
#endif
