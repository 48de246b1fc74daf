"""Derive the polynomial coefficients of csrc/fd_act_math.h into csrc/fd_act_coeffs.h.

Each polynomial is a Chebyshev interpolant computed in long double (near-minimax), converted to a
monomial basis and printed as C.  The printed "max err" is measured with Horner evaluation in the
precision the C code uses (double, or float for the *32 tables, coefficients rounded to float
first) against a long-double (or series) truth.  Exception: float32 gelu's tables (S, N, D) are
weighted minimax fits (Lawson iterations on least squares; N/D linearized as N - f D), their
printed error that of the float-rounded coefficients evaluated in float64 (the C code's own
rounding is measured by sweeping every float, see tests/test_activations.py).
Run:  python csrc/fd_act_coeffs.py [OUTPUT]      (default: csrc/fd_act_coeffs.h, beside this file)
tests/test_generated_code.py regenerates the header and checks it byte for byte.
"""
import sys
from fractions import Fraction
from math import comb, factorial
from pathlib import Path

import numpy as np
import scipy.special as sc

L = np.longdouble
PI = L("3.14159265358979323846264338327950288")


def chebfit(f, a, b, deg):
    """Monomial coefficients (long double) in w = (2u - a - b) / (b - a) of the degree-`deg`
    Chebyshev interpolant of f on [a, b]."""
    n = deg + 1
    k = np.arange(n, dtype=L)
    th = PI * (k + L(0.5)) / n
    u = (L(a) + L(b)) / 2 + (L(b) - L(a)) / 2 * np.cos(th)
    y = np.array([f(ui) for ui in u], dtype=L)
    c = np.array([2 * np.sum(y * np.cos(j * th)) / n for j in range(n)], dtype=L)
    c[0] /= 2
    basis = [np.array([L(1)]), np.array([L(0), L(1)])]
    for j in range(2, n):
        t = np.zeros(j + 1, dtype=L)
        t[1:] += 2 * basis[-1]
        t[:-1] -= np.pad(basis[-2], (0, 1))
        basis.append(t)
    mono = np.zeros(n, dtype=L)
    for j in range(n):
        mono[: j + 1] += c[j] * basis[j]
    return mono


def unmap(mono, a, b):
    """Monomial coefficients in w = (2u - a - b)/(b - a)  ->  monomial coefficients in u."""
    alpha, beta = 2 / (L(b) - L(a)), -(L(a) + L(b)) / (L(b) - L(a))
    out = np.zeros(len(mono), dtype=L)
    for j, m in enumerate(mono):
        for i in range(j + 1):
            out[i] += m * comb(j, i) * alpha**i * beta ** (j - i)
    return out


def max_error(f, a, b, coef, var, relative):
    u = np.linspace(L(a), L(b), 20001, dtype=L)
    truth = np.asarray(f(u), dtype=L)          # the truths take arrays: the same sums, per element
    v = np.asarray(var(u)).astype(float)
    p = np.zeros_like(v)
    for c in np.asarray(coef, dtype=float)[::-1]:
        p = p * v + c
    err = np.abs(p.astype(L) - truth)
    if relative:
        err /= np.abs(truth)
    return float(err.max())


def max_error32(f, a, b, coef, var):
    """Relative error of the float32 Horner evaluation (float32 coefficients and variable)."""
    u = np.linspace(L(a), L(b), 20001, dtype=L)
    v = np.asarray(var(u)).astype(np.float32)
    truth = np.asarray(f(v.astype(float).astype(L)), dtype=L)   # at the float32 variable
    p = np.zeros_like(v)
    for c in np.asarray(coef, dtype=np.float32)[::-1]:
        p = (p * v + c).astype(np.float32)
    return float(np.max(np.abs(p.astype(L) / truth - 1)))


def emit32(name, coef, note):
    body = ",\n    ".join(f"{float(np.float32(c)):.9e}f" for c in coef)
    return f"/* {note} */\nstatic const float {name}[{len(coef)}] = {{\n    {body}\n}};"


def emit(name, coef, note):
    body = ",\n    ".join(f"{float(c)!r}" for c in coef)
    return f"/* {note} */\nstatic const double {name}[{len(coef)}] = {{\n    {body}\n}};"


def expm1_q(r):
    """(expm1(r) - r) / r^2 = sum r^k / (k + 2)!  (the series: no cancellation near 0)."""
    return sum(r**k / L(factorial(k + 2)) for k in range(24))


