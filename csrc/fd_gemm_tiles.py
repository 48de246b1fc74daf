"""Write the register-blocked tiles of the packed f32 GEMM (fd_gemm.c), one header per ISA:
fd_gemm_tiles_avx2.h and fd_gemm_tiles_avx512.h.

A tile is R rows x P panels of 16 columns (the packed layout, shared by every path): R * P * 16
outputs held in named vector registers, one FMA chain per output in k order, so every ISA gives
the same bits. Named variables (not an array) so that every compiler keeps the accumulators in
registers. A new ISA is a new row of ISAS. Run `python3 csrc/fd_gemm_tiles.py` after editing
(tests/test_gemm_tiles.py checks that the checked-in headers are what it writes).
"""
import sys
from pathlib import Path
from typing import NamedTuple

PANEL = 16   # columns per packed panel (fd_gemm.c: PANEL)


class Isa(NamedTuple):
    """How one instruction set spells a tile."""
    name: str            # file and function suffix: tile_<name>_<R>x<P>
    vec: str             # vector type
    lanes: int           # floats per vector
    zero: str
    load: str
    fma: str
    bcast: str           # broadcast of one float from memory, "{}" the address
    store: str           # store(accumulate, c, v) helper defined by fd_gemm.c
    edge: str            # "buffer": partial_store of a stack copy; "mask": store_part(..., cols)
    row_panels: tuple    # panels per tile for x read in place, by rows 1, 2, ... MR
    tile_panels: int     # panels per tile for x packed by the path's pack_x (MR rows)
    target: str          # the fd_cpu.h target region the header is included in
    prefetch: str = ""   # prefetch of one cache line of the output, "{}" the address, or ""
    prefetch_next: str = ""  # packed-x tiles: prefetch of one line of the panels to come, or ""
    # (rows, panels) of a packed-x tile over several x tiles for few rows, or (); it prefetches
    # the next panels with prefetch_next (the 6-row tiles do not: with the weights in L2 the
    # prefetches slowed the 6 x 64 tile by 3-5 %, their L2 requests competing with its own)
    few_rows_tile: tuple = ()
    # (rows, panels) of a tile reading x in place for outputs of at most that many panels (a
    # softmax layer's 10 columns) over many rows, or (): more FMA chains in flight than an MR-row
    # tile of one or two panels has
    narrow_tile: tuple = ()
    # most columns of a column tile (0: none): 2 vectors of rows (2 * lanes rows of x packed
    # transposed, rows in the lanes) x that many columns, one broadcast weight per 2 FMAs and
    # every lane useful, for outputs narrower than a panel
    column_tile_cols: int = 0

    @property
    def mr(self) -> int:
        return len(self.row_panels)


ISAS = [
    Isa("avx2", "__m256", 8, "_mm256_setzero_ps()", "_mm256_loadu_ps", "_mm256_fmadd_ps",
        "_mm256_broadcast_ss({})", "store_ymm", "buffer",
        (4, 3, 2, 1, 1, 1), 1, "AVX2 + FMA"),
    # 6 rows x 4 panels: 24 accumulators + 4 weight vectors of the 32 zmm registers, and one
    # broadcast of x per 4 FMAs (a 12 x 2-panel tile, one per 2, stayed below 88 % of the FMA
    # peak with its data in L1; this one reaches 91-93 %: docs/cpu-paths.md)
    Isa("avx512", "__m512", 16, "_mm512_setzero_ps()", "_mm512_loadu_ps", "_mm512_fmadd_ps",
        "_mm512_set1_ps(*({}))", "store_zmm", "mask",
        (4, 4, 4, 4, 4, 4), 4, "AVX-512", "_mm_prefetch((const char *)({}), _MM_HINT_T1)",
        "_mm_prefetch((const char *)({}), _MM_HINT_T1)", (12, 2), (12, 2), 8),
    # aarch64: 6 rows x 1 panel, 24 q-register accumulators (of 32); vfmaq_f32 rounds once,
    # like the x86 FMAs, so the bits are the x86 paths' bits
    Isa("neon", "float32x4_t", 4, "vdupq_n_f32(0.0f)", "vld1q_f32", "neon_fma",
        "vld1q_dup_f32({})", "store_q", "buffer",
        (2, 1, 1, 1, 1, 1), 1, "NEON (aarch64)"),
]


