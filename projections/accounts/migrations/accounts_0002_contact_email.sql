-- Where the account's alerts are emailed (AccountRegistered.contact_email, then AccountContactSet); NULL: none on
-- file, the billing inbox gets them.
ALTER TABLE accounts ADD COLUMN contact_email text;
