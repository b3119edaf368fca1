/* Quantizers: forward, STE backward and initialisation against hand-computed values. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

#define EQ(a, b) CU_ASSERT_DOUBLE_EQUAL((a), (b), 1e-6)

static void test_binary(void)
{
    float w[4] = {0.5f, -0.2f, 1.5f, -0.1f}, s, wh[4];
    quant_init(TRAIN_Q_BINARY, 1, 0, w, 1, 4, &s, NULL);
    EQ(s, 0.575); /* mean |w| */
    quant_forward(TRAIN_Q_BINARY, 1, 0, w, wh, 1, 4, &s, NULL);
    EQ(wh[0], 0.575);
    EQ(wh[1], -0.575);
    EQ(wh[2], 0.575);
    EQ(wh[3], -0.575);
    float g[4] = {1, 2, 3, 4}, ds = 0;
    quant_backward(TRAIN_Q_BINARY, 1, 0, w, g, 1, 4, &s, NULL, &ds, NULL);
    /* |w/s| = 2.6 > 1 for the third weight: no gradient there */
    EQ(g[0], 1);
    EQ(g[1], 2);
    EQ(g[2], 0);
    EQ(g[3], 4);
    EQ(ds, (1 - 2 + 3 - 4) / 2.0); /* sum(sign(w) g) / sqrt(numel) */
}

static void test_seq2(void)
{
    float w[5] = {0.1f, 0.3f, -0.6f, 2.0f, -0.05f}, s = 1.0f, wh[5];
    quant_forward(TRAIN_Q_SEQ, 2, 0, w, wh, 1, 5, &s, NULL);
    float want[5] = {0.25f, 0.25f, -0.75f, 0.75f, -0.25f};
    for (int i = 0; i < 5; i++) EQ(wh[i], want[i]);
    float g[5] = {1, 1, 1, 1, 1}, ds = 0;
    quant_backward(TRAIN_Q_SEQ, 2, 0, w, g, 1, 5, &s, NULL, &ds, NULL);
    EQ(g[3], 0); /* clipped */
    EQ(g[0], 1);
    /* inside: Q(q) - q; outside: Q(q) */
    EQ(ds, (0.15 - 0.05 - 0.15 + 0.75 - 0.2) / sqrt(5.0));
    float w2[3] = {-0.9f, 0.1f, 0.4f}, s2;
    quant_init(TRAIN_Q_SEQ, 2, 0, w2, 1, 3, &s2, NULL);
    EQ(s2, 0.9); /* max |w| */
    /* four levels, no zero */
    for (int c = -2; c <= 1; c++) CU_ASSERT(quant_dequant(TRAIN_Q_SEQ, 2, c, 1.0f, 0) != 0.0f);
}

static void test_ternary(void)
{
    float w[4] = {0.2f, 0.4f, -0.5f, -1.2f}, s = 1.0f, wh[4];
    quant_forward(TRAIN_Q_TERNARY, 2, 0, w, wh, 1, 4, &s, NULL);
    EQ(wh[0], 0);
    EQ(wh[1], 2.0 / 3);
    EQ(wh[2], -2.0 / 3);
    EQ(wh[3], -2.0 / 3);
    CU_ASSERT_EQUAL(quant_code(TRAIN_Q_TERNARY, 2, 0.4f, 1.0f, 0), 1);
}

