//! Savings Plans and Reserved Instances in the month (docs/design.md §6 "Commitments"): how much
//! of the usage that commitments can cover they did cover, how much of what was committed was
//! used, what they saved against on-demand, and who carries the commitment left unused. Read
//! off the grain's five cost bases (a line's list cost is its on-demand equivalent) and the
//! allocation's pieces.

use std::collections::BTreeMap;

use crate::cost_frame::{ChargeCategory, CostAmounts, PricingCategory};
use crate::ledger::CostLine;
use crate::money::{split, Money};
use crate::Allocation;

/// Services whose usage a Savings Plan or a reservation can cover.
pub const COMMITMENT_SERVICES: [&str; 10] =
    ["AmazonEC2", "AWSLambda", "AmazonECS", "AmazonEKS", "AmazonRDS", "AmazonElastiCache", "AmazonRedshift", "AmazonES", "AmazonOpenSearchService", "AmazonMemoryDB"];

/// One commitment programme's month.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Programme {
    /// On-demand equivalent (list cost) of the usage it covered.
    pub covered_on_demand: Money,
    /// What that usage cost under the commitment (its amortized cost).
    pub covered_effective: Money,
    /// The commitment's cost for the month that went unused (the fee lines' amortized cost).
    pub unused: Money,
}

impl Programme {
    /// What was committed for the month: used plus unused.
    pub fn committed(&self) -> Money {
        self.covered_effective + self.unused
    }

    /// Share of the commitment used, 0..=1 (`None` without a commitment).
    pub fn utilisation(&self) -> Option<f64> {
        let committed = self.committed();
        (!committed.is_zero()).then(|| ratio(self.covered_effective, committed))
    }

    /// On-demand equivalent less what the covered usage cost.
    pub fn gross_savings(&self) -> Money {
        self.covered_on_demand - self.covered_effective
    }
}

/// The month's commitments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Commitments {
    pub savings_plans: Programme,
    pub reservations: Programme,
    /// On-demand usage a commitment could have covered (list cost): instance usage, Lambda
    /// and Fargate of [`COMMITMENT_SERVICES`], not spot.
    pub uncovered_on_demand: Money,
    /// Who carries the unused commitment, by the rule that charged it: `(rule, team or the
    /// unallocated bucket, amount)`, largest first.
    pub unused_by_rule: Vec<(String, String, Money)>,
}

impl Commitments {
    /// Covered usage as a share of the usage commitments could cover, at on-demand prices
    /// (`None` when there is none).
    pub fn coverage(&self) -> Option<f64> {
        let covered = self.savings_plans.covered_on_demand + self.reservations.covered_on_demand;
        let eligible = covered + self.uncovered_on_demand;
        (!eligible.is_zero()).then(|| ratio(covered, eligible))
    }

    /// Savings against on-demand less the commitment left unused.
    pub fn net_savings(&self) -> Money {
        self.savings_plans.gross_savings() + self.reservations.gross_savings() - self.savings_plans.unused - self.reservations.unused
    }

    pub fn is_empty(&self) -> bool {
        self.savings_plans == Programme::default() && self.reservations == Programme::default()
    }
}

fn ratio(a: Money, b: Money) -> f64 {
    a.units() as f64 / b.units() as f64
}

/// Whether a line is usage a commitment can cover (whatever covered it).
fn eligible(line: &CostLine) -> bool {
    COMMITMENT_SERVICES.contains(&&*line.service) && (!line.instance_type.is_empty() || ["Lambda-GB-Second", "Fargate-vCPU", "Fargate-GB"].iter().any(|u| line.usage_type.contains(u)))
}

/// The month's commitments from its allocation and the grain's bases (by [`CostLine::origin`]).
pub fn commitments(rules: &crate::RuleSet, allocation: &Allocation, bases: &[CostAmounts]) -> Commitments {
    let mut out = Commitments::default();
    let (usage, purchase) = (ChargeCategory::Usage.as_str(), ChargeCategory::Purchase.as_str());
    let (sp, ri, od) = (PricingCategory::SavingsPlan.as_str(), PricingCategory::Reserved.as_str(), PricingCategory::OnDemand.as_str());
    let mut carriers: BTreeMap<(String, String), Money> = BTreeMap::new();
    for of_line in allocation.pieces.chunk_by(|a, b| a.line == b.line) {
        let line = &allocation.lines[of_line[0].line as usize];
        if line.origin == CostLine::OFF_BILL {
            continue;
        }
        let costs = bases[line.origin as usize];
        let programme = match &*line.pricing_category {
            p if p == sp => &mut out.savings_plans,
            p if p == ri => &mut out.reservations,
            p if p == od && &*line.charge_category == usage && eligible(line) => {
                out.uncovered_on_demand += costs.list;
                continue;
            }
            _ => continue,
        };
        if &*line.charge_category == usage {
            programme.covered_on_demand += costs.list;
            programme.covered_effective += costs.effective;
        } else if &*line.charge_category == purchase && !costs.effective.is_zero() {
            // A fee line's amortized cost is the commitment left unused: it goes where the
            // line's pieces went, in their proportions.
            programme.unused += costs.effective;
            for (piece, part) in of_line.iter().zip(split(costs.effective, &crate::ledger::proportions(of_line))) {
                let team = piece.team.map_or_else(|| rules.unallocated.clone(), |t| rules.teams[t].name.clone());
                *carriers.entry((piece.rule.to_string(), team)).or_insert(Money::ZERO) += part;
            }
        }
    }
    out.unused_by_rule = carriers.into_iter().map(|((rule, team), amount)| (rule, team, amount)).collect();
    out.unused_by_rule.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    out
}
