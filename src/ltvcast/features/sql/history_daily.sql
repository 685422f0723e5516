-- h_daily: one row per customer and local day with any transactions row
-- before the cutoff (materialised once; rfm, ipt, windows, trend, tenure,
-- basket, returns and the sequences read it). Refunds are netted by order
-- (README, "Refunds"): a matched refund counts on its order's day, others on
-- their own day.
--   sale_lines   sale rows that day (> 0 makes the day a purchase occasion); 0 when,
--                in the net basis, refunds of that day's orders bring the day's
--                sales to <= 0 (the day was given back: no occasion)
--   orders       orders with a sale row that day (0 on such a day)
--   items        sale quantity (missing quantity = 1), DECIMAL(18,4)
--   sales        sale amounts (gross), DECIMAL(18,4)
--   return_lines return rows counted that day
--   returned     money given back counted that day (positive), DECIMAL(18,4)
--   unmatched_lines, unmatched_returned  the part of the two above that is
--                refunds without a matching order (they lower spend, never an occasion)
--   value        spend in the revenue basis ({{ basis }}): net = sales - returned, gross = sales
--   order_value  value of the day's orders: net = sales - (returned - unmatched_returned), gross = sales
-- Built from h_orders, so the local day is computed once per order and orders
-- are counted without COUNT(DISTINCT).
CREATE OR REPLACE TEMP TABLE h_daily AS
WITH per_day AS (
    SELECT customer_id,
           {{ local_day('day_ts') }} AS day,
           CAST(SUM(CASE WHEN kind = 'sale' THEN n_lines ELSE 0 END) AS BIGINT) AS sale_lines,
           CAST(SUM(CASE WHEN kind = 'sale' THEN 1 ELSE 0 END) AS BIGINT) AS orders,
           CAST(SUM(CASE WHEN kind = 'sale' THEN quantity ELSE 0 END) AS DECIMAL(18, 4)) AS items,
           CAST(SUM(CASE WHEN kind = 'sale' THEN amount ELSE 0 END) AS DECIMAL(18, 4)) AS sales,
           CAST(SUM(CASE WHEN kind = 'return' THEN n_lines ELSE 0 END) AS BIGINT) AS return_lines,
           CAST(0 - SUM(CASE WHEN kind = 'return' THEN amount ELSE 0 END) AS DECIMAL(18, 4)) AS returned,
           CAST(0 - SUM(CASE WHEN kind = 'return' AND refund_rule = 'matched' THEN amount ELSE 0 END)
                AS DECIMAL(18, 4)) AS netted,
           CAST(SUM(CASE WHEN kind = 'return' AND refund_rule = 'unmatched' THEN n_lines ELSE 0 END)
                AS BIGINT) AS unmatched_lines,
           CAST(0 - SUM(CASE WHEN kind = 'return' AND refund_rule = 'unmatched' THEN amount ELSE 0 END)
                AS DECIMAL(18, 4)) AS unmatched_returned
    FROM h_orders
    GROUP BY customer_id, {{ local_day('day_ts') }}
),
flagged AS (
    SELECT *,
           {% if basis == 'net' %}(netted > 0 AND sales - netted <= 0){% else %}FALSE{% endif %} AS given_back
    FROM per_day
)
SELECT customer_id,
       day,
       CASE WHEN given_back THEN CAST(0 AS BIGINT) ELSE sale_lines END AS sale_lines,
       CASE WHEN given_back THEN CAST(0 AS BIGINT) ELSE orders END AS orders,
       items,
       sales,
       return_lines,
       returned,
       unmatched_lines,
       unmatched_returned,
       {% if basis == 'net' %}CAST(sales - returned AS DECIMAL(18, 4)){% else %}sales{% endif %} AS value,
       {% if basis == 'net' %}CAST(sales - returned + unmatched_returned AS DECIMAL(18, 4)){% else %}sales{% endif %} AS order_value
FROM flagged
