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
"""

from __future__ import annotations

import math

import numpy as np

from neuralfolio.errors import ConfigError, DataError, InsufficientHistoryError

__all__ = ["RECOMPUTE_EVERY", "RollingMoments"]

RECOMPUTE_EVERY = 256
"""Pushes between exact rebuilds of the rolling sums (drift guard)."""


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
        self._raw = np.array(r)  # ring buffer of the window's returns
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
        p = self._p
        p += np.multiply.outer(new_y, new_y)
        p -= np.multiply.outer(old_y, old_y)
        self._q += a_new * new_y - a_old * old_y
        self._a1 += a_new - a_old
        self._a2 += a_new * a_new - a_old * a_old

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
        sample -= np.multiply.outer(m, m)
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
        sample *= 1.0 - shrinkage
        sample.flat[:: n + 1] += shrinkage * mu
        return sample, shrinkage
