"""Airflow triggers for Bitrix24."""
