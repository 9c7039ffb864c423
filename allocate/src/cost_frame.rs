//! The cost frame's vocabulary: the column names every billing source is normalised into
//! (docs/design.md §3), cost bases, charge and pricing categories, and the exact totals per source
//! group. Pure: the polars frame itself lives in `finops_ingest::frame`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Column names of the cost frame. FOCUS-like, in snake case.
pub mod col {
    /// `YYYY-MM` of the billing period start.
    pub const BILLING_PERIOD: &str = "billing_period";
    /// Start of the charge period, UTC.
    pub const CHARGE_PERIOD_START: &str = "charge_period_start";
    pub const CHARGE_PERIOD_END: &str = "charge_period_end";
    /// UTC calendar day of the charge period start: the daily grain of allocation and alerts.
    pub const USAGE_DATE: &str = "usage_date";
    pub const PROVIDER: &str = "provider";
    pub const BILLING_ACCOUNT: &str = "billing_account";
    /// The usage account (CUR `line_item_usage_account_id`, FOCUS `SubAccountId`).
    pub const ACCOUNT: &str = "account";
    /// CUR product code (`AmazonEC2`), FOCUS `ServiceName`.
    pub const SERVICE: &str = "service";
    /// Usage / Purchase / Tax / Credit / Adjustment.
    pub const CHARGE_CATEGORY: &str = "charge_category";
    /// The source's own line item type (CUR `line_item_line_item_type`, FOCUS `ChargeCategory`).
    pub const LINE_ITEM_TYPE: &str = "line_item_type";
    pub const USAGE_TYPE: &str = "usage_type";
    pub const OPERATION: &str = "operation";
    pub const RESOURCE: &str = "resource";
    pub const REGION: &str = "region";
    /// OnDemand / Spot / SavingsPlan / Reserved (FOCUS sources may also say Other).
    pub const PRICING_CATEGORY: &str = "pricing_category";
    pub const INSTANCE_TYPE: &str = "instance_type";
    pub const USAGE_QUANTITY: &str = "usage_quantity";
    pub const USAGE_UNIT: &str = "usage_unit";
    /// Unblended cost.
    pub const BILLED: &str = "billed";
    /// Net unblended cost (after private discounts); equal to `billed` where the source has none.
    pub const BILLED_NET: &str = "billed_net";
    /// Amortized cost, by the Cloud Intelligence Dashboards formula.
    pub const EFFECTIVE: &str = "effective";
    /// Net amortized cost; equal to `effective` where the source has no net columns.
    pub const EFFECTIVE_NET: &str = "effective_net";
    /// Public on-demand cost.
    pub const LIST: &str = "list";
    /// Number of source line items behind an aggregated row.
    pub const LINE_ITEMS: &str = "line_items";
    /// Prefix of the per-tag-key columns, e.g. `tag.team`.
    pub const TAG_PREFIX: &str = "tag.";
}

/// The column holding the value of one tag key, e.g. `tag.team`.
pub fn tag_column(key: &str) -> String {
    format!("{}{}", col::TAG_PREFIX, key.trim())
}

/// Which amount the rules allocate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    Amortized,
    NetAmortized,
    Unblended,
    NetUnblended,
    List,
}

impl CostBasis {
    pub const ALL: [CostBasis; 5] = [CostBasis::Unblended, CostBasis::NetUnblended, CostBasis::Amortized, CostBasis::NetAmortized, CostBasis::List];

    pub fn column(self) -> &'static str {
        match self {
            CostBasis::Unblended => col::BILLED,
            CostBasis::NetUnblended => col::BILLED_NET,
            CostBasis::Amortized => col::EFFECTIVE,
            CostBasis::NetAmortized => col::EFFECTIVE_NET,
            CostBasis::List => col::LIST,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CostBasis::Unblended => "unblended",
            CostBasis::NetUnblended => "net_unblended",
            CostBasis::Amortized => "amortized",
            CostBasis::NetAmortized => "net_amortized",
            CostBasis::List => "list",
        }
    }
}

/// FOCUS-style charge category of a line item.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChargeCategory {
    Usage,
    Purchase,
    Tax,
    Credit,
    Adjustment,
}

impl ChargeCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeCategory::Usage => "Usage",
            ChargeCategory::Purchase => "Purchase",
            ChargeCategory::Tax => "Tax",
            ChargeCategory::Credit => "Credit",
            ChargeCategory::Adjustment => "Adjustment",
        }
    }
}

