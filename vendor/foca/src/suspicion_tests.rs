// Concord patch: tests of Lifeguard's dynamic suspicion (`Config::suspicion`). foca reads
// no clock: time passes here as the timers the runtime was asked to schedule fire.

use alloc::vec::Vec;
use core::time::Duration;

use rand::{SeedableRng, rngs::SmallRng};

use crate::testing::{BadCodec, ID};
use crate::{
    AccumulatingRuntime, Config, DynamicSuspicion, Foca, Member, NoCustomBroadcast,
    OwnedNotification, State, Timer, suspicion_timeout,
};

const MIN: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(8);
const STEP: Duration = Duration::from_millis(250);

type TestFoca = Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>;

fn config() -> Config {
    let mut c = Config::simple();
    c.suspect_to_down_after = MAX;
    c.suspicion = Some(DynamicSuspicion {
        min: MIN,
        confirmations: 2,
        check_every: STEP,
        probers: 0,
    });
    c
}

/// Member `me` of a cluster of members 1 to 6, all alive.
fn member_of_six(me: u8) -> TestFoca {
    let mut foca = Foca::new(ID::new(me), config(), SmallRng::seed_from_u64(7), BadCodec);
    let others = (1..=6)
        .filter(|&i| i != me)
        .map(|i| Member::alive(ID::new(i)));
    foca.apply_many(others, true, AccumulatingRuntime::new())
        .expect("apply");
    foca
}

/// Takes the pending suspicion checks (delay, elapsed), dropping other timers.
fn checks(runtime: &mut AccumulatingRuntime<ID>) -> Vec<(Duration, Duration)> {
    let mut out = Vec::new();
    while let Some((after, timer)) = runtime.to_schedule() {
        if let Timer::SuspicionCheck { elapsed, .. } = timer {
            out.push((after, elapsed));
        }
    }
    out
}

fn went_down(runtime: &mut AccumulatingRuntime<ID>, id: ID) -> bool {
    let mut down = false;
    while let Some(n) = runtime.to_notify() {
        down |= n == OwnedNotification::MemberDown(id);
    }
    down
}

/// Fires suspicion checks of member `id` until none is left; returns the elapsed time at
/// which it was declared down, if it was.
fn run_checks(
    foca: &mut TestFoca,
    runtime: &mut AccumulatingRuntime<ID>,
    id: ID,
    mut pending: Vec<(Duration, Duration)>,
) -> Option<Duration> {
    while let Some((_, elapsed)) = pending.pop() {
        let timer = Timer::SuspicionCheck {
            member_id: id,
            incarnation: 0,
            elapsed,
            token: foca.timer_token(),
        };
        foca.handle_timer(timer, &mut *runtime).expect("timer");
        if went_down(runtime, id) {
            return Some(elapsed);
        }
        pending.extend(checks(runtime));
    }
    None
}

#[test]
fn timeout_follows_memberlist_formula() {
    // No confirmations: the maximum; all k: the minimum; in between logarithmic.
    assert_eq!(MAX, suspicion_timeout(0, 2, MIN, MAX));
    assert_eq!(MIN, suspicion_timeout(2, 2, MIN, MAX));
    assert_eq!(MIN, suspicion_timeout(5, 2, MIN, MAX));
    // 8 - ln 2 / ln 3 * 6 = 4.2144... s, floored to the millisecond.
    assert_eq!(
        Duration::from_millis(4214),
        suspicion_timeout(1, 2, MIN, MAX)
    );
    // k = 0 (too few members to wait for confirmations): the minimum at once.
    assert_eq!(MIN, suspicion_timeout(0, 0, MIN, MAX));
}

#[test]
fn unconfirmed_suspicion_lasts_the_maximum() {
    let mut foca = member_of_six(1);
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    let first = checks(&mut runtime);
    // The first check comes at the minimum: it can never fire sooner.
    assert_eq!(alloc::vec![(MIN, MIN)], first);
    // The accuser's own suspicion gossiped back to us is no confirmation.
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    assert_eq!(
        Some(MAX),
        run_checks(&mut foca, &mut runtime, ID::new(2), first)
    );
    assert!(!foca.iter_members().any(|m| m.id() == &ID::new(2)));
}

#[test]
fn one_confirmation_shortens_it_two_bring_the_minimum() {
    let mut foca = member_of_six(1);
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    let first = checks(&mut runtime);
    let before = foca.updates.len();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(4)),
        true,
        &mut runtime,
    )
    .expect("apply");
    // A new confirmation is gossiped on (it replaces the older suspicion update).
    assert_eq!(before, foca.updates.len());
    assert_eq!(
        Some(Duration::from_millis(4214)),
        run_checks(&mut foca, &mut runtime, ID::new(2), first)
    );

    let mut foca = member_of_six(1);
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    let first = checks(&mut runtime);
    for accuser in [4, 5] {
        foca.apply_update_accused(
            Member::suspect(ID::new(2)),
            Some(ID::new(accuser)),
            true,
            &mut runtime,
        )
        .expect("apply");
    }
    assert_eq!(
        Some(MIN),
        run_checks(&mut foca, &mut runtime, ID::new(2), first)
    );
}

