//! The daemon's Prometheus metrics (prometheus-client: typed, no global registry). Every name and
//! label is listed in docs/daemon.md; labels carry job and store names, never item ids or values.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StoreError;
use crate::store::layered::ApiObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub job: String,
    /// success | drift | failure | skipped
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub job: String,
    /// create | update | delete | unchanged | error | failed (see docs/daemon.md)
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: String,
    /// scan | read | write | delete | flush | check
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub store: String,
    pub op: String,
    /// throttled | unavailable | unreachable | permission_denied | conflict | item | other
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// ok | rejected
    pub result: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub items: Family<ItemLabels, Counter>,
    pub drift: Family<JobLabels, Gauge>,
    pub last_success: Family<JobLabels, FloatGauge>,
    pub last_run: Family<JobLabels, FloatGauge>,
    pub duration: Family<JobLabels, Histogram>,
    pub running: Family<JobLabels, Gauge>,
    pub missed: Family<JobLabels, Counter>,
    pub api_calls: Family<StoreLabels, Counter>,
    pub api_errors: Family<StoreErrorLabels, Counter>,
    pub throttles: Family<StoreLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("airflow_secrets_sync");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Job runs by result (success, drift, failure, skipped)", runs.clone());
        let items = Family::<ItemLabels, Counter>::default();
        registry.register(
            "items",
            "Items per run by action: applied writes in apply mode, pending changes in plan mode",
            items.clone(),
        );
        let drift = Family::<JobLabels, Gauge>::default();
        registry.register(
            "drift_items",
            "Items that differ between source and target after the job's last run",
            drift.clone(),
        );
        let last_success = Family::<JobLabels, FloatGauge>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the job's last successful run (success or drift)",
            last_success.clone(),
        );
        let last_run = Family::<JobLabels, FloatGauge>::default();
        registry.register("last_run_timestamp_seconds", "Unix time the job's last run finished", last_run.clone());
        let duration = Family::<JobLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register("run_duration_seconds", "Wall time of each job run", duration.clone());
        let running = Family::<JobLabels, Gauge>::default();
        registry.register("job_running", "1 while the job runs in this process", running.clone());
        let missed = Family::<JobLabels, Counter>::default();
        registry.register(
            "missed_runs",
            "Scheduled occurrences that passed while the previous run was still going",
            missed.clone(),
        );
        let api_calls = Family::<StoreLabels, Counter>::default();
        registry.register("backend_calls", "Store operations by store and operation", api_calls.clone());
        let api_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register("backend_errors", "Failed store operations by store, operation and error class", api_errors.clone());
        let throttles = Family::<StoreLabels, Counter>::default();
        registry.register("backend_throttles", "Store operations the backend throttled", throttles.clone());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("config_reloads", "SIGHUP configuration reloads by result", reloads.clone());
        Arc::new(Metrics {
            registry,
            runs,
            items,
            drift,
            last_success,
            last_run,
            duration,
            running,
            missed,
            api_calls,
            api_errors,
            throttles,
            reloads,
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn job(job: &str) -> JobLabels {
        JobLabels { job: job.to_string() }
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0])
}

/// The error class label of a store error.
pub fn error_class(e: &StoreError) -> &'static str {
    match e {
        StoreError::Throttled { .. } => "throttled",
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::Unreachable { .. } => "unreachable",
        StoreError::PermissionDenied { .. } => "permission_denied",
        StoreError::Conflict { .. } => "conflict",
        StoreError::Item { .. } => "item",
        _ => "other",
    }
}

impl ApiObserver for Metrics {
    fn observe(&self, store: &str, op: &'static str, result: Result<(), &StoreError>) {
        let labels = StoreLabels { store: store.to_string(), op: op.to_string() };
        self.api_calls.get_or_create(&labels).inc();
        if let Err(e) = result {
            let class = error_class(e);
            if class == "throttled" {
                self.throttles.get_or_create(&labels).inc();
            }
            self.api_errors
                .get_or_create(&StoreErrorLabels { store: labels.store, op: labels.op, error: class.to_string() })
                .inc();
        }
    }
}
