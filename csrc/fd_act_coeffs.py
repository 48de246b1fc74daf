"""Derive the polynomial coefficients used in csrc/fd_act_math.h (not run by the build).

Each polynomial is a Chebyshev interpolant computed in long double (near-minimax), converted to a
monomial basis and printed as C.  The printed "max err" is measured with double-precision Horner
evaluation against a long-double (or series) truth.  Run:  python csrc/fd_act_coeffs.py
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


def emit(name, coef, note):
    body = ",\n    ".join(f"{float(c)!r}" for c in coef)
    print(f"/* {note} */\nstatic const double {name}[{len(coef)}] = {{\n    {body}\n}};")


def expm1_q(r):
    """(expm1(r) - r) / r^2 = sum r^k / (k + 2)!  (the series: no cancellation near 0)."""
    return sum(r**k / L(factorial(k + 2)) for k in range(24))


def log_r(y):
    """(log((1+s)/(1-s)) - 2s) / s^3 with y = s^2, as its series sum 2 y^k / (2k + 3)."""
    return sum(L(2) * y**k / (2 * k + 3) for k in range(30))


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


ERFC_P_SLOPE = 0.4     # t = 1 / (1 + 0.4 z)
ERFC_Z_MAX = 10.5      # beyond this, x * Phi(x) is below half the smallest float32 denormal


def erfc_p(t):
    """P(t) with erfc(z) = t * exp(-z^2 + P(t)), t = 1/(1 + 0.4 z): log(erfcx(z) / t)."""
    z = (1 / float(t) - 1) / ERFC_P_SLOPE
    return L(np.log(sc.erfcx(z) / float(t)))


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
    c = unmap(chebfit(log_r, 0, 0.0295, 4), 0, 0.0295)
    emit("FD_LOG_R", c, "log((1+s)/(1-s)) = 2s + s^3 R(s^2), s^2 <= 0.0295; rel err "
         f"{max_error(log_r, 0, 0.0295, c, lambda u: u, True):.1e}")
    a, b = 1 / (1 + ERFC_P_SLOPE * ERFC_Z_MAX), 1.0
    c = unmap(chebfit(erfc_p, a, b, 11), a, b)
    emit("FD_ERFC_P", c, "erfc(z) = t exp(-z^2 + P(t)), t = 1/(1+0.4z), 0 <= z <= 10.5; abs err "
         f"{max_error(erfc_p, a, b, c, lambda u: u, False):.1e}")
    c = unmap(chebfit(tanh_shrink_g, 0, 0.25, 6), 0, 0.25)
    emit("FD_TANH_SHRINK_G32", c, "x - tanh x = x^3 G(x^2), |x| < 0.5; rel err "
         f"{max_error(tanh_shrink_g, 0, 0.25, c, lambda u: u, True):.1e}")
    c = chebfit(tanh_shrink_g, 0, 1, 15)
    emit("FD_TANH_SHRINK_G64", c, "x - tanh x = x^3 G(2 x^2 - 1), |x| < 1; rel err "
         f"{max_error(tanh_shrink_g, 0, 1, c, lambda u: 2 * u - 1, True):.1e}")


if __name__ == "__main__":
    main()