#[test]
fn refuted_suspicion_stops_its_checks() {
    let mut foca = member_of_six(1);
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    let first = checks(&mut runtime);
    // The member refutes: alive at a higher incarnation.
    foca.apply_many(
        core::iter::once(Member::new(ID::new(2), 1, State::Alive)),
        true,
        &mut runtime,
    )
    .expect("apply");
    assert_eq!(None, run_checks(&mut foca, &mut runtime, ID::new(2), first));
    assert!(foca.suspicions.is_empty());
    assert!(foca.iter_members().any(|m| m.id() == &ID::new(2)));
}

#[test]
fn few_members_wait_for_no_confirmation() {
    // Two other members: fewer than k + 2 known, so the minimum applies at once.
    let mut foca = Foca::new(ID::new(1), config(), SmallRng::seed_from_u64(7), BadCodec);
    let mut runtime = AccumulatingRuntime::new();
    foca.apply_many(
        [Member::alive(ID::new(2)), Member::alive(ID::new(3))].into_iter(),
        true,
        &mut runtime,
    )
    .expect("apply");
    runtime.clear();
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    let first = checks(&mut runtime);
    assert_eq!(
        Some(MIN),
        run_checks(&mut foca, &mut runtime, ID::new(2), first)
    );
}

#[test]
fn accuser_travels_on_the_wire() {
    let mut one = member_of_six(1);
    let mut two = member_of_six(2);
    let mut runtime = AccumulatingRuntime::new();
    // One accuses three (a suspicion it raised itself names itself).
    one.apply_many(
        core::iter::once(Member::suspect(ID::new(3))),
        true,
        &mut runtime,
    )
    .expect("apply");
    runtime.clear();
    one.send_message(ID::new(2), crate::Message::Ping(1), &mut runtime)
        .expect("send");
    let data = runtime.take_data(ID::new(2)).expect("a ping to two");
    two.handle_data(&data, &mut runtime).expect("handle");
    let s = two.suspicions.get(&3).expect("two times the suspicion");
    assert_eq!(alloc::vec![ID::new(1)], s.accusers);
    // And two's own failed probe of three would be a confirmation.
    assert!(two.note_suspicion(&ID::new(3), 0, ID::new(2), &mut runtime));
    assert!(matches!(
        runtime.to_notify(),
        None | Some(OwnedNotification::MemberUp(_))
    ));
}

/// Which member `foca` probes at its next probe tick.
fn next_probe_target(foca: &mut TestFoca, runtime: &mut AccumulatingRuntime<ID>) -> Option<ID> {
    runtime.clear();
    foca.handle_timer(Timer::ProbeRandomMember(foca.timer_token()), &mut *runtime)
        .expect("probe");
    (1..=6)
        .map(ID::new)
        .find(|&id| runtime.take_data(id).is_some())
}

#[test]
fn a_member_that_learns_of_a_suspicion_may_probe_the_suspect_next() {
    let learn = |probers: u8, seed: u64| {
        let mut c = config();
        if let Some(s) = c.suspicion.as_mut() {
            s.probers = probers;
        }
        let mut foca = Foca::new(ID::new(1), c, SmallRng::seed_from_u64(seed), BadCodec);
        let mut runtime = AccumulatingRuntime::new();
        let others = (2..=6).map(|i| Member::alive(ID::new(i)));
        foca.apply_many(others, true, &mut runtime).expect("apply");
        foca.apply_update_accused(
            Member::suspect(ID::new(2)),
            Some(ID::new(3)),
            true,
            &mut runtime,
        )
        .expect("apply");
        next_probe_target(&mut foca, &mut runtime)
    };
    // As many probers as members: every member that learns of it probes the suspect next,
    // whatever its round-robin would have picked.
    for seed in 0..8 {
        assert_eq!(Some(ID::new(2)), learn(6, seed), "seed {seed}");
    }
    // None: the round-robin decides (over eight seeds, it does not always pick the suspect).
    let picks: Vec<_> = (0..8).map(|seed| learn(0, seed)).collect();
    assert!(picks.iter().all(Option::is_some));
    assert!(picks.iter().any(|p| *p != Some(ID::new(2))), "{picks:?}");
}

