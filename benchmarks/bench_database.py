"""The benchmarks' own PostgreSQL databases, created beside the one DATABASE_URL names."""

from urllib.parse import urlsplit, urlunsplit


def benchmark_database(base_url: str, name: str) -> str:
    """Create the database `name` on the server of `base_url` unless it exists; return its URL."""
    import psycopg

    parts = urlsplit(base_url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))
