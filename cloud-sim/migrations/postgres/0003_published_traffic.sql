-- Traffic reports published by data planes that run apart from the API (`cloud-sim data-plane`),
-- one row per (load balancer, data plane), rewritten every second; API replicas without a data
-- plane of their own answer GET /v1/load-balancers/{id}/traffic from the fresh ones. `report` is
-- the JSON of a TrafficReport.
CREATE TABLE published_traffic (
    lb_id      TEXT NOT NULL,
    data_plane TEXT NOT NULL,
    report     TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (lb_id, data_plane)
);
