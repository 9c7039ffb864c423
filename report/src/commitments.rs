//! `commitments.csv` and the manifest's `commitments` record (docs/design.md §6 "Commitments"):
//! Savings Plans and Reserved Instances of the month, each figure its exact amount rounded,
//! every row's parts adding up to its totals.

use finops_allocate::commitments::{Commitments, Programme};
use finops_allocate::Cents;
use serde::{Deserialize, Serialize};

use crate::csv::CsvBuilder;

/// One programme's row, in cents as printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgrammeRecord {
    pub programme: String,
    /// Covered usage at on-demand prices.
    pub on_demand_equivalent: String,
    /// What the covered usage cost (amortized): the commitment used.
    pub cost: String,
    /// `on_demand_equivalent - cost`.
    pub savings: String,
    /// The commitment left unused (the fee lines' amortized cost).
    pub unused: String,
    /// `cost + unused`.
    pub committed: String,
    /// `cost / committed`, percent, one decimal (empty without a commitment).
    pub utilisation_pct: String,
}

/// The month's commitments as the manifest records them and the report reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitmentsRecord {
    /// Savings Plans, Reserved Instances, then their total.
    pub programmes: Vec<ProgrammeRecord>,
    /// Covered usage over the usage commitments could cover, at on-demand prices, percent.
    pub coverage_pct: String,
    /// On-demand usage a commitment could have covered, at on-demand prices.
    pub uncovered_on_demand: String,
    /// Savings less the commitment left unused.
    pub net_savings: String,
    /// Who carries the unused commitment: `(rule, team, amount)`, largest first; the amounts add
    /// up to the total row's `unused`.
    pub unused_by_rule: Vec<(String, String, String)>,
}

/// A row of cents (on-demand equivalent, cost, unused) that add up as printed, with its exact
/// utilisation.
fn row(name: &str, (od, cost, unused): (Cents, Cents, Cents), utilisation: Option<f64>) -> ProgrammeRecord {
    ProgrammeRecord {
        programme: name.into(),
        on_demand_equivalent: od.to_string(),
        cost: cost.to_string(),
        savings: Cents(od.0 - cost.0).to_string(),
        unused: unused.to_string(),
        committed: Cents(cost.0 + unused.0).to_string(),
        utilisation_pct: utilisation.map(|u| format!("{:.1}", u * 100.0)).unwrap_or_default(),
    }
}

/// The record of the month's commitments (`None` for a month with none). Amounts in a row add up
/// as printed; the shares and the net savings are their exact figures rounded.
pub fn record(c: &Commitments) -> Option<CommitmentsRecord> {
    if c.is_empty() {
        return None;
    }
    let cents = |p: &Programme| (p.covered_on_demand.round_to_cents(), p.covered_effective.round_to_cents(), p.unused.round_to_cents());
    let (sp, ri) = (cents(&c.savings_plans), cents(&c.reservations));
    let total = (Cents(sp.0 .0 + ri.0 .0), Cents(sp.1 .0 + ri.1 .0), Cents(sp.2 .0 + ri.2 .0));
    let both = Programme {
        covered_on_demand: c.savings_plans.covered_on_demand + c.reservations.covered_on_demand,
        covered_effective: c.savings_plans.covered_effective + c.reservations.covered_effective,
        unused: c.savings_plans.unused + c.reservations.unused,
    };
    // The carriers' cents add up to the total row's unused (largest remainder).
    let exact: Vec<finops_allocate::Money> = c.unused_by_rule.iter().map(|(_, _, m)| *m).collect();
    let carried = finops_allocate::money::round_to_total(&exact, total.2);
    let uncovered = c.uncovered_on_demand.round_to_cents();
    Some(CommitmentsRecord {
        programmes: vec![row("Savings Plans", sp, c.savings_plans.utilisation()), row("Reserved Instances", ri, c.reservations.utilisation()), row("total", total, both.utilisation())],
        coverage_pct: c.coverage().map(|r| format!("{:.1}", r * 100.0)).unwrap_or_default(),
        uncovered_on_demand: uncovered.to_string(),
        net_savings: c.net_savings().round_to_cents().to_string(),
        unused_by_rule: c.unused_by_rule.iter().zip(carried).map(|((rule, team, _), cents)| (rule.clone(), team.clone(), cents.to_string())).collect(),
    })
}

/// `commitments.csv`: a row per programme and the total: `programme, on_demand_equivalent,
/// cost, savings, unused, committed, utilisation_pct`, then the coverage and net savings as
/// their own rows' `savings` cells would mislead: they are the manifest's and the report's.
pub fn csv(record: &CommitmentsRecord) -> Vec<u8> {
    let mut csv = CsvBuilder::new(&["programme", "on_demand_equivalent", "cost", "savings", "unused", "committed", "utilisation_pct"]);
    for p in &record.programmes {
        csv.row([&*p.programme, &p.on_demand_equivalent, &p.cost, &p.savings, &p.unused, &p.committed, &p.utilisation_pct]);
    }
    csv.into_bytes()
}
