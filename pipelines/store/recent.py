"""The few most recently used loaded models, by name, each loaded again when its files change.

Reward models and classifiers are loaded on demand (a second copy of the base model each), so
only the last two used stay in memory; a model retrained under the same name is noticed by its
stamp (where it is and when its meta.json was written) and loaded afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, load: Callable[[str], T], stamp: Callable[[str], Hashable], keep: int = 2) -> None:
        self._load, self._stamp, self._keep = load, stamp, keep
        self._items: OrderedDict[str, tuple[Hashable, T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> T:
        """The loaded model; `stamp` raises the caller's own error for a name that does not exist."""
        stamp = self._stamp(name)
        with self._lock:
            entry = self._items.get(name)
            if entry is not None and entry[0] == stamp:
                self._items.move_to_end(name)
                return entry[1]
            loaded = self._load(name)
            self._items[name] = (stamp, loaded)
            while len(self._items) > self._keep:
                self._items.popitem(last=False)
            return loaded
