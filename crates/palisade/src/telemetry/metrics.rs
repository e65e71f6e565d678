//! Prometheus metrics (claim OPS-6): request counts and latencies per route, pool gauges.
//!
//! Labels use the matched route template, never the raw path, so cardinality stays bounded.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Cow<'static, str>,
    route: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: Cow<'static, str>,
    route: Cow<'static, str>,
}

/// The process's metrics; one instance lives in the application state.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    db_pool_size: Gauge,
    db_pool_idle: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(
                [
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]
                .into_iter(),
            )
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head, by method and route template",
            durations.clone(),
        );
        let db_pool_size = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Connections open in the database pool",
            db_pool_size.clone(),
        );
        let db_pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle connections in the database pool",
            db_pool_idle.clone(),
        );
        let build = Gauge::<i64>::default();
        build.set(1);
        registry.register(
            "build_info",
            concat!("Always 1; the version is ", env!("CARGO_PKG_VERSION")),
            build,
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            durations,
            db_pool_size,
            db_pool_idle,
        }
    }

    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method: Cow<'static, str> = Cow::Owned(method.to_owned());
        let route: Cow<'static, str> = Cow::Owned(route.to_owned());
        self.durations
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    pub fn set_pool(&self, size: u32, idle: usize) {
        self.db_pool_size.set(i64::from(size));
        self.db_pool_idle
            .set(i64::try_from(idle).unwrap_or(i64::MAX));
    }

    /// The text exposition format, as `/metrics` serves it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
