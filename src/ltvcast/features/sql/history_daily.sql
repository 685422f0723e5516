-- h_daily: one row per customer and local day with any transactions row
-- before the cutoff (materialised once; rfm, ipt, windows, trend, tenure,
-- basket, returns and the sequences read it).
--   sale_lines   sale rows that day (> 0 makes the day a purchase occasion)
--   orders       orders with a sale row that day
--   items        sale quantity (missing quantity = 1), DECIMAL(18,4)
--   sales        sale amounts (gross), DECIMAL(18,4)
--   return_lines return rows that day
--   returned     money given back that day (positive), DECIMAL(18,4)
--   value        spend in the revenue basis ({{ basis }}): net = sales - returned, gross = sales
-- Built from h_orders, so the local day is computed once per order and orders
-- are counted without COUNT(DISTINCT).
CREATE OR REPLACE TEMP TABLE h_daily AS
WITH per_day AS (
    SELECT customer_id,
           {{ local_day('ts') }} AS day,
           CAST(SUM(CASE WHEN kind = 'sale' THEN n_lines ELSE 0 END) AS BIGINT) AS sale_lines,
           CAST(SUM(CASE WHEN kind = 'sale' THEN 1 ELSE 0 END) AS BIGINT) AS orders,
           CAST(SUM(CASE WHEN kind = 'sale' THEN quantity ELSE 0 END) AS DECIMAL(18, 4)) AS items,
           CAST(SUM(CASE WHEN kind = 'sale' THEN amount ELSE 0 END) AS DECIMAL(18, 4)) AS sales,
           CAST(SUM(CASE WHEN kind = 'return' THEN n_lines ELSE 0 END) AS BIGINT) AS return_lines,
           CAST(0 - SUM(CASE WHEN kind = 'return' THEN amount ELSE 0 END) AS DECIMAL(18, 4)) AS returned
    FROM h_orders
    GROUP BY customer_id, {{ local_day('ts') }}
)
SELECT customer_id,
       day,
       sale_lines,
       orders,
       items,
       sales,
       return_lines,
       returned,
       {% if basis == 'net' %}CAST(sales - returned AS DECIMAL(18, 4)){% else %}sales{% endif %} AS value
FROM per_day
