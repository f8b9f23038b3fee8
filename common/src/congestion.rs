//! A congestion controller for paths that lose packets at random: Cubic, told of a loss only when
//! the loss looks like congestion.
//!
//! Loss-based controllers cut their window at every loss, so a path that drops 0.5 % of its packets
//! at random holds them to a fraction of its rate (quinn's Cubic moved 1.2 MiB/s at 0.1 % loss over
//! 50 ms and 200 Mbit/s). quinn's BBR ignores loss, but it sets only a window (twice the
//! bandwidth-delay product) and quinn paces by the window, not by BBR's bandwidth estimate: across the
//! emulated WAN it kept the bottleneck's queue overflowing (more packets dropped than delivered) and
//! took 97 % of the link from an sftp download sharing it.
//!
//! So a loss reaches Cubic when it comes while a queue is building (the smoothed round trip is a
//! quarter above the path's minimum, and at least [`QUEUE_DELAY_FLOOR`] above it), where a
//! drop-tail queue drops; whatever the delay, once the last two round trips (or as many more as it
//! takes to carry [`HEAVY_LOSS_MIN_BYTES`]) lost more than [`HEAVY_LOSS_PERCENT`], for a queue too
//! shallow to show in the delay; and always on persistent congestion and ECN marks. A packet lost
//! at random on a path with no queue shows none of these. Losses of packets sent before a cut are
//! the episode that cut answered (as in Cubic's own recovery), so one overflow cuts once.
//!
//! Why every loss while the queue builds, and not only a share of them: a loss-based TCP flow
//! (Linux's default, Cubic) sharing the bottleneck backs off at every overflow, and a flow that
//! lets any share of losses pass keeps the queue overflowing at that share, which holds the TCP
//! flow to next to nothing. An earlier rule (a loss counted while the queue built only once the
//! last four round trips lost more than 3 %) took 91–93 % of a 50 ms, 200 Mbit/s link from an
//! sftp download over Cubic, leaving it 3–5 % (`WHARF_BENCH_ONLY_SHARED=1`). That rule had been
//! tuned against an sftp over BBR, which sends through its losses and keeps its queue standing:
//! against BBR, a flow that backs off at every overflow falls behind, Linux's Cubic as much as
//! wharf (the benchmark's reference row: sftp over Cubic got 8–10 % of that link against sftp over
//! BBR).
//!
//! But a queue that fills from empty within a few round trips and overflows is another flow's
//! burst, not a standing queue, and its losses do not count (heavy or not) unless the queue has
//! stood for [`STANDING_ROUNDS`] of the path's shortest round trips. That is what a TCP flow over
//! BBR does here: across 50 ms and 200 Mbit/s with a queue of one bandwidth-delay product, it
//! filled the queue and overflowed every 200-250 ms, and the queue drained to empty between. Cut at
//! each of those, Cubic's window fell by 30 % every few round trips, to 84 KB in 8 s, and wharf
//! kept 8 % of the link against the sftp download's 73 %. Against a TCP flow over Cubic (and
//! alone) the queue never empties between overflows, seconds apart, so those losses still count.
//! The slow start's first overflow always counts.
//!
//! A connection that has carried little (a login and a listing) judges heavy loss over at least
//! [`HEAVY_LOSS_MIN_BYTES`], not the few hundred bytes it carried.
//!
//! The path's shortest round trip is measured here, not taken from quinn (see
//! [`Tolerant::on_end_acks`]): quinn's could fall far below the path's, which made the rules above
//! read every loss as congestion, or none.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics, CubicConfig};
use quinn_proto::RttEstimator;

