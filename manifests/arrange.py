"""Archival arrangement: order, 收支 sides, retention and archival codes (DA/T 22-2015).

Records are ordered year -> insured unit -> business category (the
configured order, by default the seed's: 社保登记类, 参保人员类, 申报结算类,
保险关系转停类, 待遇类) -> item number (件号), and split into groups of one
fonds, one year and one side: collection (收, 征收) and payment (支, 支付)
records never share a group (收支两条线), hence never a disc. A group
becomes one disc set (see manifests.plan).

An archival code (档号) is ``全宗号-门类代码·年度-保管期限-机构(问题)代码-件号``,
e.g. ``160-SB·2023-Y-DJ-0001``; its *class* is everything before the item
number, and item numbers run from 0001 without gaps inside a class. Given
codes are checked against that form and against their row (year,
retention, 件号); missing ones are assigned from the record's year,
retention and category code, and a missing 件号 gets the next free number
of its class. Every problem is collected (:class:`~manifests.catalog.Problem`),
none stops the arrangement: the caller warns, or refuses under ``--strict``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from operator import itemgetter

from config import CATEGORY_CODES, CATEGORY_ORDER, RETENTION_CODES, SIDES
from .catalog import CATALOG_NAME, Item, Problem

ARCHIVAL_CODE = re.compile(
    r"^(?P<fonds>[0-9A-Za-z]{1,10})-(?P<klass>[A-Z]{1,4})·(?P<year>(?:19|20)\d\d)-"
    r"(?P<retention>Y|D100|D50|D30|D10)-(?P<org>[0-9A-Z]{1,8})-(?P<number>\d{4,6})$")
"""An archival code as DA/T 22-2015 writes it (the separator after 门类代码 is U+00B7 ·)."""

SIDE_WORDS = {"收": "收", "征收": "收", "支": "支", "支付": "支"}
SIDE_LETTERS = {"收": "S", "支": "Z", "": "N"}
"""Side of a group in disc set IDs: S 收 (shōu, collection), Z 支 (zhī, payment),
N for a group holding no records."""
_SIDE_RANK = {"收": 0, "支": 1}


@dataclass
class Settings:
    """How to arrange: the configured category order, sides, codes, retention map."""

    fonds: str = "160"
    class_code: str = "SB"
    category_order: tuple[str, ...] = CATEGORY_ORDER
    sides: dict[str, str] = field(default_factory=lambda: dict(SIDES))
    category_codes: dict[str, str] = field(default_factory=lambda: dict(CATEGORY_CODES))
    retention: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg) -> "Settings":
        """The settings of a :class:`config.Config`."""
        return cls(cfg.fonds, cfg.class_code, tuple(cfg.category_order), dict(cfg.sides),
                   dict(cfg.category_codes), dict(cfg.retention))


@dataclass
class Group:
    """The records of one fonds, year and side, in archival order: one disc set."""

    fonds: str
    year: str
    side: str                     # 收, 支, or "" for a group of non-records only
    items: list[Item] = field(default_factory=list)

    @property
    def letter(self) -> str:
        return SIDE_LETTERS[self.side]


@dataclass
class Arrangement:
    """Groups in order, the files that are not records, and every problem found."""

    groups: list[Group]
    others: list[Item]
    problems: list[Problem]
    assigned: int = 0             # archival codes discarchive assigned


def where(item: Item) -> str:
    """Where an item is described: its catalog line, else its path."""
    return f"{CATALOG_NAME} line {item.row}" if item.row else item.path


def side_of(item: Item, s: Settings) -> str:
    """收 or 支: the catalog's 收支 when filled, else the category's configured side (收 if none)."""
    if item.flow and item.flow in SIDE_WORDS:
        return SIDE_WORDS[item.flow]
    return s.sides.get(item.category or "", "收")


def arrange(items: list[Item], s: Settings, problems: list[Problem] | None = None,
            today: dt.date | None = None) -> Arrangement:
    """Order ``items``, split them into groups, check and assign archival codes.

    Returns an :class:`Arrangement`; its ``problems`` starts with
    ``problems`` (those the scan found). Items are changed in place:
    retention filled from the category map, missing 件号 and 档号 assigned.
    A record without a year is put in ``today``'s year, with a problem.
    """
    found = list(problems or [])
    records = [i for i in items if i.is_record]
    others = [i for i in items if not i.is_record]
    rank = {c: n for n, c in enumerate(s.category_order)}
    year_now = str((today or dt.date.today()).year)
    keyed = []
    retention_of, sides, fonds_default = s.retention.get, s.sides.get, s.fonds
    cat_keys: dict[str, str] = {}       # category -> its part of the sort key
    number_keys: dict[str | None, str] = {}     # 件号 -> its part of the sort key
    side_keys = {side: str(rank) for side, rank in _SIDE_RANK.items()}
    for i in records:
        cat = i.category or ""
        if not i.retention:
            i.retention = retention_of(cat)
        flow = i.flow
        if flow and flow not in SIDE_WORDS:
            found.append(Problem("malformed-code", where(i),
                                 f"收支 {flow!r} is neither 收 nor 支"))
        year = i.year
        if not year:
            found.append(Problem("unarranged", where(i), f"has no year: put in {year_now}"))
            year = i.year = year_now
        number = i.item_number
        code = i.archival_code
        dash = code.find("-") if code else -1
        fonds = code[:dash] if dash >= 0 else fonds_default      # Item.fonds, inline
        side = SIDE_WORDS[flow] if flow in SIDE_WORDS else sides(cat, "收")    # side_of(i, s), inline
        cat_key = cat_keys.get(cat)
        if cat_key is None:
            cat_key = cat_keys[cat] = f"{rank.get(cat, len(rank)):04d}{cat}"
        number_key = number_keys.get(number)
        if number_key is None:          # none: after all
            n = int(number) if number and number.isdigit() else 1 << 30
            number_key = number_keys[number] = f"{n:010d}"
        # one string compares fastest: fonds, year, side, unit, category rank, 件号, path
        keyed.append((f"{fonds}\0{year}\0{side_keys[side]}\0{i.unit_code or ''}\0"
                      f"{cat_key}\0{number_key}\0{i.path}", fonds, year, side, i))
    keyed.sort(key=itemgetter(0))
    records = [k[4] for k in keyed]
    assigned = _codes(records, s, found)
    groups: dict[tuple[str, str, str], Group] = {}
    for _, fonds, year, side, i in keyed:
        g = groups.get((fonds, year, side))
        if g is None:
            g = groups[fonds, year, side] = Group(fonds, year, side)
        g.items.append(i)
    ordered = list(groups.values())
    if not ordered:
        ordered = [Group(s.fonds, year_now, "")]
    return Arrangement(ordered, others, found, assigned)


def _class_of(i: Item, s: Settings) -> str | None:
    """The class (档号 without its 件号) a record belongs to, or None if it cannot be told."""
    code = s.category_codes.get(i.category or "")
    retention = RETENTION_CODES.get(i.retention or "")
    if not (code and retention and i.year):
        return None
    return f"{i.fonds or s.fonds}-{s.class_code}·{i.year}-{retention}-{code}"


def _codes(records: list[Item], s: Settings, found: list[Problem]) -> int:
    """Check given archival codes, assign missing ones, report 件号 gaps and duplicates."""
    classes: dict[str, list[tuple[int, Item]]] = {}
    missing: list[tuple[str, Item]] = []
    assigned = 0
    match = ARCHIVAL_CODE.match
    for i in records:
        code = i.archival_code
        if code:
            m = match(code)
            if not m:
                found.append(Problem("malformed-code", where(i), f"档号 {code!r} is not "
                                     "全宗号-门类代码·年度-保管期限-机构(问题)代码-件号 "
                                     "(e.g. 160-SB·2023-Y-DJ-0001)"))
                continue
            _, _, year, retention, _, number = m.groups()     # by position: quicker
            n = int(number)
            own_year, own_retention, own_number = i.year, i.retention, i.item_number
            # the code agrees with its row (as most do) when each field is absent or equal
            if ((own_year and year != own_year)
                    or (own_retention and RETENTION_CODES.get(own_retention) != retention)
                    or (own_number and own_number != number and own_number.isdigit())):
                wrong = []
                if own_year and year != own_year:
                    wrong.append(f"year {year} but the record is of {own_year}")
                if own_retention and RETENTION_CODES.get(own_retention) != retention:
                    wrong.append(f"retention {retention} but 保管期限 is {own_retention}")
                if own_number and own_number.isdigit() and int(own_number) != n:
                    wrong.append(f"件号 {number} but the row says {own_number}")
                if wrong:
                    found.append(Problem("malformed-code", where(i),
                                         f"档号 {code}: {'; '.join(wrong)}"))
            if not own_number:
                i.item_number = number
            klass = code[:m.start(6) - 1]         # the code before "-<number>"
            numbered = classes.get(klass)
            if numbered is None:
                numbered = classes[klass] = []
            numbered.append((n, i))
            continue
        klass = _class_of(i, s)
        if klass is None:
            found.append(Problem("unarranged", where(i), "no 档号, and none can be assigned: "
                                 f"category {i.category or '(none)'!r} needs a code in "
                                 "[archive.category_codes] and the record a 保管期限"))
            continue
        if i.item_number and i.item_number.isdigit():
            classes.setdefault(klass, []).append((int(i.item_number), i))
            i.archival_code = f"{klass}-{int(i.item_number):04d}"
            assigned += 1
        else:
            missing.append((klass, i))
    for klass, i in missing:        # next free numbers, in archival order
        used = classes.setdefault(klass, [])
        n = max((k for k, _ in used), default=0) + 1
        i.item_number = f"{n:04d}"
        i.archival_code = f"{klass}-{n:04d}"
        used.append((n, i))
    for klass, numbered in classes.items():
        first = dict(reversed(numbered))        # number -> its first record
        if len(first) < len(numbered):          # some number is given twice
            by_number: dict[int, list[Item]] = {}
            for n, i in numbered:
                by_number.setdefault(n, []).append(i)
            for n, same in sorted(by_number.items()):
                if len(same) > 1:
                    found.append(Problem("duplicate-number", where(same[1]),
                                         f"件号 {n:04d} of class {klass} is also given to "
                                         + ", ".join(where(i) for i in same
                                                     if i is not same[1])))
        top = max(first)
        if top == len(first) and 0 not in first:    # numbers 1..top, each once: no gap
            continue
        gaps = [n for n in range(1, top + 1) if n not in first]
        if gaps:
            shown = ", ".join(f"{n:04d}" for n in gaps[:5]) + (" ..." if len(gaps) > 5 else "")
            after = first[min(n for n in first if n > gaps[0])]
            found.append(Problem("number-gap", klass,
                                 f"件号 {shown} missing ({len(gaps)} in all; the first gap is "
                                 f"before {where(after)})"))
    return assigned + len(missing)
