//! Vivaldi network coordinates, as Serf computes them (`serf/coordinate`): each member holds a
//! point in an 8-dimensional Euclidean space plus a non-negative "height" (the access-link
//! latency that no direction explains), an error estimate, and an adjustment term averaged
//! over a window of recent observations. Every measured round-trip time pulls or pushes the
//! local point along the line to the peer's point, weighted by how sure each side is; a weak
//! "gravity" toward the origin stops the whole system drifting away.
//!
//! Written from the published algorithm (Dabek et al., "Vivaldi", SIGCOMM 2004) and Serf's
//! documented defaults, not from Serf's code.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Dimensions of the Euclidean part (Serf: 8).
pub const DIMENSIONS: usize = 8;
/// Largest error estimate (Serf `VivaldiErrorMax`).
const ERROR_MAX: f64 = 1.5;
/// Error-update tuning (Serf `VivaldiCE`).
const CE: f64 = 0.25;
/// Position-update tuning (Serf `VivaldiCC`).
const CC: f64 = 0.25;
/// Samples averaged for the adjustment term (Serf `AdjustmentWindowSize`).
const ADJUSTMENT_WINDOW: usize = 20;
/// Smallest height, in seconds (Serf `HeightMin`: 10 µs).
const HEIGHT_MIN: f64 = 10.0e-6;
/// RTT samples per peer whose median is used (Serf `LatencyFilterSize`).
const LATENCY_FILTER: usize = 3;
/// Gravity radius, in seconds (Serf `GravityRho`).
const GRAVITY_RHO: f64 = 150.0;
/// Below this, a vector has no direction.
const ZERO: f64 = 1.0e-6;
/// Peers whose latency samples are kept (a bound: the filter is per peer).
const MAX_FILTERED_PEERS: usize = 4096;

/// A network coordinate; units are seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coordinate {
    /// Euclidean part.
    pub vec: [f64; DIMENSIONS],
    /// Confidence in this coordinate (lower is better).
    pub error: f64,
    /// Offset that corrects systematic error, averaged over recent samples.
    pub adjustment: f64,
    /// Non-Euclidean part: the latency of the node's own access link.
    pub height: f64,
}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate {
            vec: [0.0; DIMENSIONS],
            error: ERROR_MAX,
            adjustment: 0.0,
            height: HEIGHT_MIN,
        }
    }
}

