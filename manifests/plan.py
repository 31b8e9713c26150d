"""Disc planning: which records go onto which disc of which set, before anything is written.

A *set* is what one archive run makes of one group of
:mod:`manifests.arrange` (one fonds, one year, one side 收/支); its discs
are numbered k of n, and each disc is a self-contained bag. Packing rules,
in the group's archival order:

1. a unit's records of the year (一户一档) stay on one disc, unless they
   alone exceed a disc; then the split falls between categories, and a
   category that alone exceeds a disc is split between items;
2. discs are filled in order; when the next block no longer fits, later
   blocks that do fit are moved up to fill the disc (so a disc may hold a
   few units from further on: :attr:`DiscPlan.ranges` lists its runs);
3. the files of the source that are not records (its catalog, a README)
   go onto every set, on its first disc with room for them (a disc of
   their own at the end when none has room).

Fit is decided with :class:`manifests.imagesize.Bound` (an upper bound of
the image size). Each disc's image size is then predicted exactly with
:func:`manifests.imagesize.image_sectors`, tag files included (manifest,
tag manifest, bag-info, catalog, 说明文件, signature, public key), unless
the bound is provably within 0.4 % of it (:func:`lower_bound`), as on any
disc of a few GB: then the bound is the prediction. Planning reads sizes
only: nothing is hashed or written.
"""

from __future__ import annotations

import datetime as dt
import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .arrange import Arrangement, Group
from .bag import (DESCRIPTION_NAME, DiscInfo, bag_info, catalog_row, csv_bytes, manifest_line,
                  tag_files, tag_sizes)
from .catalog import CATALOG_NAME, Item
from .imagesize import _FIXED as IMAGE_FIXED
from .imagesize import SECTOR, Bound, image_size


@contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector while a plan is made.

    Planning allocates a few objects per item and frees almost none until
    it ends; each full collection walks every live object, so with 365,245
    items the collector alone costs more than the planning (see
    docs/BENCHMARKS.md). Reference counting still frees everything; the
    collector runs again afterwards.

    What the paused block made and still holds (the items, the plan) is
    long-lived: on leaving, every tracked object is moved to the oldest
    generation at once (``gc.freeze()`` then ``gc.unfreeze()``), so that the
    next young collection does not walk each of them (0.3 s for 365,245
    items); a full collection still looks at them, cycles included.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()         # every generation into the permanent one...
        gc.unfreeze()       # ...and that into the oldest
        if was:
            gc.enable()


class PlanError(Exception):
    """The records cannot be planned onto this medium; the message says what to do."""


# Tag files and what the bound reserves for them (bytes): manifest and catalog grow per item.
_SMALL_TAGS = {"bagit.txt": SECTOR, "bag-info.txt": SECTOR, DESCRIPTION_NAME: 2 * SECTOR,
               "signing-key.pub": SECTOR, "tagmanifest-sha256.txt": SECTOR,
               "tagmanifest-sha256.txt.sig": SECTOR}
_CATALOG_HEADER = 80 + 3 * 16


@dataclass
class DiscPlan:
    """One disc of a set: its items in disc order and its predicted image size.

    ``sectors`` is the predicted image size in 2048-byte sectors: exact
    (see manifests.imagesize), or when ``exact`` is False an upper bound
    at most 0.4 % above it; ``capacity`` the medium's sectors. ``ranges``
    lists the runs of the set's archival order on this disc as (first
    archival code, last archival code, records).
    """

    volume: int
    items: list[Item]
    sectors: int = 0
    capacity: int = 0
    disc_id: str = ""
    ranges: list[tuple[str, str, int]] = field(default_factory=list)
    exact: bool = True            # False: ``sectors`` is an upper bound within 0.4 %

    @property
    def records(self) -> list[Item]:
        return [i for i in self.items if i.is_record]

    @property
    def payload_bytes(self) -> int:
        return sum(i.size for i in self.items)

    @property
    def fill(self) -> float:
        """Predicted image sectors / medium sectors."""
        return self.sectors / self.capacity if self.capacity else 0.0


