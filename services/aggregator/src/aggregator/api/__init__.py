"""The stats API (`/api/v1`), behind a bearer token."""
