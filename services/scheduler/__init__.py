"""Scheduler service: disaster recovery (re-placement, Ray federation) and gateway routes."""
