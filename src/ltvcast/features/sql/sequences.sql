-- Sequences: one GROUP BY (customer, period) over the daily history; h_calendar
-- maps every local day of the lookback to its period index (0 = oldest).
-- Channels (per period): occasions (purchase days), orders, spend (revenue
-- basis, currency), items (sale units), returns (return rows), returned_value
-- (currency), sessions, views, add_to_carts, purchase_events.
SELECT p.cidx,
       cal.period,
{% for ch in channels %}
       CAST(SUM(x.{{ ch }}) AS DOUBLE) AS {{ ch }}{{ "," if not loop.last }}
{% endfor %}
FROM (
    SELECT customer_id,
           day,
           CASE WHEN sale_lines > 0 THEN 1 ELSE 0 END AS occasions,
           orders,
           value AS spend,
           items,
           return_lines AS returns,
           returned AS returned_value,
           0 AS sessions,
           0 AS views,
           0 AS add_to_carts,
           0 AS purchase_events
    FROM h_daily
    WHERE day >= DATE '{{ first_day }}'
    UNION ALL
    SELECT customer_id,
           day,
           0,
           0,
           CAST(0 AS DECIMAL(18, 4)),
           CAST(0 AS DECIMAL(18, 4)),
           0,
           CAST(0 AS DECIMAL(18, 4)),
           sessions,
           views,
           add_to_carts,
           purchase_events
    FROM h_events_daily
    WHERE day >= DATE '{{ first_day }}'
) x
JOIN h_pop p ON p.customer_id = x.customer_id
JOIN h_calendar cal ON cal.day = x.day
GROUP BY p.cidx, cal.period
