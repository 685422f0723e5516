-- Family rfm: BTYD summary (Fader, Hardie & Lee 2005) in the shop's local days.
-- Occasion = local day with a sale row, unless refunds of that day's orders
-- gave it back (h_daily); its value = the day's orders' spend in the revenue
-- basis (order_value: refunds without a matching order excluded; they lower
-- spend_total only; h_daily's unmatched_lines / unmatched_returned report them;
-- README, "Refunds"). unmatched_refunds / unmatched_refund_amount report those
-- refunds (rows, money given back as a positive amount).
-- recency and T in weeks (days / 7); T counts to C-1.
-- monetary_value = (value of all occasions - value of the first) / (occasions - 1).
-- arg_min(order_value, day) FILTER (...) is DuckDB's (Spark: min_by); it replaces a
-- self-join on the first day.
WITH per_customer AS (
    SELECT customer_id,
           SUM(CASE WHEN sale_lines > 0 THEN 1 ELSE 0 END) AS n_occ,
           MIN(CASE WHEN sale_lines > 0 THEN day END) AS first_day,
           MAX(CASE WHEN sale_lines > 0 THEN day END) AS last_day,
           SUM(CASE WHEN sale_lines > 0 THEN order_value ELSE 0 END) AS occasion_value,
           arg_min(order_value, day) FILTER (WHERE sale_lines > 0) AS first_value,
           SUM(value) AS spend_total,
           SUM(sales) AS gross_spend,
           SUM(unmatched_lines) AS unmatched_lines,
           SUM(unmatched_returned) AS unmatched_returned
    FROM h_daily
    GROUP BY customer_id
)
SELECT pc.customer_id,
       CAST(pc.n_occ AS BIGINT) AS occasions,
       CASE WHEN pc.n_occ > 0 THEN CAST(pc.n_occ - 1 AS DOUBLE) END AS frequency,
       DATE_DIFF('day', pc.first_day, pc.last_day) / 7.0 AS recency,
       (DATE_DIFF('day', pc.first_day, DATE '{{ cutoff_day }}') - 1) / 7.0 AS "T",
       CAST(DATE_DIFF('day', pc.first_day, pc.last_day) AS DOUBLE) AS recency_days,
       CAST(DATE_DIFF('day', pc.first_day, DATE '{{ cutoff_day }}') - 1 AS DOUBLE) AS "T_days",
       CAST(DATE_DIFF('day', pc.last_day, DATE '{{ cutoff_day }}') AS DOUBLE) AS days_since_last_purchase,
       CASE WHEN pc.n_occ > 1 THEN CAST(pc.occasion_value - pc.first_value AS DOUBLE) / (pc.n_occ - 1)
            WHEN pc.n_occ = 1 THEN 0.0 END AS monetary_value,
       CAST(pc.spend_total AS DOUBLE) AS spend_total,
       CAST(pc.gross_spend AS DOUBLE) AS gross_spend,
       CAST(pc.unmatched_lines AS BIGINT) AS unmatched_refunds,
       CAST(pc.unmatched_returned AS DOUBLE) AS unmatched_refund_amount
FROM per_customer pc