def tile(isa: Isa, r_count: int, p_count: int, packed_x: bool = False, prefetch_next: bool = False) -> str:
    """b[kk * ldb + p * pstride + j] is the weight of column p * 16 + j at k = kk (packed
    panels: ldb = 16, pstride = 16 k or a little more). packed_x: x is a row tile packed by
    pack_x (MR values per k, contiguous; R a multiple of MR: R / MR consecutive x tiles, kc * MR
    floats apart), so the strides are constants and the loop unrolled. prefetch_next: the tile
    also brings the two panels at pf and pf + pstride into L2, one line of each per k."""
    vp = PANEL // isa.lanes                     # vectors per panel
    vecs = vp * p_count
    acc = [[f"a{r}_{v}" for v in range(vecs)] for r in range(r_count)]
    name = f"tile_{isa.name}_{r_count}x{p_count}" + ("_px" if packed_x else "")
    strides = "" if packed_x else " ptrdiff_t rsx, ptrdiff_t csx,"
    ldb = "" if packed_x else " ptrdiff_t ldb,"
    pf = " const float *pf," if prefetch_next else ""
    lines = [
        f"static void {name}(ptrdiff_t kc, const float *x,{strides}",
        f"        const float *b,{ldb} ptrdiff_t pstride,{pf} float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols)",
        "{",
    ]
    if packed_x:
        assert r_count % isa.mr == 0, (isa, r_count)
        xt = f", xt = kc * {isa.mr}" if r_count > isa.mr else ""   # the next x tile
        lines.append(f"    const ptrdiff_t rsx = 1, csx = {isa.mr}, ldb = PANEL{xt};")
    lines.append("    (void)rsx; (void)pstride;   /* unused by some shapes */")
    for row in acc:
        lines.append(f"    {isa.vec} " + ", ".join(f"{a} = {isa.zero}" for a in row) + ";")
    if packed_x and isa.prefetch:   # the partial sums the tile adds to, on their way to L2 meanwhile
        lines.append("    if (accumulate) {")
        for r in range(r_count):
            lines.append("        " + " ".join(isa.prefetch.format(f"c + {r} * ldc + {PANEL * p}") + ";"
                                               for p in range(p_count)))
        lines.append("    }")
    if packed_x:
        lines.append("#pragma GCC unroll 4")
    lines += [
        "    for (ptrdiff_t kk = 0; kk < kc; kk++) {",
        "        const float *bk = b + kk * ldb, *xk = x + kk * csx;",
    ]
    if prefetch_next:
        lines.append("        " + isa.prefetch_next.format("pf + kk * PANEL") + "; "
                     + isa.prefetch_next.format("pf + pstride + kk * PANEL") + ";")
    for v in range(vecs):
        offset = " + ".join(t for t in (f"{v // vp} * pstride" if v // vp else "",
                                        f"{isa.lanes * (v % vp)}" if v % vp else "") if t) or "0"
        lines.append(f"        const {isa.vec} b{v} = {isa.load}(bk + {offset});")
    for r, row in enumerate(acc):
        xr = f"xk + {r} * rsx" if r else "xk"
        if packed_x and r >= isa.mr:
            xr = f"xk + {r // isa.mr} * xt" + (f" + {r % isa.mr}" if r % isa.mr else "")
        lines.append(f"        const {isa.vec} x{r} = {isa.bcast.format(xr)};")   # one broadcast per row
        src = f"x{r}"
        for v, a in enumerate(row):
            lines.append(f"        {a} = {isa.fma}({src}, b{v}, {a});")
    lines.append("    }")
    def dst(r: int, v: int) -> str:
        return f"c + {r} * ldc + {PANEL * (v // vp) + isa.lanes * (v % vp)}"
    if isa.edge == "buffer":
        lines.append(f"    if (cols == {PANEL * p_count}) {{")
        for r, row in enumerate(acc):
            for v, a in enumerate(row):
                lines.append(f"        {isa.store}(accumulate, {dst(r, v)}, {a});")
        lines.append("        return;")
        lines.append("    }")
        lines.append(f"    float edge[{r_count}][{isa.lanes * vecs}];")
        for r, row in enumerate(acc):
            for v, a in enumerate(row):
                storeu = isa.load.replace("load", "store").replace("vld1q", "vst1q")
                lines.append(f"    {storeu}(&edge[{r}][{isa.lanes * v}], {a});")
        lines.append(f"    partial_store(&edge[0][0], {r_count}, {isa.lanes * vecs}, c, ldc, accumulate, cols);")
    else:
        lines.append(f"    if (cols == {PANEL * p_count}) {{")
        for r, row in enumerate(acc):
            for v, a in enumerate(row):
                lines.append(f"        {isa.store}(accumulate, {dst(r, v)}, {a});")
        lines.append("        return;")
        lines.append("    }")
        for r, row in enumerate(acc):
            for v, a in enumerate(row):
                lines.append(f"    {isa.store}_part(accumulate, {dst(r, v)}, {a}, cols - {isa.lanes * v});")
    lines.append("}")
    return "\n".join(lines)


