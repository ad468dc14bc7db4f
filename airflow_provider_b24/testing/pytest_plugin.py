"""Pytest fixtures for testing DAGs against the bundled Bitrix24 emulator (work in progress)."""

from __future__ import annotations
