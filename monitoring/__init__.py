"""Monitoring per production line: data drift, prediction drift, concept drift and yield
against a reference, with alerts (live, webhook, email) and the /monitor pages."""
