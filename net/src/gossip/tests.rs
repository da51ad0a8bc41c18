//! Pool behaviour over the in-memory network, in simulated time (no real time passes).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use super::memory::{SimConfig, SimNetwork};
use super::wire::{self, Packet};
use super::*;

const LIMIT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_millis(100);

fn config(i: usize, keys: &[String]) -> Config {
    let mut c = Config::new(format!("node-{i}"), SimNetwork::addr_of(i));
    c.timing = Timing::fast();
    c.keys = keys.to_vec();
    c.tags = BTreeMap::from([
        ("role".to_string(), "node".to_string()),
        ("dc".to_string(), "dc1".to_string()),
    ]);
    c
}

/// `n` nodes that know only themselves.
fn unjoined(n: usize, keys: &[String]) -> SimNetwork {
    let mut sim = SimNetwork::new(SimConfig::default());
    for i in 0..n {
        sim.add_node(config(i, keys)).expect("valid config");
    }
    sim
}

/// `n` nodes, each joining node 0 (a join storm), run until everyone knows everyone alive.
fn cluster(n: usize, keys: &[String]) -> SimNetwork {
    let mut sim = unjoined(n, keys);
    for i in 1..n {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    let took = sim.run_until(LIMIT, STEP, |s| {
        all_see(s, &(0..n).collect::<Vec<_>>(), n, MemberStatus::Alive)
    });
    assert!(took.is_some(), "{n} members did not converge");
    sim
}

/// Every node in `observers` lists `count` members in status `status`.
fn all_see(sim: &SimNetwork, observers: &[usize], count: usize, status: MemberStatus) -> bool {
    observers.iter().all(|&i| {
        sim.pool(i)
            .is_some_and(|p| p.members().iter().filter(|m| m.status == status).count() == count)
    })
}

fn status_everywhere(
    sim: &SimNetwork,
    observers: &[usize],
    name: &str,
    status: MemberStatus,
) -> bool {
    observers.iter().all(|&i| {
        sim.pool(i)
            .is_some_and(|p| p.status_of(name) == Some(status))
    })
}

#[test]
fn five_members_converge_with_tags() {
    let sim = cluster(5, &[]);
    let m = sim.pool(3).expect("alive").members();
    let n1 = m
        .iter()
        .find(|m| m.name == "node-1")
        .expect("node-1 listed");
    assert_eq!(n1.addr, SimNetwork::addr_of(1));
    assert_eq!(n1.tags.get("role").map(String::as_str), Some("node"));
}

#[test]
fn killed_member_is_declared_failed_by_all() {
    let mut sim = cluster(5, &[]);
    sim.kill(4);
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &[0, 1, 2, 3], "node-4", MemberStatus::Failed)
    });
    let took = took.expect("failure detected");
    // fast timings: probe 200 ms, suspicion 3 x 200 ms; allow for probe luck.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn graceful_leave_is_left_not_failed() {
    let mut sim = cluster(4, &[]);
    let events = Rc::new(RefCell::new(Vec::new()));
    let seen = events.clone();
    sim.set_event_hook(Some(Box::new(move |i, _, e| {
        seen.borrow_mut().push((i, e.clone()))
    })));
    sim.with_pool(3, |p, now| p.leave_intent(now))
        .expect("alive")
        .expect("leave intent");
    sim.run_for(Duration::from_millis(500));
    sim.with_pool(3, |p, now| p.leave_cluster(now));
    sim.kill(3);
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &[0, 1, 2], "node-3", MemberStatus::Left)
    });
    assert!(took.is_some(), "leave not recorded as Left");
    sim.run_for(Duration::from_secs(5));
    assert!(status_everywhere(
        &sim,
        &[0, 1, 2],
        "node-3",
        MemberStatus::Left
    ));
    let events = events.borrow();
    assert!(!events
        .iter()
        .any(|(_, e)| matches!(e, MemberEvent::Failed(m) if m.name == "node-3")));
    assert_eq!(
        events
            .iter()
            .filter(|(_, e)| matches!(e, MemberEvent::Leave(m) if m.name == "node-3"))
            .count(),
        3
    );
}

