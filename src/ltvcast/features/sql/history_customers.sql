-- h_customers: customer rows known at the cutoff: signed up before it, or
-- (no signup time) with a sale before it. signup_day is the local day.
CREATE OR REPLACE TEMP TABLE h_customers AS
SELECT c.customer_id,
       c.acquisition_channel,
       c.region,
       c.country,
       CASE WHEN c.signup_at IS NOT NULL THEN {{ local_day('c.signup_at') }} END AS signup_day
FROM src_customers c
WHERE c.signup_at < TIMESTAMP '{{ cutoff_utc }}'
   OR (c.signup_at IS NULL
       AND EXISTS (SELECT 1 FROM h_orders o WHERE o.customer_id = c.customer_id AND o.kind = 'sale'))
