DROP FUNCTION airbar_post_messages(uuid[], uuid[], text[], uuid[], text[], text[], text[], text[], int);
