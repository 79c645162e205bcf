"""From scores at instants to detections, the way a rule on ``detector.<name>`` decides.

Used by evaluation to count detections offline; live, the rules engine does this from
``detector_scores``. Per sensor, over the aligned instants: the condition is ``score >=
threshold``; a detection fires once it has held for ``for_s`` seconds (at the first instant
where it has), and the sensor stays firing until the score falls below ``clear_below`` (the
hysteresis of a rule's ``clear``). No data counts as a score of 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["firing_instants"]


def firing_instants(
    values: np.ndarray, instants: np.ndarray, threshold: float, for_s: float, clear_below: float
) -> list[tuple[int, float]]:
    """``(row, instant)`` of every detection in ``values`` (rows: sensors, columns: instants).

    ``instants`` are UTC seconds, evenly spaced; NaN values count as 0.
    """
    out: list[tuple[int, float]] = []
    if not values.size:
        return out
    step = float(instants[1] - instants[0]) if len(instants) > 1 else 1.0
    need = int(np.ceil(for_s / step - 1e-9))
    v = np.nan_to_num(values, nan=0.0)
    hot = v >= threshold
    for row in np.flatnonzero(hot.any(axis=1)):
        cond = hot[row]
        clear = v[row] < clear_below
        i, n = 0, len(cond)
        while i < n:
            starts = np.flatnonzero(cond[i:])
            if not len(starts):
                break
            a = i + int(starts[0])
            breaks = np.flatnonzero(~cond[a:])
            run_end = a + int(breaks[0]) if len(breaks) else n
            fire = a + need
            if fire >= run_end:
                i = run_end
                continue
            out.append((int(row), float(instants[fire])))
            cleared = np.flatnonzero(clear[fire:])
            i = fire + int(cleared[0]) if len(cleared) else n
    return out
