"""Deferrable triggers for Bitrix24 CRM activities."""

from __future__ import annotations
