"""Incremental runs: a second ``archive`` of a source takes only what is new or changed.

An item's identity is its path relative to the source root, within the
disc sets made from that same source (``disc_sets.source``, the resolved
folder). Against the latest recorded version of that path an item is:

``new``
    never recorded from this source: it gets version 1;
``changed``
    recorded, with another SHA-256: a new version (the latest + 1). The
    older version's row and its discs stay in the inventory, untouched;
``unchanged``
    recorded with the same SHA-256 on a set that still exists in the
    inventory (``archived``, or ``mastered``/``failed`` and so waiting for
    ``discarchive verify``/``burn``): it is not archived again.

Sets that are not yet archived are named in :attr:`Delta.unfinished` so the
operator is told to finish them rather than seeing their items archived
twice. Only SHA-256 decides "changed": a file touched but not changed is
not archived again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inventory.store import Inventory
from manifests.catalog import Item


@dataclass
class Delta:
    """How a scanned source compares with what the inventory holds from it.

    ``new`` and ``changed`` are the items to archive, in scan order;
    ``versions`` maps each of their paths to the version number its row
    gets; ``unchanged`` counts the items already on disc sets;
    ``unfinished`` lists the IDs of sets holding unchanged items that are
    not yet ``archived``.
    """

    new: list[Item] = field(default_factory=list)
    changed: list[Item] = field(default_factory=list)
    unchanged: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    order: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def to_archive(self) -> list[Item]:
        """The new and changed items, in the order they were scanned."""
        return sorted(self.new + self.changed, key=lambda i: self.order[i.path])


def recorded_versions(inv: Inventory, source: str) -> dict[str, tuple[int, str, str, str]]:
    """The latest recorded version of each path archived from ``source``.

    ``source`` is the resolved source folder as stored in
    ``disc_sets.source``. Returns ``{path: (version, sha256, set_id,
    set_state)}``; an inventory made before versions were kept counts every
    row as version 1.
    """
    latest: dict[str, tuple[int, str, str, str]] = {}
    rows = inv.db.execute(
        "SELECT i.path, COALESCE(i.version, 1), i.sha256, i.set_id, s.state FROM items i "
        "JOIN disc_sets s USING (set_id) WHERE s.source = ? ORDER BY i.id", [source])
    for path, version, sha, set_id, state in rows:
        if path not in latest or version >= latest[path][0]:
            latest[path] = (version, sha, set_id, state)
    return latest


def split(inv: Inventory, source: str, items: list[Item]) -> Delta:
    """Sort scanned ``items`` of ``source`` into new, changed and unchanged (see the module)."""
    latest = recorded_versions(inv, source)
    delta = Delta()
    unfinished: set[str] = set()
    for n, item in enumerate(items):
        delta.order[item.path] = n
        known = latest.get(item.path)
        if known is None:
            delta.new.append(item)
            delta.versions[item.path] = 1
        elif known[1] != item.sha256:
            delta.changed.append(item)
            delta.versions[item.path] = known[0] + 1
        else:
            delta.unchanged += 1
            if known[3] != "archived":
                unfinished.add(known[2])
    delta.unfinished = sorted(unfinished)
    return delta
