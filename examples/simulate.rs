//! Simulates the default fleet and prints a summary per device and per fault kind.
//!
//! Run: `cargo run --release --example simulate`

use std::collections::BTreeMap;

use itap::ParamGuard;
use itap::telemetry::{SimParams, State, format_timestamp, simulate};

fn main() -> Result<(), itap::telemetry::Error> {
    let params = SimParams::default().check()?;
    let batch = simulate(&params);
    let (first, last) = batch.time_bounds().unwrap_or((0, 0));
    println!(
        "{} rows, {} devices, {} … {}",
        batch.len(),
        batch.device_names().len(),
        format_timestamp(first),
        format_timestamp(last)
    );

    let states = batch.states().unwrap_or(&[]);
    let temp = batch.signal_by_name("temp_c").unwrap_or(&[]);
    println!(
        "\n{:<10} {:>6} {:>6} {:>6} {:>9} {:>8}",
        "device", "RUN%", "IDLE%", "MAINT%", "temp °C", "faulty%"
    );
    for (code, name) in batch.device_names().iter().enumerate() {
        let rows: Vec<usize> = (0..batch.len())
            .filter(|&r| batch.device_codes()[r] == code as u32)
            .collect();
        let share = |s: State| {
            100.0 * rows.iter().filter(|&&r| states[r] == s).count() as f64 / rows.len() as f64
        };
        let temps: Vec<f64> = rows
            .iter()
            .map(|&r| temp[r])
            .filter(|v| v.is_finite())
            .collect();
        let faulty = rows.iter().filter(|&&r| batch.tag_of(r).is_some()).count();
        println!(
            "{:<10} {:>6.1} {:>6.1} {:>6.1} {:>9.2} {:>8.1}",
            name,
            share(State::Run),
            share(State::Idle),
            share(State::Maint),
            temps.iter().sum::<f64>() / temps.len().max(1) as f64,
            100.0 * faulty as f64 / rows.len() as f64
        );
    }

    // Fault events: runs of rows of one device with the same tag.
    let mut events: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let order = batch.order_by_device();
    for (i, &r) in order.iter().enumerate() {
        let Some(tag) = batch.tag_of(r) else { continue };
        let entry = events.entry(tag).or_default();
        entry.1 += 1;
        let starts = i == 0 || {
            let p = order[i - 1];
            batch.device_codes()[p] != batch.device_codes()[r] || batch.tag_of(p) != Some(tag)
        };
        if starts {
            entry.0 += 1;
        }
    }
    println!("\n{:<16} {:>7} {:>8}", "fault", "events", "rows");
    for (tag, (n_events, rows)) in &events {
        println!("{tag:<16} {n_events:>7} {rows:>8}");
    }
    Ok(())
}
