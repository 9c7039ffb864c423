//! The ledger's vocabulary, shared by every stage: cost lines at the allocation grain, the
//! pieces they are allocated in, how a piece reached its team, driver samples, and what can go
//! wrong. Data only; the stages (`gpu`, `precedence`, `shares`, `engine`) make and read it.

use crate::money::{Cents, Money};
use crate::rules::TeamId;

pub use crate::dim::{Dim, DimValues, TagValues};

/// One cost line at the allocation grain (many source line items summed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CostLine {
    pub billing_period: Dim,
    /// `YYYY-MM-DD` (UTC).
    pub usage_date: Dim,
    pub account: Dim,
    pub service: Dim,
    pub resource: Dim,
    pub usage_type: Dim,
    pub operation: Dim,
    pub region: Dim,
    pub charge_category: Dim,
    pub pricing_category: Dim,
    pub instance_type: Dim,
    /// Values of [`RuleSet::tag_keys`], in that order (trimmed; `None` when absent).
    pub tags: TagValues,
    pub amount: Money,
    /// Source line items summed into this line (4 bytes: a grain row of a month holds far fewer
    /// than 4 billion).
    pub line_items: u32,
    /// Where the grain holds this line's amounts at every cost basis (`Grain::bases`, the
    /// FOCUS allocated output's origin charge), or [`CostLine::OFF_BILL`] for a line that is
    /// not a charge of the bill (an on-prem GPU host priced by the rate card).
    pub origin: u32,
}

impl Ord for CostLine {
    /// By period, day, account, service, resource, usage type, operation, region, charge and
    /// pricing category, instance type, tags, then amount: the engine's canonical order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn dims(l: &CostLine) -> [&Dim; 11] {
            [&l.billing_period, &l.usage_date, &l.account, &l.service, &l.resource, &l.usage_type, &l.operation, &l.region, &l.charge_category, &l.pricing_category, &l.instance_type]
        }
        dims(self)
            .iter()
            .zip(dims(other))
            .map(|(a, b)| (*a).cmp(b))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| {
                self.tags
                    .iter()
                    .zip(&other.tags)
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => a.cmp(b),
                        (a, b) => a.is_some().cmp(&b.is_some()),
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| self.tags.len().cmp(&other.tags.len()))
            })
            .then_with(|| self.amount.cmp(&other.amount))
            .then_with(|| self.line_items.cmp(&other.line_items))
            .then_with(|| self.origin.cmp(&other.origin))
    }
}

impl PartialOrd for CostLine {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl CostLine {
    /// [`CostLine::origin`] of a line that is not a charge of the bill.
    pub const OFF_BILL: u32 = u32::MAX;

    /// `p4d.24xlarge` -> `p4d`; `db.r6g.4xlarge` -> `r6g`.
    pub fn instance_family(&self) -> &str {
        let t: &str = &self.instance_type;
        let t = ["db.", "cache.", "kafka.", "ml."].iter().find_map(|p| t.strip_prefix(p)).unwrap_or(t);
        t.split('.').next().unwrap_or("")
    }
}

/// A driver reading for a metric share: `key` is a team name, alias, or a key the rule maps.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverSample {
    /// `YYYY-MM-DD`, or `None` for a value that covers the whole period.
    pub date: Option<String>,
    pub key: String,
    pub value: f64,
}

/// How a piece of cost reached its team (or the unallocated bucket, `team: None`): the column it
/// counts in. Decided by the stage that made the piece, never by its rule's name, so a rule
/// named like a GPU rule is still direct cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Assign, tag and fallback rules; unallocated: lines no rule or tag claims.
    Direct,
    /// Shared-resource splits; unallocated: a share with no one to carry it.
    Shared,
    /// GPU capacity charged by GPU-hours, and its idle pool (docs/design.md §5); unallocated:
    /// namespaces with no team and a `separate` idle pool.
    Gpu,
}

/// One piece of allocated cost: a cost line (or its share) on one team.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// Index into [`Allocation::lines`] (4 bytes: a month has fewer than 4 billion grain rows,
    /// and a piece is the allocation's most numerous row).
    pub line: u32,
    /// `None` is the unallocated bucket.
    pub team: Option<TeamId>,
    pub kind: Kind,
    /// The rule that decided: a rule name, `tag:<key>`, or `unallocated` (shared text: one
    /// allocation per rule, not per piece).
    pub rule: Dim,
    /// `assign`, `tag`, `fallback`, `even`, `fixed`, `proportional`, `metric`, or `none`.
    pub method: Dim,
    /// This piece's share of its line, 0..=1 (1 for direct cost).
    pub ratio: f64,
    /// For splits: the team's weight input (driver value, direct cost or percentage).
    pub driver: Option<Dim>,
    pub amount: Money,
    /// The amount as printed, after largest-remainder rounding within its source group.
    pub cents: Cents,
    /// One value per dimension of the rules (`RuleSet::dimensions`, in that order); empty
    /// without dimensions.
    pub dims: DimValues,
}

/// The weights by which another amount of one line (the line at another cost basis) is split
/// like its pieces: the pieces' own amounts; for a line of zero at the rules' basis (an
/// amortized zero under a Savings Plan, say), the engine's ratios; failing those, evenly.
pub fn proportions(pieces: &[Piece]) -> Vec<u128> {
    let mut weights: Vec<u128> = pieces.iter().map(|p| p.amount.units().unsigned_abs()).collect();
    if weights.iter().all(|w| *w == 0) {
        // Ratios to 12 decimals: the precision of money, so no piece loses a unit to rounding.
        weights = pieces.iter().map(|p| (p.ratio.max(0.0) * 1e12).round() as u128).collect();
    }
    if weights.iter().all(|w| *w == 0) {
        weights = vec![1; pieces.len()];
    }
    weights
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("{at}: share `{rule}`: driver key `{key}` names no team: map it with mapping = {{ \"{key}\" = \"<team>\" }} or fix the key")]
    UnmappedDriverKey { rule: String, key: String, at: String },
    #[error("{at}: share `{rule}`: the driver has no values for {period}: check the query or file covers the billing period")]
    NoDriverData { rule: String, period: String, at: String },
    #[error("{at}: share `{rule}`: the driver sums to zero over {scope}, so its cost has no one to go to: check that the query or file measures the teams")]
    ZeroDriver { rule: String, scope: String, at: String },
    #[error("{at}: share `{rule}`: driver value {value} for `{key}` is negative or not a number")]
    BadDriverValue { rule: String, key: String, value: String, at: String },
    #[error("{at}: [gpu]: node `{node}` ({model}) has GPU usage and {what}, and rate_card has no price for `{model}`: add rate_card = {{ \"{model}\" = <price per GPU-hour> }}, or export its instance type in the node labels")]
    GpuUnpriced { node: String, model: String, what: String, at: String },
}
