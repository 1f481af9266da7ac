"""Referral lifecycle rules (FHIR Task statuses) live here, free of HTTP and broker."""
