"""Stockdrop: a file-drop inventory integration daemon."""

from __future__ import annotations

__version__ = "0.1.0"
