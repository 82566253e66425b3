-- Alerts: one row per alert of a dataset, keyed by the id the caller made for it.
-- Writing an alert again replaces its row (an alert that grew), so re-running a
-- pipeline stores each alert once. `detail` is JSON text, stored verbatim: TEXT,
-- not jsonb (which reorders keys and drops whitespace) nor json (which has no
-- equality operator, and the upsert compares stored and incoming values).
CREATE TABLE itap_alerts (
    dataset    TEXT NOT NULL REFERENCES itap_datasets(name),
    id         TEXT NOT NULL,
    device     TEXT NOT NULL,
    start_ts   TIMESTAMPTZ NOT NULL,
    end_ts     TIMESTAMPTZ NOT NULL,
    peak_ts    TIMESTAMPTZ NOT NULL,
    row_count  BIGINT NOT NULL,
    peak_score DOUBLE PRECISION NOT NULL,
    mean_score DOUBLE PRECISION NOT NULL,
    severity   TEXT NOT NULL,
    family     TEXT NOT NULL,
    route      TEXT NOT NULL,
    rule       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    model      TEXT NOT NULL,
    PRIMARY KEY (dataset, id)
);

CREATE INDEX itap_alerts_device_start ON itap_alerts (dataset, device, start_ts);
