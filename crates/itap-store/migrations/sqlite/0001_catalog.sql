-- The catalogue of datasets and the ingest ledger. Telemetry tables are created per
-- dataset at run time, with one typed column per declared signal.
CREATE TABLE itap_datasets (
    name        TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL UNIQUE,
    schema_json TEXT NOT NULL,
    created_at  INTEGER NOT NULL            -- UTC microseconds
);

CREATE TABLE itap_ingest_ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset     TEXT NOT NULL REFERENCES itap_datasets(name),
    source_path TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    rows_read   INTEGER NOT NULL DEFAULT 0,
    inserted    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    conflicts   INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    on_conflict TEXT NOT NULL,
    started_at  INTEGER NOT NULL,           -- UTC microseconds
    finished_at INTEGER,
    status      TEXT NOT NULL,              -- running | completed | failed | interrupted
    message     TEXT,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL
);

CREATE INDEX itap_ingest_ledger_sha ON itap_ingest_ledger (dataset, sha256);