/// CUR line item types that are not `Usage` (docs/design.md §3: Tax -> Tax, Credit and Refund ->
/// Credit, fees -> Purchase); every other type (Usage, DiscountedUsage,
/// SavingsPlanCoveredUsage, SavingsPlanNegation, BundledDiscount, ...) is Usage.
pub const CUR_LINE_ITEM_CATEGORIES: [(&str, ChargeCategory); 7] = [
    ("Tax", ChargeCategory::Tax),
    ("Credit", ChargeCategory::Credit),
    ("Refund", ChargeCategory::Credit),
    ("Fee", ChargeCategory::Purchase),
    ("RIFee", ChargeCategory::Purchase),
    ("SavingsPlanRecurringFee", ChargeCategory::Purchase),
    ("SavingsPlanUpfrontFee", ChargeCategory::Purchase),
];

/// How a line item was priced.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PricingCategory {
    OnDemand,
    Spot,
    SavingsPlan,
    Reserved,
}

impl PricingCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            PricingCategory::OnDemand => "OnDemand",
            PricingCategory::Spot => "Spot",
            PricingCategory::SavingsPlan => "SavingsPlan",
            PricingCategory::Reserved => "Reserved",
        }
    }
}

/// Who bills a usage account: the billing (payer) account and the provider, as the month's
/// line items say. The grain is keyed by usage account and carries neither; the FOCUS allocated
/// output (`BillingAccountId`, `ProviderName`) reads them from here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountOwner {
    pub billing_account: Option<String>,
    pub provider: Option<String>,
}

/// The month's [`AccountOwner`]s, and what holds for an account the month does not list (a
/// source summed elsewhere names no payer: only its provider is known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountOwners {
    pub accounts: BTreeMap<String, AccountOwner>,
    pub otherwise: AccountOwner,
}

impl AccountOwners {
    pub fn of(&self, account: &str) -> &AccountOwner {
        self.accounts.get(account).unwrap_or(&self.otherwise)
    }
}

/// The five amounts of a line item or a group of them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CostAmounts {
    pub billed: Money,
    pub billed_net: Money,
    pub effective: Money,
    pub effective_net: Money,
    pub list: Money,
}

impl CostAmounts {
    pub fn get(&self, basis: CostBasis) -> Money {
        match basis {
            CostBasis::Unblended => self.billed,
            CostBasis::NetUnblended => self.billed_net,
            CostBasis::Amortized => self.effective,
            CostBasis::NetAmortized => self.effective_net,
            CostBasis::List => self.list,
        }
    }

    pub fn add(&mut self, other: &CostAmounts) {
        self.billed += other.billed;
        self.billed_net += other.billed_net;
        self.effective += other.effective;
        self.effective_net += other.effective_net;
        self.list += other.list;
    }
}

/// Totals of one (billing period, account, service) source group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTotal {
    pub billing_period: String,
    pub account: String,
    pub service: String,
    pub line_items: u64,
    pub costs: CostAmounts,
}

/// Grand totals per cost basis, from the exact per-group totals.
pub fn grand_totals(totals: &[ServiceTotal]) -> BTreeMap<CostBasis, Money> {
    let mut sum = CostAmounts::default();
    totals.iter().for_each(|t| sum.add(&t.costs));
    CostBasis::ALL.iter().map(|b| (*b, sum.get(*b))).collect()
}

/// A month's total from its source beside the same month's total from another view of the bill
/// (Cost Explorer), for the same cost basis.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Reconciliation {
    pub source: Money,
    pub reference: Money,
}

impl Reconciliation {
    /// `source - reference`.
    pub fn difference(&self) -> Money {
        self.source - self.reference
    }

    /// The difference as a share of the reference (0.01 = 1%); a zero reference differs by
    /// nothing only from a zero source.
    pub fn relative(&self) -> f64 {
        let units = |m: Money| m.units() as f64;
        if self.reference.is_zero() {
            if self.source.is_zero() {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (units(self.difference()) / units(self.reference)).abs()
        }
    }

    /// Within `tolerance` (a share: 0.005 = 0.5%).
    pub fn agrees(&self, tolerance: f64) -> bool {
        self.relative() <= tolerance
    }
}

#[cfg(test)]
mod reconciliation_tests {
    use super::*;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn agrees_up_to_the_tolerance_and_not_past_it() {
        let r = Reconciliation { source: m("1005.00"), reference: m("1000.00") };
        assert_eq!(r.difference(), m("5"));
        assert!((r.relative() - 0.005).abs() < 1e-12);
        assert!(r.agrees(0.005));
        let r = Reconciliation { source: m("994.99"), reference: m("1000.00") };
        assert!(!r.agrees(0.005));
        assert!(Reconciliation { source: Money::ZERO, reference: Money::ZERO }.agrees(0.0));
        assert!(!Reconciliation { source: m("0.01"), reference: Money::ZERO }.agrees(0.5));
    }
}
