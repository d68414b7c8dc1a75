"""Services the backend uses on a user's behalf (integrations with third-party platforms)."""
