//! Library half of the load tool: request templates, the load driver, latency histograms and reports, kept here so tests can drive them without the CLI.

pub mod baseline;
pub mod histogram;
pub mod load;
pub mod report;
pub mod soak;
pub mod target;
