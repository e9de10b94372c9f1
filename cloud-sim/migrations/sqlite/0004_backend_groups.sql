-- Backend groups: one zone's instances, referenced by load balancers as a whole (GCE's instance
-- groups), so that a node joining a cluster changes one group, not every load balancer.
CREATE TABLE backend_groups (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    project    TEXT NOT NULL,
    name       TEXT NOT NULL,
    zone       TEXT NOT NULL,
    tags       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project, name)
);
CREATE INDEX backend_groups_project ON backend_groups (project, seq);

-- Members are listed in instance-ID order.
CREATE TABLE backend_group_members (
    group_id    TEXT NOT NULL REFERENCES backend_groups (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    PRIMARY KEY (group_id, instance_id)
);
CREATE INDEX backend_group_members_instance ON backend_group_members (instance_id);

-- A group in use by a load balancer cannot be deleted (the API says which; the key is the net).
CREATE TABLE lb_backend_groups (
    lb_id    TEXT NOT NULL REFERENCES load_balancers (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    group_id TEXT NOT NULL REFERENCES backend_groups (id),
    PRIMARY KEY (lb_id, group_id)
);
CREATE INDEX lb_backend_groups_group ON lb_backend_groups (group_id);
