-- cloud-sim schema. Times are Unix milliseconds; IPv4 addresses are stored as integers so that
-- subnets are ranges. Ordering for pagination uses the `seq` column of each table.
-- Kept to SQL that also runs on PostgreSQL apart from the AUTOINCREMENT key spelling.

CREATE TABLE instance_types (
    name       TEXT PRIMARY KEY,
    vcpus      INTEGER NOT NULL,
    memory_mib BIGINT NOT NULL
);

INSERT INTO instance_types (name, vcpus, memory_mib) VALUES
    ('sim.small', 1, 2048),
    ('sim.medium', 2, 4096),
    ('sim.large', 4, 8192),
    ('sim.xlarge', 8, 16384),
    ('sim.2xlarge', 16, 32768);

CREATE TABLE zone_states (
    zone       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE instances (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    project        TEXT NOT NULL,
    name           TEXT NOT NULL,
    zone           TEXT NOT NULL,
    instance_type  TEXT NOT NULL REFERENCES instance_types (name),
    state          TEXT NOT NULL,
    private_ip     BIGINT NOT NULL,
    tags           TEXT NOT NULL,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    terminated_at  BIGINT,
    -- When a transitional state (pending, stopping) settles; NULL otherwise.
    state_deadline BIGINT
);

-- A name and an address belong to one live instance at a time; terminated ones release both.
CREATE UNIQUE INDEX instances_live_name ON instances (project, name) WHERE state <> 'terminated';
CREATE UNIQUE INDEX instances_live_ip ON instances (private_ip) WHERE state <> 'terminated';
CREATE INDEX instances_project ON instances (project, seq);
CREATE INDEX instances_deadline ON instances (state_deadline) WHERE state_deadline IS NOT NULL;
CREATE INDEX instances_terminated ON instances (terminated_at) WHERE terminated_at IS NOT NULL;

-- Tags of every resource, for filtering; the resource rows also carry them as JSON for reads.
CREATE TABLE tags (
    resource_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (resource_id, key)
);
CREATE INDEX tags_key_value ON tags (key, value);

CREATE TABLE load_balancers (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    project        TEXT NOT NULL,
    name           TEXT NOT NULL,
    state          TEXT NOT NULL,
    -- JSON: scheme, ip_mode, listeners, health_check, zone_policy.
    spec           TEXT NOT NULL,
    tags           TEXT NOT NULL,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    state_deadline BIGINT,
    UNIQUE (project, name)
);
CREATE INDEX load_balancers_project ON load_balancers (project, seq);

CREATE TABLE lb_frontends (
    lb_id TEXT NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    zone  TEXT NOT NULL,
    ip    BIGINT NOT NULL UNIQUE,
    PRIMARY KEY (lb_id, zone)
);

CREATE TABLE lb_backends (
    lb_id       TEXT NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    instance_id TEXT NOT NULL,
    PRIMARY KEY (lb_id, instance_id)
);
CREATE INDEX lb_backends_instance ON lb_backends (instance_id);

CREATE TABLE routes (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    project            TEXT NOT NULL,
    route_table        TEXT NOT NULL,
    name               TEXT NOT NULL,
    destination_cidr   TEXT NOT NULL,
    target_instance_id TEXT NOT NULL,
    tags               TEXT NOT NULL,
    version            BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    UNIQUE (project, route_table, name)
);
CREATE INDEX routes_table ON routes (project, route_table, seq);

-- The event log. project NULL: visible to every project (zone changes).
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT,
    time          BIGINT NOT NULL,
    resource_kind TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    state         TEXT,
    zone          TEXT
);

-- Idempotency keys of mutating POSTs. status NULL: the first request is still running.
CREATE TABLE idempotency_keys (
    project    TEXT NOT NULL,
    key        TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    body       BLOB NOT NULL,
    status     INTEGER,
    response   BLOB,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, key)
);
