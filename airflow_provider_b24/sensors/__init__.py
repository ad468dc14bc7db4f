"""Airflow sensors for Bitrix24."""