static void test_lsq3(void)
{
    float w[6] = {0.1f, 0.3f, -0.8f, 2.5f, -3.0f, 0.25f}, s = 0.5f, wh[6];
    quant_forward(TRAIN_Q_LSQ, 3, 0, w, wh, 1, 6, &s, NULL);
    /* q = w/s = .2 .6 -1.6 5 -6 .5 -> round (ties to even) and clamp to [-4, 3] */
    float want[6] = {0, 0.5f, -1.0f, 1.5f, -2.0f, 0};
    for (int i = 0; i < 6; i++) EQ(wh[i], want[i]);
    float g[6] = {1, 1, 1, 1, 1, 1}, ds = 0;
    quant_backward(TRAIN_Q_LSQ, 3, 0, w, g, 1, 6, &s, NULL, &ds, NULL);
    EQ(g[3], 0);
    EQ(g[4], 0);
    EQ(g[5], 1);
    EQ(ds, (-0.2 + 0.4 - 0.4 + 3 - 4 - 0.5) / sqrt(6.0 * 3.0));
    float s8;
    quant_init(TRAIN_Q_LSQ, 8, 0, w, 1, 6, &s8, NULL);
    EQ(s8, 3.0 / 127); /* max|w| / (2^(b-1) - 1) */
    CU_ASSERT_EQUAL(quant_code(TRAIN_Q_LSQ, 8, 1e9f, 0.01f, 0), 127);
    CU_ASSERT_EQUAL(quant_code(TRAIN_Q_LSQ, 8, -1e9f, 0.01f, 0), -128);
}

static void test_asym(void)
{
    float w[4] = {0.0f, 0.3f, -0.2f, 0.4f}, s[2], z[2], wh[4];
    quant_init(TRAIN_Q_ASYM, 2, 2, w, 1, 4, s, z);
    EQ(s[0], 0.1);
    EQ(z[0], 0);
    EQ(s[1], 0.2);
    EQ(z[1], 1);
    quant_forward(TRAIN_Q_ASYM, 2, 2, w, wh, 1, 4, s, z);
    EQ(wh[0], 0);
    EQ(wh[1], 0.3);
    EQ(wh[2], -0.2);
    EQ(wh[3], 0.4);
    /* out of range on both sides */
    float w2[2] = {0.5f, -0.3f}, s2 = 0.1f, z2 = 1.0f, g[2] = {1, 1}, ds = 0, dz = 0;
    quant_forward(TRAIN_Q_ASYM, 2, 0, w2, wh, 1, 2, &s2, &z2);
    EQ(wh[0], 0.2);
    EQ(wh[1], -0.1);
    quant_backward(TRAIN_Q_ASYM, 2, 0, w2, g, 1, 2, &s2, &z2, &ds, &dz);
    EQ(g[0], 0);
    EQ(g[1], 0);
    EQ(ds, (3 - 1) + (0 - 1));
    EQ(dz, -0.2);
    /* inside: dw passes, dz is 0, ds = (q - z) - w/s */
    float w3 = 0.12f, g3 = 2.0f, ds3 = 0, dz3 = 0;
    quant_backward(TRAIN_Q_ASYM, 2, 0, &w3, &g3, 1, 1, &s2, &z2, &ds3, &dz3);
    EQ(g3, 2);
    EQ(dz3, 0);
    CU_ASSERT_DOUBLE_EQUAL(ds3, 2.0 * ((2 - 1) - 1.2), 1e-5);
}

/* The zero point the forward uses is round(clamp(z, 0, 2^b - 1)) (EfficientQAT's range, the
 * one b-bit zeros in storage hold); the STE passes through its clamp and rounding. */
