-- Per instance subnet, an address below which every address is held (by a live instance). A
-- create searches for the lowest free address from here instead of counting the subnet's live
-- addresses (a COUNT over the zone's index entries, ~0.1 ms per 1,000 instances, per create).
-- A create that scanned far raises it; an instance that terminates below it lowers it. No row:
-- search from the subnet's first address (what an empty table means, so nothing to backfill).
CREATE TABLE instance_ip_floors (
    range_first BIGINT PRIMARY KEY,
    range_last  BIGINT NOT NULL,
    floor_ip    BIGINT NOT NULL
);
