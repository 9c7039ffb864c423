//! `untagged.csv` and `coverage.csv` (docs/design.md §6 "Untagged cost"): the unallocated cost
//! of the month by account, service and resource, with what to fix on each, and each account's
//! coverage over the published months.

use std::collections::BTreeMap;

use finops_allocate::hygiene::{advice, AccountCoverage, Untagged};
use finops_allocate::RuleSet;

use crate::csv::{text_id, CsvBuilder};

/// `untagged.csv`: one row per resource (account and service where there is no resource ID),
/// largest first: `account, service, resource, cost, share_pct, rule_tags, resource_tags,
/// advice`. `cost` adds up to `summary.csv`'s unallocated total; `share_pct` is of it.
/// `resource_tags` is every tag the resource carries in the month's files.
pub fn untagged_csv(rules: &RuleSet, rows: &[Untagged], carried: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&["account", "service", "resource", "cost", "share_pct", "rule_tags", "resource_tags", "advice"]);
    let total: i64 = rows.iter().map(|r| r.cents.0).sum();
    let none = BTreeMap::new();
    for row in rows {
        let tags = carried.get(&*row.resource).unwrap_or(&none);
        let share = if total == 0 { 0.0 } else { row.cents.0 as f64 / total as f64 * 100.0 };
        let rule_tags = row.rule_tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let resource_tags = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let advice = advice(rules, row, tags);
        let cells = [text_id(&row.account), row.service.to_string(), row.resource.to_string(), row.cents.to_string(), format!("{share:.1}"), rule_tags, resource_tags, advice];
        csv.row(cells.iter().map(String::as_str));
    }
    csv.into_bytes()
}

/// One month's coverage per account, as the manifest records it (`coverage_by_account`).
pub fn coverage_record(accounts: &[AccountCoverage]) -> BTreeMap<String, crate::manifest::CoverageRecord> {
    accounts.iter().map(|a| (a.account.clone(), crate::manifest::CoverageRecord { allocated: a.allocated.to_string(), total: a.total.to_string(), coverage: format!("{:.4}", a.share()) })).collect()
}

/// `coverage.csv`: one row per account (the lowest coverage this month first), one column per
/// month in `months` (oldest first, this month last): the share of its cost that reached a
/// team, in percent; empty where the month has no figure for it (a month published before
/// coverage was recorded, or one the account had no cost in).
pub fn coverage_csv(months: &[(String, BTreeMap<String, crate::manifest::CoverageRecord>)]) -> Vec<u8> {
    let mut header = vec!["account".to_string()];
    header.extend(months.iter().map(|(m, _)| format!("{m}_pct")));
    header.push("unallocated".into());
    let mut csv = CsvBuilder::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
    let Some((_, now)) = months.last() else { return csv.into_bytes() };
    let pct = |r: &crate::manifest::CoverageRecord| r.coverage.parse::<f64>().map(|c| format!("{:.1}", c * 100.0)).unwrap_or_default();
    let mut accounts: Vec<(&String, &crate::manifest::CoverageRecord)> = now.iter().collect();
    accounts.sort_by(|a, b| a.1.coverage.parse::<f64>().unwrap_or(1.0).total_cmp(&b.1.coverage.parse::<f64>().unwrap_or(1.0)).then_with(|| a.0.cmp(b.0)));
    for (account, record) in accounts {
        let mut cells = vec![text_id(account)];
        cells.extend(months.iter().map(|(_, by_account)| by_account.get(account).map(pct).unwrap_or_default()));
        let unallocated =
            record.total.parse::<finops_allocate::Money>().ok().zip(record.allocated.parse::<finops_allocate::Money>().ok()).map(|(t, a)| (t - a).round_to_cents().to_string()).unwrap_or_default();
        cells.push(unallocated);
        csv.row(cells.iter().map(String::as_str));
    }
    csv.into_bytes()
}