static void test_asym_zero_range(void)
{
    /* 2 bits: codes and zero points 0..3; ties round to even */
    struct { float z, zr; } zs[] = {{-7.0f, 0}, {-0.7f, 0}, {-0.5f, 0}, {0.0f, 0}, {0.5f, 0},
                                   {1.5f, 2},  {2.5f, 2},  {3.0f, 3},  {3.4f, 3}, {3.6f, 3},
                                   {5.0f, 3},  {6.0f, 3},  {1e9f, 3}};
    for (size_t i = 0; i < sizeof zs / sizeof zs[0]; i++) {
        /* the level of code c is c - zr */
        EQ(quant_dequant(TRAIN_Q_ASYM, 2, 0, 1.0f, zs[i].z), -zs[i].zr);
        EQ(quant_dequant(TRAIN_Q_ASYM, 2, 3, 0.5f, zs[i].z), 0.5 * (3 - zs[i].zr));
        /* w = 0 sits at code zr */
        CU_ASSERT_EQUAL(quant_code(TRAIN_Q_ASYM, 2, 0.0f, 0.1f, zs[i].z), (int)zs[i].zr);
    }
    /* 8 bits: 0..255 */
    EQ(quant_dequant(TRAIN_Q_ASYM, 8, 0, 1.0f, 300.0f), -255);
    EQ(quant_dequant(TRAIN_Q_ASYM, 8, 0, 1.0f, -3.0f), 0);
    /* forward and backward with z above the range: zr = 3 (it was 5 before the clamp to 0..3) */
    float w[3] = {0.05f, -0.12f, -0.45f}, s = 0.1f, z = 5.0f, wh[3];
    quant_forward(TRAIN_Q_ASYM, 2, 0, w, wh, 1, 3, &s, &z);
    /* round(w/s) + 3 = 3 (0.5 ties to 0), 2, -1 -> clamped to 0 */
    EQ(wh[0], 0.0);
    EQ(wh[1], -0.1);
    EQ(wh[2], -0.3);
    float g[3] = {1, 2, 4}, ds = 0, dz = 0;
    quant_backward(TRAIN_Q_ASYM, 2, 0, w, g, 1, 3, &s, &z, &ds, &dz);
    EQ(g[0], 1);
    EQ(g[1], 2);
    EQ(g[2], 0);
    CU_ASSERT_DOUBLE_EQUAL(ds, 1 * (0 - 0.5) + 2 * (-1 + 1.2) + 4 * (-3), 1e-5);
    EQ(dz, 4 * -0.1); /* straight through the clamp of z: -s where the code is clamped */
    /* and below it: z = -2 acts as 0 */
    float w2[2] = {0.31f, -0.05f}, z2 = -2.0f;
    quant_forward(TRAIN_Q_ASYM, 2, 0, w2, wh, 1, 2, &s, &z2);
    EQ(wh[0], 0.3);
    EQ(wh[1], 0.0); /* round(-0.5) = 0 (even) */
    float w3 = -0.2f, g3 = 1.0f, ds3 = 0, dz3 = 0;
    quant_backward(TRAIN_Q_ASYM, 2, 0, &w3, &g3, 1, 1, &s, &z2, &ds3, &dz3);
    EQ(g3, 0);
    EQ(dz3, -0.1);
    CU_ASSERT_DOUBLE_EQUAL(ds3, 0.0, 1e-6); /* clamped to code 0 = level 0 */
}

/* Integer codes times scales reproduce the fake-quantized weights bit for bit, and codes
 * stay in their ranges: the export is exact. */
static void test_codes_roundtrip(void)
{
    uint64_t st = 99;
    enum { R = 3, C = 16 };
    float w[R * C], wh[R * C], s[R * 4], z[R * 4];
    for (int i = 0; i < R * C; i++) w[i] = 0.05f * train_rng_normal(&st);
    struct { train_quantizer k; int bits, group, lo, hi; } cases[] = {
        {TRAIN_Q_BINARY, 1, 0, -1, 1}, {TRAIN_Q_SEQ, 2, 0, -2, 1}, {TRAIN_Q_TERNARY, 2, 0, -1, 1},
        {TRAIN_Q_LSQ, 3, 0, -4, 3},    {TRAIN_Q_LSQ, 6, 0, -32, 31}, {TRAIN_Q_LSQ, 8, 0, -128, 127},
        {TRAIN_Q_ASYM, 4, 4, 0, 15},   {TRAIN_Q_ASYM, 3, 0, 0, 7},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int G = cases[k].group ? cases[k].group : C, ng = C / G;
        quant_init(cases[k].k, cases[k].bits, cases[k].group, w, R, C, s, z);
        quant_forward(cases[k].k, cases[k].bits, cases[k].group, w, wh, R, C, s,
                      cases[k].k == TRAIN_Q_ASYM ? z : NULL);
        int bad = 0, distinct_nonzero = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                int si = r * ng + c / G;
                float zz = cases[k].k == TRAIN_Q_ASYM ? z[si] : 0;
                int code = quant_code(cases[k].k, cases[k].bits, w[r * C + c], s[si], zz);
                if (code < cases[k].lo || code > cases[k].hi) bad++;
                if (quant_dequant(cases[k].k, cases[k].bits, code, s[si], zz) != wh[r * C + c]) bad++;
                if (wh[r * C + c] != 0) distinct_nonzero++;
            }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT(distinct_nonzero > 0);
    }
}