@dataclass
class SetPlan:
    """The discs one group becomes: ``group_id`` (e.g. 160-2024-S01) and its discs 1..n."""

    group: Group
    group_id: str
    discs: list[DiscPlan]


@dataclass
class Plan:
    """Every set an archive run would make, with the arrangement's problems."""

    media: str
    capacity: int
    sets: list[SetPlan]
    arrangement: Arrangement
    unchanged: int = 0     # files left out: already archived from this source (incremental run)
    warnings: list[str] = field(default_factory=list)  # what `archive` would warn of too
    notes: list[str] = field(default_factory=list)     # what was and was not checked

    @property
    def problems(self):
        return self.arrangement.problems

    def to_dict(self) -> dict:
        """The plan as JSON-ready data (``discarchive plan --json``)."""
        return {
            "media": self.media, "capacity_sectors": self.capacity,
            "unchanged_files": self.unchanged,
            "warnings": list(self.warnings), "notes": list(self.notes),
            "problems": [{"kind": p.kind, "where": p.where, "text": p.text}
                         for p in self.problems],
            "sets": [{
                "set_id": s.group_id, "fonds": s.group.fonds, "year": s.group.year,
                "side": s.group.side, "discs": [{
                    "disc": d.disc_id, "volume": d.volume, "volumes": len(s.discs),
                    "records": len(d.records), "files": len(d.items),
                    "first": d.ranges[0][0] if d.ranges else None,
                    "last": d.ranges[-1][1] if d.ranges else None,
                    "item_numbers": _numbers(d.records),
                    "ranges": [list(r) for r in d.ranges],
                    "payload_bytes": d.payload_bytes, "sectors": d.sectors,
                    "sectors_exact": d.exact,
                    "fill": round(d.fill, 4)} for d in s.discs]} for s in self.sets]}


def _numbers(records: list[Item]) -> list[str]:
    """起止件号: first and last item number on the disc, in archival order."""
    nums = [i.item_number for i in records if i.item_number]
    return [nums[0], nums[-1]] if nums else []


Sizes = dict
"""Per item (by id, while the items live) during one planning run: (manifest line
bytes, catalog row bytes, Bound.file_cost, the item's packing cost in sectors)."""


def _measure(i: Item) -> tuple[int, int, float, float]:
    """One item's :data:`Sizes` entry.

    The manifest line (:func:`~manifests.bag.manifest_line`) and catalog row
    (``csv_bytes(catalog_row(i))``) are counted, not written: when no field
    needs escaping, their UTF-8 length is the sum of their fields' lengths
    plus separators (planning 365,245 items formatted each line and row only
    to take its length). Fields with ``%``, CR or LF (percent-encoded in the
    manifest) or ``,`` or ``"`` (quoted in the CSV) take the writers' path.
    tests/test_plan.py checks both ways give the writers' lengths.
    """
    path = i.path
    path_bytes = len(path.encode("utf-8"))
    data_path = path_bytes + 5                             # "data/" + path
    digest = len(i.sha256) if i.sha256 else 64            # hex: one byte a character
    odd_path = "%" in path or "\r" in path or "\n" in path
    if odd_path:
        manifest = len(manifest_line(i).encode("utf-8"))
    else:
        manifest = digest + 2 + data_path + 1              # "<sha256>  data/<path>\n"
    row = 0
    if i.is_record:
        # catalog_row's text fields in its order but the path (counted already);
        # \x1f stands for the comma (one byte each)
        text = "\x1f".join((i.item_number or "", i.archival_code or "", i.responsible or "",
                             i.unit_code or "", i.title or "", i.date or "", i.pages or "",
                             i.classification or "", i.retention or "", i.category or "",
                             i.flow or "", i.remarks or ""))
        if (odd_path or "," in path or '"' in path
                or "," in text or '"' in text or "\n" in text or "\r" in text):
            row = csv_bytes(catalog_row(i))
        else:     # + ",<path>,data/<path>,<size>,<sha256>\n"
            row = (len(text.encode("utf-8")) + 1 + path_bytes + 1 + data_path + 1
                   + len(str(i.size)) + 1 + digest + 1)
    file_cost = Bound.file_cost(path.rpartition("/")[2], i.size)
    return manifest, row, file_cost, file_cost + (manifest + row) / SECTOR


