"""The bottom layer, which every app may import and which imports none of them: the error family, metrics, Redis
clients with timeouts, the cache, structured logs, tracing, database connection handling, waiting in line, and
settings helpers."""
