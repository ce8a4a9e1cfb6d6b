//! The frame bus of one camera: every decoded frame goes to any number of consumers, each
//! with its own bounded queue, drop policy and rate, so that a slow consumer never slows
//! another (recognition now; a style filter, liveness cues and recorders later).
//!
//! Why a bus in Rust rather than a GStreamer `tee` with a leaky `queue` and an `appsink`
//! per branch: the RGB image is made once and shared as an `Arc`, where each appsink would
//! copy its buffer into an image of its own; rates are decimated by timestamp and drops
//! counted in one place, into counters the metrics endpoint registers; the bus and its
//! consumers outlive the pipeline, which is rebuilt on every restart, so consumers come
//! and go without relinking a running pipeline; a replay waits for `Block` consumers while
//! the others stay leaky; and all of it is tested without GStreamer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use super::Frame;
use super::decimator::PtsDecimator;

/// How long a waiting replay sleeps on a full queue before it looks at the cancellation
/// (and at its consumer) again: the bound on how long it can delay a teardown.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// What a consumer's queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Replays (non-paced sources) wait for room: every frame reaches this consumer,
    /// deterministically. On a paced source (camera, realtime file) the streaming thread
    /// never waits: it drops the oldest queued frame instead.
    Block,
    /// Never waits: when the queue is full the oldest queued frame is dropped (the freshest
    /// frame wins).
    DropOldest,
}

impl QueuePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePolicy::Block => "block",
            QueuePolicy::DropOldest => "drop_oldest",
        }
    }
}

/// A consumer's counters; clones share the same values, so the application can register
/// the very handles it passes in. `Default` gives unregistered ones.
///
/// Every frame admitted for the consumer ends up in exactly one of them, or is still in
/// its queue: `delivered` counts the frames the consumer took out of its queue (brought up
/// to date whenever the bus hands it a frame, when it receives through [`FrameReceiver`]'s
/// methods, and when it goes away); `dropped` counts frames it never got: pushed out of a
/// full queue by a fresher one, left in the queue when the consumer went away, or given up
/// when the camera was stopped while a replay waited for room.
#[derive(Debug, Clone, Default)]
pub struct ConsumerCounters {
    pub delivered: Counter,
    pub dropped: Counter,
}

/// What a consumer wants from the bus.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Names the consumer in logs and in [`FrameBus::queue_depth`].
    pub name: String,
    /// Frames its queue holds; 0 is taken as 1.
    pub capacity: usize,
    pub policy: QueuePolicy,
    /// Frames per second admitted, decimated by timestamp like every consumer's; 0 = every frame.
    pub fps: f32,
    pub counters: ConsumerCounters,
}

impl ConsumerSpec {
    /// A consumer with fresh, unregistered counters.
    pub fn new(name: impl Into<String>, capacity: usize, policy: QueuePolicy, fps: f32) -> ConsumerSpec {
        ConsumerSpec {
            name: name.into(),
            capacity,
            policy,
            fps,
            counters: ConsumerCounters::default(),
        }
    }
}

/// The frame bus of one camera. Consumers may subscribe before the camera starts or while
/// it runs; each one's queue lives until its [`FrameReceiver`] is dropped. When the last
/// consumer has gone the camera stops; a bus that never had one decodes for nobody.
pub struct FrameBus {
    camera: Arc<str>,
    consumers: Arc<Mutex<Consumers>>,
    /// Set when the camera has stopped: queues made from then on are born disconnected.
    closed: AtomicBool,
}

struct Consumers {
    entries: Vec<Entry>,
    next_id: u64,
    had_any: bool,
}

/// A consumer as the bus sees it; the decimator is only touched by the streaming thread.
struct Entry {
    id: u64,
    queue: Arc<Queue>,
    decimator: PtsDecimator,
}

/// One consumer's queue, shared by the bus and the consumer's [`FrameReceiver`].
struct Queue {
    name: Arc<str>,
    policy: QueuePolicy,
    /// The bus's own end of the queue: it pops the oldest frame of a full queue and
    /// measures what the consumer took.
    rx: Receiver<Frame>,
    counters: ConsumerCounters,
    state: Mutex<QueueState>,
    /// The consumer has gone: a waiting replay stops waiting for it.
    gone: AtomicBool,
}

