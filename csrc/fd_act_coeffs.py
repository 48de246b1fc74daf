"""Derive the polynomial coefficients used in csrc/fd_act_math.h (not run by the build).

Each polynomial is a Chebyshev interpolant computed in long double (near-minimax), converted to a
monomial basis and printed as C.  The printed "max err" is measured with Horner evaluation in the
precision the C code uses (double, or float for the *32 tables, coefficients rounded to float
first) against a long-double (or series) truth.  Run:  python csrc/fd_act_coeffs.py
"""
from fractions import Fraction
from math import comb, factorial

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
    truth = np.array([f(ui) for ui in u], dtype=L)
    v = np.array([var(ui) for ui in u]).astype(float)
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
    v = np.array([var(ui) for ui in u]).astype(np.float32)
    truth = np.array([f(L(float(vi))) for vi in v], dtype=L)   # at the float32 variable
    p = np.zeros_like(v)
    for c in np.asarray(coef, dtype=np.float32)[::-1]:
        p = (p * v + c).astype(np.float32)
    return float(np.max(np.abs(p.astype(L) / truth - 1)))


def emit32(name, coef, note):
    body = ",\n    ".join(f"{float(np.float32(c)):.9e}f" for c in coef)
    print(f"/* {note} */\nstatic const float {name}[{len(coef)}] = {{\n    {body}\n}};")


def emit(name, coef, note):
    body = ",\n    ".join(f"{float(c)!r}" for c in coef)
    print(f"/* {note} */\nstatic const double {name}[{len(coef)}] = {{\n    {body}\n}};")


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
GELU_SLOPE = 0.3       # float32 gelu: Phi(-a) = t Q(t - GELU_MID) exp(-a^2/2), t = 1/(1 + 0.3 a)
GELU_A_MAX = 14.8      # gelu(-14.8) rounds to -0 in float32
GELU_T_MIN = 1 / (1 + GELU_SLOPE * GELU_A_MAX)
GELU_MID = (GELU_T_MIN + 1) / 2


def log1p_over(w):
    """log1p(e) / e with e = w + LOG1P_MID."""
    e = w + L(LOG1P_MID)
    return np.log1p(e) / e if e != 0 else L(1)


def gelu_q(w):
    """Phi(-a) / (t exp(-a^2/2)) = erfcx(a / sqrt2) / (2t) with t = w + GELU_MID = 1/(1 + 0.3a)."""
    t = float(w + L(GELU_MID))
    a = (1 / t - 1) / GELU_SLOPE
    return L(sc.erfcx(a / np.sqrt(2)) / (2 * t))


def main32():
    c = unmap(chebfit(expm1_q, -EXPM1_R32, EXPM1_R32, 5), -EXPM1_R32, EXPM1_R32)
    emit32("FD_EXPM1_Q32", c, f"float32: expm1(r) = r + r^2 Q(r), |r| <= {EXPM1_R32}; rel err of Q "
           f"{max_error32(expm1_q, -EXPM1_R32, EXPM1_R32, c, lambda u: u):.1e}")
    h = 1 - LOG1P_MID
    c = unmap(chebfit(log1p_over, -LOG1P_MID, h, 9), -LOG1P_MID, h)
    emit32("FD_LOG1P_R32", c, "float32: log1p(e) = e R(e - 0.5), 0 <= e <= 1; rel err "
           f"{max_error32(log1p_over, -LOG1P_MID, h, c, lambda u: u):.1e}")
    lo, hi = GELU_T_MIN - GELU_MID, 1 - GELU_MID
    c = unmap(chebfit(gelu_q, lo, hi, 10), lo, hi)
    emit32("FD_GELU_Q32", c, f"float32: Phi(-a) = t Q(t - {GELU_MID:.9g}) exp(-a^2/2), t = 1/(1 + "
           f"{GELU_SLOPE} a), 0 <= a <= {GELU_A_MAX}; rel err {max_error32(gelu_q, lo, hi, c, lambda u: u):.1e}")


def main():
    c = unmap(chebfit(expm1_q, -0.35, 0.35, 6), -0.35, 0.35)
    emit("FD_EXPM1_Q", c, "expm1(r) = r + r^2 Q(r), |r| <= 0.35; rel err "
         f"{max_error(expm1_q, -0.35, 0.35, c, lambda u: u, True):.1e}")
    c = unmap(chebfit(expm1_q, -0.3466, 0.3466, 10), -0.3466, 0.3466)
    emit("FD_EXPM1_Q64", c, "float64: expm1(r) = r + r^2 Q(r), |r| <= 0.3466; rel err "
         f"{max_error(expm1_q, -0.3466, 0.3466, c, lambda u: u, True):.1e}")
    c = unmap(chebfit(log1p_r, 0, 0.02944, 7), 0, 0.02944)
    emit("FD_LOG1P_R64", c, "float64: log(1+f) = 2s + s z R(z), s = f/(2+f), z = s^2 <= 0.02944; rel err "
         f"{max_error(log1p_r, 0, 0.02944, c, lambda u: u, True):.1e}")
    c = unmap(chebfit(tanh_shrink_g, 0, 0.25, 6), 0, 0.25)
    emit("FD_TANH_SHRINK_G32", c, "x - tanh x = x^3 G(x^2), |x| < 0.5; rel err "
         f"{max_error(tanh_shrink_g, 0, 0.25, c, lambda u: u, True):.1e}")
    c = chebfit(tanh_shrink_g, 0, 1, 15)
    emit("FD_TANH_SHRINK_G64", c, "x - tanh x = x^3 G(2 x^2 - 1), |x| < 1; rel err "
         f"{max_error(tanh_shrink_g, 0, 1, c, lambda u: 2 * u - 1, True):.1e}")


if __name__ == "__main__":
    main()
    main32()
