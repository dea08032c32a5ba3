DROP FUNCTION airbar_post_message(uuid, uuid, text, uuid, text, text, text[], text[], int);
