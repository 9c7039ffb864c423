//! The validated rule set: the only form the engine accepts (teams, matchers, assign and share
//! rules, metric drivers), and the lookups the engine makes on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cost_frame::CostBasis;
use crate::money::Money;

use super::{Position, RulesError};

/// Shares are computed over the billing period (default) or per day.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    #[default]
    Period,
    Day,
}

/// A team, by its index in [`RuleSet::teams`].
pub type TeamId = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub name: String,
    pub aliases: Vec<String>,
    /// The Slack route its alerts and monthly message go to (a webhook named in the config).
    pub slack: Option<String>,
    /// Monthly budget at the rule set's cost basis (`budget = 40000` under `[teams.<name>]`).
    pub budget: Option<crate::money::Cents>,
}

/// The file stem of a team's cost lines (`teams/<stem>.csv`), the one place a team name becomes
/// a path: the CSV writer and the links in Slack messages both use it, and validation refuses two
/// teams with the same stem (docs/publishing.md). No traversal, no separators: `검색` stays
/// `검색`, `../x` becomes `_.._x`, `a/b` becomes `a_b`.
pub fn file_stem(name: &str) -> String {
    let cleaned: String = name.trim().chars().map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    let cleaned = cleaned.trim_matches('.').to_string();
    let cleaned = if cleaned.is_empty() { "_".to_string() } else { cleaned };
    // Short enough for every filesystem (255 bytes) with room for an extension.
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    out
}

/// A line-item field a rule can match on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Account,
    Service,
    Resource,
    UsageType,
    Operation,
    Region,
    ChargeCategory,
    PricingCategory,
    InstanceFamily,
    InstanceType,
    Team,
    Tag(String),
}

impl Field {
    pub fn name(&self) -> String {
        match self {
            Field::Account => "account".into(),
            Field::Service => "service".into(),
            Field::Resource => "resource".into(),
            Field::UsageType => "usage_type".into(),
            Field::Operation => "operation".into(),
            Field::Region => "region".into(),
            Field::ChargeCategory => "charge_category".into(),
            Field::PricingCategory => "pricing_category".into(),
            Field::InstanceFamily => "instance_family".into(),
            Field::InstanceType => "instance_type".into(),
            Field::Team => "team".into(),
            Field::Tag(k) => format!("tags.{k}"),
        }
    }
}

/// `when`: every listed field must match (AND); the patterns of one field are alternatives (OR).
#[derive(Clone, Debug)]
pub struct Matcher {
    pub conditions: Vec<(Field, Vec<Pattern>)>,
}

/// A literal value or a glob (`*`, `?`, `[...]`).
#[derive(Clone, Debug)]
pub struct Pattern {
    pub text: String,
    glob: Option<glob::Pattern>,
}

impl Pattern {
    pub(crate) fn new(text: &str, case_insensitive: bool) -> Result<Pattern, String> {
        let text = if case_insensitive { text.to_lowercase() } else { text.to_string() };
        let glob = if text.contains(['*', '?', '[']) { Some(glob::Pattern::new(&text).map_err(|e| format!("`{text}` is not a valid glob: {e}"))?) } else { None };
        Ok(Pattern { text, glob })
    }

    /// Whether `value` (already case-folded when the rule set is case-insensitive) matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.glob {
            Some(g) => g.matches_with(value, glob::MatchOptions { case_sensitive: true, require_literal_separator: false, require_literal_leading_dot: false }),
            None => self.text == value,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AssignRule {
    pub name: String,
    pub when: Matcher,
    pub team: TeamId,
    pub fallback: bool,
}

/// Who receives a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Teams with direct spend in the period (or day).
    All,
    Teams(Vec<TeamId>),
}

/// Where a metric driver comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverSource {
    /// A CSV with `date`, `team` or `key`, `value`; path resolved against the rules file.
    File { path: PathBuf, at: Position },
    /// An instant PromQL query evaluated over the period; `label` names the team (or key).
    Prometheus { query: String, label: String, at: Position },
}

#[derive(Clone, Debug)]
pub struct MetricDriver {
    pub source: DriverSource,
    /// Driver keys (globs) to teams; a key that is a team name or alias needs no mapping.
    pub mapping: Vec<(Pattern, TeamId)>,
    /// What the values count, as the rule names it (`bytes`, `keys`); `units` when it does not.
    pub unit: String,
}

