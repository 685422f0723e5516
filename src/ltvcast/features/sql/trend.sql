-- Family trend over the last 360 local days (days C-360 .. C-1).
-- Block r = floor((C - day - 1) / 30): r = 0 is C-30 .. C-1, r = 11 is C-360 .. C-331.
-- With x = 11 - r (oldest 0, newest 11), the least-squares slope of the 12 block
-- sums (empty blocks = 0) is sum((x - 5.5) * spend) / 143 = sum((11 - 2r) * spend) / 286,
-- a plain weighted sum over the days (integer weights keep the DECIMAL sum exact).
WITH recent AS (
    SELECT customer_id,
           value,
           CAST(FLOOR((DATE_DIFF('day', day, DATE '{{ cutoff_day }}') - 1) / 30.0) AS INTEGER) AS r
    FROM h_daily
    WHERE day >= DATE '{{ before(360) }}'
),
sums AS (
    SELECT customer_id,
           SUM((11 - 2 * r) * value) AS weighted,
           SUM(CASE WHEN r < 6 THEN value ELSE 0 END) AS last_180,
           SUM(CASE WHEN r >= 6 THEN value ELSE 0 END) AS prev_180
    FROM recent
    GROUP BY customer_id
)
SELECT customer_id,
       CAST(weighted AS DOUBLE) / 286.0 AS spend_trend_slope,
       CASE WHEN prev_180 > 0 THEN CAST(last_180 AS DOUBLE) / CAST(prev_180 AS DOUBLE) END AS spend_recent_ratio
FROM sums
