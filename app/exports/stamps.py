"""Zip packages (DOCX, XLSX) without the clock: every member of a zip file
carries its own modification time, to the second, which python-docx and
openpyxl set to the moment of the export. Exports carry no time finer than
the day, so the members are written again stamped with the workshop's first
day at midnight (1980-01-01, the earliest date a zip can hold, when it has
none or an earlier one)."""

from __future__ import annotations

import io
from datetime import date
from zipfile import ZIP_DEFLATED, ZipFile, ZipInfo

EARLIEST = (1980, 1, 1, 0, 0, 0)


def day_stamp(day: date | None) -> tuple[int, int, int, int, int, int]:
    if day is None or day.year < EARLIEST[0] or day.year > 2107:
        return EARLIEST
    return (day.year, day.month, day.day, 0, 0, 0)


def restamp(content: bytes, day: date | None) -> bytes:
    """The same package, every member dated ``day`` at 00:00:00."""
    stamp = day_stamp(day)
    out = io.BytesIO()
    with ZipFile(io.BytesIO(content)) as src, ZipFile(out, "w", ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = ZipInfo(info.filename, date_time=stamp)
            member.compress_type = info.compress_type
            member.external_attr = info.external_attr
            member.create_system = info.create_system
            dst.writestr(member, src.read(info))
    return out.getvalue()