#[test]
fn a_suspicion_we_raised_or_that_ended_directs_no_probe() {
    let mut c = config();
    if let Some(s) = c.suspicion.as_mut() {
        s.probers = 6;
    }
    // Learned without an accuser (a push-pull): counted as our own, no directed probe.
    let mut picks = Vec::new();
    for seed in 0..8 {
        let mut foca = Foca::new(
            ID::new(1),
            c.clone(),
            SmallRng::seed_from_u64(seed),
            BadCodec,
        );
        let mut runtime = AccumulatingRuntime::new();
        let others = (2..=6).map(|i| Member::alive(ID::new(i)));
        foca.apply_many(others, true, &mut runtime).expect("apply");
        foca.apply_many(
            core::iter::once(Member::suspect(ID::new(2))),
            true,
            &mut runtime,
        )
        .expect("apply");
        picks.push(next_probe_target(&mut foca, &mut runtime));
    }
    assert!(picks.iter().any(|p| *p != Some(ID::new(2))), "{picks:?}");

    // Refuted before the probe tick: the round-robin decides again.
    let mut picks = Vec::new();
    for seed in 0..8 {
        let mut foca = Foca::new(
            ID::new(1),
            c.clone(),
            SmallRng::seed_from_u64(seed),
            BadCodec,
        );
        let mut runtime = AccumulatingRuntime::new();
        let others = (2..=6).map(|i| Member::alive(ID::new(i)));
        foca.apply_many(others, true, &mut runtime).expect("apply");
        foca.apply_update_accused(
            Member::suspect(ID::new(2)),
            Some(ID::new(3)),
            true,
            &mut runtime,
        )
        .expect("apply");
        foca.apply_many(
            core::iter::once(Member::new(ID::new(2), 1, State::Alive)),
            true,
            &mut runtime,
        )
        .expect("apply");
        picks.push(next_probe_target(&mut foca, &mut runtime));
    }
    assert!(picks.iter().any(|p| *p != Some(ID::new(2))), "{picks:?}");
}

// Concord patch 5: `Foca::probe_next`, a probe the driver asks for.

/// Member 1 of a cluster of members 1 to 6, all alive, with `seed` and `probers`.
fn member_one(seed: u64, probers: u8) -> (TestFoca, AccumulatingRuntime<ID>) {
    let mut c = config();
    if let Some(s) = c.suspicion.as_mut() {
        s.probers = probers;
    }
    let mut foca = Foca::new(ID::new(1), c, SmallRng::seed_from_u64(seed), BadCodec);
    let mut runtime = AccumulatingRuntime::new();
    let others = (2..=6).map(|i| Member::alive(ID::new(i)));
    foca.apply_many(others, true, &mut runtime).expect("apply");
    (foca, runtime)
}

#[test]
fn a_probe_the_driver_asks_for_comes_next() {
    for seed in 0..8 {
        let (mut foca, mut runtime) = member_one(seed, 0);
        assert!(foca.probe_next(ID::new(4)), "seed {seed}");
        // A second request waits for none: one directed probe at a time.
        assert!(!foca.probe_next(ID::new(5)), "seed {seed}");
        assert_eq!(
            Some(ID::new(4)),
            next_probe_target(&mut foca, &mut runtime),
            "seed {seed}"
        );
    }
    // Unasked, the round-robin decides (over eight seeds, it does not always pick 4).
    let picks: Vec<_> = (0..8)
        .map(|seed| {
            let (mut foca, mut runtime) = member_one(seed, 0);
            next_probe_target(&mut foca, &mut runtime)
        })
        .collect();
    assert!(picks.iter().all(Option::is_some));
    assert!(picks.iter().any(|p| *p != Some(ID::new(4))), "{picks:?}");

    // A suspect is active: it may be asked for too (a failed probe is then a confirmation).
    let (mut foca, mut runtime) = member_one(0, 0);
    foca.apply_update_accused(
        Member::suspect(ID::new(3)),
        Some(ID::new(2)),
        true,
        &mut runtime,
    )
    .expect("apply");
    assert!(foca.probe_next(ID::new(3)));
    assert_eq!(Some(ID::new(3)), next_probe_target(&mut foca, &mut runtime));
}

#[test]
fn a_probe_is_not_asked_for_ourselves_unknown_or_down_members_or_over_a_pending_one() {
    let (mut foca, mut runtime) = member_one(0, 0);
    assert!(!foca.probe_next(ID::new(1)), "ourselves");
    assert!(!foca.probe_next(ID::new(9)), "unknown");
    assert!(
        !foca.probe_next(ID::new(4).bump()),
        "another identity at 4's address"
    );
    foca.apply_many(
        core::iter::once(Member::down(ID::new(5))),
        true,
        &mut runtime,
    )
    .expect("apply");
    assert!(!foca.probe_next(ID::new(5)), "down");
    assert!(foca.probe_next.is_none());

    // A suspect chosen under `DynamicSuspicion::probers` is pending: it keeps its turn.
    let (mut foca, mut runtime) = member_one(0, 6);
    foca.apply_update_accused(
        Member::suspect(ID::new(2)),
        Some(ID::new(3)),
        true,
        &mut runtime,
    )
    .expect("apply");
    assert!(!foca.probe_next(ID::new(4)));
    assert_eq!(Some(ID::new(2)), next_probe_target(&mut foca, &mut runtime));
}

#[test]
fn a_member_asked_for_that_went_down_meanwhile_is_skipped() {
    let mut picks = Vec::new();
    for seed in 0..8 {
        let (mut foca, mut runtime) = member_one(seed, 0);
        assert!(foca.probe_next(ID::new(4)));
        foca.apply_many(
            core::iter::once(Member::down(ID::new(4))),
            true,
            &mut runtime,
        )
        .expect("apply");
        picks.push(next_probe_target(&mut foca, &mut runtime));
    }
    // The round-robin picks an active member instead, never the one that went down.
    assert!(
        picks.iter().all(|p| p.is_some() && *p != Some(ID::new(4))),
        "{picks:?}"
    );
}
