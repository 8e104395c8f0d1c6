"""Exceptions a person can act on; every one names what is wrong and, where it can, what to do."""

from __future__ import annotations


class HoldfastError(Exception):
    """Base of every error Holdfast raises on purpose."""


class KeyFileError(HoldfastError):
    """A key file is missing, unreadable, unsafe or malformed."""


class StoreError(HoldfastError):
    """The segment store cannot do what was asked."""