def log1p_r(z):
    """R(z), z = s^2: log(1 + f) = 2s + s z R(z) with s = f / (2 + f); R = sum 2 z^(k-1) / (2k + 1)."""
    return sum(L(2) * z ** (k - 1) / (2 * k + 1) for k in range(1, 40))


def _tanh_shrink_series():
    bern = [Fraction(0)] * 161
    bern[0] = Fraction(1)
    for m in range(1, 161):
        bern[m] = -sum(comb(m + 1, k) * bern[k] for k in range(m)) / Fraction(m + 1)
    # tanh x = sum_n 2^2n (2^2n - 1) B_2n x^(2n-1) / (2n)!;  (x - tanh x) / x^3 = g(x^2)
    tc = [Fraction(4**n * (4**n - 1)) * bern[2 * n] / factorial(2 * n) for n in range(1, 80)]
    return [-tc[n - 1] for n in range(2, 80)]


_G = _tanh_shrink_series()


def tanh_shrink_g(y):
    s, p = L(0), L(1)
    for c in _G:
        s += L(c.numerator) / L(c.denominator) * p
        p *= y
    return s


EXPM1_R32 = 0.3486     # float32 exp: |r| <= ln2/2 + the rounding of n = rint(x / ln2)
LOG1P_MID = 0.5        # float32 log1p(e) = e R(e - 0.5) on 0 <= e <= 1
GELU_A_MAX = 14.8      # float32 gelu: gelu(-14.8) rounds to -0
# float32 gelu splits at |x| = 0.8 (FD_GELU_SPLIT32): Phi(x) = 1/2 + x S(x^2) below, above
# G(a) = a Phi(-a) e^(a^2/2) = g - N(a)/D(a), a = |x|
GELU_SMALL = 0.8       # S fitted for |x| <= 0.8
GELU_TAIL = 0.7        # N/D fitted for 0.7 <= a <= 14.8 (a margin below the split)
GELU_G = float(np.float32(1 / np.sqrt(2 * np.pi)))   # g: G's limit, rounded to float
TANH_SHRINK_TAYLOR_X = 0.0625   # float64 tanh_shrink: G's Taylor series below |x| = this
TANH_SHRINK_TAYLOR_TERMS = 7


def log1p_over(w):
    """log1p(e) / e with e = w + LOG1P_MID (scalar or array)."""
    e = np.asarray(w + L(LOG1P_MID), dtype=L)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(e != 0, np.log1p(e) / e, L(1))


def gelu_s(y):
    """S(y) = (Phi(sqrt y) - 1/2) / sqrt y = sum (-1)^n (y/2)^n / (n! (2n + 1)) / sqrt(2 pi)."""
    return sum((-y / 2) ** n / L(factorial(n) * (2 * n + 1)) for n in range(30)) / np.sqrt(2 * PI)


def gelu_s_fit(deg):
    """S's coefficients with S(0) = 1/sqrt(2 pi) rounded to float, the others fitted to the
    remainder: S's error matters as the error of x S(x^2) relative to Phi(x) (up to 1.4 x S's own
    error at x = -0.8), and the rounding of S(0) alone is 2.8e-8 of S, so it is compensated where it
    counts.  Lawson iterations on linear least squares in y = x^2, basis y .. y^deg."""
    x = GELU_SMALL * np.sin(np.pi / 2 * np.arange(1, 4001) / 4000)   # dense near 0.8, none at 0
    y = x * x
    s0 = float(np.float32(1 / np.sqrt(2 * np.pi)))
    target = np.array([float(gelu_s(L(v))) for v in y]) - s0
    weight = (0.5 - x * (target + s0)) / x                          # Phi(-x) / x
    basis = np.vander(y, deg + 1, increasing=True)[:, 1:]
    lw, best = np.ones_like(y), None
    for _ in range(100):
        sw = np.sqrt(lw) / weight
        c = np.linalg.lstsq(basis * sw[:, None], target * sw, rcond=None)[0]
        err = np.abs(basis @ c - target) / weight
        if best is None or err.max() < best[0]:
            best = (err.max(), c)
        lw = lw * err / np.sum(lw * err)
    c = np.float32(np.concatenate([[s0], best[1]]))
    err = np.abs(np.vander(y, deg + 1, increasing=True) @ c.astype(float) - s0 - target) / weight
    return c, float(err.max())