def _sizes(i: Item, cache: Sizes) -> tuple[int, int, float, float]:
    got = cache.get(id(i))
    if got is None:
        got = cache[id(i)] = _measure(i)
    return got


@dataclass
class _Block:
    items: list[Item]
    cost: float
    dirs: dict[str, float]        # folder -> Bound.dir_cost


def _block(items: list[Item]) -> _Block:
    """A packing block of ``items`` (a run of a group): their packing cost, their folders.

    Each item is measured here and not kept (:data:`Sizes` would hold one entry an
    item, only to be read back for the few that are blocked again, category by
    category or item by item)."""
    cost, dirs = 0.0, {}
    measure = _measure
    last = None                     # the previous item's folder and its "/" ("" at the root)
    for i in items:
        cost += measure(i)[3]
        path = i.path
        if last is not None and path.startswith(last) and path.find("/", len(last)) < 0:
            continue                # in the previous item's folder: counted already
        last = path[:path.rfind("/") + 1]
        parent = ("data/" + path).rpartition("/")[0]
        while parent and parent not in dirs:
            dirs[parent] = Bound.dir_cost(parent)
            parent = parent.rpartition("/")[0]
    return _Block(items, cost, dirs)


class _Disc:
    """A disc being filled, with the running upper bound of its image."""

    def __init__(self):
        self.bound = Bound()
        for name, size in _SMALL_TAGS.items():
            self.bound.add(name, size)
        self.bound.add("manifest-sha256.txt", 0)
        self.bound.add(CATALOG_NAME, _CATALOG_HEADER)
        self.bound.total += 2          # the two growing tag files' last sectors
        self.blocks: list[_Block] = []

    def cost(self, b: _Block) -> float:
        have = self.bound.dirs
        return b.cost + sum(c for d, c in b.dirs.items() if d not in have)

    def fits(self, b: _Block, capacity: int) -> bool:
        return self.bound.total + self.cost(b) < capacity

    def add(self, b: _Block) -> None:
        self.bound.total += self.cost(b)
        self.bound.dirs.update(b.dirs)
        self.blocks.append(b)


def _blocks(group: Group, capacity: int, media: str,
            exact: Callable[[list[Item]], int] | None = None) -> list[_Block]:
    """The group's packing blocks: whole units, else their categories, else their items.

    A block fits when it fits an empty disc (see :func:`_alone`).
    """
    out: list[_Block] = []
    empty = _Disc()
    units: dict[str, list[Item]] = {}
    for i in group.items:
        units.setdefault(i.unit_code or "", []).append(i)
    for unit in units.values():
        b = _block(unit)
        if _alone(b, capacity, exact, empty):
            out.append(b)
            continue
        cats: dict[str, list[Item]] = {}
        for i in unit:
            cats.setdefault(i.category or "", []).append(i)
        for cat in cats.values():
            b = _block(cat)
            if _alone(b, capacity, exact, empty):
                out.append(b)
                continue
            for i in cat:
                b = _block([i])
                if not _alone(b, capacity, exact, empty):
                    raise PlanError(f"{i.path} is {i.size} bytes, more than a {media} disc "
                                    f"holds ({capacity} sectors of 2048 bytes with the bag): "
                                    "use a larger medium (--media)")
                out.append(b)
    return out


def _alone(b: _Block, capacity: int, exact: Callable[[list[Item]], int] | None,
           empty: _Disc) -> bool:
    """Whether block ``b`` fits an empty disc of ``capacity`` sectors: by the bound,
    else (when ``exact`` is given) by the exact image size of a disc holding only
    ``b``. The bound's margin for folders is large beside a small medium (a deep
    tree on a test's ``custom:`` size), so it alone must not refuse a block.
    ``empty`` is an empty :class:`_Disc` (made once by the caller)."""
    if empty.fits(b, capacity):
        return True
    return exact is not None and exact(b.items) <= capacity


