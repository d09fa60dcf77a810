/*
 * Rolling rank filter over frames with a narrow band of counts per pixel.
 *
 * Part of dcbg's compiled kernels; used by _rolling_median.pyx. Plain C so
 * that the per-frame loop over pixels is vectorised by the compiler
 * (`restrict` pointers and compile-time array strides).
 *
 * For every pixel the state is the current rank value m, the number c of
 * window elements below m, the number e equal to m, and the counts of
 * BAND_WIDTH grey levels base .. base + BAND_WIDTH - 1 around m. Sliding
 * the window by one frame updates c, e and the band with compares only,
 * for all pixels of a block at once, and moves m by at most one level
 * (the common case for noisy images). Pixels whose rank value has to move
 * further are fixed one by one; if m leaves the band, the pixel's window
 * is counted again and the band centred on the new m.
 *
 * Counting a window costs O(k). When that happens too often in a block
 * (data whose median drifts fast or jumps), band_rolling_rank stops and
 * reports the frame it reached, and the caller finishes the block with the
 * full 256-bin histogram kernel, which is O(1) per pixel and frame for any
 * data.
 *
 * Counts are uint8: 1 <= k <= BAND_MAX_K.
 */
#ifndef DCBG_BAND_RANK_H
#define DCBG_BAND_RANK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

/* pixels processed together (state of a block: ~3.3 KiB, in L1 cache) */
#define BAND_PIXELS 256
/* grey levels counted around the rank value; measured with 8 and 16 on
 * 80x320 noisy frames: same speed, 8 leaves the band in 0.03 % of steps */
#define BAND_WIDTH 8
/* largest window whose counts fit uint8 */
#define BAND_MAX_K 255
/* frames between checks whether recounting costs more than it saves */
#define BAND_CHECK_FRAMES 64

typedef struct {
    uint8_t m[BAND_PIXELS];      /* rank value */
    uint8_t c[BAND_PIXELS];      /* window elements below m */
    uint8_t e[BAND_PIXELS];      /* window elements equal to m */
    uint8_t base[BAND_PIXELS];   /* lowest grey level in the band */
    uint8_t flag[BAND_PIXELS + 8]; /* pixel needs a fix; padded for 8-byte reads */
    uint8_t band[BAND_WIDTH * BAND_PIXELS]; /* band[b * BAND_PIXELS + j] */
} band_state;

/* Count the window of pixel j (column px) that starts at frame `first`;
 * set its rank value and counts, and place the band around the rank value:
 * centred (shift 0), or with room upwards (shift > 0) or downwards
 * (shift < 0) when the rank value just left the band that way. */
static void band_count_window(band_state *restrict s, const uint8_t *restrict stack,
                              ptrdiff_t n_pixels, ptrdiff_t first, ptrdiff_t k,
                              ptrdiff_t rank, ptrdiff_t px, ptrdiff_t j, int shift)
{
    /* fine histogram and one of 16 coarse bins: at most 32 steps to the rank */
    int32_t fine[256], coarse[16];
    memset(fine, 0, sizeof(fine));
    memset(coarse, 0, sizeof(coarse));
    const uint8_t *p = stack + first * n_pixels + px;
    for (ptrdiff_t f = 0; f < k; f++) {
        uint8_t v = p[f * n_pixels];
        fine[v]++;
        coarse[v >> 4]++;
    }
    ptrdiff_t v = 0, below = 0;
    while (below + coarse[v >> 4] <= rank) {
        below += coarse[v >> 4];
        v += 16;
    }
    while (below + fine[v] <= rank) {
        below += fine[v];
        v++;
    }
    ptrdiff_t base = v - (shift > 0 ? 1 : shift < 0 ? BAND_WIDTH - 2 : BAND_WIDTH / 2);
    if (base < 0)
        base = 0;
    if (base > 256 - BAND_WIDTH)
        base = 256 - BAND_WIDTH;
    s->m[j] = (uint8_t)v;
    s->c[j] = (uint8_t)below;
    s->e[j] = (uint8_t)fine[v];
    s->base[j] = (uint8_t)base;
    for (int b = 0; b < BAND_WIDTH; b++)
        s->band[b * BAND_PIXELS + j] = (uint8_t)fine[base + b];
}

/* Move the rank value of pixel j until c <= rank < c + e holds again.
 * Returns 1 if the window had to be counted again, else 0. */
static int band_fix(band_state *restrict s, const uint8_t *restrict stack,
                    ptrdiff_t n_pixels, ptrdiff_t first, ptrdiff_t k,
                    ptrdiff_t rank, ptrdiff_t px, ptrdiff_t j)
{
    ptrdiff_t m = s->m[j], c = s->c[j], e = s->e[j], base = s->base[j];
    int shift = m < base ? -1 : 1;
    if (m < base || m >= base + BAND_WIDTH)
        goto recount;
    if (c > rank) {
        while (c > rank) {
            m--;
            if (m < base) {
                shift = -1;
                goto recount;
            }
            c -= s->band[(m - base) * BAND_PIXELS + j];
        }
    } else {
        while (c + e <= rank) {
            c += e;
            m++;
            if (m >= base + BAND_WIDTH) {
                shift = 1;
                goto recount;
            }
            e = s->band[(m - base) * BAND_PIXELS + j];
        }
    }
    s->m[j] = (uint8_t)m;
    s->c[j] = (uint8_t)c;
    s->e[j] = s->band[(m - base) * BAND_PIXELS + j];
    return 0;
recount:
    band_count_window(s, stack, n_pixels, first, k, rank, px, j, shift);
    return 1;
}

