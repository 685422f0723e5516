-- Family ipt: inter-purchase time = gaps in days between consecutive
-- occasions. Sample std (n-1); NULL mean with < 2 occasions, NULL std/cv with < 3.
-- Moments from exact integer sums: var = (n * sum(g^2) - sum(g)^2) / (n (n-1)),
-- so the result does not depend on the order of summation.
WITH gaps AS (
    SELECT customer_id,
           CAST(DATE_DIFF('day', LAG(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS BIGINT) AS gap
    FROM h_daily
    WHERE sale_lines > 0
),
moments AS (
    SELECT customer_id,
           COUNT(gap) AS n,
           SUM(gap) AS s1,
           SUM(gap * gap) AS s2
    FROM gaps
    GROUP BY customer_id
)
SELECT customer_id,
       CASE WHEN n >= 1 THEN CAST(s1 AS DOUBLE) / n END AS ipt_mean_days,
       CASE WHEN n >= 2 THEN SQRT(CAST(n * s2 - s1 * s1 AS DOUBLE) / (n * (n - 1))) END AS ipt_std_days,
       CASE WHEN n >= 2 THEN SQRT(CAST(n * s2 - s1 * s1 AS DOUBLE) / (n * (n - 1))) / (CAST(s1 AS DOUBLE) / n) END
           AS ipt_cv
FROM moments
