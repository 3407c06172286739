//! In-process [`PubSub`] over tokio broadcast channels, one per topic.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use qb_core::PubSub;
use qb_core::seams::Event;
use tokio::sync::broadcast;

/// Messages a subscriber may fall behind by before it starts losing the oldest.
const CAPACITY: usize = 4096;

#[derive(Default, Clone)]
pub struct LocalPubSub {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>>,
}

impl LocalPubSub {
    pub fn new() -> Self {
        Self::default()
    }

    fn sender(&self, topic: &str) -> broadcast::Sender<Arc<Event>> {
        self.topics
            .lock()
            .entry(topic.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .clone()
    }
}

impl PubSub for LocalPubSub {
    fn publish(&self, topic: &str, data: serde_json::Value) {
        let sender = self.sender(topic);
        // No receivers is not an error: nobody is listening right now.
        let _ = sender.send(Arc::new(Event {
            topic: topic.to_string(),
            data,
        }));
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Event>> {
        self.sender(topic).subscribe()
    }
}
