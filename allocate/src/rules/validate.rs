//! Validation: from the raw rule set to the validated one, reporting every problem with its
//! file:line:column and what to do (unknown teams with a "did you mean", weights, globs, ...).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use toml::Spanned;

use crate::money::Money;

use super::model::*;
use super::raw::*;
use super::{Position, RuleProblem, RulesError};

/// Parses and validates a rules file (see [`RuleSet::parse`]).
pub(super) fn parse(file: &Path, text: &str) -> Result<RuleSet, RulesError> {
    let display = file.display().to_string();
    let locate = |span: std::ops::Range<usize>| position(&display, text, span.start);
    let raw: RawRules = toml::from_str(text).map_err(|e| RulesError { problems: vec![RuleProblem { at: locate(e.span().unwrap_or(0..0)), message: toml_message(&e) }] })?;
    Validator { file, display: display.clone(), text, problems: Vec::new() }.validate(raw)
}

fn toml_message(e: &toml::de::Error) -> String {
    let message = e.message().trim().trim_end_matches('.').to_string();
    if message.starts_with("unknown field") {
        format!("{message}: remove it or fix its spelling")
    } else {
        message
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn position(file: &str, text: &str, offset: usize) -> Position {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { file: file.to_string(), line, column }
}

/// Resolves a team name written in the rules (reporting a problem when it names no team).
type TeamLookup<'a, V> = dyn Fn(&mut V, &Spanned<String>, &str) -> Option<TeamId> + 'a;

struct Validator<'a> {
    file: &'a Path,
    display: String,
    text: &'a str,
    problems: Vec<RuleProblem>,
}

impl Validator<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> Position {
        position(&self.display, self.text, span.start)
    }

    fn problem(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let at = self.at(span);
        self.problems.push(RuleProblem { at, message: message.into() });
    }

    fn validate(mut self, raw: RawRules) -> Result<RuleSet, RulesError> {
        if *raw.version.get_ref() != 1 {
            self.problem(raw.version.span(), format!("unsupported version {}: this finops reads version = 1", raw.version.get_ref()));
        }
        let fold = |s: &str| if raw.case_insensitive { s.trim().to_lowercase() } else { s.trim().to_string() };
        if raw.team_tags.get_ref().iter().all(|k| k.trim().is_empty()) {
            self.problem(raw.team_tags.span(), "team_tags is empty: list the tag keys that name a team, e.g. [\"team\"]");
        }

        // Teams and their aliases: one name, one team.
        let mut teams = Vec::new();
        let mut names: HashMap<String, TeamId> = HashMap::new();
        for (name, team) in &raw.teams {
            let id = teams.len();
            let mut claim = |this: &mut Self, text: &str, span: std::ops::Range<usize>| {
                if let Some(other) = names.insert(fold(text), id) {
                    if other != id {
                        let other_name: &String = raw.teams.keys().nth(other).map(|k| k.get_ref()).expect("team index");
                        this.problem(span, format!("`{text}` names both team `{other_name}` and team `{}`: a name or alias may belong to one team only", name.get_ref()));
                    }
                }
            };
            claim(&mut self, name.get_ref(), name.span());
            for alias in &team.aliases {
                claim(&mut self, alias.get_ref(), alias.span());
            }
            let budget = match &team.budget {
                Some(b) if !(b.get_ref().is_finite() && *b.get_ref() > 0.0 && *b.get_ref() < 1e15) => {
                    self.problem(b.span(), format!("budget {} for team `{}` must be a positive amount per month", b.get_ref(), name.get_ref()));
                    None
                }
                Some(b) => Some(crate::money::Cents((b.get_ref() * 100.0).round() as i64)),
                None => None,
            };
            teams.push(Team { name: name.get_ref().clone(), aliases: team.aliases.iter().map(|a| a.get_ref().clone()).collect(), slack: team.slack.clone(), budget });
        }
        if names.contains_key(&fold(raw.unallocated.get_ref())) {
            self.problem(raw.unallocated.span(), format!("`{}` is both a team and the unallocated bucket: rename one", raw.unallocated.get_ref()));
        }
        // Each team's cost lines go to `teams/<stem>.csv` and its Slack message links that file:
        // two names with one stem would share a file, and one team would be sent the other's lines.
        let mut stems: HashMap<String, String> = HashMap::new();
        let named = raw.teams.keys().map(|n| (n.get_ref().clone(), n.span())).chain([(raw.unallocated.get_ref().clone(), raw.unallocated.span())]);
        for (name, span) in named {
            if let Some(other) = stems.insert(file_stem(&name).to_lowercase(), name.clone()) {
                if other != name {
                    self.problem(span, format!("teams `{other}` and `{name}` would share the file teams/{}.csv (names differing only in spaces, punctuation or case): rename one", file_stem(&name)));
                }
            }
        }
        let team_names: Vec<String> = teams.iter().map(|t| t.name.clone()).collect();
        let lookup = |this: &mut Self, text: &Spanned<String>, context: &str| -> Option<TeamId> {
            match names.get(&fold(text.get_ref())) {
                Some(id) => Some(*id),
                None => {
                    let hint = suggestion(text.get_ref(), &team_names);
                    this.problem(text.span(), format!("unknown team `{}` in {context}: add it under [teams.{}] or fix the name{hint}", text.get_ref(), text.get_ref()));
                    None
                }
            }
        };

        let mut rule_names: BTreeSet<String> = BTreeSet::new();
        let mut assign = Vec::new();
        for rule in &raw.assign {
            self.unique_name(&mut rule_names, &rule.name);
            let context = format!("[[assign]] `{}`", rule.name.get_ref());
            let when = self.matcher(&rule.when, raw.case_insensitive, &team_names, &context);
            let team = lookup(&mut self, &rule.team, &context);
            if let (Some(when), Some(team)) = (when, team) {
                assign.push(AssignRule { name: rule.name.get_ref().clone(), when, team, fallback: rule.fallback });
            }
        }

        let mut share = Vec::new();
        for rule in &raw.share {
            self.unique_name(&mut rule_names, &rule.name);
            let context = format!("[[share]] `{}`", rule.name.get_ref());
            let when = self.matcher(&rule.when, raw.case_insensitive, &team_names, &context);
            let among_span = rule.among.span();
            let among = match rule.among.get_ref() {
                OneOrMany::One(k) if k == "all" => Some(Targets::All),
                OneOrMany::One(k) => {
                    self.problem(among_span, format!("among = \"{k}\" in {context}: use \"all\" or a list of teams"));
                    None
                }
                OneOrMany::Many(list) if list.is_empty() => {
                    self.problem(among_span, format!("among is empty in {context}: list the teams that share this cost, or use \"all\""));
                    None
                }
                OneOrMany::Many(list) => {
                    let mut ids = Vec::new();
                    for entry in list {
                        if entry.contains(['*', '?', '[']) {
                            let matched: Vec<TeamId> = match Pattern::new(entry, raw.case_insensitive) {
                                Ok(p) => (0..teams.len()).filter(|i| p.matches(&fold(&teams[*i].name))).collect(),
                                Err(_) => Vec::new(),
                            };
                            if matched.is_empty() {
                                self.problem(among_span.clone(), format!("`{entry}` in {context} among matches no team in [teams]: fix the pattern or add the teams"));
                            }
                            ids.extend(matched);
                        } else if let Some(id) = lookup(&mut self, &Spanned::new(among_span.clone(), entry.clone()), &format!("{context} among")) {
                            ids.push(id);
                        }
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    Some(Targets::Teams(ids))
                }
            };
            // A team cannot pay for a share of its own shared cost: that would loop.
            if let (Some(when), Some(Targets::Teams(ids))) = (&when, &among) {
                for (field, patterns) in &when.conditions {
                    if *field != Field::Team {
                        continue;
                    }
                    for id in ids {
                        if patterns.iter().any(|p| p.matches(&fold(&teams[*id].name))) {
                            self.problem(rule.among.span(), format!("team `{}` is both the source (when.team) and a target (among) of {context}: remove it from one of them", teams[*id].name));
                        }
                    }
                }
            }
            let method = self.method(rule, raw.case_insensitive, &context, &names, &team_names);
            if let (Some(when), Some(among), Some(method)) = (when, among, method) {
                share.push(ShareRule { name: rule.name.get_ref().clone(), when, method, among, granularity: rule.granularity });
            }
        }

        let gpu = raw.gpu.as_ref().and_then(|g| self.gpu(g, raw.case_insensitive, &team_names, &lookup));
        let dimensions: Vec<Dimension> = raw.dimensions.iter().filter_map(|(name, d)| self.dimension(name, d, raw.case_insensitive, &team_names)).collect();

        if self.problems.is_empty() {
            Ok(RuleSet {
                file: self.display,
                currency: raw.currency,
                cost_basis: raw.cost_basis,
                team_tags: raw.team_tags.get_ref().iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
                unallocated: raw.unallocated.get_ref().clone(),
                case_insensitive: raw.case_insensitive,
                teams,
                assign,
                share,
                gpu,
                dimensions,
                names,
            })
        } else {
            self.problems.sort_by_key(|p| (p.at.line, p.at.column));
            Err(RulesError { problems: self.problems })
        }
    }

    fn gpu(&mut self, raw: &Spanned<RawGpu>, case_insensitive: bool, team_names: &[String], lookup: &TeamLookup<'_, Self>) -> Option<GpuRules> {
        let context = "[gpu]";
        let g = raw.get_ref();
        let at = self.at(raw.span());
        let when = self.matcher(&g.when, case_insensitive, team_names, context);
        let mut namespace_team = Vec::new();
        for (namespace, team) in &g.namespace_team {
            let pattern = match Pattern::new(namespace.trim(), false) {
                Ok(p) => p,
                Err(e) => {
                    self.problem(team.span(), format!("{e} (in [gpu] namespace_team)"));
                    continue;
                }
            };
            if let Some(id) = lookup(self, team, "[gpu] namespace_team") {
                namespace_team.push((pattern, id));
            }
        }
        let correction = match &g.correction {
            None => DEFAULT_CORRECTION.to_vec(),
            Some(bands) => {
                let list = bands.get_ref().clone();
                let ok_values = list.iter().all(|(min, w)| (0.0..=100.0).contains(min) && (0.0..=1.0).contains(w));
                let descending = list.windows(2).all(|p| p[0].0 > p[1].0);
                if list.is_empty() || !ok_values || !descending || list.last().map(|b| b.0) != Some(0.0) {
                    self.problem(
                        bands.span(),
                        "[gpu] correction must list [min utilisation %, weight] bands from the highest minimum down to 0, weights between 0 and 1, e.g. [[70, 1.0], [40, 0.8], [20, 0.6], [0, 0.4]]",
                    );
                }
                list
            }
        };
        if g.correction.is_some() && g.basis != GpuBasis::Corrected {
            let span = g.correction.as_ref().map(|c| c.span()).unwrap_or(0..0);
            self.problem(span, "[gpu] correction is only read by basis = \"corrected\": remove it or change the basis");
        }
        let idle = match &g.idle {
            None => IdlePolicy::Share,
            Some(text) => match text.get_ref().trim() {
                "share" => IdlePolicy::Share,
                "separate" => IdlePolicy::Separate,
                other => match other.strip_prefix("team:") {
                    Some(team) => lookup(self, &Spanned::new(text.span(), team.trim().to_string()), "[gpu] idle").map_or(IdlePolicy::Share, IdlePolicy::Team),
                    None => {
                        self.problem(text.span(), format!("[gpu] idle = \"{other}\": use \"share\", \"separate\" or \"team:<name>\""));
                        IdlePolicy::Share
                    }
                },
            },
        };
        let idle_threshold = match &g.idle_threshold {
            None => 10.0,
            Some(t) => {
                if !(0.0..=100.0).contains(t.get_ref()) {
                    self.problem(t.span(), format!("[gpu] idle_threshold {} must be a utilisation percentage between 0 and 100", t.get_ref()));
                }
                *t.get_ref()
            }
        };
        let mut rate_card = Vec::new();
        for (model, rate) in &g.rate_card {
            let price = format!("{}", rate.get_ref()).parse::<Money>();
            match price {
                Ok(m) if *rate.get_ref() > 0.0 && rate.get_ref().is_finite() => rate_card.push((model.trim().to_string(), m)),
                _ => self.problem(rate.span(), format!("[gpu] rate_card price {} for `{model}` must be a positive price per GPU-hour", rate.get_ref())),
            }
        }
        Some(GpuRules { when: when?, namespace_team, basis: g.basis, correction, idle, idle_threshold, rate_card, at })
    }

    /// `[dimensions.<name>]`: its name, tags, aliases, unassigned value, namespaces and rules.
    fn dimension(&mut self, name: &Spanned<String>, raw: &Spanned<RawDimension>, case_insensitive: bool, team_names: &[String]) -> Option<Dimension> {
        let n = name.get_ref().as_str();
        let context = format!("[dimensions.{n}]");
        let problems_before = self.problems.len();
        if !(n.starts_with(|c: char| c.is_ascii_lowercase()) && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')) {
            self.problem(name.span(), format!("dimension name `{n}` must be lower-case letters, digits and `_`, starting with a letter: it names the file summary-<name>.csv"));
        }
        if n == "team" {
            self.problem(name.span(), "`team` is the built-in dimension (team_tags, [teams]): give this one another name");
        }
        let d = raw.get_ref();
        if d.tags.iter().all(|t| t.trim().is_empty()) && d.assign.is_empty() && d.namespaces.is_empty() {
            self.problem(raw.span(), format!("{context} has nothing that names a value: give tags = [\"<tag key>\"], [[dimensions.{n}.assign]] rules or namespaces"));
        }
        let fold = |s: &str| if case_insensitive { s.trim().to_lowercase() } else { s.trim().to_string() };
        let unassigned = d.unassigned.as_ref().map_or_else(|| "unassigned".to_string(), |u| u.get_ref().trim().to_string());
        if let Some(u) = d.unassigned.as_ref().filter(|_| unassigned.is_empty()) {
            self.problem(u.span(), format!("{context} unassigned is empty: name the value of cost nothing names, e.g. \"unassigned\""));
        }
        let mut aliases: HashMap<String, String> = HashMap::new();
        for (value, spellings) in &d.aliases {
            let v = value.get_ref().trim().to_string();
            if v.is_empty() || fold(&v) == fold(&unassigned) {
                self.problem(value.span(), format!("`{v}` in {context} aliases is empty or the unassigned value: name a value"));
                continue;
            }
            let claims = std::iter::once((v.clone(), value.span())).chain(spellings.iter().map(|s| (s.get_ref().trim().to_string(), s.span())));
            for (spelling, span) in claims {
                if let Some(other) = aliases.insert(fold(&spelling), v.clone()) {
                    if other != v {
                        self.problem(span, format!("`{spelling}` in {context} aliases names both `{other}` and `{v}`: a spelling may belong to one value only"));
                    }
                }
            }
        }
        let canonical = |text: &str| aliases.get(&fold(text)).cloned().unwrap_or_else(|| text.trim().to_string());
        let mut namespaces = Vec::new();
        for (namespace, value) in &d.namespaces {
            match Pattern::new(namespace.trim(), false) {
                Ok(p) if !value.get_ref().trim().is_empty() => namespaces.push((p, canonical(value.get_ref()))),
                Ok(_) => self.problem(value.span(), format!("namespace `{namespace}` in {context} namespaces maps to an empty value")),
                Err(e) => self.problem(value.span(), format!("{e} (in {context} namespaces)")),
            }
        }
        let mut rule_names = BTreeSet::new();
        let mut assign = Vec::new();
        for rule in &d.assign {
            self.unique_name(&mut rule_names, &rule.name);
            let rule_context = format!("[[dimensions.{n}.assign]] `{}`", rule.name.get_ref());
            let when = self.matcher(&rule.when, case_insensitive, team_names, &rule_context);
            if rule.value.get_ref().trim().is_empty() {
                self.problem(rule.value.span(), format!("{rule_context}: value is empty"));
            }
            if let Some(when) = when {
                assign.push(DimensionAssign { name: rule.name.get_ref().clone(), when, value: canonical(rule.value.get_ref()), fallback: rule.fallback });
            }
        }
        let tags = d.tags.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        (self.problems.len() == problems_before).then(|| Dimension { name: n.to_string(), tags, aliases, unassigned, namespaces, assign })
    }

    fn unique_name(&mut self, seen: &mut BTreeSet<String>, name: &Spanned<String>) {
        if name.get_ref().trim().is_empty() {
            self.problem(name.span(), "a rule needs a non-empty name: outputs and explain cite rules by name");
        } else if !seen.insert(name.get_ref().clone()) {
            self.problem(name.span(), format!("rule name `{}` is used twice: names must be unique", name.get_ref()));
        }
    }

    fn patterns(&mut self, span: std::ops::Range<usize>, field: &Field, values: Vec<String>, case_insensitive: bool, context: &str) -> Option<Vec<Pattern>> {
        if values.is_empty() {
            self.problem(span, format!("`{}` in {context} lists no values: give at least one", field.name()));
            return None;
        }
        let mut patterns = Vec::new();
        for v in values {
            match Pattern::new(v.trim(), case_insensitive) {
                Ok(p) => patterns.push(p),
                Err(e) => {
                    self.problem(span.clone(), format!("{e} (in {context})"));
                    return None;
                }
            }
        }
        Some(patterns)
    }

    fn matcher(&mut self, when: &Spanned<RawWhen>, case_insensitive: bool, team_names: &[String], context: &str) -> Option<Matcher> {
        let w = when.get_ref();
        let mut fields: Vec<(Field, Vec<String>)> = [
            (Field::Account, &w.account),
            (Field::Service, &w.service),
            (Field::Resource, &w.resource),
            (Field::UsageType, &w.usage_type),
            (Field::Operation, &w.operation),
            (Field::Region, &w.region),
            (Field::ChargeCategory, &w.charge_category),
            (Field::PricingCategory, &w.pricing_category),
            (Field::InstanceFamily, &w.instance_family),
            (Field::InstanceType, &w.instance_type),
        ]
        .into_iter()
        .filter_map(|(field, values)| values.as_ref().map(|v| (field, v.values())))
        .collect();
        let mut ok = true;
        if let Some(team) = &w.team {
            let values = team.get_ref().values();
            let fold = |t: &str| if case_insensitive { t.to_lowercase() } else { t.to_string() };
            for v in &values {
                let hit = Pattern::new(&fold(v), false).map(|p| team_names.iter().any(|t| p.matches(&fold(t)))).unwrap_or(false);
                if !hit {
                    self.problem(team.span(), format!("when.team `{v}` in {context} matches no team in [teams]{}", suggestion(v, team_names)));
                    ok = false;
                }
            }
            fields.push((Field::Team, values));
        }
        fields.extend(w.tags.iter().map(|(key, values)| (Field::Tag(key.trim().to_string()), values.values())));
        if fields.is_empty() {
            self.problem(when.span(), format!("`when` in {context} is empty, so it would match every line: name at least one field (account, service, resource, ...)"));
            return None;
        }
        let mut conditions = Vec::new();
        for (field, values) in fields {
            match self.patterns(when.span(), &field, values, case_insensitive, context) {
                Some(patterns) => conditions.push((field, patterns)),
                None => ok = false,
            }
        }
        ok.then_some(Matcher { conditions })
    }

    fn method(&mut self, rule: &RawShare, case_insensitive: bool, context: &str, names: &HashMap<String, TeamId>, team_names: &[String]) -> Option<SplitMethod> {
        let method = *rule.method.get_ref();
        if method != RawMethod::Fixed {
            if let Some(w) = &rule.weights {
                self.problem(w.span(), format!("weights are only read by method = \"fixed\" in {context}: remove them or change the method"));
            }
        }
        if method != RawMethod::Proportional {
            if let Some(p) = &rule.proportional_to {
                self.problem(p.span(), format!("proportional_to is only read by method = \"proportional\" in {context}: remove it or change the method"));
            }
        }
        if method != RawMethod::Metric {
            if let Some(m) = &rule.metric {
                self.problem(m.span(), format!("metric is only read by method = \"metric\" in {context}: remove it or change the method"));
            }
        }
        let fold = |s: &str| if case_insensitive { s.trim().to_lowercase() } else { s.trim().to_string() };
        match method {
            RawMethod::Even => Some(SplitMethod::Even),
            RawMethod::Proportional => Some(SplitMethod::Proportional(rule.proportional_to.as_ref().map(|p| *p.get_ref()).unwrap_or_default())),
            RawMethod::Fixed => {
                let Some(weights) = &rule.weights else {
                    self.problem(rule.method.span(), format!("method = \"fixed\" in {context} needs weights, e.g. weights = {{ search = 60, orders = 40 }}"));
                    return None;
                };
                let mut parsed = Vec::new();
                let mut total: u64 = 0;
                for (team, weight) in weights.get_ref() {
                    let w = *weight.get_ref();
                    // Fixed weights are percentages: anything above 100 cannot total 100 (and a huge
                    // one would overflow the integer weight).
                    if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
                        self.problem(weight.span(), format!("weight {w} for `{}` in {context} must be a percentage between 0 and 100", team.get_ref()));
                        continue;
                    }
                    let units = (w * WEIGHT_SCALE as f64).round() as u64;
                    total = total.saturating_add(units);
                    match names.get(&fold(team.get_ref())) {
                        Some(id) => parsed.push((*id, units)),
                        None => self.problem(
                            team.span(),
                            format!("unknown team `{}` in {context} weights: add it under [teams.{}] or fix the name{}", team.get_ref(), team.get_ref(), suggestion(team.get_ref(), team_names)),
                        ),
                    }
                }
                if total != 100 * WEIGHT_SCALE {
                    self.problem(weights.span(), format!("weights in {context} total {}, not 100: fixed weights are percentages", format_weight(total)));
                }
                if let OneOrMany::Many(list) = rule.among.get_ref() {
                    let among: BTreeSet<String> = list.iter().map(|t| fold(t)).collect();
                    for team in weights.get_ref().keys() {
                        if !among.iter().any(|a| Pattern::new(a, false).map(|p| p.matches(&fold(team.get_ref()))).unwrap_or(false)) {
                            self.problem(team.span(), format!("`{}` has a weight in {context} but is not in among: add it to among or drop the weight", team.get_ref()));
                        }
                    }
                }
                Some(SplitMethod::Fixed(parsed))
            }
            RawMethod::Metric => {
                let Some(metric) = &rule.metric else {
                    self.problem(rule.method.span(), format!("method = \"metric\" in {context} needs a metric, e.g. metric = {{ source = \"file\", path = \"usage/sizes.csv\" }}"));
                    return None;
                };
                let m = metric.get_ref();
                let source = match m.source.get_ref().as_str() {
                    "file" => match &m.path {
                        Some(path) => {
                            let base = self.file.parent().unwrap_or(Path::new("."));
                            Some(DriverSource::File { path: base.join(path.get_ref()), at: self.at(path.span()) })
                        }
                        None => {
                            self.problem(metric.span(), format!("metric source \"file\" in {context} needs path = \"...\" (relative to this rules file)"));
                            None
                        }
                    },
                    "prometheus" => match &m.query {
                        Some(query) => Some(DriverSource::Prometheus { query: query.get_ref().clone(), label: m.label.clone().unwrap_or_else(|| "team".into()), at: self.at(query.span()) }),
                        None => {
                            self.problem(metric.span(), format!("metric source \"prometheus\" in {context} needs query = \"...\""));
                            None
                        }
                    },
                    other => {
                        self.problem(m.source.span(), format!("metric source `{other}` in {context}: use \"file\" or \"prometheus\""));
                        None
                    }
                };
                let mut mapping = Vec::new();
                for (key, team) in &m.mapping {
                    let pattern = Pattern::new(key, false);
                    match (pattern, names.get(&fold(team.get_ref()))) {
                        (Ok(p), Some(id)) => mapping.push((p, *id)),
                        (Err(e), _) => self.problem(team.span(), e),
                        (_, None) => self.problem(
                            team.span(),
                            format!("unknown team `{}` in {context} metric mapping: add it under [teams.{}] or fix the name{}", team.get_ref(), team.get_ref(), suggestion(team.get_ref(), team_names)),
                        ),
                    }
                }
                let unit = m.unit.as_deref().map(str::trim).filter(|u| !u.is_empty()).unwrap_or("units").to_string();
                source.map(|source| SplitMethod::Metric(MetricDriver { source, mapping, unit }))
            }
        }
    }
}

fn format_weight(units: u64) -> String {
    let whole = units / WEIGHT_SCALE;
    let frac = units % WEIGHT_SCALE;
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

/// ` (did you mean `x`?)` for a near miss (within two edits, case aside); empty otherwise.
pub fn suggestion(text: &str, candidates: &[String]) -> String {
    nearest(text, candidates).map(|i| format!(" (did you mean `{}`?)", candidates[i])).unwrap_or_default()
}

/// The position of the candidate nearest `text` within two edits (case aside; of equals, the
/// first given: callers list canonical names first), if any.
pub fn nearest(text: &str, candidates: &[String]) -> Option<usize> {
    candidates.iter().enumerate().map(|(i, c)| (edit_distance(&text.to_lowercase(), &c.to_lowercase()), i)).filter(|(d, _)| *d <= 2).min_by_key(|(d, _)| *d).map(|(_, i)| i)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != b[j])).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
