DROP INDEX IF EXISTS parcels_open_destination_idx;
DROP INDEX IF EXISTS trips_open_destination_idx;
