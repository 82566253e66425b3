#!/usr/bin/env python3
"""Writes the OpenAPI description of the HTTP API (docs/api.md) to stdout.

    python3 scripts/openapi.py > crates/itap-live/src/http/openapi.json

The JSON file is what the server embeds and serves at /api/openapi.json; this
script is where it is edited. crates/itap-live/tests/http.rs checks every route it
lists against the server's answers.
"""
import json
def q(name, desc, schema):
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}
def pid(desc):
    return {"name": "id", "in": "path", "required": True, "description": desc, "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
time = {"type": "string", "format": "date-time"}
ntime = {"type": ["string", "null"], "format": "date-time"}
num = {"type": ["number", "null"]}
err = {"description": "A parameter that cannot be used", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
nf = {"description": "No such device, alert or route", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
un = {"description": "The store failed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
def ok(ref, desc):
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/" + ref}}}}
since = q("since", "Only from this time (RFC 3339).", time)
until = q("until", "Only before this time (RFC 3339).", time)
def page(maxn, default):
    return q("limit", f"At most this many (1-{maxn}, default {default}).", {"type": "integer", "minimum": 1, "maximum": maxn, "default": default})
share = {"type": "object", "required": ["name", "share"], "properties": {"name": {"type": "string"}, "share": {"type": "number"}}}
alert_props = {
    "id": {"type": "string"}, "device": {"type": "string"}, "start": time, "end": time, "peak_at": time,
    "rows": {"type": "integer"}, "peak_score": num, "mean_score": num,
    "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
    "family": {"type": "string"}, "route": {"type": "string"}, "rule": {"type": "string"}, "open": {"type": "boolean"},
}
doc = {
  "openapi": "3.1.0",
  "info": {"title": "ITAP operator API", "version": "1", "description": "Read-only view of a live ITAP worker (itap serve --http) or of a batch run (itap serve --artifacts). Times are RFC 3339 UTC; numbers that are not finite are null. See docs/api.md."},
  "paths": {
    "/api/health": {"get": {"summary": "Counters, lag, uptime and each device's last row", "operationId": "health",
        "responses": {"200": ok("Health", "The server's state"), "400": err}}},
    "/api/devices": {"get": {"summary": "Every device: state, last score, alerts, health", "operationId": "devices",
        "responses": {"200": ok("Devices", "The fleet"), "400": err}}},
    "/api/devices/{id}/scores": {"get": {"summary": "A device's scores in time order, paged", "operationId": "deviceScores",
        "parameters": [pid("Device id"), since, until, page(10000, 2000)],
        "responses": {"200": ok("Scores", "A page of scores"), "400": err, "404": nf, "503": un}}},
    "/api/devices/{id}/readings": {"get": {"summary": "A device's stored telemetry in time order, paged", "operationId": "deviceReadings",
        "parameters": [pid("Device id"), since, until, page(10000, 2000)],
        "responses": {"200": ok("Readings", "A page of readings"), "400": err, "404": nf, "503": un}}},
    "/api/alerts": {"get": {"summary": "Alerts, newest first", "operationId": "alerts",
        "parameters": [q("device", "Only this device's alerts.", {"type": "string", "minLength": 1, "maxLength": 256}), since, until,
                       q("severity", "This severity and above.", {"type": "string", "enum": ["info", "warning", "critical"]}),
                       q("open", "Only open (true) or closed (false) alerts.", {"type": "boolean"}), page(1000, 100)],
        "responses": {"200": ok("Alerts", "The alerts"), "400": err, "503": un}}},
    "/api/alerts/{id}": {"get": {"summary": "One alert with its explanation", "operationId": "alert",
        "parameters": [pid("Alert id (percent-encoded)")],
        "responses": {"200": ok("AlertDetail", "The alert"), "400": err, "404": nf, "503": un}}},
    "/api/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/metrics": {"get": {"summary": "Prometheus text format 0.0.4", "operationId": "metrics",
        "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "400": err}}},
    "/": {"get": {"summary": "The dashboard (HTML)", "operationId": "dashboard",
        "responses": {"200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
  },
  "components": {"schemas": {
    "Error": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string", "enum": ["bad_request", "not_found", "unavailable"]}, "message": {"type": "string"}}},
    "Health": {"type": "object", "required": ["status", "mode", "dataset", "uptime_s", "received", "stored", "scored", "rejected", "pending", "devices"],
      "properties": {
        "status": {"type": "string", "enum": ["ok"]}, "mode": {"type": "string", "enum": ["live", "artifacts"]},
        "dataset": {"type": "string"}, "uptime_s": {"type": "number"}, "threshold": num,
        **{k: {"type": "integer", "minimum": 0} for k in ["received", "stored", "duplicates", "scored", "flagged", "rejected", "foreign", "commits", "alert_writes", "pending"]},
        "last_commit": ntime, "since_last_commit_s": num, "newest_row": ntime,
        "lag": {"type": ["object", "null"], "required": ["rows", "p50_ms", "p90_ms", "p99_ms", "mean_ms"], "properties": {
            "rows": {"type": "integer"}, "p50_ms": num, "p90_ms": num, "p99_ms": num, "mean_ms": {"type": "number"}}},
        "devices": {"type": "array", "items": {"type": "object", "required": ["device", "last_seen"], "properties": {"device": {"type": "string"}, "last_seen": ntime}}}}},
    "Device": {"type": "object", "required": ["device", "last_seen", "state", "last_score", "flagged", "family", "rows", "open_alerts", "alerts", "health"],
      "properties": {"device": {"type": "string"}, "last_seen": ntime, "state": {"type": ["string", "null"]}, "last_score": num,
        "flagged": {"type": "boolean"}, "family": {"type": ["string", "null"]}, "rows": {"type": "integer"},
        "open_alerts": {"type": "integer"}, "alerts": {"type": "integer"}, "health": {"type": "string", "enum": ["ok", "alert", "stale"]}}},
    "Devices": {"type": "object", "required": ["newest_row", "devices"], "properties": {"newest_row": ntime, "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}}}},
    "Alert": {"type": "object", "required": list(alert_props), "properties": alert_props},
    "Alerts": {"type": "object", "required": ["alerts"], "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}},
    "AlertDetail": {"allOf": [{"$ref": "#/components/schemas/Alert"}, {"type": "object", "required": ["model", "explanation"], "properties": {
        "model": {"type": "string"},
        "explanation": {"type": "object", "required": ["families", "top_features", "signals"], "properties": {
            "families": {"type": "array", "items": share}, "top_features": {"type": "array", "items": share},
            "signals": {"type": "array", "items": {"type": "string"}}, "peak_tail_log10": num,
            "fault": {"type": ["string", "null"]}, "labels": {"type": "array", "items": {"type": "string"}}}}}}]},
    "Scores": {"type": "object", "required": ["device", "threshold", "scores", "next"], "properties": {
        "device": {"type": "string"}, "threshold": num, "next": ntime,
        "scores": {"type": "array", "items": {"type": "object", "required": ["ts", "score", "flagged", "family"], "properties": {
            "ts": time, "score": num, "flagged": {"type": "boolean"}, "family": {"type": ["string", "null"]}}}}}},
    "Readings": {"type": "object", "required": ["device", "signals", "readings", "next"], "properties": {
        "device": {"type": "string"}, "signals": {"type": "array", "items": {"type": "string"}}, "next": ntime,
        "readings": {"type": "array", "items": {"type": "object", "required": ["ts", "values"], "properties": {
            "ts": time, "state": {"type": ["string", "null"]}, "error_code": {"type": ["integer", "null"]},
            "values": {"type": "array", "items": num}}}}}},
  }},
}
print(json.dumps(doc, indent=1))
