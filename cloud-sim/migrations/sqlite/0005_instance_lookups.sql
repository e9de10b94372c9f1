-- Lookups that scanned an instance per row at 10,000 instances (the sandbox's node registration
-- spent most of its database time in them):
-- * listing instances by name (the ccm finds a node's instance by name until the node has a
--   provider ID): the (project, name) index above is partial, live instances only, so a list,
--   which also shows terminated instances, could not use it;
-- * the count and highest live address of a subnet (`store::first_free_ip`, on every create):
--   with the state in the index the database answers from the index alone instead of reading
--   every instance of the subnet.
CREATE INDEX instances_name ON instances (project, name);
CREATE INDEX instances_live_ip_state ON instances (private_ip, state) WHERE state <> 'terminated';
