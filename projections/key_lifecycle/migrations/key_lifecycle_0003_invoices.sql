-- What the dunning policy remembers per invoice (projections/key_lifecycle/invoices.py): a JSON array of
-- {id, status, at, since, attempts}, sorted by id. Rows written before it knew only which invoices were paid:
-- those become paid facts, at the row's latest decision. Their other memory keeps its meaning: a suspension
-- decided by an invoice failure stays in `suspends` until a newer payment or `active` lifts it, as before.
-- `paid_invoices` is still written (the paid ones), so code from before this migration reads rows it can use.
ALTER TABLE customers ADD COLUMN invoices jsonb NOT NULL DEFAULT '[]';
UPDATE customers SET invoices = (
    SELECT coalesce(jsonb_agg(jsonb_build_object(
        'id', p.id, 'status', 'paid', 'at', to_jsonb(coalesce(decided_at, updated_at)), 'since', NULL, 'attempts', 0
    ) ORDER BY p.id), '[]')
    FROM unnest(paid_invoices) AS p(id)
)
WHERE cardinality(paid_invoices) > 0;
