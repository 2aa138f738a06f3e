//! Every metric wsgate exports, declared in one place and handed to the
//! stages that count. Labels are bounded: route paths come from the config,
//! reasons and decisions from fixed lists, close codes from 1000..=4999;
//! never a user, an origin or an address (those go to the audit log).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `route` is the route's path, or `none` before one matched.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandshakeLabels {
    pub(crate) route: String,
    pub(crate) decision: &'static str,
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CloseLabels {
    pub(crate) route: String,
    pub(crate) reason: &'static str,
    pub(crate) code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

/// `direction` is `in` (from clients) or `out` (from upstreams).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FlowLabels {
    pub(crate) route: String,
    pub(crate) direction: &'static str,
}

/// The metrics.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) handshakes: Family<HandshakeLabels, Counter>,
    pub(crate) open: Family<RouteLabels, Gauge>,
    pub(crate) closes: Family<CloseLabels, Counter>,
    pub(crate) messages: Family<FlowLabels, Counter>,
    pub(crate) bytes: Family<FlowLabels, Counter>,
    pub(crate) decision_seconds: Histogram,
    /// Read from the limits when scraped.
    assembly_bytes: Gauge,
    slots_in_use: Gauge,
    at_http: Gauge,
    /// 1 while the store answers (always 1 for the memory store).
    pub(crate) store_up: Gauge,
    /// Store operations that failed or timed out.
    pub(crate) store_errors: Counter,
    /// Upstream connections that failed (connect, TLS, handshake, timeout), by route.
    pub(crate) upstream_errors: Family<RouteLabels, Counter>,
    /// Time to connect to an upstream and get its 101.
    pub(crate) upstream_seconds: Histogram,
    pub(crate) config_generation: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    limit_hits: Family<KindLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("wsgate");
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshakes",
            "Handshakes by route, decision and reason",
            handshakes.clone(),
        );
        let open = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Open relayed connections by route",
            open.clone(),
        );
        let closes = Family::<CloseLabels, Counter>::default();
        registry.register(
            "closes",
            "Closed connections by route, reason and close code",
            closes.clone(),
        );
        let messages = Family::<FlowLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages relayed, by route and direction",
            messages.clone(),
        );
        let bytes = Family::<FlowLabels, Counter>::default();
        registry.register("bytes", "Bytes read, by route and direction", bytes.clone());
        // From 100 µs to about 6.5 s: policy alone is microseconds, an
        // upstream handshake or a JWKS fetch is milliseconds.
        let decision_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 4.0, 9),
        );
        registry.register(
            "handshake_decision_seconds",
            "Time from request head to answer",
            decision_seconds.clone(),
        );
        let assembly_bytes = Gauge::default();
        registry.register(
            "assembly_bytes",
            "Bytes held for messages being assembled for message rules, all connections",
            assembly_bytes.clone(),
        );
        let slots_in_use = Gauge::default();
        registry.register(
            "connection_slots_in_use",
            "Handshakes in progress and connections open, against [limits] max_connections",
            slots_in_use.clone(),
        );
        let at_http = Gauge::default();
        registry.register(
            "connections_at_http",
            "Connections speaking HTTP (not upgraded to WebSocket), against [limits] max_connections",
            at_http.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "1 while the state store answers, 0 while it cannot be reached",
            store_up.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "State store operations that failed or timed out",
            store_errors.clone(),
        );
        let upstream_errors = Family::<RouteLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream connections that failed (connect, TLS, handshake, timeout), by route",
            upstream_errors.clone(),
        );
        let upstream_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0001, 4.0, 9),
        );
        registry.register(
            "upstream_connect_seconds",
            "Time to connect to an upstream and get its 101",
            upstream_seconds.clone(),
        );
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "The config in force: 1 at start, +1 per reload applied",
            config_generation.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Reloads by result: applied, or refused (the old config stays)",
            reloads.clone(),
        );
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        registry.register(
            "config_last_reload_successful",
            "1 when the last reload was applied (or none was tried), 0 when it was refused",
            last_reload_ok.clone(),
        );
        let limit_hits = Family::<KindLabels, Counter>::default();
        registry.register(
            "limit_hits",
            "Handshakes refused and connections closed by a limit, by the limit's config key",
            limit_hits.clone(),
        );
        Metrics {
            last_reload_ok,
            limit_hits,
            config_generation,
            reloads,
            store_errors,
            upstream_errors,
            upstream_seconds,
            store_up,
            assembly_bytes,
            slots_in_use,
            at_http,
            registry,
            handshakes,
            open,
            closes,
            messages,
            bytes,
            decision_seconds,
        }
    }

    /// Counts a limit that refused a handshake or closed a connection.
    pub(crate) fn limit_hit(&self, kind: &'static str) {
        let labels = KindLabels { kind };
        self.limit_hits.get_or_create(&labels).inc();
    }

    /// Counts a reload: applied, or refused (the old config stays).
    pub(crate) fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        let labels = ResultLabels { result };
        self.reloads.get_or_create(&labels).inc();
        self.last_reload_ok.set(i64::from(applied));
    }

    /// Counts one handshake decision.
    pub(crate) fn handshake(
        &self,
        route: Option<&str>,
        decision: &'static str,
        reason: Option<&'static str>,
        seconds: f64,
    ) {
        let labels = HandshakeLabels {
            route: route.unwrap_or("none").to_owned(),
            decision,
            reason: reason.unwrap_or("none"),
        };
        self.handshakes.get_or_create(&labels).inc();
        self.decision_seconds.observe(seconds);
    }

    /// The Prometheus text exposition, with the limits' gauges read now.
    pub(crate) fn encode(
        &self,
        slots: &crate::limits::Slots,
        at_http: &crate::limits::Slots,
        budget: &crate::limits::Budget,
    ) -> String {
        self.at_http
            .set(i64::try_from(at_http.in_use()).unwrap_or(i64::MAX));
        self.assembly_bytes
            .set(i64::try_from(budget.in_use()).unwrap_or(i64::MAX));
        self.slots_in_use
            .set(i64::try_from(slots.in_use()).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
