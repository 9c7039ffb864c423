//! Tag hygiene (docs/design.md §6 "Untagged cost"): whose the unallocated cost is — by account,
//! service and resource, largest first — what tags those resources do carry, the nearest team
//! tag or team a misspelling points at, and how much of each account's cost reached a team.

use std::collections::BTreeMap;

use crate::ledger::Dim;
use crate::money::Cents;
use crate::rules::RuleSet;
use crate::{Allocation, Kind};

/// Unallocated cost of one resource (or, with no resource ID, one account and service).
#[derive(Clone, Debug, PartialEq)]
pub struct Untagged {
    pub account: Dim,
    pub service: Dim,
    pub resource: Dim,
    /// As printed: the sum of its unallocated pieces' cents, so the rows add up to the
    /// unallocated total of `summary.csv`.
    pub cents: Cents,
    /// The values of the rule set's tag keys on its lines (`team=serach`), each once.
    pub rule_tags: Vec<(String, String)>,
    /// How its cost stayed unallocated: no rule or tag claimed it (`Direct`), a share had no one
    /// to carry it (`Shared`), GPU time of namespaces with no team or a separate idle pool
    /// (`Gpu`). The most telling of its pieces' kinds: GPU, then shared, then direct.
    pub kind: Kind,
}

/// The month's unallocated cost by account, service and resource, largest first (then by
/// name, so the order is stable).
pub fn untagged(rules: &RuleSet, allocation: &Allocation) -> Vec<Untagged> {
    let keys = rules.tag_keys();
    let mut by_resource: BTreeMap<(Dim, Dim, Dim), Untagged> = BTreeMap::new();
    for piece in allocation.pieces.iter().filter(|p| p.team.is_none()) {
        let line = &allocation.lines[piece.line as usize];
        let row = by_resource.entry((line.account, line.service, line.resource)).or_insert_with(|| Untagged {
            account: line.account,
            service: line.service,
            resource: line.resource,
            cents: Cents(0),
            rule_tags: Vec::new(),
            kind: Kind::Direct,
        });
        row.cents.0 += piece.cents.0;
        row.kind = row.kind.max(piece.kind);
        for (key, value) in keys.iter().zip(line.tags.iter()) {
            if let Some(value) = value {
                if !row.rule_tags.iter().any(|(k, v)| k == key && v == &**value) {
                    row.rule_tags.push((key.clone(), value.to_string()));
                }
            }
        }
    }
    let mut rows: Vec<Untagged> = by_resource.into_values().filter(|r| r.cents.0 != 0).collect();
    rows.sort_by(|a, b| b.cents.0.cmp(&a.cents.0).then_with(|| (a.account, a.service, a.resource).cmp(&(b.account, b.service, b.resource))));
    rows
}

/// What to fix on a resource whose cost no rule claimed, from the tags it carries
/// (`carried`) and the values of the rule set's keys on it (`rule_tags`):
/// - a key that is a team tag key misspelt or differently cased (`Teem=search` looks like
///   `team`), and whether its value names a team;
/// - a team tag whose value names no team, and the team it is nearest to.
///
/// `None` when nothing is near: the resource needs a team tag.
pub fn tag_advice(rules: &RuleSet, rule_tags: &[(String, String)], carried: &BTreeMap<String, String>) -> Option<String> {
    let team_names: Vec<String> = rules.teams.iter().map(|t| t.name.clone()).collect();
    let names_a_team = |value: &str| rules.resolve_team(value).map(|t| rules.team(t).name.clone());
    let mut advice = Vec::new();
    for (key, value) in carried {
        if rules.team_tags.iter().any(|t| t == key) {
            continue;
        }
        let Some(near) = crate::rules::nearest(&normalised(key), &rules.team_tags.iter().map(|k| normalised(k)).collect::<Vec<_>>()).map(|i| &rules.team_tags[i]) else {
            continue;
        };
        let team = match names_a_team(value) {
            Some(team) => format!(": `{value}` is team {team}"),
            None => String::new(),
        };
        advice.push(format!("`{key}={value}` looks like `{near}`{team}"));
    }
    for (key, value) in rule_tags.iter().filter(|(k, _)| rules.team_tags.contains(k)) {
        if names_a_team(value).is_none() {
            match crate::rules::nearest(value, &team_names) {
                Some(i) => advice.push(format!("`{key}={value}` names no team: did you mean `{}`?", team_names[i])),
                None => advice.push(format!("`{key}={value}` names no team: add it as a team or an alias")),
            }
        }
    }
    (!advice.is_empty()).then(|| advice.join("; "))
}