def widths(p: int) -> list:
    """The tile widths in panels used with p: p, then for the rest p / 2, p / 4, ..., 1 (p a power
    of two) or 1."""
    return [p >> i for i in range(p.bit_length())] if p & (p - 1) == 0 else [p, 1]


def row_tile(isa: Isa) -> str:
    """row_tile_<isa>: rows (1 to MR) of x read in place against all panels of n columns,
    the widest tile for that many rows, then one panel at a time."""
    lines = [
        f"static void row_tile_{isa.name}(int rows, ptrdiff_t kc, const float *x, ptrdiff_t rsx, ptrdiff_t csx,",
        "        const float *b, ptrdiff_t pstride, float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t n)",
        "{",
        "    const ptrdiff_t np = (n + PANEL - 1) / PANEL;",
        "    ptrdiff_t p = 0;",
        "    switch (rows) {",
    ]
    for r, wide in enumerate(isa.row_panels, start=1):
        lines.append(f"    {'default' if r == isa.mr else f'case {r}'}:")
        for w in widths(wide):
            lines.append(f"        for (; p + {w} <= np; p += {w})")
            lines.append(f"            tile_{isa.name}_{r}x{w}(kc, x, rsx, csx, b + p * pstride, PANEL, pstride, "
                         f"c + p * PANEL, ldc, accumulate,")
            lines.append(f"                n - p * PANEL < {w * PANEL} ? n - p * PANEL : {w * PANEL});")
        lines.append("        break;")
    lines += ["    }", "}"]
    return "\n".join(lines)


def _width_dispatcher(signature: str, call: str, panels: int) -> str:
    """A C function `signature` (its last parameter `cols`) that runs `call` (a tile call without
    its last argument) on the widest tile first, then narrower ones: before width w (halving from
    `panels`) cols <= (2 w - 1) * 16, so after it <= (w - 1) * 16."""
    assert panels & (panels - 1) == 0, panels
    lines = [*signature.split("\n"), "{"]
    for w in widths(panels):
        wcall = call.format(w=w)
        if w == panels and w > 1:
            lines.append(f"    if (cols > {(w - 1) * PANEL}) {{ {wcall}cols); return; }}")
        elif w > 1:
            lines += [f"    if (cols > {(w - 1) * PANEL}) {{",
                      f"        {wcall}cols < {w * PANEL} ? cols : {w * PANEL});",
                      f"        if (cols <= {w * PANEL}) return;",
                      f"        b += {w} * pstride, c += {w * PANEL}, cols -= {w * PANEL};",
                      "    }"]
        else:
            lines.append(f"    {wcall}cols);")
    lines.append("}")
    return "\n".join(lines)


def tile_px(isa: Isa) -> str:
    """tile_px_<isa>: MR rows of packed x against tile_panels panels, or fewer when `cols`
    ends sooner (the last panels of n)."""
    return _width_dispatcher(
        f"static void tile_px_{isa.name}(ptrdiff_t kc, const float *xp, const float *b, ptrdiff_t pstride,\n"
        "        float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols)",
        f"tile_{isa.name}_{isa.mr}x{{w}}_px(kc, xp, b, pstride, c, ldc, accumulate, ", isa.tile_panels)


def tile_px_few(isa: Isa) -> str:
    """tile_px_few_<isa>: R = few_rows_tile[0] rows of packed x (R / MR consecutive x tiles) against
    few_rows_tile[1] panels, or fewer when `cols` ends sooner; meanwhile the two panels at pf and
    pf + pstride come into L2 (prefetch_next)."""
    rows, panels = isa.few_rows_tile
    return _width_dispatcher(
        f"static void tile_px_few_{isa.name}(ptrdiff_t kc, const float *xp, const float *b, ptrdiff_t pstride,\n"
        "        const float *pf, float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols)",
        f"tile_{isa.name}_{rows}x{{w}}_px(kc, xp, b, pstride, pf, c, ldc, accumulate, ", panels)


def narrow_tile(isa: Isa) -> str:
    """narrow_tile_<isa>: R = narrow_tile[0] rows of x read in place against the first (at most
    narrow_tile[1]) panels, `cols` columns of them."""
    rows, panels = isa.narrow_tile
    return _width_dispatcher(
        f"static void narrow_tile_{isa.name}(ptrdiff_t kc, const float *x, ptrdiff_t rsx, ptrdiff_t csx,\n"
        "        const float *b, ptrdiff_t pstride, float *c, ptrdiff_t ldc, int accumulate, ptrdiff_t cols)",
        f"tile_{isa.name}_{rows}x{{w}}(kc, x, rsx, csx, b, PANEL, pstride, c, ldc, accumulate, ", panels)


