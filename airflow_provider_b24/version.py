"""The provider's version: one place, imported by the package, the client's User-Agent and provider info."""

from __future__ import annotations

__version__ = "0.1.0"