/// What to fix on an unallocated resource, in a sentence: [`tag_advice`] for cost no rule
/// claimed, or what to map for GPU time and shares with no one to carry them.
pub fn advice(rules: &RuleSet, row: &Untagged, carried: &BTreeMap<String, String>) -> String {
    match row.kind {
        Kind::Gpu => "GPU time no team claims (namespaces with no team, or a separate idle pool): map the namespaces in [gpu] namespace_team".to_string(),
        Kind::Shared => "a share with no one to carry it: check the rule's `among` and its driver".to_string(),
        Kind::Direct => tag_advice(rules, &row.rule_tags, carried).unwrap_or_else(|| format!("no team tag: add one of {}", rules.team_tags.join(", "))),
    }
}

/// A key as compared with the team tag keys: case, spaces and separators aside (`Team `,
/// `TEAM`, `team_` and `team` are one key to a reader).
fn normalised(key: &str) -> String {
    key.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Of each account, the cost that reached a team and its whole cost, as printed (cents of its
/// pieces).
#[derive(Clone, Debug, PartialEq)]
pub struct AccountCoverage {
    pub account: String,
    pub allocated: Cents,
    pub total: Cents,
}

impl AccountCoverage {
    /// Share of the account's cost that reached a team, 0..=1 (1 for an account of no cost).
    pub fn share(&self) -> f64 {
        if self.total.0 == 0 {
            1.0
        } else {
            self.allocated.0 as f64 / self.total.0 as f64
        }
    }
}

/// Coverage per account, by account ID.
pub fn account_coverage(allocation: &Allocation) -> Vec<AccountCoverage> {
    let mut by_account: BTreeMap<Dim, (i64, i64)> = BTreeMap::new();
    for piece in &allocation.pieces {
        let e = by_account.entry(allocation.lines[piece.line as usize].account).or_default();
        e.1 += piece.cents.0;
        if piece.team.is_some() {
            e.0 += piece.cents.0;
        }
    }
    by_account.into_iter().map(|(account, (allocated, total))| AccountCoverage { account: account.to_string(), allocated: Cents(allocated), total: Cents(total) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RuleSet {
        let text = "version = 1\nteam_tags = [\"team\", \"owner\"]\n[teams.search]\naliases = [\"srch\"]\n[teams.payments]\n";
        RuleSet::parse(std::path::Path::new("r.toml"), text).unwrap()
    }

    #[test]
    fn a_misspelt_key_is_matched_to_the_team_tag_key_and_its_value_to_the_team() {
        let carried = BTreeMap::from([("Teem".to_string(), "search".to_string()), ("env".to_string(), "prod".to_string())]);
        assert_eq!(tag_advice(&rules(), &[], &carried).as_deref(), Some("`Teem=search` looks like `team`: `search` is team search"));
        let carried = BTreeMap::from([("TEAM ".to_string(), "nobody".to_string())]);
        assert_eq!(tag_advice(&rules(), &[], &carried).as_deref(), Some("`TEAM =nobody` looks like `team`"));
        // Far from every team key: nothing to say but that a team tag is missing.
        let carried = BTreeMap::from([("cost-centre".to_string(), "42".to_string())]);
        assert_eq!(tag_advice(&rules(), &[], &carried), None);
    }

    #[test]
    fn a_team_value_that_names_no_team_gets_the_nearest_team() {
        let tags = vec![("team".to_string(), "serach".to_string())];
        assert_eq!(tag_advice(&rules(), &tags, &BTreeMap::new()).as_deref(), Some("`team=serach` names no team: did you mean `search`?"));
        let tags = vec![("team".to_string(), "marketing".to_string())];
        assert_eq!(tag_advice(&rules(), &tags, &BTreeMap::new()).as_deref(), Some("`team=marketing` names no team: add it as a team or an alias"));
    }
}
