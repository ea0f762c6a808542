-- The API surfaces a hold stops (a cap on some surfaces only); null: every surface, as every hold before did.
ALTER TABLE suspensions ADD COLUMN scope text[];
