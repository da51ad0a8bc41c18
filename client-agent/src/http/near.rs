//! `?near=NODE|_agent`: results sorted by estimated round-trip time from a node, as Consul's
//! servers sort them (`sortNodesByDistanceFrom`). Concord sorts on the agent, with the
//! coordinates this agent has from gossip: the source's and each result node's. The sort is
//! stable; nodes without a coordinate go last in their original order; with no `?near`, or
//! no coordinate for the source, the order is left as the servers gave it.

use std::collections::HashMap;
use std::time::Duration;

use concord_net::gossip::Coordinate;

use super::{AppState, ReadQuery};

/// Sorts `items` by distance from the `?near` node; `node_of` names each item's node.
pub(super) fn sort<T>(s: &AppState, q: &ReadQuery, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    let Some(source) = q.params.get("near").filter(|n| !n.is_empty()) else {
        return;
    };
    let source = if source == "_agent" {
        s.config.node_name.as_str()
    } else {
        source
    };
    let Some(m) = &s.membership else {
        return;
    };
    let coords: HashMap<String, Coordinate> = m.gossip.coordinates().into_iter().collect();
    order_by_distance(source, &coords, items, node_of);
}

/// The sort itself: stable, by distance from `source`'s coordinate; unknown nodes last; a
/// source without a coordinate leaves the order alone.
pub(super) fn order_by_distance<T>(
    source: &str,
    coords: &HashMap<String, Coordinate>,
    items: &mut [T],
    node_of: impl Fn(&T) -> &str,
) {
    let Some(from) = coords.get(source) else {
        return;
    };
    let distance =
        |node: &str| -> Duration { coords.get(node).map_or(Duration::MAX, |c| from.distance(c)) };
    // `sort_by_cached_key` is stable: equal distances keep the servers' order.
    items.sort_by_cached_key(|item| distance(node_of(item)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64) -> Coordinate {
        let mut vec = [0.0; concord_net::gossip::coordinate::DIMENSIONS];
        vec[0] = x;
        Coordinate {
            vec,
            error: 1.5,
            adjustment: 0.0,
            height: 1.0e-5,
        }
    }

    #[test]
    fn nearest_first_unknown_last_stable() {
        let coords: HashMap<String, Coordinate> = [
            ("me", at(0.0)),
            ("far", at(0.5)),
            ("near", at(0.1)),
            ("twin-a", at(0.2)),
            ("twin-b", at(0.2)),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
        let mut items = vec![
            "unknown-1",
            "far",
            "twin-b",
            "near",
            "unknown-2",
            "twin-a",
            "me",
        ];
        order_by_distance("me", &coords, &mut items, |s| s);
        assert_eq!(
            items,
            [
                "me",
                "near",
                "twin-b",
                "twin-a",
                "far",
                "unknown-1",
                "unknown-2"
            ]
        );
        let before = items.clone();
        order_by_distance("nobody", &coords, &mut items, |s| s);
        assert_eq!(
            items, before,
            "a source without a coordinate changes nothing"
        );
    }
}
