-- The newest alerts of a dataset, read by the HTTP API and the dashboard
-- (ORDER BY start_ts DESC ... LIMIT n) without sorting the whole table.
CREATE INDEX itap_alerts_start ON itap_alerts (dataset, start_ts);