/// Bookkeeping of one queue, changed only under its lock so that `delivered` never runs
/// ahead of what the consumer really took.
struct QueueState {
    /// `None` once the camera has stopped: the consumer sees the end after the last frame.
    tx: Option<Sender<Frame>>,
    /// Frames put in by the bus.
    queued: u64,
    /// Frames taken back out by the bus (dropped).
    evicted: u64,
    /// Frames the consumer took, as counted in `delivered` so far.
    taken: u64,
}

/// The stop of the camera interrupted a replay that waited for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cancelled;

/// The consumers that admitted one frame, in subscription order.
pub(crate) struct Admitted(Vec<Arc<Queue>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent at every step: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FrameBus {
    pub fn new(camera: &str) -> Arc<FrameBus> {
        Arc::new(FrameBus {
            camera: Arc::from(camera),
            consumers: Arc::new(Mutex::new(Consumers {
                entries: Vec::new(),
                next_id: 0,
                had_any: false,
            })),
            closed: AtomicBool::new(false),
        })
    }

    /// The camera's name.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// Adds a consumer; it gets the frames its decimator admits from now on.
    pub fn subscribe(&self, spec: ConsumerSpec) -> FrameReceiver {
        let (tx, rx) = crossbeam_channel::bounded(spec.capacity.max(1));
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let mut consumers = lock(&self.consumers);
        let queue = Arc::new(Queue {
            name: name.clone(),
            policy: spec.policy,
            rx: rx.clone(),
            counters: spec.counters,
            state: Mutex::new(QueueState {
                // Checked under the consumers lock, which `close` also takes.
                tx: (!self.closed.load(Ordering::Relaxed)).then_some(tx),
                queued: 0,
                evicted: 0,
                taken: 0,
            }),
            gone: AtomicBool::new(false),
        });
        let id = consumers.next_id;
        consumers.next_id += 1;
        consumers.had_any = true;
        consumers.entries.push(Entry {
            id,
            queue: queue.clone(),
            decimator: PtsDecimator::new(spec.fps),
        });
        tracing::debug!(camera = %self.camera, consumer = %name, capacity = spec.capacity, policy = spec.policy.as_str(), fps = spec.fps, "frame consumer subscribed");
        FrameReceiver {
            id,
            queue,
            rx,
            bus: Arc::downgrade(&self.consumers),
        }
    }

    /// Frames waiting in the queue of the consumer named `consumer` (the first one of that
    /// name); `None` when there is none.
    pub fn queue_depth(&self, consumer: &str) -> Option<usize> {
        let consumers = lock(&self.consumers);
        let entry = consumers.entries.iter().find(|e| &*e.queue.name == consumer)?;
        Some(entry.queue.rx.len())
    }

    /// How many consumers are subscribed.
    pub fn consumer_count(&self) -> usize {
        lock(&self.consumers).entries.len()
    }

    /// Whether every consumer there was has gone: then the camera stops.
    pub fn is_abandoned(&self) -> bool {
        let consumers = lock(&self.consumers);
        consumers.had_any && consumers.entries.is_empty()
    }

    /// The camera has stopped: each consumer receives what is queued, then sees its queue
    /// disconnected.
    pub(crate) fn close(&self) {
        let consumers = lock(&self.consumers);
        self.closed.store(true, Ordering::Relaxed);
        for e in &consumers.entries {
            lock(&e.queue.state).tx = None;
        }
    }

    /// Runs every consumer's decimator on the frame at `pts_ns`; the frame need only be
    /// converted when the answer is not empty.
    pub(crate) fn admit(&self, pts_ns: u64) -> Admitted {
        let mut consumers = lock(&self.consumers);
        let queues = consumers
            .entries
            .iter_mut()
            .filter_map(|e| e.decimator.admit(pts_ns).then(|| e.queue.clone()))
            .collect();
        Admitted(queues)
    }

    /// Hands `frame` to the consumers that admitted it: first those that never wait, then,
    /// on a replay (`paced` false), those that wait for room. `Err` when `cancel` stopped a
    /// wait; the consumers not served then count the frame as dropped.
    pub(crate) fn deliver(
        &self,
        admitted: Admitted,
        frame: Frame,
        paced: bool,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        let waits = |q: &Queue| !paced && q.policy == QueuePolicy::Block;
        let (waiting, leaky): (Vec<_>, Vec<_>) = admitted.0.into_iter().partition(|q| waits(q));
        for q in &leaky {
            q.push_dropping_oldest(frame.clone());
        }
        let mut waiting = waiting.into_iter();
        for q in waiting.by_ref() {
            if q.push_waiting(frame.clone(), cancel).is_err() {
                for rest in waiting {
                    rest.counters.dropped.inc();
                }
                return Err(Cancelled);
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for FrameBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consumers = lock(&self.consumers);
        let names: Vec<&str> = consumers.entries.iter().map(|e| &*e.queue.name).collect();
        f.debug_struct("FrameBus")
            .field("camera", &self.camera)
            .field("consumers", &names)
            .finish()
    }
}

impl Admitted {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The frame could not be made: it counts as dropped for every consumer that admitted it.
    pub fn discard(self) {
        for q in self.0 {
            q.counters.dropped.inc();
        }
    }
}

impl Queue {
    /// Brings `delivered` up to what the consumer has taken out of the queue. Frames the
    /// bus is adding concurrently can only make it count fewer, never more.
    fn settle(&self, s: &mut QueueState) {
        let in_queue = self.rx.len() as u64;
        let taken = s.queued.saturating_sub(s.evicted).saturating_sub(in_queue);
        if taken > s.taken {
            self.counters.delivered.inc_by(taken - s.taken);
            s.taken = taken;
        }
    }

    /// Empties the queue of a consumer that has gone; what it never took is dropped.
    fn discard_queued(&self, s: &mut QueueState) {
        while self.rx.try_recv().is_ok() {
            s.evicted += 1;
            self.counters.dropped.inc();
        }
    }

    /// Queues the frame at once, pushing out the oldest queued frame when full.
    fn push_dropping_oldest(&self, frame: Frame) {
        let mut s = lock(&self.state);
        self.settle(&mut s);
        // `gone` is set under this lock: a consumer that went since the frame was admitted
        // gets nothing more.
        let tx = s.tx.clone().filter(|_| !self.gone.load(Ordering::Relaxed));
        let Some(tx) = tx else {
            self.counters.dropped.inc();
            return;
        };
        let mut frame = frame;
        // The bus is the only sender, so one eviction makes room; the bound is a safeguard.
        for _ in 0..4 {
            match tx.try_send(frame) {
                Ok(()) => {
                    s.queued += 1;
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    if self.rx.try_recv().is_ok() {
                        s.evicted += 1;
                        self.counters.dropped.inc();
                    }
                    frame = back;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        self.counters.dropped.inc();
    }

    /// Waits for room (a replay), giving up when `cancel` fires; a consumer that goes away
    /// meanwhile is no longer waited for.
    fn push_waiting(&self, frame: Frame, cancel: &CancellationToken) -> Result<(), Cancelled> {
        let tx = {
            let mut s = lock(&self.state);
            self.settle(&mut s);
            s.tx.clone()
        };
        let Some(tx) = tx else {
            self.counters.dropped.inc();
            return Ok(());
        };
        let mut frame = frame;
        loop {
            if cancel.is_cancelled() {
                self.counters.dropped.inc();
                return Err(Cancelled);
            }
            if self.gone.load(Ordering::Relaxed) {
                self.counters.dropped.inc();
                return Ok(());
            }
            // Not under the state lock: the consumer settles under it while it receives.
            match tx.send_timeout(frame, WAIT_SLICE) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => frame = back,
                Err(SendTimeoutError::Disconnected(_)) => {
                    self.counters.dropped.inc();
                    return Ok(());
                }
            }
        }
        let mut s = lock(&self.state);
        s.queued += 1;
        if self.gone.load(Ordering::Relaxed) {
            self.discard_queued(&mut s);
        }
        Ok(())
    }

    /// The consumer has gone: settle its counters and drop what it left.
    fn close(&self) {
        let mut s = lock(&self.state);
        self.gone.store(true, Ordering::Relaxed);
        self.settle(&mut s);
        self.discard_queued(&mut s);
    }
}

/// One consumer's end of the bus. Dropping it unsubscribes the consumer.
///
/// Frames may be taken through its methods or straight from [`FrameReceiver::receiver`]
/// (for a `crossbeam_channel::Select` over several cameras); either way they are counted
/// as delivered. After the camera has stopped, receiving reports a disconnected queue
/// once the queued frames are taken.
pub struct FrameReceiver {
    id: u64,
    queue: Arc<Queue>,
    rx: Receiver<Frame>,
    bus: Weak<Mutex<Consumers>>,
}

impl FrameReceiver {
    /// The queue itself, to wait on several receivers at once with a `crossbeam_channel::Select`.
    pub fn receiver(&self) -> &Receiver<Frame> {
        &self.rx
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<Frame, RecvTimeoutError> {
        let frame = self.rx.recv_timeout(timeout)?;
        self.settle();
        Ok(frame)
    }

    pub fn try_recv(&self) -> Result<Frame, TryRecvError> {
        let frame = self.rx.try_recv()?;
        self.settle();
        Ok(frame)
    }

    /// Frames waiting in the queue.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// The consumer's name, from its spec.
    pub fn name(&self) -> &str {
        &self.queue.name
    }

    fn settle(&self) {
        let mut s = lock(&self.queue.state);
        self.queue.settle(&mut s);
    }
}

impl std::fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReceiver")
            .field("name", &self.queue.name)
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl Drop for FrameReceiver {
    fn drop(&mut self) {
        // Out of the list first, so that no later frame is admitted for it.
        if let Some(consumers) = self.bus.upgrade() {
            lock(&consumers).entries.retain(|e| e.id != self.id);
        }
        self.queue.close();
        tracing::debug!(consumer = %self.queue.name, "frame consumer gone");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const MS: u64 = 1_000_000;
    /// Failure guard only: no test expects to wait this long.
    const GUARD: Duration = Duration::from_secs(10);

    fn frame(seq: u64, image: &Arc<image::RgbImage>) -> Frame {
        Frame {
            camera: Arc::from("cam"),
            seq,
            pts_ms: seq as i64 * 40,
            image: image.clone(),
            captured: Instant::now(),
        }
    }

    /// Publishes frames `seqs` (25 fps timestamps) as the streaming thread does.
    fn publish(bus: &FrameBus, seqs: std::ops::Range<u64>, paced: bool, cancel: &CancellationToken) {
        let image = Arc::new(image::RgbImage::new(2, 2));
        for seq in seqs {
            let admitted = bus.admit(seq * 40 * MS);
            if !admitted.is_empty() {
                bus.deliver(admitted, frame(seq, &image), paced, cancel)
                    .expect("not cancelled");
            }
        }
    }

    fn seqs(rx: &FrameReceiver) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok()).map(|f| f.seq).collect()
    }

    fn spec(name: &str, capacity: usize, policy: QueuePolicy, fps: f32) -> ConsumerSpec {
        ConsumerSpec::new(name, capacity, policy, fps)
    }

    #[test]
    fn drop_oldest_keeps_the_freshest_and_counts() {
        let bus = FrameBus::new("cam");
        let s = spec("late", 2, QueuePolicy::DropOldest, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        publish(&bus, 0..5, false, &CancellationToken::new());
        assert_eq!(bus.queue_depth("late"), Some(2));
        assert_eq!(counters.dropped.get(), 3);
        assert_eq!(seqs(&rx), [3, 4]);
        assert_eq!(counters.delivered.get(), 2);
    }

    #[test]
    fn block_on_a_paced_source_drops_the_oldest_instead_of_waiting() {
        let bus = FrameBus::new("cam");
        let s = spec("recognition", 1, QueuePolicy::Block, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        // Nobody reads: a waiting send would never return.
        publish(&bus, 0..4, true, &CancellationToken::new());
        assert_eq!(counters.dropped.get(), 3);
        assert_eq!(seqs(&rx), [3]);
    }

    #[test]
    fn block_on_a_replay_hands_on_every_frame_in_order() {
        let bus = FrameBus::new("cam");
        let s = spec("recognition", 1, QueuePolicy::Block, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || publish(&bus, 0..20, false, &CancellationToken::new()))
        };
        let mut got = Vec::new();
        while got.len() < 20 {
            let f = rx.recv_timeout(GUARD).expect("frame");
            got.push(f.seq);
            if f.seq.is_multiple_of(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        publisher.join().unwrap();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!((counters.delivered.get(), counters.dropped.get()), (20, 0));
    }

    #[test]
    fn each_consumer_has_its_rate_and_all_share_one_image() {
        let bus = FrameBus::new("cam");
        let ten = bus.subscribe(spec("ten", 100, QueuePolicy::DropOldest, 10.0));
        let all = bus.subscribe(spec("all", 100, QueuePolicy::Block, 0.0));
        publish(&bus, 0..25, false, &CancellationToken::new());
        let a: Vec<Frame> = std::iter::from_fn(|| ten.try_recv().ok()).collect();
        let b: Vec<Frame> = std::iter::from_fn(|| all.try_recv().ok()).collect();
        let pts: Vec<i64> = a.iter().map(|f| f.pts_ms).collect();
        assert_eq!(pts, [0, 120, 200, 320, 400, 520, 600, 720, 800, 920]);
        assert_eq!(b.len(), 25);
        assert!(
            Arc::ptr_eq(&a[1].image, &b[3].image),
            "the pixels are shared, not copied"
        );
    }

    #[test]
    fn nothing_is_admitted_between_two_due_frames() {
        let bus = FrameBus::new("cam");
        let _rx = bus.subscribe(spec("slow", 4, QueuePolicy::DropOldest, 5.0));
        assert!(!bus.admit(0).is_empty());
        // The frame is not even converted when no consumer wants it.
        assert!(bus.admit(40 * MS).is_empty());
        assert!(bus.admit(160 * MS).is_empty());
        assert!(!bus.admit(200 * MS).is_empty());
    }

    #[test]
    fn a_slow_consumer_does_not_hold_back_a_replay() {
        let bus = FrameBus::new("cam");
        let main = spec("recognition", 2, QueuePolicy::Block, 0.0);
        let slow = spec("recorder", 2, QueuePolicy::DropOldest, 0.0);
        let (main_c, slow_c) = (main.counters.clone(), slow.counters.clone());
        let main_rx = bus.subscribe(main);
        let slow_rx = bus.subscribe(slow);
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || publish(&bus, 0..30, false, &CancellationToken::new()))
        };
        // The recorder reads nothing until the replay has handed every frame to recognition.
        let got: Vec<u64> = (0..30)
            .map(|_| main_rx.recv_timeout(GUARD).expect("frame").seq)
            .collect();
        publisher.join().unwrap();
        assert_eq!(got, (0..30).collect::<Vec<_>>());
        assert_eq!(seqs(&slow_rx), [28, 29]);
        drop(slow_rx);
        assert_eq!((slow_c.delivered.get(), slow_c.dropped.get()), (2, 28));
        assert_eq!((main_c.delivered.get(), main_c.dropped.get()), (30, 0));
    }

    #[test]
    fn a_dropped_receiver_is_removed_and_its_frames_counted_dropped() {
        let bus = FrameBus::new("cam");
        assert!(!bus.is_abandoned(), "no consumer yet is not abandoned");
        let s = spec("gone", 4, QueuePolicy::DropOldest, 0.0);
        let counters = s.counters.clone();
        let keep = bus.subscribe(spec("stays", 4, QueuePolicy::DropOldest, 0.0));
        let rx = bus.subscribe(s);
        publish(&bus, 0..3, false, &CancellationToken::new());
        assert_eq!(rx.try_recv().map(|f| f.seq), Ok(0));
        drop(rx);
        assert_eq!(bus.queue_depth("gone"), None);
        assert_eq!(bus.consumer_count(), 1);
        assert_eq!((counters.delivered.get(), counters.dropped.get()), (1, 2));
        publish(&bus, 3..5, false, &CancellationToken::new());
        assert_eq!(
            counters.dropped.get(),
            2,
            "nothing is admitted for a consumer that has gone"
        );
        assert!(!bus.is_abandoned());
        drop(keep);
        assert!(bus.is_abandoned());
    }

    #[test]
    fn a_waiting_replay_stops_waiting_for_a_consumer_that_goes() {
        let bus = FrameBus::new("cam");
        let s = spec("recognition", 1, QueuePolicy::Block, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        let cancel = CancellationToken::new();
        publish(&bus, 0..1, false, &cancel);
        let admitted = bus.admit(40 * MS);
        let waiting = {
            let (bus, cancel) = (bus.clone(), cancel.clone());
            let f = frame(1, &Arc::new(image::RgbImage::new(1, 1)));
            std::thread::spawn(move || bus.deliver(admitted, f, false, &cancel))
        };
        // Whether the drop comes before or during the wait, the publisher returns.
        drop(rx);
        assert_eq!(waiting.join().unwrap(), Ok(()));
        assert!(bus.is_abandoned());
        assert_eq!((counters.delivered.get(), counters.dropped.get()), (0, 2));
    }

    #[test]
    fn block_gives_up_on_cancellation() {
        let bus = FrameBus::new("cam");
        let s = spec("recognition", 1, QueuePolicy::Block, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        let cancel = CancellationToken::new();
        publish(&bus, 0..1, false, &cancel);
        let waiting = {
            let (bus, cancel) = (bus.clone(), cancel.clone());
            std::thread::spawn(move || {
                let admitted = bus.admit(40 * MS);
                bus.deliver(
                    admitted,
                    frame(1, &Arc::new(image::RgbImage::new(1, 1))),
                    false,
                    &cancel,
                )
            })
        };
        cancel.cancel();
        assert_eq!(waiting.join().unwrap(), Err(Cancelled));
        assert_eq!(counters.dropped.get(), 1);
        assert_eq!(seqs(&rx), [0], "the queue still holds only the first frame");
    }

    #[test]
    fn closing_the_bus_ends_each_queue_after_its_frames() {
        let bus = FrameBus::new("cam");
        let rx = bus.subscribe(spec("c", 4, QueuePolicy::Block, 0.0));
        publish(&bus, 0..2, false, &CancellationToken::new());
        bus.close();
        assert_eq!(seqs(&rx), [0, 1]);
        assert_eq!(
            rx.recv_timeout(GUARD).map(|f| f.seq),
            Err(RecvTimeoutError::Disconnected)
        );
        let late = bus.subscribe(spec("late", 4, QueuePolicy::Block, 0.0));
        assert_eq!(late.try_recv().map(|f| f.seq), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn frames_taken_straight_from_the_channel_are_counted_too() {
        let bus = FrameBus::new("cam");
        let s = spec("select", 8, QueuePolicy::DropOldest, 0.0);
        let counters = s.counters.clone();
        let rx = bus.subscribe(s);
        publish(&bus, 0..3, false, &CancellationToken::new());
        let mut sel = crossbeam_channel::Select::new();
        sel.recv(rx.receiver());
        let op = sel.select_timeout(GUARD).expect("ready");
        assert_eq!(op.recv(rx.receiver()).map(|f| f.seq), Ok(0));
        // Settled at the next frame the bus hands on.
        publish(&bus, 3..4, false, &CancellationToken::new());
        assert_eq!(counters.delivered.get(), 1);
        assert_eq!(rx.len(), 3);
        drop(rx);
        assert_eq!((counters.delivered.get(), counters.dropped.get()), (1, 3));
    }
}
