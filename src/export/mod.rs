//! Other formats in and out of vmmon's wide CSV: Parquet recordings and `vmmon import`.

pub mod import;
#[cfg(feature = "parquet")]
pub mod parquet;
