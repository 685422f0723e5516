-- h_pop: the customers of the FeatureSet, cidx = row in customer_id order.
-- buyers: everyone with a sale before the cutoff.
-- all:    also customers with only events, only returns or only a customers row
--         known at the cutoff (see h_customers).
CREATE OR REPLACE TEMP TABLE h_pop AS
SELECT customer_id,
       CAST(ROW_NUMBER() OVER (ORDER BY customer_id) - 1 AS BIGINT) AS cidx
FROM (
    SELECT DISTINCT customer_id FROM h_daily WHERE sale_lines > 0
{% if population == 'all' %}
    UNION
    SELECT customer_id FROM h_daily
    UNION
    SELECT customer_id FROM h_events_daily
    UNION
    SELECT customer_id FROM h_customers
{% endif %}
) ids
