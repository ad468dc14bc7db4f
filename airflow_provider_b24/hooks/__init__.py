"""Airflow hooks for Bitrix24."""
