-- Live scoring (`itap serve`): each scored row, each device's feature state, and
-- the messages refused. Scores are keyed like the rows they score, so a row
-- delivered twice is scored once; a device's state row is replaced at every
-- commit, in the same transaction as the scores it follows.
CREATE TABLE itap_scores (
    dataset TEXT NOT NULL REFERENCES itap_datasets(name),
    device  TEXT NOT NULL,
    ts      INTEGER NOT NULL,               -- UTC microseconds
    score   REAL NOT NULL,
    flagged INTEGER NOT NULL,               -- 0 or 1
    family  TEXT,                           -- for a flagged row: the family behind it
    PRIMARY KEY (dataset, device, ts)
) WITHOUT ROWID;

CREATE TABLE itap_live_state (
    dataset   TEXT NOT NULL REFERENCES itap_datasets(name),
    device    TEXT NOT NULL,
    ts        INTEGER NOT NULL,             -- the last row the state has taken
    row_count INTEGER NOT NULL,
    state     BLOB NOT NULL,
    PRIMARY KEY (dataset, device)
);

CREATE TABLE itap_rejects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset     TEXT NOT NULL REFERENCES itap_datasets(name),
    received_at INTEGER NOT NULL,           -- UTC microseconds
    topic       TEXT NOT NULL,
    payload     TEXT NOT NULL,              -- truncated, invalid UTF-8 replaced
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE INDEX itap_rejects_received ON itap_rejects (dataset, received_at);