def gelu_g(a):
    """G(a) = a Phi(-a) e^(a^2/2) = a erfcx(a / sqrt2) / 2 (float64 erfcx: ~1e-15 relative)."""
    return a * sc.erfcx(a / np.sqrt(2)) / 2


def ratfit(target, weight, a, m, n, iters=150):
    """P(a)/Q(a) ~ target with Q(0) = 1, deg P = m, deg Q = n, minimizing max |P/Q - target| / weight
    over the points a: linearized least squares P - target Q (Sanathanan-Koerner: divided by the
    previous Q), with Lawson's reweighting (each point's weight times its error) pushing toward the
    minimax solution.  Monomial coefficients of P and Q (float64)."""
    a = np.asarray(a, float)
    y, g, sa = target(a), weight(a), a.max()
    vp = np.vander(a / sa, m + 1, increasing=True)
    vq = np.vander(a / sa, n + 1, increasing=True)
    qprev, lw, best = np.ones_like(a), np.ones_like(a), None
    for _ in range(iters):
        sw = np.sqrt(lw) / (g * qprev)
        lhs = np.hstack([vp, -y[:, None] * vq[:, 1:]]) * sw[:, None]
        c = np.linalg.lstsq(lhs, y * sw, rcond=None)[0]
        p, q = c[: m + 1], np.concatenate([[1.0], c[m + 1:]])
        qprev = vq @ q
        err = np.abs((vp @ p / qprev - y) / g)
        if best is None or err.max() < best[0]:
            best = (err.max(), p / sa ** np.arange(m + 1), q / sa ** np.arange(n + 1))
        lw = lw * err / np.sum(lw * err)
    return best[1], best[2]


def gelu_tail_error(p, q, a):
    """max |(g - N/D) / G - 1| with the float32 coefficients (evaluated in float64)."""
    p, q = np.float32(p).astype(float), np.float32(q).astype(float)
    g = GELU_G - np.polyval(p[::-1], a) / np.polyval(q[::-1], a)
    return float(np.max(np.abs(g / gelu_g(a) - 1)))


def tables32():
    """The float32 tables, as C."""
    c = unmap(chebfit(expm1_q, -EXPM1_R32, EXPM1_R32, 5), -EXPM1_R32, EXPM1_R32)
    out = [emit32("FD_EXPM1_Q32", c, f"float32: expm1(r) = r + r^2 Q(r), |r| <= {EXPM1_R32}; rel err of Q "
                  f"{max_error32(expm1_q, -EXPM1_R32, EXPM1_R32, c, lambda u: u):.1e}")]
    h = 1 - LOG1P_MID
    c = unmap(chebfit(log1p_over, -LOG1P_MID, h, 9), -LOG1P_MID, h)
    out.append(emit32("FD_LOG1P_R32", c, "float32: log1p(e) = e R(e - 0.5), 0 <= e <= 1; rel err "
                      f"{max_error32(log1p_over, -LOG1P_MID, h, c, lambda u: u):.1e}"))
    c, err = gelu_s_fit(4)
    out.append(emit32("FD_GELU_S32", c, f"float32: Phi(x) = 1/2 + x S(x^2), |x| <= {GELU_SMALL}; err of x S "
                      f"relative to Phi(-|x|) {err:.1e}"))
    k = np.arange(6000)
    a = GELU_TAIL + (GELU_A_MAX - GELU_TAIL) * (1 - np.cos(np.pi * (k + 0.5) / k.size)) / 2
    a = np.concatenate([[GELU_TAIL], a, [GELU_A_MAX]])
    p, q = ratfit(lambda u: GELU_G - gelu_g(u), gelu_g, a, 3, 5)
    note = (f"float32: G(a) = a Phi(-a) e^(a^2/2) = g - N(a)/D(a), g = {GELU_G!r}, {GELU_TAIL} <= a <= "
            f"{GELU_A_MAX}; err of G {gelu_tail_error(p, q, a):.1e}")
    out.append(emit32("FD_GELU_N32", p, note))
    out.append(emit32("FD_GELU_D32", q, "float32: D(a) of the line above"))
    out.append(f"#define FD_GELU_G32 {GELU_G:.9e}f   /* g = 1/sqrt(2 pi) rounded to float, as fitted */\n"
               f"#define FD_GELU_SPLIT32 {GELU_SMALL}f   /* float32 gelu: S below |x| = this, N/D above */")
    return out