/// Queueing delay below which a loss is never taken for congestion, however short the path.
pub const QUEUE_DELAY_FLOOR: Duration = Duration::from_millis(2);
/// Share of the last two round trips' packets lost (or of as many more as it takes to carry
/// [`HEAVY_LOSS_MIN_BYTES`]) above which losses count whatever the delay: a queue too
/// shallow to show in the round-trip time still shows in the losses.
pub const HEAVY_LOSS_PERCENT: u64 = 8;
/// The fewest bytes over which [`HEAVY_LOSS_PERCENT`] is judged (about 90 full packets, of which
/// 8 % is 8; at 1 % random loss, 8 of 90 are lost about once in 500,000 judgements).
///
/// Without it, a connection that had been nearly idle (a login and a listing: a few hundred bytes
/// a round trip) judged its first loss against what those round trips carried: one lost reply of
/// 304 bytes was 11 % of them. Across 150 ms and 1 % loss, two such cuts at the start of a batch
/// of small downloads left a window of 20 KB, about 5 files a round trip, from which Cubic took
/// seconds to grow back: 1,000 small gets took 11 s in 3 of 8 runs, against about 4 s.
pub const HEAVY_LOSS_MIN_BYTES: u64 = 128 * 1024;
/// How many of the path's shortest round trips a queue must have stood, not seen empty, for a
/// loss behind it to count once slow start is over. A competitor's burst filled the queue from
/// empty and overflowed within two to three of them (see the module's documentation); 8 gave the
/// same shares as 4 against it, two runs each (with heavy loss in a burst still counted then).
pub const STANDING_ROUNDS: u32 = 4;
/// A round trip within this share of the path's shortest (or [`QUEUE_DELAY_FLOOR`]) saw the
/// queue empty, in eighths: on 50 ms, within 6.25 ms. After a TCP flow over Cubic cut its window
/// the round trip stayed 12-15 ms over the path's.
pub const EMPTY_QUEUE_EIGHTHS: u32 = 1;
/// The most round trips the record keeps.
pub const RECORDED_ROUNDS: usize = 16;
/// The window a connection starts with: 32 packets of QUIC's smallest size, as Chromium's QUIC
/// starts, where RFC 9002 suggests 10 (quinn's default, 14,720 bytes). Most of what wharf sends
/// on a fresh connection is small (a listing, a few files, a file of a few MiB), so the first
/// round trips of slow start are much of its time. Across an emulated 50 ms path, seven
/// alternations each: a one-shot get of a 1 MiB file took 0.48-0.52 s with 10 packets and
/// 0.40-0.42 s with 32; of 20 files of 4 KiB, 0.32-0.34 s and 0.26-0.29 s; a put of 1,000 of
/// them, 0.77-0.97 s and 0.70-0.82 s. Across 150 ms with 1 % loss, four each: 1.44-1.71 s and
/// 1.21-1.32 s, 0.90-1.02 s and 0.73-0.95 s, 2.50-2.66 s and 1.97-2.07 s. A longer transfer's
/// rate does not depend on it.
pub const INITIAL_WINDOW: u64 = 32 * 1200;

/// Builds [`Tolerant`] controllers.
#[derive(Debug)]
pub struct TolerantConfig {
    cubic: Arc<CubicConfig>,
}

impl Default for TolerantConfig {
    fn default() -> Self {
        let mut cubic = CubicConfig::default();
        cubic.initial_window(INITIAL_WINDOW);
        TolerantConfig { cubic: Arc::new(cubic) }
    }
}

impl ControllerFactory for TolerantConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Tolerant {
            cubic: self.cubic.clone().build(now, current_mtu),
            smoothed: Duration::ZERO,
            min: Duration::ZERO,
            newest_acked: None,
            queue_empty_at: None,
            rounds: VecDeque::with_capacity(RECORDED_ROUNDS),
            last_cut: None,
        })
    }
}

/// Bytes acknowledged and lost in one round trip.
#[derive(Debug, Clone, Copy)]
struct Round {
    started: Instant,
    acked: u64,
    lost: u64,
}

/// Cubic, with random losses kept from it.
pub struct Tolerant {
    cubic: Box<dyn Controller>,
    smoothed: Duration,
    /// The path's shortest round trip, as measured in [`Tolerant::on_end_acks`].
    min: Duration,
    /// When the newest packet acknowledged by the ACK being handled was sent.
    newest_acked: Option<Instant>,
    /// When a round trip last came back as short as an empty queue allows.
    queue_empty_at: Option<Instant>,
    /// The last [`RECORDED_ROUNDS`] round trips since the last cut, the current one first.
    rounds: VecDeque<Round>,
    /// When a loss last reached Cubic.
    last_cut: Option<Instant>,
}

/// Whether `lost` bytes are more than `permille` thousandths of the `carried` (acknowledged and lost).
fn lost_more_than(lost: u64, carried: u64, permille: u64) -> bool {
    lost * 1000 > carried * permille
}

impl Tolerant {
    /// Counts acknowledged and lost bytes into the current round trip, starting a new one when a
    /// round trip has passed.
    fn count(&mut self, now: Instant, acked: u64, lost: u64) {
        let length = self.smoothed.max(Duration::from_millis(1));
        let current = self.rounds.front().map(|round| round.started);
        if current.is_none_or(|started| now.saturating_duration_since(started) > length) {
            self.rounds.truncate(RECORDED_ROUNDS - 1);
            self.rounds.push_front(Round { started: now, acked: 0, lost: 0 });
        }
        if let Some(round) = self.rounds.front_mut() {
            round.acked += acked;
            round.lost += lost;
        }
    }

