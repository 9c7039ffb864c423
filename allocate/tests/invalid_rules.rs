//! Invalid rule sets under fixtures/rules-invalid, each with its exact message: position
//! (file:line:column), what is wrong, and what to do.

use std::path::Path;

use finops_allocate::RuleSet;

fn check(name: &str) -> String {
    let display = format!("fixtures/rules-invalid/{name}.toml");
    let path = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("..").join(&display);
    let text = std::fs::read_to_string(&path).unwrap();
    match RuleSet::parse(Path::new(&display), &text) {
        Ok(_) => panic!("{display} should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_invalid_rule_file_is_rejected_with_its_exact_message() {
    let cases = [
        ("01-unknown-key", "fixtures/rules-invalid/01-unknown-key.toml:13:1: unknown field `teem`, expected one of `name`, `when`, `team`, `fallback`: remove it or fix its spelling"),
        ("02-unknown-team", "fixtures/rules-invalid/02-unknown-team.toml:12:8: unknown team `serch` in [[assign]] `sandbox`: add it under [teams.serch] or fix the name (did you mean `search`?)"),
        ("03-weights-not-100", "fixtures/rules-invalid/03-weights-not-100.toml:14:11: weights in [[share]] `support` total 90, not 100: fixed weights are percentages"),
        ("04-empty-among", "fixtures/rules-invalid/04-empty-among.toml:13:9: among is empty in [[share]] `db`: list the teams that share this cost, or use \"all\""),
        ("05-source-and-target", "fixtures/rules-invalid/05-source-and-target.toml:13:9: team `search` is both the source (when.team) and a target (among) of [[share]] `search spreads its cost`: remove it from one of them"),
        ("06-glob-matches-no-team", "fixtures/rules-invalid/06-glob-matches-no-team.toml:13:9: `ops-*` in [[share]] `db` among matches no team in [teams]: fix the pattern or add the teams"),
        ("08-bad-cost-basis", "fixtures/rules-invalid/08-bad-cost-basis.toml:2:14: unknown variant `blended`, expected one of `amortized`, `net_amortized`, `unblended`, `net_unblended`, `list`"),
        ("09-alias-of-two-teams", "fixtures/rules-invalid/09-alias-of-two-teams.toml:10:12: `검색` names both team `search` and team `search-team`: a name or alias may belong to one team only"),
        ("10-empty-when", "fixtures/rules-invalid/10-empty-when.toml:11:8: `when` in [[assign]] `everything` is empty, so it would match every line: name at least one field (account, service, resource, ...)"),
        ("11-metric-without-metric", "fixtures/rules-invalid/11-metric-without-metric.toml:12:10: method = \"metric\" in [[share]] `db` needs a metric, e.g. metric = { source = \"file\", path = \"usage/sizes.csv\" }"),
        ("12-duplicate-rule-name", "fixtures/rules-invalid/12-duplicate-rule-name.toml:15:8: rule name `x` is used twice: names must be unique"),
        (
            "13-version-and-team-tags",
            "fixtures/rules-invalid/13-version-and-team-tags.toml:1:11: unsupported version 2: this finops reads version = 1\n\
             fixtures/rules-invalid/13-version-and-team-tags.toml:2:13: team_tags is empty: list the tag keys that name a team, e.g. [\"team\"]",
        ),
        ("14-negative-budget", "fixtures/rules-invalid/14-negative-budget.toml:6:10: budget -5 for team `search` must be a positive amount per month"),
        (
            "15-dimension-name-and-alias",
            "fixtures/rules-invalid/15-dimension-name-and-alias.toml:6:13: dimension name `Project` must be lower-case letters, digits and `_`, starting with a letter: it names the file summary-<name>.csv\n\
             fixtures/rules-invalid/15-dimension-name-and-alias.toml:11:21: `production` in [dimensions.environment] aliases names both `live` and `prod`: a spelling may belong to one value only",
        ),
        ("16-dimension-unknown-key", "fixtures/rules-invalid/16-dimension-unknown-key.toml:12:1: unknown field `vaule`, expected one of `name`, `when`, `value`, `fallback`: remove it or fix its spelling"),
    ];
    for (name, expected) in cases {
        assert_eq!(check(name), expected, "{name}");
    }
}

#[test]
fn the_shipped_rule_set_is_valid() {
    let path = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests and benchmarks")).join("../rules/example.toml");
    let rules = RuleSet::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.teams.len(), 6);
    assert_eq!(rules.resolve_team(" 검색 ").map(|t| rules.team(t).name.as_str()), Some("search"));
    assert_eq!(rules.resolve_team("SEARCH"), None, "tags are case-sensitive unless case_insensitive = true");
}
