"""Counter-based random numbers: the value for (sensor, step, stream) never depends on other sensors.

A seeded ``numpy`` generator hands out numbers in draw order, so adding one bin would shift every
other bin's noise. Here each number is a hash of the sensor's 64-bit key, a counter (the step's
time in seconds, or an attribute number) and a stream id, so a sensor's readings depend only on
its own key: the fleet composition, the step order and the number of sensors leave them unchanged.
The hash is SplitMix64's finaliser, vectorised over ``uint64`` arrays (wrap-around is intended).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["key_of", "mix64", "normal", "normals", "uniform", "uniforms"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
# 53 random mantissa bits scaled to [0, 1): the usual float64 construction.
_TO_UNIT = 1.0 / float(1 << 53)
_MASK64 = (1 << 64) - 1
#: The second uniform stream of a Box–Muller pair is the first one shifted by this.
_PAIR = 0x5BD1E995


def key_of(*parts: object) -> int:
    """A stable 64-bit key for the given parts (same parts, same key, on every platform)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of a ``uint64`` array: a bijection that scatters nearby inputs."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _offset(counter: int, stream: int) -> int:
    return ((counter * 0x9E3779B97F4A7C15) + (stream * 0xD1B54A32D192ED03)) & _MASK64


def uniform(keys: np.ndarray, counter: int, stream: int) -> np.ndarray:
    """Uniform floats in [0, 1), one per key, for this ``counter`` and ``stream``."""
    return uniforms(keys, counter, (stream,))[0]


def uniforms(keys: np.ndarray, counter: int, streams: Sequence[int]) -> np.ndarray:
    """``uniform`` for several streams at once: shape ``(len(streams), len(keys))``.

    One vectorised pass instead of one per stream: per-call overhead, not arithmetic, is what
    a step of a small fleet costs.
    """
    offsets = np.array([_offset(counter, s) for s in streams], dtype=np.uint64)[:, None]
    # uint64 array arithmetic wraps silently, which is what the hash wants.
    x = mix64(keys[None, :] + offsets)
    return (x >> _S11).astype(np.float64) * _TO_UNIT


def normal(keys: np.ndarray, counter: int, stream: int) -> np.ndarray:
    """Standard normal floats, one per key (Box–Muller over two uniform streams)."""
    return normals(keys, counter, (stream,))[0]


def normals(keys: np.ndarray, counter: int, streams: Sequence[int]) -> np.ndarray:
    """``normal`` for several streams at once: shape ``(len(streams), len(keys))``."""
    u = uniforms(keys, counter, [*streams, *(s + _PAIR for s in streams)])
    u1, u2 = u[: len(streams)], u[len(streams) :]
    # 1 - u1 is in (0, 1], so the logarithm is finite.
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
