"""The inputs listed with a task's error: an input that cannot be read says why, instead
of a bare '<unavailable>' that swallows the reason."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from shoal.protocol._serialize import dumps
from shoal.worker._events import Execute
from shoal.worker._execute import _inputs_summary


class _UnreadableStore(MutableMapping[Any, Any]):
    """A data store whose one spilled value cannot be read back (a full or broken disk)."""

    def __getitem__(self, key: Any) -> Any:
        if key == "spilled":
            raise OSError("[Errno 5] Input/output error: 'spill/spilled'")
        return [1, 2, 3]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise NotImplementedError

    def __delitem__(self, key: Any) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return iter(["kept", "spilled"])

    def __len__(self) -> int:
        return 2


def test_an_input_that_cannot_be_read_names_the_error() -> None:
    cmd = Execute("task", dumps(len), 0, False, ("kept", "spilled"))
    summary = _inputs_summary(cmd, _UnreadableStore())
    assert summary[0] == "'kept': list [1, 2, 3]"
    assert summary[1].startswith("'spilled': <unavailable: OSError: [Errno 5] Input/output error")