#[test]
fn partition_marks_the_cut_off_failed_and_healing_restores() {
    let mut sim = cluster(5, &[]);
    // Node 4 is cut off from everyone.
    sim.set_link_filter(Some(Box::new(|a, b| a != 4 && b != 4)));
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &[0, 1, 2, 3], "node-4", MemberStatus::Failed)
    });
    assert!(took.is_some(), "cut-off member not declared failed");
    sim.set_link_filter(None);
    let took = sim.run_until(Duration::from_secs(120), STEP, |s| {
        all_see(s, &[0, 1, 2, 3, 4], 5, MemberStatus::Alive)
    });
    assert!(took.is_some(), "partition did not heal");
}

/// `n` nodes with `timing`, joined through node 0 and converged.
fn cluster_with(n: usize, timing: &Timing, seed: u64) -> SimNetwork {
    let mut sim = SimNetwork::new(SimConfig {
        seed,
        ..SimConfig::default()
    });
    for i in 0..n {
        let mut c = config(i, &[]);
        c.timing = timing.clone();
        sim.add_node(c).expect("valid config");
    }
    for i in 1..n {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    let all: Vec<usize> = (0..n).collect();
    let took = sim.run_until(LIMIT, STEP, |s| all_see(s, &all, n, MemberStatus::Alive));
    assert!(took.is_some(), "{n} members did not converge");
    sim
}

/// Cuts node `n - 1` off until the others list it failed, heals, and returns how long the
/// pool took to list everyone alive again (simulated time).
fn partition_heal_time(sim: &mut SimNetwork, n: usize) -> Option<Duration> {
    let cut = n - 1;
    let name = format!("node-{cut}");
    let rest: Vec<usize> = (0..cut).collect();
    sim.set_link_filter(Some(Box::new(move |a, b| a != cut && b != cut)));
    let noticed = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &rest, &name, MemberStatus::Failed)
            && s.pool(cut).is_some_and(|p| p.alive_count() == 0)
    });
    assert!(noticed.is_some(), "the cut did not split the pool");
    sim.set_link_filter(None);
    let all: Vec<usize> = (0..n).collect();
    sim.run_until(Duration::from_secs(120), STEP, |s| {
        all_see(s, &all, n, MemberStatus::Alive)
    })
}

#[test]
fn reconnect_heals_a_partition_without_periodic_push_pull() {
    // Push-pull (and with it foca's announce, every 30 s) is out of the picture: only the
    // reconnect attempts (every second with fast timings) can bring the sides together.
    // Healing takes a few attempts: each one that gets through makes the contacted member
    // renew its identity (it learns it was declared down), and the renewed identities then
    // spread by gossip.
    let timing = Timing {
        push_pull_interval: Duration::from_secs(3600),
        ..Timing::fast()
    };
    for seed in 1..=5 {
        let mut sim = cluster_with(5, &timing, seed);
        let took = partition_heal_time(&mut sim, 5).expect("partition healed");
        assert!(
            took <= timing.reconnect_interval * 10,
            "seed {seed}: healed in {took:?}"
        );
    }
}

#[test]
fn reconnect_heals_a_partition_within_seconds_with_lan_timings() {
    // The first attempt waits for a reconnect tick (10 s apart), the follow-ups only a probe
    // interval. Each member tries with probability failed/alive per tick, so a tick may pass
    // with no attempt at all (the pool's tables are hash maps, so runs differ with the
    // hasher's seed too). With dynamic suspicion (LAN timings), 150 runs of these 10 seeds
    // healed in 0.7 s to 28 s, the median 5.6-6.2 s; with fixed suspicion the median was
    // 2.4 s over 30 seeds, and a bound of half a tick failed one run in five. Without the
    // reconnect loop only push-pull (every 30 s and more) could heal it.
    let timing = Timing::lan();
    let mut times: Vec<Duration> = (1..=10)
        .map(|seed| {
            let mut sim = cluster_with(5, &timing, seed);
            partition_heal_time(&mut sim, 5).expect("partition healed")
        })
        .collect();
    times.sort();
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    assert!(median <= timing.reconnect_interval, "{times:?}");
    assert!(max <= timing.reconnect_interval * 3, "{times:?}");
}

