//! Logs to stderr, and optionally the spans of Warden's work exported to an OpenTelemetry
//! collector over OTLP/HTTP.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, and configured by the other standard `OTEL_*` variables (protocol, headers,
//! timeout, batching, sampling, service name). Without it nothing is exported, and no thread,
//! runtime or client is started. Export never stands in Warden's way: a collector that is
//! down or misconfigured costs a warning, never an action or a startup.
//!
//! The exporter speaks HTTP through the workspace's own HTTP client on a one-thread runtime
//! of its own: the SDK's batch processor exports from a plain thread, outside any async
//! runtime, and the command's runtime may already be gone when the last spans are flushed.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// How long the last spans may take to reach the collector when Warden stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The OTLP default for one export request, unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise.
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest collector response read; OTLP responses are a few bytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Exports spans until [`Telemetry::shutdown`] (or drop) flushes the last ones.
#[must_use = "dropping it stops the export"]
pub struct Telemetry {
    export: Option<Export>,
}

struct Export {
    provider: SdkTracerProvider,
    /// Runs the exporter's HTTP requests.
    runtime: tokio::runtime::Runtime,
}

impl Telemetry {
    /// Flushes the spans not yet exported and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(export) = self.export.take() else {
            return;
        };
        if let Err(err) = export.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(%err, "flushing the last spans to the OpenTelemetry collector failed");
        }
        // An export still hanging on a dead collector is abandoned rather than awaited.
        export.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the process's tracing subscriber: logs to stderr as `WARDEN_LOG` filters them
/// (default `warn`; stdout is the MCP channel of `warden mcp`), and, when an OTLP endpoint is
/// configured, spans as `WARDEN_OTEL_LOG` filters them (default `info`) to the collector.
pub fn init() -> Telemetry {
    let logs = EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(logs);

    let (export, trouble) = match configured() {
        Err(why) => (None, Some(why)),
        Ok(false) => (None, None),
        Ok(true) => match start_export() {
            Ok(export) => (Some(export), None),
            Err(why) => (None, Some(why)),
        },
    };
    let otel = export.as_ref().map(|export| {
        let spans =
            EnvFilter::try_from_env("WARDEN_OTEL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
        tracing_opentelemetry::layer()
            .with_tracer(export.provider.tracer("warden"))
            .with_filter(spans)
    });
    let _ = Registry::default().with(fmt).with(otel).try_init();
    if let Some(why) = trouble {
        tracing::warn!("OpenTelemetry export is off: {why}");
    }
    Telemetry { export }
}

/// Whether an OTLP trace endpoint is configured and export not turned off.
fn configured() -> Result<bool, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if !endpoint {
        return Ok(false);
    }
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let no_exporter =
        std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    if disabled || no_exporter {
        return Ok(false);
    }
    let protocol = env_first(&[
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]);
    if protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc"))
    {
        return Err(
            "Warden exports over OTLP/HTTP only; set OTEL_EXPORTER_OTLP_PROTOCOL to \
             http/protobuf or http/json and point the endpoint at the collector's HTTP port"
                .to_owned(),
        );
    }
    Ok(true)
}

/// The first of `names` that is set, trimmed.
fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn start_export() -> Result<Export, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("warden-otlp")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the exporter's runtime: {e}"))?;
    let client = Client::new(runtime.handle().clone())?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client);
    // The OTLP default is http/protobuf; the library's own default follows its features.
    if env_first(&[
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ])
    .is_none()
    {
        exporter = exporter.with_protocol(Protocol::HttpBinary);
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("the OTLP exporter could not be set up: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    Ok(Export { provider, runtime })
}

/// Who the spans come from: `warden` and its version, unless the operator named the service.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        builder = builder.with_service_name("warden");
    }
    builder.build()
}

/// The exporter's HTTP client: each request runs on the exporter's runtime, whichever
/// thread asks for it.
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Client {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let timeout = env_first(&[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ])
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis);
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = env_first(&[
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ]) {
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read the collector's CA certificate {path}: {e}"))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("the collector's CA certificate {path} is not PEM: {e}"))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the exporter's HTTP client: {e}"))?;
        Ok(Self { http, runtime })
    }
}

/// One export request, sent and its (bounded) response read.
async fn send(
    http: reqwest::Client,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let request = reqwest::Request::try_from(request)?;
    let mut response = http.execute(request).await?;
    let mut answer = Response::builder().status(response.status());
    if let Some(headers) = answer.headers_mut() {
        *headers = std::mem::take(response.headers_mut());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err("the collector's response is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(answer.body(Bytes::from(body))?)
}

// Written out as the `async_trait` attribute on the trait expands it.
impl HttpClient for Client {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let task = self.runtime.spawn(send(self.http.clone(), request));
        Box::pin(async move { task.await? })
    }
}
