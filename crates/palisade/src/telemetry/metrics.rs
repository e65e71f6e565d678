//! Prometheus metrics (claim OPS-6): request counts and latencies per route, pool gauges.
//!
//! Labels use the matched route template, never the raw path, so cardinality stays bounded.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
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

/// A method's name as a static label; non-standard methods share one label so a client
/// cannot mint label values.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The route template as a `'static` string. Templates come from the router's fixed set,
/// so the interned set is bounded by the number of routes; each is leaked once.
pub fn intern_route(template: &str) -> &'static str {
    // A per-thread memo keyed by the template's address (the router hands out the same
    // string for every request of a route) keeps the shared lock off the hot path.
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<(usize, &'static str)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let key = template.as_ptr() as usize;
    if let Some(found) = SEEN.with(|seen| {
        seen.borrow()
            .iter()
            .find(|(k, route)| *k == key && *route == template)
            .map(|(_, route)| *route)
    }) {
        return found;
    }
    let interned = intern_shared(template);
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        // Bounded like the route set; a pathological router only costs lookups.
        if seen.len() < 1024 {
            seen.push((key, interned));
        }
    });
    interned
}

fn intern_shared(template: &str) -> &'static str {
    static ROUTES: RwLock<BTreeSet<&'static str>> = RwLock::new(BTreeSet::new());
    if let Some(found) = ROUTES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(template)
    {
        return found;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = routes.get(template) {
        return found;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    routes.insert(leaked);
    leaked
}

/// The process's metrics; one instance lives in the application state.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// One family for counts and latencies: its `_count` series is the request counter.
    requests: Family<RequestLabels, Histogram>,
    db_pool_size: Gauge,
    db_pool_idle: Gauge,
    health_probes: prometheus_client::metrics::counter::Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests answered and their time from head to response, by method, route template and status",
            requests.clone(),
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
        let health_probes = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "db_health_probes",
            "Database probes run by health checks (results are shared for database.health_cache_ms)",
            health_probes.clone(),
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
            db_pool_size,
            db_pool_idle,
            health_probes,
        }
    }

    /// Records one answered request. `route` is a template from [`intern_route`], so label
    /// sets are built without allocating.
    pub fn record_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                method: Cow::Borrowed(method),
                route: Cow::Borrowed(route),
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_health_probe(&self) {
        self.health_probes.inc();
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