    /// Whether the latest round trips lost more than `permille` of what they carried: at least
    /// `rounds` of them, and as many more as it takes to carry `min_bytes`. Until they have, only
    /// a full record is judged.
    fn losses_over(&self, rounds: usize, min_bytes: u64, permille: u64) -> bool {
        let (mut lost, mut carried) = (0, 0);
        for (judged, round) in self.rounds.iter().enumerate() {
            lost += round.lost;
            carried += round.acked + round.lost;
            if judged + 1 >= rounds && carried >= min_bytes {
                return lost_more_than(lost, carried, permille);
            }
        }
        self.rounds.len() == RECORDED_ROUNDS && lost_more_than(lost, carried, permille)
    }

    fn queue_building(&self) -> bool {
        let allowance = (self.min / 4).max(QUEUE_DELAY_FLOOR);
        !self.min.is_zero() && self.smoothed > self.min + allowance
    }

    /// Whether a round trip of `sample` saw the queue empty.
    fn queue_empty(&self, sample: Duration) -> bool {
        sample <= self.min + (self.min * EMPTY_QUEUE_EIGHTHS / 8).max(QUEUE_DELAY_FLOOR)
    }

    /// Whether the queue building now filled from empty within the last [`STANDING_ROUNDS`] of
    /// the path's round trips: another flow's burst. Never in slow start, whose overflow is ours.
    fn competitors_burst(&self, now: Instant) -> bool {
        self.last_cut.is_some()
            && self.queue_building()
            && self.queue_empty_at.is_some_and(|empty| {
                now.saturating_duration_since(empty) <= self.min * STANDING_ROUNDS
            })
    }

    /// Whether `rounds` round trips have passed since the last cut: the losses are judged on what
    /// followed the cut alone, or the losses that caused it would cut the window again each round
    /// trip until they aged out of the record.
    fn judged_since_cut(&self, now: Instant, rounds: u32) -> bool {
        self.last_cut.is_none_or(|cut| now.saturating_duration_since(cut) >= self.smoothed * rounds)
    }

    /// Over the last two round trips, or the one there is while the record holds only one.
    fn heavy_loss(&self, now: Instant) -> bool {
        self.judged_since_cut(now, 2)
            && self.losses_over(
                self.rounds.len().clamp(1, 2),
                HEAVY_LOSS_MIN_BYTES,
                HEAVY_LOSS_PERCENT * 10,
            )
    }
}

