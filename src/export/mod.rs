//! Getting samples out of vmmon to other systems and back: the Prometheus/OpenMetrics
//! exposition and the tiny HTTP endpoint of `vmmon serve`, Parquet recordings, and
//! `vmmon import`.

pub mod http;
pub mod import;
pub mod openmetrics;
#[cfg(feature = "parquet")]
pub mod parquet;
