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
not archived again. A run hashes before comparing only the files recorded
with the same size (:func:`hashed_first`); every other file is hashed once,
as it is written into its image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

from inventory.store import Inventory
from manifests.arrange import Arrangement, Group
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


class Recorded(NamedTuple):
    """The latest recorded version of one path: its number, content and where it is."""

    version: int
    sha256: str
    size: int
    set_id: str          # the image (disc_sets.set_id) that holds it
    set_state: str


def recorded_versions(db, source: str) -> dict[str, Recorded]:
    """The latest recorded version of each path archived from ``source``.

    ``db`` is the inventory's connection (sqlite3 or sqlite-utils, read-only
    is enough); ``source`` the resolved source folder as stored in
    ``disc_sets.source``. Returns ``{path: Recorded}``; an inventory made
    before versions were kept counts every row as version 1.
    """
    latest: dict[str, Recorded] = {}
    has_version = any(r[1] == "version" for r in db.execute("PRAGMA table_info(items)"))
    rows = db.execute(
        f"SELECT i.path, {'COALESCE(i.version, 1)' if has_version else '1'}, i.sha256, i.size, "
        "i.set_id, s.state FROM items i JOIN disc_sets s USING (set_id) WHERE s.source = ? "
        "ORDER BY i.id", [source])
    for path, version, sha, size, set_id, state in rows:
        if path not in latest or version >= latest[path].version:
            latest[path] = Recorded(version, sha, size, set_id, state)
    return latest


def hashed_first(latest: dict[str, Recorded]) -> Callable[[str, int], bool]:
    """Which files an archive run hashes before :func:`split`, as ``scan``'s ``hashing``.

    ``latest`` is :func:`recorded_versions`. Only a path recorded from
    this source with the same size needs its SHA-256 to tell unchanged
    from changed; a new path, or one whose size changed, is archived
    whatever its content, and is hashed once, as its bytes are written
    into the image (mastering.iso.Layout.write). Returns ``f(path,
    size_in_bytes) -> bool``.
    """
    def wanted(path: str, size: int) -> bool:
        known = latest.get(path)
        return known is not None and known.size == size
    return wanted


def split(inv: Inventory, source: str, items: list[Item],
          latest: dict[str, Recorded] | None = None) -> Delta:
    """Sort scanned ``items`` of ``source`` into new, changed and unchanged.

    An item needs its SHA-256 only where :func:`hashed_first` says so; one
    without (``sha256`` empty) is new, or changed when its path is
    recorded. ``latest`` is :func:`recorded_versions` when the caller
    has it already.
    """
    if latest is None:
        latest = recorded_versions(inv.db, source)
    delta = Delta()
    unfinished: set[str] = set()
    for n, item in enumerate(items):
        delta.order[item.path] = n
        known = latest.get(item.path)
        if known is None:
            delta.new.append(item)
            delta.versions[item.path] = 1
        elif known.sha256 != item.sha256:
            delta.changed.append(item)
            delta.versions[item.path] = known.version + 1
        else:
            delta.unchanged += 1
            if known.set_state != "archived":
                unfinished.add(known.set_id)
    delta.unfinished = sorted(unfinished)
    return delta


def likely(db, source: str, items: list[Item]) -> tuple[set[str], int]:
    """For planning without hashing: the paths an ``archive`` run would take, and how many not.

    A path never recorded from ``source``, or recorded with another size,
    is taken; one recorded with the same size is counted as unchanged (the
    archive run hashes it to be sure, so the plan may show fewer files
    than the run archives when a file changed but kept its size).
    """
    latest = recorded_versions(db, source) if db is not None else {}
    wanted = {i.path for i in items
              if i.path not in latest or latest[i.path].size != i.size}
    return wanted, len(items) - len(wanted)


def only(arrangement: Arrangement, wanted: set[str]) -> Arrangement:
    """``arrangement`` with only the items whose paths are in ``wanted``, empty groups dropped.

    When no record is wanted but some non-record file is (a changed source
    catalog, say), they go on a set of their own, as a source without
    records does.
    """
    groups = [replace(g, items=[i for i in g.items if i.path in wanted])
              for g in arrangement.groups]
    others = [i for i in arrangement.others if i.path in wanted]
    kept = [g for g in groups if g.items]
    if not kept and others and groups:
        kept = [Group(groups[0].fonds, groups[0].year, "")]
    return replace(arrangement, groups=kept, others=others)