def pack(group: Group, others: list[Item], capacity: int, media: str,
         exact: Callable[[list[Item]], int] | None = None) -> list[list[Item]]:
    """The group's items disc by disc (see the module docstring for the rules).

    ``exact(items)`` gives the exact image sectors of a disc holding only
    ``items``; with it, a block the bound alone would refuse is checked
    exactly and, when it fits, gets a disc of its own. Raises PlanError when
    one item, or the source's non-record files, cannot fit on an empty disc.
    """
    return [items for items, _ in _pack(group, others, capacity, media, exact=exact)]


def _pack(group: Group, others: list[Item], capacity: int, media: str,
          order: dict[int, int] | None = None,
          exact: Callable[[list[Item]], int] | None = None) -> list[tuple[list[Item], int]]:
    """:func:`pack`, each disc with its upper bound in sectors. ``order`` maps
    id(item) to its place in the group (made here when None)."""
    pending = _blocks(group, capacity, media, exact)
    extra = _block(others) if others else None
    discs: list[_Disc] = []
    while pending or not discs:
        disc = _Disc()
        n = 0
        if pending and not disc.fits(pending[0], capacity):   # fits alone, exactly (_alone)
            disc.add(pending[0])
            n = 1
        while n < len(pending) and disc.fits(pending[n], capacity):
            disc.add(pending[n])
            n += 1
        rest = []
        for b in pending[n:]:          # move later blocks up to fill the disc
            if disc.fits(b, capacity):
                disc.add(b)
            else:
                rest.append(b)
        pending = rest
        discs.append(disc)
    if extra is not None:
        if not _alone(extra, capacity, exact, _Disc()):
            raise PlanError(f"the files that are not records ({len(others)}, "
                            f"{sum(i.size for i in others)} bytes) do not fit on a {media} "
                            "disc: move them out of the source")
        # an empty disc takes it: it fits alone (_alone)
        home = next((d for d in discs if not d.blocks or d.fits(extra, capacity)), None)
        if home is None:
            home = _Disc()
            discs.append(home)
        home.add(extra)
    if order is None:
        order = {id(i): n for n, i in enumerate(group.items)}
    out = []
    for d in discs:
        # A group holds its records in archival order, a unit's together and within it a
        # category's, so each block (a unit, a category or one record) is a run of the
        # group: ordering the blocks by their first record orders the disc's records as
        # sorting every record would. The non-records' block goes last.
        blocks = sorted((b for b in d.blocks if b.items[0].is_record),
                        key=lambda b: order[id(b.items[0])])
        recs = [i for b in blocks for i in b.items]
        out.append((recs + [i for b in d.blocks for i in b.items if not i.is_record],
                    d.bound.sectors()))
    return out


BOUND_TOLERANCE = 0.004
"""How far above the image the packing bound may be to be reported as the size (0.4 %)."""


