-- Family rfm: BTYD summary (Fader, Hardie & Lee 2005) in the shop's local days.
-- Occasion = local day with a sale row; its value = that day's spend in the
-- revenue basis. recency and T in weeks (days / 7); T counts to C-1.
WITH occ AS (
    SELECT customer_id,
           day,
           value,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day) AS k
    FROM h_daily
    WHERE sale_lines > 0
),
summary AS (
    SELECT customer_id,
           COUNT(*) AS n_occ,
           MIN(day) AS first_day,
           MAX(day) AS last_day,
           SUM(CASE WHEN k > 1 THEN value ELSE 0 END) AS repeat_value
    FROM occ
    GROUP BY customer_id
),
totals AS (
    SELECT customer_id,
           SUM(value) AS spend_total,
           SUM(sales) AS gross_spend
    FROM h_daily
    GROUP BY customer_id
)
SELECT tot.customer_id,
       CAST(COALESCE(s.n_occ, 0) AS BIGINT) AS occasions,
       CAST(s.n_occ - 1 AS DOUBLE) AS frequency,
       DATE_DIFF('day', s.first_day, s.last_day) / 7.0 AS recency,
       (DATE_DIFF('day', s.first_day, DATE '{{ cutoff_day }}') - 1) / 7.0 AS "T",
       CAST(DATE_DIFF('day', s.first_day, s.last_day) AS DOUBLE) AS recency_days,
       CAST(DATE_DIFF('day', s.first_day, DATE '{{ cutoff_day }}') - 1 AS DOUBLE) AS "T_days",
       CAST(DATE_DIFF('day', s.last_day, DATE '{{ cutoff_day }}') AS DOUBLE) AS days_since_last_purchase,
       CASE WHEN s.n_occ > 1 THEN CAST(s.repeat_value AS DOUBLE) / (s.n_occ - 1)
            WHEN s.n_occ = 1 THEN 0.0 END AS monetary_value,
       CAST(tot.spend_total AS DOUBLE) AS spend_total,
       CAST(tot.gross_spend AS DOUBLE) AS gross_spend
FROM totals tot
LEFT JOIN summary s ON s.customer_id = tot.customer_id
