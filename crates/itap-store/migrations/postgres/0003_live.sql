-- Live scoring (`itap serve`): each scored row, each device's feature state, and
-- the messages refused. Scores are keyed like the rows they score, so a row
-- delivered twice is scored once; a device's state row is replaced at every
-- commit, in the same transaction as the scores it follows.
CREATE TABLE itap_scores (
    dataset TEXT NOT NULL REFERENCES itap_datasets(name),
    device  TEXT NOT NULL,
    ts      TIMESTAMPTZ NOT NULL,
    score   DOUBLE PRECISION NOT NULL,
    flagged BOOLEAN NOT NULL,
    family  TEXT,
    PRIMARY KEY (dataset, device, ts)
);

CREATE TABLE itap_live_state (
    dataset   TEXT NOT NULL REFERENCES itap_datasets(name),
    device    TEXT NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    row_count BIGINT NOT NULL,
    state     BYTEA NOT NULL,
    PRIMARY KEY (dataset, device)
);

CREATE TABLE itap_rejects (
    id          BIGSERIAL PRIMARY KEY,
    dataset     TEXT NOT NULL REFERENCES itap_datasets(name),
    received_at TIMESTAMPTZ NOT NULL,
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE INDEX itap_rejects_received ON itap_rejects (dataset, received_at);