impl Coordinate {
    fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Distance without the adjustment terms, in seconds.
    fn raw_distance(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Estimated round-trip time to `other` (Serf `DistanceTo`).
    pub fn distance(&self, other: &Coordinate) -> Duration {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { raw };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }

    /// Moves this coordinate by `force` seconds along the unit vector from `other` to it.
    fn apply_force(&mut self, force: f64, other: &Coordinate, nudge: [f64; DIMENSIONS]) {
        let (unit, mag) = unit_vector(&diff(&self.vec, &other.vec), nudge);
        for (v, u) in self.vec.iter_mut().zip(unit) {
            *v += u * force;
        }
        if mag > ZERO {
            self.height =
                ((self.height + other.height) * force / mag + self.height).max(HEIGHT_MIN);
        }
    }
}

/// `a - b`.
fn diff(a: &[f64; DIMENSIONS], b: &[f64; DIMENSIONS]) -> [f64; DIMENSIONS] {
    let mut out = [0.0; DIMENSIONS];
    for i in 0..DIMENSIONS {
        out[i] = a[i] - b[i];
    }
    out
}

fn magnitude(v: &[f64; DIMENSIONS]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector of `v` and its length; when two points coincide, a (caller-supplied)
/// random direction, so that they push each other apart.
fn unit_vector(v: &[f64; DIMENSIONS], nudge: [f64; DIMENSIONS]) -> ([f64; DIMENSIONS], f64) {
    let mag = magnitude(v);
    if mag > ZERO {
        let mut out = *v;
        out.iter_mut().for_each(|x| *x /= mag);
        return (out, mag);
    }
    let n = magnitude(&nudge);
    if n > ZERO {
        let mut out = nudge;
        out.iter_mut().for_each(|x| *x /= n);
        return (out, 0.0);
    }
    let mut out = [0.0; DIMENSIONS];
    out[0] = 1.0;
    (out, 0.0)
}

/// The local node's coordinate and what updating it needs (Serf `coordinate.Client`).
#[derive(Debug, Default)]
pub struct Client {
    coord: Coordinate,
    adjustments: VecDeque<f64>,
    latency: HashMap<String, VecDeque<f64>>,
}

impl Client {
    /// The current local coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        &self.coord
    }

    /// Folds in one RTT measured to `peer`, whose coordinate is `other`. Nonsense input (an
    /// invalid peer coordinate, a zero or huge RTT) is ignored; a local coordinate that went
    /// invalid is reset, as Serf does.
    pub fn update(
        &mut self,
        peer: &str,
        other: &Coordinate,
        rtt: Duration,
        nudge: [f64; DIMENSIONS],
    ) {
        let rtt = rtt.as_secs_f64();
        if !other.is_valid() || rtt <= 0.0 || rtt > 10.0 {
            return;
        }
        let rtt = self.filtered(peer, rtt);
        let dist = self.coord.raw_distance(other);
        // Vivaldi: weight by relative confidence, then move by a fraction of the error.
        let total = (self.coord.error + other.error).max(ZERO);
        let weight = self.coord.error / total;
        let wrongness = (dist - rtt).abs() / rtt;
        self.coord.error =
            (CE * weight * wrongness + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        self.coord.apply_force(force, other, nudge);
        // Adjustment: half the mean of recent (rtt - distance) residuals.
        self.adjustments
            .push_back(rtt - self.coord.raw_distance(other));
        if self.adjustments.len() > ADJUSTMENT_WINDOW {
            self.adjustments.pop_front();
        }
        self.coord.adjustment =
            self.adjustments.iter().sum::<f64>() / (2.0 * ADJUSTMENT_WINDOW as f64);
        // Gravity toward the origin, growing with the square of the distance from it.
        let origin = Coordinate::default();
        let pull = -(magnitude(&self.coord.vec) / GRAVITY_RHO).powi(2);
        self.coord.apply_force(pull, &origin, nudge);
        if !self.coord.is_valid() {
            *self = Client::default();
        }
    }

    /// The median of the last few samples for `peer` (one lost-and-retried probe must not
    /// yank the coordinate).
    fn filtered(&mut self, peer: &str, rtt: f64) -> f64 {
        if self.latency.len() >= MAX_FILTERED_PEERS && !self.latency.contains_key(peer) {
            self.latency.clear();
        }
        let samples = self.latency.entry(peer.to_string()).or_default();
        samples.push_back(rtt);
        if samples.len() > LATENCY_FILTER {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    /// Forgets a peer's latency samples (it left or was reaped).
    pub fn forget(&mut self, peer: &str) {
        self.latency.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_measured_rtts() {
        // Three nodes on a line: a-b 10 ms, b-c 10 ms, a-c 20 ms.
        let rtt = |i: usize, j: usize| Duration::from_millis(10 * (i.abs_diff(j) as u64));
        let mut clients: Vec<Client> = (0..3).map(|_| Client::default()).collect();
        let names = ["a", "b", "c"];
        for round in 0..2000 {
            let i = round % 3;
            let j = (round / 3 + 1 + i) % 3;
            if i == j {
                continue;
            }
            let other = clients[j].coordinate().clone();
            let nudge = [((round * 7919) % 13) as f64 - 6.0; DIMENSIONS];
            clients[i].update(names[j], &other, rtt(i, j), nudge);
        }
        let d = clients[0].coordinate().distance(clients[2].coordinate());
        let ms = d.as_secs_f64() * 1000.0;
        assert!(
            (15.0..25.0).contains(&ms),
            "a-c estimated {ms} ms, real 20 ms"
        );
    }

    #[test]
    fn nonsense_is_ignored() {
        let mut c = Client::default();
        let mut bad = Coordinate::default();
        bad.vec[0] = f64::NAN;
        c.update("x", &bad, Duration::from_millis(5), [0.0; DIMENSIONS]);
        c.update(
            "x",
            &Coordinate::default(),
            Duration::ZERO,
            [0.0; DIMENSIONS],
        );
        assert_eq!(c.coordinate(), &Coordinate::default());
    }
}
