-- Routes per table, kept by every route insert and delete: the quota check of a new route was a
-- COUNT(*) of its table inside the write transaction (10,000 index entries per create at
-- 10,000 nodes).
CREATE TABLE route_counts (
    project     TEXT NOT NULL,
    route_table TEXT NOT NULL,
    routes      BIGINT NOT NULL,
    PRIMARY KEY (project, route_table)
);
INSERT INTO route_counts (project, route_table, routes)
    SELECT project, route_table, COUNT(*) FROM routes GROUP BY project, route_table;
