"""Operators for Bitrix24 CRM activities (``crm.activity.*``)."""

from __future__ import annotations