#[derive(Clone, Debug)]
pub enum SplitMethod {
    Even,
    /// Weights in millionths of a percent, totalling exactly 100%.
    Fixed(Vec<(TeamId, u64)>),
    Proportional(ProportionalTo),
    Metric(MetricDriver),
}

/// What a proportional share weighs each team's own cost (direct + GPU) by (docs/design.md §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionalTo {
    /// Its own cost on the AWS bill: on-prem GPU at the rate card left out, so a cloud cost (tax,
    /// support, egress) follows cloud spend.
    #[default]
    Cloud,
    /// All its own cost, on-prem GPU at the rate card included.
    All,
}

impl SplitMethod {
    pub fn name(&self) -> &'static str {
        match self {
            SplitMethod::Even => "even",
            SplitMethod::Fixed(_) => "fixed",
            SplitMethod::Proportional(_) => "proportional",
            SplitMethod::Metric(_) => "metric",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ShareRule {
    pub name: String,
    pub when: Matcher,
    pub method: SplitMethod,
    pub among: Targets,
    pub granularity: Granularity,
}

/// A validated rule set: the only form the engine accepts.
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub file: String,
    pub currency: String,
    pub cost_basis: CostBasis,
    pub team_tags: Vec<String>,
    pub unallocated: String,
    pub case_insensitive: bool,
    pub teams: Vec<Team>,
    pub assign: Vec<AssignRule>,
    pub share: Vec<ShareRule>,
    pub gpu: Option<GpuRules>,
    /// Cuts of the bill besides team, in name order.
    pub dimensions: Vec<Dimension>,
    /// Normalised team name or alias -> team.
    pub(crate) names: HashMap<String, TeamId>,
}

/// A cut of the bill besides team (`[dimensions.<name>]`, docs/design.md §4 "Dimensions"): every
/// allocated piece carries one value of it. A line's own value comes from the first matching
/// `assign` rule, else its first present tag (through aliases), else a `fallback` rule; pieces
/// of shared cost and GPU charges that have none carry the values of what they are split by.
#[derive(Clone, Debug)]
pub struct Dimension {
    pub name: String,
    pub tags: Vec<String>,
    /// Normalised spelling (alias or value) -> value.
    pub(crate) aliases: HashMap<String, String>,
    pub unassigned: String,
    /// Namespace -> value, for GPU charges.
    pub namespaces: Vec<(Pattern, String)>,
    pub assign: Vec<DimensionAssign>,
}

#[derive(Clone, Debug)]
pub struct DimensionAssign {
    pub name: String,
    pub when: Matcher,
    pub value: String,
    pub fallback: bool,
}

impl Dimension {
    /// The value a tag names: its alias's value, else the tag as written (trimmed).
    pub fn value_of_tag(&self, rules: &RuleSet, tag: &str) -> String {
        let tag = tag.trim();
        self.aliases.get(rules.fold(tag).as_ref()).cloned().unwrap_or_else(|| tag.to_string())
    }

    /// The value GPU time in `namespace` carries, if `namespaces` maps it.
    pub fn value_of_namespace(&self, namespace: &str) -> Option<&str> {
        self.namespaces.iter().find(|(p, _)| p.matches(namespace)).map(|(_, v)| v.as_str())
    }
}

/// Weight precision: millionths.
pub const WEIGHT_SCALE: u64 = 1_000_000;

impl RuleSet {
    /// Parses and validates a rules file. `file` is how errors name it; relative driver paths are
    /// resolved against `file`'s folder.
    pub fn parse(file: &Path, text: &str) -> Result<RuleSet, RulesError> {
        super::validate::parse(file, text)
    }

    pub fn team(&self, id: TeamId) -> &Team {
        &self.teams[id]
    }

    /// The name a piece's team goes by in the outputs: the team's, or the unallocated bucket's.
    pub fn team_or_unallocated(&self, team: Option<TeamId>) -> &str {
        team.map_or(self.unallocated.as_str(), |t| self.teams[t].name.as_str())
    }

    /// The team a tag value names (name or alias, trimmed; exact unless case-insensitive).
    pub fn resolve_team(&self, value: &str) -> Option<TeamId> {
        self.names.get(self.fold(value.trim()).as_ref()).copied()
    }

