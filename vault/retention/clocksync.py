"""Is the system clock NTP-synchronised? The kernel's verdict, for the purger and the doctor.

The purger refuses to delete on an untrusted clock (vault.retention.purge.check_clock) and `holdfast doctor`
reports the same flag; both ask here, so they never disagree.
"""

from __future__ import annotations

import ctypes
import ctypes.util


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5
_STA_UNSYNC = 0x0040


def clock_synchronised() -> bool | None:
    """The kernel's own verdict (adjtimex, read-only): what timedatectl's NTPSynchronized reports.

    Works without systemd (containers, chrony, ntpd): the NTP daemon clears STA_UNSYNC when it
    disciplines the clock. None means "cannot tell", which callers treat as not synchronised.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)
