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
//! So a loss reaches Cubic only when losses look like an overflowing queue: while the queue is
//! building (the smoothed round trip is a quarter above the path's minimum, and at least
//! [`QUEUE_DELAY_FLOOR`] above it), once the last [`QUEUE_LOSS_ROUNDS`] round trips lost more than
//! [`QUEUE_LOSS_PERMILLE`] of what they carried; whatever the delay, once the last two (or as
//! many more as it takes to carry [`HEAVY_LOSS_MIN_BYTES`]) lost more than [`HEAVY_LOSS_PERCENT`];
//! and always on persistent congestion and ECN marks. A packet lost at random on an idle path shows
//! none of these.
//!
//! Why not every loss while the queue builds: a TCP flow sharing the bottleneck keeps its queue
//! standing, so the queue always looks built, and the TCP flow, bursty, takes its losses a round
//! trip's worth at a time while a paced flow takes them one by one, each a cut of its own. Taking
//! every such loss for congestion, a wharf download got 1–2 % of a 50 ms, 200 Mbit/s link against
//! one sftp download (which keeps 2 MiB in flight whatever it loses).
//!
//! After a cut, only what follows it is judged: the record of round trips starts afresh, a loss
//! counts again only once enough round trips have passed to judge it ([`QUEUE_LOSS_ROUNDS`], or two
//! for heavy loss), and losses of packets sent before the cut are the episode that cut answered
//! (as in Cubic's own recovery). Without this, the losses behind one cut went on counting for four
//! round trips, and a download that lost the race early was cut again and again: in seven runs of
//! the shared-bottleneck row (`WHARF_BENCH_ONLY_SHARED=1 WHARF_BENCH_PROFILES=wan`) wharf got
//! 3–10 % of the link every time; with it, 5 runs of 10 shared about evenly (48–56 % against
//! sftp's 41–47 %), the other 5 still got 9–13 %. (Before this change, a download alone lost under
//! 1.5 % of its packets at the queue; not measured again since.)
//!
//! A small window is judged over at least [`QUEUE_LOSS_MIN_BYTES`], not four round trips of a few
//! hundred packets, where one burst of losses reads as an overflowing queue (see
//! [`Tolerant::losses_over`]); heavy loss likewise over at least [`HEAVY_LOSS_MIN_BYTES`], not
//! the few hundred bytes a nearly idle connection carries.

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
/// Share, in thousandths, of the latest round trips' packets lost above which a loss counts while
/// the queue builds.
pub const QUEUE_LOSS_PERMILLE: u64 = 30;
/// The fewest round trips over which [`QUEUE_LOSS_PERMILLE`] is judged.
pub const QUEUE_LOSS_ROUNDS: usize = 4;
/// The fewest bytes over which [`QUEUE_LOSS_PERMILLE`] is judged (about 1,700 full packets): a
/// small window carries too few packets in [`QUEUE_LOSS_ROUNDS`] round trips for a share of them
/// to say anything, so it is judged over more round trips, up to [`RECORDED_ROUNDS`].
pub const QUEUE_LOSS_MIN_BYTES: u64 = 2 * 1024 * 1024;
/// The most round trips the record keeps.
pub const RECORDED_ROUNDS: usize = 16;

/// Builds [`Tolerant`] controllers.
#[derive(Debug, Default)]
pub struct TolerantConfig {
    cubic: Arc<CubicConfig>,
}

impl ControllerFactory for TolerantConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Tolerant {
            cubic: self.cubic.clone().build(now, current_mtu),
            smoothed: Duration::ZERO,
            min: Duration::ZERO,
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
    min: Duration,
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
    ///
    /// Why a floor in bytes for the queue rule: a paced flow with a small window behind a TCP
    /// flow's standing queue loses about 3 % of its packets there, in bursts. Over four round trips
    /// of a few hundred packets, a burst passed 3 % every second or two (traced: 3.1–3.9 %), and
    /// each pass cut a window that was already small. In the runs of the shared-bottleneck row
    /// where wharf lost the start, it fell to 7–13 % of the link that way; with the floor, to
    /// 11–27 % (19–25 % in runs alternated with the old rule). For heavy loss, see
    /// [`HEAVY_LOSS_MIN_BYTES`].
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

    fn queue_overflowing(&self, now: Instant) -> bool {
        self.judged_since_cut(now, QUEUE_LOSS_ROUNDS as u32)
            && self.queue_building()
            && self.losses_over(QUEUE_LOSS_ROUNDS, QUEUE_LOSS_MIN_BYTES, QUEUE_LOSS_PERMILLE)
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
        self.min = rtt.min();
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
            || self.queue_overflowing(now)
            || self.heavy_loss(now);
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
    fn losses_past_the_queue_threshold_while_the_queue_builds_cut_the_window() {
        // 75 of 2,075 packets (3.6 %) lost while the queue adds 30 ms: it is overflowing.
        let (c, before, _) = after_losses_behind_a_queue(500, 75);
        assert!(c.window() < before, "the queue adds 30 ms and 3.6 % were lost: congestion");
    }

    #[test]
    fn a_few_losses_at_a_queue_another_flow_holds_leave_the_window_alone() {
        // 20 of 2,020 packets (1 %): a TCP flow's standing queue, not this flow overflowing it.
        let (c, before, _) = after_losses_behind_a_queue(500, 20);
        assert_eq!(c.window(), before, "1 % lost behind a standing queue: not yet congestion");
    }

    #[test]
    fn a_small_window_is_judged_over_enough_packets() {
        // 15 of 415 packets (3.6 %) in four round trips of a small window: too few to judge.
        let (mut c, before, reported) = after_losses_behind_a_queue(100, 15);
        assert_eq!(c.window(), before, "four round trips of 100 packets are too few to judge");
        // Still 3.6 % once the record is full: now it is the queue overflowing.
        carry_rounds(&mut c, reported, RECORDED_ROUNDS as u32 - 4, 100);
        let later = reported + SMOOTHED * (RECORDED_ROUNDS as u32 - 4);
        c.on_congestion_event(later, later - MIN, false, 44 * 1200);
        assert!(c.window() < before, "a full record over 3 %: congestion");
    }

    /// A controller that has just cut its window for 75 of 2,075 packets lost behind the queue,
    /// and when it cut.
    fn just_cut() -> (Tolerant, Instant) {
        let (c, before, cut) = after_losses_behind_a_queue(500, 75);
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
    fn after_a_cut_only_the_round_trips_that_followed_it_are_judged() {
        let (mut c, cut) = just_cut();
        let after_cut = c.window();
        // One round trip later, 5 % of what followed the cut is lost: too soon to judge.
        carry_rounds(&mut c, cut, 1, 500);
        c.on_congestion_event(cut + SMOOTHED, cut + SMOOTHED / 2, false, 25 * 1200);
        assert_eq!(c.window(), after_cut, "one round trip after a cut is too soon to judge");
        // Four round trips later, still over 3 %: the queue is overflowing again.
        carry_rounds(&mut c, cut + SMOOTHED, 4, 500);
        c.on_congestion_event(cut + SMOOTHED * 5, cut + SMOOTHED * 4, false, 75 * 1200);
        assert!(c.window() < after_cut, "four round trips over 3 % after a cut: congestion");
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
