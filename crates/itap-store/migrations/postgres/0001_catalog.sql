-- The catalogue of datasets and the ingest ledger. Telemetry tables are created per
-- dataset at run time, with one typed column per declared signal.
CREATE TABLE itap_datasets (
    name        TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL UNIQUE,
    schema_json TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE itap_ingest_ledger (
    id          BIGSERIAL PRIMARY KEY,
    dataset     TEXT NOT NULL REFERENCES itap_datasets(name),
    source_path TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    rows_read   BIGINT NOT NULL DEFAULT 0,
    inserted    BIGINT NOT NULL DEFAULT 0,
    duplicates  BIGINT NOT NULL DEFAULT 0,
    conflicts   BIGINT NOT NULL DEFAULT 0,
    updated     BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    on_conflict TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status      TEXT NOT NULL,              -- running | completed | failed | interrupted
    message     TEXT,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL
);

CREATE INDEX itap_ingest_ledger_sha ON itap_ingest_ledger (dataset, sha256);