/// The CI-sized version of `concord-bench`'s `gossip_sim`: 200 members with LAN timings
/// (simulated time): a join storm converges, 5 % packet loss fails nobody, and a killed
/// member is declared failed by everyone within the suspicion time plus a few probes.
#[test]
fn two_hundred_members_converge_stay_up_under_loss_and_detect_a_kill() {
    let n = 200;
    let mut sim = cluster_with(n, &Timing::lan(), 200);
    let failures = Rc::new(RefCell::new(Vec::new()));
    let sink = failures.clone();
    sim.set_event_hook(Some(Box::new(move |i, t, e| {
        if let MemberEvent::Failed(m) = e {
            sink.borrow_mut().push((i, t, m.name.clone()));
        }
    })));
    sim.set_loss(0.05);
    sim.run_for(Duration::from_secs(30));
    sim.set_loss(0.0);
    assert!(
        failures.borrow().is_empty(),
        "false failures: {:?}",
        failures.borrow()
    );

    let victim = n / 2;
    let name = format!("node-{victim}");
    let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    sim.kill(victim);
    let took = sim
        .run_until(LIMIT, STEP, |s| {
            status_everywhere(s, &others, &name, MemberStatus::Failed)
        })
        .expect("kill detected by all");
    // Suspicion: 4 x log10(200) x 1 s = 9.2 s; plus probing luck and the direct check.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn user_events_reach_every_member_exactly_once() {
    let mut sim = cluster(5, &[]);
    let got: Rc<RefCell<HashMap<usize, Vec<UserEvent>>>> = Rc::default();
    let sink = got.clone();
    sim.set_event_hook(Some(Box::new(move |i, _, e| {
        if let MemberEvent::User(u) = e {
            sink.borrow_mut().entry(i).or_default().push(u.clone());
        }
    })));
    let filters = EventFilters {
        service: "web".into(),
        ..EventFilters::default()
    };
    let fired = sim
        .with_pool(2, |p, now| {
            p.fire_event("deploy", b"v2".to_vec(), filters.clone(), now)
        })
        .expect("alive")
        .expect("fired");
    sim.with_pool(0, |p, now| {
        p.fire_event("other", Vec::new(), EventFilters::default(), now)
    });
    sim.run_for(Duration::from_secs(20));
    let got = got.borrow();
    for i in 0..5 {
        let mine = got.get(&i).expect("events delivered");
        assert_eq!(
            mine.iter().filter(|e| e.id == fired.id).count(),
            1,
            "node {i}"
        );
        assert_eq!(mine.len(), 2, "node {i}: {mine:?}");
        let e = mine.iter().find(|e| e.id == fired.id).expect("delivered");
        assert_eq!(
            (e.name.as_str(), e.payload.as_slice(), &e.filters),
            ("deploy", &b"v2"[..], &filters)
        );
        assert_eq!(sim.pool(i).expect("alive").recent_events().len(), 2);
    }
    let too_big = vec![0u8; USER_EVENT_SIZE_LIMIT];
    let err = sim.with_pool(0, |p, now| {
        p.fire_event("x", too_big, EventFilters::default(), now)
    });
    assert!(matches!(err, Some(Err(GossipError::EventTooLarge(_)))));
}

#[test]
fn tag_updates_propagate() {
    let mut sim = cluster(3, &[]);
    let tags = BTreeMap::from([("role".to_string(), "consul".to_string())]);
    sim.with_pool(1, |p, _| p.set_tags(tags.clone()))
        .expect("alive")
        .expect("set");
    let took = sim.run_until(LIMIT, STEP, |s| {
        [0, 2].iter().all(|&i| {
            s.pool(i)
                .expect("alive")
                .members()
                .iter()
                .any(|m| m.name == "node-1" && m.tags == tags)
        })
    });
    assert!(took.is_some());
}

/// Decodes an unencrypted push-pull frame.
fn frame(data: &[u8]) -> wire::Frame {
    wire::decode(data).expect("a push-pull frame")
}

