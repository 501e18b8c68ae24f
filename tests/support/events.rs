//! Event states as a scenario's lists show them and as InfluxDB holds them, keyed alike:
//! (uid, lastTimestamp in ms) -> count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use heapster_testbed::testkit::influxd::Influxd;

use super::{read_json, rfc3339_ns, window_dir, window_times_ns};

/// A state of an event: (uid, count, lastTimestamp in ms).
pub type EventState = (String, i64, i64);

/// Every distinct event state the scenario's lists ever show: what a collector exports once
/// each.
pub fn event_states(scenario: &Path) -> BTreeSet<EventState> {
    let mut states = BTreeSet::new();
    for w in 0..window_times_ns(scenario).len() {
        let file = window_dir(scenario, w).join("api/events.json");
        if !file.is_file() {
            continue;
        }
        for item in read_json(&file)["items"].as_array().expect("items") {
            let uid = item["metadata"]["uid"].as_str().expect("uid").to_string();
            let count = item["count"].as_i64().unwrap_or(1);
            let last = rfc3339_ns(&item["lastTimestamp"]) / 1_000_000;
            states.insert((uid, count, last));
        }
    }
    states
}

/// Every state the scenario's event lists show, the highest count per (event, lastTimestamp):
/// what an InfluxDB sink holds after an uninterrupted run (one point per event and time).
pub fn expected_event_points(scenario: &Path) -> BTreeMap<(String, i64), i64> {
    let mut points: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (uid, count, last) in event_states(scenario) {
        let slot = points.entry((uid, last)).or_default();
        *slot = (*slot).max(count);
    }
    points
}

/// The `log/events` points of `db`, each checked against the event it carries; fails on two
/// points for one event and time.
pub fn stored_event_points(influxd: &Influxd, db: &str) -> BTreeMap<(String, i64), i64> {
    let answer = influxd.query(db, r#"SELECT "value", "uid" FROM "log/events""#).expect("query");
    let mut points = BTreeMap::new();
    for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
        for row in series["values"].as_array().expect("values") {
            let time: jiff::Timestamp = row[0].as_str().expect("time").parse().expect("time");
            let event: serde_json::Value =
                serde_json::from_str(row[1].as_str().expect("value")).expect("event JSON");
            let uid = row[2].as_str().expect("uid").to_string();
            assert_eq!(event["metadata"]["uid"].as_str(), Some(uid.as_str()));
            let previous = points.insert((uid, time.as_millisecond()), event["count"].as_i64().unwrap_or(1));
            assert!(previous.is_none(), "two points for one event and time");
        }
    }
    points
}
