//! The raw rule set: what a rules file says, as serde reads it, with every value's position kept
//! for error messages. Strict (`deny_unknown_fields`); nothing here is checked yet.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::cost_frame::CostBasis;

use super::model::{GpuBasis, Granularity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRules {
    pub(crate) version: Spanned<i64>,
    #[serde(default = "default_currency")]
    pub(crate) currency: String,
    #[serde(default = "default_basis")]
    pub(crate) cost_basis: CostBasis,
    pub(crate) team_tags: Spanned<Vec<String>>,
    #[serde(default = "default_unallocated")]
    pub(crate) unallocated: Spanned<String>,
    #[serde(default)]
    pub(crate) case_insensitive: bool,
    #[serde(default)]
    pub(crate) teams: BTreeMap<Spanned<String>, RawTeam>,
    #[serde(default)]
    pub(crate) assign: Vec<RawAssign>,
    #[serde(default)]
    pub(crate) share: Vec<RawShare>,
    /// GPU chargeback (docs/design.md §5).
    #[serde(default)]
    pub(crate) gpu: Option<Spanned<RawGpu>>,
    /// Cuts of the bill besides team (docs/design.md §4, "Dimensions").
    #[serde(default)]
    pub(crate) dimensions: BTreeMap<Spanned<String>, Spanned<RawDimension>>,
}

/// `[dimensions.<name>]`: project, environment, cost centre, ...
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDimension {
    /// Tag keys naming the value; the first present on a line wins.
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Value -> other spellings of it found in tags.
    #[serde(default)]
    pub(crate) aliases: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// The value of cost that nothing names (default `unassigned`).
    #[serde(default)]
    pub(crate) unassigned: Option<Spanned<String>>,
    /// Kubernetes namespace (glob) -> value: what GPU charges carry.
    #[serde(default)]
    pub(crate) namespaces: BTreeMap<String, Spanned<String>>,
    /// Rules that name the value, in order, as `[[assign]]` names a team.
    #[serde(default)]
    pub(crate) assign: Vec<RawDimensionAssign>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDimensionAssign {
    pub(crate) name: Spanned<String>,
    pub(crate) when: Spanned<RawWhen>,
    pub(crate) value: Spanned<String>,
    /// Only for lines whose tags name no value.
    #[serde(default)]
    pub(crate) fallback: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGpu {
    pub(crate) when: Spanned<RawWhen>,
    /// Namespace (glob) -> team; a namespace named like a team (or alias) needs no entry.
    #[serde(default)]
    pub(crate) namespace_team: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(crate) basis: GpuBasis,
    /// [[min utilisation %, weight], ...] bands for basis = "corrected".
    #[serde(default)]
    pub(crate) correction: Option<Spanned<Vec<(f64, f64)>>>,
    #[serde(default)]
    pub(crate) idle: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) idle_threshold: Option<Spanned<f64>>,
    /// GPU model -> price per GPU-hour, for GPUs with no billing line (on-prem).
    #[serde(default)]
    pub(crate) rate_card: BTreeMap<String, Spanned<f64>>,
}

pub(crate) fn default_currency() -> String {
    "USD".into()
}
pub(crate) fn default_basis() -> CostBasis {
    CostBasis::Amortized
}
pub(crate) fn default_unallocated() -> Spanned<String> {
    Spanned::new(0..0, "unallocated".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTeam {
    #[serde(default)]
    pub(crate) aliases: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) slack: Option<String>,
    /// Monthly budget at the rule set's cost basis and currency.
    #[serde(default)]
    pub(crate) budget: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssign {
    pub(crate) name: Spanned<String>,
    pub(crate) when: Spanned<RawWhen>,
    pub(crate) team: Spanned<String>,
    #[serde(default)]
    pub(crate) fallback: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShare {
    pub(crate) name: Spanned<String>,
    pub(crate) when: Spanned<RawWhen>,
    pub(crate) method: Spanned<RawMethod>,
    pub(crate) among: Spanned<OneOrMany>,
    #[serde(default)]
    pub(crate) weights: Option<Spanned<BTreeMap<Spanned<String>, Spanned<f64>>>>,
    #[serde(default)]
    pub(crate) metric: Option<Spanned<RawMetric>>,
    #[serde(default)]
    pub(crate) granularity: Granularity,
    /// `proportional` only: what a team's own cost counts (default `cloud`).
    #[serde(default)]
    pub(crate) proportional_to: Option<Spanned<crate::rules::ProportionalTo>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawMethod {
    Even,
    Fixed,
    Proportional,
    Metric,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetric {
    pub(crate) source: Spanned<String>,
    #[serde(default)]
    pub(crate) path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) query: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) label: Option<String>,
    /// Driver key (glob) -> team, for drivers keyed by table, key prefix or topic.
    #[serde(default)]
    pub(crate) mapping: BTreeMap<String, Spanned<String>>,
    /// What the driver's values count (`bytes`, `keys`): `explain` and the CSVs name it.
    #[serde(default)]
    pub(crate) unit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWhen {
    pub(crate) account: Option<OneOrMany>,
    pub(crate) service: Option<OneOrMany>,
    pub(crate) resource: Option<OneOrMany>,
    pub(crate) usage_type: Option<OneOrMany>,
    pub(crate) operation: Option<OneOrMany>,
    pub(crate) region: Option<OneOrMany>,
    pub(crate) charge_category: Option<OneOrMany>,
    pub(crate) pricing_category: Option<OneOrMany>,
    pub(crate) instance_family: Option<OneOrMany>,
    pub(crate) instance_type: Option<OneOrMany>,
    /// The resolved team of the line (its tag, through aliases): shares a team's own cost.
    pub(crate) team: Option<Spanned<OneOrMany>>,
    /// Raw tag values by tag key.
    #[serde(default)]
    pub(crate) tags: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
