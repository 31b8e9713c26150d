"""SCSI sense data (SPC/MMC: sense key, ASC, ASCQ) to discarchive's failure classes.

Burning tools report a drive's refusal as sense data; every adapter maps it
through :func:`classify` so that one failure has one class whatever tool
reported it. Classes are those of :class:`burners.base.DriveError`.
"""

from __future__ import annotations

import re

SENSE_LINE = re.compile(r"SK=([0-9A-Fa-f]+)h/ASC=([0-9A-Fa-f]+)h/ACQ=([0-9A-Fa-f]+)h")
"""libburn's and growisofs's form: ``WRITE@LBA=330h failed with SK=3h/ASC=0Ch/ACQ=00h``."""


def classify(sk: int, asc: int, ascq: int = 0, command: str = "", default: str = "write-error") -> str:
    """The failure class of one sense report.

    * ASC 3Ah (medium not present) -> ``no-medium``; other SK 2 -> ``not-ready``
    * ASC 73h (power calibration area / OPC failure) -> ``calibration``
    * ASC 30h (incompatible medium installed) -> ``incompatible-medium``
    * SK 3 (medium error) -> ``read-error`` for a READ command or ASC 11h,
      else ``write-error``
    * SK 5 with ASC 72h (session fixation, e.g. CLOSE SESSION failed)
      -> ``medium-error``
    * SK 6 (unit attention: medium changed, drive reset) -> ``not-ready``

    Anything else gives ``default``. ``command`` is the failed command's
    name as the tool printed it (``WRITE@LBA=330h``), if any.
    """
    command = command.upper()
    if asc == 0x3A:
        return "no-medium"
    if sk == 2:
        return "not-ready"
    if asc == 0x73:
        return "calibration"
    if asc == 0x30:
        return "incompatible-medium"
    if sk == 3:
        reading = asc == 0x11 or ("READ" in command and "WRITE" not in command)
        return "read-error" if reading else "write-error"
    if sk == 5 and asc == 0x72:
        return "medium-error"
    if sk == 6:
        return "not-ready"
    return default


def classify_sense(text: str, default: str = "write-error") -> str:
    """The failure class of the first ``SK=..h/ASC=..h/ACQ=..h`` report in ``text``.

    The first report is taken, as later ones are usually its consequences.
    No report at all gives ``default``.
    """
    for line in text.splitlines():
        m = SENSE_LINE.search(line)
        if m:
            return classify(int(m[1], 16), int(m[2], 16), int(m[3], 16),
                            line[:m.start()], default)
    return default
