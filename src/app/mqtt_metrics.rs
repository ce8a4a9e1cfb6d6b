//! The MQTT publisher's own counters (kept by the connection task) exposed through the one
//! metrics registry, read at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::events::{Publisher, Rejection};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

pub(crate) struct PublisherCollector(pub Publisher);

impl std::fmt::Debug for PublisherCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublisherCollector")
    }
}

impl Collector for PublisherCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0.metrics();
        for (name, help, value) in [
            (
                "mqtt_published",
                "Event messages handed to the broker (resends count again)",
                m.published,
            ),
            ("mqtt_acked", "Events the broker acknowledged", m.acked),
            (
                "mqtt_reconnects",
                "Connections to the broker after the first",
                m.reconnects,
            ),
            (
                "mqtt_publish_errors",
                "Events not stored and other messages dropped",
                m.publish_errors,
            ),
            (
                "mqtt_commands_received",
                "Messages on the command topics",
                m.commands_received,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let mut family = encoder.encode_descriptor(
            "mqtt_commands_rejected",
            "Command messages refused, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for reason in Rejection::ALL {
            let counter = ConstCounter::new(m.command_rejections.get(reason));
            let label = ReasonLabel {
                reason: reason.code().to_string(),
            };
            counter.encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}
