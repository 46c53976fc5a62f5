//! Getting samples out of vmmon to other systems: the Prometheus/OpenMetrics exposition and
//! the tiny HTTP endpoint of `vmmon serve`.

pub mod http;
pub mod openmetrics;
