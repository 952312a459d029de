"""Store wing: what survives a restart — the database (SQLite or PostgreSQL), its schema and
migrations, background jobs and their worker, snapshots, uploaded files and the row readers
that bound what an upload may cost. Everything above it keeps its state here; it imports no
other wing."""
