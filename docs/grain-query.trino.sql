-- finops grain query for billing period 2025-10, Trino (Amazon Athena engine version 3) rendering.
-- One row per day x account x service x resource x usage type x operation x region x charge and
-- pricing category x instance type x team tags; amounts summed exactly at five cost bases.
WITH raw AS (
  SELECT
    coalesce(line_item_line_item_type, '') AS type_raw,
    coalesce(trim(line_item_line_item_type), '') AS line_item_type,
    date_format(bill_billing_period_start_date, '%Y-%m') AS billing_period,
    CAST(CAST(line_item_usage_start_date AS DATE) AS VARCHAR) AS usage_date,
    coalesce(trim(line_item_usage_account_id), '') AS account,
    coalesce(trim(line_item_product_code), '') AS service,
    coalesce(trim(line_item_resource_id), '') AS resource,
    coalesce(trim(line_item_usage_type), '') AS usage_type,
    coalesce(trim(line_item_operation), '') AS operation,
    coalesce(trim(product_region_code), '') AS region,
    coalesce(trim(product_instance_type), '') AS instance_type,
    coalesce(reservation_reservation_a_r_n, '') AS reservation_arn,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('team', 'user_team', 'user:team', 'resourceTags/user:team'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('team', 'user_team', 'user:team', 'resourceTags/user:team'))), 1))), '') AS tag_1,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('Team', 'user_Team', 'user:Team', 'resourceTags/user:Team'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('Team', 'user_Team', 'user:Team', 'resourceTags/user:Team'))), 1))), '') AS tag_2,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('owner', 'user_owner', 'user:owner', 'resourceTags/user:owner'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('owner', 'user_owner', 'user:owner', 'resourceTags/user:owner'))), 1))), '') AS tag_3,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('env', 'user_env', 'user:env', 'resourceTags/user:env'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('env', 'user_env', 'user:env', 'resourceTags/user:env'))), 1))), '') AS tag_4,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('environment', 'user_environment', 'user:environment', 'resourceTags/user:environment'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('environment', 'user_environment', 'user:environment', 'resourceTags/user:environment'))), 1))), '') AS tag_5,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('project', 'user_project', 'user:project', 'resourceTags/user:project'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('project', 'user_project', 'user:project', 'resourceTags/user:project'))), 1))), '') AS tag_6,
    NULLIF(trim(coalesce(element_at(map_values(map_filter(resource_tags, (k, v) -> k IN ('Project', 'user_Project', 'user:Project', 'resourceTags/user:Project'))), 1), element_at(map_values(map_filter(resource_tags, (k, v) -> trim(k) IN ('Project', 'user_Project', 'user:Project', 'resourceTags/user:Project'))), 1))), '') AS tag_7,
    CASE WHEN (is_nan(line_item_unblended_cost) OR is_infinite(line_item_unblended_cost) OR abs(line_item_unblended_cost) >= 1e26) THEN NULL ELSE CAST(line_item_unblended_cost AS DECIMAL(38, 12)) END AS unblended,
    CASE WHEN (is_nan(line_item_net_unblended_cost) OR is_infinite(line_item_net_unblended_cost) OR abs(line_item_net_unblended_cost) >= 1e26) THEN NULL ELSE CAST(line_item_net_unblended_cost AS DECIMAL(38, 12)) END AS net_unblended,
    CASE WHEN (is_nan(pricing_public_on_demand_cost) OR is_infinite(pricing_public_on_demand_cost) OR abs(pricing_public_on_demand_cost) >= 1e26) THEN NULL ELSE CAST(pricing_public_on_demand_cost AS DECIMAL(38, 12)) END AS list,
    CASE WHEN (is_nan(savings_plan_savings_plan_effective_cost) OR is_infinite(savings_plan_savings_plan_effective_cost) OR abs(savings_plan_savings_plan_effective_cost) >= 1e26) THEN NULL ELSE CAST(savings_plan_savings_plan_effective_cost AS DECIMAL(38, 12)) END AS sp_effective,
    CASE WHEN (is_nan(savings_plan_net_savings_plan_effective_cost) OR is_infinite(savings_plan_net_savings_plan_effective_cost) OR abs(savings_plan_net_savings_plan_effective_cost) >= 1e26) THEN NULL ELSE CAST(savings_plan_net_savings_plan_effective_cost AS DECIMAL(38, 12)) END AS sp_net_effective,
    CASE WHEN (is_nan(savings_plan_total_commitment_to_date) OR is_infinite(savings_plan_total_commitment_to_date) OR abs(savings_plan_total_commitment_to_date) >= 1e26) THEN NULL ELSE CAST(savings_plan_total_commitment_to_date AS DECIMAL(38, 12)) END AS sp_total,
    CASE WHEN (is_nan(savings_plan_used_commitment) OR is_infinite(savings_plan_used_commitment) OR abs(savings_plan_used_commitment) >= 1e26) THEN NULL ELSE CAST(savings_plan_used_commitment AS DECIMAL(38, 12)) END AS sp_used,
    CASE WHEN (is_nan(reservation_effective_cost) OR is_infinite(reservation_effective_cost) OR abs(reservation_effective_cost) >= 1e26) THEN NULL ELSE CAST(reservation_effective_cost AS DECIMAL(38, 12)) END AS ri_effective,
    CASE WHEN (is_nan(reservation_net_effective_cost) OR is_infinite(reservation_net_effective_cost) OR abs(reservation_net_effective_cost) >= 1e26) THEN NULL ELSE CAST(reservation_net_effective_cost AS DECIMAL(38, 12)) END AS ri_net_effective,
    CASE WHEN (is_nan(reservation_unused_amortized_upfront_fee_for_billing_period) OR is_infinite(reservation_unused_amortized_upfront_fee_for_billing_period) OR abs(reservation_unused_amortized_upfront_fee_for_billing_period) >= 1e26) THEN NULL ELSE CAST(reservation_unused_amortized_upfront_fee_for_billing_period AS DECIMAL(38, 12)) END AS ri_unused_upfront,
    CASE WHEN (is_nan(reservation_net_unused_amortized_upfront_fee_for_billing_period) OR is_infinite(reservation_net_unused_amortized_upfront_fee_for_billing_period) OR abs(reservation_net_unused_amortized_upfront_fee_for_billing_period) >= 1e26) THEN NULL ELSE CAST(reservation_net_unused_amortized_upfront_fee_for_billing_period AS DECIMAL(38, 12)) END AS ri_net_unused_upfront,
    CASE WHEN (is_nan(reservation_unused_recurring_fee) OR is_infinite(reservation_unused_recurring_fee) OR abs(reservation_unused_recurring_fee) >= 1e26) THEN NULL ELSE CAST(reservation_unused_recurring_fee AS DECIMAL(38, 12)) END AS ri_unused_recurring,
    CASE WHEN (is_nan(reservation_net_unused_recurring_fee) OR is_infinite(reservation_net_unused_recurring_fee) OR abs(reservation_net_unused_recurring_fee) >= 1e26) THEN NULL ELSE CAST(reservation_net_unused_recurring_fee AS DECIMAL(38, 12)) END AS ri_net_unused_recurring,
    CASE WHEN coalesce((is_nan(line_item_unblended_cost) OR is_infinite(line_item_unblended_cost) OR abs(line_item_unblended_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(line_item_net_unblended_cost) OR is_infinite(line_item_net_unblended_cost) OR abs(line_item_net_unblended_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(pricing_public_on_demand_cost) OR is_infinite(pricing_public_on_demand_cost) OR abs(pricing_public_on_demand_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(savings_plan_savings_plan_effective_cost) OR is_infinite(savings_plan_savings_plan_effective_cost) OR abs(savings_plan_savings_plan_effective_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(savings_plan_net_savings_plan_effective_cost) OR is_infinite(savings_plan_net_savings_plan_effective_cost) OR abs(savings_plan_net_savings_plan_effective_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(savings_plan_total_commitment_to_date) OR is_infinite(savings_plan_total_commitment_to_date) OR abs(savings_plan_total_commitment_to_date) >= 1e26), FALSE)
      OR coalesce((is_nan(savings_plan_used_commitment) OR is_infinite(savings_plan_used_commitment) OR abs(savings_plan_used_commitment) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_effective_cost) OR is_infinite(reservation_effective_cost) OR abs(reservation_effective_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_net_effective_cost) OR is_infinite(reservation_net_effective_cost) OR abs(reservation_net_effective_cost) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_unused_amortized_upfront_fee_for_billing_period) OR is_infinite(reservation_unused_amortized_upfront_fee_for_billing_period) OR abs(reservation_unused_amortized_upfront_fee_for_billing_period) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_net_unused_amortized_upfront_fee_for_billing_period) OR is_infinite(reservation_net_unused_amortized_upfront_fee_for_billing_period) OR abs(reservation_net_unused_amortized_upfront_fee_for_billing_period) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_unused_recurring_fee) OR is_infinite(reservation_unused_recurring_fee) OR abs(reservation_unused_recurring_fee) >= 1e26), FALSE)
      OR coalesce((is_nan(reservation_net_unused_recurring_fee) OR is_infinite(reservation_net_unused_recurring_fee) OR abs(reservation_net_unused_recurring_fee) >= 1e26), FALSE)
      OR bill_billing_period_start_date IS NULL
      OR coalesce(trim(line_item_usage_account_id), '') = ''
      OR (line_item_unblended_cost IS NULL AND line_item_line_item_type = 'Usage') THEN 1 ELSE 0 END AS bad
  FROM "cid_data_export"."cur2"
  WHERE billing_period = '2025-10'
),
line_items AS (
  SELECT
    billing_period,
    usage_date,
    account,
    service,
    resource,
    usage_type,
    operation,
    region,
    instance_type,
    tag_1,
    tag_2,
    tag_3,
    tag_4,
    tag_5,
    tag_6,
    tag_7,
    CASE line_item_type WHEN 'Tax' THEN 'Tax' WHEN 'Credit' THEN 'Credit' WHEN 'Refund' THEN 'Credit' WHEN 'Fee' THEN 'Purchase' WHEN 'RIFee' THEN 'Purchase' WHEN 'SavingsPlanRecurringFee' THEN 'Purchase' WHEN 'SavingsPlanUpfrontFee' THEN 'Purchase' ELSE 'Usage' END AS charge_category,
    CASE
      WHEN line_item_type LIKE 'SavingsPlan%' THEN 'SavingsPlan'
      WHEN line_item_type IN ('DiscountedUsage', 'RIFee') THEN 'Reserved'
      WHEN usage_type LIKE '%SpotUsage%' THEN 'Spot'
      WHEN line_item_type = 'Usage' THEN 'OnDemand'
      ELSE ''
    END AS pricing_category,
    unblended AS billed,
    net_unblended AS billed_net,
    CASE type_raw
      WHEN 'SavingsPlanCoveredUsage' THEN sp_effective
      WHEN 'SavingsPlanRecurringFee' THEN sp_total - sp_used
      WHEN 'SavingsPlanNegation' THEN CAST(0 AS DECIMAL(38, 12))
      WHEN 'SavingsPlanUpfrontFee' THEN CAST(0 AS DECIMAL(38, 12))
      WHEN 'DiscountedUsage' THEN ri_effective
      WHEN 'RIFee' THEN ri_unused_upfront + ri_unused_recurring
      ELSE CASE WHEN type_raw = 'Fee' AND reservation_arn <> '' THEN CAST(0 AS DECIMAL(38, 12)) ELSE unblended END
    END AS effective,
    CASE type_raw
      WHEN 'SavingsPlanCoveredUsage' THEN sp_net_effective
      WHEN 'SavingsPlanRecurringFee' THEN sp_total - sp_used
      WHEN 'SavingsPlanNegation' THEN CAST(0 AS DECIMAL(38, 12))
      WHEN 'SavingsPlanUpfrontFee' THEN CAST(0 AS DECIMAL(38, 12))
      WHEN 'DiscountedUsage' THEN ri_net_effective
      WHEN 'RIFee' THEN ri_net_unused_upfront + ri_net_unused_recurring
      ELSE CASE WHEN type_raw = 'Fee' AND reservation_arn <> '' THEN CAST(0 AS DECIMAL(38, 12)) ELSE net_unblended END
    END AS effective_net,
    list,
    bad
  FROM raw
)
SELECT
  billing_period,
  usage_date,
  account,
  service,
  resource,
  usage_type,
  operation,
  region,
  charge_category,
  pricing_category,
  instance_type,
  tag_1,
  tag_2,
  tag_3,
  tag_4,
  tag_5,
  tag_6,
  tag_7,
  sum(billed) AS billed,
  sum(billed_net) AS billed_net,
  sum(effective) AS effective,
  sum(effective_net) AS effective_net,
  sum(list) AS list,
  count(*) AS line_items,
  sum(bad) AS bad_rows
FROM line_items
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
