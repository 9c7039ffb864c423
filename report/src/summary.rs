//! The month's totals per (account, service) at every cost basis, rounded once so each column
//! adds up to its rounded grand total.

use finops_allocate::money::round_largest_remainder;
use finops_allocate::{CostBasis, ServiceTotal};

use crate::csv::CsvBuilder;

/// Column order of the cost bases in the CSV.
const BASES: [CostBasis; 5] = CostBasis::ALL;

/// `summary.csv`: one row per (billing period, account, service), sorted by those keys.
pub fn service_totals_csv(totals: &[ServiceTotal]) -> Vec<u8> {
    let mut header = vec!["billing_period", "account", "service", "line_items"];
    header.extend(BASES.iter().map(|b| b.name()));
    let mut csv = CsvBuilder::new(&header);
    let rounded: Vec<Vec<String>> = BASES
        .iter()
        .map(|b| {
            let amounts: Vec<_> = totals.iter().map(|t| t.costs.get(*b)).collect();
            round_largest_remainder(&amounts).iter().map(|c| c.to_string()).collect()
        })
        .collect();
    for (i, t) in totals.iter().enumerate() {
        let count = t.line_items.to_string();
        let mut cells: Vec<&str> = vec![&t.billing_period, &t.account, &t.service, &count];
        cells.extend(rounded.iter().map(|column| column[i].as_str()));
        csv.row(cells);
    }
    csv.into_bytes()
}
