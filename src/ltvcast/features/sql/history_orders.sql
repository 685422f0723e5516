-- h_orders: one row per order with a sale row before the cutoff (kind 'sale',
-- dated by its earliest sale row) and one row per order and timestamp of the
-- return rows before the cutoff (kind 'return'). Materialised once: h_daily
-- and attributes read it, so the order lines are grouped only once.
CREATE OR REPLACE TEMP TABLE h_orders AS
SELECT customer_id,
       kind,
       order_key,
       MIN(ts) AS ts,
       CAST(COUNT(*) AS BIGINT) AS n_lines,
       CAST(SUM(quantity) AS DECIMAL(18, 4)) AS quantity,
       CAST(SUM(amount) AS DECIMAL(18, 4)) AS amount,
       MIN(channel) AS channel
FROM h_lines
GROUP BY customer_id, kind, order_key, CASE WHEN kind = 'sale' THEN NULL ELSE ts END
