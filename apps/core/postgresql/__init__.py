"""Django's PostgreSQL backend, with the pool's connections checked the way a restart of the server needs
(see base.py)."""
