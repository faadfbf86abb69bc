//! The MQTT source: QoS 1, a persistent session, acknowledgements only
//! after a checkpoint covers the message.
//!
//! Two tasks share one rumqttc client. The event-loop task polls the
//! connection (never cancelled mid-poll), forwards each PUBLISH to the
//! processing loop and reconnects with capped exponential backoff and
//! jitter. The ack task sends the PUBACKs the processing loop releases
//! after each checkpoint, in the order the messages arrived (MQTT 3.1.1
//! requires it), and disconnects cleanly once the final checkpoint's acks
//! are out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use super::{Input, SourceLinks};
use crate::config::MqttSource;

/// Where a topic's device id sits: `sensors/{device_id}/telemetry`, with `+` for any level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    levels: Vec<String>,
    at: usize,
}

impl Template {
    pub fn parse(t: &str) -> Option<Template> {
        let levels: Vec<String> = t.split('/').map(str::to_owned).collect();
        let at = levels.iter().position(|l| l == "{device_id}")?;
        Some(Template { levels, at })
    }

    /// The device id in `topic`, if the topic fits the template.
    pub fn device<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let mut found = None;
        let mut n = 0;
        for (i, level) in topic.split('/').enumerate() {
            let want = self.levels.get(i)?;
            if i == self.at {
                found = Some(level);
            } else if want != "+" && want != level {
                return None;
            }
            n += 1;
        }
        (n == self.levels.len()).then_some(found?).filter(|d| !d.is_empty())
    }
}

/// Host and port of `mqtt://host:port` / `mqtts://host:port` (validated by the config).
pub fn host_port(url: &str) -> Option<(String, u16, bool)> {
    let (tls, rest) =
        if let Some(r) = url.strip_prefix("mqtts://") { (true, r) } else { (false, url.strip_prefix("mqtt://")?) };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') => (h, p.parse().ok()?),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port, tls))
}

/// The largest packet MQTT allows (its remaining-length field's maximum).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Room in the client's request channel (acknowledgements, mostly): the
/// `cap` of `AsyncClient::new`, the only capacity rumqttc's event loop
/// reads (its `MqttOptions::set_request_channel_capacity` is only stored).
/// A checkpoint acknowledges everything it took at once, 10,000 packets a
/// second in the memory soak; at 65,536 the channel's queue grew to ~1 MB
/// and kept it (benches/RESULTS.md, 42).
/// When it is full the acknowledging task waits; the ids wait in its own
/// channel, two bytes each. Acknowledgements still in it when the
/// connection drops are dropped by the client either way: the broker
/// sends those messages again.
const REQUESTS: usize = 1024;

fn options(cfg: &MqttSource, max_payload: usize) -> Result<MqttOptions, String> {
    let (host, port, tls) = host_port(&cfg.url).ok_or_else(|| format!("cannot read the url {:?}", cfg.url))?;
    let mut o = MqttOptions::new(cfg.client_id.clone(), host, port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        // Payloads past ingest.max_payload_bytes are refused by the pipeline
        // with a reason; the client must still read them off the wire: a
        // packet the client refused would come back after every reconnect.
        // So the limit is MQTT's own (256 MiB); the channel's byte budget
        // bounds what waits.
        .set_max_packet_size(MQTT_MAX_PACKET.max(max_payload), 64 * 1024);
    if let Some(u) = &cfg.username {
        o.set_credentials(u.clone(), cfg.password.clone().unwrap_or_default());
    }
    if tls {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let transport = match &cfg.ca_file {
            Some(ca) => {
                let client_auth = match (&cfg.client_cert_file, &cfg.client_key_file) {
                    (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                    _ => None,
                };
                Transport::tls_with_config(TlsConfiguration::Simple { ca: read(ca)?, alpn: None, client_auth })
            }
            None => Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

/// Starts the source's two tasks. `acks` carries the packet ids to
/// acknowledge after each checkpoint; when the processing loop drops its
/// end, the session is closed.
pub fn spawn(
    index: usize,
    cfg: &MqttSource,
    max_payload: usize,
    links: SourceLinks,
    mut acks: mpsc::UnboundedReceiver<Vec<u16>>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let SourceLinks { tx, budget, mut stop, status } = links;
    let opts = options(cfg, max_payload)?;
    let (client, mut eventloop) = AsyncClient::new(opts, REQUESTS);
    let topics: Vec<rumqttc::SubscribeFilter> =
        cfg.topics.iter().map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce)).collect();
    let url = cfg.url.clone();
    let closing = Arc::new(AtomicBool::new(false));

    let acker = {
        let client = client.clone();
        let closing = closing.clone();
        tokio::spawn(async move {
            while let Some(ids) = acks.recv().await {
                for pkid in ids {
                    let mut p = Publish::new("", QoS::AtLeastOnce, Vec::new());
                    p.pkid = pkid;
                    if client.ack(&p).await.is_err() {
                        return;
                    }
                }
            }
            closing.store(true, Ordering::SeqCst);
            let _ = client.disconnect().await;
        })
    };

    Ok(tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if *stop.borrow() {
                // Stop intake: messages from now on are not acknowledged and
                // come back with the next session.
                tx = None;
            }
            // Not raced against anything: a poll cancelled half way could lose a packet.
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    status.received.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = &tx {
                        let budget = budget.take(p.payload.len()).await;
                        let input = Input::Mqtt {
                            source: index,
                            topic: p.topic,
                            payload: p.payload,
                            pkid: p.pkid,
                            dup: p.dup,
                            budget,
                        };
                        if t.send(input).await.is_err() {
                            tx = None;
                        }
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    status.set_connected(true);
                    backoff.reset();
                    tracing::info!(source = index, url = %url, session_present = c.session_present, "MQTT connected");
                    if !c.session_present {
                        if let Err(e) = client.try_subscribe_many(topics.clone()) {
                            tracing::error!(source = index, "MQTT subscribe failed: {e}");
                        }
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    status.set_connected(false);
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    status.set_connected(false);
                    if closing.load(Ordering::SeqCst) {
                        break;
                    }
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff.next_wait();
                    tracing::warn!(source = index, url = %url, "MQTT connection lost ({e}); retrying in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() && acker.is_finished() {
                        break;
                    }
                }
            }
        }
        let _ = acker.await;
    }))
}

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Backoff { base, cap, attempt: 0, seed: seed | 1 }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next wait: uniform in [ceiling/2, ceiling], ceiling = min(cap, base·2^attempt).
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: jitter needs no quality.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1000) as f64 / 1000.0;
        ceiling.mul_f64(0.5 + 0.5 * frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_the_device_level() {
        let t = Template::parse("sensors/{device_id}/+").unwrap();
        assert_eq!(t.device("sensors/pump-7/telemetry"), Some("pump-7"));
        assert_eq!(t.device("sensors/pump-7"), None);
        assert_eq!(t.device("sensors/pump-7/a/b"), None);
        assert_eq!(t.device("other/pump-7/x"), None);
        assert_eq!(t.device("sensors//x"), None);
    }

    #[test]
    fn urls_and_backoff() {
        assert_eq!(host_port("mqtt://127.0.0.1:1884"), Some(("127.0.0.1".into(), 1884, false)));
        assert_eq!(host_port("mqtts://broker"), Some(("broker".into(), 8883, true)));
        assert_eq!(host_port("mqtt://[::1]:1883"), Some(("::1".into(), 1883, false)));
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        assert!(waits[7] >= Duration::from_secs(1));
    }
}