impl Controller for Tolerant {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.cubic.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.smoothed = rtt.get();
        self.newest_acked = self.newest_acked.max(Some(sent));
        self.count(now, bytes, 0);
        self.cubic.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        // The round trip is measured against the clock as the ACK is handled, not against `now`:
        // quinn stamps a datagram with the time its endpoint began a round of reads, and with two
        // busy cores that stamp was seen 160 ms before the ACK was handled, and before some of
        // the packets it acknowledged were sent. quinn's minimum then fell to 15, 31 and even 0 ms
        // on a 50 ms path, for the rest of the connection: too low, every random loss looked like
        // a queue; at zero, none did. A sample taken late is only too long, which a minimum
        // discards.
        if let Some(sent) = self.newest_acked.take() {
            let sample = Instant::now().saturating_duration_since(sent);
            if self.min.is_zero() || sample < self.min {
                self.min = sample;
            }
            if self.queue_empty(sample) {
                self.queue_empty_at = Some(now);
            }
        }
        self.cubic.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        // A packet sent before the last cut belongs to the episode that cut answered (as in
        // Cubic's own recovery): counting it too would make the round trips after a cut look
        // lossier than they are.
        if !is_persistent_congestion && self.last_cut.is_some_and(|cut| sent <= cut) {
            return;
        }
        self.count(now, 0, lost_bytes);
        // An ECN mark (no bytes lost) is congestion by definition.
        let congestion = is_persistent_congestion
            || lost_bytes == 0
            || (!self.competitors_burst(now) && (self.queue_building() || self.heavy_loss(now)));
        if congestion {
            self.cubic.on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
            self.rounds.clear();
            self.last_cut = Some(now);
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.cubic.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.cubic.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.cubic.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Tolerant {
            cubic: self.cubic.clone_box(),
            smoothed: self.smoothed,
            min: self.min,
            newest_acked: self.newest_acked,
            queue_empty_at: self.queue_empty_at,
            rounds: self.rounds.clone(),
            last_cut: self.last_cut,
        })
    }

    fn initial_window(&self) -> u64 {
        self.cubic.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> Tolerant {
        let built = Arc::new(TolerantConfig::default()).build(Instant::now(), 1200);
        let any = built.into_any();
        *any.downcast::<Tolerant>().expect("a Tolerant controller")
    }

    /// Acknowledges `packets` of 1200 bytes over `over`, with the given path delays.
    fn carry(c: &mut Tolerant, start: Instant, packets: u64, smoothed: Duration, min: Duration) {
        for n in 0..packets {
            c.smoothed = smoothed;
            c.min = min;
            c.count(start + smoothed * (n as u32) / (packets as u32), 1200, 0);
        }
    }

    #[test]
    fn a_random_loss_on_an_idle_path_leaves_the_window_alone() {
        let mut c = controller();
        let now = Instant::now();
        let rtt = Duration::from_millis(50);
        carry(&mut c, now, 400, rtt, rtt);
        let before = c.window();
        c.on_congestion_event(now + rtt, now, false, 1200);
        assert_eq!(c.window(), before, "one loss in 400 packets, no queue: not congestion");
    }

    /// The path of the queue tests: 50 ms, and a queue adding 30 ms.
    const MIN: Duration = Duration::from_millis(50);
    const SMOOTHED: Duration = Duration::from_millis(80);

    /// Acknowledges `packets` in each of `rounds` round trips from `start`, behind the queue.
    fn carry_rounds(c: &mut Tolerant, start: Instant, rounds: u32, packets: u64) {
        for round in 0..rounds {
            carry(c, start + SMOOTHED * round, packets, SMOOTHED, MIN);
        }
    }

    /// A controller that carried 4 round trips of `packets` behind the queue, then lost `lost`
    /// packets: it, its window before the loss, and when the loss was reported.
    fn after_losses_behind_a_queue(packets: u64, lost: u64) -> (Tolerant, u64, Instant) {
        let mut c = controller();
        let now = Instant::now();
        carry_rounds(&mut c, now, 4, packets);
        let before = c.window();
        let reported = now + SMOOTHED * 4;
        c.on_congestion_event(reported, reported - MIN, false, lost * 1200);
        (c, before, reported)
    }

    #[test]
    fn a_loss_while_the_queue_builds_cuts_the_window() {
        // 1 of 2,001 packets lost while the queue adds 30 ms: the queue overflowed.
        let (c, before, _) = after_losses_behind_a_queue(500, 1);
        assert!(c.window() < before, "a loss while the queue adds 30 ms: congestion");
    }

    #[test]
    fn a_queue_under_the_floor_is_no_queue() {
        // A 1 ms path whose round trip grew by 1.5 ms: a quarter over, but under the floor.
        let mut c = controller();
        let now = Instant::now();
        let (min, smoothed) = (Duration::from_millis(1), Duration::from_micros(2500));
        carry(&mut c, now, 400, smoothed, min);
        let before = c.window();
        c.on_congestion_event(now + smoothed, now, false, 1200);
        assert_eq!(c.window(), before, "1.5 ms over a 1 ms path is under the floor: random");
    }

    /// A controller that has just cut its window for a loss behind the queue, and when it cut.
    fn just_cut() -> (Tolerant, Instant) {
        let (c, before, cut) = after_losses_behind_a_queue(500, 1);
        assert!(c.window() < before, "the setup's loss cuts the window");
        (c, cut)
    }

    #[test]
    fn losses_of_packets_sent_before_a_cut_belong_to_the_episode_it_answered() {
        let (mut c, cut) = just_cut();
        let after_cut = c.window();
        c.on_congestion_event(cut + SMOOTHED * 5, cut - SMOOTHED / 2, false, 30 * 1200);
        assert_eq!(c.window(), after_cut, "packets sent before the cut must not cut again");
    }

    #[test]
    fn a_loss_after_a_cut_cuts_again_while_the_queue_builds() {
        let (mut c, cut) = just_cut();
        let after_cut = c.window();
        carry_rounds(&mut c, cut, 1, 500);
        c.on_congestion_event(cut + SMOOTHED, cut + SMOOTHED / 2, false, 1200);
        assert!(c.window() < after_cut, "a packet sent after the cut, lost behind the queue");
    }

    #[test]
    fn the_paths_minimum_is_taken_when_the_ack_is_handled_not_from_a_stale_stamp() {
        let mut c = controller();
        let sent = Instant::now() - Duration::from_millis(50);
        c.newest_acked = Some(sent);
        // The ACK stamped 1 ms after the packet left, by an endpoint that read it 49 ms later.
        c.on_end_acks(sent + Duration::from_millis(1), 0, false, None);
        assert!(c.min >= Duration::from_millis(50), "minimum {:?}", c.min);
    }

    /// A controller past slow start (its window cut once) behind a queue that was seen empty
    /// `since_empty` before the loss it then reports, of `lost` packets: whether it cut again.
    fn cuts_after_the_queue_was_empty(since_empty: Duration, lost: u64) -> bool {
        let (mut c, cut) = just_cut();
        let after_cut = c.window();
        carry_rounds(&mut c, cut, 2, 500);
        let reported = cut + SMOOTHED * 2;
        c.queue_empty_at = Some(reported - since_empty);
        c.on_congestion_event(reported, cut + SMOOTHED / 2, false, lost * 1200);
        c.window() < after_cut
    }

    #[test]
    fn a_queue_that_filled_from_empty_moments_ago_is_a_competitors_burst() {
        // Empty two round trips ago, now 30 ms deep and overflowing: a BBR flow's probe.
        assert!(!cuts_after_the_queue_was_empty(MIN * 2, 1), "one loss in a burst");
        assert!(!cuts_after_the_queue_was_empty(MIN * 2, 120), "heavy loss in a burst");
    }

    #[test]
    fn a_queue_that_stood_for_its_rounds_cuts_again() {
        let stood = MIN * STANDING_ROUNDS + Duration::from_millis(1);
        assert!(cuts_after_the_queue_was_empty(stood, 1));
        assert!(cuts_after_the_queue_was_empty(stood, 120));
    }

    #[test]
    fn slow_starts_own_overflow_counts_however_recently_the_queue_was_empty() {
        let mut c = controller();
        let now = Instant::now();
        carry_rounds(&mut c, now, 4, 500);
        let before = c.window();
        let reported = now + SMOOTHED * 4;
        c.queue_empty_at = Some(reported - MIN);
        c.on_congestion_event(reported, reported - MIN, false, 1200);
        assert!(c.window() < before);
    }

    #[test]
    fn heavy_loss_without_a_queue_cuts_however_recently_the_queue_was_empty() {
        // A policer drops without queueing: the round trip stays at the path's.
        let (mut c, cut) = just_cut();
        let after_cut = c.window();
        carry(&mut c, cut, 200, MIN, MIN);
        let reported = cut + MIN * 3;
        c.queue_empty_at = Some(reported);
        c.on_congestion_event(reported, cut + MIN, false, 20 * 1200);
        assert!(c.window() < after_cut);
    }

    #[test]
    fn heavy_loss_cuts_the_window_even_without_delay() {
        let mut c = controller();
        let now = Instant::now();
        let rtt = Duration::from_millis(50);
        carry(&mut c, now, 200, rtt, rtt);
        let before = c.window();
        // 20 of 220 packets lost in one round trip: a queue too shallow to show in the delay.
        c.on_congestion_event(now + rtt / 2, now, false, 20 * 1200);
        assert!(c.window() < before);
    }

    #[test]
    fn a_loss_after_a_nearly_idle_spell_is_judged_over_enough_packets() {
        let mut c = controller();
        let now = Instant::now();
        let rtt = Duration::from_millis(150);
        // A login and a listing: two round trips of a few hundred bytes each.
        for round in 0..2 {
            c.smoothed = rtt;
            c.min = rtt;
            c.count(now + rtt * round, 850, 0);
        }
        let before = c.window();
        // One lost reply: 15 % of what the two round trips carried.
        c.on_congestion_event(now + rtt * 2, now + rtt, false, 304);
        assert_eq!(c.window(), before, "one small loss after an idle spell: too few to judge");
    }

    #[test]
    fn an_ecn_mark_or_persistent_congestion_always_counts() {
        let now = Instant::now();
        let rtt = Duration::from_millis(50);
        for (persistent, lost) in [(false, 0), (true, 1200)] {
            let mut c = controller();
            carry(&mut c, now, 400, rtt, rtt);
            let before = c.window();
            c.on_congestion_event(now + rtt, now, persistent, lost);
            assert!(c.window() < before, "persistent {persistent}, lost {lost}");
        }
    }
}