/* ---- fixed codes ------------------------------------------------------------------------ */

static uint8_t byte_of(int code) { return (uint8_t)code; }

/* A row subset (EfQAT's frozen rows) dequantizes exactly as the whole matrix does on those rows
 * and writes no other row: asym groups of 2 (zero points per group) and lsq per row. */
static void test_codes_rows_subset(void)
{
    enum { R = 5, C = 4 };
    uint8_t codes[R * C];
    float s[R * 2], z[R * 2], full[R * C], sub[R * C];
    for (int i = 0; i < R * C; i++) codes[i] = (uint8_t)((i * 7) % 4);
    for (int i = 0; i < R * 2; i++) s[i] = 0.1f * (float)(i + 1), z[i] = 0.5f * (float)(i % 4);
    const int32_t rows[] = {1, 3, 4};
    for (int q = 0; q < 2; q++) {
        train_quantizer k = q ? TRAIN_Q_ASYM : TRAIN_Q_LSQ;
        int group = q ? 2 : 0;
        quant_forward_codes(k, 2, group, codes, s, q ? z : NULL, full, R, C);
        for (int i = 0; i < R * C; i++) sub[i] = -99.0f;
        quant_forward_codes_rows(k, 2, group, codes, s, q ? z : NULL, sub, C, rows, 3);
        for (int r = 0; r < R; r++) {
            int in = r == 1 || r == 3 || r == 4;
            for (int c = 0; c < C; c++) CU_ASSERT_EQUAL(sub[r * C + c], in ? full[r * C + c] : -99.0f);
        }
    }
}

