-- Family trend over the last 360 local days (days C-360 .. C-1).
-- Block r = floor((C - day - 1) / 30): r = 0 is C-30 .. C-1, r = 11 is C-360 .. C-331.
-- With x = 11 - r (oldest 0, newest 11), the least-squares slope of the 12 block
-- sums (empty blocks = 0) is sum((x - 5.5) * spend) / 143 = sum((11 - 2r) * spend) / 286,
-- a plain weighted sum over the days (integer weights keep the DECIMAL sum exact).
--
-- Age-robust weekly trend (the learned models use these; the two above grow with
-- age). Week k = floor((C - day - 1) / 7): k = 0 is C-7 .. C-1. Only the weeks
-- since the customer's first sale or return day count: n13 = min(13, weeks of
-- tenure), n52 = min(52, weeks of tenure). The least-squares slope of the n13
-- newest weekly sums against time (x = -k) is sum(((n13 - 1) / 2 - k) * v) /
-- (n13 (n13^2 - 1) / 12), divided by the mean weekly spend of the last n52 weeks.
WITH trend_weeks AS (
    SELECT customer_id,
           CAST(FLOOR((DATE_DIFF('day', MIN(day), DATE '{{ cutoff_day }}') - 1) / 7.0) AS INTEGER) + 1 AS weeks
    FROM h_daily
    GROUP BY customer_id
),
trend_days AS (
    SELECT d.customer_id,
           d.value,
           d.day,
           CAST(FLOOR((DATE_DIFF('day', d.day, DATE '{{ cutoff_day }}') - 1) / 30.0) AS INTEGER) AS r,
           CAST(FLOOR((DATE_DIFF('day', d.day, DATE '{{ cutoff_day }}') - 1) / 7.0) AS INTEGER) AS k,
           LEAST(13, t.weeks) AS n13,
           LEAST(52, t.weeks) AS n52
    FROM h_daily d
    JOIN trend_weeks t ON t.customer_id = d.customer_id
    WHERE d.day >= DATE '{{ before(364) }}'
),
trend_sums AS (
    SELECT customer_id,
           SUM(CASE WHEN r < 12 THEN (11 - 2 * r) * value ELSE 0 END) AS weighted,
           SUM(CASE WHEN r < 6 THEN value ELSE 0 END) AS last_180,
           SUM(CASE WHEN r >= 6 AND r < 12 THEN value ELSE 0 END) AS prev_180,
           SUM(CASE WHEN k < n13 THEN ((n13 - 1) / 2.0 - k) * CAST(value AS DOUBLE) ELSE 0 END) AS tilt_13w,
           CAST(SUM(CASE WHEN k < n13 THEN value ELSE 0 END) AS DOUBLE) AS spend_13w,
           CAST(SUM(value) AS DOUBLE) AS spend_52w,
           MAX(n13) AS n13,
           MAX(n52) AS n52
    FROM trend_days
    GROUP BY customer_id
)
SELECT customer_id,
       CAST(weighted AS DOUBLE) / 286.0 AS spend_trend_slope,
       CASE WHEN prev_180 > 0 THEN CAST(last_180 AS DOUBLE) / CAST(prev_180 AS DOUBLE) END AS spend_recent_ratio,
       CASE WHEN n13 >= 2 AND spend_52w > 0
            THEN tilt_13w / (n13 * (n13 * n13 - 1) / 12.0) / (spend_52w / n52) END AS spend_slope_13w,
       CASE WHEN spend_52w > 0 THEN (spend_13w / n13) / (spend_52w / n52) END AS spend_13w_vs_52w
FROM trend_sums
