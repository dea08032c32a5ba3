DROP TABLE IF EXISTS activities;
DROP TABLE IF EXISTS parcels;
DROP TABLE IF EXISTS trips;
DROP FUNCTION IF EXISTS airbar_distance_m(double precision, double precision, double precision, double precision);
