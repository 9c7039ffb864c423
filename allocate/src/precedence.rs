//! Precedence (docs/design.md §4): which rule decides a cost line — the first matching `[[assign]]`,
//! else the first matching `[[share]]`, else the team tag, else a fallback `[[assign]]`, else
//! unallocated — decided once per distinct match key, and the texts pieces carry.

use std::collections::HashMap;

use crate::ledger::{CostLine, Dim};
use crate::rules::{Field, Matcher, RuleSet, TeamId};

/// The texts pieces carry, made once per run and shared by every piece that names them.
pub(crate) struct Labels {
    pub(crate) assign: Vec<Dim>,
    pub(crate) share: Vec<Dim>,
    /// `tag:<key>` per team tag key.
    pub(crate) tag: HashMap<String, Dim>,
    pub(crate) unallocated: Dim,
    pub(crate) methods: HashMap<&'static str, Dim>,
    pub(crate) no_weight: Vec<Dim>,
    pub(crate) one_share: Dim,
}

impl Labels {
    pub(crate) fn new(rules: &RuleSet) -> Labels {
        let methods = ["assign", "tag", "fallback", "none", "even", "fixed", "proportional", "metric"].into_iter().map(|m| (m, Dim::from(m))).collect();
        Labels {
            assign: rules.assign.iter().map(|r| Dim::from(r.name.as_str())).collect(),
            share: rules.share.iter().map(|r| Dim::from(r.name.as_str())).collect(),
            tag: rules.team_tags.iter().map(|k| (k.clone(), Dim::from(format!("tag:{k}")))).collect(),
            unallocated: Dim::from(rules.unallocated.as_str()),
            methods,
            no_weight: rules.share.iter().map(|r| Dim::from(format!("{} (no weight)", r.method.name()))).collect(),
            one_share: Dim::from("1 share"),
        }
    }

    pub(crate) fn method(&self, name: &str) -> Dim {
        self.methods.get(name).cloned().unwrap_or_else(|| Dim::from(name))
    }
}

/// Whether a line matches a rule's `when`.
pub(crate) fn line_matches(rules: &RuleSet, tag_keys: &[String], line: &CostLine, when: &Matcher) -> bool {
    LineView::new(rules, tag_keys, line).matches(when)
}

/// The values of a line that precedence and the dimensions depend on: the fields any `when` of
/// `[[assign]]`, `[[share]]` or a dimension's rules names, and the tags (team tags and `when.tags`). Two lines that agree on these
/// get the same decision; the key is the values' shared allocations, so equal keys mean equal
/// values (two copies of one value only cost a second decision).
pub(crate) struct ReadFields {
    fields: Vec<fn(&CostLine) -> &Dim>,
    tags: usize,
}

impl ReadFields {
    pub(crate) fn of(rules: &RuleSet, tag_keys: &[String]) -> ReadFields {
        let dimensions = rules.dimensions.iter().flat_map(|d| d.assign.iter().map(|r| &r.when));
        let mut read: Vec<&Field> = rules.assign.iter().map(|r| &r.when).chain(rules.share.iter().map(|r| &r.when)).chain(dimensions).flat_map(|w| w.conditions.iter().map(|(f, _)| f)).collect();
        read.sort_by_key(|f| f.name());
        read.dedup();
        let fields = read
            .into_iter()
            .filter_map(|f| -> Option<fn(&CostLine) -> &Dim> {
                Some(match f {
                    Field::Account => |l| &l.account,
                    Field::Service => |l| &l.service,
                    Field::Resource => |l| &l.resource,
                    Field::UsageType => |l| &l.usage_type,
                    Field::Operation => |l| &l.operation,
                    Field::Region => |l| &l.region,
                    Field::ChargeCategory => |l| &l.charge_category,
                    Field::PricingCategory => |l| &l.pricing_category,
                    Field::InstanceFamily | Field::InstanceType => |l| &l.instance_type,
                    // Team and tag conditions read the tags, which are always in the key.
                    Field::Team | Field::Tag(_) => return None,
                })
            })
            .collect();
        ReadFields { fields, tags: tag_keys.len() }
    }

