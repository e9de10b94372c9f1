-- The first and last address of an IPv4 route destination, so a new route's overlap check is one
-- indexed query instead of reading and parsing every route of the table. NULL for IPv6
-- destinations and for routes stored before this migration: those are parsed and checked as
-- before.
ALTER TABLE routes ADD COLUMN dest_first BIGINT;
ALTER TABLE routes ADD COLUMN dest_last BIGINT;
CREATE INDEX routes_dest ON routes (project, route_table, dest_first);
