//! Prices and cost, with no I/O: a gateway's prices ([`Prices`], from its `spec.pricing` and
//! the PriceList it references, fetched by the driver), usage summed by model ([`add_line`],
//! fed by the result files one line at a time), and what that usage cost ([`cost`]), summed
//! over a sweep's children ([`add_cost`]). Drivers resolve prices; the engine prices usage.

mod cost;
mod prices;
mod usage;

pub use cost::{add as add_cost, cost, display, estimate};
pub use prices::{Entry, PriceListLookup, Prices, decimal};
pub use usage::{LineTokens, LineUsage, MAX_MODEL_NAME, add as add_usage, add_line, fold};
