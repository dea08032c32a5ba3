-- The trail writer's batch insert as a function, so that its plan is kept per connection: as a
-- plain statement it was parsed and planned for every batch, which cost PostgreSQL about as much
-- as storing a batch of a dozen points. Only points of matches still `in_transit` are taken (the
-- match rows are key-share locked, so a point waits for a delivery committing at that moment and
-- is then refused: the trail ends with the delivery); a point already stored is skipped.
-- Returns the points stored.
-- `enable_nestloop = off`: the cached generic plan knows neither the batch's size nor, on a young
-- database, the matches' statistics, and chose a nested loop that unnested the batch once per
-- locked match — quadratic in the batch (135 ms for 1 000 points instead of 6), so a writer that
-- fell behind fell further behind. The hash join it takes instead is linear.
CREATE FUNCTION airbar_store_positions(
    p_match_ids uuid[],
    p_recorded_at timestamptz[],
    p_lat double precision[],
    p_lng double precision[],
    p_accuracy_m real[]
) RETURNS TABLE (match_id uuid, recorded_at timestamptz)
LANGUAGE plpgsql
SET enable_nestloop = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    INSERT INTO positions AS t (match_id, recorded_at, lat, lng, accuracy_m)
    SELECT p.match_id, p.recorded_at, p.lat, p.lng, p.accuracy_m
    FROM unnest(p_match_ids, p_recorded_at, p_lat, p_lng, p_accuracy_m)
         AS p(match_id, recorded_at, lat, lng, accuracy_m)
    JOIN (SELECT m.id FROM matches m
          WHERE m.id = ANY (p_match_ids) AND m.status = 'in_transit'
          FOR KEY SHARE) k ON k.id = p.match_id
    ON CONFLICT DO NOTHING
    RETURNING t.match_id, t.recorded_at;
END
$$;

-- The function checks every point's match itself (it key-share locks the match row, once per
-- match and batch); the foreign key's trigger took the same lock again for every point, a third
-- of the cost of storing one (3.5 of 11 µs here). Matches are never deleted.
ALTER TABLE positions DROP CONSTRAINT positions_match_id_fkey;
