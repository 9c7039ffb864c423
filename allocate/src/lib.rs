//! The domain core of the FinOps pipeline: exact money (splits, controlled rounding), the cost
//! frame's vocabulary, the allocation rules and the engine, GPU chargeback. Pure: no AWS, no
//! network, no polars; ingest hands it cost lines.
//!
//! ```
//! use finops_allocate::money::{round_largest_remainder, Cents, Money};
//! let parts: Vec<Money> = ["0.333333", "0.333333", "0.333334"].iter().map(|s| s.parse().unwrap()).collect();
//! // Printed cents always add up to the rounded total of the group.
//! assert_eq!(round_largest_remainder(&parts).into_iter().sum::<Cents>(), Cents(100));
//! ```

pub mod alerts;
pub mod commitments;
pub mod cost_frame;
pub mod dim;
pub mod dimensions;
pub mod engine;
pub mod gpu;
pub mod hygiene;
pub mod ledger;
pub mod money;
pub mod precedence;
pub mod rounding;
pub mod rules;
pub mod scad;
pub mod shares;

pub use cost_frame::{CostAmounts, CostBasis, ServiceTotal};
pub use engine::{allocate, allocate_with_gpu, Allocation, CostLine, DriverSample, Kind, Piece};
pub use money::{Cents, Money};
pub use rules::{RuleSet, RulesError};
