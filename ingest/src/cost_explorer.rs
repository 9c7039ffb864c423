//! The Cost Explorer API as a billing source, for accounts without a CUR export, and as the check
//! on a CUR month (its total against Cost Explorer's for the same metric).
//!
//! GetCostAndUsage answers at most two groupings per call, so the month arrives at day × team tag
//! × service: no account, resource or usage type. Every page is read (`NextPageToken`), and every
//! call is counted, because each costs $0.01.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_costexplorer::types::{DateInterval, Granularity, GroupDefinition, GroupDefinitionType, MetricValue};
use finops_allocate::{CostAmounts, CostBasis, Money};

use crate::grain::{day_number, GrainBuilder, GrainRow};
use crate::store::AwsSettings;
use crate::{Error, InputFile, Result};

/// What AWS charges per GetCostAndUsage request, in USD.
pub const DOLLARS_PER_CALL: f64 = 0.01;

/// Cost Explorer's metrics for the bases it has, in [`CostBasis::ALL`] order (it has no list price).
const METRICS: [(CostBasis, &str); 4] =
    [(CostBasis::Unblended, "UnblendedCost"), (CostBasis::NetUnblended, "NetUnblendedCost"), (CostBasis::Amortized, "AmortizedCost"), (CostBasis::NetAmortized, "NetAmortizedCost")];

/// The Cost Explorer metric of a cost basis (`None` for list, which Cost Explorer does not have).
pub fn metric_of(basis: CostBasis) -> Option<&'static str> {
    METRICS.iter().find(|(b, _)| *b == basis).map(|(_, m)| *m)
}

/// A Cost Explorer client that counts its calls.
pub struct CostExplorer {
    client: aws_sdk_costexplorer::Client,
    calls: AtomicU32,
}

/// The month from Cost Explorer: its grain and what the source should say about it.
pub struct ExplorerMonth {
    pub grain: crate::grain::Grain,
    /// One record per page read (rows are the groups on it).
    pub pages: Vec<InputFile>,
    /// Days Cost Explorer marks as estimated (the month is not final yet).
    pub estimated_days: Vec<String>,
}

impl CostExplorer {
    pub async fn open(aws: &AwsSettings) -> CostExplorer {
        let shared = aws.sdk_config().await;
        // Cost Explorer has one endpoint, in us-east-1, whatever the account's home region.
        let mut config = aws_sdk_costexplorer::config::Builder::from(&shared);
        if aws.region.is_none() {
            config = config.region(aws_config::Region::new("us-east-1"));
        }
        CostExplorer { client: aws_sdk_costexplorer::Client::from_conf(config.build()), calls: AtomicU32::new(0) }
    }

