"""Airflow operators for Bitrix24."""