/* Hand values: w_hat = level(code) s with the codes stored as bytes; ds = gscale sum g level. */
static void test_codes_hand(void)
{
    /* lsq 3 bits: codes -4 3 0 1 */
    uint8_t c[4] = {byte_of(-4), byte_of(3), byte_of(0), byte_of(1)};
    float s = 0.5f, wh[4], g[4] = {1, 2, 3, 4}, ds = 0.25f;
    CU_ASSERT_EQUAL(quant_code_from_byte(TRAIN_Q_LSQ, c[0]), -4);
    quant_forward_codes(TRAIN_Q_LSQ, 3, 0, c, &s, NULL, wh, 1, 4);
    EQ(wh[0], -2);
    EQ(wh[1], 1.5);
    EQ(wh[2], 0);
    EQ(wh[3], 0.5);
    quant_backward_codes(TRAIN_Q_LSQ, 3, 0, g, c, NULL, &ds, 1, 4, quant_gscale(TRAIN_Q_LSQ, 3, 4));
    EQ(ds, 0.25 + (-4 + 6 + 0 + 4) / sqrt(4.0 * 3)); /* accumulates */
    EQ(g[0], 1); /* the gradient w.r.t. w_hat is left alone */
    /* seq: codes -2..1 are levels -3/4 .. 3/4; ternary -1..1 are -2/3 .. 2/3 */
    uint8_t cs[4] = {byte_of(-2), byte_of(-1), byte_of(0), byte_of(1)};
    s = 2.0f;
    quant_forward_codes(TRAIN_Q_SEQ, 2, 0, cs, &s, NULL, wh, 1, 4);
    EQ(wh[0], -1.5);
    EQ(wh[1], -0.5);
    EQ(wh[2], 0.5);
    EQ(wh[3], 1.5);
    ds = 0;
    quant_backward_codes(TRAIN_Q_SEQ, 2, 0, g, cs, NULL, &ds, 1, 4, quant_gscale(TRAIN_Q_SEQ, 2, 4));
    EQ(ds, (-0.75 - 0.5 + 0.75 + 3) / 2.0);
    quant_forward_codes(TRAIN_Q_TERNARY, 2, 0, cs + 1, &s, NULL, wh, 1, 3);
    EQ(wh[0], -4.0 / 3);
    EQ(wh[1], 0);
    EQ(wh[2], 4.0 / 3);
    uint8_t cb[2] = {byte_of(-1), byte_of(1)};
    quant_forward_codes(TRAIN_Q_BINARY, 1, 0, cb, &s, NULL, wh, 1, 2);
    EQ(wh[0], -2);
    EQ(wh[1], 2);
    /* asym 2 bits, groups of 2: z 1.4 -> 1, z 5 -> 3 (clamped); no gradient scale */
    uint8_t ca[4] = {0, 3, 1, 2};
    float sa[2] = {0.1f, 0.2f}, za[2] = {1.4f, 5.0f}, ga[4] = {1, 1, 2, 1}, dsa[2] = {0, 0};
    quant_forward_codes(TRAIN_Q_ASYM, 2, 2, ca, sa, za, wh, 1, 4);
    EQ(wh[0], -0.1);
    EQ(wh[1], 0.2);
    EQ(wh[2], -0.4);
    EQ(wh[3], -0.2);
    CU_ASSERT_EQUAL(quant_gscale(TRAIN_Q_ASYM, 2, 4), 1.0f);
    quant_backward_codes(TRAIN_Q_ASYM, 2, 2, ga, ca, za, dsa, 1, 4, 1.0f);
    EQ(dsa[0], -1 + 2);
    EQ(dsa[1], 2 * -2 + 1 * -1);
    EQ(za[0], 1.4f); /* z is not a parameter of this mode */
    CU_ASSERT_EQUAL(quant_code_from_byte(TRAIN_Q_ASYM, 255), 255);
}

typedef struct { train_quantizer k; int bits, group; } qcase;
static const qcase code_cases[] = {
    {TRAIN_Q_BINARY, 1, 0}, {TRAIN_Q_TERNARY, 2, 0}, {TRAIN_Q_SEQ, 2, 0}, {TRAIN_Q_LSQ, 3, 0},
    {TRAIN_Q_LSQ, 8, 0},    {TRAIN_Q_ASYM, 3, 0},    {TRAIN_Q_ASYM, 2, 4}, {TRAIN_Q_ASYM, 8, 8},
};

/* A random [R, C] matrix, its scales (init, then perturbed so they are not init's) and the
 * codes of quant_code as bytes. */
enum { CR = 5, CC = 16 };
static void code_setup(const qcase *q, uint64_t seed, float *w, float *s, float *z, uint8_t *codes)
{
    uint64_t st = seed;
    for (int i = 0; i < CR * CC; i++) w[i] = 0.05f * train_rng_normal(&st);
    quant_init(q->k, q->bits, q->group, w, CR, CC, s, z);
    int G = q->group ? q->group : CC, ng = CC / G;
    for (int i = 0; i < CR * ng; i++) {
        s[i] *= 0.8f + 0.1f * (float)(i % 5);
        if (q->k == TRAIN_Q_ASYM) z[i] += 0.3f * train_rng_normal(&st);
    }
    for (int i = 0; i < CR * CC; i++) {
        int si = (i / CC) * ng + (i % CC) / G;
        codes[i] = (uint8_t)quant_code(q->k, q->bits, w[i], s[si], q->k == TRAIN_Q_ASYM ? z[si] : 0);
    }
}

/* The fixed-code forward gives quant_forward's values for the weights' own codes (compared
 * with ==: quant_forward may give -0 where a code's level is +0). */
