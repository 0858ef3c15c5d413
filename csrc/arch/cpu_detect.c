/* cpu_detect.c -- what the CPU is (vendor, family, model, caches), and the block sizes its
 * caches imply.
 *
 * Read once from cpuid: leaf 0 (vendor), leaf 1 (family, model, stepping), and the cache
 * descriptors of leaf 4 (Intel) or 0x8000001D (AMD, with the topology extensions). A CPU or
 * hypervisor that describes no data cache gets the caches of pb_cache_assumed below, and
 * says so (caches_known == 0). Off x86 there is no cpuid: vendor "" and assumed caches.
 *
 * pb_blocks_model turns caches into GEMM block sizes for a register tile, the analytical
 * model of T. M. Low, F. D. Igual, T. M. Smith and E. S. Quintana-Orti, "Analytical
 * modeling is enough for high-performance BLIS", ACM TOMS 43(2), 2016: the KC x NR B
 * micro-panel and an MR x KC A micro-panel share the L1 by ways, the MC x KC A block takes
 * the L2's ways that the B micro-panel leaves, the KC x NC B panel the L3's that the A
 * block leaves. Configurations without measured sizes use it (cpu_configs.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <string.h>

#include "arch/arch.h"
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PB_HAVE_CPUID 1
#else
#define PB_HAVE_CPUID 0
#endif

/* A 32 KiB 8-way L1d, a 512 KiB 8-way L2 and an 8 MiB 16-way L3, 64-byte lines: smaller
 * than or equal to those of every x86-64 core with AVX2, so that blocks fit. */
static const pb_cache_t pb_cache_assumed[3] = {
    {32768, 8, 64, 64}, {524288, 8, 64, 1024}, {8388608, 16, 64, 8192}};

static pb_cpuinfo_t g_info;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if PB_HAVE_CPUID
/* The deterministic cache parameters of leaf `leaf` (4 or 0x8000001D): one subleaf per
 * cache, type 0 ends the list. Keeps the data or unified caches of levels 1 to 3. */
static void read_caches(unsigned leaf, pb_cpuinfo_t *ci) {
    for (unsigned i = 0; i < 16; ++i) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        const unsigned type = a & 0x1f, level = (a >> 5) & 7;
        if (type == 0) break;
        if (type == 2) continue; /* instruction cache */
        pb_cache_t k;
        k.line = (int)(b & 0xfff) + 1;
        k.ways = (int)((b >> 22) & 0x3ff) + 1;
        k.sets = (int)c + 1;
        const ptrdiff_t parts = (ptrdiff_t)((b >> 12) & 0x3ff) + 1;
        k.size = (ptrdiff_t)k.ways * parts * k.line * k.sets;
        if (level == 1) ci->l1d = k;
        else if (level == 2) ci->l2 = k;
        else if (level == 3) ci->l3 = k;
    }
}

static void detect(pb_cpuinfo_t *ci) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    const unsigned max_leaf = a;
    memcpy(ci->vendor, &b, 4);
    memcpy(ci->vendor + 4, &d, 4);
    memcpy(ci->vendor + 8, &c, 4);
    ci->vendor[12] = '\0';
    if (max_leaf >= 1) {
        __cpuid(1, a, b, c, d);
        const int base_family = (int)((a >> 8) & 0xf), base_model = (int)((a >> 4) & 0xf);
        ci->family = base_family == 0xf ? base_family + (int)((a >> 20) & 0xff) : base_family;
        ci->model = base_family == 0x6 || base_family == 0xf
                        ? base_model + (int)(((a >> 16) & 0xf) << 4)
                        : base_model;
        ci->stepping = (int)(a & 0xf);
    }
    const unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    int topoext = 0;
    if (max_ext >= 0x80000001u) {
        __cpuid(0x80000001u, a, b, c, d);
        topoext = (c >> 22) & 1;
    }
    if (strcmp(ci->vendor, "GenuineIntel") == 0 && max_leaf >= 4)
        read_caches(4, ci);
    else if (topoext && max_ext >= 0x8000001Du)
        read_caches(0x8000001Du, ci);
}
#endif

