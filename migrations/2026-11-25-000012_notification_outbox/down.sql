DROP FUNCTION airbar_write_notifications;
ALTER TABLE matches DROP COLUMN tracking_token;
DROP TABLE notification_deliveries;