/* Slide the windows of all pixels of the block by one frame: frame `leave`
 * leaves, frame `enter` enters. Returns nonzero if any pixel needs a fix. */
static uint8_t band_slide(band_state *restrict s, const uint8_t *restrict enter,
                          const uint8_t *restrict leave, ptrdiff_t nb, uint8_t rank)
{
    uint8_t any = 0;
    for (ptrdiff_t j = 0; j < nb; j++) {
        uint8_t vi = enter[j], vo = leave[j], m = s->m[j], base = s->base[j];
        uint8_t c = s->c[j] + (uint8_t)(vi < m) - (uint8_t)(vo < m);
        uint8_t e = s->e[j] + (uint8_t)(vi == m) - (uint8_t)(vo == m);
        /* band positions; values outside the band wrap to >= BAND_WIDTH */
        uint8_t bin_in = vi - base, bin_out = vo - base;
        /* one step down or up, taken branch-free for all pixels */
        uint8_t down = c > rank;
        uint8_t up = (uint8_t)(c + e) <= rank;
        uint8_t target = (uint8_t)(m - base + up - down);
        uint8_t e_new = 0;
        for (int b = 0; b < BAND_WIDTH; b++) {
            uint8_t count = s->band[b * BAND_PIXELS + j] + (uint8_t)(bin_in == b)
                            - (uint8_t)(bin_out == b);
            s->band[b * BAND_PIXELS + j] = count;
            e_new |= count & (uint8_t)-(uint8_t)(target == b);
        }
        c = c + (e & (uint8_t)-up) - (e_new & (uint8_t)-down);
        s->m[j] = (uint8_t)(m + up - down);
        s->c[j] = c;
        s->e[j] = e_new;
        /* left the band, or one step was not enough */
        uint8_t flag = (target >= BAND_WIDTH) | (c > rank) | ((uint8_t)(c + e_new) <= rank);
        s->flag[j] = flag;
        any |= flag;
    }
    return any;
}

/*
 * Rolling rank of the pixels pix_start .. pix_start + nb - 1 (nb <=
 * BAND_PIXELS) of a (n_frames, n_pixels) stack: out[i, p] is the element at
 * sorted position `rank` of stack[i:i + k, p] for i in [0, n_frames - k].
 * Requires 1 <= k <= BAND_MAX_K and 0 <= rank < k.
 *
 * Returns the number of output frames written: n_frames - k + 1, or fewer
 * if counting windows again became too expensive; the caller computes the
 * remaining frames another way.
 */
static ptrdiff_t band_rolling_rank(band_state *restrict s, const uint8_t *restrict stack,
                                   ptrdiff_t n_frames, ptrdiff_t n_pixels, ptrdiff_t k,
                                   ptrdiff_t rank, uint8_t *restrict out,
                                   ptrdiff_t pix_start, ptrdiff_t nb)
{
    ptrdiff_t n_out = n_frames - k + 1;
    ptrdiff_t recounts = 0;
    /* Hand over when, within BAND_CHECK_FRAMES frames, more than 8 / (k + 64)
     * of the pixel-frames needed a new count of their window: beyond that
     * the histogram tracker was faster (measured on drifting, random and
     * binary data; noisy RT-DC images stay far below, at ~0.03 %). */
    ptrdiff_t budget = 8 * BAND_CHECK_FRAMES * nb / (k + 64) + 1;
    memset(s->flag, 0, sizeof(s->flag));
    for (ptrdiff_t j = 0; j < nb; j++)
        band_count_window(s, stack, n_pixels, 0, k, rank, pix_start + j, j, 0);
    memcpy(out + pix_start, s->m, (size_t)nb);
    for (ptrdiff_t i = 1; i < n_out; i++) {
        if (i % BAND_CHECK_FRAMES == 0) {
            if (recounts > budget)
                return i;
            recounts = 0;
        }
        const uint8_t *enter = stack + (i + k - 1) * n_pixels + pix_start;
        const uint8_t *leave = stack + (i - 1) * n_pixels + pix_start;
        if (band_slide(s, enter, leave, nb, (uint8_t)rank)) {
            /* few pixels need a fix: skip eight clear flags at a time */
            for (ptrdiff_t w = 0; w < nb; w += 8) {
                uint64_t word;
                memcpy(&word, s->flag + w, 8);
                if (!word)
                    continue;
                for (ptrdiff_t j = w; j < w + 8 && j < nb; j++) {
                    if (s->flag[j])
                        recounts += band_fix(s, stack, n_pixels, i, k, rank, pix_start + j, j);
                }
            }
        }
        memcpy(out + i * n_pixels + pix_start, s->m, (size_t)nb);
    }
    return n_out;
}

#endif
