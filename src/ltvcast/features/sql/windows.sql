-- Family windows: purchase occasions and spend (revenue basis) in the last N
-- local days (days C-N .. C-1), one pair of columns per window.
SELECT customer_id,
{% for w in windows %}
       CAST(COUNT(CASE WHEN sale_lines > 0 AND day >= DATE '{{ before(w) }}' THEN 1 END) AS BIGINT) AS occasions_{{ w }}d,
       CAST(SUM(CASE WHEN day >= DATE '{{ before(w) }}' THEN value ELSE 0 END) AS DOUBLE) AS spend_{{ w }}d{{ "," if not loop.last }}
{% endfor %}
FROM h_daily
GROUP BY customer_id