#[test]
fn periodic_push_pull_sends_digests_and_the_full_view_only_where_views_differ() {
    let mut sim = cluster(3, &[]);
    // Let the join's gossip settle.
    sim.run_for(Duration::from_secs(10));
    // `from` opens a periodic sync with `to`: the opening and `to`'s answer.
    let open_sync = |sim: &mut SimNetwork, from: usize, to: usize| {
        let opening = sim
            .with_pool(from, |p, _| p.digest_request())
            .expect("alive")
            .expect("a frame");
        let answer = sim
            .with_pool(to, |p, now| p.handle_stream(&opening, now))
            .expect("alive")
            .expect("an answer");
        (opening, answer)
    };

    tracing::info!("members that agree answer a digest with a digest");
    let (opening, answer) = open_sync(&mut sim, 0, 1);
    let full = sim
        .with_pool(0, |p, _| p.push_pull_request())
        .expect("alive")
        .expect("a frame");
    assert!(matches!(frame(&answer), wire::Frame::Digest(d) if d.reply));
    assert!(
        opening.len() < full.len() && answer.len() < full.len(),
        "digest {} and {} bytes, full view {} bytes",
        opening.len(),
        answer.len(),
        full.len()
    );
    let none = sim.with_pool(0, |p, now| p.handle_stream(&answer, now));
    assert_eq!(none, Some(None), "an answer is not answered");

    tracing::info!("node-1 changes its tags; nothing is gossiped (the network is not run)");
    let tags = BTreeMap::from([("role".to_string(), "consul".to_string())]);
    sim.with_pool(1, |p, _| p.set_tags(tags.clone()))
        .expect("alive")
        .expect("set");
    let tags_of_1 = |sim: &SimNetwork, i: usize| {
        sim.pool(i)
            .expect("alive")
            .members()
            .into_iter()
            .find(|m| m.name == "node-1")
            .map(|m| m.tags)
    };
    assert_ne!(tags_of_1(&sim, 0), Some(tags.clone()));

    tracing::info!("node-0's digest differs from node-1's view: node-1 answers its full view");
    let (_, answer) = open_sync(&mut sim, 0, 1);
    assert!(matches!(frame(&answer), wire::Frame::Differ(s) if s.reply));
    let sent = |sim: &SimNetwork| sim.pool(0).expect("alive").stats().streams_sent;
    let before = sent(&sim);
    let none = sim.with_pool(0, |p, now| p.handle_stream(&answer, now));
    assert_eq!(none, Some(None));
    assert_eq!(tags_of_1(&sim, 0), Some(tags.clone()), "node-0 pulled it");
    assert_eq!(sent(&sim), before + 1, "node-0 sent its own full view back");

    tracing::info!("node-1's opening carries its metadata: node-2 learns it and then agrees");
    let (_, answer) = open_sync(&mut sim, 1, 2);
    assert_eq!(tags_of_1(&sim, 2), Some(tags));
    assert!(matches!(frame(&answer), wire::Frame::Digest(_)));
}

#[test]
fn wrong_key_is_refused() {
    let key = keygen();
    let mut sim = SimNetwork::new(SimConfig::default());
    for i in 0..3 {
        sim.add_node(config(i, std::slice::from_ref(&key)))
            .expect("valid");
    }
    let intruder = sim.add_node(config(3, &[keygen()])).expect("valid");
    let plain = sim.add_node(config(4, &[])).expect("valid");
    for i in 1..5 {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    let took = sim.run_until(LIMIT, STEP, |s| {
        all_see(s, &[0, 1, 2], 3, MemberStatus::Alive)
    });
    assert!(took.is_some());
    sim.run_for(Duration::from_secs(10));
    assert!(
        all_see(&sim, &[0, 1, 2], 3, MemberStatus::Alive),
        "intruders got in"
    );
    assert_eq!(sim.pool(intruder).expect("alive").members().len(), 1);
    assert_eq!(sim.pool(plain).expect("alive").members().len(), 1);
    assert!(sim.pool(0).expect("alive").stats().dropped_undecryptable > 0);
}

#[test]
fn keyring_rotation_keeps_the_pool_together() {
    let old = keygen();
    let new = keygen();
    let mut sim = cluster(4, std::slice::from_ref(&old));
    for i in 0..4 {
        sim.with_pool(i, |p, _| p.install_key(&new))
            .expect("alive")
            .expect("install");
    }
    sim.run_for(Duration::from_secs(3));
    let listed = sim.pool(0).expect("alive").list_keys();
    assert!(
        listed.iter().all(|k| k.members == 4 && k.total == 4),
        "{listed:?}"
    );
    for i in 0..4 {
        sim.with_pool(i, |p, _| p.use_key(&new))
            .expect("alive")
            .expect("use");
        sim.run_for(Duration::from_millis(300));
    }
    for i in 0..4 {
        sim.with_pool(i, |p, _| p.remove_key(&old))
            .expect("alive")
            .expect("remove");
    }
    sim.run_for(Duration::from_secs(10));
    assert!(all_see(&sim, &[0, 1, 2, 3], 4, MemberStatus::Alive));
    assert_eq!(sim.pool(2).expect("alive").keyring().keys(), vec![new]);
}

#[test]
fn set_keys_swaps_the_ring_and_members_report_their_primary() {
    let old = keygen();
    let new = keygen();
    let mut sim = cluster(3, std::slice::from_ref(&old));
    // Nodes 1 and 2 take a whole new ring in one step (the new key installed, the old one
    // still primary); node 0 keeps the old ring. Counts are per-member facts.
    for i in 1..3 {
        sim.with_pool(i, |p, _| p.set_keys(&[old.clone(), new.clone()]))
            .expect("alive")
            .expect("set");
    }
    sim.run_for(Duration::from_secs(3));
    let listed = sim.pool(0).expect("alive").list_keys();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].members, listed[0].primaries, listed[0].total),
        (3, 3, 3)
    );
    let seen = sim.pool(1).expect("alive").list_keys();
    assert_eq!(seen[1].key, new);
    assert_eq!((seen[1].members, seen[1].primaries), (2, 0), "{seen:?}");

    for i in 0..3 {
        sim.with_pool(i, |p, _| p.set_keys(std::slice::from_ref(&new)))
            .expect("alive")
            .expect("set");
    }
    sim.run_for(Duration::from_secs(10));
    assert!(all_see(&sim, &[0, 1, 2], 3, MemberStatus::Alive));
    let fp = Keyring::fingerprint_of(&new).expect("valid key");
    let reported = sim.pool(0).expect("alive").member_keys();
    assert_eq!(reported.len(), 3);
    assert!(
        reported.iter().all(|(_, keys)| keys == &vec![fp]),
        "{reported:?}"
    );
    assert!(sim
        .with_pool(0, |p, _| p.set_keys(&[]))
        .expect("alive")
        .is_err());
}

