/* The direct kernel of fd_gemm.c (2-5 rows against a row-major w read in place), written once
   for every vector width: fd_gemm.c includes this file inside each x86 target region after
   defining FD_DSFX (the name suffix), FD_DVEC, FD_DLANES, FD_DLOAD, FD_DLOADU, FD_DSTORE,
   FD_DBCAST and FD_DFMA, and DIRECT_COLS, KG. Defines direct_rows_<R>_<FD_DSFX>, R = 1..5, and
   undefines those parameters at its end. */
#define FD_DPASTE2(a, b) a##_##b
#define FD_DPASTE(a, b) FD_DPASTE2(a, b)
#define FD_D(name) FD_DPASTE(name, FD_DSFX)

/* A few rows against a row-major w read in place, KG rows of w at a time (KG streams read in
   order, which the hardware prefetcher follows; 8 or 16 such streams a multiple of 4 KiB
   apart crowd one L1 set): for each piece of V vectors (FD_DLANES columns each)
   of those rows, the R x V partial sums come from an L1 buffer t into registers, take KG FMAs
   each in k order, and go back; at the end of each K block t (from 0 in every K block) is
   stored or added to c. The same FMA chains and K blocks as the tiles, so the results equal
   the packed kernel's bit for bit. Columns past the last whole vector take the same chains
   one element at a time (fmaf rounds as a vector FMA lane does). */
static inline __attribute__((always_inline)) void
FD_D(direct_group)(const int R, const int V, const int kg, const float *x, ptrdiff_t rsx, ptrdiff_t csx,
             const float *w, ptrdiff_t ldw, float *t, ptrdiff_t ldt)
{
    FD_DVEC a[FD_DIRECT_MAX_ROWS][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) a[r][v] = FD_DLOAD(t + r * ldt + FD_DLANES * v);
    for (int kk = 0; kk < kg; kk++) {
        const float *wk = w + kk * ldw;
        FD_DVEC wv[4];
        for (int v = 0; v < V; v++) wv[v] = FD_DLOADU(wk + FD_DLANES * v);
        for (int r = 0; r < R; r++) {
            const FD_DVEC xb = FD_DBCAST(x + r * rsx + kk * csx);
            for (int v = 0; v < V; v++) a[r][v] = FD_DFMA(xb, wv[v], a[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) FD_DSTORE(t + r * ldt + FD_DLANES * v, a[r][v]);
}

/* vectors per piece: R x V partial sums, at most 10 registers */
#define DIRECT_V(R) ((R) <= 2 ? 4 : 2)

static inline __attribute__((always_inline)) void
FD_D(direct_rows)(const int R, ptrdiff_t cols, ptrdiff_t k, const float *x, ptrdiff_t rsx, ptrdiff_t csx,
            const float *w, ptrdiff_t ldw, float *c, ptrdiff_t ldc)
{
    enum { LDT = DIRECT_COLS + 32 };   /* rows of t 64-byte aligned, not 4 KiB apart */
    float t[FD_DIRECT_MAX_ROWS * LDT] __attribute__((aligned(64)));
    const int V = DIRECT_V(R);
    const ptrdiff_t kcb = k_block(k), vec = cols / FD_DLANES * FD_DLANES, wide = cols / (FD_DLANES * V) * (FD_DLANES * V);
    if (k == 0)
        for (int r = 0; r < R; r++) memset(c + r * ldc, 0, (size_t)cols * sizeof(float));
    for (ptrdiff_t k0 = 0; k0 < k; k0 += kcb) {
        const ptrdiff_t kc = k - k0 < kcb ? k - k0 : kcb;
        for (int r = 0; r < R; r++) memset(t + r * LDT, 0, (size_t)cols * sizeof(float));
        for (ptrdiff_t g = k0; g < k0 + kc; g += KG) {
            const int kg = k0 + kc - g < KG ? (int)(k0 + kc - g) : KG;
            const float *xg = x + g * csx, *wg = w + g * ldw;
            ptrdiff_t j = 0;
            if (kg == KG) {
                for (; j < wide; j += FD_DLANES * V) FD_D(direct_group)(R, V, KG, xg, rsx, csx, wg + j, ldw, t + j, LDT);
                for (; j < vec; j += FD_DLANES) FD_D(direct_group)(R, 1, KG, xg, rsx, csx, wg + j, ldw, t + j, LDT);
            } else {
                for (; j < vec; j += FD_DLANES) FD_D(direct_group)(R, 1, kg, xg, rsx, csx, wg + j, ldw, t + j, LDT);
            }
            for (int kk = 0; kk < kg; kk++)
                for (ptrdiff_t jj = vec; jj < cols; jj++)
                    for (int r = 0; r < R; r++)
                        t[r * LDT + jj] = fmaf(xg[r * rsx + kk * csx], wg[kk * ldw + jj], t[r * LDT + jj]);
        }
        for (int r = 0; r < R; r++) {
            float *cr = c + r * ldc;
            if (k0 == 0) memcpy(cr, t + r * LDT, (size_t)cols * sizeof(float));
            else for (ptrdiff_t j = 0; j < cols; j++) cr[j] += t[r * LDT + j];
        }
    }
}

#define FD_DIRECT_ROWS(R)                                                                      \
    static void FD_D(direct_rows_##R)(ptrdiff_t cols, ptrdiff_t k, const float *x, ptrdiff_t rsx,   \
                                ptrdiff_t csx, const float *w, ptrdiff_t ldw, float *c,        \
                                ptrdiff_t ldc)                                                 \
    {                                                                                          \
        FD_D(direct_rows)(R, cols, k, x, rsx, csx, w, ldw, c, ldc);                                  \
    }
FD_DIRECT_ROWS(1)
FD_DIRECT_ROWS(2)
FD_DIRECT_ROWS(3)
FD_DIRECT_ROWS(4)
FD_DIRECT_ROWS(5)

#undef FD_DIRECT_ROWS
#undef DIRECT_V
#undef FD_D
#undef FD_DPASTE
#undef FD_DPASTE2
/* the parameters too, so the next width defines its own */
#undef FD_DSFX
#undef FD_DVEC
#undef FD_DLANES
#undef FD_DLOAD
#undef FD_DLOADU
#undef FD_DSTORE
#undef FD_DBCAST
#undef FD_DFMA
