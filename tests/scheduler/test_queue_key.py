"""The scheduler's queue orders tasks by priority through packed int keys."""

from __future__ import annotations

import itertools
import random

from shoal.scheduler._transitions import queue_key


def test_packed_keys_order_as_the_priority_tuples_do() -> None:
    rng = random.Random(14)
    seconds = [0, 1, 2, 5, 2**25, 2**26 - 2]
    thirds = [0, 1, 2, 5, 2**21, 2**22 - 2]
    firsts = [-2048, -3, -1, 0, 1, 7, 2047]
    prios: list[tuple[int, ...]] = []
    for _ in range(400):
        n = rng.randint(1, 3)
        prios.append((rng.choice(firsts), rng.choice(seconds), rng.choice(thirds))[:n])
    prios += [(1,), (1, 0), (1, 0, 0), (0, 2**26 - 2, 2**22 - 2), (1, 0, 0), (2047,)]
    for a, b in itertools.product(prios, repeat=2):
        ka, kb = queue_key(a), queue_key(b)
        assert ka is not None and kb is not None
        assert (ka < kb) == (a < b) and (ka == kb) == (a == b), (a, b)
        assert ka < 2**60  # a two-digit int: 32 bytes per queued task


def test_priorities_it_cannot_pack_are_none() -> None:
    for p in [(), (1, 2, 3, 4), (1, -1), (1, 2**26 - 1), (0, 0, 2**22 - 1), (2048,), (-2049,),
              (1.5, 0), (True, 0), [0, 1, 2], (0, "a"), 3, None]:
        assert queue_key(p) is None, p
