//! The month's totals per (account, service) at every cost basis, rounded once so each column
//! adds up to its rounded grand total. The allocated basis prints the allocation's own group
//! figures, so each group's teams add up to its row.

use std::collections::BTreeMap;

use finops_allocate::money::round_largest_remainder;
use finops_allocate::{Cents, CostBasis, ServiceTotal};

use crate::csv::CsvBuilder;

/// Column order of the cost bases in the CSV.
const BASES: [CostBasis; 5] = CostBasis::ALL;

/// `services.csv`: one row per (billing period, account, service), sorted by those keys.
/// `allocated` gives the printed group figures of the allocated basis (from the allocation).
pub fn service_totals_csv(totals: &[ServiceTotal], allocated: Option<(CostBasis, &BTreeMap<(String, String, String), Cents>)>) -> Vec<u8> {
    let mut header = vec!["billing_period", "account", "service", "line_items"];
    header.extend(BASES.iter().map(|b| b.name()));
    let mut csv = CsvBuilder::new(&header);
    let rounded: Vec<Vec<String>> = BASES
        .iter()
        .map(|b| match allocated {
            Some((basis, groups)) if basis == *b => totals
                .iter()
                .map(|t| {
                    let key = (t.billing_period.clone(), t.account.clone(), t.service.clone());
                    groups.get(&key).copied().unwrap_or_else(|| t.costs.get(*b).round_to_cents()).to_string()
                })
                .collect(),
            _ => {
                let amounts: Vec<_> = totals.iter().map(|t| t.costs.get(*b)).collect();
                round_largest_remainder(&amounts).iter().map(|c| c.to_string()).collect()
            }
        })
        .collect();
    for (i, t) in totals.iter().enumerate() {
        let (count, account) = (t.line_items.to_string(), crate::csv::text_id(&t.account));
        let mut cells: Vec<&str> = vec![&t.billing_period, &account, &t.service, &count];
        cells.extend(rounded.iter().map(|column| column[i].as_str()));
        csv.row(cells);
    }
    csv.into_bytes()
}

/// The line that reconciles `services.csv` (the AWS bill) with `summary.csv` (the teams): the
/// bill plus on-prem GPU at the rate card is the teams' total (docs/design.md §6).
pub fn bill_to_teams(cost_basis: &str, bill: Cents, rate_card: Cents, teams: Cents, amount: impl Fn(Cents) -> String) -> String {
    let (bill, rate_card, teams) = (amount(bill), amount(rate_card), amount(teams));
    format!(
        "the AWS bill {bill} (services.csv, {cost_basis} column) + on-prem GPU at the rate card {rate_card} (summary.csv, gpu_on_prem column) = the teams' total {teams} (summary.csv, total column)"
    )
}