def tables64():
    """The float64 tables (and FD_TANH_SHRINK_G32, evaluated in float64), as C."""
    c = unmap(chebfit(expm1_q, -0.35, 0.35, 6), -0.35, 0.35)
    out = [emit("FD_EXPM1_Q", c, "expm1(r) = r + r^2 Q(r), |r| <= 0.35; rel err "
                f"{max_error(expm1_q, -0.35, 0.35, c, lambda u: u, True):.1e}")]
    c = unmap(chebfit(expm1_q, -0.3466, 0.3466, 10), -0.3466, 0.3466)
    out.append(emit("FD_EXPM1_Q64", c, "float64: expm1(r) = r + r^2 Q(r), |r| <= 0.3466; rel err "
                    f"{max_error(expm1_q, -0.3466, 0.3466, c, lambda u: u, True):.1e}"))
    c = unmap(chebfit(log1p_r, 0, 0.02944, 7), 0, 0.02944)
    out.append(emit("FD_LOG1P_R64", c, "float64: log(1+f) = 2s + s z R(z), s = f/(2+f), z = s^2 <= 0.02944; "
                    f"rel err {max_error(log1p_r, 0, 0.02944, c, lambda u: u, True):.1e}"))
    c = unmap(chebfit(tanh_shrink_g, 0, 0.25, 6), 0, 0.25)
    out.append(emit("FD_TANH_SHRINK_G32", c, "x - tanh x = x^3 G(x^2), |x| < 0.5; rel err "
                    f"{max_error(tanh_shrink_g, 0, 0.25, c, lambda u: u, True):.1e}"))
    c = chebfit(tanh_shrink_g, 0, 1, 15)
    out.append(emit("FD_TANH_SHRINK_G64", c, "x - tanh x = x^3 G(2 x^2 - 1), |x| < 1; rel err "
                    f"{max_error(tanh_shrink_g, 0, 1, c, lambda u: 2 * u - 1, True):.1e}"))
    # near x = 0 (w = 2 x^2 - 1 near -1) the fit above is 2-3 ulp off G: G's own series there
    c = [L(g.numerator) / L(g.denominator) for g in _G[:TANH_SHRINK_TAYLOR_TERMS]]
    out.append(emit("FD_TANH_SHRINK_T64", c, f"x - tanh x = x^3 T(x^2), |x| < {TANH_SHRINK_TAYLOR_X} (G's Taylor "
                    f"series); rel err {max_error(tanh_shrink_g, 0, TANH_SHRINK_TAYLOR_X**2, c, lambda u: u, True):.1e}"))
    return out


HEADER = """\
/* Auto-generated by csrc/fd_act_coeffs.py. Do not edit!
 *
 * The polynomial coefficients of the activation math (fd_act_math.h), with the error each one was
 * measured to have.  Regenerate:  python csrc/fd_act_coeffs.py
 * (tests/test_generated_code.py checks that this file is what the generator writes).
 */
#ifndef FD_ACT_COEFFS_H
#define FD_ACT_COEFFS_H

"""


def header():
    """The whole generated header, as text."""
    return HEADER + "\n".join(tables64()) + "\n\n" + "\n".join(tables32()) + "\n\n#endif /* FD_ACT_COEFFS_H */\n"


def not_reproducible_here():
    """Why this machine cannot reproduce the checked-in header (None if it can): the fits are computed in
    NumPy's long double, and turning the Chebyshev series into monomials is ill-conditioned enough that
    their last digits depend on its width.  The header was written with x87's 64-bit mantissa (x86-64
    Linux); IEEE quad (aarch64 Linux) or plain double (macOS arm64, MSVC) give other last digits."""
    bits = np.finfo(L).nmant
    if bits == 63:
        return None
    return (f"csrc/fd_act_coeffs.py fits in long double, which has {bits + 1} mantissa bits here, not x87's 64: "
            "its coefficients would differ in their last digits from the checked-in ones (run it on x86-64)")


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("fd_act_coeffs.h")
    reason = not_reproducible_here()
    if reason:
        sys.exit(reason)
    out.write_text(header())


if __name__ == "__main__":
    main(sys.argv)