static void test_codes_forward_is_quant_forward(void)
{
    for (size_t k = 0; k < sizeof code_cases / sizeof code_cases[0]; k++) {
        const qcase *q = &code_cases[k];
        float w[CR * CC], s[CR * CC], z[CR * CC], a[CR * CC], b[CR * CC];
        uint8_t codes[CR * CC];
        code_setup(q, 11 + k, w, s, z, codes);
        const float *zz = q->k == TRAIN_Q_ASYM ? z : NULL;
        quant_forward(q->k, q->bits, q->group, w, a, CR, CC, s, zz);
        quant_forward_codes(q->k, q->bits, q->group, codes, s, zz, b, CR, CC);
        int bad = 0;
        for (int i = 0; i < CR * CC; i++)
            if (a[i] != b[i] && bad++ < 3) fprintf(stderr, "case %zu [%d]: %.9g %.9g code %d\n", k, i, a[i], b[i], (int8_t)codes[i]);
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* ds from the fixed-code backward = gscale x the finite difference of sum(g w_hat) in each
 * step size, codes fixed; no other step size moves the loss. */
static void test_codes_backward_finite_differences(void)
{
    for (size_t k = 0; k < sizeof code_cases / sizeof code_cases[0]; k++) {
        const qcase *q = &code_cases[k];
        float w[CR * CC], s[CR * CC], z[CR * CC], g[CR * CC], wh[CR * CC], ds[CR * CC] = {0};
        uint8_t codes[CR * CC];
        code_setup(q, 21 + k, w, s, z, codes);
        uint64_t st = 5 + k;
        for (int i = 0; i < CR * CC; i++) g[i] = train_rng_normal(&st);
        const float *zz = q->k == TRAIN_Q_ASYM ? z : NULL;
        int ns = CR * (CC / (q->group ? q->group : CC));
        float gs = quant_gscale(q->k, q->bits, CR * CC);
        quant_backward_codes(q->k, q->bits, q->group, g, codes, zz, ds, CR, CC, gs);
        int bad = 0;
        for (int j = 0; j < ns; j++) {
            double f[2];
            float s0 = s[j], h = 0.01f * s0;
            for (int e = 0; e < 2; e++) {
                s[j] = s0 + (e ? -h : h);
                quant_forward_codes(q->k, q->bits, q->group, codes, s, zz, wh, CR, CC);
                f[e] = 0;
                for (int i = 0; i < CR * CC; i++) f[e] += (double)g[i] * wh[i];
                s[j] = s0;
            }
            double fd = (f[0] - f[1]) / (2.0 * (double)h) * gs;
            if (fabs(ds[j] - fd) > 1e-4 * (fabs(fd) + gs)) {
                bad++;
                fprintf(stderr, "case %zu scale %d: ds %g, finite difference %g\n", k, j, ds[j], fd);
            }
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
}

/* The gradient scale is the STE path's: where every weight is clamped, quant_backward's ds is
 * sum g level too (no rounding-error term), and the two agree. */
static void test_codes_gscale_is_ste(void)
{
    for (size_t k = 0; k < sizeof code_cases / sizeof code_cases[0]; k++) {
        const qcase *q = &code_cases[k];
        float w[CR * CC], s[CR * CC], z[CR * CC], g[CR * CC], g2[CR * CC], a[CR * CC] = {0}, b[CR * CC] = {0};
        float dz[CR * CC] = {0};
        uint8_t codes[CR * CC];
        code_setup(q, 31 + k, w, s, z, codes);
        uint64_t st = 7 + k;
        int G = q->group ? q->group : CC, ng = CC / G;
        for (int i = 0; i < CR * CC; i++) {
            g[i] = g2[i] = train_rng_normal(&st);
            w[i] = (i % 2 ? 1 : -1) * 1000.0f * s[(i / CC) * ng + (i % CC) / G]; /* far outside */
            codes[i] = (uint8_t)quant_code(q->k, q->bits, w[i], s[(i / CC) * ng + (i % CC) / G],
                                           q->k == TRAIN_Q_ASYM ? z[(i / CC) * ng + (i % CC) / G] : 0);
        }
        const float *zz = q->k == TRAIN_Q_ASYM ? z : NULL;
        quant_backward(q->k, q->bits, q->group, w, g, CR, CC, s, zz, a, zz ? dz : NULL);
        quant_backward_codes(q->k, q->bits, q->group, g2, codes, zz, b, CR, CC,
                             quant_gscale(q->k, q->bits, CR * CC));
        for (int j = 0; j < CR * ng; j++) {
            if (!(fabs(a[j] - b[j]) <= 1e-5 * (fabs(a[j]) + 1e-3))) fprintf(stderr, "case %zu scale %d: %g %g\n", k, j, a[j], b[j]);
            CU_ASSERT_DOUBLE_EQUAL(a[j], b[j], 1e-5 * (fabs(a[j]) + 1e-3));
        }
    }
}

/* quant_backward_rows: the listed rows exactly as quant_backward (the whole matrix's gradient
 * scale), the other rows' gradients, step sizes and zero points untouched. */
static void test_backward_rows(void)
{
    for (size_t k = 0; k < sizeof code_cases / sizeof code_cases[0]; k++) {
        const qcase *q = &code_cases[k];
        float w[CR * CC], s[CR * CC], z[CR * CC], g[CR * CC], g2[CR * CC], g0[CR * CC];
        float a[CR * CC], b[CR * CC], dza[CR * CC], dzb[CR * CC];
        uint8_t codes[CR * CC];
        code_setup(q, 57 + k, w, s, z, codes);
        uint64_t st = 3 + k;
        for (int i = 0; i < CR * CC; i++) {
            g[i] = g2[i] = g0[i] = train_rng_normal(&st);
            a[i] = b[i] = dza[i] = dzb[i] = 0.5f;
        }
        const float *zz = q->k == TRAIN_Q_ASYM ? z : NULL;
        const int32_t list[2] = {1, 3};
        quant_backward(q->k, q->bits, q->group, w, g, CR, CC, s, zz, a, zz ? dza : NULL);
        quant_backward_rows(q->k, q->bits, q->group, w, g2, CR, CC, s, zz, b, zz ? dzb : NULL, list, 2);
        int G = q->group ? q->group : CC, ng = CC / G;
        for (int r = 0; r < CR; r++) {
            int listed = r == 1 || r == 3;
            CU_ASSERT_EQUAL(memcmp(g2 + r * CC, (listed ? g : g0) + r * CC, CC * sizeof(float)), 0);
            for (int j = r * ng; j < (r + 1) * ng; j++) {
                CU_ASSERT(b[j] == (listed ? a[j] : 0.5f));
                CU_ASSERT(dzb[j] == (listed ? dza[j] : 0.5f));
            }
        }
    }
}

/* The frozen-row rule from a linear's output: gscale sum_n dY Y / s equals the fixed-code ds
 * of the full weight gradient dW = dY^T X, for Y = X w_hat^T (relative 1e-5). */
static void test_ds_from_output(void)
{
    enum { N = 64, C = 48, R = 20 };
    static float X[N * C], dY[N * R], Y[N * R], wh[R * C], dW[R * C], w[R * C];
    float s[R], z[R];
    uint8_t codes[R * C];
    const qcase kinds[] = {{TRAIN_Q_BINARY, 1, 0}, {TRAIN_Q_TERNARY, 2, 0}, {TRAIN_Q_SEQ, 2, 0},
                           {TRAIN_Q_LSQ, 4, 0}, {TRAIN_Q_ASYM, 3, 0}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const qcase *q = &kinds[k];
        uint64_t st = 41 + k;
        for (int i = 0; i < N * C; i++) X[i] = train_rng_normal(&st);
        for (int i = 0; i < N * R; i++) dY[i] = train_rng_normal(&st);
        for (int i = 0; i < R * C; i++) w[i] = 0.05f * train_rng_normal(&st);
        quant_init(q->k, q->bits, 0, w, R, C, s, z);
        for (int i = 0; i < R * C; i++) codes[i] = (uint8_t)quant_code(q->k, q->bits, w[i], s[i / C], z[i / C]);
        const float *zz = q->k == TRAIN_Q_ASYM ? z : NULL;
        quant_forward_codes(q->k, q->bits, 0, codes, s, zz, wh, R, C);
        layer_matmul_forward(Y, X, wh, N, C, R);
        memset(dW, 0, sizeof dW);
        layer_matmul_backward(NULL, dW, dY, X, wh, N, C, R);
        float gs = quant_gscale(q->k, q->bits, R * C), a[R] = {0}, b[R];
        for (int r = 0; r < R; r++) b[r] = 1.0f; /* accumulates */
        quant_backward_codes(q->k, q->bits, 0, dW, codes, zz, a, R, C, gs);
        quant_ds_from_output(b, dY, Y, NULL, s, N, R, gs);
        /* relative to the size of the summed terms: the float sums (GEMM, quant_backward_codes)
         * round at that scale; a row's sum itself may nearly cancel */
        double worst = 0;
        for (int r = 0; r < R; r++) {
            double mag = 0;
            for (int n = 0; n < N; n++) mag += fabs((double)dY[n * R + r] * Y[n * R + r]) / s[r];
            double rel = fabs((b[r] - 1.0) - a[r]) / (gs * mag);
            if (rel > worst) worst = rel;
        }
        if (worst > 1e-6) fprintf(stderr, "case %zu: relative difference %g\n", k, worst);
        CU_ASSERT(worst <= 1e-5); /* measured about 1e-7 */
    }
}

/* quant_ds_from_output is each row's sum over n in order, in double, bit for bit, at any
 * thread count (rows over several chunks and a ragged last one); with Ysub, of Y - Ysub
 * rounded to float (the residual add undone as a separate pass would). */
static void test_ds_from_output_exact(void)
{
    enum { N = 37, R = 301 };
    static float dY[N * R], Y[N * R], Yb[N * R], s[R], ref[2][R], got[R];
    uint64_t st = 77;
    for (int i = 0; i < N * R; i++)
        dY[i] = train_rng_normal(&st), Y[i] = train_rng_normal(&st), Yb[i] = train_rng_normal(&st);
    for (int r = 0; r < R; r++) s[r] = 0.01f + 0.1f * fabsf(train_rng_normal(&st));
    float gs = 0.37f;
    for (int v = 0; v < 2; v++)
        for (int r = 0; r < R; r++) {
            double acc = 0;
            for (int n = 0; n < N; n++) {
                float y = v ? Y[n * R + r] - Yb[n * R + r] : Y[n * R + r];
                acc += (double)dY[n * R + r] * (double)y;
            }
            ref[v][r] = (float)r + (float)((double)gs * (acc / (double)s[r]));
        }
    int threads = omp_get_max_threads();
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        for (int v = 0; v < 2; v++) {
            for (int r = 0; r < R; r++) got[r] = (float)r;
            quant_ds_from_output(got, dY, Y, v ? Yb : NULL, s, N, R, gs);
            CU_ASSERT_EQUAL(memcmp(got, ref[v], sizeof got), 0);
        }
    }
    omp_set_num_threads(threads);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_binary);
    TU_ADD(s, test_ds_from_output_exact);
    TU_ADD(s, test_backward_rows);
    TU_ADD(s, test_seq2);
    TU_ADD(s, test_ternary);
    TU_ADD(s, test_lsq3);
    TU_ADD(s, test_asym);
    TU_ADD(s, test_asym_zero_range);
    TU_ADD(s, test_codes_roundtrip);
    TU_ADD(s, test_codes_hand);
    TU_ADD(s, test_codes_rows_subset);
    TU_ADD(s, test_codes_forward_is_quant_forward);
    TU_ADD(s, test_codes_backward_finite_differences);
    TU_ADD(s, test_codes_gscale_is_ste);
    TU_ADD(s, test_ds_from_output);
}

int main(void) { return tu_main("quant", add); }
