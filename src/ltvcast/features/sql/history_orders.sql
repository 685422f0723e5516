-- h_orders: one row per order with a sale row before the cutoff (kind 'sale',
-- dated by its earliest sale row) and one row per order and timestamp of the
-- return rows before the cutoff (kind 'return'). Materialised once: h_daily
-- and attributes read it, so the order lines are grouped only once.
-- Refunds netted by order (README, "Refunds"): refund_rule of a return row is
--   'matched'   its order_id is a sale order of the same customer before the cutoff:
--               day_ts = that order's ts (the refund counts on the order's day);
--   'unmatched' otherwise, when any of the customer's rows before the cutoff has
--               an order_id: it lowers total spend only (day_ts = its own ts);
--   'own_day'   none of the customer's rows before the cutoff has an order_id
--               (e.g. CDNOW): the rule without order ids, on its own day.
-- Sale rows have refund_rule 'sale' and day_ts = ts. order_id: as stored (NULL without one).
CREATE OR REPLACE TEMP TABLE h_orders AS
WITH grouped AS (
    SELECT customer_id,
           kind,
           order_key,
           MAX(order_id) AS order_id,
           MIN(ts) AS ts,
           CAST(COUNT(*) AS BIGINT) AS n_lines,
           CAST(SUM(quantity) AS DECIMAL(18, 4)) AS quantity,
           CAST(SUM(amount) AS DECIMAL(18, 4)) AS amount,
           MIN(channel) AS channel
    FROM h_lines
    GROUP BY customer_id, kind, order_key, CASE WHEN kind = 'sale' THEN NULL ELSE ts END
),
keyed AS (
    SELECT customer_id, MAX(order_id) IS NOT NULL AS has_ids FROM grouped GROUP BY customer_id
)
SELECT g.customer_id,
       g.kind,
       g.order_key,
       g.order_id,
       g.ts,
       g.n_lines,
       g.quantity,
       g.amount,
       g.channel,
       CASE WHEN g.kind = 'sale' THEN 'sale'
            WHEN s.ts IS NOT NULL THEN 'matched'
            WHEN k.has_ids THEN 'unmatched'
            ELSE 'own_day' END AS refund_rule,
       COALESCE(s.ts, g.ts) AS day_ts
FROM grouped g
JOIN keyed k ON k.customer_id = g.customer_id
LEFT JOIN grouped s
       ON g.kind <> 'sale' AND s.kind = 'sale' AND s.order_id IS NOT NULL
      AND s.customer_id = g.customer_id AND s.order_id = g.order_id
