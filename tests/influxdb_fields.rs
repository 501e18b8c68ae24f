//! `withfields=true` writes each series' fields at one time as one line: read back from a real
//! influxd, the points are exactly those of the same window written one field per line (the
//! `file:` sink's lines, loaded as they are).

mod support;

use std::collections::BTreeMap;

use heapster_testbed::testkit::influxd::Influxd;
use serde_json::Value;
use support::*;

/// Every series of every measurement in `db`, with its columns and values, by measurement.
fn everything(influxd: &Influxd, db: &str) -> BTreeMap<String, Value> {
    let answer = influxd.query(db, "SHOW MEASUREMENTS").unwrap();
    let names: Vec<String> = answer["results"][0]["series"][0]["values"]
        .as_array()
        .expect("measurements")
        .iter()
        .map(|v| v[0].as_str().expect("name").to_string())
        .collect();
    names
        .into_iter()
        .map(|m| {
            let q = format!(r#"SELECT * FROM "{m}" GROUP BY * ORDER BY time"#);
            let series = influxd.query(db, &q).unwrap()["results"][0]["series"].clone();
            (m, series)
        })
        .collect()
}

fn values(all: &BTreeMap<String, Value>) -> usize {
    let mut n = 0;
    for series in all.values().flat_map(|s| s.as_array().into_iter().flatten()) {
        for row in series["values"].as_array().into_iter().flatten() {
            n += row.as_array().map_or(0, |r| r.iter().skip(1).filter(|v| !v.is_null()).count());
        }
    }
    n
}

#[test]
fn merged_lines_store_the_same_points_as_one_field_per_line() {
    let influxd = Influxd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines.lp");
    let run = heapster(&[
        &format!("--source=replay:{}", small().display()),
        &format!("--sink=influxdb:{}?db=merged&withfields=true", influxd.url()),
        &format!("--sink=file:{}?withfields=true", lines.display()),
    ]);
    assert!(run.status.success(), "heapster failed: {}", stderr(&run));

    // The same windows one field per line, as they were written before lines were merged.
    influxd.query("", "CREATE DATABASE perfield").unwrap();
    let text = std::fs::read_to_string(&lines).unwrap();
    let all: Vec<&str> = text.lines().collect();
    for chunk in all.chunks(5_000) {
        let body = chunk.join("\n");
        let (status, answer) = influxd.write("perfield", body.as_bytes()).unwrap();
        assert_eq!(status, 204, "{answer}");
    }

    let merged = everything(&influxd, "merged");
    let perfield = everything(&influxd, "perfield");
    assert_eq!(merged.keys().collect::<Vec<_>>(), perfield.keys().collect::<Vec<_>>());
    for (m, series) in &perfield {
        assert!(series == &merged[m], "measurement {m} differs");
    }
    // Every line of the file is one stored value, and series share lines: `cpu` holds several
    // fields per point.
    assert_eq!(values(&merged), all.len());
    let cpu_columns = merged["cpu"][0]["columns"].as_array().map_or(0, Vec::len);
    assert!(cpu_columns > 2, "{}", merged["cpu"][0]["columns"]);
}