static void init(void) {
#if PB_HAVE_CPUID
    detect(&g_info);
#endif
    g_info.caches_known = g_info.l1d.size > 0 && g_info.l2.size > 0;
    if (!g_info.caches_known) {
        g_info.l1d = pb_cache_assumed[0];
        g_info.l2 = pb_cache_assumed[1];
        g_info.l3 = pb_cache_assumed[2];
    }
}

const pb_cpuinfo_t *pb_cpuinfo(void) {
    (void)pthread_once(&g_once, init);
    return &g_info;
}

int pb_cpu_detect(char *vendor, int *fms, ptrdiff_t *caches) {
    const pb_cpuinfo_t *ci = pb_cpuinfo();
    memcpy(vendor, ci->vendor, sizeof ci->vendor);
    fms[0] = ci->family;
    fms[1] = ci->model;
    fms[2] = ci->stepping;
    fms[3] = ci->caches_known;
    const pb_cache_t *lv[3] = {&ci->l1d, &ci->l2, &ci->l3};
    for (int i = 0; i < 3; ++i) {
        caches[4 * i] = lv[i]->size;
        caches[4 * i + 1] = lv[i]->ways;
        caches[4 * i + 2] = lv[i]->line;
        caches[4 * i + 3] = lv[i]->sets;
    }
    return PB_OK;
}

/* ---- the analytical model ------------------------------------------------------------------
 * With S the element size and, per level, W ways of N sets of C-byte lines (one way holds
 * N*C bytes):
 *   L1: C_Ar = floor((W1 - 1) / (1 + NR/MR)) ways for the A micro-panel (the B micro-panel
 *       takes NR/MR times as many, one way is left for C): KC = C_Ar N1 C1 / (MR S).
 *   L2: C_Br = ceil(NR KC S / (N2 C2)) ways for the B micro-panel, C_Ac = W2 - 1 - C_Br for
 *       the A block: MC = C_Ac N2 C2 / (KC S), a multiple of MR.
 *   L3: C_Ac3 = ceil(MC KC S / (N3 C3)) for the A block, C_Bc = W3 - 1 - C_Ac3 for the B
 *       panel: NC = C_Bc N3 C3 / (KC S), a multiple of NR.
 * KC is rounded down to a multiple of 16 in [64, 1024], MC kept in [MR, 512], NC in [NR,
 * 8192] (4096 without an L3). */
static ptrdiff_t way_bytes(const pb_cache_t *c) { return (ptrdiff_t)c->sets * c->line; }

void pb_blocks_model(pb_blocks_t *b, int elem, const pb_cache_t *l1, const pb_cache_t *l2,
                     const pb_cache_t *l3) {
    const ptrdiff_t S = elem, MR = b->mr, NR = b->nr;
    ptrdiff_t c_ar = (ptrdiff_t)((double)(l1->ways - 1) / (1.0 + (double)NR / (double)MR));
    if (c_ar < 1) c_ar = 1;
    ptrdiff_t kc = c_ar * way_bytes(l1) / (MR * S) / 16 * 16;
    kc = PB_MAX(64, PB_MIN(kc, 1024));
    const ptrdiff_t c_br = (NR * kc * S + way_bytes(l2) - 1) / way_bytes(l2);
    const ptrdiff_t c_ac = PB_MAX(1, l2->ways - 1 - c_br);
    ptrdiff_t mc = c_ac * way_bytes(l2) / (kc * S) / MR * MR;
    mc = PB_MAX(MR, PB_MIN(mc, 512 / MR * MR));
    ptrdiff_t nc = 4096 / NR * NR;
    if (l3 != NULL && l3->size > 0) {
        const ptrdiff_t c_ac3 = (mc * kc * S + way_bytes(l3) - 1) / way_bytes(l3);
        const ptrdiff_t c_bc = PB_MAX(1, l3->ways - 1 - c_ac3);
        nc = c_bc * way_bytes(l3) / (kc * S) / NR * NR;
        nc = PB_MAX(NR, PB_MIN(nc, 8192 / NR * NR));
    }
    b->mc = mc;
    b->kc = kc;
    b->nc = nc;
}
