"""Old spellings kept for one release: one rule for the warning they give."""

from __future__ import annotations

import warnings

def deprecated(owner: str, old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that `old` (a keyword, function or form of use) is deprecated in favour of `new`."""
    warnings.warn(
        f"{owner}: {old} is deprecated and will be removed in the next release; use {new}.",
        DeprecationWarning, stacklevel=stacklevel + 1,
    )


def renamed(owner: str, old: str, old_value, new: str, new_value, default):
    """The value of a keyword renamed from `old` to `new`: the new one's, or the old one's
    (given as anything but None) with a `DeprecationWarning`; both given is a `TypeError`."""
    if old_value is None:
        return new_value
    if new_value is not default:
        raise TypeError(f"{owner}: pass `{new}` (the old name `{old}` is deprecated), not both.")
    deprecated(owner, f"`{old}=`", f"`{new}=`", stacklevel=3)
    return old_value