def lower_bound(items: list[Item]) -> int:
    """Sectors the image of ``items`` has at least: fixed areas, root folders, path
    tables, each file's File Entry and data, the eight tag files' (one sector each)."""
    return (IMAGE_FIXED + 3 + 8 + 2 * 8 + len(items)
            + sum(-(-i.size // SECTOR) for i in items))


def ranges(items: list[Item], group: Group, order: dict[int, int] | None = None
           ) -> list[tuple[str, str, int]]:
    """Runs of consecutive records of ``group`` among ``items``: (first 档号, last 档号, count).

    ``order`` maps id(item) to its place in the group (made here when None).
    """
    if order is None:
        order = {id(i): n for n, i in enumerate(group.items)}
    runs: list[list] = []
    for i in items:
        if not i.is_record:
            continue
        n = order[id(i)]
        if runs and runs[-1][3] == n - 1:
            runs[-1][1], runs[-1][2], runs[-1][3] = i.archival_code or i.path, runs[-1][2] + 1, n
        else:
            runs.append([i.archival_code or i.path, i.archival_code or i.path, 1, n])
    return [(a, b, c) for a, b, c, _ in runs]


def predict(items: list[Item], disc: DiscInfo, source_organization: str, fonds: str,
            side: str = "", key: Ed25519PrivateKey | None = None,
            bagging_date: dt.date | None = None, cache: Sizes | None = None) -> int:
    """The image size in sectors of the disc holding ``items`` (tag files included):
    exact, or an upper bound for the trees :func:`manifests.imagesize.image_size` names
    (:func:`predict_size` tells which). With ``key`` the tag files are rendered and signed as the bag will be;
    without, their sizes are computed (:func:`manifests.bag.tag_sizes`).
    """
    return predict_size(items, disc, source_organization, fonds, side, key, bagging_date,
                        cache)[0]


def predict_size(items: list[Item], disc: DiscInfo, source_organization: str, fonds: str,
                 side: str = "", key: Ed25519PrivateKey | None = None,
                 bagging_date: dt.date | None = None, cache: Sizes | None = None
                 ) -> tuple[int, bool]:
    """:func:`predict` and whether it is exact: (sectors, exact)."""
    info = bag_info(items, disc, source_organization, fonds, bagging_date, side)
    if key is not None:
        tags = {name: len(data) for name, data in tag_files(items, info, key).items()}
    else:
        cache = {} if cache is None else cache
        sizes = [_sizes(i, cache) for i in items]
        tags = tag_sizes(items, info, sum(s[0] for s in sizes), sum(s[1] for s in sizes))
    return image_size(list(tags.items()) + [("data/" + i.path, i.size) for i in items])


def make_plan(arrangement: Arrangement, media: str, capacity: int,
              next_number: Callable[[str, str, str], int], source_organization: str,
              bagging_date: dt.date | None = None) -> Plan:
    """Plan every set of ``arrangement`` onto ``media`` discs of ``capacity`` sectors.

    ``next_number(fonds, year, side_letter)`` gives the next free set number
    (the inventory's); set IDs are ``<fonds>-<year>-<S|Z|N><NN>`` and disc
    (image) IDs ``<set ID>-<kk>``. A disc's size is the packing bound when
    that is provably within BOUND_TOLERANCE of the image (it is not above
    :func:`lower_bound` by more), else the exact prediction: so a big disc
    costs no second pass over its files. Raises PlanError (see :func:`pack`).
    """
    sets = []
    cache: Sizes = {}
    used: dict[tuple[str, str, str], int] = {}
    for g in arrangement.groups:
        k = (g.fonds, g.year, g.letter)
        used[k] = used[k] + 1 if k in used else next_number(*k)
        group_id = f"{g.fonds}-{g.year}-{g.letter}{used[k]:02d}"
        order = {id(i): n for n, i in enumerate(g.items)}
        # a disc holding only the given items, with the longest Bag-Count a set can give
        def alone_sectors(items, g=g, group_id=group_id):
            return predict(items, DiscInfo(group_id, f"{group_id}-99", 99, 99),
                           source_organization, g.fonds, g.side, None, bagging_date, cache)
        packed = _pack(g, arrangement.others, capacity, media, order, alone_sectors)
        discs = []
        for v, (items, bound) in enumerate(packed, 1):
            disc_id = f"{group_id}-{v:02d}"
            if bound <= lower_bound(items) * (1 + BOUND_TOLERANCE):
                sectors, exact = bound, False
            else:
                info = DiscInfo(group_id, disc_id, v, len(packed))
                sectors, exact = predict_size(items, info, source_organization, g.fonds, g.side,
                                              None, bagging_date, cache)
            discs.append(DiscPlan(v, items, sectors, capacity, disc_id,
                                  ranges(items, g, order), exact))
        sets.append(SetPlan(g, group_id, discs))
    return Plan(media, capacity, sets, arrangement)