#[test]
fn encrypted_traffic_carries_no_plaintext_names() {
    let key = keygen();
    let mut pool =
        Pool::new(config(0, std::slice::from_ref(&key)), 1, 1, Duration::ZERO).expect("valid");
    pool.join(&[SimNetwork::addr_of(1)], Duration::ZERO);
    pool.fire_event(
        "secret-event",
        b"payload".to_vec(),
        EventFilters::default(),
        Duration::ZERO,
    )
    .expect("fired");
    pool.tick(Duration::from_secs(5));
    let mut bytes = Vec::new();
    while let Some(out) = pool.poll_output() {
        match out {
            Output::Packet { data, .. } | Output::Stream { data, .. } => bytes.push(data),
            Output::Event(_) => {}
        }
    }
    assert!(!bytes.is_empty());
    for data in &bytes {
        for needle in [&b"node-0"[..], b"secret-event", b"dc1"] {
            assert!(
                !data.windows(needle.len()).any(|w| w == needle),
                "plaintext on the wire"
            );
        }
    }
    // Without a key the same traffic does show the name (the test can see it).
    let mut plain = Pool::new(config(0, &[]), 1, 1, Duration::ZERO).expect("valid");
    plain.join(&[SimNetwork::addr_of(1)], Duration::ZERO);
    let mut found = false;
    while let Some(out) = plain.poll_output() {
        if let Output::Stream { data, .. } = out {
            found |= data.windows(6).any(|w| w == b"node-0");
        }
    }
    assert!(found);
}

#[test]
fn garbage_is_dropped_and_counted_never_a_panic() {
    for keys in [vec![], vec![keygen()]] {
        let mut pool = Pool::new(config(0, &keys), 1, 1, Duration::ZERO).expect("valid");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let from = SimNetwork::addr_of(9);
        for round in 0..3000 {
            let len = (round * 7) % 1500;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            pool.handle_packet(from, &data, Duration::from_millis(round as u64));
            assert!(pool
                .handle_stream(&data, Duration::from_millis(round as u64))
                .is_none());
        }
        // Valid framing around a garbled SWIM message.
        let garbled = keys_seal(&keys, wire::encode(&Packet::Swim(vec![0xff; 40])));
        pool.handle_packet(from, &garbled, Duration::from_secs(10));
        let stats = pool.stats();
        assert!(
            stats.dropped_invalid + stats.dropped_undecryptable >= 3000,
            "{stats:?}"
        );
        assert_eq!(pool.members().len(), 1);
    }
}