    /// Case folding as the rule set asks; borrowed (no copy) when matching is exact.
    pub fn fold<'a>(&self, value: &'a str) -> std::borrow::Cow<'a, str> {
        if self.case_insensitive {
            std::borrow::Cow::Owned(value.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(value)
        }
    }

    /// Tag keys the engine reads: team tags first, then the dimensions' tags, then any named in
    /// a `when.tags` (of `[[assign]]`, `[[share]]`, `[gpu]` and the dimensions' rules).
    pub fn tag_keys(&self) -> Vec<String> {
        let mut keys = self.team_tags.clone();
        for key in self.dimensions.iter().flat_map(|d| &d.tags) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let gpu = self.gpu.iter().map(|g| &g.when);
        let dimensions = self.dimensions.iter().flat_map(|d| d.assign.iter().map(|r| &r.when));
        for when in self.assign.iter().map(|r| &r.when).chain(self.share.iter().map(|r| &r.when)).chain(gpu).chain(dimensions) {
            for (field, _) in &when.conditions {
                if let Field::Tag(k) = field {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
            }
        }
        keys
    }

    /// Metric drivers, by share rule name.
    pub fn metric_drivers(&self) -> Vec<(&str, &MetricDriver)> {
        self.metric_shares().into_iter().map(|(rule, driver)| (rule.name.as_str(), driver)).collect()
    }

    /// The metric shares with their drivers (for the granularity a driver must be read at).
    pub fn metric_shares(&self) -> Vec<(&ShareRule, &MetricDriver)> {
        self.share
            .iter()
            .filter_map(|s| match &s.method {
                SplitMethod::Metric(d) => Some((s, d)),
                _ => None,
            })
            .collect()
    }
}

// The `[gpu]` section (docs/design.md §5).

/// The common utilisation bands: at or above 70% pays in full, then 0.8, 0.6 and 0.4.
pub const DEFAULT_CORRECTION: [(f64, f64); 4] = [(70.0, 1.0), (40.0, 0.8), (20.0, 0.6), (0.0, 0.4)];

/// What a team's GPU-hours weigh.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GpuBasis {
    /// Time a GPU was assigned to the team's pods, busy or not.
    #[default]
    Allocated,
    /// Assigned time times utilisation.
    UtilizationWeighted,
    /// Assigned time times the factor of the utilisation band (`correction`).
    Corrected,
}

impl GpuBasis {
    pub fn name(self) -> &'static str {
        match self {
            GpuBasis::Allocated => "allocated",
            GpuBasis::UtilizationWeighted => "utilization_weighted",
            GpuBasis::Corrected => "corrected",
        }
    }
}

/// Where the idle pool goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Back to the teams, in proportion to their weights.
    Share,
    /// Kept visible in the unallocated bucket, as rule `gpu idle`.
    Separate,
    /// To one team (e.g. the platform team that runs the cluster).
    Team(TeamId),
}

/// The validated `[gpu]` section of a rule set.
#[derive(Clone, Debug)]
pub struct GpuRules {
    /// The billed line items that are GPU capacity.
    pub when: Matcher,
    pub namespace_team: Vec<(Pattern, TeamId)>,
    pub basis: GpuBasis,
    /// (minimum utilisation %, weight), highest minimum first, ending at 0.
    pub correction: Vec<(f64, f64)>,
    pub idle: IdlePolicy,
    /// Utilisation (%) under which assigned GPU-hours count as idle.
    pub idle_threshold: f64,
    /// GPU model -> price per GPU-hour for hosts with no billing line.
    pub rate_card: Vec<(String, Money)>,
    pub at: Position,
}

impl GpuRules {
    /// The `corrected` factor for an average utilisation in percent.
    pub fn correction_factor(&self, utilization_pct: f64) -> f64 {
        self.correction.iter().find(|(min, _)| utilization_pct >= *min).map_or(0.0, |(_, w)| *w)
    }

    /// The team a namespace belongs to: `namespace_team` first, then a team named like it.
    pub fn team_of_namespace(&self, rules: &RuleSet, namespace: &str) -> Option<TeamId> {
        self.namespace_team.iter().find(|(p, _)| p.matches(namespace)).map(|(_, t)| *t).or_else(|| rules.resolve_team(namespace))
    }

    pub fn rate(&self, model: &str) -> Option<Money> {
        self.rate_card.iter().find(|(m, _)| m == model.trim()).map(|(_, r)| *r)
    }
}