def column_tile(isa: Isa, n: int) -> str:
    """tile_<isa>_cols<n>: 2 * lanes rows x n columns, rows in the lanes: x packed transposed
    (xt[kk * 2 lanes + r]), the weight of column j at k = kk broadcast from the panel (b[kk * 16 + j]).
    Each output is the same FMA chain in k order as in a row tile (x * w + acc rounds once,
    whichever factor is the vector). The chains' sums go to ct[(v * 16 + j) * lanes + lane] (row
    v * lanes + lane), or are added to what is there (accumulate: the next K block), in
    the order store(accumulate, c, v) adds them."""
    rows = 2 * isa.lanes
    acc = [[f"a{v}_{j}" for j in range(n)] for v in range(2)]
    lines = [
        f"static void tile_{isa.name}_cols{n}(ptrdiff_t kc, const float *xt, const float *b, float *ct, int accumulate)",
        "{",
    ]
    for row in acc:
        lines.append(f"    {isa.vec} " + ", ".join(f"{a} = {isa.zero}" for a in row) + ";")
    lines += [
        "#pragma GCC unroll 4",
        "    for (ptrdiff_t kk = 0; kk < kc; kk++) {",
        f"        const float *bk = b + kk * PANEL, *xk = xt + kk * {rows};",
        f"        const {isa.vec} x0 = {isa.load}(xk), x1 = {isa.load}(xk + {isa.lanes});",
    ]
    for j in range(n):
        lines.append(f"        const {isa.vec} w{j} = {isa.bcast.format(f'bk + {j}')};")
        lines.append(f"        {acc[0][j]} = {isa.fma}(x0, w{j}, {acc[0][j]}); {acc[1][j]} = {isa.fma}(x1, w{j}, {acc[1][j]});")
    lines.append("    }")
    for v, row in enumerate(acc):
        for j, a in enumerate(row):
            lines.append(f"    {isa.store}(accumulate, ct + {(v * PANEL + j) * isa.lanes}, {a});")
    lines.append("}")
    return "\n".join(lines)


def column_tiles(isa: Isa) -> str:
    """column_tile_<isa>: the column tile for n (1 to column_tile_cols) columns."""
    lines = [
        f"static void column_tile_{isa.name}(ptrdiff_t n, ptrdiff_t kc, const float *xt, const float *b, float *ct,",
        "        int accumulate)",
        "{",
        "    switch (n) {",
    ]
    for n in range(1, isa.column_tile_cols + 1):
        lines.append(f"    {'default' if n == isa.column_tile_cols else f'case {n}'}: "
                     f"tile_{isa.name}_cols{n}(kc, xt, b, ct, accumulate); break;")
    lines += ["    }", "}"]
    return "\n".join(lines)


def main(argv: list | None = None) -> None:
    """Write the headers next to this file, or into the directory argv[1]."""
    argv = sys.argv if argv is None else argv
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent
    for isa in ISAS:
        header = (f"/* Auto-generated by csrc/fd_gemm_tiles.py. Do not edit!\n"
                  f"   {isa.name} tiles of the packed f32 GEMM, included by fd_gemm.c inside its\n"
                  f"   {isa.target} target region, after PANEL and {isa.store}().\n"
                  f"   row_tile_{isa.name} and tile_px_{isa.name} are its entry points. */\n")
        body = "\n\n".join([tile(isa, r, w) for r, p in enumerate(isa.row_panels, start=1) for w in widths(p)]
                           + [tile(isa, isa.mr, w, packed_x=True) for w in widths(isa.tile_panels)]
                           + [row_tile(isa), tile_px(isa)]
                           + ([tile(isa, isa.few_rows_tile[0], w, packed_x=True, prefetch_next=True)
                               for w in widths(isa.few_rows_tile[1])]
                              + [tile_px_few(isa)] if isa.few_rows_tile else [])
                           + ([tile(isa, isa.narrow_tile[0], w) for w in widths(isa.narrow_tile[1])]
                              + [narrow_tile(isa)] if isa.narrow_tile else [])
                           + ([column_tile(isa, n) for n in range(1, isa.column_tile_cols + 1)]
                              + [column_tiles(isa)] if isa.column_tile_cols else []))
        (out_dir / f"fd_gemm_tiles_{isa.name}.h").write_text(header + "\n" + body + "\n")


if __name__ == "__main__":
    main()