    pub(crate) fn key(&self, line: &CostLine) -> Vec<usize> {
        let mut key = Vec::with_capacity(self.fields.len() + self.tags);
        key.extend(self.fields.iter().map(|f| f(line).code() as usize));
        key.extend(line.tags.iter().map(|t| t.as_ref().map_or(0, |v| v.code() as usize)));
        key
    }
}

#[derive(Clone)]
pub(crate) enum Decision {
    Direct { team: TeamId, rule: Dim, method: Dim },
    Share(usize),
    Unallocated,
}

/// The field values of a line as rules see them (case-folded when the rule set says so).
pub(crate) struct LineView<'a> {
    rules: &'a RuleSet,
    line: &'a CostLine,
    tag_keys: &'a [String],
    /// The team named by the first present team tag, and which key said so.
    tag_team: Option<(TeamId, &'a str)>,
}

impl<'a> LineView<'a> {
    pub(crate) fn new(rules: &'a RuleSet, tag_keys: &'a [String], line: &'a CostLine) -> Self {
        // "First present tag key wins": the first team tag with a value decides, even when that
        // value names no team (then the line falls through to fallback / unallocated).
        let first = rules.team_tags.iter().find_map(|k| line.tags.get(tag_keys.iter().position(|t| t == k)?)?.as_deref().map(|v| (k.as_str(), v)));
        let tag_team = first.and_then(|(k, v)| rules.resolve_team(v).map(|t| (t, k)));
        LineView { rules, line, tag_keys, tag_team }
    }

    fn value(&self, field: &Field) -> Option<std::borrow::Cow<'a, str>> {
        let l = self.line;
        let v = match field {
            Field::Account => &*l.account,
            Field::Service => &*l.service,
            Field::Resource => &*l.resource,
            Field::UsageType => &*l.usage_type,
            Field::Operation => &*l.operation,
            Field::Region => &*l.region,
            Field::ChargeCategory => &*l.charge_category,
            Field::PricingCategory => &*l.pricing_category,
            Field::InstanceFamily => l.instance_family(),
            Field::InstanceType => &*l.instance_type,
            Field::Team => return self.tag_team.map(|(t, _)| self.rules.fold(&self.rules.team(t).name)),
            Field::Tag(key) => {
                let i = self.tag_keys.iter().position(|k| k == key)?;
                return l.tags.get(i)?.as_deref().map(|v| self.rules.fold(v));
            }
        };
        Some(self.rules.fold(v))
    }

    pub(crate) fn matches(&self, matcher: &Matcher) -> bool {
        matcher.conditions.iter().all(|(field, patterns)| match self.value(field) {
            Some(v) => patterns.iter().any(|p| p.matches(&v)),
            None => false,
        })
    }
}

/// docs/design.md §4 precedence.
pub(crate) fn decide(rules: &RuleSet, labels: &Labels, view: &LineView) -> Decision {
    if let Some(i) = rules.assign.iter().position(|r| !r.fallback && view.matches(&r.when)) {
        return Decision::Direct { team: rules.assign[i].team, rule: labels.assign[i].clone(), method: labels.method("assign") };
    }
    if let Some(i) = rules.share.iter().position(|r| view.matches(&r.when)) {
        return Decision::Share(i);
    }
    if let Some((team, key)) = view.tag_team {
        let rule = labels.tag.get(key).cloned().unwrap_or_else(|| Dim::from(format!("tag:{key}")));
        return Decision::Direct { team, rule, method: labels.method("tag") };
    }
    if let Some(i) = rules.assign.iter().position(|r| r.fallback && view.matches(&r.when)) {
        return Decision::Direct { team: rules.assign[i].team, rule: labels.assign[i].clone(), method: labels.method("fallback") };
    }
    Decision::Unallocated
}
