//! The optional Prometheus endpoint (`metrics = "127.0.0.1:9641"`): the daemon's counters,
//! gauges and histograms in one [`Metrics`] registry, served as the text exposition format
//! by [`serve`] over hyper's HTTP/1 server.
//!
//! It owns the metric names, labels and the HTTP endpoint (`GET /metrics`; anything else is
//! 404). It does not decide what to count: the daemon updates the metrics where things
//! happen. It does not bind by itself: the caller passes a bound listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Labels of per-jail, per-filter metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JailLabels {
    /// The jail's name.
    pub jail: String,
    /// The filter's name (e.g. `sshd`).
    pub filter: String,
}

/// Labels of ban and unban counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: a jail name, `manual`, `expired`, `crowdsec`, …
    pub reason: String,
}

/// Labels of per-layout, per-family metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayoutLabels {
    /// `chain` or `set`.
    pub layout: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
}

/// Every metric the daemon exports, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Log lines read, per jail and filter.
    pub lines_read: Family<JailLabels, Counter>,
    /// Failures matched, per jail and filter.
    pub failures: Family<JailLabels, Counter>,
    /// Bans applied, by reason.
    pub bans: Family<ReasonLabels, Counter>,
    /// Unbans applied, by reason.
    pub unbans: Family<ReasonLabels, Counter>,
    /// Bans in place now, per layout and family.
    pub active_bans: Family<LayoutLabels, Gauge>,
    /// Packets the drop rules matched (the kernel's counters, as last read).
    pub dropped_packets: Family<LayoutLabels, Gauge>,
    /// Bytes the drop rules matched (the kernel's counters, as last read).
    pub dropped_bytes: Family<LayoutLabels, Gauge>,
    /// Kernel requests the daemon made (block, unblock, sync; each one nf_tables
    /// transaction or part of one the service merged).
    pub transactions: Counter,
    /// Entries per kernel request.
    pub transaction_size: Histogram,
    /// Seconds from the request to the kernel's answer, per request.
    pub transaction_seconds: Histogram,
    /// Times the daemon put back what another program removed.
    pub self_heals: Counter,
    /// Size of the ban store in bytes.
    pub store_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered under the `autoblock_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("autoblock");
        let m = Metrics {
            lines_read: Family::default(),
            failures: Family::default(),
            bans: Family::default(),
            unbans: Family::default(),
            active_bans: Family::default(),
            dropped_packets: Family::default(),
            dropped_bytes: Family::default(),
            transactions: Counter::default(),
            transaction_size: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            transaction_seconds: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
            self_heals: Counter::default(),
            store_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("log_lines", "Log lines read", m.lines_read.clone());
        registry.register(
            "failures",
            "Failures matched by a filter",
            m.failures.clone(),
        );
        registry.register("bans", "Bans applied", m.bans.clone());
        registry.register("unbans", "Unbans applied", m.unbans.clone());
        registry.register("active_bans", "Bans in place", m.active_bans.clone());
        registry.register(
            "dropped_packets",
            "Packets matched by the drop rules (kernel counters)",
            m.dropped_packets.clone(),
        );
        registry.register(
            "dropped_bytes",
            "Bytes matched by the drop rules (kernel counters)",
            m.dropped_bytes.clone(),
        );
        registry.register(
            "transactions",
            "Kernel requests the daemon made (block, unblock, sync)",
            m.transactions.clone(),
        );
        registry.register(
            "transaction_messages",
            "Entries per kernel request",
            m.transaction_size.clone(),
        );
        registry.register(
            "transaction_seconds",
            "Seconds from a kernel request to its answer",
            m.transaction_seconds.clone(),
        );
        registry.register(
            "self_heals",
            "Repairs of what another program removed",
            m.self_heals.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the ban store",
            m.store_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric (what `GET /metrics` returns).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        (StatusCode::OK, metrics.render())
    } else {
        (
            StatusCode::NOT_FOUND,
            "not found: try GET /metrics\n".to_owned(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if status == StatusCode::OK {
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(CONTENT_TYPE),
        );
    }
    resp
}

/// Serves `GET /metrics` on `listener` until the task is dropped or aborted. Each
/// connection runs in its own task; a broken connection is logged and does not stop the
/// server.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(&metrics, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("metrics connection from {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len()..].trim().parse().ok())
    }

    #[tokio::test]
    async fn a_scrape_shows_the_values_move() {
        let metrics = Arc::new(Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics)));

        let sshd = JailLabels {
            jail: "sshd".into(),
            filter: "sshd".into(),
        };
        metrics.lines_read.get_or_create(&sshd).inc_by(3);
        let (status, before) = get(addr, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let lines = r#"autoblock_log_lines_total{jail="sshd",filter="sshd"}"#;
        assert_eq!(value(&before, lines), Some(3.0), "{before}");
        assert!(before.ends_with("# EOF\n"), "{before}");

        metrics.lines_read.get_or_create(&sshd).inc_by(2);
        metrics
            .bans
            .get_or_create(&ReasonLabels {
                reason: "sshd".into(),
            })
            .inc();
        metrics
            .active_bans
            .get_or_create(&LayoutLabels {
                layout: "set".into(),
                family: "ipv4".into(),
            })
            .set(7);
        metrics.transactions.inc();
        metrics.transaction_size.observe(3.0);
        metrics.transaction_seconds.observe(0.002);
        metrics.store_bytes.set(4096);
        let (_, after) = get(addr, "/metrics").await;
        assert_eq!(value(&after, lines), Some(5.0), "{after}");
        assert_eq!(
            value(&after, r#"autoblock_bans_total{reason="sshd"}"#),
            Some(1.0),
            "{after}"
        );
        assert_eq!(
            value(
                &after,
                r#"autoblock_active_bans{layout="set",family="ipv4"}"#
            ),
            Some(7.0),
            "{after}"
        );
        assert_eq!(value(&after, "autoblock_transactions_total"), Some(1.0));
        assert_eq!(
            value(&after, "autoblock_transaction_messages_count"),
            Some(1.0)
        );
        assert_eq!(
            value(&after, "autoblock_transaction_seconds_sum"),
            Some(0.002)
        );
        assert_eq!(value(&after, "autoblock_store_bytes"), Some(4096.0));

        let (status, _) = get(addr, "/other").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        server.abort();
    }
}
