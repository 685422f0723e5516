-- h_lines: every transactions row (sale and return) strictly before the cutoff.
-- Returns count at their own timestamp: a return after the cutoff of an order
-- before it is not history. Money and quantity are DECIMAL(18,4): sums are exact
-- and do not depend on the order rows are added in (deterministic results).
-- order_key: order_id, or the timestamp text for rows without an order id;
-- order_id: as stored (NULL without one; decides how refunds are netted, README).
CREATE OR REPLACE TEMP VIEW h_lines AS
SELECT customer_id,
       ts,
       kind,
       amount,
       CAST(COALESCE(quantity, 1) AS DECIMAL(18, 4)) AS quantity,
       COALESCE(order_id, CAST(ts AS VARCHAR)) AS order_key,
       order_id,
       line,
       product_id,
       category,
       brand,
       channel
FROM src_transactions
WHERE ts < TIMESTAMP '{{ cutoff_utc }}'
