"""A Bitrix24 emulator for tests, demos and benchmarks (work in progress)."""

from __future__ import annotations