    /// GetCostAndUsage requests made so far.
    /// Counts a request AWS answered (and so bills, $0.01 each); one that never reached it (no
    /// network, no endpoint, a timeout) is not a call.
    fn count<T, E, R>(&self, result: &std::result::Result<T, aws_sdk_costexplorer::error::SdkError<E, R>>) {
        let reached = match result {
            Ok(_) => true,
            Err(e) => matches!(e, aws_sdk_costexplorer::error::SdkError::ServiceError(_) | aws_sdk_costexplorer::error::SdkError::ResponseError(_)),
        };
        if reached {
            self.calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    fn interval(month: &str) -> Result<DateInterval> {
        let next = crate::next_month(month)?;
        DateInterval::builder().start(format!("{month}-01")).end(format!("{next}-01")).build().map_err(|e| Error::CostExplorer { message: e.to_string() })
    }

    /// The month's daily cost per (team tag value, service), at every basis Cost Explorer has,
    /// built into the grain. `tag_keys` are the rule set's tag keys; `team_tag` (one of them) is
    /// the one Cost Explorer groups by, and the others stay empty.
    pub async fn month(&self, month: &str, tag_keys: &[String], team_tag: &str, basis: CostBasis) -> Result<ExplorerMonth> {
        if metric_of(basis).is_none() {
            return Err(Error::CostExplorer {
                message: format!("Cost Explorer has no `{}` cost; set cost_basis to amortized, net_amortized, unblended or net_unblended, or read a CUR export", basis.name()),
            });
        }
        let tag_at = tag_keys.iter().position(|k| k == team_tag);
        let mut grain = GrainBuilder::new(basis);
        let mut pages = Vec::new();
        let mut estimated_days = std::collections::BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self
                .client
                .get_cost_and_usage()
                .time_period(Self::interval(month)?)
                .granularity(Granularity::Daily)
                .group_by(GroupDefinition::builder().r#type(GroupDefinitionType::Tag).key(team_tag).build())
                .group_by(GroupDefinition::builder().r#type(GroupDefinitionType::Dimension).key("SERVICE").build())
                .set_next_page_token(token.clone());
            for (_, metric) in METRICS {
                request = request.metrics(metric);
            }
            let page = request.send().await;
            self.count(&page);
            let page = page.map_err(|e| crate::aws_error("Cost Explorer", &e, |message| Error::CostExplorer { message }))?;
            tracing::info!(month, page = pages.len() + 1, calls = self.calls(), "Cost Explorer GetCostAndUsage");
            let mut tags: Vec<Option<&str>> = vec![None; tag_keys.len()];
            let mut digest = sha2::Sha256::default();
            let mut groups = 0u64;
            for day in page.results_by_time() {
                let start = day.time_period().map(|p| p.start()).unwrap_or_default();
                let Some(day_number) = day_number(start) else {
                    return Err(Error::CostExplorer { message: format!("a result's period starts on `{start}`, not a YYYY-MM-DD date") });
                };
                if !start.starts_with(month) {
                    continue;
                }
                if day.estimated() {
                    estimated_days.insert(start.to_string());
                }
                for group in day.groups() {
                    let keys = group.keys();
                    let (Some(tag), Some(service)) = (keys.first(), keys.get(1)) else {
                        return Err(Error::CostExplorer { message: format!("{start}: a group has keys {keys:?}, expected a tag and a service") });
                    };
                    // Tag groups read `team$search`; `team$` is the untagged cost.
                    let value = tag.split_once('$').map_or(tag.as_str(), |(_, v)| v).trim();
                    let metrics = group.metrics();
                    let amount = |metric: &str| amount(metrics.and_then(|m| m.get(metric)), start, service, metric);
                    let costs = CostAmounts {
                        billed: amount("UnblendedCost")?,
                        billed_net: amount("NetUnblendedCost")?,
                        effective: amount("AmortizedCost")?,
                        effective_net: amount("NetAmortizedCost")?,
                        list: Money::ZERO,
                    };
                    use sha2::Digest;
                    digest.update(format!("{start}\t{tag}\t{service}\t{costs:?}\n").as_bytes());
                    groups += 1;
                    if let Some(at) = tag_at {
                        tags[at] = (!value.is_empty()).then_some(value);
                    }
                    let charge = if service == "Tax" { "Tax" } else { "Usage" };
                    let row = GrainRow { text: [month, "", service, "", "", "", "", charge, "", ""], day: day_number, tags: &tags, costs, line_items: 1 };
                    grain.add(&row);
                }
            }
            use sha2::Digest;
            pages.push(InputFile { key: format!("ce:GetCostAndUsage {month} page {}", pages.len() + 1), bytes: 0, sha256: crate::store::hex(&digest.finalize()), rows: groups });
            token = page.next_page_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(ExplorerMonth { grain: grain.finish(), pages, estimated_days: estimated_days.into_iter().collect() })
    }

    /// Cost Explorer's total for the month at `basis` (one call, no grouping).
    pub async fn month_total(&self, month: &str, basis: CostBasis) -> Result<Money> {
        let Some(metric) = metric_of(basis) else {
            return Err(Error::CostExplorer { message: format!("Cost Explorer has no `{}` cost to reconcile against", basis.name()) });
        };
        let mut total = Money::ZERO;
        let mut token: Option<String> = None;
        loop {
            let page = self.client.get_cost_and_usage().time_period(Self::interval(month)?).granularity(Granularity::Monthly).metrics(metric).set_next_page_token(token.clone()).send().await;
            self.count(&page);
            let page = page.map_err(|e| crate::aws_error("Cost Explorer", &e, |message| Error::CostExplorer { message }))?;
            tracing::info!(month, metric, calls = self.calls(), "Cost Explorer GetCostAndUsage (month total)");
            for period in page.results_by_time() {
                let start = period.time_period().map(|p| p.start()).unwrap_or_default();
                total += amount(period.total().and_then(|t| t.get(metric)), start, "the month", metric)?;
            }
            token = page.next_page_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(total);
            }
        }
    }
}

/// A metric's amount, exactly (Cost Explorer prints up to 10 decimals; more are cut at 12).
fn amount(value: Option<&MetricValue>, day: &str, service: &str, metric: &str) -> Result<Money> {
    let Some(text) = value.and_then(|v| v.amount()) else {
        return Ok(Money::ZERO);
    };
    let bad = || Error::CostExplorer { message: format!("{day}, {service}: {metric} `{text}` is not a decimal amount") };
    match text.parse::<Money>() {
        Ok(m) => Ok(m),
        Err(finops_allocate::money::MoneyParseError::TooPrecise(_)) => {
            let (int, frac) = text.split_once('.').ok_or_else(bad)?;
            format!("{int}.{}", &frac[..frac.len().min(finops_allocate::money::MONEY_SCALE as usize)]).parse().map_err(|_| bad())
        }
        Err(_) => Err(bad()),
    }
}
