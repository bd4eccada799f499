"""Rolling window moments with an O(n_assets^2) update per new row of returns.

:class:`RollingMoments` holds the last ``window`` returns and the sums behind their mean,
their covariance and the Ledoit-Wolf shrinkage intensity. Pushing a row adds it and drops
the oldest in O(n_assets^2) instead of the O(window * n_assets^2) of a fresh estimate; every
``recompute_every`` pushes the sums are rebuilt exactly from the window, so rounding never
accumulates (the stepped estimates equal :func:`~neuralfolio.risk.ledoit_wolf` and
:func:`~neuralfolio.risk.sample_covariance` of the same window to about 1e-14 relative).

The sums are taken of shifted returns ``y = r - c``, with ``c`` the window mean at the last
exact rebuild, so that they never hold large numbers that cancel.

With ``y_k`` the shifted rows, ``m`` their mean, ``a_k = |y_k|^2`` and ``W`` the window:

* sample covariance (``1/W``): ``P / W - m m'`` with ``P = sum y_k y_k'``;
* Ledoit-Wolf's ``sum_k |y_k - m|^4 = A2 + 4 m'Pm - 4 q.m + 2 |m|^2 A - 3 W |m|^4`` with
  ``A2 = sum a_k^2``, ``q = sum a_k y_k`` and ``A = sum a_k``.

The unconstrained minimum-variance weights ``S^-1 1 / 1'S^-1 1`` of the Ledoit-Wolf
covariance ``S = (1 - d) X'X / W + d mu I`` (``X`` the window's centred returns, ``d`` the
shrinkage) need no O(n^3) solve when the window is shorter than the universe: with
``a = d mu`` and ``b = (1 - d) / W``, Woodbury's identity gives exactly

    S^-1 1 = (1 / a) (1 - X' (c I + X X')^-1 X 1),    c = a / b,

a (W, W) system. Its Gram matrix ``X X' = K - g 1' - 1 g' + |m|^2 1 1'`` (``K = Y Y'`` of
the shifted rows, ``g = Y m``) is kept up to date one row of ``K`` per push (O(W n)), so
the weights cost O(W n + W^3) a step instead of O(n^3) (see :func:`shrunk_inverse_ones`
and :meth:`RollingMoments.unconstrained_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy.linalg.lapack import dpotrf as _dpotrf
from scipy.linalg.lapack import dpotrs as _dpotrs

from neuralfolio.errors import ConfigError, DataError, InsufficientHistoryError

__all__ = ["RECOMPUTE_EVERY", "RollingMoments", "shrunk_inverse_ones", "woodbury_is_cheaper"]

RECOMPUTE_EVERY = 256
"""Pushes between exact rebuilds of the rolling sums (drift guard)."""

WOODBURY_RATIO = 0.85
WOODBURY_MIN_ASSETS = 64
"""The Woodbury solve of the unconstrained weights is used when ``n_assets >=
WOODBURY_MIN_ASSETS`` and ``window < WOODBURY_RATIO * n_assets`` (the measured crossover
with the direct solve; both give the same weights to rounding)."""

SolveMethod = Literal["auto", "woodbury", "direct"]
_MIN_SHRINKAGE = 1e-12  # below it Woodbury's (W, W) system is as singular as X X'


def woodbury_is_cheaper(n_assets: int, window: int) -> bool:
    """Whether the (window, window) Woodbury system costs less than the direct
    (n_assets, n_assets) solve for the unconstrained weights of a stepped window.

    Parameters
    ----------
    n_assets, window : int

    Returns
    -------
    bool
        ``n_assets >= 64`` and ``window < 0.85 n_assets``. The direct solve costs about
        ``n^3 / 3`` a step, the Woodbury one about ``W^3 / 3 + 4 W n`` (its Gram matrix is
        updated one row a push, not rebuilt) and a few more NumPy calls; measured with
        single-threaded OpenBLAS (2 cores), the Woodbury one is faster from ``W / n`` about
        0.4 at ``W = 30`` to about 0.9 at ``W = 252``, and never below 64 assets.
    """
    return n_assets >= WOODBURY_MIN_ASSETS and window < WOODBURY_RATIO * n_assets


def _rank1(a: np.ndarray, alpha: float, x: np.ndarray, tmp: np.ndarray) -> None:
    """``a += alpha x x'`` in place (``alpha`` 1 or -1), ``a`` and ``tmp`` float64 (n, n).

    The outer product goes into the preallocated ``tmp``: no (n, n) allocation a push,
    and no BLAS ``dger``, whose threaded OpenBLAS kernel stalls for milliseconds on a
    loaded 2-core machine (and slows the BLAS calls after it).
    """
    np.multiply.outer(x, x, out=tmp)
    if alpha > 0:
        a += tmp
    else:
        a -= tmp


def _shrunk(sample: np.ndarray, shrinkage: float, mu: float) -> np.ndarray:
    """``(1 - shrinkage) sample + shrinkage mu I``, in place in ``sample`` (n, n), as
    :func:`~neuralfolio.risk.ledoit_wolf` rounds it."""
    sample *= 1.0 - shrinkage
    sample.flat[:: len(sample) + 1] += shrinkage * mu
    return sample


def _woodbury(gram: np.ndarray, a: float, b: float, n_assets: int,
              x_dot: Callable[[np.ndarray], np.ndarray],
              xt_dot: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | None:
    """``t = S^-1 1`` for ``S = a I + b X'X`` from the (W, W) system
    ``(c I + X X') z = X 1``, ``c = a / b``: ``t = (1 - X' z) / a``, then one step of
    iterative refinement, or None when that system is not numerically positive definite.

    ``1 - X'z`` is a difference of nearly equal vectors when ``a`` is small against
    ``b X'X`` on the whole space (``W > n``); the refinement step (residual
    ``1 - a t - b X'X t`` in O(W n), one more pair of triangular solves) brings the result
    back to the accuracy of a direct solve.

    Parameters
    ----------
    gram : ndarray, shape (W, W)
        ``X X'``; overwritten with its shifted Cholesky factor.
    a, b : float
        > 0.
    n_assets : int
    x_dot, xt_dot : callable
        ``v -> X v``, (n_assets,) to (W,), and ``z -> X' z``, (W,) to (n_assets,).

    Returns
    -------
    ndarray, shape (n_assets,), or None
    """
    gram.flat[:: len(gram) + 1] += a / b
    chol, info = _dpotrf(gram, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        return None
    inv_a = 1.0 / a

    def solve(r: np.ndarray) -> np.ndarray:  # S^-1 r
        z, _ = _dpotrs(chol, x_dot(r), lower=1)
        t = r - xt_dot(z)
        t *= inv_a
        return t

    ones = np.ones(n_assets)
    t = solve(ones)
    r = ones - a * t
    r -= b * xt_dot(x_dot(t))
    t += solve(r)
    return t


def shrunk_inverse_ones(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """``S^-1 1`` for ``S = a I + b X'X`` through the Woodbury identity, without forming
    or factoring an (n_assets, n_assets) matrix.

    ``(a I + b X'X)^-1 = (I - X' (c I + X X')^-1 X) / a`` with ``c = a / b``, so the cost is
    O(W^2 n + W^3) instead of the O(n^3) of a direct solve: the cheaper way when
    ``W < n``, where ``X'X`` is singular and ``a > 0`` keeps ``S`` positive definite.

    Parameters
    ----------
    x : ndarray, shape (W, n_assets)
        For the Ledoit-Wolf covariance: the window's returns minus their mean, with
        ``a = shrinkage * mu`` and ``b = (1 - shrinkage) / W``.
    a : float
        > 0.
    b : float
        >= 0.

    Returns
    -------
    ndarray, shape (n_assets,)

    Raises
    ------
    DataError
        ``a <= 0`` or ``b < 0``, or a (W, W) system that is not numerically positive
        definite.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(5, 8))
    >>> s = 0.5 * np.eye(8) + 2.0 * x.T @ x
    >>> bool(np.allclose(shrunk_inverse_ones(x, 0.5, 2.0), np.linalg.solve(s, np.ones(8))))
    True
    """
    x = np.asarray(x, dtype=np.float64)
    if not (a > 0.0 and b >= 0.0):
        raise DataError(f"S = a I + b X'X needs a > 0 and b >= 0, got a={a!r}, b={b!r}.")
    if b == 0.0 or not x.size:
        return np.full(x.shape[1], 1.0 / a)
    t = _woodbury(x @ x.T, a, b, x.shape[1], x.__matmul__, x.T.__matmul__)
    if t is None:
        raise DataError("the Woodbury system c I + X X' is not numerically positive definite.")
    return t


class RollingMoments:
    """The last ``window`` rows of returns and their moments, updated one row at a time.

    Parameters
    ----------
    window : int
        Returns in the window (>= 2).
    recompute_every : int
        Rebuild the sums exactly from the window after this many pushes (>= 1).

    Attributes
    ----------
    n_assets : int
    pushes_ : int
        Rows pushed since :meth:`start`.

    Examples
    --------
    >>> r = np.random.default_rng(0).normal(0, 0.01, (300, 4))
    >>> m = RollingMoments(126).start(r[:126])
    >>> for row in r[126:]:
    ...     m.push(row)
    >>> from neuralfolio.risk import ledoit_wolf
    >>> bool(np.allclose(m.ledoit_wolf()[0], ledoit_wolf(r[-126:])[0], rtol=1e-12, atol=0))
    True
    """

    def __init__(self, window: int, *, recompute_every: int = RECOMPUTE_EVERY) -> None:
        if int(window) < 2:
            raise ConfigError(f"a rolling window needs >= 2 returns, got {window}.")
        if int(recompute_every) < 1:
            raise ConfigError(f"recompute_every must be >= 1 push, got {recompute_every}.")
        self.window = int(window)
        self.recompute_every = int(recompute_every)

    # ----------------------------------------------------------------- building
    def start(self, returns: np.ndarray) -> RollingMoments:
        """Begin from the last ``window`` rows of ``returns``, shape (>= window, n_assets).

        Raises
        ------
        InsufficientHistoryError
            Fewer than ``window`` rows.
        DataError
            Non-finite returns.
        """
        r = np.asarray(returns, dtype=np.float64)
        if r.ndim != 2:
            raise DataError(f"returns must be a (n_obs, n_assets) array, got shape {r.shape}.")
        if len(r) < self.window:
            raise InsufficientHistoryError(
                f"{len(r)} returns, but a window of {self.window} needs at least "
                f"{self.window}.")
        r = r[-self.window:]
        if not np.isfinite(r).all():
            raise DataError("returns hold a non-finite value; fill or drop it first.")
        self.n_assets = r.shape[1]
        self._raw = np.array(r, order="C")  # ring buffer of the window's returns
        self._tmp = np.empty((self.n_assets, self.n_assets))  # outer products
        self._head = 0  # slot of the oldest row
        self.pushes_ = 0
        self._rebuild()
        return self

    def _rebuild(self) -> None:
        """Exact sums from the window (and a new shift: the window's mean)."""
        raw = self._raw
        self._shift = raw.mean(axis=0)
        y = raw - self._shift
        self._a = np.einsum("ij,ij->i", y, y)
        self._s = y.sum(axis=0)
        self._p = y.T @ y
        self._q = self._a @ y
        self._a1 = float(self._a.sum())
        self._a2 = float(self._a @ self._a)
        self._since = 0
        # K = Y Y' of the shifted rows, in slot order, for the Woodbury solve: built on
        # first use after a rebuild (a new shift), then kept by rows (slots pushed since)
        self._gram: np.ndarray | None = None
        self._stale: list[int] = []

    def push(self, returns: np.ndarray, *, check: bool = True) -> None:
        """Add one row of returns, shape (n_assets,), and drop the oldest.

        Parameters
        ----------
        returns : ndarray, shape (n_assets,)
        check : bool
            Check the row's length and values (a caller that has checked them skips it).

        Raises
        ------
        DataError
            Wrong length or non-finite values (nothing changes).
        """
        r = np.asarray(returns, dtype=np.float64)
        if check:
            if r.shape != (self.n_assets,):
                raise DataError(f"a row of returns must have {self.n_assets} values, got "
                                f"shape {r.shape}.")
            if not math.isfinite(r.sum()):
                raise DataError("the new returns hold a non-finite value; nothing was "
                                "changed.")
        i = self._head
        old_y = self._raw[i] - self._shift
        self._raw[i] = r
        self._head = (i + 1) % self.window
        self.pushes_ += 1
        self._since += 1
        if self._since >= self.recompute_every:
            self._rebuild()
            return
        new_y = r - self._shift
        a_old, a_new = self._a[i], float(new_y @ new_y)
        self._a[i] = a_new
        self._s += new_y
        self._s -= old_y
        _rank1(self._p, 1.0, new_y, self._tmp)
        _rank1(self._p, -1.0, old_y, self._tmp)
        self._q += a_new * new_y - a_old * old_y
        self._a1 += a_new - a_old
        self._a2 += a_new * a_new - a_old * a_old
        if self._gram is not None:
            if len(self._stale) < self.window // 4:
                self._stale.append(i)
            else:  # cheaper to rebuild than to catch up
                self._gram = None

    # ----------------------------------------------------------------- reading
    def returns(self) -> np.ndarray:
        """The window's returns, oldest first, shape (window, n_assets) (a copy)."""
        h = self._head
        return np.concatenate([self._raw[h:], self._raw[:h]]) if h else self._raw.copy()

    def mean(self) -> np.ndarray:
        """Mean returns of the window, shape (n_assets,)."""
        return self._shift + self._s / self.window

    def _centered(self) -> tuple[np.ndarray, np.ndarray]:
        inv_w = 1.0 / self.window
        m = self._s * inv_w
        sample = self._p * inv_w
        _rank1(sample, -1.0, m, self._tmp)
        return m, sample

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """Sample covariance of the window, shape (n_assets, n_assets); ``ddof=1`` as
        :func:`~neuralfolio.risk.sample_covariance`."""
        _, s = self._centered()
        return s * (self.window / (self.window - ddof)) if ddof else s

    def variances(self, ddof: int = 1) -> np.ndarray:
        """Diagonal of :meth:`covariance`, shape (n_assets,), in O(n_assets)."""
        m = self._s / self.window
        v = np.diagonal(self._p) / self.window - m * m
        return v * (self.window / (self.window - ddof)) if ddof else v

    def ledoit_wolf(self) -> tuple[np.ndarray, float]:
        """Ledoit-Wolf covariance of the window and its shrinkage intensity, as
        :func:`~neuralfolio.risk.ledoit_wolf` computes them from the window's returns.

        Returns
        -------
        covariance : ndarray, shape (n_assets, n_assets)
        shrinkage : float
        """
        sample, shrinkage, mu = self.ledoit_wolf_terms()
        return _shrunk(sample, shrinkage, mu), shrinkage

    def ledoit_wolf_terms(self) -> tuple[np.ndarray, float, float]:
        """The parts of the Ledoit-Wolf covariance ``S = (1 - shrinkage) C + shrinkage mu I``
        of the window (:meth:`ledoit_wolf` without forming ``S``).

        Returns
        -------
        sample : ndarray, shape (n_assets, n_assets)
            ``C``, the sample covariance with ``ddof=0`` (a new array).
        shrinkage : float
        mu : float
            Average variance of ``C``, ``trace(C) / n_assets``.
        """
        w, n = self.window, self.n_assets
        m, sample = self._centered()
        mm = float(m @ m)
        # sum_k |y_k - m|^4 from the running sums (see the module docstring)
        beta_sum = (self._a2 + 4.0 * float(m @ (self._p @ m)) - 4.0 * float(self._q @ m)
                    + 2.0 * mm * self._a1 - 3.0 * w * mm * mm)
        mu = (self._a1 / w - mm) / n  # trace(sample) / n
        delta_sum = float(np.vdot(sample, sample))
        beta = (beta_sum / w - delta_sum) / (n * w)
        delta = (delta_sum - n * mu * mu) / n
        beta = min(beta, delta)
        shrinkage = beta / delta if beta > 0 and delta > 0 and n > 1 else 0.0
        return sample, shrinkage, mu

    def _gram_matrix(self, y: np.ndarray | None = None) -> np.ndarray:
        """``K = Y Y'`` of the shifted window rows in slot order, shape (W, W), brought up
        to date (rows of the slots pushed since its last use, or rebuilt); ``y``: the
        shifted rows ``Y``, shape (W, n_assets), if already formed."""
        if y is None:
            y = self._raw - self._shift
        if self._gram is None:
            self._gram = y @ y.T
        elif self._stale:
            k, slots = self._gram, self._stale
            rows = y[slots] @ y.T
            k[slots] = rows
            k[:, slots] = rows.T
        self._stale = []
        return self._gram

    def unconstrained_weights(self, method: SolveMethod = "auto", *,
                              terms: tuple[np.ndarray, float, float] | None = None,
                              covariance: np.ndarray | None = None) -> np.ndarray:
        """Unconstrained minimum-variance weights ``S^-1 1 / 1'S^-1 1`` of the window's
        Ledoit-Wolf covariance ``S``.

        Parameters
        ----------
        method : {"auto", "woodbury", "direct"}
            ``"direct"``: ``np.linalg.solve`` on ``S``, O(n^3). ``"woodbury"``: the
            (W, W) system of the module docstring on the window's centred returns,
            O(W n + W^3) a step; it falls back to the direct solve when the shrinkage is 0
            (below 1e-12: no identity part to invert) or its system is not numerically
            definite.
            ``"auto"``: Woodbury when :func:`woodbury_is_cheaper`. All give the same
            weights to rounding (about 1e-13 relative for a well-conditioned ``S``).
        terms : tuple, optional
            :meth:`ledoit_wolf_terms` of the current window, if already computed (not
            changed).
        covariance : ndarray, shape (n_assets, n_assets), optional
            The window's Ledoit-Wolf covariance, if already formed (the direct solve reads
            it instead of forming it).

        Returns
        -------
        ndarray, shape (n_assets,)
            Sums to 1.
        """
        if method not in ("auto", "woodbury", "direct"):
            raise ConfigError(f"method must be 'auto', 'woodbury' or 'direct', got "
                              f"{method!r}.")
        w, n = self.window, self.n_assets
        sample, shrinkage, mu = terms if terms is not None else self.ledoit_wolf_terms()
        if method == "auto":
            method = "woodbury" if woodbury_is_cheaper(n, w) else "direct"
        if method == "woodbury" and shrinkage > _MIN_SHRINKAGE and mu > 0.0:
            if shrinkage >= 1.0:  # S = mu I
                return np.full(n, 1.0 / n)
            m = self._s / w  # mean of the shifted rows: X = Y - 1 m'
            y = self._raw - self._shift
            g = y @ m
            gram = self._gram_matrix(y) - g[:, None]
            gram -= g
            gram += m @ m

            def x_dot(v: np.ndarray) -> np.ndarray:  # X v = Y v - (m'v) 1
                return y @ v - float(m @ v)

            def xt_dot(z: np.ndarray) -> np.ndarray:  # X'z = Y'z - m (1'z)
                return z @ y - float(z.sum()) * m

            t = _woodbury(gram, shrinkage * mu, (1.0 - shrinkage) / w, n, x_dot, xt_dot)
            if t is not None:
                t /= t.sum()
                return t
        if covariance is None:
            covariance = _shrunk(sample.copy(), shrinkage, mu)
        u = np.linalg.solve(covariance, np.ones(n))
        return u / u.sum()