fn keys_seal(keys: &[String], plain: Vec<u8>) -> Vec<u8> {
    Keyring::new(keys)
        .expect("valid")
        .seal(plain)
        .expect("sealed")
}

#[test]
fn force_leave_marks_failed_member_left_and_prune_forgets_it() {
    let mut sim = cluster(4, &[]);
    sim.kill(3);
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &[0, 1, 2], "node-3", MemberStatus::Failed)
    });
    assert!(took.is_some());
    sim.with_pool(0, |p, now| p.force_leave("node-3", false, now))
        .expect("alive")
        .expect("known");
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &[0, 1, 2], "node-3", MemberStatus::Left)
    });
    assert!(took.is_some());
    sim.with_pool(1, |p, now| p.force_leave("node-3", true, now))
        .expect("alive")
        .expect("known");
    let took = sim.run_until(LIMIT, STEP, |s| {
        (0..3).all(|i| s.pool(i).is_some_and(|p| p.status_of("node-3").is_none()))
    });
    assert!(took.is_some());
    let err = sim.with_pool(0, |p, now| p.force_leave("nobody", false, now));
    assert!(matches!(err, Some(Err(GossipError::UnknownMember(_)))));
}

#[test]
fn failed_member_is_reaped_after_reconnect_timeout() {
    let mut sim = SimNetwork::new(SimConfig::default());
    for i in 0..3 {
        let mut c = config(i, &[]);
        c.reconnect_timeout = Duration::from_secs(30);
        sim.add_node(c).expect("valid");
    }
    for i in 1..3 {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    assert!(sim
        .run_until(LIMIT, STEP, |s| all_see(
            s,
            &[0, 1, 2],
            3,
            MemberStatus::Alive
        ))
        .is_some());
    sim.kill(2);
    assert!(sim
        .run_until(LIMIT, STEP, |s| status_everywhere(
            s,
            &[0, 1],
            "node-2",
            MemberStatus::Failed
        ))
        .is_some());
    sim.run_for(Duration::from_secs(20));
    assert_eq!(
        sim.pool(0).expect("alive").status_of("node-2"),
        Some(MemberStatus::Failed)
    );
    let took = sim.run_until(LIMIT, STEP, |s| {
        (0..2).all(|i| s.pool(i).is_some_and(|p| p.status_of("node-2").is_none()))
    });
    assert!(took.is_some(), "not reaped");
}

#[test]
fn restarted_member_replaces_its_old_self() {
    let mut sim = cluster(3, &[]);
    sim.kill(2);
    assert!(sim
        .run_until(LIMIT, STEP, |s| status_everywhere(
            s,
            &[0, 1],
            "node-2",
            MemberStatus::Failed
        ))
        .is_some());
    sim.restart(2, config(2, &[])).expect("valid");
    sim.with_pool(2, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    let took = sim.run_until(LIMIT, STEP, |s| {
        all_see(s, &[0, 1, 2], 3, MemberStatus::Alive)
    });
    assert!(took.is_some(), "restart not recognised");
    assert_eq!(sim.pool(0).expect("alive").members().len(), 3);
}

#[test]
fn coordinates_follow_measured_latency() {
    let mut sim = SimNetwork::new(SimConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::ZERO,
        ..SimConfig::default()
    });
    for i in 0..3 {
        sim.add_node(config(i, &[])).expect("valid");
    }
    for i in 1..3 {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    sim.run_for(Duration::from_secs(60));
    let p0 = sim.pool(0).expect("alive");
    let coords = p0.coordinates();
    let other = coords
        .iter()
        .find(|(n, _)| n == "node-1")
        .expect("measured node-1");
    let est = p0.coordinate().distance(&other.1).as_secs_f64() * 1000.0;
    // One-way 5 ms each way: RTT 10 ms.
    assert!((5.0..20.0).contains(&est), "estimated {est} ms");
}

#[test]
fn event_ring_is_bounded_and_lamport_times_grow() {
    let mut c = config(0, &[]);
    c.event_ring = 4;
    let mut pool = Pool::new(c, 1, 1, Duration::ZERO).expect("valid");
    for i in 0..10 {
        pool.fire_event(
            &format!("e{i}"),
            Vec::new(),
            EventFilters::default(),
            Duration::ZERO,
        )
        .expect("fired");
    }
    let recent = pool.recent_events();
    let names: Vec<&str> = recent.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["e6", "e7", "e8", "e9"]);
    assert!(recent.windows(2).all(|w| w[0].ltime < w[1].ltime));
    assert!(matches!(
        pool.fire_event("", Vec::new(), EventFilters::default(), Duration::ZERO),
        Err(GossipError::EmptyEventName)
    ));
}

#[test]
fn tag_change_is_an_update_event() {
    let mut sim = cluster(3, &[]);
    let updates = Rc::new(RefCell::new(0));
    let sink = updates.clone();
    sim.set_event_hook(Some(Box::new(move |_, _, e| {
        if matches!(e, MemberEvent::Update(m) if m.name == "node-2" && m.tags.contains_key("build"))
        {
            *sink.borrow_mut() += 1;
        }
    })));
    let tags = BTreeMap::from([("build".to_string(), "1.2.3".to_string())]);
    sim.with_pool(2, |p, _| p.set_tags(tags))
        .expect("alive")
        .expect("set");
    let took = sim.run_until(LIMIT, STEP, |_| *updates.borrow() == 2);
    assert!(took.is_some(), "both other members report the update");
}

#[test]
fn impossible_timings_and_bad_keys_are_refused() {
    let mut c = config(0, &[]);
    c.timing.probe_timeout = c.timing.probe_interval;
    assert!(matches!(
        Pool::new(c, 1, 1, Duration::ZERO),
        Err(GossipError::InvalidTiming(_))
    ));
    let mut c = config(0, &[]);
    c.timing.gossip_interval = Duration::ZERO;
    assert!(matches!(
        Pool::new(c, 1, 1, Duration::ZERO),
        Err(GossipError::InvalidTiming(_))
    ));
    let c = config(0, &["c2hvcnQ=".to_string()]);
    assert!(matches!(
        Pool::new(c, 1, 1, Duration::ZERO),
        Err(GossipError::BadKey(_))
    ));
}

#[test]
fn a_warm_start_is_a_converged_pool_that_detects_failures_and_agrees_on_its_view() {
    let n = 40;
    let mut sim = unjoined(n, &[]);
    let joins = Rc::new(RefCell::new(0usize));
    let count = joins.clone();
    sim.set_event_hook(Some(Box::new(move |_, _, e| {
        if matches!(e, MemberEvent::Join(_)) {
            *count.borrow_mut() += 1;
        }
    })));
    sim.warm_start();
    let everyone: Vec<usize> = (0..n).collect();
    assert!(
        all_see(&sim, &everyone, n, MemberStatus::Alive),
        "listed at once"
    );
    assert_eq!(
        n * (n - 1),
        *joins.borrow(),
        "each member reported each other's join"
    );
    let tags = sim.pool(5).expect("alive").members();
    assert!(
        tags.iter().all(|m| m.tags.contains_key("dc")),
        "with metadata"
    );

    // Converged: every member has the same view, so periodic syncs send digests only.
    let agree = |sim: &SimNetwork| {
        let first = sim.pool(0).expect("alive").view_digest();
        (1..n).all(|i| sim.pool(i).expect("alive").view_digest() == first)
    };
    assert!(agree(&sim), "views differ after the warm start");
    sim.run_for(Duration::from_secs(30));
    let (streams, bytes) = sim
        .traffic()
        .iter()
        .fold((0, 0), |(s, b), t| (s + t.streams, b + t.stream_bytes));
    assert!(streams > 0, "periodic syncs ran");
    assert!(
        bytes / streams < 200,
        "{bytes} bytes in {streams} frames: not digests only"
    );
    assert!(agree(&sim), "views drifted apart");
    assert_eq!(n * (n - 1), *joins.borrow(), "and nothing changed");

    // Probes run (at random phases, not all in one instant) and find a dead member.
    sim.kill(7);
    let rest: Vec<usize> = everyone.into_iter().filter(|&i| i != 7).collect();
    let took = sim.run_until(LIMIT, STEP, |s| {
        status_everywhere(s, &rest, "node-7", MemberStatus::Failed)
    });
    assert!(took.is_some(), "node-7 was not declared failed by all");
}

#[test]
fn members_joining_a_warm_pool_all_at_once_are_known_to_all() {
    let n = 40;
    let mut sim = unjoined(n, &[]);
    sim.warm_start_first(30);
    let warm: Vec<usize> = (0..30).collect();
    assert!(all_see(&sim, &warm, 30, MemberStatus::Alive));
    assert!(
        all_see(&sim, &[35], 1, MemberStatus::Alive),
        "not joined yet: only itself"
    );
    for i in 30..n {
        sim.with_pool(i, |p, now| p.join(&[SimNetwork::addr_of(0)], now));
    }
    let everyone: Vec<usize> = (0..n).collect();
    let took = sim.run_until(LIMIT, STEP, |s| {
        all_see(s, &everyone, n, MemberStatus::Alive)
    });
    assert!(
        took.is_some(),
        "the storm into the warm pool did not converge"
    );
}

/// What one pool sent, as the test reads it (unencrypted packets only).
enum Sent {
    /// An RTT ping (the pool's own, for coordinates).
    RttPing(SocketAddr),
    /// foca's direct probe.
    Probe(SocketAddr),
}

fn sent(to: SocketAddr, data: &[u8]) -> Option<Sent> {
    use foca::Codec as _;
    match wire::decode::<Packet>(data)? {
        Packet::Ping { .. } => Some(Sent::RttPing(to)),
        Packet::Swim(bytes) => {
            let header: foca::Header<id::Id> =
                foca::PostcardCodec.decode_header(&bytes[..]).ok()?;
            matches!(header.message, foca::Message::Ping(_)).then_some(Sent::Probe(to))
        }
        _ => None,
    }
}

/// foca's state code for `to` in `pool`'s view, as a push-pull frame carries it.
fn swim_code(pool: &mut Pool, to: SocketAddr) -> Option<u8> {
    let data = pool.push_pull_request()?;
    let wire::Frame::State(state) = frame(&data) else {
        return None;
    };
    state
        .members
        .iter()
        .find(|(id, _, _)| id.socket() == to)
        .map(|(_, _, code)| *code)
}

#[test]
fn an_unanswered_rtt_ping_makes_foca_probe_its_target_next() {
    // One pool, driven by hand, in a warm pool of 64 that never answers anything. foca's
    // round-robin alone would probe an RTT ping's target at the next round once in 63; with
    // the ping's failure handed over (foca patch 5), it always does.
    let n = 64;
    let timing = Timing::lan();
    let configs: Vec<Config> = (0..n)
        .map(|i| Config {
            timing: timing.clone(),
            ..config(i, &[])
        })
        .collect();
    let view: Vec<_> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Pool::new(c.clone(), 1, i as u64, Duration::ZERO)
                .expect("valid")
                .local_meta()
                .clone()
        })
        .collect();
    let mut pool = Pool::new(configs[0].clone(), 1, 42, Duration::ZERO).expect("valid");
    pool.warm_start(&view, Duration::ZERO);

    tracing::info!("run until four RTT pings went unanswered and foca probed after each");
    let due = timing.probe_timeout;
    let mut log: Vec<(Duration, Sent)> = Vec::new();
    // (target, sent at) of each RTT ping, and the first probe sent after its answer was due.
    let mut checked: Vec<(SocketAddr, Duration, SocketAddr)> = Vec::new();
    while checked.len() < 4 {
        let at = pool.next_deadline().expect("tasks scheduled");
        assert!(at < Duration::from_secs(10), "too few pings and probes");
        pool.tick(at);
        while let Some(out) = pool.poll_output() {
            if let Output::Packet { to, data } = out {
                log.extend(sent(to, &data).map(|s| (at, s)));
            }
        }
        checked = log
            .iter()
            .filter_map(|(sent_at, s)| match s {
                Sent::RttPing(target) => Some((*target, *sent_at)),
                Sent::Probe(_) => None,
            })
            .filter_map(|(target, sent_at)| {
                let first_probe = log.iter().find_map(|(at, s)| match s {
                    Sent::Probe(to) if *at > sent_at + due => Some(*to),
                    _ => None,
                })?;
                Some((target, sent_at, first_probe))
            })
            .collect();
    }
    for (target, sent_at, probed) in &checked {
        assert_eq!(
            target, probed,
            "RTT ping to {target} at {sent_at:?}: foca probed {probed} next"
        );
    }

    tracing::info!("the probes failed too (nobody answers): each target is suspect");
    let at = pool.next_deadline().expect("tasks scheduled") + timing.probe_interval;
    pool.tick(at);
    for (target, _, _) in &checked {
        assert_eq!(swim_code(&mut pool, *target), Some(1), "{target} suspect");
    }
}
